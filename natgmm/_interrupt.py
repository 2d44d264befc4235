"""Interrupts and failures that leave nothing half done.

A fit computes into local state and assigns its fitted attributes in one
step at the end (:func:`commit`), so an exception, a Ctrl-C included, leaves
the previous model exactly as it was. Settings changed for the duration of a
call (thread counts, BLAS limits) are put back by :func:`uninterrupted`,
which finishes a restore even if a Ctrl-C lands inside it.
:func:`keyboard_interrupts` turns the ``SystemError`` that numba raises when
a Ctrl-C arrives while compiled code runs back into the ``KeyboardInterrupt``
it is.
"""

from contextlib import contextmanager


def _interrupt_in(error):
    """Return the KeyboardInterrupt in ``error``'s chain of causes and contexts, or None."""
    seen = set()
    while error is not None and id(error) not in seen:
        if isinstance(error, KeyboardInterrupt):
            return error
        seen.add(id(error))
        error = error.__cause__ or error.__context__
    return None


@contextmanager
def keyboard_interrupts():
    """Re-raise a Ctrl-C that numba reports as a ``SystemError`` as a KeyboardInterrupt.

    Compiled code returning arrays calls back into Python (numba fetches
    ``np.ndarray`` through ``numba.core.serialize._numba_unpickle`` to box
    them); a Ctrl-C that arrived while the kernel ran (without the GIL) is
    raised inside that callback, and numba's C code, which does not expect
    it to fail, raises a ``SystemError`` chained on the KeyboardInterrupt.
    Every call of compiled code from Python goes through this context (also
    usable as a decorator).
    """
    try:
        yield
    except SystemError as error:
        interrupt = _interrupt_in(error)
        if interrupt is None:
            raise
        try:
            raise interrupt.with_traceback(error.__traceback__) from None
        finally:
            interrupt = None  # no cycle through this frame (see uninterrupted)


def uninterrupted(func, *args):
    """Call ``func(*args)`` to completion, even if a Ctrl-C lands inside it.

    For the ``finally`` clauses that restore a setting: an interrupted
    restore is started again (restores are idempotent), and the
    KeyboardInterrupt is raised once it has completed.
    """
    interrupt = None
    while True:
        try:
            func(*args)
            break
        except KeyboardInterrupt as error:
            interrupt = error
    if interrupt is not None:
        try:
            raise interrupt
        finally:
            # The traceback holds this frame: without this, the frame and the
            # interrupt would hold each other until a garbage collection, and
            # the frames they keep (a hold's, whose release is tied to it)
            # would go at whatever line that collection happens.
            interrupt = None


def commit(estimator, attributes, remove=()):
    """Set ``attributes`` on ``estimator`` and delete ``remove``, in one assignment.

    The new ``__dict__`` is built aside and swapped in by one statement, so
    an interrupt sees either the old estimator or the new one.
    """
    state = {k: v for k, v in vars(estimator).items() if k not in remove}
    state.update(attributes)
    estimator.__dict__ = state


_INPUT_ATTRIBUTES = ("n_features_in_", "feature_names_in_")


def input_attributes(validated):
    """Return what ``validate_data(reset=True)`` set on ``validated``: attributes, removed.

    scikit-learn's ``validate_data(reset=True)`` sets ``n_features_in_`` and
    ``feature_names_in_`` (or deletes the latter) on the estimator it is
    given. Given a shallow copy of the estimator, it leaves the estimator
    alone; this reads the copy's, for :func:`commit` with the other fitted
    attributes.
    """
    attributes = {k: getattr(validated, k) for k in _INPUT_ATTRIBUTES if hasattr(validated, k)}
    return attributes, tuple(k for k in _INPUT_ATTRIBUTES if k not in attributes)
