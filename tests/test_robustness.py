"""Nothing lost (issue #17): streams, refits, interrupts, weights, far rows, threads.

Each test reproduces a case of issue #17; all of them failed on the code the
issue was filed against (9141284). They go through the public API and
observable behaviour (thread counts, warnings, exceptions), so that they hold
across refactorings. The suite's blind spots found by the issue's mutation
audit, which pass already, are in ``test_blind_spots.py``.
"""

import copy
import gc
import os
import re
import subprocess
import sys
import warnings
import weakref
from contextlib import contextmanager
from functools import cache

import numba
import numpy as np
import pytest
from conftest import assert_clear_value_error, assert_finite, mixture, outcome_kind, problem, quiet
from numpy.testing import assert_allclose, assert_array_equal
from packaging.version import Version
from sklearn import __version__ as sklearn_version
from sklearn.base import BaseEstimator, clone
from sklearn.datasets import make_blobs
from sklearn.preprocessing import StandardScaler
from threadpoolctl import ThreadpoolController, threadpool_limits

import natgmm
from natgmm import NaturalDiagonalGMM, StandardizedGMM, _blas, _kernels, _standardise, _threading
from natgmm._interrupt import uninterrupted
from natgmm._standardise import FeatureScaling

_PACKAGE_DIR = os.path.dirname(natgmm.__file__)


# ----------------------------------------------------------------- helpers


def _fitted_state(model):
    """Public fitted attributes (trailing underscore), inner estimators' included."""
    state = {}
    for name, value in vars(model).items():
        if name.endswith("_") and not name.startswith("_"):
            state[name] = _fitted_state(value) if isinstance(value, BaseEstimator) else value
    return state


def _assert_equal(a, b, where="model"):
    if isinstance(a, dict):
        assert a.keys() == b.keys(), (where, sorted(a), sorted(b))
        for key in a:
            _assert_equal(a[key], b[key], f"{where}.{key}")
    elif isinstance(a, list | tuple):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            _assert_equal(x, y, f"{where}[{i}]")
    else:
        assert_array_equal(a, b, err_msg=where)


def _assert_same_model(model, reference, X):
    """Same fitted attributes, bit for bit, and the same predictions on ``X``."""
    _assert_equal(_fitted_state(model), _fitted_state(reference))
    if _fitted_state(reference):
        for method in ("predict", "predict_proba", "score_samples"):
            assert_array_equal(getattr(model, method)(X), getattr(reference, method)(X), method)


def _same_model(model, reference, X):
    try:
        _assert_same_model(model, reference, X)
    except Exception:  # noqa: BLE001  (a broken model may fail in any way)
        return False
    return True


def _kernel_threads():
    return _threading.current_threads()


def _blas_threads(controller=None):
    controller = controller or ThreadpoolController()
    return [lib.num_threads for lib in controller.select(user_api="blas").lib_controllers]


@contextmanager
def _restoring_kernel_threads():
    """Put this thread's kernel thread count back afterwards, whatever a test did to it."""
    previous = getattr(_threading._local, "count", None)
    try:
        yield
    finally:
        _threading._local.count = previous


# ----------------------------------------------- 1. streams and outliers

_BATCH = 40


def _good_batches(n_batches, seed=0):
    X, _ = mixture(n_batches * _BATCH, seed)
    return np.split(X, n_batches)


def _assert_clear_refusal(error):
    message = str(error)
    # The message of today's refusal points at the model, not at the batch.
    assert "ill-defined empirical covariance" not in message, message
    assert re.search(r"(?i)\bbatch\b", message), message


@pytest.mark.parametrize("outlier", [1e160, 1e100])
def test_outlier_batch_is_rejected_or_absorbed(outlier):
    """One finite outlier after 5 good batches neither kills nor spoils the stream.

    Either the batch is refused with a clear ValueError (naming the batch)
    before it touches the model, which then equals the stream that never saw
    it; or it is absorbed, and after 20 more good batches the model scores
    held-out data within 1% of that stream.
    """
    batches = _good_batches(26)
    test, _ = mixture(2000, seed=1)
    model = NaturalDiagonalGMM(3, random_state=0, n_jobs=1)
    clean = NaturalDiagonalGMM(3, random_state=0, n_jobs=1)
    for batch in batches[:5]:
        model.partial_fit(batch)
        clean.partial_fit(batch)
    bad = _good_batches(1, seed=2)[0]
    bad[7, 1] = outlier
    before = copy.deepcopy(model)
    try:
        model.partial_fit(bad)
    except ValueError as error:
        _assert_clear_refusal(error)
        _assert_same_model(model, before, test)
        rejected = True
    else:
        assert_finite(model)
        rejected = False
    for batch in batches[5:]:
        model.partial_fit(batch)  # later good batches keep working
        clean.partial_fit(batch)
    assert_finite(model)
    if rejected:
        _assert_same_model(model, clean, test)
    else:
        assert abs(model.score(test) - clean.score(test)) <= 0.01 * abs(clean.score(test))


@pytest.mark.parametrize("outlier", [1e160, 1e100])
def test_stream_with_outlier_batches_ends_like_the_clean_stream(outlier):
    """The issue's bar: 200 batches, every 20th with one outlier entry.

    Outlier batches rejected: the same model as the stream without them;
    absorbed: its held-out log-likelihood within 1%.
    """
    good = iter(_good_batches(190))
    test, _ = mixture(2000, seed=1)
    model = NaturalDiagonalGMM(3, random_state=0, n_jobs=1)
    clean = NaturalDiagonalGMM(3, random_state=0, n_jobs=1)
    n_rejected = 0
    for i in range(200):
        if i % 20 == 19:
            bad = _good_batches(1, seed=100 + i)[0]
            bad[i % _BATCH, i % 2] = outlier * (-1) ** i
            try:
                model.partial_fit(bad)
            except ValueError as error:
                _assert_clear_refusal(error)
                n_rejected += 1
        else:
            batch = next(good)
            model.partial_fit(batch)
            clean.partial_fit(batch)
    assert_finite(model)
    if n_rejected == 10:
        _assert_same_model(model, clean, test)
    else:
        assert abs(model.score(test) - clean.score(test)) <= 0.01 * abs(clean.score(test))


def test_batch_with_huge_weights_is_rejected():
    """Weights beyond 2**400 times the first batch's could overflow the running sums."""
    batches = _good_batches(3)
    model = NaturalDiagonalGMM(3, random_state=0, n_jobs=1).partial_fit(batches[0])
    before = copy.deepcopy(model)
    with pytest.raises(ValueError, match=r"batch.*weights"):
        model.partial_fit(batches[1], sample_weight=np.full(_BATCH, 2.0**500))
    _assert_same_model(model, before, batches[2])
    # Large but below the limit: accepted.
    model.partial_fit(batches[1], sample_weight=np.full(_BATCH, 2.0**300))
    assert_finite(model)


def test_batch_whose_weights_sum_beyond_float64_is_rejected_without_numpy_warnings():
    # numpy's "overflow encountered in reduce" escaped, and the message said "total inf".
    batches = _good_batches(2)
    model = NaturalDiagonalGMM(3, random_state=0, n_jobs=1).partial_fit(batches[0])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(ValueError, match=r"weights total over 1e308 times"):
            model.partial_fit(batches[1], sample_weight=np.full(_BATCH, 1e308))


def test_wrapper_quotes_a_rejected_outlier_in_the_units_of_x():
    # The inner estimator sees standardised rows: its message quoted 4.56e+09
    # (standard deviations) for an entry of 1e12.
    batches = [b * 1000.0 for b in _good_batches(2)]
    model = StandardizedGMM(NaturalDiagonalGMM(3, random_state=0, n_jobs=1))
    model.partial_fit(batches[0])
    bad = batches[1].copy()
    bad[3, 1] = 1e12
    with pytest.raises(ValueError, match=r"feature 1 reaches 1e\+12, "):
        model.partial_fit(bad)


# ------------------------------------- 2. StandardizedGMM: inf or zero parameters


@pytest.mark.parametrize(
    "X",
    [
        np.array([[0.0], [1e-155]]),  # variance 2.5e-311 (subnormal), precision inf
        np.array([[0.0], [1e20]], dtype=np.float32),  # variance 2.5e39 > float32's max
        # A constant feature at 1e300: StandardScaler's scale_ is NaN, and the
        # refusal blames NaN in X.
        np.column_stack([np.full(10, 1e300), np.arange(10.0)]),
    ],
    ids=["float64-1e-155", "float32-1e20", "constant-1e300"],
)
def test_wrapper_refuses_or_fits_finite_parameters(X):
    """A clear error (the plain estimator's: rescale the features) or finite parameters."""
    try:
        with np.errstate(all="ignore"):
            model = quiet(StandardizedGMM().fit, X)
    except ValueError as error:
        assert_clear_value_error(error, X)
        assert re.search(r"(?i)rescale|scale the input|cannot be represented", str(error)), error
        return
    assert_finite(model)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("missing", [False, True])
def test_wrapper_standardises_as_standard_scaler_bit_for_bit(dtype, weighted, missing):
    """Where StandardScaler's results are finite, the wrapper's are the same bits.

    The wrapper runs StandardScaler on each feature multiplied by a power of
    two (exact), to stay finite beyond 1e154 (on ordinary data, on X itself
    and scales the results: the next test); on ordinary data that must
    change nothing: not the mean, the scale (1 for a constant feature,
    including one whose mean is inexact, 0.1) nor the standardised data.
    """
    rng = np.random.default_rng(0)
    X = np.column_stack(
        [
            rng.normal(size=300) * 1e-3 + 5.0,
            rng.normal(size=300) * 40.0,
            np.full(300, 0.1),
            rng.normal(size=(300, 30)) * rng.uniform(0.1, 100.0, 30) + rng.normal(0, 50, 30),
        ]
    ).astype(dtype)
    if missing:
        X[rng.uniform(size=X.shape) < 0.1] = np.nan
    weights = rng.uniform(0.0, 3.0, len(X)) if weighted else None
    inner = NaturalDiagonalGMM(2, random_state=0, max_iter=3)
    model = quiet(StandardizedGMM(inner).fit, X, sample_weight=weights)
    # At one BLAS thread, as the wrapper fits it (scikit-learn 1.6's weighted
    # sums over data with missing entries follow BLAS's thread count).
    with threadpool_limits(1, user_api="blas"):
        scaler = StandardScaler().fit(X, sample_weight=weights)
    assert_array_equal(model.mean_, scaler.mean_)
    assert_array_equal(model.scale_, scaler.scale_)
    assert model.scale_[2] == 1.0
    Z = scaler.transform(X)
    if Version(sklearn_version) < Version("1.8"):
        # Before 1.8 StandardScaler subtracted and divided in float64 (for
        # float32 X, other roundings); since, in the dtype of X, as the wrapper.
        Z = (X - scaler.mean_.astype(dtype)) / scaler.scale_.astype(dtype)
    assert_array_equal(np.concatenate([b for _, b in model._standardised_blocks(X)[1]]), Z)
    reference = quiet(clone(inner).fit, Z, sample_weight=weights)
    assert_array_equal(model.estimator_.means_, reference.means_)


def test_wrapper_scaling_of_x_itself_is_that_of_the_scaled_copy(monkeypatch):
    """The scaler fitted to X and scaled by powers of two, as fitted to the scaled copy u.

    Where the wrapper fits StandardScaler to X itself (no copy; magnitudes
    within 2**±100, no weight zero or below 2**-60), its mean and scale are
    those of the fit to u bit for bit; elsewhere it fits u: a row of weight
    zero at 1e155 among values of 1e60 made a feature "constant" (0 * inf
    in the scaler's sums), as did a weight of 2**-700 at magnitudes 2**-401.
    """
    rng = np.random.default_rng(3)
    cases = []
    for i in range(60):
        n, d = int(rng.integers(2, 400)), int(rng.integers(1, 6))
        X = rng.normal(size=(n, d)) * 2.0 ** rng.integers(-95, 95, d) + rng.normal(0, 3, d)
        X[:, rng.uniform(size=d) < 0.15] = 0.0  # all-zero features
        X[:, rng.uniform(size=d) < 0.15] = 0.1  # constant features
        if i % 3 == 0:
            X[rng.uniform(size=X.shape) < 0.1] = np.nan
            X[0] = 1.0  # every feature observed
        weights = None
        if i % 2:
            weights = np.exp(rng.uniform(-40.0, 7.0, n))  # down to about 2**-60 of the mean
        cases.append((X.astype(np.float32 if i % 4 == 1 else np.float64), weights))
    far = rng.normal(size=(40, 2)) * 1e60
    far[5, 1] = 1e155
    far_weights = np.ones(40)
    far_weights[5] = 0.0
    tiny = np.zeros((40, 1))
    tiny[3] = 2.0**-401
    tiny_weights = np.ones(40)
    tiny_weights[3] = 2.0**-700
    cases += [(far, far_weights), (tiny, tiny_weights)]

    def scalings():
        return [FeatureScaling.fit(X, w) for X, w in cases]

    direct = scalings()
    monkeypatch.setattr(_standardise, "_DIRECT_EXPONENT", -1)  # always the scaled copy
    for (X, _), a, b in zip(cases, direct, scalings(), strict=True):
        assert_array_equal(a.mean, b.mean), X.dtype
        assert_array_equal(a.scale, b.scale), X.dtype
    assert direct[-2].scale_[1] > 1e59  # not "constant" (scale 1)


def test_fuzzed_wrapper_fits_are_finite_or_refused():
    """Finite parameters or a ValueError, for 40 hostile arrays (seeded, a few seconds).

    ``benchmarks/fuzz_robustness.py`` runs the same recipe on 1000 arrays.
    """
    rng = np.random.default_rng(17)
    findings = []
    for i in range(40):
        X, weights, k = problem(rng)
        model = StandardizedGMM(NaturalDiagonalGMM(k, random_state=0, max_iter=20, n_jobs=1))
        kind = outcome_kind(lambda X, w, m=model: m.fit(X, sample_weight=w), X, weights)
        if kind not in ("finite", "ValueError"):
            findings.append((i, X.dtype.name, kind))
    assert not findings, findings


# --------------------------------------------- 3. transactional fits


def test_failed_wrapper_refit_keeps_the_model():
    X, _ = mixture(300, seed=0, n_features=2)
    model = StandardizedGMM(NaturalDiagonalGMM(3, random_state=0)).fit(X)
    before = copy.deepcopy(model)
    with pytest.raises(ValueError, match="n_samples >= n_components"):
        model.fit(X[:2] * 1e3)
    _assert_same_model(model, before, X)
    # The private state too: a warm refit continues from the same place.
    for m in (model, before):
        m.set_params(estimator__warm_start=True)
        quiet(m.fit, X)
    _assert_same_model(model, before, X)


def test_failed_refit_on_other_features_keeps_the_model():
    rng = np.random.default_rng(0)
    X20 = make_blobs(400, n_features=20, centers=3, random_state=0)[0]
    X10 = rng.normal(size=(2, 10))
    model = NaturalDiagonalGMM(3, random_state=0).fit(X20)
    before = copy.deepcopy(model)
    with pytest.raises(ValueError, match="n_samples >= n_components"):
        model.fit(X10)
    assert model.n_features_in_ == 20
    _assert_same_model(model, before, X20)
    model.partial_fit(X20[:50])
    before.partial_fit(X20[:50])
    _assert_same_model(model, before, X20)


class _InterruptKernel:
    """Replace ``natgmm._kernels.em_stats`` by a wrapper raising on its n-th call.

    Every E-step of every solver goes through ``_kernels.em_stats``; ``calls``
    shows that the injection point is still on the path.
    """

    def __init__(self, monkeypatch, on_call):
        self.real, self.on_call, self.calls = _kernels.em_stats, on_call, 0
        monkeypatch.setattr(_kernels, "em_stats", self)

    def __call__(self, *args, **kwargs):
        self.calls += 1
        if self.calls == self.on_call:
            raise KeyboardInterrupt
        return self.real(*args, **kwargs)


@pytest.mark.parametrize(
    "solver, params, on_call",
    # minibatch: the 4th of 6 batches of the first epoch; gradient: the
    # second E-step, after the first Adam steps.
    [("minibatch", {"batch_size": 50}, 4), ("gradient", {"gradient_steps": 10}, 2)],
)
def test_interrupted_warm_fit_leaves_model_and_solver_state_intact(
    monkeypatch, solver, params, on_call
):
    """Ctrl-C in a warm minibatch/gradient fit: the next warm fit is unaffected."""
    X, _ = mixture(300, seed=0)
    model = NaturalDiagonalGMM(
        3, solver=solver, warm_start=True, max_iter=3, tol=0.0, random_state=0, n_jobs=1,
        **params,
    )  # fmt: skip
    quiet(model.fit, X)
    before = copy.deepcopy(model)
    threads, blas = _kernel_threads(), _blas_threads()
    interrupt = _InterruptKernel(monkeypatch, on_call)
    with pytest.raises(KeyboardInterrupt):
        quiet(model.fit, X)
    assert interrupt.calls == on_call, "the injection point is no longer on the fit's path"
    monkeypatch.undo()
    assert _kernel_threads() == threads
    assert _blas_threads() == blas
    _assert_same_model(model, before, X)
    quiet(model.fit, X)
    quiet(before.fit, X)
    _assert_same_model(model, before, X)


def test_interrupted_partial_fit_leaves_the_stream_intact(monkeypatch):
    batches = _good_batches(5)
    model = NaturalDiagonalGMM(3, random_state=0, min_variance_relative=0.05, n_jobs=1)
    for batch in batches[:3]:
        model.partial_fit(batch)
    before = copy.deepcopy(model)
    interrupt = _InterruptKernel(monkeypatch, on_call=1)
    with pytest.raises(KeyboardInterrupt):
        model.partial_fit(batches[3] * 3.0)
    assert interrupt.calls == 1
    monkeypatch.undo()
    _assert_same_model(model, before, batches[4])
    model.partial_fit(batches[4])
    before.partial_fit(batches[4])
    _assert_same_model(model, before, batches[4])


@pytest.mark.parametrize("solver", ["em", "minibatch", "partial_fit"])
def test_a_nan_log_likelihood_is_refused_and_the_model_kept(monkeypatch, solver):
    # An E-step whose log-likelihood is NaN (statistics finite) was committed:
    # lower_bound_ = nan after a partial_fit step or a minibatch fit.
    batches = _good_batches(5)
    model = NaturalDiagonalGMM(3, solver="minibatch" if solver == "minibatch" else "em",
                               batch_size=50, max_iter=3, random_state=0, n_jobs=1)  # fmt: skip
    for batch in batches[:3]:
        model.partial_fit(batch)
    before = copy.deepcopy(model)
    real = _kernels.em_stats

    def nan_log_likelihood(*args, **kwargs):
        return (np.nan, *real(*args, **kwargs)[1:])

    monkeypatch.setattr(_kernels, "em_stats", nan_log_likelihood)
    with pytest.raises(ValueError, match="ill-defined empirical covariance"):
        if solver == "partial_fit":
            model.partial_fit(batches[3])
        else:
            quiet(model.fit, np.concatenate(batches))
    monkeypatch.undo()
    _assert_same_model(model, before, batches[4])


def test_a_random_state_instance_is_the_callers_to_advance():
    # The model kept the caller's RandomState itself: the caller's draws (or a
    # failed fit's) between batches changed an annealed stream's levels.
    batches = _good_batches(5)

    def stream(draw_between):
        random_state = np.random.RandomState(0)
        model = NaturalDiagonalGMM(3, random_state=random_state, annealing="floor",
                                   anneal_max_iter=2, n_jobs=1)  # fmt: skip
        model.partial_fit(batches[0])
        if draw_between:
            random_state.standard_normal(100)
        for batch in batches[2:]:
            quiet(model.partial_fit, batch)
        return model

    _assert_same_model(stream(True), stream(False), batches[4])


class _LineInterrupter:
    """A trace function over natgmm's own lines that raises KeyboardInterrupt.

    With ``target=None`` it only records the distinct ``(file, line)`` pairs
    in the order of their first execution. Otherwise it raises
    KeyboardInterrupt at the first execution of ``target``, as a Ctrl-C
    arriving just before that line would (Python delivers signals between
    bytecodes), or at the first line at which ``watch()`` is true. Only
    frames of natgmm's files are traced, and of those only the ones for
    which ``only(frame)`` is true count.
    """

    def __init__(self, target=None, watch=None, only=None):
        self.target, self.watch, self.only = target, watch, only
        self.lines, self.seen, self.fired = [], set(), False

    def __call__(self, frame, event, arg):
        return self._local if frame.f_code.co_filename.startswith(_PACKAGE_DIR) else None

    def _local(self, frame, event, arg):
        if event == "line" and not self.fired and (self.only is None or self.only(frame)):
            key = (os.path.basename(frame.f_code.co_filename), frame.f_lineno)
            if key not in self.seen:
                self.seen.add(key)
                self.lines.append(key)
            if key == self.target or (self.watch is not None and self.watch()):
                self.fired = True
                raise KeyboardInterrupt
        return self._local

    def run(self, call):
        sys.settrace(self)
        try:
            return call()
        finally:
            sys.settrace(None)


@pytest.mark.parametrize("limit", ["kernels", "blas"])
def test_interrupt_right_after_a_thread_limit_changes_restores_it(limit):
    """A Ctrl-C arriving just after natgmm changed a thread limit does not leak it.

    The interrupt is raised at the first line of natgmm that runs once the
    limit differs from its value before the fit.
    """
    X, _ = mixture(200, seed=0)
    controller = ThreadpoolController()
    with threadpool_limits(limits=2, user_api="blas"), _restoring_kernel_threads():
        if limit == "kernels":
            if numba.config.NUMBA_NUM_THREADS < 2:
                pytest.skip("one thread available: n_jobs=1 changes nothing")
            before = _kernel_threads()

            def changed():
                return _kernel_threads() != before
        else:
            before = _blas_threads(controller)
            if not before or min(before) < 2:
                pytest.skip("no BLAS whose thread limit could be set to 2")

            def changed():
                return _blas_threads(controller) != before

        interrupter = _LineInterrupter(watch=changed)
        with pytest.raises(KeyboardInterrupt):
            interrupter.run(lambda: NaturalDiagonalGMM(2, n_jobs=1, random_state=0).fit(X))
        assert interrupter.fired
        after = _kernel_threads() if limit == "kernels" else _blas_threads()
        assert after == before, f"{limit} threads {after} after the interrupt, {before} before"


def _in_wrapper(frame):
    return isinstance(frame.f_locals.get("self"), StandardizedGMM)


def _interrupt_scenarios():
    """``name -> (make, only)``: ``make()`` gives a fitted model and the call to interrupt."""
    XA, _ = mixture(24, seed=0)
    XB, _ = mixture(24, seed=1)
    small = dict(init_params="bisect", max_iter=2, tol=0.0, n_jobs=1)

    def refit():
        return quiet(NaturalDiagonalGMM(2, **small).fit, XA), lambda m: quiet(m.fit, XB)

    def partial():
        return NaturalDiagonalGMM(2, **small).partial_fit(XA), lambda m: m.partial_fit(XB)

    def wrapper():
        model = quiet(StandardizedGMM(NaturalDiagonalGMM(2, **small)).fit, XA)
        return model, lambda m: quiet(m.fit, XB)

    # The wrapper's inner fit is the "fit" case; its own lines are enough here.
    scenarios = {
        "fit": (refit, None),
        "partial_fit": (partial, None),
        "wrapper": (wrapper, _in_wrapper),
    }
    return scenarios, np.vstack([XA, XB])


@pytest.mark.parametrize("scenario", ["fit", "partial_fit", "wrapper"])
def test_interrupt_at_any_line_leaves_the_old_or_the_new_model(scenario):
    """Ctrl-C before any line of natgmm: a KeyboardInterrupt, and no half-fitted model.

    The interrupt is raised at the first execution of every line of natgmm
    that the call runs. Afterwards the model is either exactly the previous
    one or exactly the completed new one, and no BLAS hold is left behind
    (an interrupt on the line of the ``finally`` that releases it once
    kept BLAS at one thread for the rest of the process). (Thread and BLAS
    limits themselves are not checked here: a Ctrl-C can land inside the
    ``finally`` that restores them; see the next tests.)
    """
    hold = _blas.single_threaded_blas
    scenarios, X = _interrupt_scenarios()
    make, only = scenarios[scenario]
    old, operation = make()
    new = copy.deepcopy(old)
    operation(new)
    recorder = _LineInterrupter(only=only)
    recorder.run(lambda: operation(copy.deepcopy(old)))
    controller = ThreadpoolController()
    blas = {lib.filepath: lib.num_threads for lib in controller.lib_controllers}
    assert len(recorder.lines) > 20, "the trace saw too little of natgmm"
    findings = []
    for line in recorder.lines:
        model = copy.deepcopy(old)
        interrupter = _LineInterrupter(target=line, only=only)
        try:
            # A leaked thread limit would disturb the next runs (and tests):
            # put both back after each run.
            with (
                np.errstate(all="ignore"),
                controller.limit(limits=blas),
                _restoring_kernel_threads(),
            ):
                interrupter.run(lambda m=model: operation(m))
        except KeyboardInterrupt:
            pass
        except BaseException as error:  # noqa: BLE001
            findings.append((line, f"{type(error).__name__}: {error}"[:120]))
            continue
        if not (_same_model(model, old, X) or _same_model(model, new, X)):
            findings.append((line, "neither the old nor the new model"))
        if hold._users or hold._original is not None:
            findings.append((line, "a BLAS hold left behind"))
    assert not findings, f"{len(findings)} of {len(recorder.lines)} lines: {findings[:20]}"


class _Marker:
    """An object to hold a weak reference to."""


def test_an_interrupt_passed_on_by_uninterrupted_frees_its_frames_at_once():
    """Once the caller drops the KeyboardInterrupt, the frames it held go without a collection.

    They can hold a BLAS hold's frame, whose release is tied to it: kept in
    a reference cycle, that release ran at whatever line the next garbage
    collection happened (inside another release, test_threading.py).
    """
    marker = _Marker()
    gone = weakref.ref(marker)
    calls = []

    def restore(_):
        calls.append(None)
        if len(calls) == 1:
            raise KeyboardInterrupt  # the first attempt interrupted

    gc.disable()
    try:
        try:
            uninterrupted(restore, marker)
        except KeyboardInterrupt:
            pass
        del marker
        assert len(calls) == 2
        assert gone() is None, "a reference cycle keeps uninterrupted's frame"
    finally:
        gc.enable()


_SIGINT_SCRIPT = """
import _thread, collections, signal, sys, threading, time, warnings
import numpy as np
from threadpoolctl import threadpool_info, threadpool_limits
from natgmm import NaturalDiagonalGMM, _threading

_threading.MIN_PARALLEL_WORK = 0  # passes shared out, however small the data
warnings.simplefilter("ignore")
X = np.random.default_rng(0).normal(size=(1000, 3))
holes = X.copy()
holes[::3, 1] = np.nan  # the masked kernels


def fit(setting):
    n_jobs, solver, data, moves = setting
    NaturalDiagonalGMM(3, max_iter=10, tol=0, random_state=0, init_params="random",
                       n_jobs=n_jobs, solver=solver, gradient_steps=20,
                       split_merge=moves).fit(data)


def limits():
    blas = [i for i in threadpool_info() if i["user_api"] == "blas"]
    return _threading.current_threads(), [i["num_threads"] for i in blas], blas


armed = False


def handler(signum, frame):
    if armed:  # an interrupt after the fit returned is dropped
        raise KeyboardInterrupt


signal.signal(signal.SIGINT, handler)
rng = np.random.default_rng(0)
before, wrong, landed_per_setting = limits(), [], []
settings = ((1, "em", X, 0), (None, "em", X, 0), (1, "gradient", X, 0), (1, "em", holes, 0),
            (None, "em", holes, 0), (1, "em", X, 3))
for setting in settings:
    fit(setting)
    start = time.perf_counter()
    fit(setting)
    duration = time.perf_counter() - start
    landed = 0
    deadline = time.monotonic() + {budget}  # each setting's own
    # Until count interrupts landed: on a busy core the timer thread can
    # wake only after the fit has returned, and its interrupt is dropped.
    for _ in range(4 * {count}):
        if time.monotonic() > deadline or landed == {count}:
            break
        timer = threading.Timer(rng.uniform(0, duration), _thread.interrupt_main)
        timer.start()
        try:
            armed = True
            try:
                fit(setting)
            finally:
                armed = False
        except KeyboardInterrupt:
            landed += 1
        except BaseException as error:
            wrong.append(f"{{type(error).__name__}}: {{error}}"[:100])
        timer.join()
        after = limits()
        if after[:2] != before[:2]:
            wrong.append(f"limits {{after[:2]}} instead of {{before[:2]}}")
            _threading._local.count = None  # put them back and go on
            threadpool_limits(limits=before[2])
    landed_per_setting.append(landed)
print("interrupted", *landed_per_setting)
kinds = collections.Counter(w.split(" ")[0] for w in wrong)
print("wrong", len(wrong), dict(kinds), wrong[:3])
"""


def test_sigint_during_fits_stays_a_keyboard_interrupt():
    """Ctrl-C at random times during fits: always KeyboardInterrupt, limits kept.

    The interrupts come from ``_thread.interrupt_main``, which trips
    Python's SIGINT flag as a Ctrl-C does, in a subprocess, so that a stray
    one cannot stop the test run. Unhandled, an interrupt that arrives while a
    kernel runs surfaces as a SystemError: it is handled inside a Python
    callback of the compiled code (numba fetches ``np.ndarray`` through
    ``numba.core.serialize._numba_unpickle`` to box the arrays a kernel
    returns), which numba's C code does not expect to fail. 20 interrupts
    for each of six settings (serial and parallel kernels, the gradient
    solver, whose Adam step calls compiled functions from Python, the
    masked kernels of data with missing values, and split-and-merge
    moves) find one with near certainty. The kernels' thread count and the
    BLAS limits are checked after every interrupt. Each setting is tried
    until 20 interrupts landed (at most 80 tries, or 15 s), so that a busy
    machine, where many fire only after the fit returned, still gives
    enough: at least 5 must land in every setting.
    """
    script = _SIGINT_SCRIPT.format(budget=15, count=20)
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=600
    )
    assert result.returncode == 0, result.stderr[-3000:]
    lines = dict(line.split(" ", 1) for line in result.stdout.splitlines())
    assert lines["wrong"].startswith("0 "), result.stdout
    landed = [int(count) for count in lines["interrupted"].split()]
    assert len(landed) == 6 and min(landed) >= 5, result.stdout  # the interrupts did land


# ------------------------------------------------- 4. scale of the weights


def _weight_fit(solver, X, weights):
    common = dict(n_components=3, random_state=0, n_jobs=1)
    if solver == "partial_fit":
        model = NaturalDiagonalGMM(**common)
        for rows in np.array_split(np.arange(len(X)), 6):
            model.partial_fit(X[rows], sample_weight=weights[rows])
        return model
    extra = {"minibatch": {"batch_size": 100}, "gradient": {"gradient_steps": 20}}.get(solver, {})
    model = NaturalDiagonalGMM(solver=solver, tol=0.0, max_iter=6, **common, **extra)
    return quiet(model.fit, X, sample_weight=weights)


@cache
def _weight_problem():
    X, _ = make_blobs(400, n_features=3, centers=3, random_state=0)
    X = X * [1.0, 10.0, 0.1]
    return X, np.random.default_rng(0).uniform(0.5, 2.0, len(X))


@cache
def _weight_reference(solver):
    X, weights = _weight_problem()
    return _weight_fit(solver, X, weights)


@pytest.mark.parametrize("solver", ["em", "minibatch", "gradient", "partial_fit"])
# 2**-997 ~ 7e-301, 2**-60 ~ 9e-19, 2**-40 ~ 9e-13, 2**512 ~ 1e154, 2**600 ~ 4e180,
# 2**997 ~ 1e300: the ranges where the issue saw each solver go wrong.
@pytest.mark.parametrize("exponent", [-997, -60, -40, 512, 600, 997])
def test_scaling_every_weight_by_a_constant_changes_nothing(solver, exponent):
    """The fit depends on the weights through their ratios only.

    Constants are powers of two, which scale every weight, and every
    product and sum of weights, exactly: a fit that depends on ratios only
    gives the same bits. The tolerance, 1e-12 relative (means relative to
    each feature's spread), leaves room for an implementation that
    normalises with one rounding per weight (about 1e-16, amplified by a
    few iterations); the errors of the issue are 1e-8 to 60.
    """
    X, weights = _weight_problem()
    reference = _weight_reference(solver)
    with np.errstate(all="ignore"):
        model = _weight_fit(solver, X, weights * 2.0**exponent)
    spread = X.std(axis=0)
    assert_allclose(model.weights_, reference.weights_, rtol=0, atol=1e-12)
    assert_allclose(model.means_ / spread, reference.means_ / spread, rtol=0, atol=1e-12)
    assert_allclose(model.covariances_, reference.covariances_, rtol=1e-12)
    assert_allclose(model.lower_bound_, reference.lower_bound_, rtol=1e-12)


def test_weighted_score_depends_on_weight_ratios_only():
    X, weights = _weight_problem()
    model = _weight_reference("em")
    reference = model.score(X, sample_weight=weights)
    for exponent in (-1000, -997, 997, 1020):  # 2**1020 * 400 rows overflows a plain sum
        assert model.score(X, sample_weight=weights * 2.0**exponent) == reference


def test_dask_fit_depends_on_weight_ratios_only():
    """Dask input normalises its weights as numpy input does (one power of two)."""
    da = pytest.importorskip("dask.array", reason="dask is not installed (extra natgmm[dask])")
    import dask

    X, weights = _weight_problem()
    reference = _weight_reference("em")
    with dask.config.set(scheduler="synchronous"), np.errstate(all="ignore"):
        Xd = da.from_array(X, chunks=(150, 3))
        wd = da.from_array(weights * 2.0**-997, chunks=150)
        model = _weight_fit("em", Xd, wd)
    # The blocks are summed in another order than numpy's: rounding apart.
    assert_allclose(model.means_, reference.means_, rtol=1e-10)
    assert_allclose(model.covariances_, reference.covariances_, rtol=1e-10)
    assert_allclose(model.lower_bound_, reference.lower_bound_, rtol=1e-10)


# --------------------------------------------------------- 5. tiny spreads


def test_reg_covar_above_a_feature_variance_warns_and_names_the_fix():
    """Two clusters on a feature of spread 1e-4: reg_covar=1e-6 merges them.

    The issue allows either this warning (naming StandardizedGMM and a
    smaller reg_covar) or a regulariser relative to each feature's variance
    under an explicit option; this test is for the warning. With the
    option instead, replace it by a test that the option finds both
    clusters (ARI 1) and that the default still warns or says so.
    """
    rng = np.random.default_rng(0)
    y = np.repeat([0, 1], 200)
    X = (rng.normal(size=(400, 1)) + 6.0 * y[:, np.newaxis]) * 1e-4
    with pytest.warns(UserWarning, match="reg_covar") as record:
        NaturalDiagonalGMM(2, random_state=0).fit(X)
    assert any("StandardizedGMM" in str(w.message) for w in record), [
        str(w.message) for w in record
    ]


def test_warnings_under_cross_validation_point_at_the_users_line():
    # Inside cross_val_score the fits run in joblib's Parallel: the warnings
    # pointed into joblib/parallel.py.
    from sklearn.model_selection import cross_val_score

    rng = np.random.default_rng(0)
    X = np.concatenate([rng.normal(0, 1, (100, 2)), rng.normal(8, 1, (100, 2))])
    with pytest.warns(UserWarning, match="min_variance_relative=2") as record:
        cross_val_score(NaturalDiagonalGMM(2, min_variance_relative=2.0, random_state=0), X, cv=2)
    assert {w.filename for w in record if "min_variance_relative" in str(w.message)} == {__file__}


def test_a_relative_floor_of_the_data_variance_warns():
    """min_variance_relative >= 1 makes every component as wide as the data: it says so."""
    rng = np.random.default_rng(0)
    X = np.concatenate([rng.normal(0, 1, (100, 2)), rng.normal(8, 1, (100, 2))])
    with pytest.warns(UserWarning, match="min_variance_relative=2 holds every variance") as record:
        NaturalDiagonalGMM(2, min_variance_relative=2.0, random_state=0).fit(X)
    assert record[0].filename == __file__  # at the caller's line
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        NaturalDiagonalGMM(2, min_variance_relative=0.5, random_state=0).fit(X)


def test_reg_covar_warning_spares_constant_features_and_the_wrapper():
    """No warning for a constant feature (its variance is rounding), nor inside
    StandardizedGMM, whose inner fit sees standardised data (reg_covar=0.5 is
    half of each feature's variance there, on purpose); and the warning points
    at the caller's line."""
    rng = np.random.default_rng(0)
    X = np.column_stack([rng.normal(size=200), np.full(200, 0.1)])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        NaturalDiagonalGMM(2, random_state=0).fit(X)
        StandardizedGMM(NaturalDiagonalGMM(2, reg_covar=0.5, random_state=0)).fit(X * 1e-4)
    with pytest.warns(UserWarning, match="reg_covar") as record:
        NaturalDiagonalGMM(2, random_state=0).partial_fit(X * 1e-4)
    assert [w.filename for w in record] == [__file__]


def test_a_prior_beyond_the_weights_range_is_named():
    # The prior counts in sample weight: at weights of 1e-301 the MAP variance
    # overflowed, reported as "ill-defined empirical covariance ... singleton
    # or collapsed samples".
    X = np.random.default_rng(0).normal(size=(8, 2))
    model = NaturalDiagonalGMM(2, upper_precision_reg=1.0, random_state=0)
    with pytest.raises(ValueError, match="upper_precision_reg counts in sample weight"):
        model.fit(X, sample_weight=np.full(8, 1e-301))
    model.fit(X, sample_weight=np.full(8, 1e-3))  # the same prior against larger weights fits
    assert np.all(np.isfinite(model.covariances_))


def test_a_small_first_batch_warning_points_at_the_users_line_through_the_wrapper():
    # It pointed into natgmm/_wrapper.py (a fixed stack level) through StandardizedGMM.
    X = np.random.default_rng(0).normal(size=(2, 3))
    for model in (NaturalDiagonalGMM(4), StandardizedGMM(NaturalDiagonalGMM(4))):
        with pytest.warns(UserWarning, match="first partial_fit batch has 2 row") as record:
            model.partial_fit(X)
        assert [w.filename for w in record] == [__file__], type(model).__name__


@pytest.mark.parametrize("value", [1e168, 1e200, -1e300])
def test_a_constant_feature_beyond_reg_covars_resolution_is_named(value):
    # Beyond the documented range (1e150): reg_covar underflows at the
    # feature's resolution, and the fit failed with "ill-defined empirical
    # covariance ... singleton or collapsed samples". Up to 1e165 it fits.
    rng = np.random.default_rng(0)
    blobs = np.vstack([rng.normal(-3, 1, (100, 2)), rng.normal(3, 1, (100, 2))])
    with pytest.raises(ValueError, match=r"Feature\(s\) 2 of X are constant at a magnitude"):
        NaturalDiagonalGMM(2, random_state=0).fit(np.c_[blobs, np.full(200, value)])
    model = NaturalDiagonalGMM(2, random_state=0).fit(np.c_[blobs, np.full(200, 1e165)])
    assert_allclose(model.covariances_[:, 2], 1e-6, rtol=1e-6)
    # A feature that varies at such magnitudes is not refused.
    assert_finite(NaturalDiagonalGMM(2, random_state=0).fit(np.c_[blobs, blobs[:, 0] * 1e152]))


# ------------------------------------------------------ 6. far-away rows


@pytest.mark.parametrize("far", [1e100, 1e200])
@pytest.mark.parametrize(
    "make",
    [
        lambda: NaturalDiagonalGMM(2, random_state=0, tol=1e-12, max_iter=1000),
        lambda: NaturalDiagonalGMM(2, random_state=0, tol=1e-12, annealing="temperature"),
        lambda: StandardizedGMM(NaturalDiagonalGMM(2, random_state=0, tol=1e-12, max_iter=1000)),
    ],
    ids=["em", "annealed", "wrapped"],
)
def test_a_far_row_of_weight_zero_changes_nothing(far, make):
    # It set the internal units: at 1e100 the annealed fit put both means
    # together, at 1e200 every fit failed ("constant at a magnitude"). Its
    # terms, zero times an overflow, would be NaN: the fit leaves it out.
    # One more row cuts the sums into other blocks: fits converged tightly,
    # so that their rounding differences stay near float64's resolution in
    # the likelihood, about its square root in the parameters (the
    # likelihood is flat to second order at its maximum).
    X, _ = make_blobs(200, n_features=3, centers=2, random_state=0)
    padded = np.vstack([X, np.full((1, 3), far)])
    weights = np.r_[np.ones(len(X)), 0.0]
    reference = quiet(make().fit, X, sample_weight=np.ones(len(X)))  # weighted sums alike
    model = quiet(make().fit, padded, sample_weight=weights)
    assert_allclose(model.lower_bound_, reference.lower_bound_, rtol=1e-10)
    assert_allclose(model.means_, reference.means_, rtol=1e-7)
    # StandardizedGMM's own scaling (its scale_ was 1, "constant", at 1e200).
    assert_allclose(getattr(model, "scale_", 1.0), getattr(reference, "scale_", 1.0), rtol=1e-12)
    assert_array_equal(model.labels_[:-1], reference.labels_)
    assert model.labels_.shape == (len(padded),)  # the far row labelled too
    assert_allclose(model.score(padded, sample_weight=weights), reference.score(X), rtol=1e-10)


def _far_reference(model, rows):
    """Expected labels and log-densities of rows far out, without overflow.

    For a row ``x`` with ``s = max |x|``, each component's log-density is
    ``s**2 q_k + O(s)`` with ``q_k = -sum_d ((x_d - mu_kd) / s)**2 / (2 var_kd)``:
    the label is the component of largest ``q_k``, the responsibilities are
    one-hot, and the log-density is ``s**2 max q`` (-inf below float64's range).
    """
    s = np.max(np.abs(rows), axis=1, keepdims=True)[:, np.newaxis]
    q = -0.5 * np.sum(((rows[:, np.newaxis, :] - model.means_) / s) ** 2 / model.covariances_, -1)
    labels = np.argmax(q, axis=1)
    with np.errstate(over="ignore"):
        log_density = s[:, 0, 0] ** 2 * q.max(axis=1)
    return labels, log_density


@pytest.mark.parametrize("wrapped", [False, True], ids=["estimator", "wrapper"])
def test_predictions_for_rows_far_outside_the_data(wrapped):
    rng = np.random.default_rng(0)
    X = np.vstack(
        [rng.normal(size=(200, 2)) * [1.0, 0.5], rng.normal(size=(200, 2)) * [3.0, 0.45] + [8, 0]]
    )
    model = NaturalDiagonalGMM(2, random_state=0)
    if wrapped:
        model = StandardizedGMM(model)
    model.fit(X)
    rows = np.array(
        [[1e155, 0.0], [-1e155, 0.0], [0.0, 1e155], [0.0, -1e155], [1e155, 1e155], [1e154, 0.0]]
    )
    labels, log_density = _far_reference(model, rows)
    assert len(set(labels)) == 2  # the test needs rows of both labels
    with np.errstate(all="raise"):  # and no floating-point warnings on the way
        score = model.score_samples(rows)
        proba = model.predict_proba(rows)
        predicted = model.predict(rows)
    assert_array_equal(predicted, labels)
    assert np.all(np.isfinite(proba))
    assert_allclose(proba.sum(axis=1), 1.0, rtol=1e-12)
    assert_allclose(proba, np.eye(2)[labels], atol=1e-12)
    assert not np.any(np.isnan(score)), score
    finite = np.isfinite(log_density)
    assert finite.any() and not finite.all()  # both kinds of rows are tested
    # Below -1.8e308 the log-density is -inf in float64; above, it is finite
    # and dominated by the quadratic term (the rest is O(s), 1e-150 relative).
    assert np.all(score[~finite] < -1e307)
    assert_allclose(score[finite], log_density[finite], rtol=1e-9)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_wrapper_predicts_rows_whose_standardised_values_overflow(dtype):
    # Standardised, a finite row of data of small spread overflowed to inf,
    # which the inner estimator refused as "Input X contains infinity".
    rng = np.random.default_rng(0)
    X = np.vstack([rng.normal(0, 1e-3, (100, 2)), rng.normal(0.01, 1e-3, (100, 2))]).astype(dtype)
    model = StandardizedGMM(NaturalDiagonalGMM(2, random_state=0)).fit(X)
    far = np.finfo(dtype).max / 10  # some 1e39 or 1e309 standard deviations out
    rows = np.array([[far, 0.0], [-far, 0.0], [0.0, far]], dtype=dtype)
    assert np.all(np.isinf(model._feature_scaling().transform(rows)).any(axis=1))
    score = model.score_samples(rows)
    proba = model.predict_proba(rows)
    labels = model.predict(rows)
    if dtype == np.float64:  # the true log-densities are below float64's range
        assert np.all(score == -np.inf)
    else:  # in float64: -z**2 / 2 of z about 1e39
        assert np.all(np.isfinite(score) & (score < -1e77))
    assert_allclose(proba, np.eye(2)[labels], atol=1e-12)
    # The labels of rows far out in the same directions, 1e10 standard
    # deviations (which standardise without overflow).
    inside = np.sign(rows) * 1e7
    assert_array_equal(labels, model.predict(inside))


def test_keyboard_interrupt_inside_a_system_error_is_re_raised():
    """numba reports a Ctrl-C during compiled code as a SystemError chained on it."""
    from natgmm._interrupt import keyboard_interrupts

    def boxed():
        try:
            raise KeyboardInterrupt
        except KeyboardInterrupt as interrupt:
            raise SystemError("<numba_unpickle> returned a result with an exception set") from (
                interrupt
            )

    with pytest.raises(KeyboardInterrupt), keyboard_interrupts():
        boxed()
    with pytest.raises(SystemError), keyboard_interrupts():
        raise SystemError("a real one")


# 7. threading: concurrent fits from several Python threads are in
# tests/test_threading.py (test_concurrent_fits_from_python_threads).
