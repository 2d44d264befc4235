"""Pipelines, grid searches, pickling and threads inside joblib workers, on the digits."""

import pickle
import warnings
from contextlib import contextmanager

import joblib
import numba
import numpy as np
import pytest
from numpy.testing import assert_allclose, assert_array_equal
from sklearn.base import BaseEstimator, clone
from sklearn.datasets import load_digits
from sklearn.decomposition import FactorAnalysis
from sklearn.exceptions import ConvergenceWarning
from sklearn.metrics import normalized_mutual_info_score
from sklearn.model_selection import GridSearchCV
from sklearn.pipeline import Pipeline

from natgmm import NaturalDiagonalGMM, StandardizedGMM, _estimator, _threading


@pytest.fixture(scope="module")
def digits():
    return load_digits(return_X_y=True)


def _pipeline(gmm, n_factors=50, memory=None, svd_method="randomized"):
    fa = FactorAnalysis(n_factors, svd_method=svd_method, random_state=0)
    steps = [("fa", fa), ("gmm", gmm)]
    return Pipeline(steps, memory=memory)


@pytest.mark.parametrize("wrapped", [False, True], ids=["direct", "wrapped"])
def test_pipeline_clusters_the_digits_and_pickles(digits, wrapped):
    X, y = digits
    gmm = NaturalDiagonalGMM(10, min_variance_relative=0.01, random_state=0)
    if wrapped:
        gmm = StandardizedGMM(NaturalDiagonalGMM(10, min_variance=0.01, random_state=0))
    model = _pipeline(gmm)
    labels = model.fit_predict(X)
    assert_array_equal(labels, model.predict(X))
    # Ten digit classes, 50 factor-analysis latents: well above chance (0).
    assert normalized_mutual_info_score(y, labels) > 0.5
    restored = pickle.loads(pickle.dumps(model))
    assert_array_equal(restored.predict(X), labels)
    assert_allclose(restored.score_samples(X), model.score_samples(X), rtol=1e-12)
    assert_allclose(restored[-1].means_, model[-1].means_, rtol=0)


def _search(gmm_name, memory, **kwargs):
    inner = NaturalDiagonalGMM(init_params="bisect", max_iter=30, tol=1e-3)
    gmm = StandardizedGMM(inner) if gmm_name == "wrapped" else inner
    prefix = "gmm__estimator__" if gmm_name == "wrapped" else "gmm__"
    floor = "min_variance" if gmm_name == "wrapped" else "min_variance_relative"
    grid = {f"{prefix}n_components": [5, 10], f"{prefix}{floor}": [0.01, 0.1]}
    # The grid does not touch the factor analysis: with a cache, it is fitted
    # once per fold, not once per candidate.
    # 10 factors by LAPACK's SVD: about twice as fast as randomised here.
    pipeline = _pipeline(gmm, n_factors=10, memory=memory, svd_method="lapack")
    return GridSearchCV(pipeline, grid, cv=3, **kwargs)


@pytest.mark.parametrize("gmm_name", ["direct", "wrapped"])
def test_grid_search_default_score_is_the_mean_log_likelihood(digits, gmm_name, tmp_path):
    X, _ = digits
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        search = _search(gmm_name, str(tmp_path)).fit(X)
    assert np.all(np.isfinite(search.cv_results_["mean_test_score"]))
    best = search.best_estimator_
    assert_allclose(search.score(X), np.mean(best.score_samples(X)), rtol=1e-12)
    # The mean log-likelihood of the latents, not of the pixels: the
    # pipeline's score is its last step's on the transformed data.
    assert_allclose(search.score(X), best[-1].score(best[0].transform(X)), rtol=1e-12)


def test_grid_search_with_an_nmi_scorer(digits, tmp_path):
    X, y = digits
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        search = _search("wrapped", str(tmp_path), scoring="normalized_mutual_info_score")
        search.fit(X, y)
    # NMI rewards the 10-component candidates on 10 classes.
    assert search.best_params_["gmm__estimator__n_components"] == 10
    assert search.best_score_ > 0.5
    assert_allclose(
        search.score(X, y), normalized_mutual_info_score(y, search.predict(X)), rtol=1e-12
    )
    restored = pickle.loads(pickle.dumps(search))
    assert_array_equal(restored.predict(X), search.predict(X))


@contextmanager
def _recording_kernel_threads(seen):
    """Record the kernels' thread count each time natgmm enters their scope."""
    original = _estimator.kernel_threads

    @contextmanager
    def recording(n_jobs):
        with original(n_jobs) as parallel:
            seen.append(_threading.current_threads())
            yield parallel

    _estimator.kernel_threads = recording
    try:
        yield
    finally:
        _estimator.kernel_threads = original


class ThreadRecorder(BaseEstimator):
    """Fit ``estimator`` and keep the kernel thread counts its calls used."""

    def __init__(self, estimator=None):
        self.estimator = estimator

    def fit(self, X, y=None):
        self.threads_ = []
        with _recording_kernel_threads(self.threads_):
            self.estimator_ = clone(self.estimator).fit(X)
        return self


def _max_threads(estimator, X, y=None):
    return max(estimator.threads_)


def test_grid_search_workers_do_not_oversubscribe(digits, monkeypatch):
    """joblib's loky workers get NUMBA_NUM_THREADS = cores // n_jobs.

    natgmm reads its thread count (numba's ``NUMBA_NUM_THREADS``) in each call,
    so with ``n_jobs=None`` each of the two workers runs its kernels on half
    the cores. A NUMBA_NUM_THREADS set in the parent would be passed on
    instead: the test runs without one.
    """
    monkeypatch.delenv("NUMBA_NUM_THREADS", raising=False)
    X, _ = digits
    Z = X[:600] + np.random.default_rng(0).normal(scale=0.1, size=(600, X.shape[1]))
    grid = {"estimator__n_components": [2, 3], "estimator__n_jobs": [None, -1]}
    recorder = ThreadRecorder(NaturalDiagonalGMM(max_iter=2, init_params="bisect"))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        search = GridSearchCV(recorder, grid, cv=2, scoring=_max_threads, n_jobs=2).fit(Z)
    expected = max(1, joblib.cpu_count() // 2)
    assert_array_equal(search.cv_results_["mean_test_score"], expected)
    # The parent process (the refit) keeps all the threads.
    assert max(search.best_estimator_.threads_) == numba.config.NUMBA_NUM_THREADS
