"""Missing values (#18): quality against imputation and dropping rows, and the cost per iteration.

Quality: data sets with known means, 30% of the entries missing completely at
random, seeds 0-4. For each, the means error (RMS distance of the fitted means
to the true ones, matched by the Hungarian algorithm, each feature in units of
its standard deviation) of

- ``complete``: natgmm on the data before the holes were made;
- ``natgmm``: natgmm on the data with holes (missing entries marginalised);
- ``impute``: scikit-learn ``SimpleImputer(mean)`` + ``GaussianMixture(diag)``;
- ``drop``: ``GaussianMixture(diag)`` on the complete rows only (when there
  are more of them than components);

the NMI of the labels with the truth, and the mean log-likelihood of held-out
rows' observed entries (with the same 30% missing; for the imputation model
its marginal density over the observed entries). The bar: ``natgmm`` within 2x
of ``complete``'s error and at least 3x closer than ``impute``.

Every fit starts from the true means (``means_init``) by default, so that the
errors measure how each method uses the data, not which local optimum one
start happens to reach; ``--start default`` uses each library's default
initialisation instead (k-means; on the imputed data for scikit-learn).

Speed: one EM iteration (the fused E- and M-step) on complete data, and on
the same data with 30% of the entries missing (the masked kernels), N=60000,
D=50, K=50, float64 and float32. The bar: at most 2x. Run with
``--speed-only`` in a checkout before #18 to compare complete data with the
old kernels (the complete path is timed the same way there).

    python benchmarks/bench_missing.py [--quick] [--speed-only | --quality-only]

``--quick`` took about 1.5 minutes on one core (2026-12-06); the full run
(five seeds, N=60000 for the speed) several times that.
"""

import functools
import sys
import time
import warnings
from pathlib import Path

import numpy as np
from scipy.optimize import linear_sum_assignment
from sklearn.datasets import make_blobs
from sklearn.exceptions import ConvergenceWarning
from sklearn.impute import SimpleImputer
from sklearn.metrics import normalized_mutual_info_score
from sklearn.mixture import GaussianMixture

sys.path.insert(0, str(Path(__file__).resolve().parent))

import datasets  # noqa: E402
from cli import check, parser  # noqa: E402
from warm import warm_up_once, warm_up_rows  # noqa: E402

from natgmm import NaturalDiagonalGMM  # noqa: E402

FRACTION = 0.3


def with_holes(X, fraction, seed):
    """``X`` (a copy) with a random ``fraction`` of its entries set to NaN."""
    X = np.array(X, dtype=np.float64)
    X[np.random.default_rng(seed).random(X.shape) < fraction] = np.nan
    return X


def blobs_problem(n_features, n_components, seed):
    """Blobs with features on scales 0.1 to 1000: train and test rows, labels, centres, sds."""
    X, y, centres = make_blobs(
        6000, n_features=n_features, centers=n_components, cluster_std=1.5,
        center_box=(-10, 10), random_state=seed, return_centers=True,
    )  # fmt: skip
    scale = np.geomspace(0.1, 1000.0, n_features)
    X, centres = X * scale, centres * scale
    return X[:5000], X[5000:], y[:5000], y[5000:], centres, np.std(X, axis=0)


def synthetic_problem(overlap, seed):
    """datasets.synthetic_mixture (K=20, D=20): the same tuple as :func:`blobs_problem`."""
    s = datasets.synthetic_mixture(overlap, n_train=10000, n_test=3000, seed=seed)
    return (
        s.X_train, s.X_test, s.y_train, s.y_test, s.truth["means"], np.std(s.X_train, axis=0)
    )  # fmt: skip


PROBLEMS = {
    "blobs D=5 K=4": lambda seed: blobs_problem(5, 4, seed),
    "blobs D=20 K=10": lambda seed: blobs_problem(20, 10, seed),
    "synthetic separated D=20 K=20": lambda seed: synthetic_problem("separated", seed),
    "synthetic overlapping D=20 K=20": lambda seed: synthetic_problem("overlapping", seed),
}


def means_error(means, truth, sd):
    """RMS distance of ``means`` to ``truth`` after the best matching, in units of ``sd``."""
    a, b = means / sd, truth / sd
    cost = ((a[:, np.newaxis] - b[np.newaxis]) ** 2).sum(axis=2)
    rows, cols = linear_sum_assignment(cost)
    return float(np.sqrt(cost[rows, cols].mean()))


def observed_loglik(weights, means, variances, X):
    """Mean log-density of each row's observed entries under a diagonal mixture."""
    seen = ~np.isnan(X)
    x = np.where(seen, X, 0.0)
    terms = np.empty((len(X), len(weights)))
    for k, (w, m, v) in enumerate(zip(weights, means, variances, strict=True)):
        d = -0.5 * ((x - m) ** 2 / v + np.log(2 * np.pi * v))
        terms[:, k] = np.log(w) + np.where(seen, d, 0.0).sum(axis=1)
    return float(np.mean(np.logaddexp.reduce(terms, axis=1)))


def quality_row(problem, seed, n_init, from_truth):
    """One data set and seed: a dict of errors, NMIs and held-out log-likelihoods."""
    X, X_test, y, _, truth, sd = PROBLEMS[problem](seed)
    K = truth.shape[0]
    Xm, Xm_test = with_holes(X, FRACTION, seed), with_holes(X_test, FRACTION, seed + 100)
    row = {}
    init = {"means_init": truth} if from_truth else {}

    def record(name, weights, means, variances, labels, seconds):
        row[name] = {
            "error": means_error(means, truth, sd),
            "nmi": normalized_mutual_info_score(y, labels),
            "test_ll": observed_loglik(weights, means, variances, Xm_test),
            "seconds": seconds,
        }

    for name, data in (("complete", X), ("natgmm", Xm)):
        make = functools.partial(NaturalDiagonalGMM, K, n_init=n_init, random_state=seed, **init)
        # Untimed first, on rows enough for the paths of the timed fit (its
        # float32 steps and threads, its complete or masked kernels): once per
        # problem and kind, as the seeds take the same paths.
        warm_up_once((problem, name, n_init), make().fit, warm_up_rows(data, K))
        start = time.perf_counter()
        model = make().fit(data)
        seconds = time.perf_counter() - start
        record(name, model.weights_, model.means_, model.covariances_, model.predict(data), seconds)

    start = time.perf_counter()
    imputer = SimpleImputer().fit(Xm)
    gm = GaussianMixture(K, covariance_type="diag", n_init=n_init, random_state=seed, **init)
    gm.fit(imputer.transform(Xm))
    labels = gm.predict(imputer.transform(Xm))
    record("impute", gm.weights_, gm.means_, gm.covariances_, labels, time.perf_counter() - start)

    full = ~np.isnan(Xm).any(axis=1)
    if full.sum() > 2 * K:
        start = time.perf_counter()
        gm = GaussianMixture(K, covariance_type="diag", n_init=n_init, random_state=seed, **init)
        gm.fit(Xm[full])
        labels = gm.predict(imputer.transform(Xm))  # every row, holes at the means
        seconds = time.perf_counter() - start
        record("drop", gm.weights_, gm.means_, gm.covariances_, labels, seconds)
    return row, int(full.sum())


def quality(seeds, n_init, from_truth):
    """Print the quality table and return whether the bar holds on every problem."""
    print(f"Quality: {FRACTION:.0%} of entries missing completely at random, seeds {seeds}")
    print("every fit started from the true means" if from_truth else "default starts")
    print("means error in feature standard deviations (lower is better); median over seeds\n")
    header = (
        f"{'data':34s} {'method':9s} {'error':>7s} {'NMI':>6s} {'test ll':>9s} {'time':>7s}"
        f"  {'ratios'}"
    )
    print(header)
    print("-" * len(header))
    ok = True
    for problem in PROBLEMS:
        results = [quality_row(problem, seed, n_init, from_truth) for seed in seeds]
        rows, kept = zip(*results, strict=True)
        for method in ("complete", "natgmm", "impute", "drop"):
            got = [r[method] for r in rows if method in r]
            if not got:
                print(f"{problem:34s} {method:9s}   (at most {max(kept)} complete rows: no fit)")
                continue
            med = {key: float(np.median([g[key] for g in got])) for key in got[0]}
            note = ""
            if method == "natgmm":
                to_complete = [r["natgmm"]["error"] / r["complete"]["error"] for r in rows]
                to_impute = [r["impute"]["error"] / r["natgmm"]["error"] for r in rows]
                holds = max(to_complete) <= 2.0 and min(to_impute) >= 3.0
                ok &= holds
                note = (
                    f"  /complete max {max(to_complete):.2f} (bar <= 2); impute/natgmm min "
                    f"{min(to_impute):.1f} (bar >= 3): {'met' if holds else 'NOT met'}"
                )
            print(
                f"{problem:34s} {method:9s} {med['error']:7.3f} {med['nmi']:6.3f} "
                f"{med['test_ll']:9.3f} {med['seconds']:6.2f}s{note}"
            )
        print()
    return ok


def per_iteration(X, K, repeat):
    """Best seconds of one float64 EM iteration (6 iterations' fit less 1's, over 5).

    In the data's precision (``mixed_precision=False``): the default takes
    a float64 fit's steps before the last in float32.
    """
    warnings.simplefilter("ignore", ConvergenceWarning)
    kwargs = dict(random_state=0, tol=0, init_params="random", mixed_precision=False)
    NaturalDiagonalGMM(K, max_iter=3, **kwargs).fit(X)
    times = []
    for _ in range(repeat):
        fits = {}
        for n_iter in (1, 6):
            m = NaturalDiagonalGMM(K, max_iter=n_iter, **kwargs)
            start = time.perf_counter()
            m.fit(X)
            fits[n_iter] = time.perf_counter() - start
        times.append((fits[6] - fits[1]) / 5)
    return min(times)


def speed(n_samples, repeat):
    """Print per-iteration times, complete against 30% missing."""
    X, _ = datasets.digits_like_latents(n_samples)
    K = 50
    print(f"Speed: one EM iteration, N={n_samples}, D={X.shape[1]}, K={K} (best of {repeat})")
    ok = True
    for dtype in (np.float64, np.float32):
        Xc = X.astype(dtype)
        complete = per_iteration(Xc, K, repeat)
        line = f"  {np.dtype(dtype).name}: complete {complete * 1e3:6.1f} ms"
        try:
            Xm = with_holes(X, FRACTION, 0).astype(dtype)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                holed = per_iteration(Xm, K, repeat)
        except ValueError as error:  # a natgmm before #18
            line += f"   (missing values not supported: {str(error)[:40]}...)"
        else:
            ratio = holed / complete
            ok &= ratio <= 2.0
            line += f"   30% missing {holed * 1e3:6.1f} ms   ratio {ratio:.2f} (bar <= 2)"
        print(line)
    return ok


def main():
    """Run the benchmark."""
    parser_ = parser(__doc__)
    parser_.add_argument("--quick", action="store_true", help="seeds 0-1, N=20000 for speed")
    only = parser_.add_mutually_exclusive_group()
    only.add_argument("--speed-only", action="store_true", help="only the time per iteration")
    only.add_argument("--quality-only", action="store_true", help="only the quality table")
    parser_.add_argument("--n-init", type=int, default=1, help="n_init of every quality fit")
    parser_.add_argument(
        "--start", choices=["truth", "default"], default="truth",
        help="start every fit from the true means, or each library's default",
    )  # fmt: skip
    args = parser_.parse_args()
    check(parser_, args.n_init, "--n-init", at_least=1)
    seeds = [0, 1] if args.quick else [0, 1, 2, 3, 4]
    verdicts = []
    if not args.speed_only:
        verdicts.append(("quality", quality(seeds, args.n_init, args.start == "truth")))
    if not args.quality_only:
        verdicts.append(("speed", speed(20000 if args.quick else 60000, 3 if args.quick else 5)))
    for name, ok in verdicts:
        print(f"{name}: bar {'met' if ok else 'NOT met'}")


if __name__ == "__main__":
    main()
