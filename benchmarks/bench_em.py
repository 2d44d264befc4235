"""Seconds per EM iteration and extra memory: natgmm against scikit-learn.

Both libraries start from the same parameters (taken from a short k-means
fit) and run a fixed number of EM iterations with ``tol=0``, so only EM is
timed. Each (library, case) runs in a fresh subprocess that samples its own
resident set size while fitting; "extra MiB" is the peak during the fit
minus the resident size with the data loaded, kernels compiled and BLAS
warmed up.

Run from the repository root, with OpenBLAS left to pick its own kernels::

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python benchmarks/bench_em.py

``--quick`` runs the N=60000, D=50, K=50 cases only (the bars of the core
issue); ``--json FILE`` also writes the rows.
"""

import argparse
import json
import os
import subprocess
import sys
import threading
import time

CASES_QUICK = [
    # (n_samples, n_features, n_components, dtype, cluster_std)
    (60_000, 50, 50, "float64", 1.0),
    (60_000, 50, 50, "float64", 8.0),
    (60_000, 50, 50, "float32", 1.0),
    (60_000, 50, 50, "float32", 8.0),
]
CASES_FULL = CASES_QUICK + [
    (60_000, 10, 10, "float64", 1.0),
    (60_000, 50, 200, "float64", 1.0),
    (1_000_000, 50, 50, "float64", 1.0),
    (1_000_000, 50, 50, "float32", 1.0),
]


def _rss_bytes():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


class _PeakRSS:
    """Sample the resident set size every millisecond in a thread."""

    def __enter__(self):
        self.peak = _rss_bytes()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def _run(self):
        while not self._stop.wait(0.001):
            self.peak = max(self.peak, _rss_bytes())

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, _rss_bytes())


def _data(n_samples, n_features, n_components, dtype, cluster_std):
    import numpy as np
    from sklearn.datasets import make_blobs

    X, _ = make_blobs(
        n_samples=n_samples,
        n_features=n_features,
        centers=n_components,
        cluster_std=cluster_std,
        center_box=(-10, 10),
        random_state=0,
    )
    return np.ascontiguousarray(X, dtype=dtype)


def _start(X, n_components):
    """Initial parameters both libraries share: two EM steps from k-means on a subsample."""
    import warnings

    import numpy as np
    from sklearn.mixture import GaussianMixture

    rng = np.random.default_rng(0)
    sub = X[rng.choice(len(X), min(len(X), 20_000), replace=False)].astype(np.float64)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        gm = GaussianMixture(n_components, covariance_type="diag", max_iter=2, random_state=0)
        gm.fit(sub)
    return dict(weights_init=gm.weights_, means_init=gm.means_, precisions_init=gm.precisions_)


def run_case(library, case, n_iter):
    """Child process: fit one library on one case and return its figures."""
    import warnings

    import numpy as np
    from sklearn.mixture import GaussianMixture

    from natgmm import NaturalDiagonalGMM

    n_samples, n_features, n_components, dtype, cluster_std = case
    X = _data(*case)
    start = _start(X, n_components)
    cls = NaturalDiagonalGMM if library == "natgmm" else GaussianMixture
    kwargs = dict(covariance_type="diag", max_iter=n_iter, tol=0.0, **start)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        # Warm-up on a slice: compiles (or loads) the kernels, wakes BLAS.
        # A slice this small may make sklearn's variances fail; that is fine.
        try:
            cls(n_components, **{**kwargs, "max_iter": 1}).fit(X[: 40 * n_components])
        except ValueError:
            pass
        baseline = _rss_bytes()
        model = cls(n_components, **kwargs)
        with _PeakRSS() as peak:
            t0 = time.perf_counter()
            model.fit(X)
            seconds = time.perf_counter() - t0
    return {
        "seconds_per_iter": seconds / n_iter,
        "extra_mib": (peak.peak - baseline) / 2**20,
        "data_mib": X.nbytes / 2**20,
        "lower_bound": float(model.lower_bound_),
        "finite": bool(np.all(np.isfinite(model.means_))),
    }


def _child(library, case, n_iter):
    code = (
        "import json, sys; sys.path.insert(0, 'benchmarks'); import bench_em; "
        f"print(json.dumps(bench_em.run_case({library!r}, {tuple(case)!r}, {n_iter})))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    if result.returncode:
        return {"error": result.stderr.strip().splitlines()[-1]}
    return json.loads(result.stdout.strip().splitlines()[-1])


def main(argv=None):
    """Run the cases and print one row per case."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="N=60000, D=50, K=50 only")
    parser.add_argument("--n-iter", type=int, default=10, help="EM iterations timed")
    parser.add_argument("--json", help="also write the rows to this file")
    args = parser.parse_args(argv)

    import numba
    import threadpoolctl

    blas = threadpoolctl.threadpool_info()
    print(
        f"cores: {os.cpu_count()}, numba threads: {numba.config.NUMBA_NUM_THREADS}, "
        f"BLAS: {[(b['internal_api'], b.get('architecture'), b['num_threads']) for b in blas]}"
    )
    header = (
        f"{'N':>9s} {'D':>3s} {'K':>4s} {'dtype':>7s} {'std':>4s} | "
        f"{'sklearn s/it':>12s} {'natgmm s/it':>12s} {'ratio':>6s} | "
        f"{'sk extra MiB':>12s} {'nat extra MiB':>13s} | {'|dLL|':>8s}"
    )
    print(header)
    print("-" * len(header))
    rows = []
    for case in CASES_QUICK if args.quick else CASES_FULL:
        n_iter = args.n_iter if case[0] <= 100_000 else max(2, args.n_iter // 5)
        sk = _child("sklearn", case, n_iter)
        nat = _child("natgmm", case, n_iter)
        row = {"case": case, "sklearn": sk, "natgmm": nat}
        rows.append(row)
        n, d, k, dtype, spread = case
        line = f"{n:9d} {d:3d} {k:4d} {dtype:>7s} {spread:4.1f} | "
        if "error" in sk or "error" in nat:
            print(line + f"sklearn: {sk.get('error', 'ok')}; natgmm: {nat.get('error', 'ok')}")
            continue
        print(
            line + f"{sk['seconds_per_iter']:12.4f} {nat['seconds_per_iter']:12.4f} "
            f"{sk['seconds_per_iter'] / nat['seconds_per_iter']:6.1f} | "
            f"{sk['extra_mib']:12.1f} {nat['extra_mib']:13.1f} | "
            f"{abs(sk['lower_bound'] - nat['lower_bound']):8.1e}",
            flush=True,
        )
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)


if __name__ == "__main__":
    main()
