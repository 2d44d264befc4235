"""Behaviour of NaturalDiagonalGMM beyond sklearn's common checks."""

import contextlib
import inspect
import json
import os
import subprocess
import sys
import warnings

import numpy as np
import pytest
import scipy.sparse as sp
from conftest import assert_finite_model, quiet_fit, run_python
from numpy.testing import assert_allclose, assert_array_equal
from sklearn.datasets import make_blobs
from sklearn.exceptions import ConvergenceWarning, NotFittedError
from sklearn.metrics import adjusted_rand_score
from sklearn.mixture import GaussianMixture
from sklearn.utils._param_validation import InvalidParameterError

from natgmm import NaturalDiagonalGMM, StandardizedGMM, _threading


@pytest.mark.parametrize(
    "init_params", ["kmeans", "k-means++", "random", "random_from_data", "bisect"]
)
def test_every_init_finds_the_blobs(blobs, init_params):
    X, y = blobs
    # Random seeds from the data can all land in two blobs: more restarts.
    n_init = 10 if init_params == "random_from_data" else 3
    model = NaturalDiagonalGMM(4, init_params=init_params, n_init=n_init, random_state=0)
    labels = quiet_fit(model, X).labels_
    assert adjusted_rand_score(y, labels) > 0.9
    assert_array_equal(labels, model.predict(X))
    assert_finite_model(model)


@pytest.mark.parametrize("init_params", ["kmeans", "k-means++", "random_from_data", "bisect"])
def test_hard_inits_use_within_cluster_variance(init_params):
    """Initial variances come from each cell, never from the whole data."""
    centres = np.array([[-100.0, 0.0], [100.0, 0.0]])
    rng = np.random.default_rng(0)
    X = np.repeat(centres, 200, axis=0) + rng.normal(size=(400, 2))
    model = NaturalDiagonalGMM(2, init_params=init_params, max_iter=0, random_state=1).fit(X)
    assert np.all(model.covariances_ < 2.0)  # total variance of feature 0 is ~1e4
    order = np.argsort(model.means_[:, 0])
    assert_allclose(model.means_[order], centres, atol=0.3)


def test_fit_predict_equals_predict_after_fit(blobs):
    X, _ = blobs
    model = NaturalDiagonalGMM(4, max_iter=2, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        labels = model.fit_predict(X)
    assert_array_equal(labels, model.predict(X))
    assert_array_equal(labels, model.labels_)


def test_natural_parameters_are_consistent(blobs):
    X, _ = blobs
    model = NaturalDiagonalGMM(4, random_state=0).fit(X)
    assert_allclose(model.eta1_, model.means_ / model.covariances_)
    assert_allclose(model.eta2_, -0.5 / model.covariances_)
    assert_allclose(model.precisions_cholesky_**2, model.precisions_)


def test_variance_floors(blobs):
    X, _ = blobs
    feature_var = X.var(axis=0)
    model = NaturalDiagonalGMM(4, min_variance_relative=0.5, random_state=0).fit(X)
    assert np.all(model.covariances_ >= 0.5 * feature_var * (1 - 1e-12))
    assert np.any(np.isclose(model.covariances_, 0.5 * feature_var, rtol=1e-9))
    floor = np.array([3.0, 0.1, 20.0])
    model = NaturalDiagonalGMM(4, min_variance=floor, random_state=0).fit(X)
    assert np.all(model.covariances_ >= floor * (1 - 1e-12))
    assert np.any(np.isclose(model.covariances_[:, 2], 20.0))
    for wrong in ([1.0, 2.0], [[3.0, 0.1, 20.0]]):  # a 2-D one raised numpy's broadcast error
        with pytest.raises(ValueError, match="min_variance should be a float or have shape"):
            NaturalDiagonalGMM(min_variance=wrong).fit(X)


@pytest.mark.parametrize("scale", [1.0, 1e-3, 1e3])
def test_precision_prior_is_the_closed_form_map(scale):
    """One component: the M-step is var = (S + 2b) / (N + 2(a - 1)) + reg.

    The pseudo-counts are in units of sample weight, whatever their scale
    (natgmm rescales weights internally by a power of two: at 1e-3 and 1e3
    the prior once counted in the rescaled units, unnoticed).
    """
    rng = np.random.default_rng(0)
    X = rng.normal(loc=3.0, scale=[1.0, 5.0], size=(50, 2))
    w = rng.uniform(0.5, 2.0, size=50) * scale
    a1, b = 4.0, 7.0
    model = NaturalDiagonalGMM(
        1, lower_precision_reg=a1, upper_precision_reg=b, max_iter=1, tol=0.0
    ).fit(X, sample_weight=w)
    mean = np.average(X, axis=0, weights=w)
    scatter = w @ (X - mean) ** 2
    assert_allclose(model.means_[0], mean, rtol=1e-12)
    assert_allclose(
        model.covariances_[0], (scatter + 2 * b) / (w.sum() + 2 * a1) + 1e-6, rtol=1e-10
    )


def test_random_starts_follow_the_sample_weights():
    # "random" responsibilities are weighed like the rows: rows of weight 0
    # at 100 pulled the start's means to 50.
    rng = np.random.default_rng(0)
    X = np.concatenate([rng.normal(0, 1, (300, 2)), rng.normal(100, 1, (300, 2))])
    w = np.r_[np.ones(300), np.zeros(300)]
    start = NaturalDiagonalGMM(2, init_params="random", max_iter=0, random_state=0)
    assert np.abs(quiet_fit(start, X, sample_weight=w).means_).max() < 1.0


def test_random_starts_count_only_observed_entries():
    # Missing entries sit at z = 0 in the kernels: counted as observed, they
    # shrank the start's variance of a feature 60 % missing from 9 to 3.5.
    rng = np.random.default_rng(0)
    X = rng.normal(size=(2000, 2)) * 3 + 10
    X[rng.random(2000) < 0.6, 1] = np.nan
    start = NaturalDiagonalGMM(2, init_params="random", max_iter=0, random_state=0)
    variances = quiet_fit(start, X).covariances_.mean(axis=0)
    assert_allclose(variances, np.nanvar(X, axis=0), rtol=0.2)


def test_random_from_data_draws_distinct_rows_when_there_are_just_enough():
    # With as many rows (of positive weight) as components, every row is a seed.
    X = np.arange(8.0).reshape(4, 2) * 10
    weighted = np.vstack([X, X + 1])
    weights = np.r_[np.ones(4), np.zeros(4)]
    for seed in range(10):
        for data, w in ((X, None), (weighted, weights)):
            start = NaturalDiagonalGMM(4, init_params="random_from_data", max_iter=0,
                                       random_state=seed)  # fmt: skip
            means = quiet_fit(start, data, sample_weight=w).means_
            assert len(np.unique(means, axis=0)) == 4, seed


def _start_with_a_far_component():
    """Rows about the origin, and a start whose third component sits at 1e6: it empties at once."""
    X = np.random.default_rng(0).normal(size=(300, 2))
    start = dict(
        weights_init=np.array([0.5, 0.49, 0.01]),
        means_init=np.array([[-0.5, 0.0], [0.5, 0.0], [1e6, 1e6]]),
        precisions_init=np.ones((3, 2)),
    )
    return X, start


def test_min_weight_and_empty_component():
    """A component that loses all mass keeps its parameters at min_weight."""
    X, start = _start_with_a_far_component()
    model = quiet_fit(NaturalDiagonalGMM(3, min_weight=1e-5, max_iter=5, **start), X)
    assert_array_equal(model.empty_components_, [False, False, True])
    assert_allclose(model.weights_[2], 1e-5)
    assert_allclose(model.means_[2], [1e6, 1e6])
    assert_allclose(model.covariances_[2], [1.0, 1.0])
    assert_finite_model(model)
    assert model.weights_.min() >= 1e-5
    # Said, not only recorded: the model uses fewer components than asked for.
    message = r"1 of the 3 components ended empty \(component 2\)"
    with pytest.warns(ConvergenceWarning, match=message):
        NaturalDiagonalGMM(3, min_weight=1e-5, max_iter=5, **start).fit(X)
    with pytest.raises(ValueError, match="n_components \\* min_weight must be below 1"):
        NaturalDiagonalGMM(3, min_weight=0.4).fit(X)


def test_empty_components_are_warned_of_once():
    """Three distinct rows, five components: the two empty ones are not also "the same Gaussian"."""
    X = np.repeat(np.random.default_rng(0).normal(size=(3, 2)), 20, axis=0)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model = NaturalDiagonalGMM(5, random_state=0).fit(X)
    messages = [str(w.message) for w in caught]
    assert model.empty_components_.sum() == 2
    assert sum("ended empty" in m for m in messages) == 1
    assert not any("same Gaussian" in m for m in messages), messages


def test_verbose_reports_empty_components_when_they_change(capsys):
    """One line when component 2 empties, not one per iteration (an audit's fit printed 421)."""
    X, start = _start_with_a_far_component()
    quiet_fit(NaturalDiagonalGMM(3, max_iter=8, tol=0, verbose=1, **start), X)
    lines = [line for line in capsys.readouterr().out.splitlines() if "empty" in line]
    assert lines == ["  Iteration 1: components [2] empty"]


def test_sample_weight_equals_repetition(blobs):
    X, _ = blobs
    rng = np.random.default_rng(0)
    counts = rng.integers(0, 4, size=len(X))
    # A deterministic start (a random one draws other rows from repeated rows
    # than from weighted ones, and may end at another maximum): identical fits.
    kwargs = dict(n_components=4, init_params="bisect", random_state=0, tol=1e-8)
    repeated = NaturalDiagonalGMM(**kwargs).fit(np.repeat(X, counts, axis=0))
    weighted = NaturalDiagonalGMM(**kwargs).fit(X, sample_weight=counts)
    assert_allclose(weighted.means_, repeated.means_, rtol=1e-7)
    assert_allclose(weighted.lower_bound_, repeated.lower_bound_, rtol=1e-9)
    score = weighted.score(X, sample_weight=counts)
    assert_allclose(score, weighted.score(np.repeat(X, counts, axis=0)))
    with pytest.raises(
        ValueError, match="Sample weights must contain at least one non-zero number"
    ):
        NaturalDiagonalGMM(2).fit(X, sample_weight=np.zeros(len(X)))
    with pytest.raises(ValueError, match="Negative values in data passed to `sample_weight`"):
        NaturalDiagonalGMM(2).fit(X, sample_weight=-np.ones(len(X)))
    # One number for every row: refused when not finite, as an array is (it
    # fitted on with NaN probabilities, and score returned NaN).
    for number, match in ((np.nan, "contains NaN"), (np.inf, "contains infinity")):
        with pytest.raises(ValueError, match=f"Input sample_weight {match}"):
            NaturalDiagonalGMM(2).fit(X, sample_weight=number)
        with pytest.raises(ValueError, match=f"Input sample_weight {match}"):
            weighted.score(X, sample_weight=number)


@pytest.mark.parametrize(
    "init_params", ["kmeans", "k-means++", "random", "random_from_data", "bisect"]
)
@pytest.mark.parametrize("mixed_precision", [False, True])
def test_equal_sample_weights_are_unit_weights(blobs, init_params, mixed_precision):
    """Every start is the same with equal weights as without (random_from_data drew otherwise).

    In float64 to its rounding. The float32 steps of ``mixed_precision``
    round what the weights' float64 rounding changes to float32's (2**-24,
    6e-8, of the parameters per step), which the next steps carry: measured
    up to 2e-6 of the means' spread after four of them, and 1e-5 of it is
    ten times less than a float32 step's tenth.
    """
    X, _ = blobs
    kwargs = dict(
        init_params=init_params, random_state=0, max_iter=5, mixed_precision=mixed_precision
    )
    plain = quiet_fit(NaturalDiagonalGMM(4, **kwargs), X)
    spread = np.ptp(plain.means_)
    for weights in (np.ones(len(X)), np.full(len(X), 3.0)):
        weighted = quiet_fit(NaturalDiagonalGMM(4, **kwargs), X, sample_weight=weights)
        if mixed_precision:
            assert_allclose(weighted.means_, plain.means_, rtol=0, atol=1e-5 * spread)
        else:
            assert_allclose(weighted.means_, plain.means_, rtol=1e-12)


@pytest.mark.parametrize("call", ["fit", "partial_fit", "score", "wrapper"])
def test_all_zero_sample_weights_are_refused_everywhere(blobs, call):
    """scikit-learn's error for all-zero weights, whatever its version checks itself.

    scikit-learn before 1.9 let them through: a fit then failed in k-means++
    ("probabilities contain NaN") and a score was NaN.
    """
    X, _ = blobs
    zeros = np.zeros(len(X))
    calls = {
        "fit": lambda: NaturalDiagonalGMM(2, random_state=0).fit(X, sample_weight=zeros),
        "partial_fit": lambda: NaturalDiagonalGMM(2).partial_fit(X, sample_weight=zeros),
        "score": lambda: NaturalDiagonalGMM(2).fit(X).score(X, sample_weight=zeros),
        "wrapper": lambda: StandardizedGMM(NaturalDiagonalGMM(2)).fit(X, sample_weight=zeros),
    }
    with pytest.raises(ValueError, match="at least one non-zero number"):
        calls[call]()


def test_warm_start_on_data_of_another_width_is_refused(blobs):
    """A warm start continues the previous fit: other features are refused clearly, the model kept.

    scikit-learn fails there inside numpy ("matmul: Input operand 1 has a mismatch").
    """
    X, _ = blobs
    model = NaturalDiagonalGMM(2, warm_start=True, random_state=0).fit(X)
    means = model.means_.copy()
    with pytest.raises(ValueError, match="X has 1 features, but NaturalDiagonalGMM is expecting"):
        model.fit(X[:, :1])
    assert_array_equal(model.means_, means)
    model.set_params(warm_start=False).fit(X[:, :1])
    assert model.n_features_in_ == 1


def test_partial_fit_validates_its_parameters_at_every_call(blobs):
    # Only the first call did: learning_decay=-1 set by set_params between
    # batches committed negative weights, and a score of NaN.
    from sklearn.utils._param_validation import InvalidParameterError

    X, _ = blobs
    model = NaturalDiagonalGMM(3, random_state=0).partial_fit(X[:300])
    means = model.means_.copy()
    for name, value in [("learning_decay", -1.0), ("learning_offset", -11.0), ("solver", "x")]:
        with pytest.raises(InvalidParameterError, match=f"'{name}' parameter"):
            model.set_params(**{name: value}).partial_fit(X[300:])
        model.set_params(**{name: NaturalDiagonalGMM().get_params()[name]})
    assert_array_equal(model.means_, means)


def test_fewer_rows_of_positive_weight_than_components_are_refused(blobs):
    X, _ = blobs
    weights = np.r_[1.0, 1.0, np.zeros(len(X) - 2)]
    with pytest.raises(ValueError, match="n_samples = 2 \\(rows of positive sample_weight\\)"):
        NaturalDiagonalGMM(3).fit(X, sample_weight=weights)


def test_continuing_with_another_number_of_components_is_refused(blobs):
    # A warm refit with n_components changed kept the old components silently
    # (as scikit-learn's does), while bic and aic counted the new number.
    X, _ = blobs
    model = NaturalDiagonalGMM(2, warm_start=True, random_state=0).fit(X)
    bic, means = model.bic(X), model.means_.copy()
    model.set_params(n_components=3)
    assert model.bic(X) == bic  # the fitted model's parameters, whatever n_components says
    for call in (model.fit, model.partial_fit):
        with pytest.raises(ValueError, match="fitted model, which has 2 components, but n_comp"):
            call(X)
        assert_array_equal(model.means_, means)
    assert model.set_params(warm_start=False).fit(X).means_.shape == (3, 3)


@pytest.mark.parametrize("solver", ["minibatch", "gradient"])
def test_a_warm_refit_from_attributes_set_by_hand_keeps_no_solver_state(solver):
    # The fit's online sums or Adam moments were kept whenever the number of
    # components matched: another model's attributes set by hand were pulled
    # back towards the old fit (means 14.9 apart with minibatch).
    X1, _ = make_blobs(600, n_features=2, centers=3, random_state=1)
    X2, _ = make_blobs(600, n_features=2, centers=3, random_state=2)
    common = dict(solver=solver, random_state=0, max_iter=3)
    donor = quiet_fit(NaturalDiagonalGMM(3, **common), X2)
    refits = []
    for history in (X1, X1 * 3.0 + 5.0):
        model = quiet_fit(NaturalDiagonalGMM(3, warm_start=True, **common), history)
        model.weights_, model.means_ = donor.weights_.copy(), donor.means_.copy()
        model.precisions_cholesky_ = donor.precisions_cholesky_.copy()
        refits.append(quiet_fit(model, X2).means_)
    assert_array_equal(refits[0], refits[1])  # whatever the model fitted before


@pytest.mark.parametrize("solver", ["em", "minibatch"])
def test_a_warm_refit_counts_the_components_of_the_attributes_it_continues(blobs, solver):
    # It continues weights_, means_ and precisions_cholesky_, also set by hand
    # to another number of components: the check counted the fitted model's,
    # so it refused the right n_components and advised the wrong one.
    X, _ = blobs
    model = NaturalDiagonalGMM(3, warm_start=True, solver=solver, random_state=0, max_iter=5)
    quiet_fit(model, X)
    fitted = (model.weights_, model.means_, model.precisions_cholesky_)
    model.weights_ = np.full(4, 0.25)
    model.means_ = X[:4].copy()
    model.precisions_cholesky_ = np.ones((4, X.shape[1]))
    with pytest.raises(ValueError, match="which has 4 components, but n_components=3. Set n"):
        model.fit(X)
    assert model.weights_.shape == (4,) and model.means_ is not fitted[1]  # as set
    quiet_fit(model.set_params(n_components=4), X)
    assert model.means_.shape == (4, X.shape[1]) and model.n_components == 4
    assert_finite_model(model, X)


def test_warm_start_continues_a_stream_and_a_step_drops_what_describes_a_fit(blobs):
    # A warm fit after partial_fit started cold (it looked for converged_,
    # which streams do not set) and took data of another width; and a step
    # after fit kept the fit's converged_, lower_bounds_ and labels_.
    X, _ = blobs
    stream = NaturalDiagonalGMM(3, warm_start=True, random_state=0).partial_fit(X[:100])
    with pytest.raises(ValueError, match="X has 1 features, but NaturalDiagonalGMM is expecting"):
        stream.fit(X[:, :1])
    start = {
        "weights_init": stream.weights_,
        "means_init": stream.means_,
        "precisions_init": stream.precisions_,
    }
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        stream.set_params(max_iter=2).fit(X)
        expected = NaturalDiagonalGMM(3, max_iter=2, **start).fit(X)
    assert_allclose(stream.means_, expected.means_, rtol=1e-12)
    assert_allclose(stream.lower_bounds_, expected.lower_bounds_, rtol=1e-12)
    fitted = NaturalDiagonalGMM(2, random_state=0).fit(X)
    fitted.partial_fit(X[:10] + 50.0)
    stale = ("converged_", "lower_bounds_", "history_", "labels_", "split_merge_moves_")
    assert not [name for name in stale if hasattr(fitted, name)]
    assert fitted.n_iter_ == fitted.n_steps_ == 1
    assert np.all(np.isfinite(fitted.predict_proba(X)))


def test_n_jobs_restores_kernel_threads_and_results(blobs):
    X, _ = blobs
    previous = _threading.current_threads()
    fits = [NaturalDiagonalGMM(4, random_state=0, n_jobs=n).fit(X) for n in (1, 2, -1, None)]
    assert _threading.current_threads() == previous
    for other in fits[1:]:
        assert_array_equal(fits[0].means_, other.means_)
        assert_array_equal(fits[0].covariances_, other.covariances_)
        assert fits[0].lower_bound_ == other.lower_bound_
    with pytest.raises(ValueError):
        NaturalDiagonalGMM(4, n_jobs=1, reg_covar=0.0).fit(np.zeros((10, 2)))
    assert _threading.current_threads() == previous
    with pytest.raises(InvalidParameterError, match="'n_jobs' parameter"):
        NaturalDiagonalGMM(4, n_jobs=0).fit(X)


def test_readonly_memmap_input(tmp_path, blobs):
    X, _ = blobs
    path = tmp_path / "X.npy"
    np.save(path, X)
    X_map = np.load(path, mmap_mode="r")
    model = NaturalDiagonalGMM(4, random_state=0).fit(X_map)
    reference = NaturalDiagonalGMM(4, random_state=0).fit(X)
    assert_array_equal(model.means_, reference.means_)
    assert_array_equal(model.predict(X_map), reference.predict(X))


# scikit-learn enables its array API dispatch only when SciPy was imported
# with SCIPY_ARRAY_API=1, so the check runs in a fresh interpreter.
_ARRAY_API_SCRIPT = """
import sys

import numpy as np
import sklearn
from numpy.testing import assert_array_equal

import array_api_strict as xp
from natgmm import NaturalDiagonalGMM, StandardizedGMM

try:
    with sklearn.config_context(array_api_dispatch=True):
        pass
except (ImportError, RuntimeError) as error:  # SciPy or NumPy too old for dispatch
    print(error)
    sys.exit(77)

rng = np.random.default_rng(0)
X = np.vstack([rng.normal(size=(200, 3)), rng.normal(size=(200, 3)) + 4])
w = rng.random(len(X))
model = NaturalDiagonalGMM(2, random_state=0)
for model in (model, StandardizedGMM(model)):
    reference = sklearn.clone(model).fit(X, sample_weight=w)
    with sklearn.config_context(array_api_dispatch=True):
        fitted = sklearn.clone(model).fit(xp.asarray(X), sample_weight=xp.asarray(w))
        outputs = {
            "predict": fitted.predict(xp.asarray(X)),
            "predict_proba": fitted.predict_proba(xp.asarray(X)),
            "score_samples": fitted.score_samples(xp.asarray(X)),
        }
        score = fitted.score(xp.asarray(X), sample_weight=xp.asarray(w))
        bic, aic = fitted.bic(xp.asarray(X)), fitted.aic(xp.asarray(X))
    assert_array_equal(fitted.means_, reference.means_)
    for name, values in outputs.items():
        assert isinstance(values, np.ndarray), name
        assert_array_equal(values, getattr(reference, name)(X))
    assert score == reference.score(X, sample_weight=w)
    assert (bic, aic) == (reference.bic(X), reference.aic(X))
start = NaturalDiagonalGMM(2, random_state=0).fit(X)
init = {"means_init": start.means_, "weights_init": start.weights_}
init["precisions_init"] = start.precisions_
X32 = X.astype(np.float32)
with sklearn.config_context(array_api_dispatch=True):
    warm = NaturalDiagonalGMM(2, **{k: xp.asarray(v) for k, v in init.items()})
    warm.fit(xp.asarray(X32))
    stream = NaturalDiagonalGMM(2, random_state=0).partial_fit(xp.asarray(X))
assert_array_equal(warm.means_, NaturalDiagonalGMM(2, **init).fit(X32).means_)
assert_array_equal(stream.means_, NaturalDiagonalGMM(2, random_state=0).partial_fit(X).means_)
print("ok")
"""


def test_array_api_inputs_are_converted_to_numpy():
    # natgmm computes with NumPy: under scikit-learn's array API dispatch,
    # other libraries' CPU arrays are read as NumPy arrays, with the same
    # results as the NumPy input, and the results are NumPy arrays.
    pytest.importorskip("array_api_strict")
    env = {**os.environ, "SCIPY_ARRAY_API": "1"}
    run = subprocess.run(
        [sys.executable, "-c", _ARRAY_API_SCRIPT], env=env, capture_output=True, text=True
    )
    if run.returncode == 77:
        pytest.skip(f"scikit-learn's array API dispatch is unavailable: {run.stdout.strip()}")
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == "ok"


def test_other_array_libraries_keep_their_dtype(blobs):
    # Without dispatch, scikit-learn's checks read such an array's float32 as
    # float64; natgmm reads it as NumPy does, so float32 stays float32.
    xp = pytest.importorskip("array_api_strict")
    X = blobs[0].astype(np.float32)
    model = NaturalDiagonalGMM(4, random_state=0).fit(xp.asarray(X))
    reference = NaturalDiagonalGMM(4, random_state=0).fit(X)
    assert model.means_.dtype == np.float32
    assert_array_equal(model.means_, reference.means_)
    assert_array_equal(model.predict(xp.asarray(X)), reference.predict(X))
    assert model.bic(xp.asarray(X)) == reference.bic(X)


# The fits of the pure-Python check: every initialisation, float32, missing
# values, annealing, split-and-merge moves and both other solvers.
_PURE_PYTHON_SCRIPT = """
import json

import numpy as np

from natgmm import NaturalDiagonalGMM

rng = np.random.default_rng(0)
X = np.vstack([rng.normal(size=(120, 3)) + shift for shift in (0, 4, 8)])
X_missing = X.copy()
X_missing[::7, 1] = np.nan
cases = [
    ({"init_params": init}, X)
    for init in ("kmeans", "k-means++", "random", "random_from_data", "bisect")
] + [
    ({}, X.astype(np.float32)),
    ({}, X_missing),
    ({"annealing": "temperature", "split_merge": 2}, X),
    ({"solver": "minibatch", "batch_size": 64}, X),
    ({"solver": "gradient"}, X),
]
print(json.dumps([
    NaturalDiagonalGMM(3, random_state=0, **kwargs).fit(data).score(data)
    for kwargs, data in cases
]))
"""


def test_pure_python_mode_gives_the_compiled_results():
    # NUMBA_DISABLE_JIT=1 (debuggers, coverage of the kernels) runs the
    # kernels as Python; the SIMD sums written as LLVM intrinsics fall back
    # to NumPy sums, whose other order of additions changes the last bits:
    # the fits take the same steps, and the scores differ by a few ulps
    # (at most 4.4e-16 relative, measured). In float32 (the sixth case) the
    # interpreter also rounds float32 arithmetic otherwise than numba's
    # typing, by numpy's promotion rules: a few float32 ulps of 6e-8 (2e-8 to
    # 1e-7 relative on numpy 2.4, 1.6e-7 on numpy 1.24), so 1e-6 there.
    def scores(env):
        run = subprocess.run(
            [sys.executable, "-c", _PURE_PYTHON_SCRIPT], env={**os.environ, **env},
            capture_output=True, text=True,
        )  # fmt: skip
        assert run.returncode == 0, run.stderr
        return json.loads(run.stdout)

    python, compiled = scores({"NUMBA_DISABLE_JIT": "1"}), scores({})
    rtol = np.full(len(compiled), 1e-12)
    rtol[5] = 1e-6
    assert np.all(np.abs(np.subtract(python, compiled)) <= rtol * np.abs(compiled))


def test_sample_and_information_criteria(blobs):
    X, _ = blobs
    ours = NaturalDiagonalGMM(4, random_state=0).fit(X)
    theirs = GaussianMixture(4, covariance_type="diag", random_state=0).fit(X)
    assert_allclose(ours.bic(X), theirs.bic(X), rtol=1e-8)
    assert_allclose(ours.aic(X), theirs.aic(X), rtol=1e-8)
    Xs, ys = ours.sample(5000)
    assert Xs.shape == (5000, 3) and ys.shape == (5000,)
    assert_allclose(np.bincount(ys, minlength=4) / 5000, ours.weights_, atol=0.03)
    with pytest.raises(ValueError, match="Invalid value for 'n_samples'"):
        ours.sample(0)
    assert ours.sample(5.0)[0].shape == theirs.sample(5.0)[0].shape == (5, 3)  # as scikit-learn


@pytest.mark.parametrize("wrapped", [False, True])
def test_samples_have_the_fitted_moments(blobs, wrapped):
    # Spreads far from one in every feature, so that a draw scaled by the
    # variance instead of the standard deviation shows.
    X = blobs[0] * [0.2, 4.0, 30.0]
    model = NaturalDiagonalGMM(4, random_state=0)
    model = StandardizedGMM(model).fit(X) if wrapped else model.fit(X)
    Xs, ys = model.sample(40000)
    for k in range(4):
        rows = Xs[ys == k]
        sd = np.sqrt(model.covariances_[k])
        # Standard errors: sd / sqrt(n) for the mean, about sqrt(2 / n) of the variance.
        assert np.all(np.abs(rows.mean(axis=0) - model.means_[k]) <= 5 * sd / np.sqrt(len(rows)))
        assert_allclose(rows.var(axis=0), model.covariances_[k], rtol=6 * np.sqrt(2 / len(rows)))


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_sample_draws_as_sklearn_from_the_same_attributes(blobs, dtype):
    # float32 models drew 2e-7 away: the variances went to float64 before the root.
    X = blobs[0].astype(dtype)
    ours = NaturalDiagonalGMM(4, random_state=0).fit(X)
    theirs = GaussianMixture(4, covariance_type="diag", random_state=0)
    for name in ("weights_", "means_", "covariances_", "precisions_cholesky_"):
        setattr(theirs, name, getattr(ours, name))
    for a, b in zip(ours.sample(300), theirs.sample(300), strict=True):
        assert_array_equal(a, b)


def test_sample_from_float32_weights_that_round_above_one():
    # One weight rounds to 1.0 in float32, the others at min_weight: their
    # float64 sum was 1 + 3e-9, and multinomial raised "sum(pvals[:-1]) > 1.0".
    X = np.zeros((4, 1), dtype=np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = NaturalDiagonalGMM(4, min_weight=1e-9, random_state=0).fit(X)
    assert model.weights_.astype(np.float64)[:-1].sum() > 1.0  # the case
    for wrapped in (model, StandardizedGMM(NaturalDiagonalGMM(4, min_weight=1e-9))):
        if wrapped is not model:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                wrapped.fit(X)
        rows, components = wrapped.sample(5)
        assert rows.shape == (5, 1) and np.all(np.isfinite(rows)) and components.shape == (5,)


def test_sample_holds_its_output_once():
    # np.vstack of the components' draws held the output twice (as
    # scikit-learn's does): 764 MiB for a 389 MiB sample.
    import tracemalloc

    X, _ = make_blobs(400, n_features=20, centers=4, random_state=0)
    model = NaturalDiagonalGMM(4, random_state=0).fit(X)
    assert model.weights_.max() < 0.3
    tracemalloc.start()
    try:
        Xs, ys = model.sample(100_000)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    # Beyond the output, one component's draws at a time: under 0.3 of it.
    assert peak <= Xs.nbytes + ys.nbytes + 0.35 * Xs.nbytes, (peak, Xs.nbytes)


def test_verbose_output(blobs, capsys, monkeypatch):
    from natgmm import _progress

    X, _ = blobs
    monkeypatch.setattr(_progress, "_FIRST", {"fit": True})  # as in a new process
    NaturalDiagonalGMM(4, verbose=2, verbose_interval=1, random_state=0).fit(X)
    out = capsys.readouterr().out
    assert "Initialization 0" in out and "Iteration 1" in out and "converged" in out
    # The first fit says that the kernels load or compile; the next do not.
    assert out.startswith("(First fit in this process: natgmm's kernels load")
    model = NaturalDiagonalGMM(4, n_init=3, verbose=1, random_state=0).fit(X)
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "Initialization 0"
    # Each line says where the fit is, and which start was kept: the first
    # of the largest of the starts' final lower bounds.
    assert all("lower bound -" in line for line in lines if "Iteration" in line)
    ends = [line for line in lines if line.startswith("Initialization ") and "after" in line]
    bounds = [float(line.rsplit(" ", 1)[1].rstrip(".")) for line in ends]
    assert len(bounds) == 3
    assert lines[-1] == (
        f"Kept initialization {int(np.argmax(bounds))} (lower bound {model.lower_bound_:.5f})."
    )


def test_the_convergence_warning_says_how_far_the_fit_was(blobs):
    X, _ = blobs
    with pytest.warns(ConvergenceWarning, match="did not converge.*last iteration gained"):
        NaturalDiagonalGMM(4, max_iter=2, tol=0, random_state=0).fit(X)
    with pytest.warns(ConvergenceWarning, match="init_params is not used: the final EM ran out"):
        NaturalDiagonalGMM(4, max_iter=1, annealing="temperature", random_state=0).fit(X)


def test_verbose_streams_and_passes(blobs, capsys):
    """A stream reports its steps (the first, then every verbose_interval-th); a pass says so."""
    X, _ = blobs
    model = NaturalDiagonalGMM(4, verbose=1, verbose_interval=2, random_state=0)
    for batch in np.array_split(X, 4):
        model.partial_fit(batch)
    lines = capsys.readouterr().out.splitlines()
    # The first batch's EM (its iterations as fit's), then the steps.
    assert (
        lines[0]
        == f"partial_fit: EM on the first batch ({len(X) // 4} rows), as fit would, then its step"
    )
    assert lines[1].startswith("  Iteration 2 (total): lower bound -")
    end = next(i for i, line in enumerate(lines) if "the first batch's EM converged" in line)
    assert [line.split(":")[0] for line in lines[end + 1 :]] == [
        "partial_fit step 1", "partial_fit step 2", "partial_fit step 4"
    ]  # fmt: skip
    step = lines[end + 1]
    assert "mean log-likelihood before the step" in step and "blended in with step" in step
    quiet_fit(
        NaturalDiagonalGMM(4, solver="minibatch", verbose=1, verbose_interval=1, max_iter=1), X
    )
    assert "Iteration 1 (total; a pass of online steps)" in capsys.readouterr().out


# ------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    "X, error, match",
    [
        # NaN entries are missing values; a feature missing in every row is an error.
        (np.c_[np.arange(4.0), np.full(4, np.nan)], ValueError, "missing \\(NaN\\) in every row"),
        (np.array([[1.0, np.inf], [2.0, 3.0]]), ValueError, "Input X contains infinity"),
        (sp.csr_matrix(np.eye(3)), TypeError, "Sparse data was passed"),
        (np.array([[1 + 1j, 2], [3, 4]]), ValueError, "Complex data not supported"),
        (np.empty((0, 3)), ValueError, "0 sample\\(s\\)"),
        (np.arange(5.0), ValueError, "Expected 2D array, got 1D array instead"),
        (np.ones((1, 3)), ValueError, "Found array with 1 sample\\(s\\)"),
        (np.ones((3, 2)), ValueError, "Expected n_samples >= n_components"),
    ],
)
def test_bad_input_clear_errors(X, error, match):
    with pytest.raises(error, match=match):
        NaturalDiagonalGMM(4).fit(X)


def test_bad_parameters_and_predict_input(blobs):
    X, _ = blobs
    # scikit-learn's words, then where the other covariance types are.
    match = r"must be a str among {'diag'} \(natgmm .* sklearn.mixture.GaussianMixture fits 'full'"
    with pytest.raises(InvalidParameterError, match=match):
        NaturalDiagonalGMM(covariance_type="full").fit(X)
    model = NaturalDiagonalGMM(2, random_state=0).fit(X)
    with pytest.raises(ValueError, match="X has 2 features, but NaturalDiagonalGMM is expecting 3"):
        model.predict(X[:, :2])
    with pytest.raises(ValueError, match="should be normalized"):
        NaturalDiagonalGMM(2, weights_init=[0.2, 0.2]).fit(X)
    with pytest.raises(ValueError, match="'means' should have the shape"):
        NaturalDiagonalGMM(2, means_init=np.zeros((3, 3))).fit(X)
    with pytest.raises(ValueError, match="'diag precision' should be positive"):
        NaturalDiagonalGMM(2, precisions_init=-np.ones((2, 3))).fit(X)
    with pytest.raises(ValueError, match="ill-defined empirical covariance"):
        NaturalDiagonalGMM(2, reg_covar=0.0, random_state=0).fit(np.repeat(X[:2], 5, axis=0))


@pytest.mark.parametrize(
    "weights, X_dtype",
    [
        (np.array([0.3, 0.3, 0.4], dtype=np.float32), np.float64),  # float32 sum: 1 + 6e-8
        ([0.3, 0.3, 0.4 + 5e-7], np.float32),  # float64 weights: above 1e-8
        (np.array([0.3, 0.3, 0.4 + 5e-7], dtype=np.float32), np.float64),
    ],
)
def test_weights_init_sum_is_checked_in_its_own_precision_as_sklearn(blobs, weights, X_dtype):
    from sklearn.mixture import _gaussian_mixture

    if np.asarray(weights).dtype == np.float32 and "1e-6" not in inspect.getsource(
        _gaussian_mixture._check_weights
    ):
        pytest.skip(
            "this scikit-learn checks float32 weights at float64's tolerance (1.6 does); "
            "natgmm follows the later scikit-learn, which checks them in their own precision"
        )
    X = blobs[0].astype(X_dtype)
    outcomes = []
    for model in (
        GaussianMixture(3, covariance_type="diag", weights_init=weights, max_iter=2),
        NaturalDiagonalGMM(3, weights_init=weights, max_iter=2),
    ):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", ConvergenceWarning)
                model.fit(X)
            outcomes.append("fitted")
        except ValueError as error:
            outcomes.append(str(error))
    assert outcomes[1] == outcomes[0]


@pytest.mark.parametrize(
    "method", ["predict", "predict_proba", "score", "score_samples", "bic", "aic"]
)
def test_methods_check_the_model_then_x_as_sklearn(blobs, method):
    # bic and aic counted the rows of X first: a TypeError for None.
    with pytest.raises(NotFittedError):
        getattr(NaturalDiagonalGMM(2), method)(None)
    model = NaturalDiagonalGMM(2, random_state=0).fit(blobs[0])
    with pytest.raises(ValueError, match="Expected 2D array, got scalar array instead"):
        getattr(model, method)(1.0)


def test_parameters_are_not_modified(blobs):
    X, _ = blobs
    weights = [0.5, 0.5]
    model = NaturalDiagonalGMM(2, weights_init=weights).fit(X)
    assert model.weights_init is weights


@pytest.mark.parametrize("magnitude", [1e-150, 1e-30, 1.0, 1e30, 1e150])
def test_extreme_magnitudes_constant_columns_duplicates(magnitude):
    rng = np.random.default_rng(0)
    X = np.vstack([rng.normal(size=(40, 3)), rng.normal(loc=5.0, size=(40, 3))])
    X = np.vstack([X, X[:20]])  # duplicated rows
    X[:, 1] = 7.0  # constant column
    X *= magnitude
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)  # no overflow/invalid anywhere
        model = NaturalDiagonalGMM(3, random_state=0, reg_covar=1e-6 * magnitude**2).fit(X)
    assert_finite_model(model)
    assert np.all(np.isfinite(model.score_samples(X)))
    proba = model.predict_proba(X)
    assert_allclose(proba.sum(axis=1), 1.0)
    # Both clusters found whatever the unit.
    assert len(np.unique(model.predict(X[:80]))) >= 2


@pytest.mark.parametrize("wrapped", [False, True])
def test_data_at_the_ends_of_float64_fits_or_is_refused_without_runtime_warnings(wrapped):
    # Subnormal data fits (reg_covar is then the variance); data whose
    # variances overflow is refused with the error of fitted_attributes, as
    # is tiny data in StandardizedGMM, whose variances in user units
    # underflow. Both once let numpy's overflow and divide warnings out.
    X = np.random.default_rng(0).normal(size=(200, 2))
    model = NaturalDiagonalGMM(3, random_state=0)
    if wrapped:
        model = StandardizedGMM(model)
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        warnings.simplefilter("ignore", UserWarning)  # reg_covar against the variances
        for magnitude in (1e-320, 1e-300, 1e200):
            if wrapped or magnitude == 1e200:
                with pytest.raises(ValueError, match="cannot be represented in float64"):
                    model.fit(X * magnitude)
            else:
                assert_finite_model(model.fit(X * magnitude))


def test_import_does_not_need_dask():
    # Dask is an optional extra: importing and fitting on numpy never import it.
    code = (
        "import sys, numpy as np, natgmm\n"
        "natgmm.NaturalDiagonalGMM(2, random_state=0).fit(np.arange(8.0).reshape(4, 2))\n"
        "loaded = [m for m, mod in sys.modules.items() if mod is not None]\n"
        "assert not any(m.split('.')[0] in ('dask', 'distributed') for m in loaded), loaded\n"
    )
    result = run_python(code)
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize(
    "make",
    [
        lambda: NaturalDiagonalGMM(3, random_state=0),
        lambda: StandardizedGMM(NaturalDiagonalGMM(3, random_state=0)),
        # scikit-learn's bic takes no weights: the wrapper weighs its own score.
        lambda: StandardizedGMM(GaussianMixture(3, covariance_type="diag", random_state=0)),
    ],
    ids=["estimator", "wrapped", "wrapped-sklearn"],
)
def test_weighted_bic_and_aic_count_weights_as_repeated_rows(blobs, make):
    X, _ = blobs
    counts = np.random.default_rng(0).integers(0, 4, len(X))
    model = make().fit(X)
    repeated = np.repeat(X, counts, axis=0)
    for name in ("bic", "aic"):
        criterion = getattr(model, name)
        # Both sum the same log-densities, in other orders: to rounding.
        assert_allclose(criterion(X, sample_weight=counts), criterion(repeated), rtol=1e-12)
        assert criterion(X, sample_weight=np.ones(len(X))) == pytest.approx(criterion(X), rel=1e-14)
        assert criterion(X, sample_weight=None) == criterion(X)
        with pytest.raises(ValueError, match="Negative values in data passed to `sample_weight`"):
            criterion(X, sample_weight=-np.ones(len(X)))
        with pytest.raises(ValueError, match="beyond float64's range"):
            criterion(X, sample_weight=np.full(len(X), 1e307))
        # A row of weight zero counts for nothing, even at log-density -inf
        # (0 * -inf made the weighted sums NaN).
        far = np.vstack([X, np.full((1, X.shape[1]), 1e300)])
        assert model.score_samples(far)[-1] == -np.inf
        unit = np.r_[np.ones(len(X)), 0.0]
        assert criterion(far, sample_weight=unit) == pytest.approx(criterion(X), rel=1e-14)
    assert model.score(far, sample_weight=unit) == pytest.approx(model.score(X), rel=1e-14)


def test_a_prediction_reads_one_fit_while_another_thread_refits(monkeypatch):
    """A refit committed while a prediction reads the model does not mix the two fits.

    A refit on another thread swaps the estimator's ``__dict__`` in one
    assignment; here it lands between the reads of ``weights_`` and
    ``means_`` (as a thread switch may): the prediction mixed the old
    weights with the new means (a ValueError with other n_components).
    """
    from natgmm import _estimator

    rng = np.random.default_rng(3)
    XA, XB = rng.normal(size=(300, 3)), rng.normal(size=(300, 3)) * 10 - 7
    Q = rng.normal(size=(20, 3))
    kw = dict(max_iter=2, init_params="random", random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        old = NaturalDiagonalGMM(2, **kw).fit(XA).score_samples(Q)
        refit = NaturalDiagonalGMM(4, **kw).fit(XB)
        model = NaturalDiagonalGMM(2, **kw).fit(XA)
    names = _estimator.PREDICTIVE_ATTRIBUTES

    class RefitLands:
        def __iter__(self):
            yield names[0]
            model.__dict__ = dict(vars(refit))  # as commit() does at the end of a refit
            yield from names[1:]

    monkeypatch.setattr(_estimator, "PREDICTIVE_ATTRIBUTES", RefitLands())
    assert_array_equal(model.score_samples(Q), old)


# --------------------------------------------- the operands kept with a fit


def _predictions(model, X):
    return model.predict(X), model.predict_proba(X), model.score_samples(X), model.score(X)


def _assert_same_bits(a, b):
    for x, y in zip(a, b, strict=True):
        x, y = np.asarray(x), np.asarray(y)
        assert x.dtype == y.dtype and x.shape == y.shape and x.tobytes() == y.tobytes()


def _as_set_by_hand(model):
    """An unfitted estimator given ``model``'s predictive attributes (no operands kept)."""
    fresh = NaturalDiagonalGMM(model.n_components)
    for name in ("weights_", "means_", "precisions_cholesky_"):
        setattr(fresh, name, getattr(model, name).copy())
    return fresh


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("missing", [False, True])
def test_kept_operands_give_the_bits_of_operands_made_anew(blobs, dtype, missing):
    from natgmm._data import log_prob

    X = blobs[0].astype(dtype)
    if missing:
        X[::7, 1] = np.nan
    model = quiet_fit(NaturalDiagonalGMM(4, random_state=0), X)
    state = model._state
    for rows in (X[:1], X[:10], X):
        kept = model._operands
        for want_resp in (False, True):
            fresh = log_prob(rows, state.standardiser, state.params, False, want_resp)
            reused = log_prob(rows, state.standardiser, state.params, False, want_resp, None, kept)
            _assert_same_bits(fresh, reused)
    # Made once for X's kind of data, then reused.
    assert list(model._operands._made) == [(missing, dtype == np.float32)]
    made = model._operands._made[(missing, dtype == np.float32)]
    model.predict(X[:1])
    assert model._operands._made[(missing, dtype == np.float32)] is made


@pytest.mark.parametrize("name", ["weights_", "means_", "precisions_cholesky_"])
@pytest.mark.parametrize("in_place", [False, True])
def test_predictions_follow_attributes_changed_after_the_operands_were_made(blobs, name, in_place):
    X = blobs[0]
    model = quiet_fit(NaturalDiagonalGMM(4, random_state=0), X)
    fitted = _predictions(model, X[:10])  # makes and keeps the operands
    changed = getattr(model, name) * 1.25 + (0.0 if name == "weights_" else 0.5)
    if in_place:
        getattr(model, name)[...] = changed
    else:
        setattr(model, name, changed)
    after = _predictions(model, X[:10])
    # Those of the changed attributes set by hand on an estimator never fitted.
    by_hand = _as_set_by_hand(model)
    for a, b in zip(after, _predictions(by_hand, X[:10]), strict=True):
        assert_allclose(a, b, rtol=1e-12, atol=1e-12)
    assert not np.array_equal(after[2], fitted[2])
    # Put back as fitted: the kept operands again, bit for bit.
    attribute = getattr(model, name)
    attribute[...] = model._published[("weights_", "means_", "precisions_cholesky_").index(name)]
    _assert_same_bits(_predictions(model, X[:10]), fitted)


def test_attributes_equal_to_the_fit_s_but_not_in_bytes_count_as_unchanged(blobs):
    # np.array_equal's answer, as before the bytes were compared first: a
    # list or another dtype of the same values is the fit's.
    X = blobs[0]
    model = quiet_fit(NaturalDiagonalGMM(4, random_state=0), X)
    fitted = _predictions(model, X)
    means = model.means_.copy()
    model.means_ = means.tolist()
    _assert_same_bits(_predictions(model, X), fitted)
    model.means_ = means.astype(np.longdouble)
    _assert_same_bits(_predictions(model, X), fitted)
    model.means_ = means
    _assert_same_bits(_predictions(model, X), fitted)


def test_a_pickle_keeps_no_operands_and_a_loaded_model_makes_them_again(blobs):
    import pickle

    X = blobs[0]
    model = quiet_fit(NaturalDiagonalGMM(4, random_state=0), X)
    before = pickle.dumps(model)
    fitted = _predictions(model, X)
    assert pickle.dumps(model) == before  # predicting changed nothing pickled
    assert "_operands" not in model.__getstate__() and "_operands" in vars(model)
    loaded = pickle.loads(before)
    assert loaded._operands.params is loaded._state.params
    _assert_same_bits(_predictions(loaded, X), fitted)


def test_a_refit_keeps_the_operands_of_its_own_parameters(blobs):
    X = blobs[0]
    model = quiet_fit(NaturalDiagonalGMM(4, random_state=0), X)
    model.predict(X)
    old = model._operands
    quiet_fit(model.set_params(random_state=1, n_components=3), X)
    assert model._operands is not old and model._operands.params is model._state.params
    fresh = quiet_fit(NaturalDiagonalGMM(3, random_state=1), X)
    _assert_same_bits(_predictions(model, X), _predictions(fresh, X))


def test_the_quick_fitted_test_agrees_with_check_is_fitted(blobs):
    X = blobs[0]
    with pytest.raises(NotFittedError):
        NaturalDiagonalGMM(2).predict(X)
    partial = NaturalDiagonalGMM(2)
    partial.means_ = np.zeros((2, 3))  # not all three attributes: sklearn's check decides
    with pytest.raises((NotFittedError, AttributeError)):
        partial.predict(X)

    class NeverFitted(NaturalDiagonalGMM):
        def __sklearn_is_fitted__(self):
            return False

    model = quiet_fit(NeverFitted(2, random_state=0), X)
    with pytest.raises(NotFittedError):
        model.predict(X)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_few_plain_rows_skip_validate_data_only_where_it_returns_them(blobs, dtype):
    from sklearn.utils.validation import validate_data

    from natgmm._data import _plain_rows, validate_rows

    X = blobs[0].astype(dtype)
    model = quiet_fit(NaturalDiagonalGMM(3, random_state=0), X)
    params = dict(order="C", reset=False, ensure_all_finite="allow-nan")
    with_nan, with_inf, read_only = X[:2].copy(), X[:2].copy(), X[:5].copy()
    with_nan[0, 1], with_inf[1, 0] = np.nan, np.inf
    read_only.flags.writeable = False
    for rows in (X[:1].copy(), X[:10], with_nan, read_only, X):
        assert _plain_rows(model, rows, params)
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            assert validate_data(model, rows, dtype=[np.float64, np.float32], **params) is rows
    other = (
        with_inf, np.asfortranarray(X[:10]), X[::2], X[:10, :2].copy(), X[:0], X[0],
        X[:10].astype(np.int64), X[:10].astype(np.float16), X[:10].astype(X.dtype.newbyteorder()),
        X[:10].tolist(), np.tile(X, (40, 1)),  # 72 000 entries: the generic checks
    )  # fmt: skip
    for rows in other:
        assert not _plain_rows(model, rows, params)
    for changed in ({"reset": True}, {"order": "F"}, {"ensure_all_finite": False}):
        assert not _plain_rows(model, X[:10], {**params, **changed})
    assert not _plain_rows(model, X[:10], {**params, "ensure_min_samples": 20})
    # StandardizedGMM's checks: no order asked, and NaN refused unless its estimator takes it.
    for finite in (True, "allow-nan"):
        wrapper = dict(reset=False, ensure_all_finite=finite)
        rows = X[:10].copy()
        assert _plain_rows(model, rows, wrapper)
        assert validate_data(model, rows, dtype=[np.float64, np.float32], **wrapper) is rows
        assert _plain_rows(model, with_nan, wrapper) == (finite == "allow-nan")
        assert not _plain_rows(model, with_inf, wrapper)
    with pytest.raises(ValueError, match="Input X contains NaN"):
        validate_rows(model, with_nan, reset=False, ensure_all_finite=True)
    # Rows for a model fitted with feature names get scikit-learn's warning.
    model.feature_names_in_ = np.array(["a", "b", "c"], dtype=object)
    assert not _plain_rows(model, X[:10], params)
    with pytest.warns(UserWarning, match="X does not have valid feature names"):
        model.predict(X[:1])
    del model.feature_names_in_
    with pytest.raises(ValueError, match="Input X contains infinity or a value too large"):
        model.predict(with_inf)
    with pytest.raises(ValueError, match="X has 2 features, but NaturalDiagonalGMM is expecting 3"):
        model.predict(X[:1, :2].copy())


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("missing", [False, True])
def test_predictions_too_small_to_thread_blas_skip_the_hold_for_the_same_bits(
    blobs, monkeypatch, dtype, missing
):
    """Products too small for BLAS to thread are not held, whatever the rows; larger ones are."""
    from natgmm import _blas
    from natgmm._kernels import log_prob_work

    held = []
    hold = _blas.single_threaded_blas

    @contextlib.contextmanager
    def counted():
        held.append(1)
        with hold():  # the real hold: the forced one below must change nothing
            yield

    narrow = blobs[0].astype(dtype)  # 3 features, 4 components: 64 x 10 x 4 a product
    wide = make_blobs(n_samples=300, n_features=60, centers=6, random_state=0)[0].astype(dtype)
    for X in (narrow, wide):
        if missing:
            X[::7, 1] = np.nan
    small = quiet_fit(NaturalDiagonalGMM(4, random_state=0), narrow)
    large = quiet_fit(NaturalDiagonalGMM(6, random_state=0), wide)
    assert log_prob_work(narrow, 4) <= _blas.SERIAL_BLAS_WORK < log_prob_work(wide, 6)
    monkeypatch.setattr(_blas, "single_threaded_blas", counted)
    batches = (narrow[:1], narrow[:7], np.tile(narrow, (9, 1)))
    free = [_predictions(small, rows) for rows in batches]
    assert not held
    _predictions(large, wide[:1])  # one row, but each product is a whole chunk's
    assert held
    monkeypatch.setattr(_blas, "SERIAL_BLAS_WORK", -1)
    for rows, bits in zip(batches, free, strict=True):
        held.clear()
        _assert_same_bits(_predictions(small, rows), bits)
        assert held  # (the hold was taken, and the bits are those without it)


@pytest.mark.parametrize("estimator", [NaturalDiagonalGMM, StandardizedGMM])
def test_parameter_names_are_read_once_per_class(estimator):
    from sklearn.base import BaseEstimator

    def inspected(cls):
        return BaseEstimator._get_param_names.__func__(cls)

    class Another(estimator):
        def __init__(self, extra=1):
            super().__init__()
            self.extra = extra

    assert estimator._get_param_names() == inspected(estimator)
    names = Another._get_param_names()
    assert names == inspected(Another) == ["extra"]
    names.append("changed")  # the caller's own list
    assert Another._get_param_names() == ["extra"]
    assert estimator._get_param_names() == inspected(estimator)
