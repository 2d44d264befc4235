"""Warm-ups that compile (or load) both variants of natgmm's kernels before timing.

natgmm runs a kernel call with little work serially
(``natgmm._threading.MIN_PARALLEL_WORK``), so a warm-up on a small slice
would leave the parallel kernels of the timed fits to compile inside the
timing. :func:`warm_up` runs the warm-up twice: with every call parallel,
then as it would run.
"""

from natgmm._threading import parallel_for_any_work


def warm_up(call, *args, **kwargs):
    """Call ``call(*args, **kwargs)`` with every kernel call parallel, then as it runs.

    Returns the second call's result.
    """
    with parallel_for_any_work():
        call(*args, **kwargs)
    return call(*args, **kwargs)
