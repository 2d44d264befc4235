"""What every benchmark does around a timed call: warm up first, pause, then time.

:func:`warm_up` runs the call once before it is timed, so that its kernels
are compiled (or loaded from numba's cache) outside the timing.
:func:`timed_after_pause` times one call after a pause in which the previous
call's idle threads (OpenBLAS and OpenMP spin for a while after their work)
go to sleep, so that they do not slow the next library's start.
"""

import time
import warnings

# Seconds of sleep before each timed call.
PAUSE = 0.25


def warm_up(call, *args, **kwargs):
    """Call ``call(*args, **kwargs)`` once, before timing it; return its result."""
    # Its fit is too short to converge and nobody reads it: no warning at the top of the run.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return call(*args, **kwargs)


def warm_up_rows(X, n_components):
    """The first rows of ``X`` on which a warm-up fit takes the compiled paths of a fit of ``X``.

    As many as ``natgmm._solver.rows_for_every_path`` says: a fit of
    ``n_components`` on them loads or compiles the kernels (float32 steps,
    threads) that a fit of all of ``X`` runs, so that none of them is
    loaded or compiled inside a timed fit.
    """
    from natgmm._solver import rows_for_every_path

    return X[: rows_for_every_path(X.shape[0], X.shape[1], n_components)]


def timed_after_pause(call, *args, **kwargs):
    """Sleep :data:`PAUSE` seconds, then call ``call(*args, **kwargs)``: ``(result, seconds)``."""
    time.sleep(PAUSE)
    start = time.perf_counter()
    result = call(*args, **kwargs)
    return result, time.perf_counter() - start
