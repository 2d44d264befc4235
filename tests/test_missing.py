"""Missing values (NaN entries), marginalised exactly (issue #18).

The kernels against the naive row-by-row references of ``naive.py``; the
fitted model's densities against the model restricted to each row's
observed features; EM's monotone observed-data likelihood; the M-step,
online combination, critical value and k-means with missing entries; the
solvers, streams, wrapper and errors; complete data never reaching the
masked code.
"""

import warnings

import naive
import numpy as np
import pytest
from conftest import assert_finite_model, assert_overflowing_chunk_falls_back, quiet_fit
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from numpy.testing import assert_allclose, assert_array_equal
from scipy.optimize import linear_sum_assignment
from scipy.stats import norm
from sklearn.datasets import make_blobs
from sklearn.exceptions import ConvergenceWarning
from sklearn.metrics import normalized_mutual_info_score

from natgmm import NaturalDiagonalGMM, StandardizedGMM, _kernels, _kmeans
from natgmm._data import ArrayData
from natgmm._em import (
    Params,
    Regularisation,
    Stats,
    combine,
    e_step,
    m_step,
    masked_natural_parameters,
)
from natgmm._standardise import Standardiser, critical_value

# float64 kernels sum the same terms as the references in another order (a
# few hundred ulps of the sums).
RTOL = 1e-10
U32 = float(np.finfo(np.float32).eps) / 2
NAN = np.nan


def _with_holes(X, fraction, seed=0, empty_rows=(3,)):
    """``X`` with a random ``fraction`` of its entries missing, and some rows entirely."""
    X = np.array(X, dtype=np.float64)
    rng = np.random.default_rng(seed)
    X[rng.random(X.shape) < fraction] = np.nan
    X[list(empty_rows)] = np.nan
    return X


def _problem(n_samples=203, n_features=7, n_components=5, seed=0, fraction=0.3):
    rng = np.random.default_rng(seed)
    means = rng.normal(scale=3.0, size=(n_components, n_features))
    labels = rng.integers(n_components, size=n_samples)
    X = (means[labels] + rng.normal(size=(n_samples, n_features))) * 10 + 5
    X = _with_holes(X, fraction, seed)
    shift, scale = np.full(n_features, 5.0), np.full(n_features, 0.1)
    params = Params(
        rng.dirichlet(np.ones(n_components)),
        rng.normal(scale=3.0, size=(n_components, n_features)),
        rng.uniform(0.5, 2.0, size=(n_components, n_features)),
    )
    return X, shift, scale, params


def _missing_log_scale(X, scale):
    """``sum_(d missing) log(scale_d)`` per row: what the masked kernels leave out."""
    return np.isnan(X) @ np.log(scale)


# ----------------------------------------------------------------- kernels


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("parallel", [False, True])
@pytest.mark.parametrize("beta", [1.0, 0.3])
def test_em_stats_masked_matches_naive(dtype, weighted, parallel, beta):
    X, shift, scale, params = _problem()
    X = X.astype(dtype)
    Z = (X.astype(np.float64) - shift) * scale
    sw = np.random.default_rng(1).uniform(0, 3, size=len(X)) if weighted else np.empty(0)
    weights = sw if weighted else np.ones(len(X))
    ref = params.means + 0.1
    got = _kernels.em_stats_masked(
        X, sw, shift, scale, *masked_natural_parameters(params), ref, 3, parallel, beta
    )
    ll, *stats = naive.observed_em_stats(Z, weights, *params, ref, beta=beta)
    expected = [ll - weights @ _missing_log_scale(X, scale), *stats]
    # float32: products of at most 3 D + 1 float32 terms of order 10 (|z| up
    # to ~4, eta up to ~6) per log-density, and float32 responsibilities:
    # relative errors of a few 1e-6 at most (measured: 4e-7 and below).
    rtol = RTOL if dtype == np.float64 else 1e-5
    for g, e in zip(got, expected, strict=True):
        assert_allclose(g, e, rtol=rtol, atol=rtol * np.max(np.abs(e)))


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("weighted", [False, True])
def test_em_stats_masked_matches_naive_on_separated_components(dtype, weighted):
    # Components 60 sds apart in every feature: every row with an observed
    # entry has one non-zero responsibility, so the chunks take the
    # term-by-term path (the test above, on overlapping components, never
    # did: dropping the observed mask from its sums went unnoticed).
    rng = np.random.default_rng(2)
    n_samples, n_features, n_components = 300, 4, 6
    centres = 60.0 * np.arange(n_components)[:, None] + rng.normal(size=(n_components, n_features))
    labels = rng.integers(n_components, size=n_samples)
    Z = centres[labels] + rng.normal(size=(n_samples, n_features))
    shift, scale = np.full(n_features, 5.0), np.full(n_features, 0.1)
    X = _with_holes(Z / scale + shift, 0.3, seed=2).astype(dtype)
    Z = (X.astype(np.float64) - shift) * scale
    params = Params(
        rng.dirichlet(np.ones(n_components)),
        centres + rng.normal(scale=0.5, size=centres.shape),
        rng.uniform(0.5, 2.0, size=centres.shape),
    )
    sw = rng.uniform(0, 3, size=n_samples) if weighted else np.empty(0)
    weights = sw if weighted else np.ones(n_samples)
    ref = params.means + 0.1
    got = _kernels.em_stats_masked(
        X, sw, shift, scale, *masked_natural_parameters(params), ref, 3, False, 1.0
    )
    ll, *stats = naive.observed_em_stats(Z, weights, *params, ref, beta=1.0)
    expected = [ll - weights @ _missing_log_scale(X, scale), *stats]
    rtol = RTOL if dtype == np.float64 else 1e-5  # as in the test above
    for g, e in zip(got, expected, strict=True):
        assert_allclose(g, e, rtol=rtol, atol=rtol * np.max(np.abs(e)))


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("parallel", [False, True])
def test_log_prob_masked_matches_naive(dtype, parallel):
    X, shift, scale, params = _problem(n_samples=101)
    X = X.astype(dtype)
    Z = (X.astype(np.float64) - shift) * scale
    n = len(X)
    out, labels, resp = np.empty(n), np.empty(n, dtype=np.int64), np.empty((n, 5))
    _kernels.log_prob_masked(
        X, shift, scale, *masked_natural_parameters(params), out, labels, resp, parallel
    )
    log_norm, expected_labels, expected_resp = naive.observed_log_prob(Z, *params)
    rtol = RTOL if dtype == np.float64 else 1e-5  # as in the test above
    assert_allclose(out, log_norm - _missing_log_scale(X, scale), rtol=rtol)
    assert_allclose(resp, expected_resp, rtol=rtol, atol=rtol)
    assert_array_equal(labels, expected_labels)
    # A row with no observed entry: density 1, the weights as responsibilities.
    # (float32: log of the float32 sum of the weights, a few ulps from 0.)
    expected = -_missing_log_scale(X, scale)[3]
    assert out[3] == pytest.approx(expected, abs=1e-14 if dtype == np.float64 else 1e-6)
    assert_allclose(resp[3], params.weights, rtol=rtol)


@pytest.mark.parametrize("weighted", [False, True])
def test_label_stats_masked_matches_naive(weighted):
    X, shift, scale, params = _problem()
    Z = (X - shift) * scale
    rng = np.random.default_rng(2)
    labels = rng.integers(5, size=len(X))
    sw = rng.uniform(0, 2, size=len(X)) if weighted else np.empty(0)
    w = sw if weighted else np.ones(len(X))
    ref = params.means
    nk, nkd, s1, s2 = _kernels.label_stats_masked(X, sw, shift, scale, labels, ref, 5, True)
    seen = ~np.isnan(Z)
    for k in range(5):
        rows = labels == k
        d = np.where(seen[rows], Z[rows] - ref[k], 0.0)
        assert_allclose(nk[k], w[rows].sum(), rtol=1e-12)
        assert_allclose(nkd[k], w[rows] @ seen[rows], rtol=1e-12)
        assert_allclose(s1[k], w[rows] @ d, rtol=1e-12, atol=1e-12)
        assert_allclose(s2[k], w[rows] @ d**2, rtol=1e-12)


def test_masked_f32_rows_outside_float32_range_fall_back_to_float64():
    """With missing entries too, a float32 chunk whose log-densities overflow is done in float64.

    Its rows get exactly the float64 masked kernel's log-densities, labels and
    responsibilities; the float32 E-step's statistics stay finite and close
    to the float64 ones.
    """
    X, shift, scale, params = _problem(n_samples=300)
    X = X.astype(np.float32)  # so that both precisions see the same values
    X[70] = 3e30  # z**2 overflows float32, in the second chunk (rows 64 to 127)
    X[70, 1] = np.nan
    natural = masked_natural_parameters(params)
    outputs = assert_overflowing_chunk_falls_back(
        X, _kernels.log_prob_masked, _kernels.em_stats_masked, shift, scale, natural, params.means
    )
    rest = np.r_[0:64, 128 : len(X)]
    # Elsewhere float32's own error (as in test_log_prob_masked_matches_naive).
    assert_allclose(outputs[np.float32][0][rest], outputs[np.float64][0][rest], rtol=1e-5)


def test_em_stats_masked_f32_far_component_takes_float64_moments(monkeypatch):
    """float32 with holes: a narrow component far from the centre keeps its scatter.

    Its ``ref**2 / var`` is about 420, above ``_MAX_CANCELLATION_F32``: its
    moments come from a float64 product of ``[z, z**2, o, 1]``, and agree
    with the term-by-term sums about its mean (what it got when every
    component above that limit was summed so) to 1e-11, the weights and the
    per-feature weights to the float32 product's rounding (those of the
    term-by-term path come from it). Moved from the origin in float32 instead, its scatter is off by
    more than 1e-5 of itself.
    """
    rng = np.random.default_rng(0)
    means = np.array([[4.0] * 4, [0.0] * 4, [-1.0] * 4])
    sds = np.array([0.2, 1.0, 1.0])
    labels = rng.integers(3, size=600)
    Z = means[labels] + sds[labels, None] * rng.normal(size=(600, 4))
    shift, scale = np.full(4, 3.0), np.full(4, 0.5)
    X = _with_holes(Z / scale + shift, 0.2).astype(np.float32)
    params = Params(np.array([0.3, 0.4, 0.3]), means, sds[:, None] ** 2 * np.ones(4))
    ref = params.means + 1e-2
    cancellation = np.max(ref**2 / params.variances, axis=1)
    assert _kernels._MAX_CANCELLATION_F32 < cancellation[0] < _kernels._MAX_CANCELLATION
    args = (X, np.empty(0), shift, scale, *masked_natural_parameters(params), ref, 2, True)
    got = _kernels.em_stats_masked(*args, 1.0, True)
    with monkeypatch.context() as patch:
        patch.setattr(_kernels, "_MAX_CANCELLATION", _kernels._MAX_CANCELLATION_F32)
        summed = _kernels.em_stats_masked(*args, 1.0, True)
    assert got[0] == summed[0]
    for g, e in zip(got[1:3], summed[1:3], strict=True):  # nk, nkd
        assert_allclose(g, e, rtol=1e-6)
    for g, e in zip(got[3:], summed[3:], strict=True):  # s1, s2
        assert_allclose(g, e, rtol=1e-11)
    monkeypatch.setattr(_kernels, "_MAX_CANCELLATION_F32", np.inf)
    moved = _kernels.em_stats_masked(*args, 1.0, True)
    assert abs(moved[4][0, 0] - summed[4][0, 0]) > 1e-5 * summed[4][0, 0]


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_masked_kernels_do_not_depend_on_threads(dtype):
    X, shift, scale, params = _problem(n_samples=3000)
    X = X.astype(dtype)
    natural = masked_natural_parameters(params)
    args = (X, np.empty(0), shift, scale, *natural, params.means, 8)
    serial, parallel = (_kernels.em_stats_masked(*args, p) for p in (False, True))
    for a, b in zip(serial, parallel, strict=True):
        assert_array_equal(a, b)


# ----------------------------------------------------------- fitted model


def _restricted_log_density(X, model):
    """log p(x_observed) of each row of X (user units), from the public attributes alone."""
    out = np.empty(len(X))
    for i, x in enumerate(X):
        seen = ~np.isnan(x)
        terms = [
            np.log(w) + norm.logpdf(x[seen], m[seen], np.sqrt(v[seen])).sum()
            for w, m, v in zip(model.weights_, model.means_, model.covariances_, strict=True)
        ]
        out[i] = np.logaddexp.reduce(terms)
    return out


@pytest.fixture(scope="module")
def holed_blobs():
    X, y, centres = make_blobs(
        2000, n_features=5, centers=4, cluster_std=1.0, random_state=0, return_centers=True
    )
    X = X * [1.0, 10.0, 1e3, 0.1, 1.0] + [0.0, 5.0, -2e3, 1.0, 0.0]
    centres = centres * [1.0, 10.0, 1e3, 0.1, 1.0] + [0.0, 5.0, -2e3, 1.0, 0.0]
    return _with_holes(X, 0.3, empty_rows=(3, 70)), X, y, centres


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_densities_are_those_of_the_observed_features(holed_blobs, dtype):
    Xm, _, _, _ = holed_blobs
    Xm = Xm.astype(dtype)
    model = NaturalDiagonalGMM(4, random_state=0).fit(Xm)
    expected = _restricted_log_density(Xm.astype(np.float64), model)
    # float32: the model's own float32 attributes define the reference.
    rtol = 1e-9 if dtype == np.float64 else 1e-5
    assert_allclose(model.score_samples(Xm), expected, rtol=rtol, atol=rtol)
    # Nothing observed: density 1 (up to the rounding of the weights' sum).
    assert model.score_samples(Xm[[3]])[0] == pytest.approx(0.0, abs=rtol)
    assert_allclose(model.predict_proba(Xm[[3, 70]]), [model.weights_] * 2, rtol=1e-6)
    assert model.score(Xm) == pytest.approx(np.mean(expected), rel=1e-6)
    # The criteria use that likelihood and count parameters as for complete data.
    n_parameters = 2 * 4 * 5 + 3
    bic = -2 * model.score(Xm) * len(Xm) + n_parameters * np.log(len(Xm))
    assert model.bic(Xm) == pytest.approx(bic)


def test_em_increases_the_observed_likelihood(holed_blobs):
    """Every iteration's parameters have a larger observed-data likelihood than the last.

    The likelihoods are computed independently (``naive.observed_log_prob``)
    from the parameters after 0, 1, 2, ... iterations, and agree with the
    fit's own ``lower_bounds_`` (every step in float64, to its rounding).
    """
    Xm, _, _, _ = holed_blobs
    Xm = Xm[:600]
    kwargs = dict(init_params="random_from_data", random_state=1, tol=0, mixed_precision=False)
    values = []
    for n_iter in range(8):
        model = quiet_fit(NaturalDiagonalGMM(4, max_iter=n_iter, **kwargs), Xm)
        values.append(np.mean(_restricted_log_density(Xm, model)))
    assert np.all(np.diff(values) > 0), values
    model = quiet_fit(NaturalDiagonalGMM(4, max_iter=8, **kwargs), Xm)
    assert_allclose(model.lower_bounds_, values, rtol=1e-10)


def _means_error(means, centres):
    cost = ((means[:, np.newaxis] - centres[np.newaxis]) ** 2).sum(axis=2)
    rows, cols = linear_sum_assignment(cost)
    return np.sqrt(cost[rows, cols].mean())


@pytest.mark.parametrize(
    "params",
    [
        {"init_params": "kmeans"},
        {"init_params": "k-means++"},
        {"init_params": "random_from_data"},
        {"init_params": "bisect"},
        {"annealing": "floor"},
        {"annealing": "fixed"},
        {"annealing": "temperature"},
        {"solver": "minibatch", "batch_size": 256},
        {"solver": "gradient"},
        {"min_variance_relative": 0.01, "lower_precision_reg": 1.0, "min_weight": 1e-3},
    ],
    ids=str,
)
def test_fits_recover_the_clusters(holed_blobs, params):
    Xm, X, y, centres = holed_blobs
    scale = np.array([1.0, 10.0, 1e3, 0.1, 1.0])
    complete = quiet_fit(NaturalDiagonalGMM(4, random_state=0), X)
    model = quiet_fit(NaturalDiagonalGMM(4, random_state=0, **params), Xm)
    assert_finite_model(model, Xm)
    assert normalized_mutual_info_score(y, model.predict(Xm)) > 0.85
    # The bar: means within twice the complete fit's error (each
    # feature in units of its scale, so that all count alike).
    error = _means_error(model.means_ / scale, centres / scale)
    assert error < 2 * _means_error(complete.means_ / scale, centres / scale)


@pytest.mark.parametrize("init_params", ["kmeans", "k-means++", "random_from_data"])
def test_rows_with_nothing_observed_are_left_out_of_the_start(init_params):
    """A row that observes no feature seeds no cell and refills none.

    At the same partial distance from every point, and a large one, such
    rows were drawn as k-means++ seeds that no observed row joined and
    refilled empty cells: with 30 % of the rows all NaN, every fit of ten
    ended with one or two components of weight below 1e-3 (scores on the
    observed rows -8.07 against -7.31 without those rows).
    """
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(5, 4)) * 6
    X = centres[rng.integers(0, 5, 1000)] + rng.normal(size=(1000, 4))
    holes = rng.random(1000) < 0.3
    X[holes] = np.nan
    for seed in range(5):
        model = quiet_fit(NaturalDiagonalGMM(5, init_params=init_params, random_state=seed), X)
        assert model.weights_.min() > 0.01  # (random_from_data: local optima at 0.05 to 0.08)
    if init_params == "random_from_data":  # draws among all the rows: another start
        return
    # The k-means start is that of the observed rows alone (drawn as with
    # weights, which rows with nothing observed get). In EM those rows pull
    # the weights toward their values of the step before, so tol stops the
    # fit a little elsewhere (means 5e-7 and 9e-6 apart, features of spread 6).
    observed = X[~holes]
    alone = NaturalDiagonalGMM(5, init_params=init_params, random_state=0)
    quiet_fit(alone, observed, sample_weight=np.ones(len(observed)))
    model = quiet_fit(NaturalDiagonalGMM(5, init_params=init_params, random_state=0), X)
    assert_allclose(model.means_, alone.means_, atol=1e-4)


def test_partial_fit_streams_with_holes(holed_blobs):
    """A stream of eight batches with holes finds the clusters from a sound start.

    The start is "bisect", deterministic: from k-means starts on the first
    250 rows, eight online steps ended above an NMI of 0.85 in 22 of 40
    random states (12 of 40 once rows with nothing observed left the
    k-means: other draws), so a random start made this a lottery that
    random_state=0 had won.
    """
    Xm, X, y, _ = holed_blobs
    model = NaturalDiagonalGMM(4, init_params="bisect")
    batches = np.array_split(Xm, 8)
    for batch in batches:
        model.partial_fit(batch)
    assert_finite_model(model, Xm)
    assert normalized_mutual_info_score(y, model.predict(Xm)) > 0.85
    # A later batch may lack a feature entirely, or have no NaN at all.
    lacking = Xm[:100].copy()
    lacking[:, 2] = np.nan
    model.partial_fit(lacking)
    model.partial_fit(X[:100])
    assert_finite_model(model, Xm)
    # The first batch fixes the map to internal units: every feature must be seen.
    with pytest.raises(ValueError, match=r"Feature\(s\) 2 of X are missing \(NaN\) in every row"):
        NaturalDiagonalGMM(4).partial_fit(lacking)


@pytest.mark.parametrize(
    "make", [NaturalDiagonalGMM, lambda k: StandardizedGMM(NaturalDiagonalGMM(k))]
)
def test_errors(make):
    X = np.array([[1.0, np.nan, 2.0], [2.0, np.nan, 1.0], [3.0, np.nan, np.nan]])
    with warnings.catch_warnings():
        # StandardizedGMM let StandardScaler warn of its 0 / 0 before the error.
        warnings.simplefilter("error", RuntimeWarning)
        with pytest.raises(ValueError, match=r"Feature\(s\) 1 of X are missing \(NaN\) in ev"):
            make(2).fit(X)
        X[:, 1] = [1.0, np.nan, np.nan]  # observed in a row of zero weight only
        with pytest.raises(ValueError, match="every row of positive weight"):
            make(2).fit(X, sample_weight=[0.0, 1.0, 1.0])
    X[0, 2] = np.inf
    with pytest.raises(ValueError, match="Input X contains infinity"):
        NaturalDiagonalGMM(2).fit(X)
    model = NaturalDiagonalGMM(2, random_state=0).fit(np.array([[0.0, 1], [1, np.nan], [5, 6]]))
    with pytest.raises(ValueError, match="Input X contains infinity"):
        model.predict([[np.inf, 1.0]])


def test_complete_data_never_reaches_the_masked_code(blobs, monkeypatch):
    """Data without NaN takes the complete-data kernels (benchmarks/fingerprint.py
    checks that their results are bit-identical to those before missing values)."""

    def refuse(*args, **kwargs):
        raise AssertionError("masked code called on complete data")

    for name in ("em_stats_masked", "label_stats_masked", "log_prob_masked"):
        monkeypatch.setattr(_kernels, name, refuse)
    for name in ("kmeans_masked", "kmeans_plusplus_masked", "nearest_masked"):
        monkeypatch.setattr(_kmeans, name, refuse)
    X, _ = blobs
    for params in ({}, {"init_params": "k-means++"}, {"init_params": "random_from_data"}):
        model = quiet_fit(NaturalDiagonalGMM(4, random_state=0, max_iter=5, **params), X)
        model.predict_proba(X)
    model.partial_fit(X[:50])
    StandardizedGMM(NaturalDiagonalGMM(4, random_state=0)).fit(X).score(X)


@pytest.mark.parametrize("holes", [False, True])
@pytest.mark.parametrize(
    "init_params", ["kmeans", "k-means++", "random_from_data", "random", "bisect"]
)
def test_a_fit_looks_for_nan_once(holed_blobs, blobs, holes, init_params, monkeypatch):
    """The data's look for NaN (which also gives each feature's minimum) serves the start too."""
    X = holed_blobs[0] if holes else blobs[0]
    monkeypatch.setattr(_kernels, "has_missing", lambda X: pytest.fail("looked for NaN again"))
    data = ArrayData(X, None, False)
    assert data.missing == holes
    extremes = (np.fmax.reduce(X, axis=0), np.fmin.reduce(X, axis=0))
    for got, expected in zip(data.extremes(), extremes, strict=True):
        assert_array_equal(got, expected)
    model = quiet_fit(NaturalDiagonalGMM(4, random_state=0, max_iter=2, init_params=init_params), X)
    assert np.isfinite(model.lower_bound_)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_float32_close_to_float64(holed_blobs, dtype):
    Xm, _, _, _ = holed_blobs
    # Thirty iterations each, whatever the gain: the same number of EM steps.
    model64 = quiet_fit(NaturalDiagonalGMM(4, random_state=0, tol=0, max_iter=30), Xm)
    model = quiet_fit(NaturalDiagonalGMM(4, random_state=0, tol=0, max_iter=30), Xm.astype(dtype))
    assert model.means_.dtype == dtype
    # float32 data rounds every value by 6e-8 relative: the fits agree to a
    # few times that, relative to each feature's spread.
    spread = np.nanstd(Xm, axis=0)
    assert_allclose(model.means_ / spread, model64.means_ / spread, atol=1e-4)


# -------------------------------------------------------- EM's components


def test_m_step_uses_the_per_feature_weights():
    rng = np.random.default_rng(0)
    Z = _with_holes(rng.normal(size=(300, 4)), 0.4)
    resp = rng.dirichlet(np.ones(3), size=300)
    seen = ~np.isnan(Z)
    z0 = np.where(seen, Z, 0.0)
    stats = Stats(resp.sum(0), resp.T @ z0, resp.T @ z0**2, np.zeros((3, 4)), resp.T @ seen)
    zero = np.zeros(4)
    reg = Regularisation(zero, zero, 0.0, zero, 0.0)
    params, _ = m_step(stats, reg)
    for k in range(3):
        for d in range(4):
            r, z = resp[seen[:, d], k], Z[seen[:, d], d]
            mean = r @ z / r.sum()
            assert params.means[k, d] == pytest.approx(mean, rel=1e-12)
            assert params.variances[k, d] == pytest.approx(r @ (z - mean) ** 2 / r.sum(), rel=1e-9)
    assert_allclose(params.weights, resp.sum(0) / 300, rtol=1e-12)
    # A feature no row of a component observes keeps its previous value.
    for field in ("s1", "s2", "nkd"):
        getattr(stats, field)[2, 3] = 0.0
    previous = Params(params.weights, params.means + 1.0, params.variances + 1.0)
    again, _ = m_step(stats, reg, previous)
    assert again.means[2, 3] == previous.means[2, 3]
    assert again.variances[2, 3] == previous.variances[2, 3]
    assert again.means[2, 2] == params.means[2, 2]


def _stats_of(Z, resp, ref):
    seen = ~np.isnan(Z)
    d = [np.where(seen, Z - ref[k], 0.0) for k in range(len(ref))]
    return Stats(
        resp.sum(0),
        np.stack([resp[:, k] @ d[k] for k in range(len(ref))]),
        np.stack([resp[:, k] @ d[k] ** 2 for k in range(len(ref))]),
        ref,
        resp.T @ seen,
    )


def test_combine_is_exact_per_feature():
    rng = np.random.default_rng(0)
    Z = _with_holes(rng.normal(size=(400, 3)) * 5 + 2, 0.3)
    Z[:200, 1] = np.nan  # a feature the first half never observes
    resp = rng.dirichlet(np.ones(2), size=400)
    a = _stats_of(Z[:200], resp[:200], rng.normal(size=(2, 3)))
    b = _stats_of(Z[200:], resp[200:], rng.normal(size=(2, 3)))
    b_complete = Stats(*b[:4])  # statistics without nkd count every feature
    whole = combine(a, b, 1.0, 1.0)
    reference = _stats_of(Z, resp, whole.ref)
    for got, expected in zip(whole, reference, strict=True):
        assert_allclose(got, expected, rtol=1e-10, atol=1e-10)
    assert combine(a, b_complete, 1.0, 1.0).nkd.shape == (2, 3)


@pytest.mark.parametrize("seed", [0, 1])
def test_critical_value_is_where_em_splits_the_means(seed):
    """Power iteration on EM's map at the pooled solution, variances fixed at v times the data's.

    A tiny split of two means grows by the factor ``critical_value / v`` per
    iteration: EM with missing entries has its critical value at the
    largest eigenvalue of the correlation of the mean-imputed data.
    """
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(500, 3)) @ rng.normal(size=(3, 3))
    X = _with_holes(X, 0.4, seed, empty_rows=())
    data = ArrayData(X, None, False)
    standardiser = Standardiser(data, 0.0)
    critical = critical_value(data, standardiser)
    v = 0.5 * critical
    feature_var = standardiser.feature_var
    zero = np.zeros(3)
    reg = Regularisation(zero, zero, 0.0, zero, 0.0, fixed_var=v * feature_var)
    mean = standardiser.moments.ref[0]
    direction = rng.normal(size=3)
    eps = 1e-6
    for _ in range(200):
        direction /= np.linalg.norm(direction)
        split = eps * direction * np.sqrt(feature_var)
        means = np.stack([mean + split, mean - split])
        params = Params(np.full(2, 0.5), means, np.stack([reg.fixed_var] * 2))
        _, stats = e_step(data, standardiser, params)
        new, _ = m_step(stats, reg)
        direction = (new.means[0] - new.means[1]) / 2 / np.sqrt(feature_var) / eps
        growth = np.linalg.norm(direction)
    assert growth == pytest.approx(critical / v, rel=1e-3)
    # Complete-case correlations would give another value.
    complete = ~np.isnan(X).any(axis=1)
    other = np.linalg.eigvalsh(np.corrcoef(X[complete].T))[-1]
    assert abs(other - critical) > 1e-3


# -------------------------------------------------------- initialisations


def _naive_partial_lloyd(Z, centres, observed, n_iter):
    """Lloyd's iterations with partial distances, in numpy.

    Distances sum over the features both the row and the centre have (a
    seed lacks its row's missing entries), scaled by the total variance
    over that of those features (twice the total variance with none). A
    cluster left without rows takes the row farthest from its centre (the
    largest distance to its nearest centre).

    Returns the labels, the centres, the number of relocations and the
    number of ties met on the way: a row as near (to 1e-12 relative) its
    nearest centre as another, or a relocation whose farthest rows are not
    set apart from the next one by more than that.
    """
    seen = ~np.isnan(Z)
    z0 = np.where(seen, Z, 0.0)
    var = np.nanvar(Z, axis=0)
    relocations = ties = 0
    for _ in range(n_iter):
        both = seen[:, None, :] * observed[None]
        d = (both * (z0[:, None, :] - centres[None]) ** 2).sum(axis=2)
        common = (both * var).sum(axis=2)
        # No feature in common: twice the total variance.
        d = np.where(common > 0, d * var.sum() / np.where(common > 0, common, 1.0), 2 * var.sum())
        labels = np.argmin(d, axis=1)
        nearest = np.sort(d, axis=1)
        ties += np.count_nonzero(np.isclose(nearest[:, 0], nearest[:, 1], rtol=1e-12, atol=0))
        sums = np.stack([z0[labels == k].sum(0) for k in range(len(centres))])
        counts = np.stack([seen[labels == k].sum(0) for k in range(len(centres))])
        centres = np.where(counts > 0, sums / np.maximum(counts, 1), centres)
        observed = observed | (counts > 0)
        empty = np.flatnonzero(np.bincount(labels, minlength=len(centres)) == 0)
        if empty.size:
            farthest = -np.sort(-nearest[:, 0])
            ties += np.count_nonzero(
                np.isclose(farthest[: empty.size], farthest[1 : empty.size + 1], rtol=1e-12, atol=0)
            )
            far = np.argsort(-d[np.arange(len(Z)), labels], kind="stable")[: empty.size]
            centres[empty], observed[empty] = z0[far], seen[far]
            relocations += empty.size
    return labels, centres, relocations, ties


def _naive_masked_seeding(Z, w, n_clusters, seed):
    """Greedy k-means++ by partial distances, in numpy: seed rows and each row's nearest seed.

    Draws as scikit-learn's ``_kmeans_plusplus``; distances as
    :func:`_naive_partial_lloyd`'s, with the features' variances weighted
    by ``w``.
    """
    rs = np.random.RandomState(seed)
    seen = ~np.isnan(Z)
    z0 = np.where(seen, Z, 0.0)
    weight = seen * w[:, None]
    mean = (weight * z0).sum(0) / weight.sum(0)
    var = (weight * (z0 - mean) ** 2).sum(0) / weight.sum(0)
    total = var.sum()

    def distances(row):
        both = seen & seen[row]
        d = (both * (z0 - z0[row]) ** 2).sum(axis=1)
        common = (both * var).sum(axis=1)
        return np.where(common > 0, d * (total / np.where(common > 0, common, 1.0)), 2 * total)

    n_trials = 2 + int(np.log(n_clusters))
    rows = [rs.choice(len(Z), p=w / w.sum())]
    d = distances(rows[0])
    labels = np.zeros(len(Z), dtype=np.int64)
    for c in range(1, n_clusters):
        r = rs.uniform(size=n_trials) * (w * d).sum()
        candidates = np.minimum(np.searchsorted(np.cumsum(w * d), r), len(Z) - 1)
        trials = [distances(i) for i in candidates]
        best = int(np.argmin([(w * np.minimum(d, e)).sum() for e in trials]))
        labels[trials[best] < d] = c
        d = np.minimum(d, trials[best])
        rows.append(candidates[best])
    return np.array(rows), labels


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("weighted", [False, True])
def test_masked_seeding_is_naive_kmeans_plusplus(holed_blobs, seed, weighted):
    # The seeds' rows and every row's nearest seed, with each seed's update
    # of the distances made in the next pass over the rows (not at once).
    Xm = holed_blobs[0]
    shift, scale = np.nanmean(Xm, axis=0), 1.0 / np.nanstd(Xm, axis=0)
    w = np.random.default_rng(seed).uniform(0.2, 2.0, len(Xm)) if weighted else None
    labels, seeds, observed = _kmeans.kmeans_plusplus_masked(Xm, w, shift, scale, 9, seed, True)
    Z = (Xm - shift) * scale
    rows, expected = _naive_masked_seeding(Z, np.ones(len(Z)) if w is None else w, 9, seed)
    assert_array_equal(seeds, np.nan_to_num(Z[rows], nan=0.0))
    assert_array_equal(observed, ~np.isnan(Z[rows]))
    assert_array_equal(labels, expected)
    serial = _kmeans.kmeans_plusplus_masked(Xm, w, shift, scale, 9, seed, False)
    for a, b in zip(serial, (labels, seeds, observed), strict=True):
        assert_array_equal(a, b)


def test_kmeans_masked_is_lloyd_with_partial_distances(holed_blobs):
    Xm, _, y, _ = holed_blobs
    shift = np.nanmean(Xm, axis=0)
    scale = 1.0 / np.nanstd(Xm, axis=0)
    labels, centres, n_iter = _kmeans.kmeans_masked(Xm, None, shift, scale, 4, 0, True, tol=0.0)
    _, seeds, observed = _kmeans.kmeans_plusplus_masked(Xm, None, shift, scale, 4, 0, True)
    Z = (Xm - shift) * scale
    # From the same seeds, the same fixed point.
    expected_labels, expected_centres, _, _ = _naive_partial_lloyd(Z, seeds, observed, 50)
    assert_array_equal(labels, expected_labels)
    assert_allclose(centres, expected_centres, rtol=1e-10, atol=1e-12)
    assert normalized_mutual_info_score(y, labels) > 0.9
    assert_array_equal(
        _kmeans.nearest_masked(Xm, shift, scale, centres, np.ones((4, 5), bool), True), labels
    )
    # Parallel and serial runs agree bit for bit.
    again = _kmeans.kmeans_masked(Xm, None, shift, scale, 4, 0, False, tol=0.0)
    assert_array_equal(again[1], centres)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("weighted", [False, True])
def test_masked_assignment_with_whole_centres_takes_one_column_of_variances(dtype, weighted):
    # Centres with every feature share each row's variance sum: one column
    # of the product instead of one per centre (about half the time); the
    # labels and sums are those of the general operand bit for bit, the
    # distances to rounding (BLAS sums a product of another shape otherwise).
    rng = np.random.default_rng(1)
    X = (rng.normal(size=(3000, 7)) * rng.uniform(0.5, 5, 7)).astype(dtype)
    X[rng.random(X.shape) < 0.2] = np.nan
    w = rng.uniform(0, 2, len(X)) if weighted else np.empty(0)
    shift, scale = np.nanmean(X, axis=0).astype(np.float64), np.ones(7)
    var = rng.uniform(0.5, 3.0, 7)
    centres = rng.normal(size=(6, 7))
    whole = _kmeans._masked_operand(centres, np.ones((6, 7), bool), var)
    assert whole.whole and whole.M.shape == (21, 7)
    seen = np.ones((6, 7))
    general = np.block(
        [
            [(centres**2).T, (seen * var).T],
            [-2.0 * centres.T, np.zeros((7, 6))],
            [seen.T, np.zeros((7, 6))],
        ]
    )
    results = []
    for M, flag in ((whole.M, whole.whole), (np.ascontiguousarray(general), np.bool_(False))):
        labels, nearest = np.full(len(X), -1), np.empty(len(X))
        kernel = _kmeans._masked_assign_kernel.runner(False)
        stats = kernel(X, w, shift, scale, M, flag, float(var.sum()), labels, nearest, 4, True)
        results.append((labels, nearest, *stats))
    (labels, nearest, *stats), (labels_general, nearest_general, *stats_general) = results
    assert_array_equal(labels, labels_general)
    assert_allclose(nearest, nearest_general, rtol=1e-14)
    for a, b in zip(stats, stats_general, strict=True):
        assert_array_equal(a, b)
    # A centre that lacks a feature (a seed drawn from the rows) takes the general operand.
    lacking = np.ones((6, 7), bool)
    lacking[2, 3] = False
    assert not _kmeans._masked_operand(centres, lacking, var).whole


def test_masked_kmeans_tolerance_is_relative_to_the_data():
    # Its default tol scales with the features' variance (as scikit-learn's):
    # an absolute one stopped X * 1e-3 after one iteration, 36 labels apart.
    rng = np.random.default_rng(0)
    X = np.concatenate([rng.normal(c, 1.0, (300, 3)) for c in (0, 3, 6, 9)])
    X[rng.random(X.shape) < 0.2] = np.nan
    shift, scale = np.zeros(3), np.ones(3)
    runs = {c: _kmeans.kmeans_masked(X * c, None, shift, scale, 4, 0, False) for c in (1e-3, 1.0)}
    assert_array_equal(runs[1e-3][0], runs[1.0][0])
    assert runs[1e-3][2] == runs[1.0][2]
    assert_allclose(runs[1e-3][1], runs[1.0][1] * 1e-3, rtol=1e-10)


def _compiled_and_naive_kmeans(X, n_clusters, seed, n_iter):
    """The compiled masked k-means of ``X`` (unit map) and the naive one from its seeds."""
    shift, scale = np.zeros(X.shape[1]), np.ones(X.shape[1])
    labels, centres, _ = _kmeans.kmeans_masked(
        X, None, shift, scale, n_clusters, seed, False, tol=0.0
    )
    _, seeds, observed = _kmeans.kmeans_plusplus_masked(
        X, None, shift, scale, n_clusters, seed, False
    )
    return (labels, centres), _naive_partial_lloyd(X, seeds, observed, n_iter)


@pytest.mark.parametrize(
    "seed, n_clusters, X",
    [
        (31, 3, [[NAN, NAN, 1], [2, NAN, 2], [NAN, 0, 2], [2, 2, 1], [2, 0, 2], [NAN, 2, NAN],
                 [0, 0, NAN], [NAN, 1, 2]]),
        (90, 4, [[NAN, 1, NAN], [NAN, 2, NAN], [0, NAN, 2], [0, 2, 2], [2, 1, NAN], [1, 0, 1],
                 [2, 0, 0], [NAN, 2, NAN], [1, 0, 2]]),
        (164, 3, [[NAN, NAN, 1], [0, 0, 2], [0, 1, NAN], [NAN, 1, 0], [2, 2, NAN], [2, 2, 2]]),
    ],
)  # fmt: skip
def test_kmeans_masked_relocates_an_empty_cluster(seed, n_clusters, X):
    # Found among random small arrays with holes: at the second iteration a
    # row is as near two centres that agree on its observed features, the
    # first takes it, the other is left without rows and takes the row
    # farthest from its centre (a unique farthest row in these three).
    X = np.array(X, dtype=np.float64)
    (labels, centres), (expected_labels, expected_centres, relocations, _) = (
        _compiled_and_naive_kmeans(X, n_clusters, seed, 20)
    )
    assert relocations == 1
    assert_array_equal(labels, expected_labels)
    assert_allclose(centres, expected_centres, rtol=1e-10, atol=1e-12)
    assert np.all(np.bincount(labels, minlength=n_clusters) > 0)


def test_kmeans_masked_is_the_naive_lloyd_wherever_no_distances_tie():
    # On small integer arrays with holes, distances often tie; the compiled
    # k-means (which keeps a row's cluster unless another centre is nearer
    # by its bounds) and the naive one (first nearest centre) may then break
    # a tie differently and part. Without a tie on the naive path they must
    # agree: 1 028 of 1 028 such arrays of 3 000 drawn so did on 2026-12-06.
    rng = np.random.default_rng(0)
    compared = 0
    for seed in range(400):
        n_samples, n_features = rng.integers(4, 12), rng.integers(1, 4)
        X = rng.integers(0, 3, size=(n_samples, n_features)).astype(np.float64)
        X[rng.random(X.shape) < 0.4] = NAN
        X[0, np.isnan(X).all(axis=0)] = 1.0
        X = X[~np.isnan(X).all(axis=1)]
        if len(X) < 3:
            continue
        n_clusters = int(rng.integers(2, min(len(X), 5) + 1))
        (labels, centres), (expected_labels, expected_centres, _, ties) = (
            _compiled_and_naive_kmeans(X, n_clusters, seed, 30)
        )
        if ties:
            continue
        compared += 1
        assert_array_equal(labels, expected_labels, err_msg=f"seed {seed}")
        assert_allclose(centres, expected_centres, rtol=1e-10, atol=1e-12, err_msg=f"seed {seed}")
    assert compared >= 100


# ------------------------------------------------------------ properties


@st.composite
def _holed_problems(draw):
    n_samples = draw(st.integers(4, 40))
    n_features = draw(st.integers(1, 4))
    seed = draw(st.integers(0, 2**16))
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n_samples, n_features)) * draw(st.sampled_from([1e-3, 1.0, 1e3]))
    if draw(st.booleans()):
        X = np.round(X)  # exact repeats
    fraction = draw(st.floats(0.0, 0.9))
    X[rng.random(X.shape) < fraction] = np.nan
    observed = np.flatnonzero(~np.isnan(X).all(axis=0))
    if observed.size < n_features:  # every feature observed at least once
        for j in set(range(n_features)) - set(observed):
            X[rng.integers(n_samples), j] = rng.normal()
    params = dict(
        n_components=draw(st.integers(1, 4)),
        init_params=draw(
            st.sampled_from(["kmeans", "k-means++", "random", "random_from_data", "bisect"])
        ),
        solver=draw(st.sampled_from(["em", "em", "minibatch", "gradient"])),
        annealing=draw(st.sampled_from([None, None, "floor"])),
        min_variance_relative=draw(st.sampled_from([0.0, 1e-3])),
        max_iter=draw(st.integers(1, 15)),
        batch_size=8,
        random_state=0,
    )
    return X, params


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_holed_problems(), st.sampled_from([np.float64, np.float32]))
def test_holes_never_give_a_non_finite_model(problem, dtype):
    X, params = problem
    X = X.astype(dtype)
    model = NaturalDiagonalGMM(**params)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        try:
            model.fit(X)
        except ValueError as error:
            # The only refusal allowed: sklearn's, for a variance that is zero.
            assert "ill-defined empirical covariance" in str(error), error
            return
    assert_finite_model(model, X)
    assert np.all(np.isfinite(model.score_samples(X)))


# ---------------------------------------------------------------- wrapper


def test_wrapper_densities_with_holes(holed_blobs):
    Xm, _, y, _ = holed_blobs
    model = StandardizedGMM(NaturalDiagonalGMM(4, random_state=0, tol=1e-8)).fit(Xm)
    expected = _restricted_log_density(Xm, model)
    assert_allclose(model.score_samples(Xm), expected, rtol=1e-9, atol=1e-12)
    assert model.score_samples(Xm[[3]])[0] == pytest.approx(0.0, abs=1e-12)
    assert normalized_mutual_info_score(y, model.predict(Xm)) > 0.85
    # At convergence the last E-step's likelihood is the final one.
    assert model.lower_bound_ == pytest.approx(model.score(Xm), abs=1e-6)
    assert model.__sklearn_tags__().input_tags.allow_nan


def test_far_rows_with_holes_are_finite(holed_blobs):
    """A row whose squared internal coordinate overflows, with missing entries too.

    It takes #17's scaled second pass: the quadratic term of the far feature
    decides, so the label is the component widest in that feature, the
    responsibilities are one-hot on it, and the log-density is -inf or
    finite, never NaN.
    """
    Xm, _, _, _ = holed_blobs
    model = NaturalDiagonalGMM(4, random_state=0).fit(Xm)
    far = np.array([[1e200, np.nan, -2e3, np.nan, 0.0], [-1e300, 5.0, np.nan, 1.0, np.nan]])
    log_density = model.score_samples(far)
    assert not np.isnan(log_density).any()
    assert np.all(log_density < 0)
    widest = np.argmax(model.covariances_[:, 0])
    assert_array_equal(model.predict(far), [widest, widest])
    proba = model.predict_proba(far)
    assert_array_equal(proba, np.eye(4)[[widest, widest]])


@pytest.mark.parametrize("init_params, seed", [("kmeans", 11), ("k-means++", 0)])
def test_a_row_of_weight_zero_does_not_change_the_start_of_data_with_holes(init_params, seed):
    # The partial distances' per-feature variances were taken over all rows,
    # unweighted: one zero-weight row 1e4 out changed the start and the
    # optimum (lower bound -6.63 against -5.94).
    rng = np.random.default_rng(1)
    X = np.r_[rng.normal(0, 1, (100, 4)), rng.normal(4, 1, (100, 4)), rng.normal(-4, 2, (100, 4))]
    X[rng.random(X.shape) < 0.25] = np.nan
    common = dict(init_params=init_params, tol=1e-12, max_iter=3000, random_state=seed)
    plain = NaturalDiagonalGMM(3, **common).fit(X, sample_weight=np.ones(len(X)))
    padded = np.r_[X, [[1e4, np.nan, np.nan, np.nan]]]
    model = NaturalDiagonalGMM(3, **common).fit(padded, sample_weight=np.r_[np.ones(len(X)), 0.0])
    assert_allclose(model.lower_bound_, plain.lower_bound_, rtol=1e-10)
    assert_allclose(model.means_, plain.means_, rtol=1e-7, atol=1e-9)
