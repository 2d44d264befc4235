"""Seconds per EM iteration on a Dask LocalCluster against the in-memory fit.

The data, a mixture of ``K`` Gaussian blobs, is generated block by block on
the workers (nothing is gathered) and persisted there; the in-memory fit runs
on a numpy array holding the same rows, made by the same block function in
this process. Both fits start from the same explicit parameters and run with
``tol=0``; the time per iteration is ``(T(n_iter) - T(0)) / n_iter``, which
removes the passes of the standardisation (and, in memory, the final
labelling pass; on Dask ``labels_`` is lazy).

The scheduling overhead per iteration is measured as the time per iteration
of the same Dask fit on blocks of 100 rows each, with the same number of
blocks: the kernel costs next to nothing there, what remains is building the graph,
scheduling the block tasks and the reduction tree, and the round trip of the
statistics.

Needs Dask (``pip install -e '.[benchmarks]'``, or ``'.[dask]'``). Run from
the repository root (``--n-samples`` for smaller runs; ``--n-samples 1e5
--chunk-rows 20000 --n-iter 1`` took 27 s on one core)::

    python benchmarks/bench_dask.py --n-samples 10000000
"""

import logging
import os
import sys
import time
import warnings

import numpy as np
from sklearn.exceptions import ConvergenceWarning

from natgmm import NaturalDiagonalGMM
from natgmm._threading import MIN_PARALLEL_WORK

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from cli import check, optional, parser  # noqa: E402
from warm import warm_up  # noqa: E402

# Imported by main(), which says what to install when they are missing.
dask = da = distributed = None


def make_block(n_rows, n_features, n_components, seed, dtype):
    """Rows of a blob mixture; a pure function of its arguments."""
    rng = np.random.default_rng(seed)
    centres = np.random.default_rng(0).normal(scale=4.0, size=(n_components, n_features))
    labels = rng.integers(n_components, size=n_rows)
    return (centres[labels] + rng.standard_normal((n_rows, n_features))).astype(dtype)


def dask_data(row_chunks, n_features, n_components, dtype):
    blocks = [
        da.from_delayed(
            dask.delayed(make_block)(rows, n_features, n_components, 1 + i, dtype),
            shape=(rows, n_features),
            dtype=dtype,
        )
        for i, rows in enumerate(row_chunks)
    ]
    return da.concatenate(blocks)


def start(n_features, n_components):
    centres = np.random.default_rng(0).normal(scale=4.0, size=(n_components, n_features))
    rng = np.random.default_rng(1)
    return {
        "weights_init": np.full(n_components, 1.0 / n_components),
        "means_init": centres + rng.normal(scale=0.5, size=centres.shape),
        "precisions_init": np.full(centres.shape, 0.8),
    }


def _set_min_parallel_work(value):
    """Set natgmm's limit on serial kernel calls in this process (a Dask worker's)."""
    import natgmm._threading

    natgmm._threading.MIN_PARALLEL_WORK = value


def time_fit(X, n_iter, init):
    model = NaturalDiagonalGMM(len(init["weights_init"]), max_iter=n_iter, tol=0.0, **init)
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        model.fit(X)
    return time.perf_counter() - t0, model


def per_iteration(X, n_iter, init):
    t_none, _ = time_fit(X, 0, init)
    t_all, model = time_fit(X, n_iter, init)
    return (t_all - t_none) / n_iter, model


def main():
    parser_ = parser(__doc__)
    parser_.add_argument(
        "--n-samples", type=float, default=1e7, help="rows (1e7 and 10000000 both work)"
    )
    parser_.add_argument("--n-features", type=int, default=50, help="columns, D")
    parser_.add_argument("--n-components", type=int, default=50, help="blobs and components, K")
    parser_.add_argument("--chunk-rows", type=int, default=500_000, help="rows per Dask block")
    parser_.add_argument(
        "--n-iter", type=int, default=5, help="EM iterations timed (after a fit of none)"
    )
    parser_.add_argument(
        "--dtype", default="float64", choices=["float32", "float64"], help="dtype of the data"
    )
    parser_.add_argument(
        "--skip-in-memory", action="store_true", help="only the Dask fits, not the numpy one"
    )
    args = parser_.parse_args()
    for name in ("n_samples", "n_features", "n_components", "chunk_rows", "n_iter"):
        check(parser_, getattr(args, name), "--" + name.replace("_", "-"), at_least=1)
    global dask, da, distributed
    dask, da = optional("dask", what="bench_dask.py"), optional("dask.array", what="bench_dask.py")
    distributed = optional("distributed", what="bench_dask.py")
    n, d, k = int(args.n_samples), args.n_features, args.n_components
    row_chunks = [args.chunk_rows] * (n // args.chunk_rows)
    if n % args.chunk_rows:
        row_chunks.append(n % args.chunk_rows)
    init = start(d, k)
    gib = n * d * np.dtype(args.dtype).itemsize / 2**30
    print(f"N={n} D={d} K={k} {args.dtype} ({gib:.1f} GiB), {len(row_chunks)} blocks")

    with (
        distributed.LocalCluster(
            n_workers=2,
            threads_per_worker=1,
            processes=True,
            dashboard_address=None,
            silence_logs=logging.ERROR,
        ) as cluster,
        distributed.Client(cluster) as client,
    ):
        # Warm-up: every worker loads the compiled kernels, both variants.
        warm = dask_data([1000] * 4, d, k, args.dtype).persist()
        client.run(_set_min_parallel_work, 0)
        time_fit(warm, 1, init)
        client.run(_set_min_parallel_work, MIN_PARALLEL_WORK)
        time_fit(warm, 1, init)
        t0 = time.perf_counter()
        X = dask_data(row_chunks, d, k, args.dtype).persist()
        distributed.wait(X)
        print(f"generate and persist on the workers: {time.perf_counter() - t0:.1f} s")
        dask_iter, dask_model = per_iteration(X, args.n_iter, init)
        print(f"Dask, 2 workers x 1 thread:       {dask_iter:8.3f} s per EM iteration")
        del X
        tiny = dask_data([100] * len(row_chunks), d, k, args.dtype).persist()
        distributed.wait(tiny)
        overhead, _ = per_iteration(tiny, args.n_iter, init)
        print(f"scheduling overhead ({len(row_chunks)} blocks): {overhead:8.3f} s per EM iteration")
        del tiny

    if not args.skip_in_memory:
        X = np.concatenate(
            [make_block(rows, d, k, 1 + i, args.dtype) for i, rows in enumerate(row_chunks)]
        )
        warm_up(time_fit, X[:1000], 1, init)  # compile both variants
        memory_iter, memory_model = per_iteration(X, args.n_iter, init)
        print(f"in memory, kernel threads:        {memory_iter:8.3f} s per EM iteration")
        gap = dask_iter - memory_iter
        print(f"Dask minus in memory:             {gap:8.3f} s per EM iteration")
        difference = np.max(np.abs(dask_model.means_ - memory_model.means_))
        print(f"largest difference of the means, Dask vs in memory: {difference:.2e}")


if __name__ == "__main__":
    main()
