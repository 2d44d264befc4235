"""When to share a pass out between threads: whole default fits over shapes.

``natgmm._threading.MIN_PARALLEL_WORK`` decides, from ``n_samples *
n_features * n_components``, whether a kernel call shares its row blocks out
between natgmm's threads or runs on the calling thread alone (the results
are bitwise the same either way). This times whole default fits
(``NaturalDiagonalGMM(K, random_state=0)``, k-means start) of every shape
of a grid (N from 2 000 to 40 000 rows, D in {10, 20, 50}, K in {5, 10, 20,
50}, at least 20 rows per component) on two kinds of data, Gaussian blobs
(``datasets.blobs``, K centres, spread 4) and digits-like latents
(``datasets.digits_like_latents``, overlapping clusters, more
iterations), three ways:

- ``serial``: every pass on the calling thread;
- ``km 1``: natgmm's k-means on the calling thread, the EM passes shared;
- ``shared``: every pass shared out.

Each way is timed in turns, median of ``--reps``, twice: after a pause of a
tenth of a second before each fit (a fit run once, on a machine that was
idle) and back to back (a fit among others: ``n_init``, a grid search). It
then prints, for threshold rules, the geometric mean and the largest ratio
of each shape's time under the rule to the best of the three ways for that
shape: the current rule, the same rule with another threshold, and a
floor on the rows for k-means only. A score of 1.0 means the rule always
picks the fastest way; lower is better. With one kernel thread the three
ways are the same configuration and the scores are noise.

Run from the repository root (about 11 minutes; 7 with ``--reps 3``; ``--quick``
about 3)::

    python benchmarks/bench_threshold.py [--reps 5] [--quick] [--json FILE]
"""

import json
import math
import os
import sys
import time
import warnings

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from cli import check, parser  # noqa: E402
from datasets import blobs, digits_like_latents  # noqa: E402
from warm import warm_up  # noqa: E402

import natgmm  # noqa: E402
from natgmm import _kernels, _kmeans, _threading  # noqa: E402

WAYS = {"serial": (False, False), "km 1": (False, True), "shared": (True, True)}


def _force(kmeans_shared, em_shared):
    """Make natgmm's k-means and EM passes all serial or all shared, whatever their size."""
    _kmeans.use_threads = lambda parallel, work: bool(parallel) and kmeans_shared
    _kernels.use_threads = lambda parallel, work: bool(parallel) and em_shared


def _restore():
    _kmeans.use_threads = _kernels.use_threads = _threading.use_threads


def _shapes(quick):
    sizes = (2000, 10000, 40000) if quick else (2000, 5000, 10000, 20000, 40000)
    dims = (10, 50) if quick else (10, 20, 50)
    comps = (5, 20, 50) if quick else (5, 10, 20, 50)
    return [(n, d, k) for d in dims for k in comps for n in sizes if n >= 20 * k]


def _data(kind, n, d, k):
    if kind == "blobs":
        return blobs(n, d, k, cluster_std=4.0, seed=1)[0]
    return digits_like_latents(n, d)[0]


def _time_ways(X, k, reps, pause):
    """Median seconds of a whole default fit for each way."""
    times = {way: [] for way in WAYS}
    try:
        for _ in range(reps):
            for way, forced in WAYS.items():
                _force(*forced)
                if pause:
                    time.sleep(pause)
                start = time.perf_counter()
                natgmm.NaturalDiagonalGMM(k, random_state=0).fit(X)
                times[way].append(time.perf_counter() - start)
    finally:
        _restore()
    return {way: float(np.median(t)) for way, t in times.items()}


def _rules(threshold):
    """Threshold rules: ``(name, rule(n, d, k) -> (k-means shared, EM shared))``."""
    rules = []
    for work in sorted({threshold, 1_000_000, 10_000_000, 20_000_000}):
        name = f"work >= {work / 1e6:g}M" + (" (current)" if work == threshold else "")
        rules.append((name, lambda n, d, k, w=work: (n * d * k >= w,) * 2))
    for rows in (10_000, 20_000):
        rules.append((
            f"work >= {threshold / 1e6:g}M, k-means also n >= {rows}",
            lambda n, d, k, r=rows: (n * d * k >= threshold and n >= r, n * d * k >= threshold),
        ))  # fmt: skip
    # Work per row besides the products (the soft-max, the row's map) counted.
    rules.append((
        f"n (d + 4) (k + 4) >= {threshold / 1e6:g}M, k-means also n >= 20000",
        lambda n, d, k: (
            n * (d + 4) * (k + 4) >= threshold and n >= 20_000,
            n * (d + 4) * (k + 4) >= threshold,
        ),
    ))  # fmt: skip
    return rules


def _score(results, rule):
    """Geometric mean and largest ratio of the rule's time to each shape's best way."""
    ratios = []
    for row in results:
        kmeans_shared, em_shared = rule(row["n"], row["d"], row["k"])
        # No way runs k-means shared and EM serially; such a rule is timed as serial.
        way = "shared" if kmeans_shared and em_shared else "km 1" if em_shared else "serial"
        ratios.append(row["times"][way] / min(row["times"].values()))
    return math.exp(np.mean(np.log(ratios))), max(ratios)


def main(argv=None):
    parser_ = parser(__doc__)
    parser_.add_argument(
        "--reps", type=int, default=5, help="fits of each way per shape and mode; the median"
    )
    parser_.add_argument("--quick", action="store_true", help="a smaller grid")
    parser_.add_argument("--json", metavar="FILE", help="also write the times to this file")
    args = parser_.parse_args(argv)
    check(parser_, args.reps, "--reps", at_least=1)
    warnings.simplefilter("ignore")
    threshold = _threading.MIN_PARALLEL_WORK
    print(f"{_threading.n_threads(None)} kernel threads; MIN_PARALLEL_WORK = {threshold:,}")
    if _threading.n_threads(None) < 2:
        print(
            "WARNING: one kernel thread: serial, km 1 and shared are the same configuration, "
            "so the scores below are noise (run with more threads to compare)",
            flush=True,
        )
    print("median seconds of a whole default fit: serial | k-means serial, EM shared | shared")
    results = {"after a pause": [], "back to back": []}
    for kind in ("blobs", "latents"):
        for n, d, k in _shapes(args.quick):
            X = _data(kind, n, d, k)
            warm_up(natgmm.NaturalDiagonalGMM(k, random_state=0).fit, X)
            for mode, pause in (("after a pause", 0.1), ("back to back", 0.0)):
                times = _time_ways(X, k, args.reps, pause)
                results[mode].append({"kind": kind, "n": n, "d": d, "k": k, "times": times})
                print(
                    f"{kind:8s} N={n:6d} D={d:2d} K={k:2d} {mode:14s} "
                    + " | ".join(f"{way} {t * 1e3:7.1f} ms" for way, t in times.items()),
                    flush=True,
                )
    print(
        "\nrule: time over each shape's best way (geometric mean, largest; 1.0 = always the "
        "fastest way, lower is better)"
    )
    for name, rule in _rules(threshold):
        scores = "  ".join(
            f"{mode}: {mean:.3f}, {worst:.2f}"
            for mode, (mean, worst) in ((m, _score(r, rule)) for m, r in results.items())
        )
        print(f"  {name:50s} {scores}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"threshold": threshold, "results": results}, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
