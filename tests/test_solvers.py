"""Minibatch EM, partial_fit and the gradient (Adam) M-step."""

import pickle
import warnings

import numpy as np
import pytest
from conftest import quiet_fit
from numpy.testing import assert_allclose, assert_array_equal
from sklearn.datasets import make_blobs
from sklearn.exceptions import ConvergenceWarning

from natgmm import GeometricSchedule, NaturalDiagonalGMM
from natgmm._em import Params, Regularisation, Stats, combine, m_step
from natgmm._gradient import OMEGA_MAX, OMEGA_TOP, GradientMStep, adam_state


@pytest.fixture(scope="module")
def batch_fit(stream_blobs):
    X, _ = stream_blobs
    return NaturalDiagonalGMM(6, random_state=0, tol=1e-6).fit(X)


def test_combine_is_exact():
    """Blending statistics about different references equals pooling the data."""
    rng = np.random.default_rng(0)
    za, zb = rng.normal(3, 2, size=(50, 2)), rng.normal(-1, 1, size=(30, 2))

    def stats(z, ref):
        return Stats(
            np.array([len(z)]), (z - ref).sum(0)[None], ((z - ref) ** 2).sum(0)[None], ref[None]
        )

    pooled = combine(stats(za, np.array([2.0, 9.0])), stats(zb, np.array([-5.0, 0.0])), 0.3, 2.0)
    z, w = np.vstack([za, zb]), np.r_[np.full(50, 0.3), np.full(30, 2.0)]
    mean = np.average(z, axis=0, weights=w)
    assert_allclose(pooled.nk, [w.sum()])
    assert_allclose(pooled.ref[0], mean, rtol=1e-13)
    assert_allclose(pooled.s2[0], w @ (z - mean) ** 2, rtol=1e-13)


def test_partial_fit_over_shuffled_batches_matches_batch_em(stream_blobs, batch_fit):
    X, _ = stream_blobs
    order = np.random.default_rng(0).permutation(len(X))
    model = NaturalDiagonalGMM(6, random_state=0)
    for _ in range(2):
        for batch in np.array_split(X[order], 40):
            model.partial_fit(batch)
    assert model.n_steps_ == 80
    assert abs(model.score(X) - batch_fit.score(X)) < 0.01 * abs(batch_fit.score(X))
    # partial_fit continues a batch fit as well
    model = NaturalDiagonalGMM(6, random_state=0).fit(X[:5000]).partial_fit(X[5000:6000])
    assert model.n_steps_ == 1 and np.all(np.isfinite(model.means_))


def test_a_streams_first_batch_is_fitted_as_fit_would():
    """The first partial_fit is fit on its batch, then one online step; max_iter=0: the start alone.

    A stream from the start alone ended 25 nats a sample below batch EM on
    raw-scale latents (doc/solvers.rst).
    """
    # Wider blobs in features of unlike scales: k-means starts well off EM's optimum.
    X, _ = make_blobs(20000, n_features=5, centers=6, cluster_std=3.0, random_state=0)
    X *= np.array([1.0, 3.0, 10.0, 30.0, 100.0])
    first = X[:1000]
    fitted = NaturalDiagonalGMM(6, random_state=0).fit(first)
    stream = NaturalDiagonalGMM(6, random_state=0).partial_fit(first)
    start = NaturalDiagonalGMM(6, random_state=0, max_iter=0).partial_fit(first)
    assert stream.n_steps_ == start.n_steps_ == 1
    # One step on the batch the fit converged on moves the parameters little.
    assert stream.score(X) == pytest.approx(fitted.score(X), abs=1e-3)
    assert start.score(X) < fitted.score(X) - 0.1  # measured: 0.44 nats a sample lower


def test_minibatch_solver_matches_batch_em(stream_blobs, batch_fit):
    X, _ = stream_blobs
    model = quiet_fit(NaturalDiagonalGMM(6, solver="minibatch", batch_size=500, random_state=0), X)
    assert model.n_steps_ == model.n_iter_ * 40
    assert abs(model.score(X) - batch_fit.score(X)) < 0.01 * abs(batch_fit.score(X))
    assert_array_equal(model.labels_, model.predict(X))
    # Same seed, same shuffles: reproducible.
    again = quiet_fit(NaturalDiagonalGMM(6, solver="minibatch", batch_size=500, random_state=0), X)
    assert_array_equal(again.means_, model.means_)


@pytest.fixture(scope="module")
def weighted_clusters():
    """Two clusters, the first weighted 10 times: weighted EM gives it weight 0.90."""
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 2000)
    X = np.c_[np.where(y == 0, -5.0, 5.0) + rng.normal(size=2000), rng.normal(size=2000)]
    weights = np.where(y == 0, 10.0, 1.0)
    start = dict(means_init=[[-5, 0], [5, 0]], weights_init=[0.5, 0.5])
    em = NaturalDiagonalGMM(2, **start).fit(X, sample_weight=weights)
    assert_allclose(em.weights_, [0.9017, 0.0983], atol=1e-4)
    return X, weights, start, em.weights_


@pytest.mark.parametrize("batch_size", [1, 4, 256])
def test_minibatch_counts_each_row_by_its_weight(weighted_clusters, batch_size):
    """Online EM divides a batch's statistics by a batch's mean weight, not its own.

    By its own weight, every batch had the same say: with one row a batch the
    weights did not count at all (0.47 for the cluster weighted ten times,
    its share of the rows), with four rows 0.82. The tolerance is the spread of
    the online estimate over seeds on repeated rows (0.89 to 0.90).
    """
    X, weights, start, em_weights = weighted_clusters
    model = NaturalDiagonalGMM(
        2, solver="minibatch", batch_size=batch_size, max_iter=20, random_state=0, **start
    )
    quiet_fit(model, X, sample_weight=weights)
    assert_allclose(model.weights_, em_weights, atol=0.015)


def test_a_stream_counts_each_row_by_its_weight(weighted_clusters):
    X, weights, start, em_weights = weighted_clusters
    order = np.random.default_rng(1).permutation(len(X))
    model = NaturalDiagonalGMM(2, **start).partial_fit(
        X[order[:100]], sample_weight=weights[order[:100]]
    )
    for i in order[100:]:
        model.partial_fit(X[i : i + 1], sample_weight=weights[i : i + 1])
    assert_allclose(model.weights_, em_weights, atol=0.03)  # 0.44 when weights did not count


@pytest.mark.parametrize("solver", ["minibatch", "gradient"])
@pytest.mark.parametrize("stream", [False, True])
def test_a_warm_refit_on_other_rows_resumes_the_solver_in_its_own_units(
    stream_blobs, solver, stream
):
    """A refit maps its data to internal units of its own; the solver state follows.

    Steps that cannot move anything (a learning offset of 1e15, a learning
    rate of 1e-12) leave the model where it was. Before, the running
    statistics and Adam's variables stayed in the first fit's (or the
    stream's) units, and such a refit moved means by up to two standard
    deviations of a feature.
    """
    X, y = stream_blobs
    model = NaturalDiagonalGMM(3, solver=solver, random_state=0, max_iter=20)
    if stream:
        for batch in np.array_split(X[y < 3][:3000], 6):  # units of some of the rows
            model.partial_fit(batch)
    else:
        quiet_fit(model, X[y < 3])
    means, variances = model.means_.copy(), model.covariances_.copy()
    no_step = dict(learning_offset=1e15, learning_rate=1e-12, gradient_steps=1, max_iter=1)
    quiet_fit(model.set_params(warm_start=True, **no_step), X)
    assert_allclose(model.means_, means, rtol=1e-6, atol=1e-6 * np.abs(means).max())
    assert_allclose(model.covariances_, variances, rtol=1e-6)


def test_one_sample_stream_stays_finite(stream_blobs):
    X, _ = stream_blobs
    model = NaturalDiagonalGMM(
        6, random_state=0, min_variance_relative=1e-3, min_weight=1e-5, lower_precision_reg=1.0
    )
    with pytest.warns(UserWarning, match=r"first partial_fit batch has 1 row\(s\) .* 6 components"):
        model.partial_fit(X[:1], sample_weight=[1.0])
    for i, row in enumerate(X[1:1500], start=1):
        model.partial_fit(row[np.newaxis], sample_weight=[1.0 + i % 3])
        if i % 100 == 0 or i < 10:
            for name in ("weights_", "means_", "covariances_", "eta1_", "eta2_"):
                assert np.all(np.isfinite(getattr(model, name))), (i, name)
            assert np.all(model.eta2_ < 0) and np.all(model.weights_ >= 1e-5 * (1 - 1e-9))
    assert np.isfinite(model.score(X))


def test_a_first_batch_with_enough_rows_gives_no_warning(stream_blobs):
    X, _ = stream_blobs
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        NaturalDiagonalGMM(6, random_state=0).partial_fit(X[:6])


def test_partial_fit_with_annealing_and_raw_scale(stream_blobs):
    X, _ = stream_blobs
    X = X * np.linspace(40, 80, X.shape[1]) + 1e3
    model = NaturalDiagonalGMM(
        6,
        annealing="fixed",
        schedule=GeometricSchedule(n_levels=4),
        anneal_max_iter=5,
        random_state=0,
    )
    batches = np.array_split(X, 40)
    # Named, as fit's with solver="minibatch" (the same online steps).
    with pytest.warns(UserWarning, match="partial_fit with annealing: online steps are small"):
        model.partial_fit(batches[0])
    for batch in batches[1:]:
        model.partial_fit(batch)
        assert np.all(np.isfinite(model.eta1_)) and np.all(model.eta2_ < 0)
    assert model.n_steps_ == 40
    with pytest.raises(ValueError, match="X has 4 features"):
        model.partial_fit(X[:10, :4])


def _raw_scale_problem():
    """Latent-like data with per-feature std 40-80: eta2 starts near -2.4e-4."""
    X, _ = make_blobs(3000, n_features=4, centers=3, random_state=1)
    return X * np.array([40.0, 55.0, 70.0, 80.0])


def test_a_start_cell_of_identical_rows_does_not_stop_the_gradient_solver():
    # Its variance is reg_covar exactly: omega was 600, its gradient (the
    # precision times rounding) about 1e228, and the clip of the gradient's
    # norm left every other coordinate's at nothing: converged_ at the start.
    from sklearn.datasets import load_digits
    from sklearn.decomposition import FactorAnalysis

    Z = FactorAnalysis(20, random_state=0).fit_transform(load_digits().data)
    scale = np.random.default_rng(0).uniform(40, 80, size=20)
    X = (Z - Z.mean(0)) / Z.std(0) * scale  # raw-scale latents
    X = np.vstack([X, np.repeat(X[:1] + 600.0, 3, axis=0)])  # a cell of their own
    em = NaturalDiagonalGMM(10, random_state=0).fit(X)
    start = NaturalDiagonalGMM(10, random_state=0, max_iter=0)
    assert quiet_fit(start, X).score(X) < em.score(X) - 0.5, "the start is worth moving from"
    gradient = NaturalDiagonalGMM(10, solver="gradient", random_state=0).fit(X)
    assert gradient.score(X) > em.score(X) - 0.05


def test_adam_steps_too_large_are_named(stream_blobs):
    """Steps that lower the likelihood warn; steps that leave float64 say so.

    From the k-means start a generalised EM step can only gain; at
    ``learning_rate=10`` the bound fell by several nats per sample (and a
    variance collapsed to ``reg_covar``) with ``converged_`` True and no
    word; at 1000 the error spoke of the features' units only.
    """
    X, _ = stream_blobs
    X = X[:3000]
    with pytest.warns(ConvergenceWarning, match="lowered the mean log-likelihood.*learning_rate"):
        NaturalDiagonalGMM(4, solver="gradient", learning_rate=10.0, random_state=0).fit(X)
    with pytest.raises(ValueError, match="cannot be represented.*lower learning_rate"):
        quiet_fit(NaturalDiagonalGMM(4, solver="gradient", learning_rate=1e3, random_state=0), X)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        NaturalDiagonalGMM(4, solver="gradient", random_state=0).fit(X)


def test_freeing_the_levels_variances_is_not_blamed_on_adam():
    # After "fixed" levels the final EM's first bound is at variances still
    # held: the step that frees them fell by a nat whatever the learning rate,
    # and the warning told users to lower it (which made the fits worse).
    from sklearn.datasets import make_blobs

    X, _ = make_blobs(300, 2, centers=2, center_box=(-30, 30), random_state=1)
    model = NaturalDiagonalGMM(2, annealing="fixed", solver="gradient", random_state=1)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model.fit(X)
    assert not [w for w in caught if "lowered the mean log-likelihood" in str(w.message)]


@pytest.mark.parametrize("learning_rate", [1e-4, 0.1, 1.0])
def test_gradient_solver_keeps_eta2_negative(learning_rate):
    X = _raw_scale_problem()
    model = quiet_fit(
        NaturalDiagonalGMM(
            3,
            solver="gradient",
            learning_rate=learning_rate,
            gradient_steps=25,
            gradient_clip=1.0,
            max_iter=8,
            random_state=0,
        ),
        X,
    )
    assert np.all(model.eta2_ < 0) and np.all(np.isfinite(model.eta2_))
    assert np.all(np.isfinite(model.eta1_)) and np.isfinite(model.lower_bound_)
    # Steps on eta2 itself would not survive this: an Adam step moves a
    # parameter by about lr, and every eta2 = -1/(2 var) here is smaller.
    assert np.all(-0.5 / X.var(axis=0) + learning_rate > 0)


@pytest.mark.parametrize("learning_rate", [0.1, 1.0])
def test_every_adam_step_keeps_eta2_negative(learning_rate):
    """One step at a time, from raw-scale statistics, eta2 < 0 throughout."""
    X = _raw_scale_problem()
    rng = np.random.default_rng(0)
    resp = rng.dirichlet(np.ones(3), size=len(X))
    stats = Stats(resp.sum(0), resp.T @ X, resp.T @ X**2, np.zeros((3, 4)))
    reg = Regularisation(np.zeros(4), np.zeros(4), 0.0, np.zeros(4), 0.0)
    state = adam_state(Params(np.full(3, 1 / 3), np.zeros((3, 4)), np.full((3, 4), 1e-3)), 0.0)
    step = GradientMStep(1, learning_rate, 1.0)
    for _ in range(500):
        params = step(stats, reg, state, float(len(X)))
        omega = state.theta[3 + 12 :]
        assert np.all((-OMEGA_MAX <= omega) & (omega <= OMEGA_TOP))
        assert np.all(-0.5 / params.variances < 0) and np.all(np.isfinite(params.means))


@pytest.mark.parametrize("a1, b", [(0.0, 0.0), (2.0, 0.5)])
def test_many_adam_steps_reach_the_closed_form(a1, b):
    rng = np.random.default_rng(0)
    z = rng.normal(size=(500, 4)) * [1.0, 2.0, 3.0, 0.5] + 1.0
    resp = rng.dirichlet(np.ones(3), size=500)
    stats = Stats(resp.sum(0), resp.T @ (z - 0.5), resp.T @ (z - 0.5) ** 2, np.full((3, 4), 0.5))
    reg = Regularisation(np.full(4, 1e-6), np.zeros(4), a1, np.full(4, b), 0.0)
    closed, _ = m_step(stats, reg)
    state = adam_state(Params(np.full(3, 1 / 3), np.zeros((3, 4)), np.ones((3, 4))), 1e-6)
    params = GradientMStep(20000, 0.05, 1.0)(stats, reg, state, 500.0)
    # The closed form adds 10 eps to each weight sum, ~1e-16 relative.
    assert_allclose(params.means, closed.means, rtol=1e-6, atol=1e-9)
    assert_allclose(params.variances, closed.variances, rtol=1e-6)
    assert_allclose(params.weights, closed.weights, rtol=1e-6)


def test_gradient_solver_approaches_em(stream_blobs, batch_fit):
    X, _ = stream_blobs
    model = quiet_fit(
        NaturalDiagonalGMM(
            6, solver="gradient", learning_rate=0.05, gradient_steps=300, random_state=0
        ),
        X,
    )
    assert abs(model.score(X) - batch_fit.score(X)) < 1e-3 * abs(batch_fit.score(X))
    restored = pickle.loads(pickle.dumps(model))
    assert_array_equal(restored.predict(X[:100]), model.predict(X[:100]))


def test_a_warm_minibatch_refit_continues_its_steps():
    # A warm refit restarted online EM (n_steps_ 12, then 6 instead of 18):
    # its step sizes started again at their largest.
    rng = np.random.default_rng(0)
    X = np.concatenate([rng.normal(c, 1.0, (2000, 2)) for c in (0, 4, 8)])
    model = NaturalDiagonalGMM(3, solver="minibatch", max_iter=5, warm_start=True, random_state=0)
    first = quiet_fit(model, X).n_steps_
    quiet_fit(model, X)
    steps_per_pass = -(-len(X) // model.batch_size)  # a pass is ceil(N / batch_size) steps
    assert model.n_steps_ == first + model.n_iter_ * steps_per_pass


def test_the_first_adam_step_moves_each_variable_by_the_learning_rate():
    # Adam's bias corrections make the first step lr * g / |g| in every
    # coordinate; without the second moment's, it was 1 / sqrt(1 - beta2) = 31.6 times that.
    from natgmm._gradient import GradientMStep, adam_state

    rng = np.random.default_rng(0)
    params = Params(np.array([0.3, 0.7]), rng.normal(size=(2, 3)), np.exp(rng.normal(size=(2, 3))))
    stats = Stats(np.array([40.0, 60.0]), rng.normal(size=(2, 3)), np.full((2, 3), 50.0),
                  params.means)  # fmt: skip
    zero = np.zeros(3)
    state = adam_state(params, 0.0)
    before = state.theta.copy()
    GradientMStep(1, 0.01, 1e9)(stats, Regularisation(zero, zero, 0.0, zero, 0.0), state, 100.0)
    moved = np.abs(state.theta - before)
    # lr * g / (|g| + eps): coordinates of small gradients a few 1e-6 short.
    assert_allclose(moved[moved > 0], 0.01, rtol=1e-4)
    assert np.count_nonzero(moved) > moved.size // 2


def test_adam_starts_at_the_given_parameters():
    # Its variables hold the variances without reg_covar (which the M-step
    # adds back): they started reg_covar wider (0.6 and 2.1 for 0.5 and 2.0).
    from natgmm._gradient import GradientMStep, adam_state

    params = Params(np.array([0.5, 0.5]), np.array([[0.0], [1.0]]), np.array([[0.5], [2.0]]))
    zero = np.zeros(1)
    reg = Regularisation(np.full(1, 0.1), zero, 0.0, zero, 0.0)
    stats = Stats(np.array([1.0, 1.0]), np.zeros((2, 1)), np.ones((2, 1)), params.means)
    back = GradientMStep(0, 0.01, 1.0)(stats, reg, adam_state(params, 0.1), 2.0)
    for got, want in zip(back, params, strict=True):
        assert_allclose(got, want, rtol=1e-12)


def test_minibatches_are_drawn_from_the_rows_of_positive_weight():
    # Rows of weight zero took places in the batches: 300 of them moved the
    # means by about 0.03 (a row of weight zero is as good as absent).
    X, _ = make_blobs(600, n_features=3, centers=2, random_state=0)
    common = dict(solver="minibatch", batch_size=64, random_state=0)
    plain = NaturalDiagonalGMM(2, **common).fit(X, sample_weight=np.ones(len(X)))
    padded = np.r_[X, np.random.default_rng(0).normal(size=(300, 3))]
    weights = np.r_[np.ones(len(X)), np.zeros(300)]
    model = NaturalDiagonalGMM(2, **common).fit(padded, sample_weight=weights)
    assert model.n_iter_ == plain.n_iter_
    assert_allclose(model.means_, plain.means_, rtol=1e-9)
