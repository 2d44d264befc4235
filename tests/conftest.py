"""Fixtures and helpers shared by the tests.

Helpers are imported by the test modules (``from conftest import quiet_fit``);
pytest puts this directory on ``sys.path``, as it does for ``naive``.
"""

import warnings

import numpy as np
import pytest
from numpy.testing import assert_allclose
from sklearn.datasets import make_blobs
from sklearn.exceptions import ConvergenceWarning

FITTED_ARRAYS = ("weights_", "means_", "covariances_", "precisions_", "eta1_", "eta2_")


def quiet_fit(model, X, **kwargs):
    """Fit ``model`` with ConvergenceWarning silenced (tests cap ``max_iter`` on purpose)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return model.fit(X, **kwargs)


def assert_finite_model(model, X=None):
    """Every fitted array finite, variances positive, ``eta2 < 0``, weights summing to 1.

    With ``X``, also a finite lower bound and finite responsibilities of ``X``.
    """
    for name in FITTED_ARRAYS:
        value = getattr(model, name)
        assert np.all(np.isfinite(value)), (name, value)
    assert np.all(model.covariances_ > 0)
    assert np.all(model.eta2_ < 0)
    # float32 weights are rounded one by one: their sum is within K ulps of 1.
    assert_allclose(np.sum(model.weights_, dtype=np.float64), 1.0, rtol=1e-6)
    if X is not None:
        assert np.isfinite(model.lower_bound_)
        assert np.all(np.isfinite(model.predict_proba(X)))


@pytest.fixture(scope="session")
def blobs():
    """600 rows, 3 features, 4 well separated blobs, and their labels."""
    return make_blobs(n_samples=600, n_features=3, centers=4, random_state=0)


@pytest.fixture(scope="session")
def slanted_blobs():
    """Four 2-D blobs on a slanted line, and their labels.

    The clusters make the two features correlated, so the critical value of
    annealing is well above 1.
    """
    return make_blobs(600, centers=[[-6, -4], [-2, -1], [2, 1.5], [6, 4]], random_state=0)


@pytest.fixture(scope="session")
def stream_blobs():
    """20 000 rows, 5 features, 6 overlapping blobs: enough for streams of batches."""
    return make_blobs(20000, n_features=5, centers=6, cluster_std=1.5, random_state=0)
