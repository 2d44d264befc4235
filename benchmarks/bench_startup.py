"""Cold and warm start-up: import natgmm and a first fit, in fresh processes.

"Cold" runs with an empty numba cache directory, so the first fit compiles
the kernels; "warm" runs again with the cache the cold run filled. Each run
is this script in a fresh process (``--child DTYPE ROWS FEATURES
COMPONENTS``). Two sizes: a small fit, whose kernel calls all run on the
calling thread, and a larger one, whose passes are shared out between
threads (above ``natgmm._threading.MIN_PARALLEL_WORK``) and whose steps
before convergence are float32's for float64 rows too (above
``natgmm._solver.F32_MIN_WORK``). Twelve processes, four of them compiling:
about 2 minutes on one core. Run from the repository root::

    python benchmarks/bench_startup.py
"""

import argparse
import os
import subprocess
import sys
import tempfile
import time

# (rows, features, components) of the first fit.
SIZES = ((2000, 5, 3), (20_000, 20, 10))


def child(dtype, n_samples, n_features, n_components):
    """Time ``import natgmm`` and a first fit and prediction of random normal rows."""
    t0 = time.perf_counter()
    import numpy as np

    from natgmm import NaturalDiagonalGMM

    t1 = time.perf_counter()
    X = np.random.default_rng(0).normal(size=(n_samples, n_features)).astype(dtype)
    NaturalDiagonalGMM(n_components, random_state=0).fit(X).predict(X)
    t2 = time.perf_counter()
    print(t1 - t0, t2 - t1)


def _run(cache_dir, dtype, size):
    env = {**os.environ, "NUMBA_CACHE_DIR": cache_dir}
    out = subprocess.run(
        [sys.executable, os.path.abspath(__file__), "--child", dtype, *map(str, size)],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    return [float(v) for v in out.stdout.split()]


def main(argv=None):
    """Print import and first-fit seconds, cold then warm, per dtype."""
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import cli

    parser = cli.parser(__doc__)
    parser.add_argument("--child", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        child(args.child[0], *map(int, args.child[1:]))
        return
    print(f"{'dtype':>8s} {'first fit':>17s} {'run':>5s} {'import s':>9s} {'first fit s':>12s}")
    for size in SIZES:
        shape = "{} x {}, K={}".format(*size)
        for dtype in ("float64", "float32"):
            with tempfile.TemporaryDirectory() as cache_dir:
                for label in ("cold", "warm", "warm"):
                    import_s, fit_s = _run(cache_dir, dtype, size)
                    print(
                        f"{dtype:>8s} {shape:>17s} {label:>5s} {import_s:9.2f} {fit_s:12.2f}",
                        flush=True,
                    )


if __name__ == "__main__":
    main()
