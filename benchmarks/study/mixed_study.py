"""``mixed_precision`` against float64 EM and scikit-learn: default fits of the benchmarks' sets.

For every data set of ``datasets.SPLITS`` (or those named on the command
line), K in {10, 20, 50} where the set has at least ten rows per component,
and seeds 0 to 2: iterations of scikit-learn's
``GaussianMixture(covariance_type="diag")``, natgmm with
``mixed_precision=False`` and natgmm by default; their final lower bounds
relative to scikit-learn's; and the largest difference of a float32 E-step's
mean log-likelihood from float64's at the same parameters over the float64
fit, relative to it in internal units, as it is and less the operands'
rounding bias (``_solver._float32_try``; what ``_solver.F32_BOUND_ROUNDING``
bounds), and the largest change of that difference from one step to the
next (the rounding of a float32 gain). Run from the repository root:
``python benchmarks/study/mixed_study.py`` (about five minutes on 2 cores;
``--rounding-only``: the roundings alone, about three).
"""

import sys
import time
import warnings
from pathlib import Path

import numpy as np
from sklearn.mixture import GaussianMixture

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import datasets  # noqa: E402
from cli import parser  # noqa: E402
from warm import warm_up_once, warm_up_rows  # noqa: E402

from natgmm import NaturalDiagonalGMM, _solver  # noqa: E402

BATCH = _solver.ITERATIONS["em"]


def rounding(X, n_components, seed):
    """Largest relative float32 rounding of the bound over a float64 fit of ``X``, and of a gain.

    The second is the largest change of the rounding between consecutive
    steps: what a float32 gain is off by. Each is a pair: of the float32
    E-step's log-likelihood as it is, and less its operands' rounding bias
    (``_solver._float32_try``, what ``mixed_precision`` compares).
    """
    rows = []

    def both(settings, run, params, reg, beta, float32=False):
        if beta == 1.0 and run.data.dtype == np.float64:
            raw, exact = (BATCH(settings, run, params, reg, beta, f)[0] for f in (True, False))
            debiased = _solver._float32_try(settings, run, params, reg, beta)[0]
            rows.append((raw, debiased, exact))
        return BATCH(settings, run, params, reg, beta, float32)

    _solver.ITERATIONS["em"] = both
    try:
        NaturalDiagonalGMM(n_components, random_state=seed, mixed_precision=False).fit(X)
    finally:
        _solver.ITERATIONS["em"] = BATCH
    raw, debiased, f64 = np.array(rows).T
    bound, gain = [], []
    for f32 in (raw, debiased):
        error = f32 - f64
        bound.append(float(np.max(np.abs(error) / np.abs(f64))))
        gain.append(float(np.max(np.abs(np.diff(error)) / np.abs(f64[1:]), initial=0.0)))
    return bound, gain


def _grid(names):
    """``(name, X, n_components, seed)``: K in {10, 20, 50} with ten rows each, seeds 0 to 2."""
    for name in names:
        X = datasets.split(name).X_train
        for n_components in (10, 20, 50):
            if n_components <= len(X) // 10:
                for seed in (0, 1, 2):
                    yield name, X, n_components, seed


def rounding_only(names, holes=0.0):
    """Print :func:`rounding` for every set, K and seed of :func:`main`, and the largest.

    With ``holes``, that share of the entries (drawn from a fixed seed) is
    made missing first.
    """
    warnings.simplefilter("ignore")
    worst = np.zeros(4)
    for name, X, n_components, seed in _grid(names):
        if holes:
            X = np.where(np.random.default_rng(1).random(X.shape) < holes, np.nan, X)
        bound, gain = rounding(X, n_components, seed)
        worst = np.maximum(worst, bound + gain)
        print(
            f"{name:22s} K={n_components:2d} seed={seed} float32 rounding "
            f"{bound[0]:.1e} (less the bias {bound[1]:.1e}), of a gain "
            f"{gain[0]:.1e} ({gain[1]:.1e})",
            flush=True,
        )
    print(
        f"largest: rounding {worst[0]:.1e} (less the bias {worst[1]:.1e}), of a gain "
        f"{worst[2]:.1e} ({worst[3]:.1e})"
    )


def main(names):
    warnings.simplefilter("ignore")
    for name, X, n_components, seed in _grid(names):
        theirs = GaussianMixture(n_components, covariance_type="diag", random_state=seed)
        theirs.fit(X)
        fits = {}
        for mixed in (False, True):
            model = NaturalDiagonalGMM(n_components, random_state=seed, mixed_precision=mixed)
            # Once per configuration: no kernel loaded inside the timing.
            key = (name, n_components, mixed)
            warm_up_once(key, model.fit, warm_up_rows(X, n_components))
            start = time.perf_counter()
            model.fit(X)
            fits[mixed] = (model, time.perf_counter() - start)
        (full, t_full), (mixed, t_mixed) = fits[False], fits[True]

        def relative(model, reference=theirs):
            return abs(model.lower_bound_ / reference.lower_bound_ - 1)

        bound, gain = rounding(X, n_components, seed)
        print(
            f"{name:22s} K={n_components:2d} seed={seed} iterations sklearn "
            f"{theirs.n_iter_:3d} float64 {full.n_iter_:3d} mixed {mixed.n_iter_:3d} | "
            f"bound against sklearn's: mixed {relative(mixed):.1e} float64 "
            f"{relative(full):.1e} | float32 rounding {bound[0]:.1e} (less the bias "
            f"{bound[1]:.1e}), of a gain {gain[0]:.1e} ({gain[1]:.1e}) | seconds "
            f"float64 {t_full:.3f} mixed {t_mixed:.3f}",
            flush=True,
        )


if __name__ == "__main__":
    cli = parser(__doc__)
    cli.add_argument(
        "names", nargs="*", metavar="NAME",
        help="data sets of datasets.SPLITS (none: all): " + ", ".join(datasets.SPLITS),
    )  # fmt: skip
    cli.add_argument(
        "--rounding-only", action="store_true",
        help="only the float32 roundings (no scikit-learn fits, no timings): a few minutes",
    )  # fmt: skip
    cli.add_argument(
        "--holes", type=float, default=0.0, metavar="SHARE",
        help="with --rounding-only: make this share of the entries missing first",
    )  # fmt: skip
    args = cli.parse_args()
    names = args.names
    unknown = [name for name in names if name not in datasets.SPLITS]
    if unknown:
        known = ", ".join(datasets.SPLITS)
        cli.error(f"unknown data set {', '.join(unknown)}: choose from {known}")
    if args.holes and not args.rounding_only:
        cli.error("--holes goes with --rounding-only")
    names = names or list(datasets.SPLITS)
    rounding_only(names, args.holes) if args.rounding_only else main(names)
