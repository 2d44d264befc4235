"""Threads: numba's thread count for a call, OpenMP's wait policy, numba's threading layer.

:func:`numba_threads` sets numba's thread count for one call (``n_jobs``) and
restores it after. Two process-wide settings decide how natgmm's kernels
share the cores:

- **OpenMP's wait policy.** numba's default threading layer on Linux with
  pip-installed packages is ``omp`` (GNU libgomp), and scikit-learn brings a
  libgomp of its own for k-means. By default a libgomp worker spins for a
  while after each parallel region, waiting for the next one. Next to a
  process that keeps a core busy, or to OpenMP and OpenBLAS threads left
  spinning by an earlier step of a pipeline, those spinning workers take the
  cores the working threads need, and a fit ran five to twenty times slower
  (doc/performance.rst, "Threads under load"). With ``OMP_WAIT_POLICY=passive``
  the workers sleep at once. libgomp reads the variable once, when it is
  loaded, so :func:`configure_wait_policy` must run before the first
  parallel region of each OpenMP runtime: ``natgmm/__init__.py`` calls it
  first thing, which covers numba's runtime (loaded at numba's first
  parallel launch) and scikit-learn's if natgmm is imported before
  scikit-learn's k-means. A value set by the user is kept.
- **numba's layer.** ``omp`` and ``tbb`` accept parallel launches from
  several Python threads at once; ``workqueue``, which numba picks where
  neither is available, aborts the process. :func:`parallel_launch` lets one
  Python thread at a time run a parallel kernel under ``workqueue`` and sends
  the others to the serial kernel, which gives bitwise the same results.

:func:`parallel_launch` also sends a call with little work to the serial
kernel (``MIN_PARALLEL_WORK``), whatever ``n_jobs`` asks.
"""

import os
import threading
from contextlib import contextmanager

import numba

from ._interrupt import uninterrupted

# The environment natgmm sets unless the user has: sleep rather than spin
# while waiting for work, in every OpenMP runtime loaded after this.
WAIT_POLICY = {"OMP_WAIT_POLICY": "passive"}

# numba's threading layers that accept concurrent launches from Python threads.
THREADSAFE_LAYERS = ("omp", "tbb")

_workqueue_pool = threading.Lock()

# Multiply-adds of one kernel call (rows x features x components) below which
# it runs serially: waking numba's threads, asleep under the passive wait
# policy, costs more than sharing so little work saves (doc/performance.rst,
# "Threads"). Both kernels give bitwise the same results.
MIN_PARALLEL_WORK = 3_000_000


def configure_wait_policy(environ=None):
    """Set ``OMP_WAIT_POLICY=passive`` in the environment unless it is set.

    Parameters
    ----------
    environ : mapping, default=None
        The environment to change; ``os.environ`` when None.

    Returns
    -------
    applied : dict
        The variables this call set (empty when the user had set them).

    Notes
    -----
    OpenMP runtimes read the variable when they are loaded: this acts on
    those loaded afterwards (numba's, at its first parallel launch, and
    scikit-learn's if its k-means was not imported yet), not on one already
    running.
    """
    environ = os.environ if environ is None else environ
    applied = {}
    for name, value in WAIT_POLICY.items():
        if name not in environ:
            environ[name] = value
            applied[name] = value
    return applied


def threading_layer():
    """Return the name of numba's threading layer, starting numba's threads if needed.

    Returns
    -------
    layer : str
        ``"omp"``, ``"tbb"`` or ``"workqueue"``.
    """
    numba.get_num_threads()  # launches the threads, so that the layer is known
    return numba.threading_layer()


@contextmanager
def parallel_for_any_work():
    """Let kernel calls run in parallel however little their work, inside the block.

    For compiling the parallel kernels on small data ahead of the calls that
    need them (``python -m natgmm`` does, before timing anything).
    Process-wide while it lasts.
    """
    global MIN_PARALLEL_WORK
    previous = MIN_PARALLEL_WORK
    MIN_PARALLEL_WORK = 0
    try:
        yield
    finally:
        MIN_PARALLEL_WORK = previous


@contextmanager
def parallel_launch(parallel, work=None):
    """Decide whether this call may run numba's parallel kernel.

    Parameters
    ----------
    parallel : bool
        Whether the caller wants the parallel kernel.
    work : int, default=None
        Multiply-adds of the call, about rows times features times
        components; below :data:`MIN_PARALLEL_WORK` the serial kernel runs.
        None: no such limit.

    Yields
    ------
    parallel : bool
        True when the parallel kernel may run: for enough work, and then
        under a thread-safe layer always, under ``workqueue`` only while no
        other Python thread runs a parallel kernel through this function (the
        pool is held until the block exits). The serial kernel gives bitwise
        the same results.
    """
    parallel = parallel and (work is None or work >= MIN_PARALLEL_WORK)
    if not parallel or threading_layer() in THREADSAFE_LAYERS:
        yield parallel
        return
    if not _workqueue_pool.acquire(blocking=False):
        yield False
        return
    try:
        yield True
    finally:
        _workqueue_pool.release()


def n_threads(n_jobs):
    """Return the number of numba threads ``n_jobs`` asks for (joblib's convention).

    None or -1 is every thread numba has (``NUMBA_NUM_THREADS``), a negative
    value all but ``-n_jobs - 1``, a positive one at most that many.
    """
    available = numba.config.NUMBA_NUM_THREADS
    if n_jobs is None or n_jobs == -1:
        return available
    if n_jobs < 0:
        return max(1, available + 1 + n_jobs)
    return min(n_jobs, available)


@contextmanager
def numba_threads(n_jobs):
    """Run the kernels on ``n_jobs`` threads; restore numba's count after.

    Yields whether the parallel kernels should be used.
    """
    count = n_threads(n_jobs)
    previous = numba.get_num_threads()
    try:
        numba.set_num_threads(count)
        yield count > 1
    finally:
        uninterrupted(numba.set_num_threads, previous)
