"""Cold and warm start-up: import natgmm and a first small fit, in fresh processes.

"Cold" runs with an empty numba cache directory, so the first fit compiles
the kernels; "warm" runs again with the cache the cold run filled. Each run
is this script in a fresh process (``--child DTYPE``). Run from the
repository root::

    python benchmarks/bench_startup.py
"""

import argparse
import os
import subprocess
import sys
import tempfile
import time


def child(dtype):
    """Time ``import natgmm`` and a first fit and prediction of 2000 x 5 rows."""
    t0 = time.perf_counter()
    import numpy as np

    from natgmm import NaturalDiagonalGMM

    t1 = time.perf_counter()
    X = np.random.default_rng(0).normal(size=(2000, 5)).astype(dtype)
    NaturalDiagonalGMM(3, random_state=0).fit(X).predict(X)
    t2 = time.perf_counter()
    print(t1 - t0, t2 - t1)


def _run(cache_dir, dtype):
    env = {**os.environ, "NUMBA_CACHE_DIR": cache_dir}
    out = subprocess.run(
        [sys.executable, os.path.abspath(__file__), "--child", dtype],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    return [float(v) for v in out.stdout.split()]


def main(argv=None):
    """Print import and first-fit seconds, cold then warm, per dtype."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--child", metavar="DTYPE", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        child(args.child)
        return
    print(f"{'dtype':>8s} {'run':>5s} {'import s':>9s} {'first fit s':>12s}")
    for dtype in ("float64", "float32"):
        with tempfile.TemporaryDirectory() as cache_dir:
            for label in ("cold", "warm", "warm"):
                import_s, fit_s = _run(cache_dir, dtype)
                print(f"{dtype:>8s} {label:>5s} {import_s:9.2f} {fit_s:12.2f}", flush=True)


if __name__ == "__main__":
    main()
