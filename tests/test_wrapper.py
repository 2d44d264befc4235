"""StandardizedGMM: raw-unit parameters, densities, invariance and raw-scale latents."""

import warnings

import numpy as np
import pytest
from conftest import assert_finite_model
from hypothesis import given, settings
from hypothesis import strategies as st
from numpy.testing import assert_allclose, assert_array_equal
from scipy.special import logsumexp
from sklearn.datasets import load_digits, make_blobs
from sklearn.decomposition import FactorAnalysis
from sklearn.exceptions import ConvergenceWarning
from sklearn.mixture import GaussianMixture
from sklearn.model_selection import GridSearchCV

from natgmm import NaturalDiagonalGMM, StandardizedGMM

# Deterministic start, so that two fits differ only through their data.
_INNER = dict(n_components=4, init_params="bisect", tol=1e-10, max_iter=300)


@pytest.fixture(scope="module")
def mixed_units():
    X, _ = make_blobs(n_samples=400, n_features=3, centers=4, random_state=0)
    # Units far apart, and a constant feature (zero variance).
    return np.column_stack([X * [1e-3, 50.0, 1e4], np.full(len(X), 7.0)])


@pytest.fixture(scope="module")
def fitted(mixed_units):
    return StandardizedGMM(NaturalDiagonalGMM(**_INNER)).fit(mixed_units)


def _diag_log_density(X, weights, means, covariances):
    """Mixture log-density from raw-unit parameters, by numpy."""
    log_comp = -0.5 * (
        np.log(2 * np.pi * covariances).sum(axis=1)
        + (((X[:, None, :] - means) ** 2) / covariances).sum(axis=2)
    )
    return logsumexp(log_comp + np.log(weights), axis=1)


def test_scaler_is_the_weighted_mean_and_std(mixed_units):
    w = np.random.default_rng(0).uniform(0.0, 3.0, len(mixed_units))
    model = StandardizedGMM(NaturalDiagonalGMM(**_INNER)).fit(mixed_units, sample_weight=w)
    mean = np.average(mixed_units, axis=0, weights=w)
    std = np.sqrt(np.average((mixed_units - mean) ** 2, axis=0, weights=w))
    assert_allclose(model.mean_, mean, rtol=1e-12)
    assert_allclose(model.scale_[:3], std[:3], rtol=1e-10)
    assert model.scale_[3] == 1.0  # constant feature: left unscaled, as StandardScaler


def test_parameters_are_the_inner_ones_mapped_back(fitted, mixed_units):
    inner, scale, shift = fitted.estimator_, fitted.scale_, fitted.mean_
    # The map is one multiply-add per entry: equal to rounding.
    assert_allclose(fitted.means_, inner.means_ * scale + shift, rtol=1e-15)
    assert_allclose(fitted.covariances_, inner.covariances_ * scale**2, rtol=1e-15)
    assert_allclose(fitted.precisions_, 1 / fitted.covariances_, rtol=1e-15)
    assert_allclose(fitted.precisions_cholesky_**2, fitted.precisions_, rtol=1e-14)
    assert_allclose(fitted.eta1_, fitted.means_ / fitted.covariances_, rtol=1e-15)
    assert_allclose(fitted.eta2_, -0.5 / fitted.covariances_, rtol=1e-15)
    assert_array_equal(fitted.weights_, inner.weights_)
    assert_array_equal(fitted.labels_, fitted.predict(mixed_units))
    assert fitted.estimator_ is not fitted.estimator  # a clone was fitted
    assert not hasattr(fitted.estimator, "means_")


def test_score_samples_is_the_raw_unit_density(fitted, mixed_units):
    expected = _diag_log_density(mixed_units, fitted.weights_, fitted.means_, fitted.covariances_)
    assert_allclose(fitted.score_samples(mixed_units), expected, rtol=1e-10)
    assert_allclose(fitted.score(mixed_units), expected.mean(), rtol=1e-10)
    assert_allclose(fitted.lower_bound_, fitted.score(mixed_units), rtol=1e-8)  # converged
    # The inner fit's bounds, moved by the same log-Jacobian (to rounding).
    inner = fitted.estimator_
    assert_allclose(fitted.lower_bounds_[-1], fitted.lower_bound_, rtol=1e-14)
    assert_allclose(
        fitted.lower_bounds_ - fitted.lower_bound_,
        np.asarray(inner.lower_bounds_) - inner.lower_bound_,
        rtol=0,
        atol=1e-12,
    )
    n = len(mixed_units)
    p = 2 * 4 * mixed_units.shape[1] + 4 - 1
    assert_allclose(fitted.bic(mixed_units), -2 * expected.sum() + p * np.log(n), rtol=1e-10)
    assert_allclose(fitted.aic(mixed_units), -2 * expected.sum() + 2 * p, rtol=1e-10)


def test_same_model_as_the_estimator_with_relative_floors(mixed_units):
    """Floors given to the wrapped estimator are in standardised units: the
    same model as NaturalDiagonalGMM's floors relative to each feature's
    variance, on the raw data (EM is equivariant; random responsibilities do
    not depend on the units, so both fits start from the same partition)."""
    X = mixed_units[:, :3]
    kwargs = dict(_INNER, init_params="random", random_state=0, reg_covar=0.0)
    wrapped = StandardizedGMM(NaturalDiagonalGMM(**kwargs, min_variance=0.05)).fit(X)
    direct = NaturalDiagonalGMM(**kwargs, min_variance_relative=0.05).fit(X)
    # Same fixed point, reached through data that differ by rounding.
    assert_allclose(wrapped.means_, direct.means_, rtol=1e-7)
    assert_allclose(wrapped.covariances_, direct.covariances_, rtol=1e-7)
    assert_array_equal(wrapped.labels_, direct.labels_)
    assert np.all(wrapped.covariances_ >= 0.05 * X.var(axis=0) * (1 - 1e-12))
    assert np.any(np.isclose(wrapped.covariances_, 0.05 * X.var(axis=0), rtol=1e-9))


@settings(max_examples=20, deadline=None)
@given(
    log_factors=st.lists(st.floats(-3.0, 4.0), min_size=3, max_size=3),
    shifts=st.lists(st.floats(-10.0, 10.0), min_size=3, max_size=3),
)
def test_invariance_to_scaling_and_shifting_each_feature(mixed_units, log_factors, shifts):
    # Without the constant feature, whose variance is reg_covar in any units
    # (its scale stays 1).
    mixed_units = mixed_units[:, :3]
    fitted = StandardizedGMM(NaturalDiagonalGMM(**_INNER)).fit(mixed_units)
    factors = 10.0 ** np.array(log_factors)
    # A shift of up to 10 (raw) standard deviations per feature: the
    # standardised data then differ from the original by a few ulps.
    offset = np.array(shifts) * fitted.scale_ * factors
    model = StandardizedGMM(NaturalDiagonalGMM(**_INNER)).fit(mixed_units * factors + offset)
    X_new = mixed_units * factors + offset
    assert_array_equal(model.labels_, fitted.labels_)
    # The inner fits see data equal to a few ulps and converge (tol 1e-10) to
    # the same fixed point: parameters agree to far below 1e-6.
    assert_allclose(model.predict_proba(X_new), fitted.predict_proba(mixed_units), atol=1e-7)
    # Means compared in (original) standard deviations of each feature.
    assert_allclose(
        (model.means_ - offset) / (factors * fitted.scale_),
        fitted.means_ / fitted.scale_,
        atol=1e-6,
    )
    assert_allclose(model.covariances_, fitted.covariances_ * factors**2, rtol=1e-6)
    assert_allclose(model.weights_, fitted.weights_, rtol=1e-6)
    # Densities transform with the Jacobian of the map.
    assert_allclose(
        model.score_samples(X_new),
        fitted.score_samples(mixed_units) - np.log(factors).sum(),
        rtol=1e-7,
        atol=1e-7,
    )


def test_sample_is_the_inner_sample_mapped_back(mixed_units):
    model = StandardizedGMM(NaturalDiagonalGMM(**_INNER, random_state=0)).fit(mixed_units)
    X, y = model.sample(500)
    Z, y_inner = model.estimator_.sample(500)  # same seed: same draws
    assert_array_equal(y, y_inner)
    assert_allclose(X, Z * model.scale_ + model.mean_, rtol=1e-15)
    assert_allclose(X.mean(axis=0), model.weights_ @ model.means_, rtol=0.1, atol=1e-3)


def test_warm_start_continues_in_the_same_coordinates(mixed_units):
    # In float64 (mixed_precision would take the first four steps of the fit
    # at once in float32, and the one-step fits' in float64).
    inner = {**_INNER, "tol": 0.0, "mixed_precision": False}
    steps = StandardizedGMM(NaturalDiagonalGMM(**{**inner, "max_iter": 1}, warm_start=True))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        for _ in range(5):
            steps.fit(mixed_units)
        at_once = StandardizedGMM(NaturalDiagonalGMM(**{**inner, "max_iter": 5}))
        at_once.fit(mixed_units)
    assert_allclose(steps.means_, at_once.means_, rtol=1e-12)
    assert_allclose(steps.covariances_, at_once.covariances_, rtol=1e-12)


def test_a_warm_refit_with_an_estimator_of_another_class_starts_anew(mixed_units):
    # It continued the old NaturalDiagonalGMM under the new estimator's parameters.
    model = StandardizedGMM(NaturalDiagonalGMM(**_INNER, warm_start=True)).fit(mixed_units)
    other = GaussianMixture(4, covariance_type="diag", warm_start=True, random_state=0)
    model.set_params(estimator=other).fit(mixed_units)
    assert type(model.estimator_) is GaussianMixture


def test_default_estimator_is_tunable_and_an_inner_limit_is_named(mixed_units):
    X = mixed_units
    # estimator=None stands for NaturalDiagonalGMM(): nested parameters set one
    # (they raised "'NoneType' object has no attribute 'set_params'").
    search = GridSearchCV(StandardizedGMM(), {"estimator__n_components": [2, 3]}, cv=2).fit(X)
    assert (
        search.best_estimator_.estimator.n_components
        == search.best_params_["estimator__n_components"]
    )
    gm = StandardizedGMM(GaussianMixture(2, covariance_type="diag"))
    with pytest.raises(TypeError, match="GaussianMixture.fit does not take it"):
        gm.fit(X, sample_weight=np.ones(len(X)))
    holed = X.copy()
    holed[0, 0] = np.nan
    with pytest.raises(ValueError, match="GaussianMixture does not accept them"):
        gm.fit(holed)
    assert not hasattr(gm, "estimator_")


def test_float32_and_other_diagonal_mixtures(mixed_units):
    model = StandardizedGMM(NaturalDiagonalGMM(**_INNER)).fit(mixed_units.astype(np.float32))
    assert model.means_.dtype == model.covariances_.dtype == np.float32
    assert np.all(np.isfinite(model.eta2_))
    gm = GaussianMixture(4, covariance_type="diag", random_state=0)
    wrapped = StandardizedGMM(gm).fit(mixed_units)
    assert_array_equal(wrapped.labels_, wrapped.predict(mixed_units))
    params = wrapped.weights_, wrapped.means_, wrapped.covariances_
    expected = _diag_log_density(mixed_units, *params)
    assert_allclose(wrapped.score_samples(mixed_units), expected, rtol=1e-10)
    with pytest.raises(ValueError, match="needs an estimator with diagonal covariances"):
        StandardizedGMM(GaussianMixture(2, covariance_type="full")).fit(mixed_units)


@pytest.fixture(scope="module")
def raw_latents():
    """Digits factor-analysis latents with per-dimension std of 40-80."""
    X, _ = load_digits(return_X_y=True)
    Z = FactorAnalysis(10, random_state=0).fit_transform(X)
    Z = Z / Z.std(axis=0) * np.random.default_rng(0).uniform(40, 80, Z.shape[1])
    assert np.all((Z.std(axis=0) >= 40) & (Z.std(axis=0) <= 80))
    return Z


@pytest.mark.parametrize(
    "solver",
    [
        dict(solver="em"),
        dict(solver="minibatch", batch_size=256),
        # The research regime, which leaves eta2 < 0 only by construction.
        dict(solver="gradient", learning_rate=1e-3, gradient_steps=50, gradient_clip=1.0),
    ],
    ids=["em", "minibatch", "gradient"],
)
@pytest.mark.parametrize("wrapped", [False, True], ids=["direct", "wrapped"])
def test_raw_scale_latents_never_give_non_finite_parameters(raw_latents, solver, wrapped):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        for seed in range(2):
            gmm = NaturalDiagonalGMM(20, max_iter=20, random_state=seed, **solver)
            model = (StandardizedGMM(gmm) if wrapped else gmm).fit(raw_latents)
            assert_finite_model(model)
            assert np.all(np.isfinite(model.score_samples(raw_latents)))


def test_fit_validates_its_parameters_and_pickling_does_not(mixed_units):
    # The validation once sat on __getstate__: pickling checked the
    # parameters, and a warm refit (which copies nothing) did not.
    import pickle

    from sklearn.utils._param_validation import InvalidParameterError

    pickle.dumps(StandardizedGMM(estimator="not an estimator"))
    model = StandardizedGMM(NaturalDiagonalGMM(**_INNER, warm_start=True)).fit(mixed_units)
    model.estimator = "not an estimator"
    with pytest.raises(InvalidParameterError, match="'estimator' parameter of StandardizedGMM"):
        model.fit(mixed_units)


def test_lower_bound_is_the_weighted_score_with_holes_and_weights():
    # The rows' log-Jacobians (over their observed features) were averaged
    # without the weights: -5.10 against the weighted score's -2.80.
    rng = np.random.default_rng(0)
    X = rng.normal(size=(1000, 2)) * [1.0, 1000.0]
    w = np.r_[np.full(500, 5.0), np.ones(500)]
    X[:500, 1] = np.nan  # the heavy rows miss the wide feature
    model = StandardizedGMM(NaturalDiagonalGMM(1, tol=1e-10, random_state=0))
    model.fit(X, sample_weight=w)
    score = np.average(model.score_samples(X), weights=w)
    assert model.lower_bound_ == pytest.approx(score, abs=1e-6)
    assert model.lower_bounds_[-1] == pytest.approx(model.lower_bound_, abs=1e-12)


def _with_holes(X, seed=0):
    X = X.copy()
    X[np.random.default_rng(seed).random(X.shape) < 0.05] = np.nan
    return X


def _rows_standardised(monkeypatch):
    """Record the rows of each call of the wrapper's standardisation (a list, filled in place)."""
    from natgmm import _standardise

    rows_seen = []
    transform = _standardise.FeatureScaling.transform

    def recorded(self, X):
        rows_seen.append(len(X))
        return transform(self, X)

    monkeypatch.setattr(_standardise.FeatureScaling, "transform", recorded)
    return rows_seen


def test_verbose_says_how_the_inner_bounds_map_to_those_of_x(mixed_units, capsys):
    """The inner fit prints standardised bounds; one line says what to add (audit: 8.5 vs -197)."""
    model = StandardizedGMM(NaturalDiagonalGMM(2, verbose=1, random_state=0)).fit(mixed_units)
    lines = capsys.readouterr().out.splitlines()
    offset = float(lines[0].split("add ")[1].split(" ")[0])
    assert lines[0].startswith("StandardizedGMM: the NaturalDiagonalGMM below fits")
    assert model.estimator_.lower_bound_ + offset == pytest.approx(model.lower_bound_, abs=1e-5)
    StandardizedGMM(NaturalDiagonalGMM(2, random_state=0)).fit(mixed_units)
    assert capsys.readouterr().out == ""  # verbose=0 prints nothing


def test_predictions_standardise_by_blocks_of_rows(fitted, mixed_units, monkeypatch):
    # Each call held a standardised copy of the whole of X (389 MiB beside
    # X's 381 MiB at 1e6 x 50): now a block of _BLOCK_BYTES at a time.
    from natgmm import _wrapper

    X = _with_holes(np.vstack([mixed_units] * 3))
    model = StandardizedGMM(NaturalDiagonalGMM(**_INNER)).fit(X)
    names = ("predict", "predict_proba", "score_samples", "_estimate_log_prob", "bic", "aic")
    whole = {name: getattr(model, name)(X) for name in names}
    rows_seen = _rows_standardised(monkeypatch)
    monkeypatch.setattr(_wrapper, "_BLOCK_BYTES", 100 * X.shape[1] * 8)
    for name in names:
        rows_seen.clear()
        assert_allclose(getattr(model, name)(X), whole[name], rtol=1e-13)
        # The extremes' check of overflow, then blocks of 100 rows.
        assert rows_seen[0] == 2 and max(rows_seen[1:]) == 100 < len(X), name
    # bic as the inner model's criterion of the whole standardised X, corrected.
    Z = (X - model.mean_) / model.scale_
    jacobian = -np.sum(~np.isnan(Z) * np.log(model.scale_))
    assert whole["bic"] == pytest.approx(model.estimator_.bic(Z) - 2 * jacobian, rel=1e-12)


def test_prediction_blocks_count_per_component_results(monkeypatch):
    # With more components than features a block's responsibilities, not its
    # rows' copy, are the larger: predict_proba held 1.8 times its output.
    from natgmm import _wrapper

    X, _ = make_blobs(n_samples=600, n_features=2, centers=6, random_state=0)
    model = StandardizedGMM(NaturalDiagonalGMM(6, init_params="bisect", max_iter=5)).fit(X)
    rows_seen = _rows_standardised(monkeypatch)
    monkeypatch.setattr(_wrapper, "_BLOCK_BYTES", 50 * 6 * 8)  # 50 rows of 6 float64 results
    whole = model.predict_proba(X)
    assert max(rows_seen[1:]) == 50
    monkeypatch.setattr(_wrapper, "_BLOCK_BYTES", 2**30)
    assert_array_equal(model.predict_proba(X), whole)


def test_blockwise_predictions_of_float32_rows_take_one_dtype(fitted, mixed_units, monkeypatch):
    # A block holding an entry that overflows float32 once standardised was
    # computed in float64 and the others in float32: a row's score depended
    # on the block size. As for one standardisation of the whole: all float64.
    from natgmm import _wrapper

    X = np.vstack([mixed_units] * 2).astype(np.float32)
    model = StandardizedGMM(NaturalDiagonalGMM(**_INNER)).fit(X)
    X[-1, 0] = 3e38  # beyond float32 once standardised (scale_ about 3e-3)
    assert model._standardised_blocks(X)[1].__next__()[1].dtype == np.float64
    whole = model.score_samples(X)
    monkeypatch.setattr(_wrapper, "_BLOCK_BYTES", 64 * X.shape[1] * 4)
    assert_array_equal(model.score_samples(X), whole)


@pytest.mark.filterwarnings("error::RuntimeWarning")
@pytest.mark.parametrize("weighted", [False, True])
def test_scaling_of_data_with_holes_goes_by_blocks_of_rows(mixed_units, monkeypatch, weighted):
    # StandardScaler's one-shot fit on data with missing entries held masks
    # and centred copies of X (858 MiB beside X's 381 MiB), and each row's
    # log-Jacobian a float copy of the mask: both go by blocks of rows.
    from sklearn.preprocessing import StandardScaler

    from natgmm import _standardise, _wrapper

    X = _with_holes(np.vstack([mixed_units] * 3))
    w = np.linspace(0.5, 2.0, len(X)) if weighted else None
    whole = StandardizedGMM(NaturalDiagonalGMM(**_INNER)).fit(X, sample_weight=w)
    blocks = []
    partial_fit = StandardScaler.partial_fit

    def recorded(self, X, *args, **kwargs):
        blocks.append(len(X))
        return partial_fit(self, X, *args, **kwargs)

    monkeypatch.setattr(StandardScaler, "partial_fit", recorded)
    monkeypatch.setattr(_standardise, "_SCALER_BYTES", 200 * X.shape[1] * 8)
    monkeypatch.setattr(_wrapper, "_BLOCK_BYTES", 200 * X.shape[1] * 8)
    by_blocks = StandardizedGMM(NaturalDiagonalGMM(**_INNER)).fit(X, sample_weight=w)
    assert blocks == [200] * (len(X) // 200) + ([len(X) % 200] if len(X) % 200 else [])
    # A block that observes a feature in no row of positive weight would make
    # its mean or variance NaN (or its weights all zero refused): one fit then.
    gap = X.copy()
    gap[200:400, 1] = np.nan  # the second block
    expected = StandardScaler().fit(gap, sample_weight=w)  # its fit is one partial_fit
    blocks.clear()
    gapped = StandardizedGMM(NaturalDiagonalGMM(**_INNER)).fit(gap, sample_weight=w)
    assert blocks == [len(X)]
    assert_allclose(gapped.mean_, expected.mean_, rtol=1e-15)
    assert np.isfinite(gapped.means_).all()
    # Chan's update of the means and variances against one pass: rounding.
    # (A constant feature's running variance may end a rounding below zero:
    # no warning, and scale 1 all the same.)
    spread = np.max(whole.scale_)
    assert_allclose(by_blocks.mean_, whole.mean_, rtol=1e-13, atol=1e-13 * spread)
    assert_allclose(by_blocks.scale_, whole.scale_, rtol=1e-12)
    assert_allclose(by_blocks.means_, whole.means_, rtol=1e-9, atol=1e-9 * spread)
    assert by_blocks.lower_bound_ == pytest.approx(whole.lower_bound_, rel=1e-10)


def _stream(model, X, weights=None, n_batches=5):
    for rows in np.array_split(np.arange(len(X)), n_batches):
        model.partial_fit(X[rows], sample_weight=None if weights is None else weights[rows])
    return model


@pytest.mark.parametrize("weighted", [False, True])
def test_partial_fit_streams_in_the_first_batchs_coordinates(mixed_units, weighted):
    X = np.random.default_rng(1).permutation(mixed_units)
    w = np.random.default_rng(2).uniform(0.5, 2.0, len(X)) if weighted else None
    inner = dict(n_components=4, random_state=0)
    model = _stream(StandardizedGMM(NaturalDiagonalGMM(**inner)), X, w)
    # The first batch fixes the scaling; the inner estimator streams the
    # standardised batches, exactly as a NaturalDiagonalGMM given them.
    first = np.array_split(np.arange(len(X)), 5)[0]
    w_first = None if w is None else w[first]
    mean = np.average(X[first], axis=0, weights=w_first)
    std = np.sqrt(np.average((X[first] - mean) ** 2, axis=0, weights=w_first))
    std[std < 1e-10] = 1.0
    assert_allclose(model.mean_, mean, rtol=1e-12)
    assert_allclose(model.scale_, std, rtol=1e-10)
    reference = _stream(NaturalDiagonalGMM(**inner), (X - model.mean_) / model.scale_, w)
    assert_allclose(model.estimator_.means_, reference.means_, rtol=1e-12, atol=1e-12)
    assert_allclose(model.means_, reference.means_ * model.scale_ + model.mean_, rtol=1e-12)
    assert_allclose(model.covariances_, reference.covariances_ * model.scale_**2, rtol=1e-12)
    assert model.n_iter_ == reference.n_iter_ == 5
    last = np.array_split(np.arange(len(X)), 5)[-1]
    jacobian = -np.log(model.scale_).sum()
    assert model.lower_bound_ == pytest.approx(reference.lower_bound_ + jacobian, abs=1e-10)
    assert_allclose(
        model.score_samples(X[last]),
        reference.score_samples((X[last] - model.mean_) / model.scale_) + jacobian,
        rtol=1e-12,
    )
    # As the plain estimator: a stream's step describes no whole fit.
    for name in ("converged_", "labels_", "lower_bounds_"):
        assert not hasattr(model, name) and not hasattr(reference, name)


def test_partial_fit_after_fit_continues_and_a_rejected_batch_changes_nothing(mixed_units):
    model = StandardizedGMM(NaturalDiagonalGMM(4, random_state=0)).fit(mixed_units)
    mean, scale, steps = model.mean_.copy(), model.scale_.copy(), model.estimator_.n_steps_
    model.partial_fit(mixed_units[:100] * 3.0)  # other data: the coordinates stay
    assert_array_equal(model.mean_, mean)
    assert_array_equal(model.scale_, scale)
    assert model.estimator_.n_steps_ == steps + 1
    for name in ("converged_", "labels_", "lower_bounds_"):  # the fit's, no longer this model's
        assert not hasattr(model, name) and not hasattr(model.estimator_, name)
    before = {key: np.copy(value) for key, value in vars(model).items() if key.endswith("_")}
    with pytest.raises(ValueError, match="X has 3 features, but StandardizedGMM is expecting 4"):
        model.partial_fit(mixed_units[:10, :3])
    model.estimator.set_params(n_components=3)  # continued with the new parameters
    with pytest.raises(ValueError, match="n_components"):
        model.partial_fit(mixed_units[:10])
    after = {key: np.copy(value) for key, value in vars(model).items() if key.endswith("_")}
    assert before.keys() == after.keys()
    for key in before:
        if isinstance(before[key], np.ndarray) and before[key].dtype != object:
            assert_array_equal(before[key], after[key], err_msg=key)


def test_partial_fit_only_with_an_estimator_that_streams(mixed_units):
    assert not hasattr(StandardizedGMM(GaussianMixture(2, covariance_type="diag")), "partial_fit")
    assert hasattr(StandardizedGMM(), "partial_fit")
    model = StandardizedGMM().partial_fit(mixed_units[:1])  # one row: scale 1 everywhere
    assert_array_equal(model.scale_, np.ones(4))
    assert model.n_features_in_ == 4


@pytest.mark.parametrize("inner", ["natgmm", "sklearn"])
def test_scikit_learns_private_methods_in_the_units_of_x(mixed_units, inner):
    from scipy.special import logsumexp

    estimator = (
        NaturalDiagonalGMM(**_INNER)
        if inner == "natgmm"
        else GaussianMixture(4, covariance_type="diag", random_state=0)
    )
    model = StandardizedGMM(estimator).fit(mixed_units)
    rows = mixed_units[:40].copy()
    if inner == "natgmm":
        rows[::3, 1] = np.nan  # over the observed entries, as score_samples
    weighted = model._estimate_weighted_log_prob(rows)
    assert weighted.shape == (40, 4)
    assert_allclose(logsumexp(weighted, axis=1), model.score_samples(rows), rtol=1e-12)
    assert_allclose(
        weighted, model._estimate_log_prob(rows) + model._estimate_log_weights(), rtol=1e-15
    )
    log_norm, log_resp = model._estimate_log_prob_resp(rows)
    assert_allclose(log_norm, model.score_samples(rows), rtol=1e-12)
    assert_allclose(np.exp(log_resp), model.predict_proba(rows), rtol=1e-9, atol=1e-300)
    # Predictions read estimator_, and so do these: weights_ changed on the
    # wrapper (a copy) mixed the two.
    model.weights_ = np.r_[0.97, np.full(3, 0.01)]
    assert_allclose(model._estimate_log_prob_resp(rows)[0], model.score_samples(rows), rtol=1e-12)


def test_a_step_that_fails_after_the_inner_update_leaves_the_wrapper_as_it_was(
    mixed_units, monkeypatch
):
    # The inner estimator is updated on a copy: a failure in mapping its
    # parameters back must not leave estimator_ a step ahead of the wrapper.
    model = StandardizedGMM(NaturalDiagonalGMM(4, random_state=0)).partial_fit(mixed_units[:200])
    steps, means = model.estimator_.n_steps_, model.means_.copy()

    def fail(*args, **kwargs):
        raise ValueError("mapping failed")

    monkeypatch.setattr(StandardizedGMM, "_fitted_attributes", fail)
    with pytest.raises(ValueError, match="mapping failed"):
        model.partial_fit(mixed_units[200:])
    monkeypatch.undo()
    assert model.estimator_.n_steps_ == steps
    assert_array_equal(model.means_, means)


def test_a_prediction_reads_one_fit_while_another_thread_refits(monkeypatch):
    """A refit committed in the middle of a prediction does not mix the two fits.

    A refit on another thread swaps the wrapper's ``__dict__`` in one
    assignment; here it lands while X is being standardised (as a thread
    switch may). The prediction read the old scaling but the new
    ``estimator_`` and ``scale_``: results of neither model.
    """
    from natgmm import _wrapper

    rng = np.random.default_rng(3)
    XA, XB = rng.normal(size=(400, 3)), rng.normal(size=(400, 3)) * 10 - 7
    Q = rng.normal(size=(50, 3))
    kw = dict(n_components=3, max_iter=3, init_params="random", random_state=0)
    model = StandardizedGMM(NaturalDiagonalGMM(**kw)).fit(XA)
    refit = StandardizedGMM(NaturalDiagonalGMM(**kw)).fit(XB)
    expected = {
        name: getattr(model, name)(Q) for name in ("score_samples", "predict", "predict_proba")
    }
    overflows = _wrapper._overflows
    for name, old in expected.items():
        model = StandardizedGMM(NaturalDiagonalGMM(**kw)).fit(XA)

        def refit_lands(scaling, X, model=model):
            model.__dict__ = dict(vars(refit))  # as commit() does at the end of a refit
            return overflows(scaling, X)

        monkeypatch.setattr(_wrapper, "_overflows", refit_lands)
        assert_array_equal(getattr(model, name)(Q), old)
        monkeypatch.setattr(_wrapper, "_overflows", overflows)


@pytest.mark.parametrize("method", ["score_samples", "predict", "predict_proba"])
def test_a_prediction_standardises_and_scores_with_one_fit(monkeypatch, method):
    """A refit committed between the standardisation and the inner model's call changes nothing.

    A refit on another thread swaps the wrapper's ``__dict__`` in one
    assignment; here it lands just after the rows were standardised. The
    wrapper read ``estimator_`` (and ``scale_``) again after that, so the
    rows standardised by the old fit were scored by the new inner model.
    """
    from natgmm import _wrapper

    rng = np.random.default_rng(3)
    XA, XB = rng.normal(size=(300, 3)), rng.normal(size=(300, 3)) * 10 - 7
    Q = rng.normal(size=(20, 3))

    def fitted(X, k):
        inner = NaturalDiagonalGMM(k, max_iter=2, init_params="random", random_state=0)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return StandardizedGMM(inner).fit(X)

    old = getattr(fitted(XA, 2), method)(Q)
    model, refit = fitted(XA, 2), fitted(XB, 4)
    standardised = _wrapper._standardised

    def refit_lands(*args):
        Z = standardised(*args)
        model.__dict__ = dict(vars(refit))  # as commit() does at the end of a refit
        return Z

    monkeypatch.setattr(_wrapper, "_standardised", refit_lands)
    assert_array_equal(getattr(model, method)(Q), old)
