"""Models pickled by natgmm 0.1.0 load, predict and continue in this version."""

import pickle
import warnings
from pathlib import Path

import numpy as np
import pytest
from numpy.testing import assert_allclose, assert_array_equal
from sklearn.exceptions import InconsistentVersionWarning

# Written by natgmm 0.1.0 (the last commit before the estimator was split into
# modules): five fitted models (plain EM, minibatch, gradient, annealed,
# StandardizedGMM) and a partial_fit stream, with their predictions of X and
# the means after one more partial_fit batch.
PICKLES = Path(__file__).parent / "data" / "natgmm-0.1.0-models.pkl"
# Same parameters, same kernels: predictions differ only by the rounding of
# another machine's BLAS, far below this.
RTOL = 1e-10

# The file was written under numpy 2, whose pickles name numpy._core: numpy 1
# cannot read them, whatever wrote them (natgmm supports numpy from 1.24).
pytestmark = pytest.mark.skipif(
    int(np.__version__.split(".")[0]) < 2, reason="pickles written by numpy 2 need numpy 2"
)


def _load():
    with open(PICKLES, "rb") as f, warnings.catch_warnings():
        # Another scikit-learn version may read them; the estimators' state is ours.
        warnings.simplefilter("ignore", InconsistentVersionWarning)
        return pickle.load(f)


def test_old_pickles_predict_as_before():
    saved = _load()
    X = saved["X"]
    for name, model in saved["models"].items():
        log_prob, resp, labels = saved["expected"][name]
        assert_allclose(model.score_samples(X), log_prob, rtol=RTOL, err_msg=name)
        assert_allclose(model.predict_proba(X), resp, rtol=RTOL, atol=1e-14, err_msg=name)
        assert_array_equal(model.predict(X), labels, err_msg=name)


def test_old_pickles_continue_their_stream():
    saved = _load()
    X = saved["X"]
    for name, means in saved["continued"].items():
        model = saved["models"][name].partial_fit(X[:60])
        assert_allclose(model.means_, means, rtol=RTOL, err_msg=name)
