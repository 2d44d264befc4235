"""Fixtures and helpers shared by the tests.

Helpers are imported by the test modules (``from conftest import quiet_fit``);
pytest puts this directory on ``sys.path``, as it does for ``naive``.
"""

import os
import re
import subprocess
import sys
import warnings

import numpy as np
import pytest
from numpy.testing import assert_allclose, assert_array_equal
from sklearn.datasets import make_blobs
from sklearn.exceptions import ConvergenceWarning

from natgmm import _solver, _threading

FITTED_ARRAYS = ("weights_", "means_", "covariances_", "precisions_", "eta1_", "eta2_")


@pytest.fixture(autouse=True)
def parallel_kernels_for_any_work(monkeypatch):
    """A kernel asked to run in parallel does, however small the test's data.

    Outside the tests a call with little work runs the serial kernel
    (``_threading.MIN_PARALLEL_WORK``); the tests' data are small, and the
    parallel kernels must be exercised on them. tests/test_threading.py
    checks the limit itself.
    """
    monkeypatch.setattr(_threading, "MIN_PARALLEL_WORK", 0)


@pytest.fixture(autouse=True)
def float32_steps_for_any_work(monkeypatch):
    """float32 steps (levels, trials, ``mixed_precision``) however small the test's data.

    Outside the tests a pass with little work stays in the data's precision
    (``_solver.F32_MIN_WORK``), as for threads above; tests/test_mixed_precision.py
    checks the limit itself.
    """
    monkeypatch.setattr(_solver, "F32_MIN_WORK", 0)


def quiet(fit, *args, **kwargs):
    """Call ``fit`` without ConvergenceWarnings (short fits on purpose)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return fit(*args, **kwargs)


def quiet_fit(model, X, **kwargs):
    """Fit ``model`` with ConvergenceWarning silenced (tests cap ``max_iter`` on purpose)."""
    return quiet(model.fit, X, **kwargs)


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


# ------------------------------------------- hostile data and checks (issue #17)

PARAMETERS = (
    "weights_", "means_", "covariances_", "precisions_", "precisions_cholesky_", "eta1_", "eta2_",
)  # fmt: skip


def assert_finite(model):
    for name in PARAMETERS:
        value = getattr(model, name)
        assert np.all(np.isfinite(value)), (name, value)
    assert np.all(model.covariances_ > 0), model.covariances_
    assert np.all(model.eta2_ < 0), model.eta2_
    assert np.isfinite(model.lower_bound_)


def outcome_kind(run, *args):
    """ "finite", "ValueError" (a clear refusal) or "NON-FINITE: ..." of the model ``run(*args)``.

    The array fitted is ``args[0]``: a refusal may blame NaN or infinity in
    it only if it holds some (:func:`assert_clear_value_error`, on numpy rows).
    """
    try:
        with np.errstate(all="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # convergence, reg_covar, small first batches
            model = run(*args)
    except ValueError as error:
        if isinstance(args[0], np.ndarray):
            assert_clear_value_error(error, args[0])
        return "ValueError"
    try:
        assert_finite(model)
    except AssertionError as error:
        return f"NON-FINITE: {str(error)[:80]}"
    return "finite"


def assert_clear_value_error(error, X):
    """A refusal may blame NaN or infinity in X only if X holds some."""
    if np.all(np.isfinite(X)):
        assert not re.search("NaN|infinity", str(error)), (X.dtype, str(error)[:100])


def assert_overflowing_chunk_falls_back(X, log_prob, em_stats, shift, scale, natural, means):
    """Check the float32 kernels' fallback for rows 64-127 of ``X``, one of which overflows float32.

    ``log_prob`` and ``em_stats`` are ``natgmm._kernels``' functions (plain
    or masked, with their ``natural`` parameters), run on ``X`` in either
    precision. The chunk's log-densities, labels and responsibilities must
    be exactly the float64 ones, every log-density finite; the E-step's
    statistics about ``means`` (whose first float32 chunk, rows 0 to 127,
    falls back whole with one block) finite and within 1e-4 of float64's.
    Returns the per-row outputs of each precision.
    """
    n = len(X)
    outputs = {}
    for dtype in (np.float32, np.float64):
        out, labels = np.empty(n), np.empty(n, dtype=np.int64)
        resp = np.empty((n, len(means)))
        log_prob(X.astype(dtype), shift, scale, *natural, out, labels, resp, True)
        outputs[dtype] = out, labels, resp
    chunk = slice(64, 128)
    for a, b in zip(outputs[np.float32], outputs[np.float64], strict=True):
        assert_array_equal(a[chunk], b[chunk])
    assert np.all(np.isfinite(outputs[np.float32][0]))
    for n_blocks in (1, 3):
        args = (np.empty(0), shift, scale, *natural, means, n_blocks, True)
        stats = {dtype: em_stats(X.astype(dtype), *args) for dtype in (np.float32, np.float64)}
        for a, b in zip(stats[np.float32], stats[np.float64], strict=True):
            assert np.all(np.isfinite(a))
            assert_allclose(a, b, rtol=1e-4, atol=1e-4 * np.max(np.abs(b)))
    return outputs


def short_trial_iterations(n_moves):
    """EM iterations of one split-and-merge round's finalists among ``n_moves`` moves."""
    from natgmm import _split_merge as sm

    return min(sm.N_FINALISTS, n_moves) * sm.FINALIST_ITER


def mixture(n_samples, seed, n_features=2):
    """Rows from three well separated Gaussians: ``X, y``."""
    centres = np.array([[0.0, 0.0], [6.0, 6.0], [-6.0, 6.0]])[:, :n_features]
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, n_samples)
    return centres[y] + rng.normal(size=(n_samples, n_features)), y


def problem(rng):
    """A hostile small problem: ``X, sample_weight, n_components``.

    Scales 1e-160 .. 1e160 per feature (float32: 1e-38 .. 1e38), offsets up
    to 1e12 spreads, constant columns, duplicated rows, n close to K; the
    same recipe as ``fuzz_problem`` in ``benchmarks/datasets.py``.
    """
    k = int(rng.integers(1, 5))
    n = max(2, k + int(rng.integers(0, 2))) if rng.random() < 0.3 else int(rng.integers(k, 41))
    n = max(n, 2)
    d = int(rng.integers(1, 5))
    dtype = np.float32 if rng.random() < 1 / 3 else np.float64
    top = 38.0 if dtype == np.float32 else 160.0
    X = rng.normal(scale=3.0, size=(k, d))[rng.integers(0, k, n)] + rng.normal(size=(n, d))
    if rng.random() < 0.3:
        X[rng.integers(0, n, n // 2)] = X[0]
    offset = np.where(
        rng.random(d) < 0.5, 0.0, rng.choice([-1, 1], d) * 10 ** rng.uniform(0, 12, d)
    )
    constant = rng.random(d) < 0.2
    with np.errstate(over="ignore"):
        X = (X + offset) * 10.0 ** rng.uniform(-top, top, d)
        X[:, constant] = X[0, constant]
        X = X.astype(dtype)
    weights = rng.uniform(0.0, 3.0, n) if rng.random() < 1 / 3 else None
    if weights is not None and not weights.sum() > 0:
        weights[0] = 1.0
    return X, weights, k


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


def run_python(code, environ=None, **env):
    """Run ``code`` in a fresh interpreter: its CompletedProcess (text output).

    The environment is ``environ`` (None: this process's) with ``env`` set
    on top of it.
    """
    environ = {**(os.environ if environ is None else environ), **env}
    return subprocess.run(
        [sys.executable, "-c", code], env=environ, capture_output=True, text=True, timeout=1800
    )
