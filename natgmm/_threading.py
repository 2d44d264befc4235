"""Threads: how kernel calls share the cores (OpenMP's wait policy is in _wait_policy.py).

Each compiled kernel works on a range of row blocks (``_kernels._Blockwise``);
:func:`share_out` splits a call's blocks into one contiguous range per thread,
runs the first range on the calling thread and the others on natgmm's pool of
Python threads (the kernels release the GIL), and gathers the blocks' results.
As every block's result is the serial kernel's, results do not depend on the
thread count. :func:`share_out_calls` shares out independent Python calls
that run kernels (split-and-merge's partial EMs and covariances) the same
way, item by item. natgmm does not use numba's parallel backend: its parallel
variants compiled for as long as the serial kernels again, doubling a cold
start, for no speed (doc/performance.rst, "Threads"). The pool's threads
sleep on a queue between calls, so they take no core from other work, and
kernel calls from several Python threads (a Dask worker's, a user's) share
the pool safely.

:func:`kernel_threads` sets the thread count of the calls made inside it
(``n_jobs``), for the calling thread only. A call with little work
(:data:`MIN_PARALLEL_WORK`) runs on the calling thread alone.

**Forks.** A fork waits until no thread of the process holds numba's
compiler lock (:class:`_ForkGate`), and a forked child makes a pool of its
own at its first shared-out call. BLAS limits are :mod:`._blas`'s.
"""

import os
import threading
from concurrent.futures import ThreadPoolExecutor, wait
from contextlib import contextmanager

import numba
from numba.core.compiler_lock import global_compiler_lock

from ._blas import limit_this_thread
from ._interrupt import uninterrupted

# Multiply-adds of one kernel call (rows x features x components) below which
# it runs on the calling thread alone: waking a pool thread costs more than
# sharing so little work saves (doc/performance.rst, "Threads").
MIN_PARALLEL_WORK = 3_000_000

# Row blocks per kernel call, from the data shape only (so that results do not
# depend on the thread count): a multiple of eight (equal shares for 2, 4 or
# 8 threads), the fewest that keep blocks to at most _BLOCK_ROWS rows, and at
# most _MAX_BLOCKS. Every block has accumulators of its own to zero and sum
# in each pass; doc/performance.rst has the measurements behind the sizes.
_MAX_BLOCKS = 64
_BLOCK_ROWS = 4096

_local = threading.local()  # .count: the calling thread's kernel_threads setting
_pool_lock = threading.Lock()
_pool = None
_pool_pid = None


def use_threads(parallel, work):
    """Whether a kernel call shares its blocks out between threads.

    Parameters
    ----------
    parallel : bool
        Whether the caller wants it to.
    work : int
        Multiply-adds of the call, about rows times features times
        components; below :data:`MIN_PARALLEL_WORK` the calling thread does
        it all.

    Returns
    -------
    parallel : bool
    """
    return bool(parallel) and work >= MIN_PARALLEL_WORK


def n_blocks(n_samples):
    """Return the number of row blocks of a kernel call over ``n_samples`` rows."""
    return min(_MAX_BLOCKS, 8 * -(-max(n_samples, 1) // (8 * _BLOCK_ROWS)))


def usable_cores():
    """Return the CPUs this process may run on (its affinity, as ``taskset`` sets it)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1  # not on Linux


def n_threads(n_jobs):
    """Return the number of threads ``n_jobs`` asks for (joblib's convention).

    None or -1 is every thread natgmm may use (``NUMBA_NUM_THREADS``, by
    default the CPUs this process may run on), a negative value all but
    ``-n_jobs - 1``, a positive one at most that many.
    """
    available = numba.config.NUMBA_NUM_THREADS
    if n_jobs is None or n_jobs == -1:
        return available
    if n_jobs < 0:
        return max(1, available + 1 + n_jobs)
    return min(n_jobs, available)


@contextmanager
def kernel_threads(n_jobs):
    """Run the calling thread's kernel calls on ``n_jobs`` threads inside the block.

    Yields whether kernel calls should be shared out (more than one thread).
    The previous setting is restored after.
    """
    previous = getattr(_local, "count", None)
    count = n_threads(n_jobs)
    try:
        _local.count = count
        yield count > 1
    finally:
        uninterrupted(setattr, _local, "count", previous)


def current_threads():
    """Return the calling thread's kernel thread count: its :func:`kernel_threads`, else all.

    One on a thread of natgmm's pool: what it runs is already a share of a
    call, and a share of its own would wait for the pool it runs on.
    """
    if getattr(_local, "in_pool", False):
        return 1
    return getattr(_local, "count", None) or n_threads(None)


def _pool_thread():
    """Start a thread of natgmm's pool: BLAS on one thread, no calls shared out from it."""
    _local.in_pool = True
    limit_this_thread()


def _executor():
    """Return natgmm's pool, made at first use (and again in a forked child: it has no threads)."""
    global _pool, _pool_pid
    with _pool_lock:
        if _pool is None or _pool_pid != os.getpid():
            workers = max(1, n_threads(None) - 1)
            _pool = ThreadPoolExecutor(
                workers, thread_name_prefix="natgmm", initializer=_pool_thread
            )
            _pool_pid = os.getpid()
        return _pool


def _gather(result, part, first, last):
    """Copy blocks ``first:last`` of each array of ``part`` into ``result``'s."""
    if result is None:
        return
    if not isinstance(result, tuple):
        result, part = (result,), (part,)
    for mine, theirs in zip(result, part, strict=True):
        mine[first:last] = theirs[first:last]


def share_out(kernel, args, n_blocks):
    """Run ``kernel(*args, first, last)`` over blocks ``0:n_blocks`` on several threads.

    The blocks are cut into one contiguous range per thread (the calling
    thread's :func:`kernel_threads` count, at most ``n_blocks``); the
    calling thread runs the first range and natgmm's pool the others.

    Returns
    -------
    result
        What ``kernel`` returns (None, an array or a tuple of arrays, each
        with ``n_blocks`` rows), every block's rows from the call that
        computed that block. Arrays written in place are written by each
        call for its own blocks.
    """
    count = min(current_threads(), n_blocks)
    if count <= 1:
        return kernel(*args, 0, n_blocks)
    bounds = [t * n_blocks // count for t in range(count + 1)]
    pool = _executor()
    futures = [
        pool.submit(kernel, *args, lo, hi) for lo, hi in zip(bounds[1:-1], bounds[2:], strict=True)
    ]
    try:
        result = kernel(*args, bounds[0], bounds[1])
        for future, lo, hi in zip(futures, bounds[1:-1], bounds[2:], strict=True):
            _gather(result, future.result(), lo, hi)
    finally:
        # The pool's calls write into the caller's arrays: none may outlive this call.
        uninterrupted(wait, futures)
    return result


def share_out_calls(func, items, work):
    """Return ``[func(item) for item in items]``, the calls shared out between threads.

    For Python functions whose time is mostly in compiled kernels (which
    release the GIL), ``work`` multiply-adds in all (below
    :data:`MIN_PARALLEL_WORK` they all run on the calling thread): the
    calling thread and natgmm's pool (the calling thread's
    :func:`kernel_threads` count in all) take the items one at a time, in
    order, each thread its next as it finishes one, so that a thread that
    started late or drew the costlier items takes fewer. Each call's result
    is its own, whatever the thread that made it, so the list does not
    depend on the threads. After an exception no thread takes another item,
    and it is raised once every call has ended. Calls on the pool's threads
    run their kernels on that thread alone (:func:`current_threads`).
    """
    items = list(items)
    count = min(current_threads(), len(items)) if use_threads(True, work) else 1
    if count <= 1:
        return [func(item) for item in items]
    results = [None] * len(items)
    queue = iter(range(len(items)))
    lock = threading.Lock()
    failed = []

    def take():
        while True:
            with lock:
                i = None if failed else next(queue, None)
            if i is None:
                return
            try:
                results[i] = func(items[i])
            except BaseException:
                failed.append(i)
                raise

    pool = _executor()
    futures = [pool.submit(take) for _ in range(count - 1)]
    try:
        take()
        for future in futures:
            future.result()
    finally:
        # The calls may write into the caller's arrays: none may outlive this call.
        uninterrupted(wait, futures)
    return results


class _ForkGate:
    """A fork waits for numba's compiler lock (taken before, released after, in both processes).

    An exception in a before-fork hook is printed and the fork goes on
    without the lock, so a Ctrl-C that lands while the lock is awaited does
    not end the wait: it is lost (a hook cannot raise it, and one raised in
    the after-fork hook was printed and lost too), and the child still gets
    a free lock. The lock is released only by a hook that took it.
    """

    def __init__(self):
        self._local = threading.local()

    def close(self):
        """Take the lock, however long that takes (before a fork)."""
        while True:
            try:
                global_compiler_lock.acquire()
                break
            except KeyboardInterrupt:
                pass
        self._local.held = True

    def open(self):
        """Release the lock if :meth:`close` took it (after a fork, in either process)."""
        if getattr(self._local, "held", False):
            self._local.held = False
            global_compiler_lock.release()


def _forget_pool_lock():
    """Give a forked child a free pool lock (after a fork, in the child).

    Every shared-out call takes the lock for a moment (:func:`_executor`); a
    child forked in that moment got it held by a thread it does not have,
    and its first shared-out call waited for ever.
    """
    global _pool_lock
    _pool_lock = threading.Lock()


_fork_gate = _ForkGate()
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_pool_lock)
    # A child forked while another thread loads or compiles kernels got
    # numba's compiler lock held by a thread it does not have, and its first
    # kernel call waited for ever: a fork waits for the lock instead.
    os.register_at_fork(
        before=_fork_gate.close, after_in_parent=_fork_gate.open, after_in_child=_fork_gate.open
    )
