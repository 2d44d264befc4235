"""BLAS on one thread while kernels run.

Each kernel thread makes its own small BLAS calls (numba's ``np.dot`` calls
scipy's BLAS); a threaded BLAS would put its own threads on the same cores
(doc/performance.rst), and ``n_jobs=1`` means one core. :data:`single_threaded_blas`
holds every BLAS loaded at one thread for as long as any kernel of the
process runs, and restores the user's limits after; :func:`limit_this_thread`
is the per-thread limit of natgmm's pool threads.
"""

import contextlib
import ctypes
import functools
import os
import threading
import weakref
from contextlib import contextmanager

# numpy first: blas_controller's snapshot must see numpy's BLAS even when
# this module is imported alone (``import natgmm`` loads no numpy).
import numpy  # noqa: F401, I001
from threadpoolctl import ThreadpoolController

from ._interrupt import uninterrupted


@functools.cache
def blas_controller():
    """Return threadpoolctl's controller of the libraries loaded (made once)."""
    return ThreadpoolController()


@functools.cache  # the libraries of blas_controller's snapshot
def blas_libraries():
    """Return threadpoolctl's controllers of the BLAS libraries loaded (selected once).

    Selecting them anew at each hold took 1.4 us of a hold's 9.
    """
    return tuple(blas_controller().select(user_api="blas").lib_controllers)


@functools.cache  # the libraries of blas_controller's snapshot
def thread_blas_setters():
    """``(setter, per_thread)``: ``openblas_set_num_threads_local`` of each OpenBLAS loaded.

    Once the main thread has set OpenBLAS's process-wide thread count, this
    OpenBLAS (0.3.30 and 0.3.31 here) ignores the process-wide setting made
    from any other thread: a hold entered from a user's thread, or natgmm's
    pool threads, ran BLAS on all cores (and results differed in their last
    bits from the same calls on the main thread). This setter applies from
    any thread, but despite its name only OpenMP builds keep a count per
    thread (``per_thread``): in pthreads builds (the wheels of numpy and
    scipy) it sets the one count of the process. Empty for other BLAS.
    """
    setters = []
    for lib in blas_controller().select(internal_api="openblas").lib_controllers:
        # "_dynlib" before threadpoolctl 3.2; neither: no setter (as for other BLAS).
        dynlib = getattr(lib, "dynlib", None) or getattr(lib, "_dynlib", None)
        setter = getattr(dynlib, "openblas_set_num_threads_local", None)
        if setter is not None:
            setter.argtypes, setter.restype = [ctypes.c_int], ctypes.c_int
            setters.append((setter, lib.threading_layer == "openmp"))
    return tuple(setters)


def limit_this_thread():
    """Limit the calling thread's own BLAS to one thread, where BLAS keeps a count per thread.

    The initializer of natgmm's pool threads, which only ever run kernels.
    """
    for setter, per_thread in thread_blas_setters():
        if per_thread:
            setter(1)


class _Anchor:
    """An object that lives as long as the frame of a BLAS hold (weak-referenceable)."""


class _SingleThreadedBlas:
    """Hold BLAS at one thread while any kernel runs.

    The limit is process-wide, so concurrent kernels (several user threads)
    share it: the first sets it, the last restores it (each thread's own
    restore of the process-wide count, as holds on two threads overlapped,
    put back the other's 1 for good). A per-thread limit (OpenBLAS built
    with OpenMP) is set and restored by each thread. Each user is a token (with
    its thread) in a dict, and the original limits are recorded before any is changed, so
    that the ``finally`` puts back exactly what was done wherever a Ctrl-C
    lands. A Ctrl-C on the ``finally``'s own line, before
    :func:`uninterrupted` has started, would skip it: the release is also
    tied to an object of the hold's frame, and runs when that frame goes
    unless the ``finally`` has released the hold (releasing twice is
    harmless). A hold taken inside one of its own thread's holds adds
    nothing: the enclosing hold outlasts it (holds are ``with`` blocks, none
    held across a generator's ``yield``).
    """

    def __init__(self):
        # Re-entrant: a release tied to a frame can run wherever that frame
        # is freed, this thread's own holds included.
        self._lock = threading.RLock()
        self._users = {}  # token -> the thread that took the hold
        self._holding = frozenset()  # those threads (a snapshot, read without the lock)
        self._original = None  # [(library, its thread count)] while limited
        self._shared = []  # [(process-wide setter, its count before)] while limited

    @contextmanager
    def __call__(self):
        ident = threading.get_ident()
        if ident in self._holding:
            # Inside this thread's own hold (a kernel call inside a fit's or a
            # prediction's hold): BLAS is held already, and a second token would
            # only cost time (13 us a call, a tenth of a small fit's iteration).
            yield
            return
        token = object()
        anchor = _Anchor()
        release = weakref.finalize(anchor, self._leave, token)
        local = []  # (setter, this thread's limit before)
        try:
            setters = thread_blas_setters()
            with self._lock:
                self._users[token] = ident
                self._holding = frozenset(self._users.values())
                if self._original is None:
                    libraries = blas_libraries()
                    self._original = [(lib, lib.num_threads) for lib in libraries]
                    # Before set_num_threads: each setter returns the count it replaces.
                    self._shared = [(s, s(1)) for s, per_thread in setters if not per_thread]
                    for lib in libraries:
                        lib.set_num_threads(1)
            for setter, per_thread in setters:
                if per_thread:
                    local.append((setter, setter(1)))
            yield
        finally:
            for setter, n_threads in reversed(local):
                setter(n_threads)
            uninterrupted(self._leave, token)
            # Released: the frame's release is not needed (a Ctrl-C inside
            # it would be printed and lost, as any exception of a finalizer).
            release.detach()

    def _leave(self, token):
        with self._lock:
            self._users.pop(token, None)
            self._holding = frozenset(self._users.values())
            if not self._users:
                self._restore()

    def _restore(self):
        """Put back the limits the first user recorded, if any (under the lock, or in a child).

        A count that is no longer the 1 set here was set meanwhile by
        someone else (a user's ``threadpool_limits`` ending on another
        thread): theirs stands, as putting back the count seen at the start
        would leave their limit in place for good.

        Read once: a release tied to a frame can run inside this one (the
        lock is re-entrant) and restore first; what is left is then
        restored already, or, from the values read, put back again (the
        same counts).
        """
        original, shared = self._original, self._shared
        if original is None:
            return
        for lib, n_threads in original:
            if lib.num_threads == 1:
                lib.set_num_threads(n_threads)  # ignored by OpenBLAS off the main thread
        for setter, n_threads in reversed(shared):
            now = setter(n_threads)  # applies from any thread
            if now != 1:  # put back by set_num_threads above, or by someone else
                setter(now)
        self._original, self._shared = None, []

    def after_fork_in_child(self):
        """Forget the holds of the parent's threads, which a forked child does not have.

        Their tokens would keep the child's own holds from limiting BLAS (a
        child forked while another thread fitted ran its kernels beside two
        BLAS threads). The child starts from the limits the user had, as if
        no hold were running.
        """
        self._lock = threading.RLock()  # another thread may have held it at the fork
        self._users, self._holding = {}, frozenset()
        self._restore()


single_threaded_blas = _SingleThreadedBlas()
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=single_threaded_blas.after_fork_in_child)

# Multiply-adds of a BLAS product up to which OpenBLAS runs it on the calling
# thread whatever its thread count (SMP_THRESHOLD_MIN of its interface/gemm.c;
# it threads only above four times that by default).
SERIAL_BLAS_WORK = 65536


def blas_hold(work):
    """:data:`single_threaded_blas` for a call of BLAS products of at most ``work`` multiply-adds.

    ``work`` is that of the largest product, not of the call. A null
    context when it is at most :data:`SERIAL_BLAS_WORK`: BLAS runs such
    products on the calling thread anyway, and setting and restoring the
    limits (about 20 us) was a sixth of a one-row prediction.
    """
    return single_threaded_blas() if work > SERIAL_BLAS_WORK else contextlib.nullcontext()
