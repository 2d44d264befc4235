"""Blind spots of the suite found by issue #17's mutation audit; these pass already.

In the audit, one-line bugs in these places passed the whole suite (or were
caught by accident): the Dask reduction tree's second level, ``min_weight``
under ``solver="gradient"``, the renormalisation of floored weights, ties in
``predict``, labels from a final E-step, the online step size and the
convergence rule. Each test here fails under its mutation (checked by hand).
Also the parts of issue #17's checks that hold today.
"""

import warnings

import numpy as np
import pytest
from conftest import assert_clear_value_error, assert_finite, mixture, problem, quiet
from numpy.testing import assert_allclose, assert_array_equal
from scipy.special import logsumexp
from sklearn.datasets import make_blobs
from sklearn.exceptions import ConvergenceWarning

from natgmm import NaturalDiagonalGMM, _solver


def test_fuzzed_partial_fit_streams_are_finite_or_refused():
    """partial_fit over three batches of 25 hostile arrays: finite or a ValueError."""
    rng = np.random.default_rng(71)
    findings = []
    for i in range(25):
        X, weights, k = problem(rng)
        model = NaturalDiagonalGMM(k, random_state=0, n_jobs=1)
        for rows in np.array_split(np.arange(len(X)), 3):
            if not rows.size:
                continue
            try:
                with np.errstate(all="ignore"):
                    model.partial_fit(X[rows], None if weights is None else weights[rows])
            except ValueError as error:
                assert_clear_value_error(error, X[rows])
                break
            try:
                assert_finite(model)
            except AssertionError as error:
                findings.append((i, X.dtype.name, str(error)[:100]))
                break
    assert not findings, findings


def test_no_reg_covar_warning_for_well_scaled_data():
    X, _ = mixture(400, seed=0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        NaturalDiagonalGMM(3, random_state=0).fit(X)


@pytest.fixture
def dask_threads():
    """Dask's local threaded scheduler.

    natgmm builds its reduction tree itself, the same whatever runs it; the
    threaded scheduler runs it in about a second, without the worker
    processes of a LocalCluster (tests/test_dask.py has those).
    """
    dask = pytest.importorskip("dask", reason="dask is not installed (extra natgmm[dask])")
    with dask.config.set(scheduler="threads"):
        yield


def test_dask_fit_over_many_chunks_equals_the_numpy_fit(dask_threads):
    """20 chunks: the reduction tree (16 parts per task) has a second level."""
    import dask.array as da

    X, _ = make_blobs(4000, n_features=3, centers=3, random_state=0)
    weights = np.random.default_rng(0).uniform(0.0, 2.0, len(X))
    sizes = [200 + (-1) ** i * (i % 7) for i in range(19)]  # uneven
    chunks = (tuple(sizes + [4000 - sum(sizes)]),)
    # Every step in float64: float32's rounding of each chunk depends on how
    # the rows are grouped into chunks, and Dask's group them otherwise.
    kwargs = dict(max_iter=4, tol=0.0, random_state=0, init_params="bisect", mixed_precision=False)
    reference = quiet(NaturalDiagonalGMM(3, **kwargs).fit, X, sample_weight=weights)
    Xd = da.from_array(X, chunks=(chunks[0], (3,))).persist()
    wd = da.from_array(weights, chunks).persist()
    ours = quiet(NaturalDiagonalGMM(3, **kwargs).fit, Xd, sample_weight=wd)
    for name in ("weights_", "means_", "covariances_"):
        assert_allclose(getattr(ours, name), getattr(reference, name), rtol=1e-10, err_msg=name)
    assert_allclose(ours.lower_bounds_, reference.lower_bounds_, rtol=1e-10)


def _vanishing_component_start():
    """Three components for two clusters; the third starts far from both."""
    return dict(
        weights_init=np.array([0.45, 0.45, 0.1]),
        means_init=np.array([[0.0, 0.0], [6.0, 6.0], [40.0, -40.0]]),
        precisions_init=np.ones((3, 2)),
    )


@pytest.mark.parametrize("solver", ["em", "minibatch", "gradient"])
def test_every_solver_respects_min_weight(solver):
    X, _ = mixture(600, seed=0)
    X = X[X[:, 0] > -3]  # the first two clusters only
    model = NaturalDiagonalGMM(
        3, solver=solver, min_weight=1e-2, max_iter=10, batch_size=100, gradient_steps=50,
        learning_rate=0.1, **_vanishing_component_start(),
    )  # fmt: skip
    quiet(model.fit, X)
    assert model.weights_.min() >= 1e-2 * (1 - 1e-12), model.weights_
    assert model.weights_[2] < 1e-2 * (1 + 1e-9)  # the floor is what holds it


@pytest.mark.parametrize("solver", ["em", "minibatch", "gradient", "partial_fit"])
def test_floored_weights_are_renormalised(solver):
    """A component with 2% of the mass, floored at 5%: weights still sum to 1."""
    rng = np.random.default_rng(0)
    X = np.vstack(
        [rng.normal(size=(600, 2)), rng.normal(size=(380, 2)) + 8, rng.normal(size=(20, 2)) - 8]
    )
    start = dict(
        weights_init=np.array([0.6, 0.38, 0.02]),
        means_init=np.array([[0.0, 0.0], [8.0, 8.0], [-8.0, -8.0]]),
        precisions_init=np.ones((3, 2)),
    )
    model = NaturalDiagonalGMM(
        3, solver=solver if solver != "partial_fit" else "em", min_weight=0.05, max_iter=5,
        batch_size=250, gradient_steps=50, learning_rate=0.1, random_state=0, **start,
    )  # fmt: skip
    if solver == "partial_fit":
        for rows in np.array_split(rng.permutation(len(X)), 4):
            model.partial_fit(X[rows])
    else:
        quiet(model.fit, X)
    assert_allclose(model.weights_.sum(), 1.0, rtol=1e-12)
    assert_allclose(model.weights_[2], 0.05, rtol=1e-9)
    assert model.weights_[:2].min() > 0.3


def test_ties_in_predict_go_to_the_first_component():
    """As scikit-learn's argmax: of equally probable components, the first."""
    X, _ = mixture(300, seed=0)
    means = np.array([[40.0, 40.0], [0.0, 0.0], [0.0, 0.0], [6.0, 6.0]])
    model = NaturalDiagonalGMM(
        4,
        weights_init=np.full(4, 0.25),
        means_init=means,
        precisions_init=np.ones((4, 2)),
        max_iter=0,
    ).fit(X)
    assert_array_equal(model.means_[1], model.means_[2])
    labels = model.predict(X)
    assert np.count_nonzero(labels == 1) > 50
    assert not np.any(labels == 2)
    proba = model.predict_proba(X)
    assert_array_equal(proba[:, 1], proba[:, 2])
    assert_array_equal(labels, np.argmax(proba, axis=1))


@pytest.mark.parametrize(
    "params",
    [
        {"init_params": "random", "max_iter": 1},
        {"init_params": "random", "max_iter": 2, "solver": "minibatch", "batch_size": 64},
        {"init_params": "random", "max_iter": 1, "solver": "gradient", "gradient_steps": 20},
        {"init_params": "random", "annealing": "fixed", "anneal_tol": 0.0, "anneal_max_iter": 1,
         "max_iter": 1},
    ],
    ids=["em", "minibatch", "gradient", "annealing"],
)  # fmt: skip
def test_fit_predict_equals_predict_after_the_final_m_step(params):
    """Labels from a final E-step: equal to predict, not to the last iteration's."""
    X, _ = make_blobs(600, n_features=2, centers=4, cluster_std=2.5, random_state=0)
    model = NaturalDiagonalGMM(4, random_state=0, **params)
    labels = quiet(model.fit_predict, X)
    assert_array_equal(labels, model.predict(X))
    assert_array_equal(labels, model.labels_)
    again = quiet(NaturalDiagonalGMM(4, random_state=0, **params).fit, X)
    assert_array_equal(labels, again.predict(X))
    # The test is sharp: the labels under the start (the last E-step of an
    # EM run of one iteration) differ in many rows.
    if params.get("solver") is None and "annealing" not in params:
        start = NaturalDiagonalGMM(4, random_state=0, **{**params, "max_iter": 0}).fit(X)
        assert np.count_nonzero(start.predict(X) != labels) > 30


def _log_resp(X, weights, means, variances):
    log_dens = -0.5 * np.sum(
        (X[:, np.newaxis, :] - means) ** 2 / variances + np.log(2 * np.pi * variances), axis=2
    )
    weighted = log_dens + np.log(weights)
    total = logsumexp(weighted, axis=1)
    return weighted - total[:, np.newaxis], total


def test_online_step_size_schedule():
    """Two partial_fit steps equal online EM by hand with rho_t = (t + tau) ** -kappa."""
    X, _ = mixture(160, seed=3)
    b1, b2 = X[:80], X[80:]
    tau, kappa, reg = 3.0, 0.6, 1e-6
    w0 = np.array([0.2, 0.3, 0.5])
    mu0 = np.array([[0.5, 0.5], [5.0, 5.0], [-5.0, 5.0]])
    var0 = np.array([[1.5, 1.0], [2.0, 0.5], [1.0, 1.0]])
    # max_iter=0: the first batch takes no EM iterations before its step (as
    # fit would take none), so the steps start from the initial model.
    model = NaturalDiagonalGMM(
        3, weights_init=w0, means_init=mu0, precisions_init=1 / var0, reg_covar=reg,
        learning_offset=tau, learning_decay=kappa, max_iter=0,
    )  # fmt: skip
    # Running statistics per unit weight: weight, mean and scatter; they
    # start as those whose M-step is the initial model (reg_covar removed).
    n, mean, scatter = w0.copy(), mu0.copy(), (var0 - reg) * w0[:, np.newaxis]
    w, mu, var = w0, mu0, var0
    for t, batch in enumerate((b1, b2), start=1):
        model.partial_fit(batch)
        resp = np.exp(_log_resp(batch, w, mu, var)[0])
        nb = resp.sum(axis=0)
        mb = resp.T @ batch / nb[:, np.newaxis]
        sb = np.einsum("ik,ikd->kd", resp, (batch[:, np.newaxis, :] - mb) ** 2)
        rho = (t + tau) ** -kappa
        a, b = 1.0 - rho, rho / len(batch)
        n_new = a * n + b * nb
        mean_new = (a * n[:, None] * mean + b * nb[:, None] * mb) / n_new[:, None]
        scatter = a * scatter + b * sb + (a * n * b * nb / n_new)[:, None] * (mean - mb) ** 2
        n, mean = n_new, mean_new
        w, mu, var = n / n.sum(), mean, scatter / n[:, np.newaxis] + reg
        assert_allclose(model.weights_, w, rtol=1e-10)
        assert_allclose(model.means_, mu, rtol=1e-10, atol=1e-12)
        assert_allclose(model.covariances_, var, rtol=1e-10)
        assert model.n_steps_ == t


@pytest.mark.parametrize("mixed_precision", [False, True])
def test_convergence_test_on_the_mean_log_likelihood(mixed_precision):
    """EM stops at the first |L_i - L_(i-1)| < tol, L the mean log-likelihood.

    With ``mixed_precision`` the steps before the last are in float32: their
    bounds within the rounding the switch to float64 allows for
    (``F32_BOUND_ROUNDING``), the parameters they lead to within float32's
    (2**-24, 6e-8, a step, over a dozen steps).
    """
    X, _ = make_blobs(300, n_features=2, centers=3, cluster_std=2.0, random_state=1)
    start = dict(
        weights_init=np.array([0.3, 0.3, 0.4]),
        means_init=np.array([[-2.0, 0.0], [0.0, 2.0], [2.0, -2.0]]),
        precisions_init=np.full((3, 2), 0.5),
    )
    reg = 1e-6
    # EM by hand from the same start: L_i is the mean log-likelihood under
    # the parameters before the i-th M-step.
    w, mu, var = start["weights_init"], start["means_init"], 1.0 / start["precisions_init"]
    bounds, means = [], []
    for _ in range(60):
        log_resp, total = _log_resp(X, w, mu, var)
        bounds.append(total.mean())
        resp = np.exp(log_resp)
        nk = resp.sum(axis=0) + 10 * np.finfo(float).eps
        mu = resp.T @ X / nk[:, np.newaxis]
        var = np.einsum("ik,ikd->kd", resp, (X[:, np.newaxis, :] - mu) ** 2) / nk[:, None] + reg
        w = nk / nk.sum()
        means.append(mu)
    changes = np.abs(np.diff(bounds))  # changes[i] = |L_(i+2) - L_(i+1)|
    # A tol with a margin, so that the test checks the rule, not rounding:
    # the first change that is well below every earlier one, and tol
    # halfway (geometrically) between them.
    j = next(j for j in range(2, 50) if changes[j] < changes[:j].min() / 2)
    tol = float(np.sqrt(changes[j] * changes[:j].min()))
    stop = j + 2  # iterations run: L_1 .. L_(j+2)
    # A rule on the total log-likelihood (n times the mean) would stop later.
    assert changes[j] * len(X) > tol
    fit = dict(reg_covar=reg, mixed_precision=mixed_precision, **start)
    model = NaturalDiagonalGMM(3, tol=tol, max_iter=100, **fit).fit(X)
    assert model.converged_ and model.n_iter_ == stop
    rtol = _solver.F32_BOUND_ROUNDING if mixed_precision else 1e-10
    assert_allclose(model.lower_bounds_, bounds[:stop], rtol=rtol)
    assert_allclose(model.lower_bound_, bounds[stop - 1], rtol=rtol)
    assert_allclose(model.means_, means[stop - 1], rtol=1e-5 if mixed_precision else 1e-8)
    # The converging step in float64, those before it in float32.
    assert_array_equal(model.history_["float32"], [mixed_precision] * (stop - 1) + [False])
    # One iteration short: not converged, with a warning.
    with pytest.warns(ConvergenceWarning):
        short = NaturalDiagonalGMM(3, tol=tol, max_iter=stop - 1, **fit).fit(X)
    assert not short.converged_ and short.n_iter_ == stop - 1
