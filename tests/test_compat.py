"""Models pickled by earlier natgmm load, predict, continue and refit in this version."""

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
# Written at commit 7fce94f (2026-12-01), before anneal_tol existed: a plain,
# an annealed and a streamed model and a StandardizedGMM, with their
# predictions of X.
OLDER_PICKLES = Path(__file__).parent / "data" / "natgmm-2026-12-01-models.pkl"
# Same parameters, same kernels: predictions differ only by the rounding of
# another machine's BLAS, far below this.
RTOL = 1e-10

# The file was written under numpy 2, whose pickles name numpy._core: numpy 1
# cannot read them, whatever wrote them (natgmm supports numpy from 1.24).
pytestmark = pytest.mark.skipif(
    int(np.__version__.split(".")[0]) < 2, reason="pickles written by numpy 2 need numpy 2"
)


def _load(path=PICKLES):
    with open(path, "rb") as f, warnings.catch_warnings():
        # They carry no natgmm version (written before versions were
        # recorded): they load without a word of natgmm's.
        warnings.simplefilter("error", UserWarning)
        # Another scikit-learn version may read them; the estimators' state is ours.
        warnings.simplefilter("ignore", InconsistentVersionWarning)
        return pickle.load(f)


def _assert_predicts_as_saved(model, saved, name):
    X = saved["X"]
    log_prob, resp, labels = saved["expected"][name]
    assert_allclose(model.score_samples(X), log_prob, rtol=RTOL, err_msg=name)
    assert_allclose(model.predict_proba(X), resp, rtol=RTOL, atol=1e-14, err_msg=name)
    assert_array_equal(model.predict(X), labels, err_msg=name)


def test_old_pickles_predict_as_before():
    saved = _load()
    for name, model in saved["models"].items():
        _assert_predicts_as_saved(model, saved, name)


def test_old_pickles_continue_their_stream():
    saved = _load()
    X = saved["X"]
    for name, means in saved["continued"].items():
        model = saved["models"][name].partial_fit(X[:60])
        assert_allclose(model.means_, means, rtol=RTOL, err_msg=name)


def test_pickles_from_before_later_parameters_work_whole():
    # Loaded models that lack a parameter added since could predict, but
    # repr, get_params, clone, fit and partial_fit raised AttributeError.
    from sklearn.base import clone

    saved = _load(OLDER_PICKLES)
    X = saved["X"]
    for name, model in saved["models"].items():
        _assert_predicts_as_saved(model, saved, name)
        assert type(model).__name__ in repr(model)
        assert np.isfinite(clone(model).fit(X).score(X))
        assert np.isfinite(model.fit(X).score(X))
    stream = saved["models"]["stream"]
    assert np.isfinite(stream.partial_fit(X[:50]).score(X))
    # The parameter's value that behaves as that code did: levels of a fixed length.
    assert saved["models"]["annealed"].get_params()["anneal_tol"] == 0.0
    # Levels in float32 as then; EM's steps too until they near convergence.
    for model in saved["models"].values():
        params = model.get_params()
        assert params.get("mixed_precision", params.get("estimator__mixed_precision")) is True


def test_pickles_record_the_version_and_warn_from_another():
    import re

    import natgmm
    from natgmm import NaturalDiagonalGMM, StandardizedGMM

    pyproject = (Path(__file__).parents[1] / "pyproject.toml").read_text()
    assert re.search(r'^version = "(.*)"', pyproject, re.M)[1] == natgmm.__version__
    X = np.random.default_rng(0).normal(size=(60, 2))
    for model in (NaturalDiagonalGMM(2, random_state=0), StandardizedGMM()):
        model.fit(X)
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # the same version: silent
            loaded = pickle.loads(pickle.dumps(model))
        assert_array_equal(loaded.predict(X), model.predict(X))
        assert "_natgmm_version" not in vars(loaded)
        state = model.__getstate__()
        assert state["_natgmm_version"] == natgmm.__version__
        state["_natgmm_version"] = "0.0.1"
        other = type(model).__new__(type(model))
        with pytest.warns(UserWarning, match="from natgmm version 0.0.1 when using version"):
            other.__setstate__(state)
