"""Stability sweep: does clustering quality hold up during the fit, for every seed?

Grid: K in {20, 50} x variance floor in {0.01, 0.1, 1.0} (standardised units:
a fraction of each latent's variance) x ``lower_precision_reg`` in {0, 1e-4,
1e-3, 1e-2} x random seeds {0, 1, 2}, on FactorAnalysis(50) latents (fitted
on the training split). Data: sklearn's digits (default; a stratified 75/25
split with ``random_state=0``), ``--data file.npz`` with ``X_train``,
``y_train``, ``X_test``, ``y_test``, or ``--mnist`` (``fetch_openml``, the
usual 60000/10000 split; needs the network). ``--raw-scale`` multiplies each
latent dimension by a factor drawn from [40, 80] (seed 0), the scale of
latents straight out of a factor-analysis model.

Every fit continues by ``warm_start`` with ``tol=0`` from one checkpoint to
the next, and the NMI of the training labels (``predict``) with the classes
is recorded after 1, 5, 10, 25, 50 and 100 iterations (for
``solver="minibatch"`` an iteration is a pass over the data). The initial
NMI is the NMI at the first checkpoint. A run is *stable* if its NMI at
every checkpoint is at least 90% of its initial NMI, and it *collapses* if
a parameter is ever non-finite (or a variance not positive) or the fit
raises on non-finite values (an ill-defined covariance, a floating-point or
linear-algebra error). A fit that refuses finite parameters with another
ValueError (such as "variances cannot be represented") is a *refusal*,
counted in its own column; collapsed and refused runs are not stable. An
invalid argument (``--ks 0``) stops the sweep with an error before any fit. A
setting is stable if all its seeds are. The test NMI is that of
``predict(X_test)`` after the last checkpoint.

Columns: ``min_variance_relative`` is the floor (the research name
``lat_min_var``; ``em+wrapper``: the same number as ``min_variance`` of the
inner model, in standardised units), ``lower_precision_reg`` the prior
(``lwr_prs_reg``); ``NMI@c`` the mean NMI after
``c`` iterations over the runs that neither collapsed nor were refused;
``final sd`` their standard deviation at the last checkpoint; ``worst
ratio`` the smallest, over those runs, of the lowest NMI over the first
checkpoint's (stable needs at least 0.9); ``seconds`` the setting's wall
time over all seeds.

Rows, one per setting and solver (``--solvers``, default all; ``em`` runs
the whole grid, the other solvers run at ``em``'s recommended setting, or
the whole grid with ``--full-grid`` or without ``em``):

- ``em``: ``NaturalDiagonalGMM(min_variance_relative=floor)``, batch EM;
- ``em+wrapper``: ``StandardizedGMM(NaturalDiagonalGMM(min_variance=floor))``,
  the same floors given in absolute units to a model fitted on standardised
  latents (k-means then starts in standardised units too);
- ``minibatch``: online EM with batches of 256 rows;
- ``gradient``: generalised EM with 100 Adam steps (learning rate 0.01) per
  E-step;

and, for each K, a reference row ``sklearn`` for
``GaussianMixture(covariance_type="diag", n_init=5)`` (no floors or prior;
the first checkpoint keeps the best of its 5 starts after one iteration).

The *recommended* setting of a solver is, among its settings that are
stable for every seed, the one with the largest mean final training NMI
(ties: the smaller K, then the larger floor and prior). The table is
printed and written to ``--out`` (default ``benchmarks/results/stability.md``
next to this script, or ``stability_raw.md`` with ``--raw-scale``).

On digits with ``--n-jobs 1`` (one BLAS and one numba thread), two runs
side by side on 2 busy cores took 170-195 s each by default and about 490 s
each with ``--full-grid`` (2026-12-01); with the kernels of 2026-12-07, one
default run on 2 quiet cores took 23 s. Run from the repository root::

    python benchmarks/bench_stability.py [--raw-scale] [--solvers em,gradient]
"""

import sys
import time
import warnings
from itertools import product
from pathlib import Path

import numpy as np
from sklearn.datasets import fetch_openml, load_digits
from sklearn.decomposition import FactorAnalysis
from sklearn.exceptions import ConvergenceWarning
from sklearn.metrics import normalized_mutual_info_score
from sklearn.mixture import GaussianMixture
from sklearn.model_selection import train_test_split
from sklearn.utils._param_validation import InvalidParameterError
from threadpoolctl import threadpool_limits

from natgmm import NaturalDiagonalGMM, StandardizedGMM

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from cli import check, comma_list, parser  # noqa: E402

KS = (20, 50)
FLOORS = (0.01, 0.1, 1.0)
PRIORS = (0.0, 1e-4, 1e-3, 1e-2)
SEEDS = (0, 1, 2)
CHECKPOINTS = (1, 5, 10, 25, 50, 100)
STABLE_RATIO = 0.9
SOLVERS = {
    "em": dict(solver="em"),
    "em+wrapper": dict(solver="em"),
    "minibatch": dict(solver="minibatch", batch_size=256),
    "gradient": dict(solver="gradient", learning_rate=0.01, gradient_steps=100),
}
_PARAMETERS = ("weights_", "means_", "covariances_")
# ValueErrors that report non-finite or non-positive results: collapses, not refusals
# (natgmm's IllDefinedCovariance has scikit-learn's "ill-defined" message).
_COLLAPSE_MESSAGES = ("ill-defined empirical covariance", "NaN", "infinity", "non-finite")


def load_data(args):
    """Return X_train, y_train, X_test, y_test from the chosen source."""
    if args.data:
        data = np.load(args.data)
        return data["X_train"], data["y_train"], data["X_test"], data["y_test"]
    if args.mnist:
        try:
            X, y = fetch_openml("mnist_784", version=1, return_X_y=True, as_frame=False)
        except OSError as error:  # URLError and friends: no network
            sys.exit(f"Cannot download MNIST with fetch_openml ({error}); use --data file.npz.")
        X = X / 255.0
        return X[:60000], y[:60000], X[60000:], y[60000:]
    X, y = load_digits(return_X_y=True)
    X_train, X_test, y_train, y_test = train_test_split(
        X, y, test_size=0.25, stratify=y, random_state=0
    )
    return X_train, y_train, X_test, y_test


def latents(args):
    """FactorAnalysis latents of the train and test splits, optionally raw-scaled."""
    X_train, y_train, X_test, y_test = load_data(args)
    fa = FactorAnalysis(args.n_factors, svd_method="lapack", random_state=0).fit(X_train)
    Z_train, Z_test = fa.transform(X_train), fa.transform(X_test)
    if args.raw_scale:
        factors = np.random.default_rng(0).uniform(40, 80, args.n_factors)
        Z_train, Z_test = Z_train * factors, Z_test * factors
    return Z_train, y_train, Z_test, y_test


def make_model(solver, k, floor, prior, seed, n_jobs):
    """An unfitted model of one grid cell, continuing by warm start."""
    common = dict(random_state=seed, warm_start=True, tol=0.0)
    if solver == "sklearn":
        return GaussianMixture(k, covariance_type="diag", n_init=5, **common)
    common.update(lower_precision_reg=prior, n_jobs=n_jobs)
    if solver == "em+wrapper":
        return StandardizedGMM(NaturalDiagonalGMM(k, min_variance=floor, **common))
    return NaturalDiagonalGMM(k, min_variance_relative=floor, **common, **SOLVERS[solver])


def _finite(model):
    arrays = [getattr(model, name) for name in _PARAMETERS]
    return all(np.all(np.isfinite(a)) for a in arrays) and np.all(model.covariances_ > 0)


def _outcome(error):
    """Whether a fit's exception is "collapsed" or "refused"; invalid parameters propagate."""
    if isinstance(error, InvalidParameterError):
        raise error  # a bad grid value is the user's error, not an outcome
    if isinstance(error, FloatingPointError | np.linalg.LinAlgError):
        return "collapsed"
    if any(text in str(error) for text in _COLLAPSE_MESSAGES):
        return "collapsed"
    return "refused"


def run(model, data, checkpoints):
    """NMI at each checkpoint, final test NMI and None, "collapsed" or "refused"."""
    Z_train, y_train, Z_test, y_test = data
    nmi, done = [], 0
    for checkpoint in checkpoints:
        steps = checkpoint - done
        if isinstance(model, StandardizedGMM):
            model.set_params(estimator__max_iter=steps)
        else:
            model.set_params(max_iter=steps)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", ConvergenceWarning)
                # The grid's largest floor, 1, on purpose: its warning once per
                # fit and checkpoint would bury the table.
                warnings.filterwarnings("ignore", "min_variance_relative=", UserWarning)
                model.fit(Z_train)
        except (ValueError, FloatingPointError, np.linalg.LinAlgError) as error:
            return nmi, np.nan, _outcome(error)
        if not _finite(model):
            return nmi, np.nan, "collapsed"
        nmi.append(normalized_mutual_info_score(y_train, model.predict(Z_train)))
        done = checkpoint
    return nmi, normalized_mutual_info_score(y_test, model.predict(Z_test)), None


def sweep_cell(solver, k, floor, prior, data, args):
    """All seeds of one setting: a summary row."""
    start = time.perf_counter()
    curves, tests, collapses, refusals, stable = [], [], 0, 0, 0
    for seed in args.seeds:
        model = make_model(solver, k, floor, prior, seed, args.n_jobs)
        nmi, test_nmi, failed = run(model, data, args.checkpoints)
        collapses += failed == "collapsed"
        refusals += failed == "refused"
        if failed is None:
            curves.append(nmi)
            tests.append(test_nmi)
            stable += min(nmi) >= STABLE_RATIO * nmi[0]
    curves = np.array(curves).reshape(-1, len(args.checkpoints))
    return {
        "solver": solver,
        "K": k,
        "floor": floor,
        "prior": prior,
        "stable": stable,
        "collapses": collapses,
        "refusals": refusals,
        "nmi": curves.mean(axis=0) if len(curves) else np.full(len(args.checkpoints), np.nan),
        "final_sd": curves[:, -1].std() if len(curves) else np.nan,
        "worst_ratio": (curves.min(axis=1) / curves[:, 0]).min() if len(curves) else np.nan,
        "test": np.mean(tests) if tests else np.nan,
        "seconds": time.perf_counter() - start,
    }


def recommended(rows, n_seeds):
    """The stable-for-every-seed setting with the best mean final NMI, or None."""
    stable = [r for r in rows if r["stable"] == n_seeds]
    if not stable:
        return None
    return max(stable, key=lambda r: (r["nmi"][-1], -r["K"], r["floor"], r["prior"]))


def _fmt(value, spec=".3f"):
    return (
        "-"
        if value is None or (isinstance(value, float) and np.isnan(value))
        else f"{value:{spec}}"
    )


def table(rows, args):
    """Markdown table of the summary rows."""
    nmi_cols = [f"NMI@{c}" for c in args.checkpoints]
    header = ["solver", "K", "min_variance_relative", "lower_precision_reg", "stable seeds"]
    header += ["collapses", "refusals"]
    header += nmi_cols + ["final sd", "worst ratio", "test NMI", "seconds"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for r in rows:
        cells = [
            r["solver"],
            str(r["K"]),
            "-" if r["solver"] == "sklearn" else f"{r['floor']:g}",
            "-" if r["solver"] == "sklearn" else f"{r['prior']:g}",
            f"{r['stable']}/{len(args.seeds)}",
            str(r["collapses"]),
            str(r["refusals"]),
            *[_fmt(v) for v in r["nmi"]],
            _fmt(r["final_sd"]),
            _fmt(r["worst_ratio"]),
            _fmt(r["test"]),
            _fmt(r["seconds"], ".1f"),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _describe(row):
    if row is None:
        return "none (no setting is stable for every seed)"
    return (
        f"K={row['K']}, min_variance_relative={row['floor']:g}, "
        f"lower_precision_reg={row['prior']:g} "
        f"(final NMI {row['nmi'][-1]:.3f}, test NMI {row['test']:.3f})"
    )


def main(argv=None):
    """Run the sweep, print and write the markdown table."""
    parser_ = parser(__doc__)
    source = parser_.add_mutually_exclusive_group()
    source.add_argument("--data", help=".npz file with X_train, y_train, X_test, y_test")
    source.add_argument(
        "--mnist",
        action="store_true",
        help="MNIST via fetch_openml: downloads it from openml.org (tens of MB) on first use",
    )
    parser_.add_argument("--raw-scale", action="store_true", help="latents times [40, 80]")

    def joined(values):  # the defaults as they are typed
        return ",".join(f"{v:g}" if isinstance(v, float) else str(v) for v in values)

    lists = (
        ("--solvers", comma_list(str, tuple(SOLVERS)), SOLVERS, "solvers"),
        ("--ks", comma_list(int), KS, "numbers of components"),
        ("--floors", comma_list(float), FLOORS, "min_variance_relative values"),
        ("--priors", comma_list(float), PRIORS, "lower_precision_reg values"),
        ("--seeds", comma_list(int), SEEDS, "random_state values"),
        ("--checkpoints", comma_list(int), CHECKPOINTS, "iterations at which the NMI is read"),
    )
    for option, kind, default, what in lists:
        parser_.add_argument(
            option, type=kind, default=joined(default), help=f"{what}, comma-separated"
        )
    parser_.add_argument(
        "--n-factors", type=int, default=50, help="FactorAnalysis components: the latents' D"
    )
    parser_.add_argument(
        "--n-jobs", type=int, default=None, help="kernel threads per fit (n_jobs; None: all)"
    )
    parser_.add_argument(
        "--full-grid", action="store_true", help="the whole grid for every solver, not only em"
    )
    parser_.add_argument("--no-reference", action="store_true", help="skip the sklearn rows")
    parser_.add_argument(
        "--out",
        type=Path,
        default=None,
        help="markdown file of the table (None: benchmarks/results/stability.md, or "
        "stability_raw.md with --raw-scale)",
    )
    args = parser_.parse_args(argv)
    check(parser_, args.ks, "--ks", at_least=1)
    check(parser_, args.seeds, "--seeds", at_least=0)
    check(parser_, args.floors, "--floors", at_least=0)
    check(parser_, args.priors, "--priors", at_least=0)
    check(parser_, args.n_factors, "--n-factors", at_least=1)
    check(parser_, args.data, "--data", file=True)
    if args.checkpoints[0] < 1 or list(args.checkpoints) != sorted(set(args.checkpoints)):
        parser_.error("--checkpoints must be increasing iteration counts >= 1")

    start = time.perf_counter()
    # One BLAS thread: on a small shared machine, BLAS threads waiting for a
    # busy core make the factor analysis ten times slower.
    with threadpool_limits(1, user_api="blas"):
        data = latents(args)
    Z_train = data[0]
    print(
        f"{len(Z_train)} training and {len(data[2])} test latents of dimension "
        f"{Z_train.shape[1]}; per-dimension std {Z_train.std(axis=0).min():.2f} to "
        f"{Z_train.std(axis=0).max():.2f}",
        flush=True,
    )
    rows = []
    # The header first: each setting's row is printed as soon as it is done.
    print("Each setting as it ends (the whole table, with scikit-learn's rows, follows):")
    print("\n".join(table([], args).splitlines()[:2]), flush=True)
    grid = list(product(args.ks, args.floors, args.priors))
    for solver in args.solvers:
        cells = grid
        if solver != "em" and "em" in args.solvers and not args.full_grid:
            best = recommended([r for r in rows if r["solver"] == "em"], len(args.seeds))
            cells = [] if best is None else [(best["K"], best["floor"], best["prior"])]
        for k, floor, prior in cells:
            rows.append(sweep_cell(solver, k, floor, prior, data, args))
            print(table(rows[-1:], args).splitlines()[-1], flush=True)
    if not args.no_reference:
        for k in args.ks:
            rows.append(sweep_cell("sklearn", k, np.nan, 0.0, data, args))
    elapsed = time.perf_counter() - start

    grid_rows = [r for r in rows if r["solver"] != "sklearn"]
    lines = [
        f"Stability sweep ({'MNIST' if args.mnist else args.data or 'digits'}, "
        f"{'raw-scale' if args.raw_scale else 'unit-scale'} latents, "
        f"{Z_train.shape[1]} factors): stable = NMI >= {STABLE_RATIO:g} x NMI@"
        f"{args.checkpoints[0]} at every checkpoint; NMI columns are means over "
        f"{len(args.seeds)} seeds.",
        "",
        table(rows, args),
        "",
        f"Collapses in the whole grid: {sum(r['collapses'] for r in grid_rows)}; refusals: "
        f"{sum(r['refusals'] for r in grid_rows)}.",
    ]
    for solver in args.solvers:
        best = recommended([r for r in rows if r["solver"] == solver], len(args.seeds))
        lines.append(f"Recommended setting for {solver}: {_describe(best)}.")
    lines.append(f"Wall time: {elapsed:.0f} s.")
    text = "\n".join(lines)
    print("\n" + text)
    # Next to this script, wherever it is run from.
    out = args.out or HERE / "results" / ("stability_raw.md" if args.raw_scale else "stability.md")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text + "\n")


if __name__ == "__main__":
    main()
