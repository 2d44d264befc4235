"""Fitted parameters of many configurations, saved or compared bit for bit.

A refactoring that must not change the arithmetic is checked by running
this script before (``--save before.npz``) and after (``--compare
before.npz``) on the same machine: every fitted array, every score and
every label of every configuration must be bitwise equal. The
configurations cover every initialisation, solver and annealing mode,
sample weights, floors and priors, float32, ``n_init``, warm starts,
``partial_fit`` streams, Dask input and the float32 steps of
``mixed_precision`` (with the size rule ``F32_MIN_WORK`` lifted), on the
benchmarks' shared data.

Needs Dask for its Dask configuration (``pip install -e '.[benchmarks]'``);
about 10 seconds. Run from the repository root::

    python benchmarks/fingerprint.py --save /tmp/before.npz
    python benchmarks/fingerprint.py --compare /tmp/before.npz
"""

import sys
import warnings
from unittest.mock import patch

import numpy as np
from sklearn.exceptions import ConvergenceWarning

sys.path.insert(0, __file__.rsplit("/", 1)[0])
import datasets  # noqa: E402
from cli import check, optional, parser  # noqa: E402

from natgmm import NaturalDiagonalGMM, StandardizedGMM  # noqa: E402

ATTRIBUTES = (
    "weights_", "means_", "covariances_", "precisions_", "eta1_", "eta2_",
    "lower_bound_", "n_iter_", "labels_", "critical_value_",
)  # fmt: skip


def _configurations():
    common = dict(random_state=0, max_iter=30, tol=1e-4)
    for init in ("kmeans", "k-means++", "random", "random_from_data", "bisect"):
        yield f"init={init}", NaturalDiagonalGMM(5, init_params=init, **common), {}
    yield "n_init=3", NaturalDiagonalGMM(5, n_init=3, **common), {}
    yield (
        "regularised",
        NaturalDiagonalGMM(
            5, min_variance_relative=0.05, min_weight=0.01, lower_precision_reg=2.0,
            upper_precision_reg=0.5, **common,
        ),
        {},
    )  # fmt: skip
    for mode in ("floor", "fixed", "temperature"):
        model = NaturalDiagonalGMM(5, annealing=mode, anneal_max_iter=4, **common)
        yield f"annealing={mode}", model, {}
    yield "minibatch", NaturalDiagonalGMM(5, solver="minibatch", batch_size=256, **common), {}
    yield "gradient", NaturalDiagonalGMM(5, solver="gradient", gradient_steps=20, **common), {}
    yield "weighted", NaturalDiagonalGMM(5, **common), {"weighted": True}
    yield "float32", NaturalDiagonalGMM(5, **common), {"dtype": np.float32}
    yield "warm_start", NaturalDiagonalGMM(5, warm_start=True, **common), {"refit": True}
    yield "wrapper", StandardizedGMM(NaturalDiagonalGMM(5, **common)), {}
    yield "partial_fit", NaturalDiagonalGMM(5, **common), {"stream": True}
    yield (
        "partial_fit annealed gradient",
        NaturalDiagonalGMM(5, solver="gradient", annealing="floor", anneal_max_iter=2, **common),
        {"stream": True},
    )
    yield (
        "dask",
        NaturalDiagonalGMM(5, annealing="floor", anneal_max_iter=3, **common),
        {"dask": True},
    )
    # float64 rows on the float32 path (mixed_precision's steps, levels and
    # trials), which these rows are too few for by the size rule: lifted.
    yield "mixed", NaturalDiagonalGMM(5, **common), {"f32_min_work": 0}
    yield (
        "mixed annealed",
        NaturalDiagonalGMM(5, annealing="temperature", anneal_max_iter=4, **common),
        {"f32_min_work": 0},
    )


def _fingerprint():
    from natgmm import _solver

    X, _ = datasets.blobs(n_samples=3000, n_features=8, centers=5, cluster_std=2.0, seed=0)
    weights = np.random.default_rng(1).uniform(0.1, 3.0, size=X.shape[0])
    out = {}
    for name, model, how in _configurations():
        data = X.astype(how.get("dtype", np.float64))
        kwargs = {"sample_weight": weights} if how.get("weighted") else {}
        size_rule = how.get("f32_min_work", _solver.F32_MIN_WORK)
        with warnings.catch_warnings(), patch.object(_solver, "F32_MIN_WORK", size_rule):
            warnings.simplefilter("ignore", ConvergenceWarning)
            # A configuration streams with annealing on purpose.
            warnings.filterwarnings("ignore", "partial_fit with annealing", UserWarning)
            if how.get("stream"):
                for batch in np.array_split(data, 12):
                    model.partial_fit(batch)
            elif how.get("dask"):
                import dask
                import dask.array as da

                with dask.config.set(scheduler="synchronous"):
                    model.fit(da.from_array(data, chunks=700))
                    model.labels_ = model.labels_.compute()
            else:
                model.fit(data, **kwargs)
                if how.get("refit"):
                    model.fit(data)
        for attribute in ATTRIBUTES:
            if hasattr(model, attribute):
                out[f"{name}/{attribute}"] = np.asarray(getattr(model, attribute))
        out[f"{name}/score_samples"] = np.asarray(model.score_samples(data))
        out[f"{name}/predict_proba"] = np.asarray(model.predict_proba(data))
    return out


def main(argv=None):
    """Save or compare the fingerprint."""
    parser_ = parser(__doc__)
    group = parser_.add_mutually_exclusive_group(required=True)
    group.add_argument("--save", metavar="FILE", help="write the fingerprint (.npz) here")
    group.add_argument(
        "--compare", metavar="FILE", help="compare with a fingerprint saved by --save"
    )
    args = parser_.parse_args(argv)
    check(parser_, args.compare, "--compare", file=True)  # before the fits, not after
    optional("dask.array", what="fingerprint.py (its Dask configuration)")
    current = _fingerprint()
    if args.save:
        np.savez(args.save, **current)
        print(f"saved {len(current)} arrays to {args.save}")
        return 0
    reference = dict(np.load(args.compare))
    differ = [
        key
        for key in sorted(set(reference) | set(current))
        if key not in reference
        or key not in current
        or reference[key].shape != current[key].shape
        or reference[key].tobytes() != current[key].tobytes()
    ]
    for key in differ:
        print(f"DIFFERS: {key}")
    print(f"{len(reference)} arrays compared, {len(differ)} differ")
    return 1 if differ else 0


if __name__ == "__main__":
    sys.exit(main())
