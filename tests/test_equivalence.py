"""NaturalDiagonalGMM against sklearn's GaussianMixture(covariance_type="diag")."""

import warnings

import naive
import numpy as np
import pytest
from numpy.testing import assert_allclose, assert_array_equal
from scipy.special import logsumexp
from scipy.stats import norm
from sklearn.datasets import make_blobs
from sklearn.exceptions import ConvergenceWarning
from sklearn.mixture import GaussianMixture

from natgmm import NaturalDiagonalGMM, StandardizedGMM

# Both libraries run the same float64 EM; they differ only in rounding
# (sklearn expands (x - mu)^2 in raw units, natgmm evaluates natural
# parameters on standardised data and centres its scatter). After a few
# iterations on well-conditioned data the relative difference stays around
# 1e-13, so 1e-10 leaves three digits of margin without hiding a real bug.
RTOL = 1e-10


def _data(seed, n_samples=500, n_features=4, centers=3, offset=0.0, scale=1.0):
    X, _ = make_blobs(
        n_samples=n_samples,
        n_features=n_features,
        centers=centers,
        cluster_std=1.5,
        random_state=seed,
    )
    return X * scale + offset


def _pair(**kwargs):
    # Every step in float64, as scikit-learn's: the default takes the steps
    # before convergence in float32 (test_mixed_precision.py).
    return (
        NaturalDiagonalGMM(mixed_precision=False, **kwargs),
        GaussianMixture(covariance_type="diag", **kwargs),
    )


def _fit_both(X, **kwargs):
    ours, theirs = _pair(**kwargs)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        ours.fit(X)
        theirs.fit(X)
    return ours, theirs


def _assert_same_model(ours, theirs, X, rtol=RTOL):
    for name in ("weights_", "means_", "covariances_", "precisions_", "precisions_cholesky_"):
        assert_allclose(getattr(ours, name), getattr(theirs, name), rtol=rtol, err_msg=name)
    assert_allclose(ours.lower_bound_, theirs.lower_bound_, rtol=rtol)
    if hasattr(theirs, "lower_bounds_"):  # scikit-learn 1.7 and later
        assert_allclose(ours.lower_bounds_, theirs.lower_bounds_, rtol=rtol)
    assert ours.n_iter_ == theirs.n_iter_
    assert ours.converged_ == theirs.converged_
    assert_allclose(ours.score_samples(X), theirs.score_samples(X), rtol=rtol)
    assert_allclose(ours.predict_proba(X), theirs.predict_proba(X), rtol=1e-8, atol=1e-12)
    assert_array_equal(ours.predict(X), theirs.predict(X))
    assert_allclose(ours.score(X), theirs.score(X), rtol=rtol)
    assert_allclose(ours.bic(X), theirs.bic(X), rtol=rtol)
    assert_allclose(ours.aic(X), theirs.aic(X), rtol=rtol)


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("n_iter", [1, 5, 20])
@pytest.mark.parametrize("offset, scale", [(0.0, 1.0), (0.0, 1e-3), (-5.0, 40.0), (0.0, 1e4)])
def test_same_start_same_iterates(seed, n_iter, offset, scale):
    X = _data(seed, offset=offset, scale=scale)
    ours, theirs = _fit_both(X, n_components=3, max_iter=n_iter, tol=0.0, **_start(X, seed, scale))
    _assert_same_model(ours, theirs, X)


def _start(X, seed, scale=1.0):
    rng = np.random.default_rng(seed)
    return dict(
        weights_init=rng.dirichlet(np.ones(3) * 5),
        means_init=X[rng.choice(len(X), 3, replace=False)],
        precisions_init=1.0 / (rng.uniform(0.5, 2.0, size=(3, X.shape[1])) * scale**2),
    )


@pytest.mark.parametrize("offset", [1e3, 1e6])
def test_more_accurate_than_sklearn_far_from_origin(offset):
    """Far from the origin sklearn's E[x^2] - mean^2 cancels (its #30382).

    One EM step from the same start, against the same step in extended
    precision with the scatter taken about the mean: natgmm keeps about 14
    digits whatever the offset, sklearn loses ``log10(offset^2 / var)``.
    """
    X = _data(0, offset=offset)
    start = _start(X, 0)
    ours, theirs = _fit_both(X, n_components=3, max_iter=1, tol=0.0, **start)
    _, _, resp = naive.log_prob(
        X - offset,
        start["weights_init"],
        start["means_init"] - offset,
        1 / start["precisions_init"],
    )
    R, XL = resp.astype(np.longdouble), X.astype(np.longdouble)
    nk = R.sum(axis=0)
    means = (R.T @ XL) / nk[:, np.newaxis]
    var = np.stack([R[:, k] @ (XL - means[k]) ** 2 / nk[k] for k in range(3)]) + 1e-6
    ours_error = np.max(np.abs(ours.covariances_ - var) / var)
    sklearn_error = np.max(np.abs(theirs.covariances_ - var) / var)
    assert ours_error < 1e-13
    assert sklearn_error > 100 * ours_error
    assert_allclose(ours.means_, means.astype(np.float64), rtol=1e-14)


def test_a_narrow_cluster_far_from_the_mean_scores_its_own_density():
    # Internally (data standardised) the cluster at 0 is narrow and far from
    # the centre: its log-densities from [z, z**2, 1] @ W cancelled to
    # multiples of 8 nats (score 4.08 against scikit-learn's 1.278, with the
    # same parameters; found by an audit on 2026-12-06). Now they are taken
    # about the means. The reference is the density of the fitted parameters
    # (scipy, float64): off by 7e-8 nats at most, from the user-unit
    # parameters' rounding (tolerance 1e-6). scikit-learn's lower bound is
    # off by its own cancellation at 1e6 (measured 1.9e-6 relative): 1e-5.
    rng = np.random.default_rng(0)
    X = np.concatenate([rng.normal(0, 1e-3, size=(150, 1)), rng.normal(1e6, 1.0, size=(150, 1))])
    ours, theirs = _fit_both(X, n_components=2, random_state=0)
    assert_allclose(ours.means_, theirs.means_, rtol=1e-9, atol=1e-9)
    log_dens = np.log(ours.weights_) + norm.logpdf(
        X, ours.means_[:, 0], np.sqrt(ours.covariances_[:, 0])
    )
    assert_allclose(ours.score_samples(X), logsumexp(log_dens, axis=1), rtol=0, atol=1e-6)
    assert_array_equal(ours.predict(X), np.argmax(log_dens, axis=1))
    assert ours.lower_bound_ == pytest.approx(theirs.lower_bound_, rel=1e-5)


@pytest.mark.parametrize("init_params", ["kmeans", "random"])
@pytest.mark.parametrize("seed", range(3))
def test_same_init_same_fit(init_params, seed):
    """The sklearn initialisations are reproduced draw for draw.

    "random" draws its responsibilities in chunks; 9000 rows span several.
    """
    X = _data(seed, n_samples=9000 if init_params == "random" else 600, n_features=3)
    ours, theirs = _fit_both(
        X, n_components=3, init_params=init_params, random_state=seed, max_iter=30
    )
    _assert_same_model(ours, theirs, X, rtol=1e-8)


@pytest.mark.parametrize("missing", [False, True])
def test_fewer_distinct_points_than_components_warn_as_sklearn(missing):
    # Three distinct points, four components: k-means leaves a cluster
    # empty, and scikit-learn's KMeans says why (its ConvergenceWarning).
    X = np.repeat(np.array([[0.0, 1.0], [1.0, 0.0], [2.0, 2.0]]), 4, axis=0)
    message = r"Number of distinct clusters \(3\) found smaller than n_clusters \(4\)"
    ours, theirs = _pair(n_components=4, random_state=0)
    with pytest.warns(ConvergenceWarning, match=message):
        theirs.fit(X)
    if missing:
        X = np.vstack([X, [[np.nan, 1.0]]])
    with pytest.warns(ConvergenceWarning, match=message):
        ours.fit(X)
    if not missing:
        assert_allclose(ours.weights_, theirs.weights_, atol=1e-12)
    # natgmm's own partition into cells says so too.
    with pytest.warns(ConvergenceWarning, match=message):
        ours.set_params(init_params="bisect").fit(X)


def test_max_iter_zero_keeps_the_last_start_as_sklearn():
    # With no iteration no start has a lower bound: scikit-learn keeps the
    # last of its n_init starts (natgmm kept the first until 2026-12-06).
    X = _data(0, centers=3)
    ours, theirs = _fit_both(X, n_components=3, n_init=3, max_iter=0, init_params="random",
                             random_state=0)  # fmt: skip
    assert_allclose(ours.means_, theirs.means_, rtol=1e-10)
    assert_allclose(ours.covariances_, theirs.covariances_, rtol=1e-10)


def test_a_warm_refit_with_max_iter_zero_has_no_bound_as_sklearn():
    # natgmm kept the previous fit's lower_bound_, and the next warm fit then
    # measured its first change against it (converged_ after one iteration).
    X = _data(0, centers=3)
    ours, theirs = _pair(n_components=3, warm_start=True, max_iter=5, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        for max_iter in (5, 0, 1):
            ours.set_params(max_iter=max_iter).fit(X)
            theirs.set_params(max_iter=max_iter).fit(X)
            assert ours.lower_bound_ == pytest.approx(theirs.lower_bound_, rel=1e-10)
            assert ours.converged_ == theirs.converged_
    wrapped = StandardizedGMM(NaturalDiagonalGMM(3, warm_start=True, max_iter=5, random_state=0))
    wrapped.fit(X)
    wrapped.set_params(estimator__max_iter=0).fit(X)
    assert wrapped.lower_bound_ == -np.inf


def test_n_init_and_warm_start_follow_sklearn():
    X = _data(0, centers=5)
    ours, theirs = _fit_both(X, n_components=5, n_init=3, random_state=1, max_iter=15)
    _assert_same_model(ours, theirs, X, rtol=1e-8)

    ours, theirs = _pair(n_components=5, warm_start=True, max_iter=2, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        for _ in range(4):
            ours.fit(X)
            theirs.fit(X)
            _assert_same_model(ours, theirs, X, rtol=1e-8)


def test_float32_close_to_sklearn():
    X = _data(1).astype(np.float32)
    rng = np.random.default_rng(0)
    start = dict(
        means_init=X[rng.choice(len(X), 3, replace=False)],
        weights_init=np.full(3, 1 / 3),
        precisions_init=np.ones((3, 4)),
    )
    ours, theirs = _fit_both(X, n_components=3, max_iter=10, tol=0.0, **start)
    assert all(getattr(ours, a).dtype == np.float32 for a in ("weights_", "means_", "eta2_"))
    # float32 carries ~7 digits; ten iterations leave about five.
    for name in ("weights_", "means_", "covariances_"):
        assert_allclose(getattr(ours, name), getattr(theirs, name), rtol=1e-4)
    assert_allclose(ours.lower_bound_, theirs.lower_bound_, rtol=1e-5)


# The attributes scikit-learn's predictions read.
_PREDICTIVE = ("weights_", "means_", "precisions_cholesky_")


def _assert_same_predictions(ours, theirs, X):
    assert_allclose(ours.score_samples(X), theirs.score_samples(X), rtol=RTOL)
    assert_allclose(ours.predict_proba(X), theirs.predict_proba(X), rtol=1e-8, atol=1e-14)
    assert_array_equal(ours.predict(X), theirs.predict(X))
    assert_allclose(ours.bic(X), theirs.bic(X), rtol=RTOL)


def test_predictions_follow_changed_attributes_as_sklearn():
    # Drop-in: code that edits a fitted model's attributes (or copies them
    # from another model) sees the same predictions as with scikit-learn.
    X = _data(2)
    ours, theirs = _fit_both(X, n_components=3, random_state=0)
    before = ours.score_samples(X)
    ours.weights_[:] = theirs.weights_[:] = [0.6, 0.4, 0.0]  # in place
    _assert_same_predictions(ours, theirs, X)
    assert not np.allclose(ours.score_samples(X), before)
    for model in (ours, theirs):
        model.means_ = model.means_ + 1.0
        model.precisions_cholesky_ = model.precisions_cholesky_ * 2.0
    _assert_same_predictions(ours, theirs, X)
    # Changed back: the fit's own parameters again, to the last bit.
    fitted = _fit_both(X, n_components=3, random_state=0)[0]
    for name in _PREDICTIVE:
        setattr(ours, name, getattr(fitted, name).copy())
    assert_array_equal(ours.score_samples(X), fitted.score_samples(X))


@pytest.mark.parametrize("name, factor", [("precisions_cholesky_", 0.5), ("covariances_", 4.0)])
def test_a_warm_refit_continues_from_what_predictions_read_as_sklearn(name, factor):
    # scikit-learn's warm start reads precisions_cholesky_, never covariances_;
    # natgmm's continued from covariances_, a model its predictions did not use.
    X = _data(5)
    ours, theirs = _fit_both(X, n_components=3, warm_start=True, max_iter=1, tol=0.0,
                             random_state=0)  # fmt: skip
    for model in (ours, theirs):
        setattr(model, name, getattr(model, name) * factor)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            model.fit(X)
    _assert_same_model(ours, theirs, X)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_scikit_learns_private_per_component_methods(dtype):
    # Code written for GaussianMixture calls these for per-component
    # log-densities (an AttributeError before).
    from scipy.special import logsumexp

    X = _data(6).astype(dtype)
    ours = NaturalDiagonalGMM(3, random_state=0).fit(X)
    theirs = GaussianMixture(3, covariance_type="diag")
    for name in (*_PREDICTIVE, "covariances_", "precisions_"):
        setattr(theirs, name, getattr(ours, name).astype(np.float64))
    rows = X[:50].astype(np.float64)
    # A float32 model predicts from its float64 parameters, which its float32
    # attributes (scikit-learn's) round by 6e-8 relative.
    rtol = 1e-12 if dtype == np.float64 else 1e-6
    for method in ("_estimate_log_prob", "_estimate_weighted_log_prob"):
        assert_allclose(getattr(ours, method)(rows), getattr(theirs, method)(rows), rtol=rtol)
    assert_allclose(ours._estimate_log_weights(), theirs._estimate_log_weights(), rtol=1e-15)
    resp = ours._estimate_log_prob_resp(rows), theirs._estimate_log_prob_resp(rows)
    for a, b in zip(*resp, strict=True):
        # Log-responsibilities near zero: errors absolute, of the log-densities'.
        assert_allclose(a, b, rtol=max(rtol, 1e-10), atol=1e-12 if dtype == np.float64 else 1e-5)
    # Consistent with the public methods, also over the observed entries of
    # rows with missing ones, and for a component of zero weight.
    holed = rows.copy()
    holed[::2, 1] = np.nan
    ours.weights_ = np.array([0.5, 0.5, 0.0], dtype=dtype)
    weighted = ours._estimate_weighted_log_prob(holed)
    assert weighted.dtype == np.float64 and np.all(weighted[:, 2] == -np.inf)
    assert_allclose(logsumexp(weighted, axis=1), ours.score_samples(holed), rtol=1e-12)
    log_resp = ours._estimate_log_prob_resp(holed)[1]
    assert_allclose(np.exp(log_resp), ours.predict_proba(holed), rtol=1e-10, atol=1e-300)
    with pytest.raises(ValueError, match="X has 2 features"):
        ours._estimate_log_prob(rows[:, :2])


def test_attributes_set_by_hand_predict_as_sklearn():
    X = _data(3)
    theirs = GaussianMixture(3, covariance_type="diag", random_state=0).fit(X)
    ours = NaturalDiagonalGMM(3)
    for name in (*_PREDICTIVE, "covariances_", "precisions_"):
        setattr(ours, name, getattr(theirs, name))
    _assert_same_predictions(ours, theirs, X)
    assert_allclose(ours.aic(X), theirs.aic(X), rtol=RTOL)
    with pytest.raises(ValueError, match="X has 2 features, but NaturalDiagonalGMM is expecting 4"):
        ours.predict(X[:, :2])


@pytest.mark.parametrize(
    "name, value, message",
    [
        ("means_", np.zeros((3, 2)), "their shapes are"),
        ("weights_", np.array([0.5, -0.1, 0.6]), "weights_ must be finite, non-negative"),
        ("means_", np.full((3, 4), np.nan), "means_ must be finite"),
        ("precisions_cholesky_", -np.ones((3, 4)), "precisions_cholesky_ must be positive"),
    ],
)
def test_attributes_that_describe_no_mixture_are_refused(name, value, message):
    X = _data(3)
    model = NaturalDiagonalGMM(3, random_state=0).fit(X)
    setattr(model, name, value)
    with pytest.raises(ValueError, match=message):
        model.score_samples(X)


def test_infinite_entries_under_assume_finite_score_nan_as_sklearn():
    import sklearn

    X = _data(4)
    ours, theirs = _fit_both(X, n_components=3, random_state=0)
    rows = X[:3].copy()
    rows[1, 2] = -np.inf
    with sklearn.config_context(assume_finite=True):
        for model in (ours, theirs):  # sklearn's is -inf or NaN, by the signs
            assert not np.isfinite(model.score_samples(rows)[1])
            assert np.isnan(model.predict_proba(rows)[1]).all()
            assert np.isfinite(model.predict_proba(rows)[[0, 2]]).all()


def test_wrapper_scores_infinite_entries_under_assume_finite_as_its_estimator():
    # StandardizedGMM held them at float64's largest value: log-density -inf,
    # responsibilities [0, 1] and a confident label.
    import sklearn

    X = _data(4)
    rows = X[:3].copy()
    rows[0, 0], rows[1, 2] = np.inf, -np.inf
    model = StandardizedGMM(NaturalDiagonalGMM(3, random_state=0)).fit(X)
    with sklearn.config_context(assume_finite=True):
        assert np.isnan(model.score_samples(rows)[:2]).all()
        assert np.isnan(model.predict_proba(rows)[:2]).all()
        assert np.isfinite(model.predict_proba(rows)[2]).all()


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_nonfinite_weights_under_assume_finite_get_sklearns_error(bad):
    # scikit-learn's check of the weights is off there: a NaN weight gave
    # "probabilities contain NaN", an infinite one "cannot convert float NaN
    # to integer", StandardizedGMM "missing in every row", and score dropped the row.
    import sklearn

    X = _data(4)
    weights = np.ones(len(X))
    weights[3] = bad
    message = "Input sample_weight contains (NaN|infinity)"
    fitted = NaturalDiagonalGMM(3, random_state=0).fit(X)
    with sklearn.config_context(assume_finite=True):
        for model in (NaturalDiagonalGMM(3, random_state=0), StandardizedGMM()):
            with pytest.raises(ValueError, match=message):
                model.fit(X, sample_weight=weights)
        for call in (fitted.score, fitted.bic, fitted.partial_fit):
            with pytest.raises(ValueError, match=message):
                call(X, sample_weight=weights)
        with pytest.raises(ValueError, match=message):
            fitted.score(X, sample_weight=bad)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_fits_under_assume_finite_name_an_infinite_entry(dtype):
    # The check scikit-learn skips is the standardisation's: an infinity was
    # reported as "ill-defined empirical covariance ... increase reg_covar"
    # (StandardizedGMM: "cannot be represented"); sklearn's own fit is NaN.
    import sklearn

    X = _data(4).astype(dtype)
    X[7, 1] = np.inf
    old = NaturalDiagonalGMM(3, random_state=0).fit(X[:5])
    means = old.means_.copy()
    message = "Input X contains infinity or a value too large for dtype"
    with sklearn.config_context(assume_finite=True):
        for model in (old, StandardizedGMM(NaturalDiagonalGMM(3, random_state=0))):
            with pytest.raises(ValueError, match=message):
                model.fit(X)
        with pytest.raises(ValueError, match=message):
            old.partial_fit(X)
        weights = np.ones(len(X))
        weights[7] = 0.0  # weight zero: left out if far, but an infinity is refused
        for model in (old, StandardizedGMM(NaturalDiagonalGMM(3, random_state=0))):
            with pytest.raises(ValueError, match=message):
                model.fit(X, sample_weight=weights)
    assert_array_equal(old.means_, means)


def test_float32_rows_on_a_float64_model_have_responsibilities_summing_to_one():
    # The float32 kernel scores float32 rows; its responsibilities are still
    # divided by their float64 sum, as scikit-learn's are (float32 totals
    # left row sums 6e-8 from one).
    X = _data(5, n_samples=2000, centers=6)
    model = NaturalDiagonalGMM(6, random_state=0).fit(X)
    resp = model.predict_proba(X.astype(np.float32))
    assert resp.dtype == np.float64
    assert_allclose(resp.sum(axis=1), 1.0, rtol=0, atol=8 * np.finfo(np.float64).eps)
