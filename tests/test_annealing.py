"""Deterministic annealing: the symmetric saddle, critical values, schedules."""

import pickle
import re
import warnings

import naive
import numpy as np
import pytest
from conftest import quiet_fit, short_trial_iterations
from numpy.testing import assert_allclose, assert_array_equal
from sklearn.base import clone
from sklearn.datasets import make_blobs
from sklearn.exceptions import ConvergenceWarning
from sklearn.metrics import adjusted_rand_score
from sklearn.model_selection import GridSearchCV

from natgmm import (
    ExplicitSchedule,
    GeometricSchedule,
    LinearSchedule,
    NaturalDiagonalGMM,
    _anneal,
    _kernels,
    _solver,
    _split_merge,
)
from natgmm._em import Params, Regularisation
from natgmm._settings import DEFAULT_SCHEDULES

TWO_POINTS = np.array([[-1.0], [1.0]])
# Near the saddle (mu = 0, s = 1) of the symmetric model N(mu, s^2), N(-mu, s^2).
NEAR_SADDLE = dict(
    weights_init=[0.5, 0.5],
    means_init=[[1e-3], [-1e-3]],
    precisions_init=[[1 / 1.21], [1 / 1.21]],
)


def test_plain_em_stalls_at_the_two_point_saddle():
    """Plain EM with a free variance does not leave the saddle.

    At mu = 0 EM's linear growth factor of mu is E[x^2] / s^2 = 1: the
    Hessian is singular and mu grows only at third order (by about
    2/3 mu^3 per iteration, so from 1e-3 it would take ~1e6 iterations), which
    reg_covar's 1e-6 on the variance outweighs. With the default tol EM even
    reports convergence at the saddle.
    """
    stalled = quiet_fit(NaturalDiagonalGMM(2, **NEAR_SADDLE), TWO_POINTS)
    assert stalled.converged_ and stalled.n_iter_ < 10
    assert np.all(np.abs(stalled.means_) < 1e-2)
    crawling = quiet_fit(NaturalDiagonalGMM(2, tol=0.0, max_iter=4000, **NEAR_SADDLE), TWO_POINTS)
    assert np.all(np.abs(crawling.means_) < 1e-2)


def test_fixed_variance_annealing_escapes_ten_times_faster():
    plain_iterations = 4000  # plain EM is still at |mu| < 0.01 after these (above)
    model = NaturalDiagonalGMM(2, annealing="fixed", random_state=0, **NEAR_SADDLE)
    model.fit(TWO_POINTS)
    assert_allclose(np.sort(model.means_.ravel()), [-1.0, 1.0], atol=1e-6)
    assert model.n_iter_ * 10 <= plain_iterations
    assert model.critical_value_ == pytest.approx(1.0)
    assert np.all(model.history_["n_distinct"][model.history_["level"] > 1.0] == 1)
    # Levels that run all their iterations split at the first level below the
    # critical variance 1; with tol, levels end while the likelihood is still
    # flat, and the means split a few levels later.
    full = NaturalDiagonalGMM(2, annealing="fixed", anneal_tol=0.0, random_state=0, **NEAR_SADDLE)
    full.fit(TWO_POINTS)
    assert_allclose(np.sort(full.means_.ravel()), [-1.0, 1.0], atol=1e-6)
    assert full.n_iter_ * 10 <= plain_iterations
    levels = full.history_["level"]
    distinct = full.history_["n_distinct"]
    assert np.all(distinct[levels > 1.0] == 1)
    assert np.all(distinct[levels < 0.7] == 2)
    assert model.n_iter_ < full.n_iter_


@pytest.mark.parametrize("float32_levels", [False, True])
@pytest.mark.parametrize("variance, n_distinct", [(1.1, 1), (1.02, 1), (0.98, 2), (0.9, 2)])
def test_critical_variance_of_two_points(variance, n_distinct, float32_levels, monkeypatch):
    """Variances fixed above 1: the means coincide; below 1: they split.

    In float32 (the levels' default) the means above the critical variance
    coincide to float32's rounding: the E-step's log-densities are off by a
    few eps32 (1.2e-7), and the level's map, which contracts the gap by the
    factor 1 / v per iteration, carries that into the fixed point times
    ``1 / (1 - 1 / v)``, at most 51 here: below 1e-4 with a margin of ten.
    """
    monkeypatch.setattr(_anneal, "FLOAT32_LEVELS", float32_levels)
    model = NaturalDiagonalGMM(
        2,
        annealing="fixed",
        schedule=ExplicitSchedule([variance]),
        anneal_max_iter=3000,
        anneal_tol=0.0,  # run to the fixed point of this variance
        max_iter=0,
        random_state=0,
        **NEAR_SADDLE,
    ).fit(TWO_POINTS)
    assert_allclose(model.covariances_, variance, rtol=1e-5)
    gap = abs(model.means_[0, 0] - model.means_[1, 0])
    if n_distinct == 1:
        assert gap < (1e-4 if float32_levels else 1e-8)
    else:
        # Fixed point of mu = tanh(mu / v): mu > 0.19 for v = 0.98.
        assert gap > 0.38
    assert model.history_["n_distinct"][-1] == n_distinct


def test_auto_critical_value_on_blobs(slanted_blobs):
    X, _ = slanted_blobs
    Xs = (X - X.mean(axis=0)) / X.std(axis=0)
    expected = np.linalg.eigvalsh(np.cov(Xs.T, bias=True))[-1]
    above = NaturalDiagonalGMM(
        4,
        annealing="fixed",
        schedule=GeometricSchedule(n_levels=1),  # start="auto": 1.2 x critical
        anneal_max_iter=400,
        anneal_tol=0.0,  # run to the fixed point of this level
        max_iter=0,
        random_state=0,
    ).fit(X)
    assert above.critical_value_ == pytest.approx(expected, rel=1e-9)
    assert above.history_["level"][0] == pytest.approx(1.2 * expected)
    assert above.history_["n_distinct"][-1] == 1
    assert np.ptp(above.means_, axis=0).max() < 1e-6 * X.std()
    below = clone(above).set_params(schedule=GeometricSchedule(n_levels=1, auto_factor=0.8))
    assert below.fit(X).history_["n_distinct"][-1] >= 2


@pytest.mark.parametrize("annealing", ["floor", "fixed", "temperature"])
def test_schedule_finds_every_cluster(slanted_blobs, annealing):
    X, y = slanted_blobs
    model = quiet_fit(NaturalDiagonalGMM(4, annealing=annealing, random_state=0), X)
    assert adjusted_rand_score(y, model.labels_) > 0.95
    h = model.history_
    assert len(h["lower_bound"]) == model.n_iter_ >= len(model.lower_bounds_)
    # lower_bounds_ leaves the moves' trials and a move not kept out.
    assert model.lower_bounds_[-1] == model.lower_bound_
    assert h["n_distinct"][-1] == 4 and h["n_active"][-1] == 4
    first = model.history_["level"][0]
    assert first == pytest.approx(1.2 * model.critical_value_)
    levels = np.unique(h["level"][np.isfinite(h["level"])])
    # The default schedules (benchmarks/study/sweep.py chose 24 temperatures),
    # of which "temperature" skips levels while they settle at once.
    schedule = GeometricSchedule(**DEFAULT_SCHEDULES[annealing])
    expected = schedule.values(model.critical_value_)
    assert expected.size == (24 if annealing == "temperature" else 12)
    assert np.isin(levels, expected).all()
    if annealing == "temperature":
        assert 1 < levels.size < 24
    else:
        assert_allclose(np.sort(levels), np.sort(expected))
        assert levels.min() == pytest.approx(0.01)
    # The final EM runs without the annealing: no level, and no floor left.
    assert np.isnan(h["level"][-1])
    # Splits are recorded where the number of distinct means grew, all of
    # them below the start of the schedule, ending at the 4 clusters.
    splits = model.split_levels_
    assert splits.shape[1] == 2 and splits[-1, 1] == 4
    assert np.all(np.diff(splits[:, 1]) > 0) and np.all(splits[:, 0] < first)
    assert np.all(np.isfinite(model.eta2_)) and np.all(model.eta2_ < 0)


@pytest.mark.parametrize("annealing", ["floor", "fixed", "temperature"])
def test_final_em_releases_the_annealing(annealing):
    """Clusters narrower than the last level: the final EM fits their own variance.

    Two clusters of standard deviation 0.1 at (-10, -10) and (10, 10) (off
    the axes, so that the free-variance modes leave the saddle too): each
    feature's variance is about 100, so the default last level (0.01 of it,
    a variance of 1) is 100 times the clusters' own; kept as a floor it
    would stay.
    """
    rng = np.random.default_rng(0)
    X = np.concatenate([rng.normal(-10, 0.1, (300, 2)), rng.normal(10, 0.1, (300, 2))])
    model = quiet_fit(NaturalDiagonalGMM(2, annealing=annealing, random_state=0), X)
    assert_allclose(np.sort(model.means_[:, 0]), [-10, 10], atol=0.05)
    assert_allclose(model.covariances_, 0.01, rtol=0.25)


@pytest.mark.parametrize("annealing", ["floor", "fixed"])
@pytest.mark.parametrize("start", [1e2, 1e8])
def test_a_level_far_above_the_data_keeps_every_component(annealing, start):
    """A level's first E-step sees the level's variances, not the previous ones.

    The means enter a level with noise of a thousandth of the level's
    standard deviation; seen at the data's variance instead (10 standard
    deviations at 1e8), every row went to one component, and at such a level
    all densities are equal, so the other's weight stayed near zero and its
    mean far outside the data.
    """
    rng = np.random.RandomState(0)
    X = np.vstack([rng.randn(100, 3), rng.randn(100, 3) + 4])
    schedule = ExplicitSchedule([start, 1.0, 0.5, 0.1])
    model = quiet_fit(
        NaturalDiagonalGMM(2, annealing=annealing, schedule=schedule, random_state=0), X
    )
    assert_allclose(model.weights_, 0.5, atol=0.01)
    assert_allclose(np.sort(model.means_.mean(axis=1)), [0, 4], atol=0.3)
    level_weights = model.history_["n_active"][model.history_["level"] == start]
    assert np.all(level_weights == 2)


def test_annealing_starts_from_the_pooled_solution(slanted_blobs):
    """No k-means under annealing: init_params does not change the fit."""
    X, _ = slanted_blobs
    fits = [
        quiet_fit(NaturalDiagonalGMM(4, annealing="floor", init_params=how, random_state=0), X)
        for how in ("kmeans", "random")
    ]
    assert_array_equal(fits[0].means_, fits[1].means_)
    assert fits[0].history_["n_distinct"][0] == 1  # one mean after the first iteration


def test_history_without_annealing(slanted_blobs):
    X, _ = slanted_blobs
    model = NaturalDiagonalGMM(4, random_state=0).fit(X)
    assert np.all(np.isnan(model.history_["level"]))
    assert_allclose(model.history_["lower_bound"], model.lower_bounds_)
    assert not hasattr(model, "critical_value_")


@pytest.mark.parametrize("annealing", ["floor", "temperature"])
def test_free_variance_modes_stay_on_a_one_dimensional_saddle(annealing):
    """Documented limitation: with free variances, in 1-D, the levels end at the saddle.

    Each component's free variance at the pooled solution is the data
    variance, which equals the critical value when features are
    uncorrelated; only "fixed" pins the variance below it. Without moves the
    fit stays there and says so; the default moves split the pair anew.
    """
    model = NaturalDiagonalGMM(2, annealing=annealing, split_merge=0, random_state=0, **NEAR_SADDLE)
    with pytest.warns(
        ConvergenceWarning, match="Components 0 and 1 ended as the same Gaussian"
    ) as caught:
        model.fit(TWO_POINTS)
    assert "split_merge='auto' moves can leave it" in str(caught[0].message)  # not "anneal"
    assert "lower floors" not in str(caught[0].message)  # none set
    with pytest.warns(ConvergenceWarning, match="or lower floors;"):
        clone(model).set_params(min_variance=1e-3).fit(TWO_POINTS)
    assert np.all(np.abs(model.means_) < 0.1)
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)
        model.set_params(split_merge="auto").fit(TWO_POINTS)
    assert_allclose(np.sort(model.means_.ravel()), [-1, 1])
    assert model.split_merge_moves_[0, :3].tolist() == [0, 1, 0]  # the pair split anew


def test_annealing_with_weights_float32_n_init_warm_start(slanted_blobs):
    X, _ = slanted_blobs
    counts = np.random.default_rng(0).integers(0, 3, size=len(X))
    kwargs = dict(n_components=4, annealing="fixed", init_params="bisect", random_state=0)
    kwargs["schedule"] = GeometricSchedule(n_levels=8)
    weighted = quiet_fit(NaturalDiagonalGMM(**kwargs), X, sample_weight=counts)
    repeated = quiet_fit(NaturalDiagonalGMM(**kwargs), np.repeat(X, counts, axis=0))
    assert_allclose(weighted.critical_value_, repeated.critical_value_, rtol=1e-10)
    assert_allclose(np.sort(weighted.means_, axis=0), np.sort(repeated.means_, axis=0), atol=1e-6)

    kmeans = {**kwargs, "init_params": "kmeans"}
    single = quiet_fit(NaturalDiagonalGMM(**kmeans), X.astype(np.float32))
    assert single.means_.dtype == np.float32 and np.all(np.isfinite(single.eta1_))
    several = quiet_fit(NaturalDiagonalGMM(**{**kwargs, "init_params": "kmeans", "n_init": 3}), X)
    assert several.lower_bound_ >= single.lower_bound_ - 1e-3

    warm = NaturalDiagonalGMM(**{**kwargs, "warm_start": True, "max_iter": 5})
    quiet_fit(warm, X)
    # The schedule ran: its 8 levels, then the final EM without a level.
    levels = warm.history_["level"]
    assert np.unique(levels[np.isfinite(levels)]).size == 8 and np.isnan(levels[-1])
    quiet_fit(warm, X)
    assert warm.n_iter_ <= 5  # later fits continue without it
    assert np.all(np.isnan(warm.history_["level"]))


def test_schedules_are_estimator_parameters(slanted_blobs):
    X, _ = slanted_blobs
    assert_allclose(LinearSchedule(start=3.0, stop=1.0, n_levels=3).values(9.0), [3.0, 2.0, 1.0])
    assert_allclose(GeometricSchedule(stop=0.5, n_levels=2).values(2.0), [2.4, 0.5])
    for levels in ([1.0, -1.0], [np.inf, 1.0], [[1.0, 2.0]], []):
        # inf passed until 2026-12-06 (an ill-defined covariance error followed).
        with pytest.raises(ValueError, match="1-D sequence of positive, finite levels"):
            ExplicitSchedule(levels).values(1.0)
    with pytest.raises(ValueError, match="Temperatures must be at least 1"):
        NaturalDiagonalGMM(2, annealing="temperature", schedule=ExplicitSchedule([0.5])).fit(X)
    # Increasing levels ran in that order, silently, until 2026-12-06.
    assert_allclose(ExplicitSchedule([2.0, 2.0, 1.0]).values(1.0), [2.0, 2.0, 1.0])
    with pytest.raises(ValueError, match=r"must not increase.*got \[0.3, 1.0, 3.0\]\.$"):
        ExplicitSchedule([0.3, 1.0, 3.0]).values(1.0)
    with pytest.raises(ValueError, match="start='auto' is 1.2 times the critical value 1.5"):
        GeometricSchedule(stop=2.0).values(1.5)

    model = NaturalDiagonalGMM(4, annealing="floor", schedule=GeometricSchedule(n_levels=5))
    assert model.get_params()["schedule__n_levels"] == 5
    copy = clone(model)
    assert copy.schedule is not model.schedule and copy.schedule.n_levels == 5
    search = GridSearchCV(
        model,
        {"schedule__stop": [0.5, 0.01], "schedule__n_levels": [3, 6]},
        cv=2,
    )
    quiet_fit(search, X)
    assert set(search.cv_results_["param_schedule__stop"]) == {0.5, 0.01}
    restored = pickle.loads(pickle.dumps(search.best_estimator_))
    assert_array_equal(restored.predict(X), search.best_estimator_.predict(X))
    # The default schedule (None) is tunable too: nested parameters set them on
    # the schedule None stands for (they raised AttributeError on None).
    for annealing, n_levels in (("temperature", 24), ("floor", 12)):
        default = NaturalDiagonalGMM(annealing=annealing).set_params(schedule__stop=2.0)
        assert (default.schedule.stop, default.schedule.n_levels) == (2.0, n_levels)


def test_verbose_prints_levels(slanted_blobs, capsys):
    X, _ = slanted_blobs
    model = quiet_fit(
        NaturalDiagonalGMM(
            4, annealing="temperature", schedule=GeometricSchedule(stop=1.0, n_levels=3),
            verbose=1, verbose_interval=7,
        ),
        X,
    )  # fmt: skip
    lines = capsys.readouterr().out.splitlines()
    levels = [line for line in lines if line.startswith("  Level ")]
    assert [line.split()[1] for line in levels] == ["1/3", "2/3", "3/3"]
    # The levels are announced, and the final EM after them.
    assert (
        lines.index(levels[0])
        == lines.index(
            f"  Annealing (temperature): 3 levels, from {model.history_['level'][0]:.4g} to 1"
        )
        + 1
    )
    final = [line for line in lines if line.startswith("  Final EM")]
    assert len(final) == 1 and lines.index(final[0]) > lines.index(levels[-1])
    assert all("distinct means" in line and "in total" in line for line in levels)
    # Every line says what it counts: per level, in total, and the last line
    # agrees with n_iter_.
    per_level = sum(int(line.split("): ")[1].split()[0]) for line in levels)
    assert int(levels[-1].split(", ")[1].split()[0]) == per_level
    outcome = "converged" if model.converged_ else "did not converge"
    assert lines[-1] == (
        f"Initialization {outcome} after {model.n_iter_} iterations in total, "
        f"lower bound {model.lower_bound_:.5f}."
    )
    iterations = [line for line in lines if line.startswith("  Iteration ")]
    assert [int(line.split()[1]) for line in iterations] == list(range(7, model.n_iter_ + 1, 7))
    # A level above temperature 1 names its objective as the level's line does,
    # and an iteration of a split-and-merge round names the round (its bound
    # is a move's trial's, on the round's rows).
    names = []
    for line in iterations:
        n_iter = int(line.split()[1])
        level = model.history_["level"][n_iter - 1]
        names.append("tempered objective" if np.isfinite(level) and level != 1 else "lower bound")
        round_ = model.history_["move"][n_iter - 1]
        counted = f"total; split-and-merge round {round_}, its " if round_ else "total)"
        assert f"({counted}" in line and f": {names[-1]} -" in line
    quiet_fit(model.set_params(verbose_interval=1), X)
    first = next(line for line in capsys.readouterr().out.splitlines() if "Iteration 1 " in line)
    assert model.history_["level"][0] > 1 and "(total): tempered objective" in first


def test_next_level_doubles_the_step_after_a_level_that_settled_at_once():
    least = _anneal.MIN_LEVEL_ITER
    assert _anneal.next_level("temperature", 3, 1, least, True, True) == (5, 2)
    assert _anneal.next_level("temperature", 5, 2, least, True, True) == (9, 4)
    # More iterations, a level stopped by anneal_max_iter, or means not all
    # split yet (a split may be near): the next level.
    assert _anneal.next_level("temperature", 9, 4, least + 1, True, True) == (10, 1)
    assert _anneal.next_level("temperature", 9, 4, least, False, True) == (10, 1)
    assert _anneal.next_level("temperature", 9, 4, least, True, False) == (10, 1)
    # Modes not in SKIPPING run every level.
    for annealing in ("floor", "fixed"):
        assert _anneal.next_level(annealing, 3, 1, least, True, True) == (4, 1)


def _level_runs(history):
    """Level, iterations and distinct means at its end of each annealing level run."""
    level = history["level"]
    starts = np.flatnonzero(np.isfinite(level) & (np.r_[np.nan, level[:-1]] != level))
    ends = np.r_[starts[1:], np.flatnonzero(np.isfinite(level))[-1] + 1]
    return level[starts], ends - starts, history["n_distinct"][ends - 1]


def test_levels_that_settle_at_once_skip_the_next(slanted_blobs, monkeypatch, capsys):
    X = slanted_blobs[0]
    kwargs = dict(annealing="temperature", random_state=0, verbose=1, verbose_interval=1000)
    skipping = quiet_fit(NaturalDiagonalGMM(4, **kwargs), X)
    skip_lines = [line for line in capsys.readouterr().out.splitlines() if "  Level " in line]
    monkeypatch.setattr(_anneal, "SKIPPING", ())
    every = quiet_fit(NaturalDiagonalGMM(4, **kwargs), X)
    every_lines = [line for line in capsys.readouterr().out.splitlines() if "  Level " in line]
    default = GeometricSchedule(**DEFAULT_SCHEDULES["temperature"])
    schedule = list(default.values(skipping.critical_value_))
    levels, n_iter, n_distinct = _level_runs(skipping.history_)
    assert_allclose(_level_runs(every.history_)[0], schedule)
    assert len(every_lines) == len(schedule) == 24
    assert not any("skipped" in line for line in every_lines)
    # Every level runs until the means have split (levels above the critical
    # value settle at once, at the pooled solution); then each step along the
    # schedule doubles after a level that settled in the fewest iterations
    # and is one after any other.
    index = [schedule.index(level) for level in levels]
    assert n_distinct[0] == 1 and index[: np.argmax(n_distinct == 4) + 1] == list(
        range(np.argmax(n_distinct == 4) + 1)
    )
    step = 1
    for i in range(len(levels) - 1):
        quick = n_iter[i] <= _anneal.MIN_LEVEL_ITER and n_distinct[i] == 4
        step = 2 * step if quick else 1
        assert index[i + 1] - index[i] == step
    assert np.diff(index).max() >= 4 and len(levels) < 20
    # verbose=1 names each level run by its place in the schedule and says
    # how many were skipped.
    assert [int(line.split()[1].split("/")[0]) - 1 for line in skip_lines] == index
    for line, i, j in zip(skip_lines, index, index[1:] + [len(schedule)], strict=True):
        assert line.endswith(f"{j - i - 1} level{'s' if j - i > 2 else ''} skipped") == (j > i + 1)
    # Both end at the four clusters, split in the same order.
    assert_array_equal(skipping.split_levels_[:, 1], every.split_levels_[:, 1])
    assert skipping.history_["n_distinct"][-1] == every.history_["n_distinct"][-1] == 4
    # anneal_tol=0 runs every level in full.
    monkeypatch.undo()
    full = quiet_fit(
        NaturalDiagonalGMM(4, annealing="temperature", anneal_tol=0, anneal_max_iter=2), X
    )
    assert_allclose(_level_runs(full.history_)[0], schedule)


def test_annealing_on_a_subsample(slanted_blobs, capsys):
    """The annealed fit runs on ``anneal_subsample`` rows, then EM on all of them."""
    X, y = slanted_blobs
    kwargs = dict(n_components=4, annealing="temperature", random_state=0)
    full = quiet_fit(NaturalDiagonalGMM(**kwargs), X)
    assert np.all(full.history_["rows"] == X.shape[0])
    # Not fewer rows than the data: no sample is drawn, the same fit.
    same = quiet_fit(NaturalDiagonalGMM(**kwargs, anneal_subsample=X.shape[0]), X)
    assert_array_equal(same.means_, full.means_)
    assert_array_equal(same.lower_bounds_, full.lower_bounds_)

    sub = quiet_fit(NaturalDiagonalGMM(**kwargs, anneal_subsample=200, verbose=1), X)
    h = sub.history_
    on_sample = h["rows"] == 200
    n = int(on_sample.sum())
    # The sample's fit first (every level, its final EM and its moves), then
    # plain EM on all rows, without levels.
    assert 0 < n < sub.n_iter_ and np.all(on_sample[:n]) and np.all(h["rows"][n:] == X.shape[0])
    assert np.all(on_sample[np.isfinite(h["level"])]) and np.isfinite(h["level"][:n]).sum() > 0
    assert np.all(np.isnan(h["level"][n:])) and np.all(h["move"][n:] == 0)
    assert sub.converged_ and adjusted_rand_score(y, sub.predict(X)) > 0.95
    # Both end at the same maximum of the likelihood of all rows (EM's tol).
    assert_allclose(np.sort(sub.means_, axis=0), np.sort(full.means_, axis=0), atol=0.05)
    assert abs(sub.score(X) - full.score(X)) < 1e-3
    assert f"Annealed on a sample of 200 of {X.shape[0]} rows ({n} iterations)" in (
        capsys.readouterr().out
    )


def test_anneal_subsample_edge_cases(slanted_blobs):
    X, _ = slanted_blobs
    with pytest.raises(ValueError, match="anneal_subsample=3 must be at least n_components=4"):
        NaturalDiagonalGMM(4, annealing="floor", anneal_subsample=3).fit(X)
    # A sample with no weight (5 weighted rows of 600): the annealing runs on all rows.
    weights = np.zeros(X.shape[0])
    weights[:5] = 1.0
    model = NaturalDiagonalGMM(2, annealing="floor", anneal_subsample=10, random_state=0)
    quiet_fit(model, X, sample_weight=weights)
    assert np.all(model.history_["rows"] == X.shape[0]) and np.all(np.isfinite(model.means_))
    # Without annealing the parameter changes nothing.
    plain = quiet_fit(NaturalDiagonalGMM(4, random_state=0), X)
    ignored = quiet_fit(NaturalDiagonalGMM(4, random_state=0, anneal_subsample=100), X)
    assert_array_equal(plain.means_, ignored.means_)


@pytest.mark.parametrize("annealing", ["temperature", "floor"])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_levels_and_trials_compute_in_float32_and_the_rest_in_the_data_precision(
    annealing, dtype, slanted_blobs, monkeypatch
):
    """Levels and the moves' short trials in float32; the final EM and the kept
    move's EM in the data's precision, but for their steps in float32 before
    they near convergence (test_mixed_precision.py, left out here); with
    ``mixed_precision=False`` every step in the data's precision."""
    X = slanted_blobs[0].astype(dtype)
    calls = []
    em_stats = _kernels.em_stats

    def spy(X, *args):
        calls.append(X.dtype == np.float32 or args[-1])
        return em_stats(X, *args)

    monkeypatch.setattr(_kernels, "em_stats", spy)
    monkeypatch.setattr(_solver, "_mixed", lambda *args: False)
    kwargs = dict(annealing=annealing, split_merge=2, random_state=0)
    plain = NaturalDiagonalGMM(4, mixed_precision=False, **kwargs).fit(X)
    assert np.array(calls).all() == (dtype == np.float32)
    assert_array_equal(plain.history_["float32"], dtype == np.float32)
    calls.clear()
    model = NaturalDiagonalGMM(4, **kwargs).fit(X)
    calls = np.array(calls)
    assert_array_equal(model.history_["float32"], calls)
    levels = np.isfinite(model.history_["level"])
    rounds = model.history_["move"]
    assert levels.any() and rounds.max() >= 1
    if dtype == np.float32:
        assert calls.all()
        return
    # Each round: its moves' short trial iterations, then the best one's EM.
    expected = levels.copy()
    for round_ in range(1, int(rounds.max()) + 1):
        steps = np.flatnonzero(rounds == round_)
        n_trials = int(calls[steps].sum())
        possible = range(1, _split_merge.N_CANDIDATES + 1)
        assert n_trials in [short_trial_iterations(n) for n in possible]
        assert n_trials < steps.size
        expected[steps[:n_trials]] = True
    assert_array_equal(calls, expected)


@pytest.mark.parametrize("annealing", ["temperature", "floor"])
def test_float32_levels_end_where_float64_levels_end(annealing, slanted_blobs, monkeypatch):
    """The final EM, in float64 to convergence, settles what the levels rounded.

    The levels' float32 E-steps leave their parameters a few 1e-7 from the
    float64 levels'; from starts that close EM converges to the same maximum,
    and ``tol=1e-12`` stops both within 1e-6 of it, relative (measured:
    below 1e-9). The lower bounds agree to the stopping rule's 1e-12.
    """
    X = slanted_blobs[0]
    kwargs = dict(annealing=annealing, tol=1e-12, max_iter=2000, random_state=0)
    fits = {}
    for float32 in (False, True):
        monkeypatch.setattr(_anneal, "FLOAT32_LEVELS", float32)
        fits[float32] = NaturalDiagonalGMM(4, **kwargs).fit(X)
    assert fits[True].converged_ and fits[False].converged_
    # The same components, perhaps in another order (which one the levels
    # split first can differ by a rounding): compared by their means.
    order = {f: np.lexsort(fits[f].means_.T[::-1]) for f in fits}
    for name in ("weights_", "means_", "covariances_"):
        ours, theirs = (getattr(fits[f], name)[order[f]] for f in (True, False))
        assert_allclose(ours, theirs, rtol=1e-6)
    assert fits[True].lower_bound_ == pytest.approx(fits[False].lower_bound_, rel=1e-12, abs=1e-12)
    assert adjusted_rand_score(fits[True].predict(X), fits[False].predict(X)) == 1.0


def test_reseeded_places_each_empty_component_on_the_heaviest_active_ones():
    weights = np.array([0.3, 1e-18, 0.5, 0.2 - 2e-18, 1e-18])
    means = np.arange(10.0).reshape(5, 2)
    variances = means + 1.0
    empty = np.array([False, True, False, False, True])
    after = _anneal.reseeded(Params(weights, means, variances), empty)
    # The heaviest (2) takes the first empty one (1), the next (0) the second (4).
    assert_allclose(after.weights, [0.15, 0.25, 0.25, 0.2, 0.15], rtol=1e-15)
    assert_array_equal(after.means[[1, 4]], means[[2, 0]])
    assert_array_equal(after.variances[[1, 4]], variances[[2, 0]])
    assert_array_equal(after.means[[0, 2, 3]], means[[0, 2, 3]])
    # More empty components than active ones: from the heaviest again.
    after = _anneal.reseeded(Params(np.array([1.0, 0.0, 0.0]), means[:3], variances[:3]),
                             np.array([False, True, True]))  # fmt: skip
    assert_allclose(after.weights, [0.25, 0.5, 0.25])
    assert_array_equal(after.means, means[[0, 0, 0]])
    unchanged = Params(weights, means, variances)
    assert _anneal.reseeded(unchanged, np.zeros(5, dtype=bool)) is unchanged


def test_levels_re_seed_the_components_they_leave_empty(monkeypatch):
    """Raw digit pixels (integers 0-16), with the levels' noise at the data's spread.

    So the levels perturbed every mean until 2026-12-07 (``NOISE_SPREAD``
    infinite): 8 of 20 components ended empty and the train log-likelihood
    at -13.85 without re-seeding (scikit-learn's best of five: -1.81); with
    it none and 3.85.
    """
    from sklearn.datasets import load_digits

    X = load_digits().data
    monkeypatch.setattr(_anneal, "NOISE_SPREAD", np.inf)
    fits = {}
    for reseed in (False, True):
        monkeypatch.setattr(_anneal, "RESEED_EMPTY", reseed)
        model = NaturalDiagonalGMM(20, annealing="temperature", random_state=0)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            model.fit(X)
        empty_warned = any("ended empty" in str(w.message) for w in caught)
        fits[reseed] = (model.empty_components_.sum(), model.score(X), empty_warned)
    assert fits[False][0] > 0 and fits[False][2]  # the warning names them
    assert fits[True][0] == 0 and not fits[True][2]
    assert fits[True][1] > fits[False][1] + 5.0


def test_collapsed_components_hold_less_than_two_rows():
    weights = np.array([0.5, 0.49, 0.0099, 0.0001])  # rows: 50, 49, 0.99, 0.01
    assert_array_equal(_anneal.collapsed(weights, 100), [False, False, True, True])
    assert_array_equal(_anneal.collapsed(weights, 400), [False, False, False, True])
    # Fewer than four rows per component: small components are all there can be.
    assert not _anneal.collapsed(weights, 15).any()


def test_levels_re_seed_collapsed_components(monkeypatch):
    """40 blobs of 20 rows in 40 dimensions, K=40: few rows per component in many.

    A level left components on one or two rows, which (their variances at
    the floor) kept them off the clusters to the end: seed 0 ended at
    -62.21 nats a sample with a component on one row; re-seeded at each
    level as the empty ones are, every seed of 0-5 reached -58.04 (each
    blob one component, scikit-learn's best of five).
    """
    X, y = make_blobs(800, 40, centers=40, center_box=(-10, 10), random_state=0)
    fits = {}
    for rows in (0.0, _anneal.COLLAPSED_ROWS):
        monkeypatch.setattr(_anneal, "COLLAPSED_ROWS", rows)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            model = NaturalDiagonalGMM(40, annealing="temperature", random_state=0).fit(X)
        fits[rows] = model
    before, after = fits[0.0], fits[_anneal.COLLAPSED_ROWS]
    assert (before.weights_ * len(X) < 2).any()
    assert (after.weights_ * len(X) >= 19).all()
    assert adjusted_rand_score(y, after.predict(X)) == 1.0
    assert after.score(X) > before.score(X) + 1.0


def test_a_few_outliers_do_not_scatter_the_levels_means(monkeypatch):
    """Five rows of spread 1e6 among blobs of spread 1: the data's spread is the outliers'.

    Noise of a thousandth of it put each mean about 30 blob widths off at
    every level (14 to 17 of 20 components empty); capped at
    ``NOISE_SPREAD`` times each component's own variance, none, and the
    fit ends within a nat per row of the unannealed one (-17.4 to -17.5
    against -16.8). What the scattered fit's final EM recovers depends on
    rounding (-25.5 on current numpy, -17.7 on numpy 1.24 since the levels
    of mostly wide components run in float64): its empty components are
    the measure, not its log-likelihood.
    """
    rng = np.random.default_rng(0)
    centers = rng.normal(0, 5, (5, 10))
    labels = rng.integers(0, 5, 1200)
    X = centers[labels] + rng.normal(size=(1200, 10)) * rng.uniform(0.5, 2, (5, 10))[labels]
    X[rng.choice(1200, 5, replace=False)] = rng.normal(0, 1e6, (5, 10))
    # The cap alone: re-seeding collapsed components (COLLAPSED_ROWS) rescues some
    # scattered levels too, depending on their rounding.
    monkeypatch.setattr(_anneal, "COLLAPSED_ROWS", 0.0)
    fits = {}
    for cap in (np.inf, _anneal.NOISE_SPREAD):
        monkeypatch.setattr(_anneal, "NOISE_SPREAD", cap)
        model = quiet_fit(NaturalDiagonalGMM(20, annealing="temperature", random_state=0), X)
        fits[cap] = (model.empty_components_.sum(), model.score(X))
    assert fits[np.inf][0] > 10 and fits[_anneal.NOISE_SPREAD][0] == 0
    unannealed = quiet_fit(NaturalDiagonalGMM(20, random_state=0), X).score(X)
    assert fits[_anneal.NOISE_SPREAD][1] > unannealed - 1.0


def _geometric_iterates(target, direction, factor):
    """Three iterates ``target + factor**n * direction`` (n = 0, 1, 2) in SQUAREM's coordinates."""
    weights, means, log_var = target
    dw, dm, dv = direction
    return [
        Params(
            np.exp(np.log(weights) + factor**n * dw),
            means + factor**n * dm,
            np.exp(log_var + factor**n * dv),
        )
        for n in range(3)
    ]


def _free_regularisation(n_features, **changes):
    zero = np.zeros(n_features)
    reg = Regularisation(reg_covar=zero, floor=zero, prior_a1=0.0, prior_b=zero, min_weight=0.0)
    return reg._replace(**changes)


@pytest.mark.parametrize("factor", [0.3, 0.7, 0.85])
def test_squarem_step_lands_on_the_fixed_point_of_linear_convergence(factor):
    """EM converging by one factor a per step: the step 1 / (1 - a) lands on the limit."""
    rng = np.random.default_rng(0)
    target = (np.array([0.2, 0.3, 0.5]), rng.normal(size=(3, 2)), rng.normal(size=(3, 2)))
    direction = (rng.normal(size=3), rng.normal(size=(3, 2)), rng.normal(size=(3, 2)))
    p0, p1, p2 = _geometric_iterates(target, direction, factor)
    jump = _anneal.extrapolated(p0, p1, p2, _free_regularisation(2))
    assert 1.0 / (1.0 - factor) <= _anneal.MAX_STEP
    assert_allclose(jump.weights, target[0], rtol=1e-12)
    assert_allclose(jump.means, target[1], rtol=1e-12, atol=1e-12)
    assert_allclose(np.log(jump.variances), target[2], rtol=1e-12, atol=1e-12)


def test_squarem_step_is_capped_and_plain_em_where_it_would_not_go_further():
    rng = np.random.default_rng(1)
    target = (np.array([0.5, 0.5]), rng.normal(size=(2, 3)), np.zeros((2, 3)))
    direction = (rng.normal(size=2), rng.normal(size=(2, 3)), rng.normal(size=(2, 3)))
    reg = _free_regularisation(3)
    # a = 0.95 asks for a step of 20: capped, x0 + 2 s r + s**2 v with s = MAX_STEP.
    p0, p1, p2 = _geometric_iterates(target, direction, 0.95)
    jump = _anneal.extrapolated(p0, p1, p2, reg)
    s = _anneal.MAX_STEP
    r, v = p1.means - p0.means, p2.means - 2 * p1.means + p0.means
    assert_allclose(jump.means, p0.means + 2 * s * r + s**2 * v, rtol=1e-12)
    # Steps that grow (|v| >= |r|, a <= 0) or stand still: nothing beyond plain EM.
    for factor in (-0.5, 0.0):
        assert _anneal.extrapolated(*_geometric_iterates(target, direction, factor), reg) is None
    assert _anneal.extrapolated(p0, p0, p0, reg) is None


def test_squarem_step_obeys_the_level_regularisation():
    rng = np.random.default_rng(2)
    target = (np.array([0.1, 0.9]), rng.normal(size=(2, 2)), np.log(np.full((2, 2), 0.5)))
    direction = (np.array([3.0, 0.0]), rng.normal(size=(2, 2)), np.full((2, 2), -2.0))
    p0, p1, p2 = _geometric_iterates(target, direction, 0.8)
    floor = np.array([0.6, 0.1])
    jump = _anneal.extrapolated(p0, p1, p2, _free_regularisation(2, floor=floor, min_weight=0.2))
    assert np.all(jump.variances >= floor) and np.all(jump.variances[:, 1] < 0.6)
    assert jump.weights.sum() == pytest.approx(1.0) and jump.weights.min() >= 0.2 - 1e-15
    # Nor below reg_covar, which every M-step adds (an empty component keeps
    # the step's variances through the final EM).
    reg_covar = np.array([0.3, 0.6])  # the step lands on 0.5 in every feature
    jump = _anneal.extrapolated(p0, p1, p2, _free_regularisation(2, reg_covar=reg_covar))
    assert_allclose(jump.variances, [[0.5, 0.6], [0.5, 0.6]], rtol=1e-12)
    # Fixed variances stay p2's and take no part in the step's length.
    fixed = _free_regularisation(2, fixed_var=np.array([0.7, 0.7]))
    held = [p._replace(variances=np.full((2, 2), 0.7)) for p in (p0, p1, p2)]
    held[0] = held[0]._replace(variances=np.full((2, 2), 9.0))  # the level before's
    jump = _anneal.extrapolated(*held, fixed)
    assert_array_equal(jump.variances, held[2].variances)
    assert_allclose(jump.means, target[1], rtol=1e-12, atol=1e-12)
    # A zero weight stays zero.
    zero = [p._replace(weights=np.array([0.0, 1.0])) for p in (p0, p1, p2)]
    assert_array_equal(_anneal.extrapolated(*zero, _free_regularisation(2)).weights, [0.0, 1.0])


def test_accelerated_level_reaches_the_plain_level_fixed_point_in_fewer_iterations(
    slanted_blobs, monkeypatch
):
    """One temperature level run to its fixed point, with and without SQUAREM steps.

    Both stop once no mean moves by 1e-9 of its standard deviation in a step;
    EM's linear convergence then puts them within about 1e-9 / (1 - a) of the
    fixed point, far below the 1e-6 compared.
    """
    X = slanted_blobs[0]
    kwargs = dict(
        annealing="temperature",
        schedule=ExplicitSchedule([1.5]),
        anneal_max_iter=5000,
        anneal_tol=1e-9,
        max_iter=0,
        split_merge=0,
        random_state=0,
    )
    monkeypatch.setattr(_anneal, "FLOAT32_LEVELS", False)  # steps of 1e-9: float64
    fits = {}
    for accelerate in (False, True):
        monkeypatch.setattr(_anneal, "ACCELERATED", ("temperature",) if accelerate else ())
        fits[accelerate] = quiet_fit(NaturalDiagonalGMM(4, **kwargs), X)
    plain, fast = fits[False], fits[True]
    assert fast.n_iter_ < 0.7 * plain.n_iter_ < 0.7 * 5000
    assert len(fast.history_["lower_bound"]) == fast.n_iter_
    for name in ("weights_", "means_", "covariances_"):
        assert_allclose(getattr(fast, name), getattr(plain, name), rtol=1e-6, atol=1e-9)


def test_a_failed_squarem_step_falls_back_to_plain_em(slanted_blobs, monkeypatch):
    """A jump whose EM step fails (NaN parameters here) is dropped: plain EM, bit for bit."""
    X = slanted_blobs[0]
    kwargs = dict(annealing="temperature", split_merge=0, random_state=0)
    monkeypatch.setattr(_anneal, "ACCELERATED", ())
    plain = NaturalDiagonalGMM(4, **kwargs).fit(X)
    monkeypatch.setattr(_anneal, "ACCELERATED", ("temperature",))
    jumps = []

    def broken(p0, p1, p2, reg):
        jumps.append(1)
        return p2._replace(means=np.full_like(p2.means, np.nan))

    monkeypatch.setattr(_anneal, "extrapolated", broken)
    fallen = NaturalDiagonalGMM(4, **kwargs).fit(X)
    assert jumps
    for name in ("weights_", "means_", "covariances_", "lower_bounds_"):
        assert_array_equal(getattr(fallen, name), getattr(plain, name))


def test_refused_squarem_steps_are_off_the_path_kept(slanted_blobs, monkeypatch, capsys):
    """Jumps that always overshoot: refused, and off ``lower_bounds_`` and the levels' reports.

    A refused jump was recorded in ``lower_bounds_`` (documented as the path
    kept) and, when it ended a level, printed as the level's objective.
    """
    X = slanted_blobs[0]
    jumps = []

    def overshooting(p0, p1, p2, reg):
        jumps.append(1)
        return p2._replace(means=p2.means + 5.0)  # five standard deviations off

    monkeypatch.setattr(_anneal, "ACCELERATED", ("temperature",))
    monkeypatch.setattr(_anneal, "extrapolated", overshooting)
    model = NaturalDiagonalGMM(
        4, annealing="temperature", split_merge=0, random_state=0, verbose=1
    ).fit(X)
    out = capsys.readouterr().out
    assert jumps
    history, kept = model.history_, np.asarray(model.lower_bounds_)
    # Find the path kept in the trace: each refused jump is the entry the path skips.
    on_path, i = [], 0
    for position, bound in enumerate(history["lower_bound"]):
        if i < len(kept) and bound == kept[i]:
            on_path.append(position)
            i += 1
    assert i == len(kept) and 0 < len(history["lower_bound"]) - len(kept) <= len(jumps)
    refused = np.setdiff1d(np.arange(model.n_iter_), on_path)
    # Each refused jump's objective is below the one before it (which it was tested against).
    assert np.all(history["lower_bound"][refused] < history["lower_bound"][refused - 1])
    # On the path kept, a level's objective never falls (float32 levels: 1e-6 of rounding).
    levels = history["level"][on_path]
    same_level = (levels[1:] == levels[:-1]) & np.isfinite(levels[1:])
    assert np.all(np.diff(kept)[same_level] > -1e-6 * np.abs(kept[1:][same_level]))
    # The objectives the levels report are on the path kept, and so are their
    # counts of active components (a refused jump's were printed).
    reported = [float(v) for v in re.findall(r"tempered objective (\S+),", out)]
    assert reported
    assert all(np.isclose(kept, v, rtol=0, atol=1e-5).any() for v in reported)
    active = {int(v) for v in re.findall(r"(\d+) active components", out)}
    assert active <= set(history["n_active"][on_path].tolist())


@pytest.mark.parametrize("solver", ["gradient", "minibatch"])
def test_only_em_levels_are_accelerated(solver, slanted_blobs, monkeypatch):
    X = slanted_blobs[0]
    kwargs = dict(annealing="temperature", solver=solver, max_iter=20, random_state=0)
    fits = []
    for accelerate in (False, True):
        monkeypatch.setattr(_anneal, "ACCELERATED", ("temperature",) if accelerate else ())
        fits.append(quiet_fit(NaturalDiagonalGMM(4, **kwargs), X))
    assert_array_equal(fits[0].means_, fits[1].means_)


def test_temperature_levels_record_the_tempered_objective(slanted_blobs, monkeypatch):
    """At a level of temperature T, history_ holds T * mean(log sum_k (w_k N_k) ** (1 / T)).

    A fit stopped one EM step later records that objective at the first
    fit's parameters (plain EM steps and float64 levels, so that both take
    the same path); it lies above the log-likelihood there.
    """
    from scipy.special import logsumexp

    monkeypatch.setattr(_anneal, "ACCELERATED", ())
    monkeypatch.setattr(_anneal, "FLOAT32_LEVELS", False)
    X = slanted_blobs[0]
    kwargs = dict(
        annealing="temperature", schedule=ExplicitSchedule([2.0]), anneal_tol=0.0,
        max_iter=0, split_merge=0, random_state=0,
    )  # fmt: skip
    first = quiet_fit(NaturalDiagonalGMM(4, anneal_max_iter=6, **kwargs), X)
    later = quiet_fit(NaturalDiagonalGMM(4, anneal_max_iter=7, **kwargs), X)
    assert_array_equal(later.history_["lower_bound"][:6], first.history_["lower_bound"])
    wlp = naive.weighted_log_prob(X, first.weights_, first.means_, first.covariances_)
    tempered = np.mean(2.0 * logsumexp(wlp / 2.0, axis=1))
    assert later.history_["lower_bound"][-1] == pytest.approx(tempered, rel=1e-12)
    assert tempered > first.score(X) + 1e-3


def test_a_squarem_step_that_lowers_the_objective_is_refused(slanted_blobs, monkeypatch):
    """A jump whose E-step finds the level's objective lower is dropped: plain EM's path.

    With levels that end by their rule (not by ``anneal_max_iter``) the
    parameters are plain EM's bit for bit; the refused E-steps stay in the
    trace, below their neighbours.
    """
    X = slanted_blobs[0]
    kwargs = dict(annealing="temperature", anneal_max_iter=1000, split_merge=0, random_state=0)
    monkeypatch.setattr(_anneal, "ACCELERATED", ())
    plain = NaturalDiagonalGMM(4, **kwargs).fit(X)
    monkeypatch.setattr(_anneal, "ACCELERATED", ("temperature",))

    def far(p0, p1, p2, reg):
        return p2._replace(means=p2.means + 100.0)

    monkeypatch.setattr(_anneal, "extrapolated", far)
    refused = NaturalDiagonalGMM(4, **kwargs).fit(X)
    for name in ("weights_", "means_", "covariances_"):
        assert_array_equal(getattr(refused, name), getattr(plain, name))
    assert refused.n_iter_ > plain.n_iter_
    levels = np.isfinite(refused.history_["level"])
    assert refused.history_["lower_bound"][levels].min() < plain.history_["lower_bound"].min() - 1


def test_a_refused_squarem_step_leaves_the_empty_components_of_the_kept_path(
    slanted_blobs, monkeypatch
):
    """A level that ends on a refused jump reports the emptiness of the parameters it returns.

    The jump sends three of the four means far away, so its EM step leaves
    them empty; it is refused, and with no final EM (``max_iter=0``) the fit
    ends with the parameters of the two EM steps before it, as plain EM with
    levels of two steps does.
    """
    X = slanted_blobs[0]
    kwargs = dict(annealing="temperature", max_iter=0, split_merge=0, random_state=0)
    monkeypatch.setattr(_anneal, "ACCELERATED", ())
    plain = quiet_fit(NaturalDiagonalGMM(4, anneal_max_iter=2, anneal_tol=0.0, **kwargs), X)
    monkeypatch.setattr(_anneal, "ACCELERATED", ("temperature",))

    def far(p0, p1, p2, reg):
        return p2._replace(means=p2.means + np.array([[0.0], [100.0], [100.0], [100.0]]))

    monkeypatch.setattr(_anneal, "extrapolated", far)
    refused = quiet_fit(NaturalDiagonalGMM(4, anneal_max_iter=3, anneal_tol=0.0, **kwargs), X)
    assert_array_equal(refused.means_, plain.means_)
    assert not plain.empty_components_.any()
    assert_array_equal(refused.empty_components_, plain.empty_components_)


def test_coincident_groups_are_those_count_distinct_counts():
    rng = np.random.default_rng(0)
    points = rng.standard_normal((6, 3))
    means = points[[0, 1, 0, 2, 1, 1, 3, 4, 5, 5]] + rng.uniform(-1e-3, 1e-3, (10, 3))
    owner = _anneal.coincident_groups(means, 1e-2)
    assert_array_equal(owner, [0, 1, 0, 3, 1, 1, 6, 7, 8, 8])
    assert np.unique(owner).size == _kernels.count_distinct(means, 1e-2) == 6


def test_spare_move_gives_the_most_stable_groups_member_to_the_most_unstable_lone_one():
    groups = [np.array([4, 7, 9]), np.array([2, 5])]
    lone = [0, 3, 8]
    # The lone component with the highest critical value takes a member of
    # the group with the lowest: its first two members merge.
    assert _anneal.spare_move(groups, [1.6, 1.2], lone, [2.0, 5.0, 3.0], 2.5) == (2, 5, 3)
    # Only above the margin times both the level and that group's value.
    margin = _anneal.REALLOCATION_MARGIN
    assert _anneal.spare_move(groups, [1.6, 1.2], lone, [2.0, 2.5 * margin, 1.0], 2.5) is None
    assert _anneal.spare_move(groups, [3.0, 3.0], lone, [2.0, 3.2, 1.0], 1.5) is None
    assert _anneal.spare_move([], [], lone, [2.0, 5.0, 3.0], 2.5) is None
    assert _anneal.spare_move(groups, [1.6, 1.2], [], [], 2.5) is None
    # A value that could not be measured (an overflowed scatter) stops it.
    assert _anneal.spare_move(groups, [1.6, np.nan], lone, [2.0, 5.0, 3.0], 2.5) is None
    assert _anneal.spare_move(groups, [1.6, 1.2], lone, [2.0, np.nan, 5.0], 2.5) is None


# Cluster 0, and clusters 1 and 2 apart along a diagonal, so that a
# component spanning both has a correlation of 0.9 between any two features
# (a critical value of 1 + 2 * 0.9 = 2.8).
SPANNED = np.array([[0.0, 0.0, 0.0], [8.0, 0.0, 0.0], [14.0, 6.0, 6.0]])


@pytest.fixture(scope="module")
def spanned_level():
    """A settled temperature level: two means coincide on cluster 0, one spans 1 and 2."""
    from natgmm import _progress, _settings, _solver
    from natgmm._data import ArrayData
    from natgmm._standardise import set_up

    rng = np.random.default_rng(0)
    X = SPANNED[np.repeat(np.arange(3), 400)] + rng.standard_normal((1200, 3))
    settings = _settings.Settings.from_estimator(NaturalDiagonalGMM(3, annealing="temperature"))
    data = ArrayData(X, None, parallel=False)
    model = set_up(data, settings)
    st = model.standardiser
    means = np.array([SPANNED[0], SPANNED[0], SPANNED[1:].mean(axis=0)])
    variances = np.array([[1.0] * 3, [1.0] * 3, [10.0] * 3])
    start = Params(np.array([1, 1, 4]) / 6, (means - st.shift) * st.scale, variances * st.scale**2)
    level = 1.5
    run = _solver.Run(data, st, np.random.RandomState(0))
    progress = _progress.Progress(settings._replace(verbose=1))
    params, bound, settled = _solver.em_phase(
        settings, run, start, -np.inf, model.reg, 100, 1 / level, level, settings.anneal_tol,
        progress, by_move=True,
    )  # fmt: skip
    assert settled and run.history["n_distinct"][-1] == 2
    return dict(
        settings=settings, run=run, params=params, bound=bound, reg=model.reg, level=level,
        progress=progress, X=X,
    )  # fmt: skip


def _reallocate(level_state, refused, bound=None, measured=None):
    from natgmm import _solver

    s = level_state
    n_before = len(s["run"].history["lower_bound"])
    after = _solver._reallocated(
        s["settings"], s["run"], s["params"], s["bound"] if bound is None else bound, s["reg"],
        1 / s["level"], s["level"], s["progress"], refused, {} if measured is None else measured,
    )  # fmt: skip
    return after, len(s["run"].history["lower_bound"]) - n_before


def test_a_spare_component_goes_to_the_lone_component_that_spans_two_clusters(
    spanned_level, capsys
):
    s = spanned_level
    refused = set()
    after, n_iter = _reallocate(s, refused)
    assert after is not None and not refused
    params, bound, _ = after
    assert bound > s["bound"] and n_iter > _anneal.REALLOCATION_SCREEN
    # One mean on each cluster, in user units.
    st = s["run"].standardiser
    means = params.means / st.scale + st.shift
    assert_allclose(means[np.argsort(means[:, 0] + means[:, 1])], SPANNED, atol=0.3)
    line = capsys.readouterr().out.splitlines()[-1]
    assert line.startswith("  Spare component 1 (its mean was 0's) split 2: level objective ")
    assert line.endswith(", kept")


def test_a_move_below_the_levels_objective_after_the_screen_is_refused(spanned_level, capsys):
    s = spanned_level
    run = s["run"]
    empty = run.empty.copy()
    refused = set()
    # Against an objective the move cannot reach, its EM stops after the
    # screen's iterations and the lone component is not tried again.
    after, n_iter = _reallocate(s, refused, bound=s["bound"] + 10.0)
    assert after is None and refused == {2}
    assert n_iter == _anneal.REALLOCATION_SCREEN
    assert_array_equal(run.empty, empty)
    assert capsys.readouterr().out.splitlines()[-1].endswith(", not kept")
    assert _reallocate(s, refused) == (None, 0)


def test_a_lone_component_that_has_not_moved_is_not_measured_again(spanned_level, monkeypatch):
    s = spanned_level
    data = s["run"].data
    passes = []
    measure = data.component_moments
    monkeypatch.setattr(
        data, "component_moments", lambda *args: passes.append(args[2]) or measure(*args)
    )
    measured = {}
    bound = s["bound"] + 10.0  # refused after the screen: the parameters stay
    _reallocate(s, set(), bound, measured)
    # The lone component's pass, then the pair's.
    assert passes[0] == [2] and [g.tolist() for g in passes[1]] == [[0, 1]]
    assert set(measured) == {2} and measured[2][2] > 2.0
    passes.clear()
    _reallocate(s, set(), bound, measured)  # the lone component's value is reused
    assert len(passes) == 1 and [g.tolist() for g in passes[0]] == [[0, 1]]
    # Moved by a tenth of its standard deviation, it would be measured again.
    from natgmm import _solver

    params = s["params"]
    shifted = params._replace(means=params.means + 0.1 * np.sqrt(params.variances))
    assert _solver._unmoved(measured[2], params, 2)
    assert not _solver._unmoved(measured[2], shifted, 2)


def test_a_fit_makes_at_a_level_the_move_split_and_merge_made_after_it(monkeypatch, capsys):
    """Ten separated clusters in 8-D: the allocation is fixed while annealing."""
    rng = np.random.default_rng(3)
    centres = 3 * rng.standard_normal((10, 8))
    X = centres[np.repeat(np.arange(10), 150)] + rng.standard_normal((1500, 8))
    kwargs = dict(annealing="temperature", random_state=2, verbose=1, verbose_interval=1000)
    model = quiet_fit(NaturalDiagonalGMM(10, **kwargs), X)
    moved = [line for line in capsys.readouterr().out.splitlines() if "Spare" in line]
    monkeypatch.setattr(_anneal, "REALLOCATING", ())
    plain = quiet_fit(NaturalDiagonalGMM(10, **kwargs), X)
    assert not any("Spare" in line for line in capsys.readouterr().out.splitlines())
    # Without the rule, the first split-and-merge move merged two components
    # that shared a cluster and split a third; with it, a level made that
    # move, and the fit ends at the same maximum in fewer iterations.
    (i, j, k), kept = plain.split_merge_moves_[0, :3].astype(int), plain.split_merge_moves_[0, 5]
    assert kept == 1.0 and len(moved) == 1
    assert moved[0].startswith(f"  Spare component {j} (its mean was {i}'s) split {k}: ")
    assert moved[0].endswith(", kept")
    assert model.lower_bound_ == pytest.approx(plain.lower_bound_, abs=1e-6)
    assert model.n_iter_ < plain.n_iter_ - 20
    assert np.all(model.split_merge_moves_[:, 5] == 0.0)  # no move kept after it


def test_spare_moves_only_after_a_level_that_settled_at_once_with_means_coinciding():
    from natgmm import _settings, _solver

    def settings(**kwargs):
        return _settings.Settings.from_estimator(NaturalDiagonalGMM(4, **kwargs))

    due = _solver._spare_move_due
    least = _anneal.MIN_LEVEL_ITER
    temperature = settings(annealing="temperature")
    assert due(temperature, True, least, 3) and due(temperature, True, least, 2)
    assert not due(temperature, True, least, 4)  # every mean distinct
    assert not due(temperature, True, least, 1)  # most splits still to come
    assert not due(temperature, True, least + 1, 3)  # the level moved
    assert not due(temperature, False, least, 3)  # stopped by anneal_max_iter
    assert not due(settings(annealing="floor"), True, least, 3)
    assert not due(settings(annealing="temperature", solver="minibatch"), True, least, 3)


def test_a_level_line_reports_the_parameters_kept_not_a_refused_move(capsys):
    """After a refused spare move the trace ends with the move's iterations."""
    from natgmm import _progress, _settings

    settings = _settings.Settings.from_estimator(NaturalDiagonalGMM(4, annealing="temperature"))
    progress = _progress.Progress(settings._replace(verbose=1))
    history = {
        "lower_bound": [-2.0, -1.5, -1.6, -1.7], "level": [1.5] * 4, "n_active": [4, 4, 1, 1],
        "n_distinct": [3, 3, 4, 4],
    }  # fmt: skip
    progress.level_end(2, 24, history, 0, 3, -1.5, 3, 4)
    line = capsys.readouterr().out.strip()
    assert line == (
        "Level 3/24 (temperature 1.5): 4 iterations, 4 in total, tempered objective -1.50000, "
        "4 active components, 3 distinct means"
    )


def test_a_level_perturbs_each_mean_by_a_thousandth_of_its_features_spread():
    # The offsets scale with each feature's variance at the level (the
    # standardised features' variances differ once the regularisers count),
    # at most NOISE_SPREAD times the component's own (tempered) variance.
    from types import SimpleNamespace

    feature_var = np.array([1.0, 1e-4, 0.25])
    standardiser = SimpleNamespace(feature_var=feature_var)
    variances = np.ones((4, 3))
    variances[3] = [1e-9, 1e-9, 1.0]  # a component narrow in two features
    params = Params(np.full(4, 0.25), np.zeros((4, 3)), variances)
    reg = Regularisation(np.zeros(3), np.zeros(3), 0.0, np.zeros(3), 0.0)
    level, beta = 9.0, 1.0 / 9.0
    entered = _anneal.enter_level(params, level, reg, standardiser, np.random.RandomState(0), beta)
    noise = np.random.RandomState(0).standard_normal((4, 3))
    # Written out: sqrt(9 * feature_var) for the wide components; for the
    # narrow one sqrt(1e4 * 1e-9 * 9) where that is less (its own spread).
    spread = np.array([[3.0, 0.03, 1.5]] * 3 + [[np.sqrt(9e-5), np.sqrt(9e-5), 1.5]])
    assert_allclose(entered.means, 1e-3 * noise * spread, rtol=1e-14)


def test_minibatch_annealing_warns_before_it_runs(slanted_blobs):
    # Its fits often ended with means together, some with no warning (their
    # pairs just outside the same-Gaussian distance): the combination warns.
    X = slanted_blobs[0]
    with pytest.warns(UserWarning, match="solver='minibatch' with annealing"):
        quiet_fit(NaturalDiagonalGMM(4, annealing="floor", solver="minibatch", max_iter=2), X)
