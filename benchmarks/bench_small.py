"""Small data and few-row predictions: the times a new user sees first.

Fits on scikit-learn's bundled data sets (iris, wine, breast cancer, digits;
all rows, float64, in their own units) against
``GaussianMixture(covariance_type="diag")`` from the same ``random_state``:
a default fit against ``n_init=1`` (the same start and iterations, so the
same model), and an annealed fit (``annealing="temperature"``) against
``n_init=5``. Then the latency of ``predict``, ``predict_proba`` and
``score_samples`` on 1 and 10 rows, of a K = 3 model of iris and of a
K = 20 model of 20 000 x 50 digits-like latents, against scikit-learn's
model of the same data.

Both libraries run in one process, in alternation, after a warm-up; each
figure is the median over ``--reps`` calls (fits) or ``--calls`` calls
(predictions). On data this small every natgmm kernel call runs on the
calling thread, and the time is mostly Python: parameter validation (the
same scikit-learn code in both), the k-means start and the per-iteration
work around the kernels; a prediction on a few plain rows skips
scikit-learn's generic input checks (doc/performance.rst). ``nat/sk`` is
natgmm's time over scikit-learn's (below 1: natgmm is faster; the other
benchmarks print the reverse, scikit-learn's over natgmm's, as a speed-up);
``it`` the EM iterations of each, ``ll`` natgmm's mean log-likelihood minus
scikit-learn's on the training rows.
About 40 s with the defaults. Run from the repository root::

    python benchmarks/bench_small.py [--reps 21] [--calls 2000]
"""

import functools
import os
import sys
import time
import warnings

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import cli  # noqa: E402
from warm import warm_up  # noqa: E402

# (name, loader, n_components) of the fits.
FITS = (
    ("iris", "load_iris", 3),
    ("wine", "load_wine", 3),
    ("wine", "load_wine", 10),
    ("breast cancer", "load_breast_cancer", 3),
    ("breast cancer", "load_breast_cancer", 10),
    ("digits", "load_digits", 10),
)


def _load(loader):
    import sklearn.datasets

    return getattr(sklearn.datasets, loader)(return_X_y=True)[0].astype(np.float64)


def _alternating(calls, reps):
    """Call each of ``calls`` in turn, ``reps`` rounds: each one's median seconds, last results."""
    times = [[] for _ in calls]
    results = [None] * len(calls)
    for _ in range(reps):
        for i, call in enumerate(calls):
            start = time.perf_counter()
            results[i] = call()
            times[i].append(time.perf_counter() - start)
    return [float(np.median(t)) for t in times], results


def fits(reps, annealed=(False, True)):
    """Print the fits' table: default fits, annealed fits or (``annealed``) both."""
    from sklearn.mixture import GaussianMixture

    from natgmm import NaturalDiagonalGMM

    print("fits: natgmm against GaussianMixture(covariance_type='diag'), median of", reps)
    header = f"{'data':14s} {'rows x D':>10s}  K  {'fit':22s} {'natgmm ms':>9s} {'sk ms':>8s} "
    print(header + f"{'nat/sk':>6s} {'it':>9s} {'ll':>8s}")
    for name, loader, k in FITS:
        X = _load(loader)
        for anneal in annealed:
            extra = {"annealing": "temperature"} if anneal else {}
            n_init = 5 if anneal else 1

            def ours(X=X, k=k, extra=extra):
                return NaturalDiagonalGMM(k, random_state=0, **extra).fit(X)

            def theirs(X=X, k=k, n_init=n_init):
                return GaussianMixture(
                    k, covariance_type="diag", random_state=0, n_init=n_init
                ).fit(X)

            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # reg_covar and convergence: the same for both
                warm_up(ours)
                warm_up(theirs)
                (t_ours, t_theirs), (model, reference) = _alternating((ours, theirs), reps)
            what = "annealed vs n_init=5" if anneal else "default vs n_init=1"
            rows = f"{X.shape[0]} x {X.shape[1]}"
            gap = model.score(X) - reference.score(X)
            print(
                f"{name:14s} {rows:>10s} {k:2d}  {what:22s} {t_ours * 1e3:9.2f} "
                f"{t_theirs * 1e3:8.2f} {t_ours / t_theirs:6.2f} "
                f"{model.n_iter_:4d}/{reference.n_iter_:<4d} {gap:+8.3f}",
                flush=True,
            )


def latency(calls):
    """Print the predictions' table."""
    from datasets import digits_like_latents
    from sklearn.mixture import GaussianMixture

    from natgmm import NaturalDiagonalGMM

    print(f"\npredictions: median of {calls} calls, microseconds")
    print(f"{'model':28s} {'method':14s} {'rows':>4s} {'natgmm':>8s} {'sk':>8s} {'nat/sk':>6s}")
    models = (
        ("iris, K=3", _load("load_iris"), 3),
        ("latents 20000 x 50, K=20", digits_like_latents(20000, 50)[0], 20),
    )
    for name, X, k in models:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ours = NaturalDiagonalGMM(k, random_state=0, max_iter=20).fit(X)
            theirs = GaussianMixture(k, covariance_type="diag", random_state=0, max_iter=20)
            theirs.fit(X)
        for method in ("predict", "predict_proba", "score_samples"):
            for n_rows in (1, 10):
                rows = np.ascontiguousarray(X[:n_rows])
                pair = tuple(functools.partial(getattr(m, method), rows) for m in (ours, theirs))
                # A round before the timed one: the first hundreds of calls of a
                # case ran slower (caches, the allocator), whichever came first.
                _alternating(pair, calls // 4 + 1)
                (t_ours, t_theirs), _ = _alternating(pair, calls)
                print(
                    f"{name:28s} {method:14s} {n_rows:4d} {t_ours * 1e6:8.1f} "
                    f"{t_theirs * 1e6:8.1f} {t_ours / t_theirs:6.2f}",
                    flush=True,
                )


def main(argv=None):
    parser = cli.parser(__doc__)
    parser.add_argument("--reps", type=int, default=21, help="fits timed per case and library")
    parser.add_argument(
        "--calls", type=int, default=2000, help="predictions timed per case and library"
    )
    parser.add_argument("--fits-only", action="store_true", help="skip the predictions")
    args = parser.parse_args(argv)
    cli.check(parser, args.reps, "--reps", at_least=1)
    cli.check(parser, args.calls, "--calls", at_least=1)
    fits(args.reps)
    if not args.fits_only:
        latency(args.calls)


if __name__ == "__main__":
    main()
