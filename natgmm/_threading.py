"""Threads of the kernels: numba's thread count for one call, restored after."""

from contextlib import contextmanager

import numba

from ._interrupt import uninterrupted


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
