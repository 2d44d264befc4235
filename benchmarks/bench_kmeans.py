"""natgmm's compiled k-means against scikit-learn's ``KMeans(n_init=1)``.

Timing (N = 60000, D = 50, K = 20 and 50, FactorAnalysis latents of noisy
resampled digits from ``datasets.digits_like_latents``, and overlapping
blobs): both run on the same mapped data from the same ``random_state``,
interleaved in one process, best of ``--repeats`` (each repeat from
``random_state=0``, so that they do the same work), each timed call after a
quarter of a second of sleep (``warm.timed_after_pause``, as in the other
benchmarks: the other library's threads, which spin a while after their
work, would otherwise slow its start); also the k-means++ seeding
alone against ``sklearn.cluster.kmeans_plusplus``. Printed: seconds, the
ratio, iterations, the share of rows whose distances the bounds did not spare
(per iteration, on average) and the agreement of the labels.

Memory (``--memory``): the peak resident size above the data during the
whole k-means initialisation of a default fit at N = 1e6, D = 50, K = 50
(blobs, float64), measured in a fresh process per variant as in
``bench_em.py``: "today" is the estimator's current path (``(X - shift) /
spread`` copy, scikit-learn's KMeans, ``label_stats``), "natgmm" the compiled
k-means and ``label_stats`` on ``X`` itself. Also the seeding's time at that N,
on all rows and on a sample of 100000 rows.

``--data`` picks the timing's data sets: ``latents``, ``overlapping``
(blobs, ``cluster_std=8``) or ``separated`` (blobs, ``cluster_std=1``, the
memory case's data). ``sk/nat`` is scikit-learn's seconds over natgmm's
(above 1: natgmm is faster).

Run from the repository root (``--repeats 1`` took 37 s on one core)::

    python benchmarks/bench_kmeans.py [--repeats 5] [--memory] [--single-thread]

``--single-thread`` runs scikit-learn under ``threadpool_limits(1)`` and
natgmm's serial kernels: on a loaded machine the ratio of one-thread times
is the steadier figure.
"""

import argparse
import json
import os
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import cli  # noqa: E402
from bench_em import _PeakRSS, _rss_bytes  # noqa: E402
from warm import timed_after_pause, warm_up, warm_up_rows  # noqa: E402


def _timed(times, func, *args, **kwargs):
    """:func:`warm.timed_after_pause`, its seconds appended to ``times``: the result."""
    result, seconds = timed_after_pause(func, *args, **kwargs)
    times.append(seconds)
    return result


# --data names: blobs' cluster_std, or None for the latents.
DATA = {"latents": None, "overlapping": 8.0, "separated": 1.0}


def _data(name, n_samples):
    import numpy as np
    from datasets import blobs, digits_like_latents

    if DATA[name] is None:
        return digits_like_latents(n_samples, 50)[0]
    return blobs(n_samples, 50, 50, cluster_std=DATA[name])[0].astype(np.float64)


def _map(X):
    """The estimator's k-means map: weighted mean (here unweighted) and one common spread."""
    import numpy as np

    shift = X.mean(axis=0)
    spread = float(np.max(X.std(axis=0)))
    return shift, spread


def timing(names, n_clusters_list, repeats, parallel):
    import contextlib

    import numpy as np
    from sklearn.cluster import KMeans, kmeans_plusplus
    from threadpoolctl import threadpool_limits

    from natgmm import _kmeans

    # One thread: scikit-learn's OpenMP and BLAS pools and natgmm's serial kernels.
    limit = contextlib.nullcontext() if parallel else threadpool_limits(1)
    print(
        f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, {cli.usable_cores()} usable "
        f"core(s), {'all threads' if parallel else 'one thread'} per library",
    )
    print(
        f"k-means, N=60000, D=50, best of {repeats}: seconds, and sk/nat = sklearn's over "
        "natgmm's (> 1: natgmm faster); a line per repeat, then the best",
        flush=True,
    )
    for name in names:
        X = _data(name, 60_000)
        shift, spread = _map(X)
        Xk = (X - shift) / spread
        KMeans(5, n_init=1, random_state=0).fit(Xk[:2000])
        for k in n_clusters_list:
            # At this K, on rows enough for its threads: the paths (centres in
            # groups from K = 20) of the timed calls, untimed.
            warm_up(_kmeans.kmeans, warm_up_rows(X, k), None, shift, 1 / spread, k, 0, parallel)
            t_sk, t_ours, t_sk_seed, t_ours_seed = [], [], [], []
            for rep in range(repeats):
                with limit:
                    km = _timed(t_sk, KMeans(k, n_init=1, random_state=0).fit, Xk)
                    _, idx = _timed(t_sk_seed, kmeans_plusplus, Xk, k, random_state=0)
                labels, _, n_iter, work = _timed(
                    t_ours, _kmeans._kmeans, X, None, shift, 1 / spread, k, 0, parallel, 300, 1e-4
                )
                _, _, ours = _timed(
                    t_ours_seed, _kmeans.kmeans_plusplus, X, None, shift, 1 / spread, k, 0, parallel
                )
                print(
                    f"  {name} K={k} rep {rep}: sklearn {t_sk[-1]:.3f} s ({km.n_iter_} it), "
                    f"natgmm {t_ours[-1]:.3f} s ({n_iter} it, rows evaluated "
                    f"{np.sum(work) / X.shape[0] / max(n_iter - 1, 1):.0%}), labels equal "
                    f"{np.mean(labels == km.labels_):.4%}; seeding {t_sk_seed[-1]:.3f} / "
                    f"{t_ours_seed[-1]:.3f} s, same rows {np.array_equal(idx, ours)}",
                    flush=True,
                )
            print(
                f"{name:12s} K={k:3d}  sklearn {min(t_sk):.3f} s  natgmm {min(t_ours):.3f} s  "
                f"sk/nat {min(t_sk) / min(t_ours):.2f}x  |  seeding sklearn "
                f"{min(t_sk_seed):.3f} s  natgmm {min(t_ours_seed):.3f} s  sk/nat "
                f"{min(t_sk_seed) / min(t_ours_seed):.2f}x",
                flush=True,
            )


def memory_child(variant):
    """Child process: peak RSS above the data of one k-means initialisation."""
    import numpy as np
    from sklearn.cluster import KMeans

    from natgmm import _kernels, _kmeans

    n, k = 1_000_000, 50
    X = _data("separated", n)
    shift, spread = _map(X)
    sw = np.empty(0)
    n_blocks = 64
    # Compile and warm up on a slice, outside the measurement.
    warm_up(_kmeans.kmeans, X[:5000], None, shift, 1 / spread, 5, 0, True)
    KMeans(5, n_init=1, random_state=0).fit(X[:5000])
    baseline = _rss_bytes()
    t = time.perf_counter()
    with _PeakRSS() as peak:
        if variant == "today":
            Xk = (X - shift) / spread
            km = KMeans(k, n_init=1, random_state=0).fit(Xk)
            labels, centres = km.labels_.astype(np.int64), km.cluster_centers_
            del Xk, km
        else:
            labels, centres, _ = _kmeans.kmeans(X, None, shift, 1 / spread, k, 0, True)
        scale = np.full(X.shape[1], 1 / spread)
        _kernels.label_stats(X, sw, shift, scale, labels, centres, n_blocks, True)
    seconds = time.perf_counter() - t
    out = {"extra_mib": (peak.peak - baseline) / 2**20, "data_mib": X.nbytes / 2**20}
    out["seconds"] = seconds
    if variant == "natgmm":
        scale = 1 / spread
        t = time.perf_counter()
        _kmeans.kmeans_plusplus(X, None, shift, scale, k, 0, True)
        out["seeding_all_rows_s"] = time.perf_counter() - t
        rows = np.sort(np.random.default_rng(0).choice(n, 100_000, replace=False))
        sample = X[rows]
        t = time.perf_counter()
        _kmeans.kmeans_plusplus(sample, None, shift, scale, k, 0, True)
        out["seeding_100k_sample_s"] = time.perf_counter() - t
    return out


def memory():
    for variant in ("today", "natgmm"):
        result = subprocess.run(
            [sys.executable, __file__, "--memory-child", variant],
            check=True,
            capture_output=True,
            text=True,
        )
        r = json.loads(result.stdout.strip().splitlines()[-1])
        extra = ", ".join(f"{key} {value:.2f}" for key, value in r.items() if key.endswith("_s"))
        print(
            f"memory N=1e6 D=50 K=50 {variant:7s}: {r['extra_mib']:.0f} MiB above the data "
            f"({r['data_mib']:.0f} MiB), {r['seconds']:.2f} s" + (f"; {extra}" if extra else ""),
            flush=True,
        )


def main():
    parser = cli.parser(__doc__)
    parser.add_argument(
        "--repeats", type=int, default=5, help="fits of each library per case; the best counts"
    )
    parser.add_argument("--memory", action="store_true", help="also the N=1e6 memory case")
    parser.add_argument(
        "--data",
        nargs="+",
        choices=tuple(DATA),
        default=["latents", "overlapping"],
        help="the timing's data sets, space-separated (--data latents separated)",
    )
    parser.add_argument("--single-thread", action="store_true", help="both libraries on one thread")
    parser.add_argument("--memory-child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    cli.check(parser, args.repeats, "--repeats", at_least=1)
    if args.memory_child:
        print(json.dumps(memory_child(args.memory_child)))
        return
    timing(args.data, (20, 50), args.repeats, not args.single_thread)
    if args.memory:
        memory()


if __name__ == "__main__":
    main()
