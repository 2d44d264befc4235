"""Seconds per EM iteration and extra memory: natgmm against scikit-learn.

Both libraries start from the same parameters (taken from a short k-means
fit) and run EM with ``tol=0``. The time per iteration is the difference
between a fit of ``1 + n_iter`` iterations and a fit of one, so set-up costs
that are not EM (scikit-learn's k-means in every fit, natgmm's
standardisation pass and final labelling) cancel. At N = 60000 ``n_iter`` is
``--n-iter`` (20) and each length is the best of five fits; at N = 1e6 it is
a sixth of that (3), natgmm the best of three fits and scikit-learn one.
Both libraries are timed in one fresh subprocess per case, their fits
interleaved, so that a change in the machine's load (this is a shared
virtual machine) hits both alike. Memory is measured in a subprocess per
library: "extra MiB" is the peak resident size during its first fit on all
of the data minus the resident size with the data loaded, kernels compiled
and BLAS warmed up.

An iteration is counted as ``8 N D K`` flops: the log-densities are two
``N x D`` by ``D x K`` products (with ``x`` and ``x ** 2``) and the
statistics two more, each ``2 N D K`` flops, and ``N K`` exponentials.
"GFLOP/s" is natgmm's rate by the flop count. "bound" is the lower bound of
issue #5: the time of those flops at the matrix-product peak plus the time
of those exponentials at numpy's vectorised ``exp`` rate, both measured at
the start of the run (the best of three processes: a 2000 x 2000 product
on all BLAS threads; ``exp`` on one thread, in cache, times the number of
cores), for the dtype of the case; natgmm/bound is the bar of issue #5 (1.5). The scale case fits
N = 1e7, D = 50, K = 100 float32 from a read-only memmap written in chunks
to a temporary directory (natgmm only).

Run from the repository root, with OpenBLAS left to pick its own kernels::

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python benchmarks/bench_em.py

Whole default fits (issue #16): after the per-iteration grid, both libraries
fit with their default settings (k-means initialisation, ``tol=1e-3``) on
FactorAnalysis(50) latents of noisy resampled digits
(``datasets.digits_like_latents``), the time from the call of ``fit`` to its
return, best of three fits at N = 60000 (one at 1e6), interleaved in one
process; the relative difference of the final lower bounds shows that both
fit the same model. The full run adds ``n_init=5``, N = 1e6 and the peak
memory above the data of a whole default fit at N = 1e6, K = 50.

``--quick`` runs the N=60000, D=50, K=50 cases and the N=60000 whole fits
with ``n_init=1`` (the bars); ``--whole-only`` / ``--no-whole`` select;
``--whole-data`` fits another set whole (a name of ``datasets.SPLITS``,
such as ``deformed_mnist_fa``, or your own ``.npz`` / ``.npy`` file, all of
its rows);
``--scale`` adds the memmap case; ``--json FILE`` also writes the rows. The
plot of time per iteration against N (D=50, K=50) is saved in
``benchmarks/results/`` or at ``--plot FILE`` (needs matplotlib; skipped with
a message without it).

Columns of the per-iteration table: ``std`` is the blobs' cluster spread
(``datasets.blobs``' ``cluster_std``: 1 separated, 8 overlapping clusters);
``sk/nat`` is scikit-learn's seconds per
iteration over natgmm's (above 1: natgmm is faster); "extra MiB" as above;
``GFLOP/s`` and ``bound s`` as above; ``nat/bnd`` is natgmm's seconds per
iteration over the bound (1 is the best possible; the bar is 1.5); ``|dLL|``
is the absolute difference of the two libraries' final lower bounds (mean
log-likelihood per sample, nats) after the same iterations from the same
start. Whole fits: ``sk/nat`` as above, the iterations of each, and ``rel
dLL``, that difference over the absolute value of scikit-learn's bound.

Run time: ``--quick`` took 3 min 9 s on 2 quiet cores (2026-12-06, whole
fits included) and more than 4 minutes on one busy core; the full grid
takes hours. Memory is read from ``/proc`` (Linux).
"""

import itertools
import json
import multiprocessing
import os
import platform
import sys
import tempfile
import threading
import time
from concurrent.futures import ProcessPoolExecutor

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import cli  # noqa: E402
import datasets  # noqa: E402
from warm import timed_after_pause, warm_up  # noqa: E402

CASES_QUICK = [
    # (n_samples, n_features, n_components, dtype, cluster_std)
    (60_000, 50, 50, "float64", 1.0),
    (60_000, 50, 50, "float64", 8.0),
    (60_000, 50, 50, "float32", 1.0),
    (60_000, 50, 50, "float32", 8.0),
]
CASES_FULL = CASES_QUICK + [
    (n, d, k, dtype, 1.0)
    for n, d, k, dtype in itertools.product(
        (60_000, 1_000_000), (10, 50), (10, 50, 200), ("float64", "float32")
    )
    if (n, d, k) != (60_000, 50, 50)
]
SCALE_CASE = (10_000_000, 50, 100, "float32", 1.0)
RESULTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")


def _rss_bytes():
    if not os.path.exists("/proc/self/statm"):  # the memory columns read Linux's /proc
        raise OSError("the resident size is read from /proc/self/statm: Linux only")
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
    return datasets.blobs(n_samples, n_features, n_components, cluster_std, dtype=dtype)[0]


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


def _fit_kwargs(X, n_components):
    return dict(covariance_type="diag", tol=0.0, **_start(X, n_components))


def _step_kwargs(name):
    """The per-iteration rows' steps in the data's precision: natgmm's without mixed_precision.

    Its default takes the steps before convergence in float32 for float64
    data; those rows measure float64 steps (and float32 ones on float32
    data). The whole fits run the defaults.
    """
    return {"mixed_precision": False} if name == "natgmm" else {}


def _warm_up(cls, X, n_components, kwargs):
    """Compile (or load) the kernels and wake BLAS on a slice of ``X``."""
    # A slice this small may make sklearn's variances fail; that is fine.
    try:
        warm_up(cls(n_components, **{**kwargs, "max_iter": 1}).fit, X[: 40 * n_components])
    except ValueError:
        pass


def _library(name):
    from sklearn.mixture import GaussianMixture

    from natgmm import NaturalDiagonalGMM

    return {"natgmm": NaturalDiagonalGMM, "sklearn": GaussianMixture}[name]


def memory_case(library, case, n_iter):
    """Child process: peak memory of one library's fit of ``1 + n_iter`` iterations.

    The first fit on all of ``X`` (later ones reuse pages the allocator
    kept), in a process of its own so the other library's pages do not
    count. Also returns the final lower bound, to compare the two.
    """
    import warnings

    import numpy as np

    X = _data(*case)
    n_components = case[2]
    cls = _library(library)
    kwargs = {**_fit_kwargs(X, n_components), **_step_kwargs(library)}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        _warm_up(cls, X, n_components, kwargs)
        baseline = _rss_bytes()
        model = cls(n_components, **{**kwargs, "max_iter": 1 + n_iter})
        with _PeakRSS() as peak:
            model.fit(X)
    return {
        "extra_mib": (peak.peak - baseline) / 2**20,
        "data_mib": X.nbytes / 2**20,
        "lower_bound": float(model.lower_bound_),
        "finite": bool(np.all(np.isfinite(model.means_))),
    }


def timing_case(case, n_iter, repeats):
    """Child process: seconds per iteration of both libraries, fits interleaved.

    Both libraries run in this one process, one fit of each in turn, so that
    a change in the machine's load hits both alike and their ratio is
    measured under the same conditions. ``repeats`` maps each library to its
    number of fits of each length. A pause before each fit lets the other
    library's idle threads (OpenBLAS spins for about 0.1 s after a call) go
    to sleep first.
    """
    import warnings

    X = _data(*case)
    n_components = case[2]
    kwargs = _fit_kwargs(X, n_components)
    libraries = ("sklearn", "natgmm")
    times = {(name, n): [] for name in libraries for n in (1, 1 + n_iter)}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for name in libraries:
            _warm_up(_library(name), X, n_components, kwargs)
        for repeat in range(max(repeats.values())):
            for (name, max_iter), spent in times.items():
                if repeat >= repeats[name]:
                    continue
                model = _library(name)(
                    n_components, **{**kwargs, **_step_kwargs(name), "max_iter": max_iter}
                )
                spent.append(timed_after_pause(model.fit, X)[1])
    result = {}
    for name in libraries:
        seconds = min(times[name, 1 + n_iter]) - min(times[name, 1])
        # Noise (another process's load) can exceed the n_iter iterations:
        # no measurement then, rather than a zero that divides the ratios.
        result[name] = seconds / n_iter if seconds > 0.0 else float("nan")
    return result


def machine_peak():
    """Child process: the machine's matrix-product and exponential rates, per dtype.

    ``gflops``: best GFLOP/s of numpy's 2000 x 2000 product (all BLAS
    threads). ``exp_per_second``: best rate of numpy's vectorised ``exp``
    (one thread, on a block of values of a log-sum-exp's range that stays in
    cache) times the number of cores.
    """
    import numpy as np

    rng = np.random.default_rng(0)
    rates = {}
    for dtype in ("float64", "float32"):
        a = rng.random((2000, 2000)).astype(dtype)
        best = float("inf")
        for _ in range(7):
            t0 = time.perf_counter()
            a @ a
            best = min(best, time.perf_counter() - t0)
        t = rng.uniform(-40.0, 0.0, size=2**15).astype(dtype)
        out = np.empty_like(t)
        best_exp = float("inf")
        for _ in range(7):
            t0 = time.perf_counter()
            for _ in range(100):
                np.exp(t, out=out)
            best_exp = min(best_exp, time.perf_counter() - t0)
        rates[dtype] = {
            "gflops": 2 * 2000**3 / best / 1e9,
            "exp_per_second": 100 * t.size / best_exp * os.cpu_count(),
        }
    return rates


def scale_case(case, n_iter):
    """Child process: natgmm on a read-only float32 memmap written in chunks."""
    import warnings

    import numpy as np

    from natgmm import NaturalDiagonalGMM

    n_samples, n_features, n_components, dtype, cluster_std = case
    rng = np.random.default_rng(0)
    centres = rng.uniform(-10, 10, size=(n_components, n_features))
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "X.f32")
        out = np.lib.format.open_memmap(path, "w+", dtype, (n_samples, n_features))
        for lo in range(0, n_samples, 1_000_000):
            hi = min(lo + 1_000_000, n_samples)
            labels = rng.integers(n_components, size=hi - lo)
            out[lo:hi] = centres[labels] + cluster_std * rng.standard_normal((hi - lo, n_features))
        out.flush()
        del out
        X = np.load(path, mmap_mode="r")
        start = _start(X, n_components)
        kwargs = dict(tol=0.0, **start)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            NaturalDiagonalGMM(n_components, **{**kwargs, "max_iter": 1}).fit(X[:10_000])
            times = []
            with _PeakRSS() as peak:
                for max_iter in (1, 1 + n_iter):
                    t0 = time.perf_counter()
                    NaturalDiagonalGMM(n_components, **{**kwargs, "max_iter": max_iter}).fit(X)
                    times.append(time.perf_counter() - t0)
    return {
        "seconds_per_iter": (times[1] - times[0]) / n_iter,
        "peak_rss_mib": peak.peak / 2**20,
        "data_mib": n_samples * n_features * np.dtype(dtype).itemsize / 2**20,
    }


def _child(function, *args):
    """``function(*args)`` in a fresh process (its own memory, threads and caches)."""
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
        try:
            return pool.submit(function, *args).result()
        except Exception as error:  # report the case's failure in its row, go on
            return {"error": f"{type(error).__name__}: {error}"}


# Whole default fits: (n_samples, n_components, n_init), on FactorAnalysis
# latents of noisy resampled digits (D = 50), the users' case.
WHOLE_QUICK = [(60_000, 20, 1), (60_000, 50, 1)]
WHOLE_FULL = WHOLE_QUICK + [
    (60_000, 20, 5),
    (60_000, 50, 5),
    (1_000_000, 20, 1),
    (1_000_000, 50, 1),
]


def _latents(n_samples):
    return datasets.digits_like_latents(n_samples, 50)[0]


def _whole_data(data, n_samples):
    """The rows of the whole fits: ``datasets.split(data)``'s train rows, or digits-like latents."""
    return _latents(n_samples) if data is None else datasets.split(data).X_train


def whole_fit_case(n_samples, n_components, n_init, repeats, data=None):
    """Child process: whole default fits of both libraries, interleaved.

    Default settings but ``n_components``, ``n_init`` and ``random_state=0``
    (k-means initialisation, ``tol=1e-3``, ``max_iter=100``), timed from the
    call to ``fit`` to its return, the best of ``repeats`` fits each. ``data``:
    see :func:`_whole_data`.
    """
    import warnings

    X = _whole_data(data, n_samples)
    result = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for name in ("sklearn", "natgmm"):  # compile, load caches, wake BLAS
            warm_up(_library(name)(n_components, covariance_type="diag", max_iter=2).fit, X[:5000])
        for _ in range(repeats):
            for name in ("sklearn", "natgmm"):
                model = _library(name)(
                    n_components, covariance_type="diag", n_init=n_init, random_state=0
                )
                _, seconds = timed_after_pause(model.fit, X)
                best = result.get(name, {}).get("seconds", float("inf"))
                result[name] = {
                    "seconds": min(seconds, best),
                    "lower_bound": float(model.lower_bound_),
                    "n_iter": int(model.n_iter_),
                }
    return result


def whole_fit_memory(library, n_samples, n_components):
    """Child process: peak resident size above the data during one whole default fit."""
    import warnings

    X = _latents(n_samples)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        warm_up(_library(library)(n_components, covariance_type="diag", max_iter=2).fit, X[:5000])
        baseline = _rss_bytes()
        with _PeakRSS() as peak:
            _library(library)(n_components, covariance_type="diag", random_state=0).fit(X)
    return {"extra_mib": (peak.peak - baseline) / 2**20, "data_mib": X.nbytes / 2**20}


def _print_whole_fits(cases, memory, data=None):
    """Run the whole-fit cases, print a table and return its rows."""
    label = "digits-like latents, D=50" if data is None else datasets.split(data).description
    print(f"\nWhole default fits (k-means initialisation, tol=1e-3), {label}")
    header = (
        f"{'N':>8s} {'K':>3s} {'n_init':>6s} | {'sklearn s':>9s} {'natgmm s':>8s} {'sk/nat':>6s} | "
        f"{'iters sk/nat':>12s} {'rel dLL':>8s}"
    )
    print(header)
    print("-" * len(header))
    print(
        "(sk/nat: sklearn's seconds over natgmm's, > 1 when natgmm is faster; rel dLL: "
        "|difference of the final lower bounds| / |sklearn's|)",
        flush=True,
    )
    rows = []
    for n, k, n_init in cases:
        repeats = 3 if n <= 100_000 else 1
        r = _child(whole_fit_case, n, k, n_init, repeats, data)
        rows.append({"whole_fit": (n, k, n_init), "data": data, **r})
        if "error" in r:
            print(f"{n:8d} {k:3d} {n_init:6d} | {r['error']}")
            continue
        sk, nat = r["sklearn"], r["natgmm"]
        rel = abs(sk["lower_bound"] - nat["lower_bound"]) / abs(sk["lower_bound"])
        print(
            f"{n:8d} {k:3d} {n_init:6d} | {sk['seconds']:9.3f} {nat['seconds']:8.3f} "
            f"{sk['seconds'] / nat['seconds']:6.1f} | {sk['n_iter']:5d}/{nat['n_iter']:<6d} "
            f"{rel:8.1e}",
            flush=True,
        )
    if memory:
        n, k = 1_000_000, 50
        used = {name: _child(whole_fit_memory, name, n, k) for name in ("sklearn", "natgmm")}
        rows.append({"whole_fit_memory": (n, k), **used})
        print(
            f"memory above the data, whole default fit N={n}, D=50, K={k} "
            f"(data {used['natgmm'].get('data_mib', float('nan')):.0f} MiB): "
            + ", ".join(
                f"{name} {u.get('extra_mib', float('nan')):.1f} MiB" for name, u in used.items()
            )
        )
    return rows


def _plot(rows, path):
    """Save the plot of seconds per iteration against N; False without matplotlib."""
    try:
        import matplotlib
    except ModuleNotFoundError:
        return False

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for dtype, marker in (("float64", "o"), ("float32", "s")):
        picked = sorted(
            (r["case"][0], r) for r in rows
            if "bound_seconds" in r and tuple(r["case"][1:]) == (50, 50, dtype, 1.0)
        )  # fmt: skip
        if not picked:
            continue
        n = [p[0] for p in picked]
        for library, style in (("sklearn", "--"), ("natgmm", "-")):
            t = [p[1]["seconds_per_iter"][library] for p in picked]
            ax.loglog(n, t, style, marker=marker, label=f"{library} {dtype}")
        # The speed-up by each of natgmm's points: with one N (--quick) the
        # lines are single points whose ratio is hard to read off a log axis.
        for x, r in picked:
            sk, nat = r["seconds_per_iter"]["sklearn"], r["seconds_per_iter"]["natgmm"]
            ax.annotate(
                f"{sk / nat:.1f}x", (x, nat), textcoords="offset points", xytext=(6, -3),
                fontsize=8,
            )  # fmt: skip
    ax.set_xlabel("n_samples")
    ax.set_ylabel("seconds per EM iteration")
    cores = cli.usable_cores()
    ax.set_title(f"D = 50, K = 50, {cores} core{'s' if cores > 1 else ''}, well separated blobs")
    ax.legend()
    # When and where: the plot outlives the run's printed header.
    fig.text(
        0.01, 0.01, f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, "
        f"{platform.node()}; labels: sklearn s/it over natgmm's", fontsize=7,
    )  # fmt: skip
    fig.tight_layout(rect=(0, 0.03, 1, 1))
    fig.savefig(path, dpi=120)
    return True


def _known_data(name):
    """Whether ``datasets.split`` can make the whole fits' data ``name``."""
    if name.endswith((".npz", ".npy")):
        return os.path.isfile(name)
    return name in datasets.SPLITS


def main(argv=None):
    """Run the cases and print one row per case."""
    parser = cli.parser(__doc__)
    parser.add_argument(
        "--quick", action="store_true",
        help="per-iteration grid at N=60000, D=50, K=50 only (the whole default fits "
        "still run unless --no-whole)",
    )  # fmt: skip
    parser.add_argument("--scale", action="store_true", help="add the N=1e7 memmap case")
    parser.add_argument(
        "--n-iter",
        type=int,
        default=20,
        help="EM iterations timed at N = 60000 (a sixth, at least 2, at 1e6)",
    )
    parser.add_argument("--json", metavar="FILE", help="also write the rows to this file")
    parser.add_argument(
        "--plot",
        metavar="FILE",
        help="where to save the plot (default: benchmarks/results/bench_em.png, or "
        "bench_em_quick.png with --quick)",
    )
    parser.add_argument("--no-whole", action="store_true", help="skip the whole default fits")
    parser.add_argument("--whole-only", action="store_true", help="only the whole default fits")
    parser.add_argument(
        "--whole-data",
        help="the whole fits' data: a name from datasets.SPLITS (its train rows) or an .npz / "
        ".npy file of your own (X_train or X), all of its rows, K=20 and 50 (default: "
        "digits-like latents)",
    )
    args = parser.parse_args(argv)
    cli.check(parser, args.n_iter, "--n-iter", at_least=1)
    if args.whole_only and args.no_whole:
        parser.error("--whole-only and --no-whole leave nothing to run")
    if args.whole_data and not (args.no_whole or _known_data(args.whole_data)):
        parser.error(
            f"--whole-data: {args.whole_data!r} is neither an existing .npz / .npy file nor one "
            f"of {', '.join(datasets.SPLITS)}"
        )
    per_iteration = not args.whole_only

    import numba
    import threadpoolctl

    blas = threadpoolctl.threadpool_info()
    print(
        f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, load {os.getloadavg()[0]:.1f}, "
        f"cores: {cli.usable_cores()}, kernel threads: {numba.config.NUMBA_NUM_THREADS}, "
        f"BLAS: {[(b['internal_api'], b.get('architecture'), b['num_threads']) for b in blas]}"
    )
    rows = []
    if per_iteration:  # the peak serves the per-iteration rows' bound only
        print("measuring the machine's peak (3 processes, about half a minute)...", flush=True)
        # The best of three processes: a neighbour's load on this shared machine
        # can halve one process's figures, and a low peak would loosen the bound.
        peaks = [_child(machine_peak) for _ in range(3)]
        peak = {
            dtype: {key: max(p[dtype][key] for p in peaks) for key in peaks[0][dtype]}
            for dtype in peaks[0]
        }
        print(
            "machine peak: "
            + "; ".join(
                f"{k} {v['gflops']:.1f} GFLOP/s, {v['exp_per_second'] / 1e9:.2f} G exp/s"
                for k, v in peak.items()
            )
        )
        header = (
            f"{'N':>8s} {'D':>3s} {'K':>4s} {'dtype':>7s} {'std':>4s} | "
            f"{'sklearn s/it':>12s} {'natgmm s/it':>11s} {'sk/nat':>6s} | "
            f"{'sk extra MiB':>12s} {'nat extra MiB':>13s} | "
            f"{'GFLOP/s':>7s} {'bound s':>8s} {'nat/bnd':>7s} | {'|dLL|':>8s}"
        )
        print(header)
        print("-" * len(header))
        print(
            "(sk/nat: sklearn's s/it over natgmm's, > 1 when natgmm is faster; nat/bnd: natgmm's "
            "over the bound, bar <= 1.5; |dLL|: |difference of the final lower bounds|; each row "
            "takes a minute or more)",
            flush=True,
        )
    for case in [] if args.whole_only else CASES_QUICK if args.quick else CASES_FULL:
        small = case[0] <= 100_000
        # Fits at N = 1e6 are long, scikit-learn's very long: fewer iterations
        # there, and repeats of natgmm's fits only (one disturbed fit of
        # each length would otherwise decide its figure).
        if small:
            n_iter, repeats = args.n_iter, {"sklearn": 5, "natgmm": 5}
        else:
            n_iter, repeats = max(2, args.n_iter // 6), {"sklearn": 1, "natgmm": 3}
        memory = {name: _child(memory_case, name, case, n_iter) for name in ("sklearn", "natgmm")}
        timing = _child(timing_case, case, n_iter, repeats)
        row = {"case": case, "memory": memory, "seconds_per_iter": timing, "machine_peak": peak}
        rows.append(row)
        n, d, k, dtype, spread = case
        line = f"{n:8d} {d:3d} {k:4d} {dtype:>7s} {spread:4.1f} | "
        errors = {
            name: r["error"] for name, r in (*memory.items(), ("timing", timing)) if "error" in r
        }
        if errors:
            print(line + "; ".join(f"{name}: {error}" for name, error in errors.items()))
            continue
        sk, nat = timing["sklearn"], timing["natgmm"]
        flops = 8.0 * n * d * k
        bound = flops / (peak[dtype]["gflops"] * 1e9) + n * k / peak[dtype]["exp_per_second"]
        row["bound_seconds"] = bound
        print(
            line + f"{sk:12.4f} {nat:11.4f} {sk / nat:6.1f} | "
            f"{memory['sklearn']['extra_mib']:12.1f} {memory['natgmm']['extra_mib']:13.1f} | "
            f"{flops / nat / 1e9:7.1f} {bound:8.4f} {nat / bound:7.2f} | "
            f"{abs(memory['sklearn']['lower_bound'] - memory['natgmm']['lower_bound']):8.1e}",
            flush=True,
        )
    if not args.no_whole:
        cases = WHOLE_QUICK if args.quick else WHOLE_FULL
        if args.whole_data:
            n = len(datasets.split(args.whole_data).X_train)
            cases = sorted({(n, k, n_init) for _, k, n_init in cases})
        rows += _print_whole_fits(cases, memory=not args.quick, data=args.whole_data)
    if args.scale:
        scale = _child(scale_case, SCALE_CASE, 2)
        rows.append({"case": SCALE_CASE, "natgmm": scale})
        print(f"scale case {SCALE_CASE} from a memmap, natgmm only: {scale}")
    if args.json:  # before the plot, which may fail
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)
        print(f"rows: {args.json}")
    if any("bound_seconds" in r for r in rows):
        os.makedirs(RESULTS, exist_ok=True)
        plot = args.plot or os.path.join(
            RESULTS, "bench_em_quick.png" if args.quick else "bench_em.png"
        )
        if _plot(rows, plot):
            print(f"plot: {plot}")
        else:
            print("plot skipped: matplotlib is not installed (pip install -e '.[benchmarks]')")


if __name__ == "__main__":
    main()
