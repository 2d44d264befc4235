"""Fuzz the fits with hostile small arrays and count non-finite results (issue #17).

Each problem comes from ``datasets.fuzz_problem(seed)``: scales from 1e-160
to 1e160 (float32: 1e-38 to 1e38), offsets up to 1e12 spreads, constant
columns, duplicated rows, ``n_samples`` close to ``n_components``, float32,
sample weights. An outcome is one of

- ``finite``: the fit returned and every fitted parameter is finite, every
  variance positive, ``lower_bound_`` finite;
- ``ValueError``: a refusal (the message's start is tallied);
- ``MISLEADING ValueError``: a refusal that blames NaN or infinity in ``X``
  when ``X`` is finite (a bug: the fit overflowed);
- ``NON-FINITE``: the fit returned an inf, NaN or zero variance (a bug);
- ``non-finite predict_proba``: finite parameters but NaN responsibilities
  on the training rows (a bug);
- any other exception type (a bug).

The runs:

- ``wrapper``: ``StandardizedGMM(NaturalDiagonalGMM(K))`` on each array (the
  issue's bar: 0 NON-FINITE over 1000 arrays);
- ``stream``: ``NaturalDiagonalGMM(K).partial_fit`` over three batches of
  each array;
- ``estimator``: ``NaturalDiagonalGMM`` with every solver and annealing mode,
  six fits per array (the issue's 6000 fits for 1000 arrays);
- ``mixed`` (not run unless asked): each array as float64, fitted by the
  default fit and the annealed ones with float32 steps at any size
  (``_solver.F32_MIN_WORK = 0``: the arrays are far below the size rule),
  each also with ``mixed_precision=False``:
  a fit that fails where float64's is finite is a finding (``WORSE``), as
  is a non-finite one; one finite where float64's failed is tallied;
- ``dask`` (not run unless asked): the default fit and a ``partial_fit``
  stream on each array as a Dask array (rows in three chunks, cut at
  random), each also on the numpy array: an outcome of another kind than
  the numpy one's (finite against refused) is a finding too.
- ``settings`` (not run unless asked): ``NaturalDiagonalGMM`` with settings
  drawn at random for each array (initialisations, floors, priors,
  ``n_init``, ``mixed_precision``, annealing modes and schedules,
  ``anneal_subsample``, split-and-merge, solvers); after a finite fit, a
  refit on the array with one entry made infinite must be refused and leave
  every fitted parameter as it was (``MODEL CHANGED``, ``ACCEPTED`` are
  findings), and for odd seeds a warm refit on the array itself follows.

A line of progress is printed every tenth of the arrays. ``--n 20`` took
26.6 + 13.4 + 12.5 s on one busy core in a fresh checkout (compiling the
kernels), the ``wrapper`` run 0.5 s once they were cached. ``--runs dask`` needs Dask
(``pip install -e '.[benchmarks]'``). Run from the repository root::

    python benchmarks/fuzz_robustness.py               # 1000 arrays each
    python benchmarks/fuzz_robustness.py --n 200 --runs wrapper stream
    python benchmarks/fuzz_robustness.py --n 200 --runs dask
    python benchmarks/fuzz_robustness.py --n 200 --runs mixed
    python benchmarks/fuzz_robustness.py --n 1000 --runs settings
    python benchmarks/fuzz_robustness.py --n 200 --holes 0.2   # missing entries too
"""

import sys
import time
import warnings
from collections import Counter

import numpy as np

sys.path.insert(0, __file__.rsplit("/", 1)[0])
import datasets  # noqa: E402
from cli import check, optional  # noqa: E402
from cli import parser as cli_parser  # noqa: E402

from natgmm import (  # noqa: E402
    ExplicitSchedule,
    GeometricSchedule,
    NaturalDiagonalGMM,
    StandardizedGMM,
    _solver,
)

PARAMETERS = (
    "weights_", "means_", "covariances_", "precisions_", "precisions_cholesky_", "eta1_", "eta2_",
)  # fmt: skip

ESTIMATOR_CONFIGURATIONS = {
    "em": {},
    "minibatch": {"solver": "minibatch", "batch_size": 8},
    "gradient": {"solver": "gradient", "gradient_steps": 10},
    "annealing=floor": {"annealing": "floor", "anneal_max_iter": 3},
    "annealing=fixed": {"annealing": "fixed", "anneal_max_iter": 3},
    "annealing=temperature": {"annealing": "temperature", "anneal_max_iter": 3},
}


def _outcome(fit, X):
    """Run ``fit()`` (which returns the model) and classify the result."""
    try:
        with warnings.catch_warnings(), np.errstate(all="ignore"):
            # Convergence, reg_covar, small first batches: the outcome is what counts.
            warnings.simplefilter("ignore", UserWarning)
            model = fit()
    except ValueError as error:
        message = str(error)
        blamed = ("infinity" in message and not np.isinf(X).any()) or (
            "NaN" in message and not np.isnan(X).any()
        )
        if blamed:
            return "MISLEADING ValueError (X has none): " + message[:40].replace("\n", " ")
        return "ValueError: " + message[:60].replace("\n", " ")
    except Exception as error:  # noqa: BLE001  (any other type is a finding)
        return f"{type(error).__name__}: {str(error)[:60]}"
    values = [np.asarray(getattr(model, name), dtype=np.float64) for name in PARAMETERS]
    values.append(np.asarray(model.lower_bound_, dtype=np.float64))
    if not all(np.all(np.isfinite(v)) for v in values) or not np.all(model.covariances_ > 0):
        return "NON-FINITE"
    with np.errstate(all="ignore"):
        if not np.all(np.isfinite(model.predict_proba(X))):
            return "non-finite predict_proba"
    return "finite"


HOLES = 0.0  # --holes: the share of the entries made missing (NaN)


def _problem(seed):
    """:func:`datasets.fuzz_problem`, with a share :data:`HOLES` of its entries made NaN."""
    X, sw, k = datasets.fuzz_problem(seed)
    if HOLES:
        rng = np.random.default_rng([seed, 1])
        X = np.where(rng.random(X.shape) < HOLES, np.nan, X).astype(X.dtype)
    return X, sw, k


def _wrapper(seed):
    X, sw, k = _problem(seed)
    model = StandardizedGMM(NaturalDiagonalGMM(k, random_state=0, max_iter=20, n_jobs=1))
    yield "wrapper", seed, _outcome(lambda: model.fit(X, sample_weight=sw), X)


def _stream(seed):
    X, sw, k = _problem(seed)
    model = NaturalDiagonalGMM(k, random_state=0, n_jobs=1)
    batches = np.array_split(np.arange(X.shape[0]), 3)

    def fit():
        for rows in batches:
            if rows.size:
                model.partial_fit(X[rows], sample_weight=None if sw is None else sw[rows])
        return model

    yield "stream", seed, _outcome(fit, X)


def _estimator(seed):
    X, sw, k = _problem(seed)
    for name, params in ESTIMATOR_CONFIGURATIONS.items():
        model = NaturalDiagonalGMM(k, random_state=0, max_iter=20, n_jobs=1, **params)
        yield name, seed, _outcome(lambda m=model: m.fit(X, sample_weight=sw), X)


def _dask(seed):
    import dask.array as da

    X, sw, k = _problem(seed)
    n = X.shape[0]
    cuts = np.random.default_rng(seed).choice(np.arange(1, n), size=min(2, n - 1), replace=False)
    chunks = tuple(int(c) for c in np.diff(np.concatenate([[0], np.sort(cuts), [n]])))
    Xd = da.from_array(X, chunks=(chunks, -1))
    batches = np.array_split(np.arange(n), 3)

    def stream(data):
        model = NaturalDiagonalGMM(k, random_state=0, n_jobs=1)
        for rows in batches:
            if rows.size:
                model.partial_fit(data[rows], sample_weight=None if sw is None else sw[rows])
        return model

    def fit(data):
        model = NaturalDiagonalGMM(k, random_state=0, max_iter=20, n_jobs=1)
        return model.fit(data, sample_weight=sw)

    for name, run in (("dask fit", fit), ("dask stream", stream)):
        outcome = _outcome(lambda run=run: run(Xd), X)
        yield name, seed, outcome
        reference = _outcome(lambda run=run: run(X), X)
        if reference.split(":")[0] != outcome.split(":")[0]:
            yield name, seed, f"OTHER OUTCOME than numpy's ({reference[:30]}): {outcome[:30]}"


# The configurations whose steps mixed_precision changes (batch EM's, the levels' and trials').
MIXED_CONFIGURATIONS = ("em", "annealing=floor", "annealing=fixed", "annealing=temperature")


def _mixed(seed):
    X, sw, k = _problem(seed)
    # float32 data take float32 steps either way: as drawn, a third of the
    # arrays would compare a fit with itself.
    X = X.astype(np.float64)
    size_rule = _solver.F32_MIN_WORK
    _solver.F32_MIN_WORK = 0  # float32 steps however small the array
    try:
        for name in MIXED_CONFIGURATIONS:
            outcomes = {}
            for mixed in (True, False):
                model = NaturalDiagonalGMM(
                    k, random_state=0, max_iter=20, n_jobs=1, mixed_precision=mixed,
                    **ESTIMATOR_CONFIGURATIONS[name],
                )  # fmt: skip
                outcomes[mixed] = _outcome(lambda m=model: m.fit(X, sample_weight=sw), X)
            reference, outcome = outcomes[False], outcomes[True]
            if reference == "finite" and outcome != "finite":
                outcome = f"WORSE than float64's finite fit: {outcome[:40]}"
            elif outcome == "finite" and reference != "finite":
                # Another path (float32 levels) that avoided float64's failure.
                outcome = f"finite where float64's failed: {reference[:40]}"
            yield f"mixed {name}", seed, outcome
    finally:
        _solver.F32_MIN_WORK = size_rule


def _random_settings(rng, k):
    """Estimator settings drawn at random from the parameter space, for ``k`` components."""

    def choose(*options):
        return options[int(rng.integers(len(options)))]

    settings = {}
    for name, share, options in (
        ("tol", 0.3, (0.0, 1e-6, 0.1)),
        ("reg_covar", 0.3, (0.0, 1e-10, 1e-3, 10.0)),
        ("n_init", 0.3, (2, 3)),
        ("init_params", 0.5, ("k-means++", "random", "random_from_data", "bisect")),
        ("min_variance", 0.2, (1e-4, 1.0)),
        ("min_variance_relative", 0.2, (1e-3, 0.5)),
        ("min_weight", 0.2, (0.01, 0.5 / k)),
        ("lower_precision_reg", 0.2, (1e-3, 1.0)),
        ("upper_precision_reg", 0.2, (1e-3, 1.0)),
        ("mixed_precision", 0.3, (False,)),
    ):
        if rng.random() < share:
            settings[name] = choose(*options)
    if rng.random() < 0.4:
        settings["annealing"] = choose("floor", "fixed", "temperature")
        settings["anneal_max_iter"] = choose(1, 3)
        if rng.random() < 0.3:
            settings["schedule"] = choose(
                GeometricSchedule(n_levels=3), ExplicitSchedule([5.0, 1.0]),
                GeometricSchedule(start=1e8, stop=1.0, n_levels=3),
            )  # fmt: skip
        if rng.random() < 0.3:
            settings["anneal_subsample"] = choose(k, 10)
        if rng.random() < 0.3:
            settings["split_merge"] = choose(0, 2)
    elif rng.random() < 0.4:
        settings["solver"] = choose("minibatch", "gradient")
        settings["split_merge"] = 0
        settings["batch_size"] = choose(1, 7, 1024)
        settings["gradient_steps"] = choose(1, 10)
    return settings


def _settings(seed):
    X, sw, k = _problem(seed)
    settings = _random_settings(np.random.default_rng([seed, 2]), k)
    model = NaturalDiagonalGMM(k, random_state=0, max_iter=20, n_jobs=1, **settings)
    outcome = _outcome(lambda: model.fit(X, sample_weight=sw), X)
    yield "settings", seed, outcome
    if outcome != "finite":
        return
    # A refit that is refused leaves the fitted model as it was (transactional fits).
    before = [np.array(getattr(model, name)) for name in PARAMETERS]
    bad = X.copy()
    bad[0, 0] = np.inf
    try:
        model.set_params(warm_start=bool(seed % 2)).fit(bad)
    except ValueError:
        after = [np.asarray(getattr(model, name)) for name in PARAMETERS]
        same = all(np.array_equal(a, b) for a, b in zip(before, after, strict=True))
        refit = "ValueError: refused, model intact" if same else "MODEL CHANGED by a refused refit"
    else:
        refit = "ACCEPTED a row with inf"
    yield "settings refit", seed, refit
    if seed % 2:  # warm_start was set: the refit continues from the fitted model
        yield "settings warm refit", seed, _outcome(lambda: model.fit(X, sample_weight=sw), X)


RUNS = {
    "wrapper": _wrapper, "stream": _stream, "estimator": _estimator, "mixed": _mixed,
    "dask": _dask, "settings": _settings,
}  # fmt: skip


def main(argv=None):
    parser = cli_parser(__doc__)
    parser.add_argument("--n", type=int, default=1000, help="arrays per run")
    parser.add_argument("--seed", type=int, default=0, help="first seed")
    parser.add_argument(
        "--runs", nargs="+", choices=sorted(RUNS), default=["wrapper", "stream", "estimator"],
        help="runs, space-separated (--runs wrapper dask)",
    )  # fmt: skip
    parser.add_argument(
        "--holes", type=float, default=0.0, metavar="SHARE",
        help="make this share of each array's entries missing (NaN): the masked kernels",
    )  # fmt: skip
    args = parser.parse_args(argv)
    check(parser, args.n, "--n", at_least=1)
    check(parser, args.seed, "--seed", at_least=0)
    if not 0 <= args.holes < 1:
        parser.error(f"--holes must be in [0, 1), got {args.holes}")
    if "dask" in args.runs:
        optional("dask.array", what="fuzz_robustness.py --runs dask")
    global HOLES
    HOLES = args.holes
    failed = False
    for run in args.runs:
        start = time.perf_counter()
        outcomes, bad = Counter(), Counter()
        examples = {}
        dtypes = Counter()
        every = max(1, args.n // 10)
        for seed in range(args.seed, args.seed + args.n):
            if (seed - args.seed) % every == 0 and seed > args.seed:
                done = seed - args.seed
                print(
                    f"  {run}: {done}/{args.n} arrays, {time.perf_counter() - start:.0f} s, "
                    f"findings so far {sum(bad.values())}",
                    flush=True,
                )
            X = _problem(seed)[0]
            for name, seed_, outcome in RUNS[run](seed):
                kind = outcome.split(":")[0]
                outcomes[outcome] += 1
                # NON-FINITE, MISLEADING, WORSE, other ("finite where ..." is not one)
                if kind not in ("finite", "ValueError") and not kind.startswith("finite "):
                    bad[name] += 1
                    dtypes[X.dtype.name] += 1
                    examples.setdefault(outcome, seed_)
        n_fits = sum(outcomes.values())
        elapsed = time.perf_counter() - start
        print(f"== {run}: {n_fits} fits on {args.n} arrays, {elapsed:.1f} s")
        for outcome, count in outcomes.most_common():
            print(f"  {count:6d}  {outcome}")
        n_bad = sum(bad.values())
        print(f"  findings: {n_bad} ({dict(bad)}; by dtype {dict(dtypes)})")
        for outcome, seed_ in examples.items():
            print(f"  first seed with {outcome[:40]!r}: {seed_}")
        failed |= n_bad > 0
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
