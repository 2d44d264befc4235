"""What every benchmark does around a timed call: warm up first, pause, then time.

natgmm runs a kernel call with little work serially
(``natgmm._threading.MIN_PARALLEL_WORK``), so a warm-up on a small slice
would leave the parallel kernels of the timed fits to compile inside the
timing. :func:`warm_up` runs the warm-up twice: with every call parallel,
then as it would run. :func:`timed_after_pause` times one call after a
pause in which the previous call's idle threads (OpenBLAS and OpenMP spin
for a while after their work) go to sleep, so that they do not slow the
next library's start.
"""

import time

from natgmm._threading import parallel_for_any_work

# Seconds of sleep before each timed call.
PAUSE = 0.25


def warm_up(call, *args, **kwargs):
    """Call ``call(*args, **kwargs)`` with every kernel call parallel, then as it runs.

    Returns the second call's result.
    """
    with parallel_for_any_work():
        call(*args, **kwargs)
    return call(*args, **kwargs)


def timed_after_pause(call, *args, **kwargs):
    """Sleep :data:`PAUSE` seconds, then call ``call(*args, **kwargs)``: ``(result, seconds)``."""
    time.sleep(PAUSE)
    start = time.perf_counter()
    result = call(*args, **kwargs)
    return result, time.perf_counter() - start
