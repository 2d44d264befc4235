"""What every benchmark does around a timed call: warm up first, pause, then time.

:func:`warm_up` runs the call once before it is timed, so that its kernels
are compiled (or loaded from numba's cache) outside the timing.
:func:`timed_after_pause` times one call after a pause in which the previous
call's idle threads (OpenBLAS and OpenMP spin for a while after their work)
go to sleep, so that they do not slow the next library's start, and says
on stderr if natgmm loaded or compiled a kernel inside the timing (a
warm-up that missed a path: on an empty cache, seconds of compilation
counted as natgmm's time).
"""

import pkgutil
import sys
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


_WARMED = set()


def warm_up_once(key, call, *args, **kwargs):
    """:func:`warm_up`, the first time only for each ``key`` (a configuration's paths)."""
    if key not in _WARMED:
        _WARMED.add(key)
        warm_up(call, *args, **kwargs)


def loaded_kernels():
    """Number of signatures each of natgmm's compiled functions holds in this process.

    Loaded from numba's cache or compiled: either way a signature appears
    here at a kernel's first call with its argument types. Empty where
    natgmm or numba is not imported (a benchmark of scikit-learn alone).
    """
    if "natgmm" not in sys.modules or "numba" not in sys.modules:
        return {}
    from numba.core.registry import CPUDispatcher

    natgmm = sys.modules["natgmm"]
    found = {}
    for info in pkgutil.iter_modules(natgmm.__path__):
        module = sys.modules.get(f"natgmm.{info.name}")
        for name, value in vars(module).items() if module else ():
            value = getattr(value, "kernel", value)  # a _Blockwise's compiled function
            if isinstance(value, CPUDispatcher):
                found[f"{module.__name__}.{name}"] = len(value.signatures)
    return found


def timed_after_pause(call, *args, **kwargs):
    """Sleep :data:`PAUSE` seconds, then call ``call(*args, **kwargs)``: ``(result, seconds)``.

    Says on stderr which of natgmm's kernels the call loaded or compiled.
    """
    time.sleep(PAUSE)
    before = loaded_kernels()
    start = time.perf_counter()
    result = call(*args, **kwargs)
    seconds = time.perf_counter() - start
    after = loaded_kernels()
    new = sorted(name for name in after if after[name] > before.get(name, 0))
    if new:
        print(
            f"warning: a timed call loaded or compiled {', '.join(new)} "
            f"({seconds:.2f} s include that): its warm-up took other paths",
            file=sys.stderr,
            flush=True,
        )
    return result, seconds
