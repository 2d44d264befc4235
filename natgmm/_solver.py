"""The loops of a fit: EM iterations, annealing levels, minibatches, streams.

Every solver gathers sufficient statistics and turns them into parameters;
they differ only in how. ``solver="em"`` makes one pass over the data per
iteration and takes the closed-form M-step, ``"gradient"`` the same pass and
Adam steps (:data:`M_STEPS`); ``"minibatch"`` makes a pass of online EM
steps over shuffled batches (:data:`ITERATIONS`). Around them,
:func:`fit_run` runs the annealing levels and the final EM, and
:func:`stream_step` takes one ``partial_fit`` step. A :class:`Run` holds
the data of one fit, its solver state and its trace; a :class:`ModelState`
is what a fitted estimator keeps to predict and to continue.
"""

import copy
import warnings
from typing import NamedTuple

import numpy as np
from sklearn.exceptions import ConvergenceWarning

from . import _anneal, _split_merge, _threading
from ._anneal import (
    MIN_LEVEL_ITER,
    PERTURBATION,
    annealing_levels,
    enter_level,
    level_settings,
    mean_move,
    next_level,
)
from ._data import top_correlation
from ._em import (
    IllDefinedCovariance,
    Params,
    combine,
    e_step,
    empty_components,
    f32_rounding_bias,
    implied_stats,
    m_step,
    scaled_stats,
)
from ._gradient import adam_state
from ._init import initial_params
from ._kernels import count_distinct
from ._progress import caller_level
from ._split_merge import TrialRows, candidate_moves, moved, partial_em, split_offset
from ._standardise import model_attributes

# A mean within this many standard deviations (in every feature) of an
# earlier one does not count in ``history_["n_distinct"]``.
_DISTINCT_TOL = 1e-2


class Online:
    """Online EM: running statistics per unit weight and the step count.

    Each step replaces the statistics by ``(1 - rho)`` times themselves plus
    ``rho`` times a batch's statistics divided by the weight a batch of its
    rows has on average (its rows times the mean weight of a row), with the
    Robbins-Monro step ``rho = (n_steps + offset) ** -decay``. Dividing by
    the batch's own weight instead would give every batch the same say
    whatever its weight: the fixed point would be the mean of the batches'
    per-weight statistics, not the weighted data's (a single-row batch's
    weight would not count at all). A step returns a new object, so that a
    fit that fails leaves the state it started from as it was.
    """

    # The last step's rho (before any step, and in states pickled before
    # 2026-12-06: NaN).
    rho = np.nan

    def __init__(self, params, reg, n_steps=0):
        self.running = implied_stats(params, 1.0, reg.reg_covar)
        self.n_steps = n_steps

    def step(self, stats, expected_weight, offset, decay):
        """Return the state with a batch's statistics in (``expected_weight``: see above)."""
        new = copy.copy(self)
        new.n_steps = self.n_steps + 1
        new.rho = rho = (new.n_steps + offset) ** -decay
        new.running = combine(self.running, stats, 1.0 - rho, rho / expected_weight)
        return new

    def totals(self, total_weight):
        """Return the running statistics scaled to ``total_weight`` samples."""
        return scaled_stats(self.running, total_weight)


class ModelState(NamedTuple):
    """What a fitted estimator keeps besides its public attributes.

    The map to internal units and the parameters in them (for predictions),
    the solver's state and the random numbers (for warm starts and
    ``partial_fit``), and the annealing levels a stream has yet to run.
    """

    standardiser: object
    params: Params
    online: Online | None
    adam: object  # AdamState or None
    random_state: np.random.RandomState
    levels: np.ndarray


class Run:
    """The data of one fit, its solver's state and its trace."""

    def __init__(self, data, standardiser, random_state, online=None, adam=None):
        self.data, self.standardiser, self.random_state = data, standardiser, random_state
        self.total_weight = data.total_weight
        self.online, self.adam = online, adam
        self.empty = None
        self.history = {
            "lower_bound": [], "level": [], "n_active": [], "n_distinct": [], "move": [],
            "rows": [], "float32": [],
        }  # fmt: skip
        self.moves = []  # split-and-merge moves tried: (i, j, k, bound before, after, kept)
        self.move_round = 0  # the split-and-merge round running, 0 before them
        # Spans of the trace off the path of the parameters kept: the moves'
        # trials, a move not kept, and a refused extrapolation step.
        self.off_path = []

    def on_rows(self, data):
        """Return a run over ``data`` (a sample of these rows) that records into this trace."""
        sampled = copy.copy(self)  # shares history and moves
        sampled.data, sampled.total_weight = data, data.total_weight
        return sampled

    def kept(self):
        """Return whether each iteration of the trace is on the path of the parameters kept."""
        keep = np.ones(len(self.history["lower_bound"]), dtype=bool)
        for start, stop in self.off_path:
            keep[start:stop] = False
        return keep

    def kept_lower_bounds(self):
        """Return the lower bounds of the trace on the path of the parameters kept."""
        bounds = self.history["lower_bound"]
        return [bound for bound, kept in zip(bounds, self.kept(), strict=True) if kept]

    def mean_bound(self, loglik):
        """Return the lower bound (mean log-likelihood, user units) of a pass's ``loglik``."""
        return loglik / self.total_weight + self.standardiser.log_jacobian

    def take_state(self, sampled):
        """Continue from the solver state that ``sampled`` (from :meth:`on_rows`) ended with."""
        self.online, self.adam, self.empty = sampled.online, sampled.adam, sampled.empty

    def record(self, lower_bound, level, n_active, relative_means, float32):
        """Append one iteration to the trace (``float32``: its E-step's precision)."""
        n_distinct = count_distinct(relative_means, _DISTINCT_TOL)
        values = (
            lower_bound, level, n_active, n_distinct, self.move_round, self.data.shape[0],
            float32 or self.data.dtype == np.float32,
        )  # fmt: skip
        for key, value in zip(self.history, values, strict=True):
            self.history[key].append(value)


def start_run(settings, data, standardiser, random_state, params, reg, previous=None):
    """Start a run from ``params``, with the solver's state seeded there.

    A warm start passes the ``previous`` :class:`ModelState`, whose solver
    state the run resumes where it has one (a copy: the Adam steps work in
    place), in ``standardiser``'s internal units (:func:`_in_units`).
    """
    online = adam = None
    if previous is not None:
        previous = _in_units(previous, standardiser, params, reg)
    if settings.solver == "minibatch":
        online = (previous and previous.online) or Online(params, reg)
    elif settings.solver == "gradient":
        adam = _copy_adam(previous and previous.adam) or adam_state(params, reg.reg_covar)
    return Run(data, standardiser, random_state, online, adam)


def _in_units(state, standardiser, params, reg):
    """``state``'s solver state in the internal units of ``standardiser``.

    A warm refit maps its own data to internal units, and ``params`` are
    the fitted ones in those. Online EM's running statistics move exactly
    (``z`` becomes ``a z + b`` in each feature); Adam's variables restart at
    ``params`` with zero moments, as the moments of the old variables have
    no exact image (the natural parameters of a feature mix under the map).
    With the same map, the state is returned as it is.
    """
    old = state.standardiser
    if np.array_equal(old.shift, standardiser.shift) and np.array_equal(
        old.scale, standardiser.scale
    ):
        return state
    a = standardiser.scale / old.scale
    b = (old.shift - standardiser.shift) * standardiser.scale
    online = state.online
    if online is not None:
        online, running = copy.copy(online), online.running
        online.running = running._replace(
            s1=running.s1 * a, s2=running.s2 * a**2, ref=running.ref * a + b
        )
    adam = None if state.adam is None else adam_state(params, reg.reg_covar)
    return state._replace(online=online, adam=adam)


def _copy_adam(adam):
    """Return a copy of an :class:`~natgmm._gradient.AdamState` (None stays None)."""
    return None if adam is None else type(adam)(*(a.copy() for a in adam))


def _closed_form(settings, stats, reg, params, adam, total_weight):
    return m_step(stats, reg, previous=params)


def _adam_steps(settings, stats, reg, params, adam, total_weight):
    return settings.gradient(stats, reg, adam, total_weight), empty_components(stats.nk)


# The M-step of each solver: parameters and empty components from statistics.
M_STEPS = {"em": _closed_form, "minibatch": _closed_form, "gradient": _adam_steps}


def online_update(settings, run, stats, expected_weight, reg, params, total_weight):
    """One online EM step: blend ``stats`` in, then M-step on the blend (see :class:`Online`)."""
    run.online = run.online.step(
        stats, expected_weight, settings.learning_offset, settings.learning_decay
    )
    totals = run.online.totals(total_weight)
    params, run.empty = M_STEPS[settings.solver](
        settings, totals, reg, params, run.adam, total_weight
    )
    return params


def _batch_step(settings, run, params, reg, beta, float32):
    """One pass over all the data and one M-step: the log-likelihood, statistics, parameters."""
    loglik, stats = e_step(run.data, run.standardiser, params, beta, float32)
    after, run.empty = M_STEPS[settings.solver](
        settings, stats, reg, params, run.adam, run.total_weight
    )
    return loglik, stats, after


def _batch_iteration(settings, run, params, reg, beta, float32=False):
    """One pass over all the data and one M-step (``float32``: see :func:`e_step`)."""
    loglik, stats, params = _batch_step(settings, run, params, reg, beta, float32)
    return loglik, stats.nk, params


def _float32_try(settings, run, params, reg, beta):
    """Take a batch EM step in float32 whose log-likelihood stands in for float64's.

    The log-likelihood is less its operands' rounding bias
    (:func:`~natgmm._em.f32_rounding_bias`; none for data with missing
    entries), so that what is left is within :func:`_f32_rounding` of
    float64's.
    """
    loglik, stats, after = _batch_step(settings, run, params, reg, beta, True)
    return loglik - f32_rounding_bias(run.data, params, stats), stats.nk, after


def _minibatch_iteration(settings, run, params, reg, beta, float32=False):
    """One pass of online EM over shuffled batches of ``batch_size`` rows.

    Returns the summed log-likelihood of the batches (each under the
    parameters at its step), the running weights and the parameters.
    """
    # Over the rows of positive weight: a row of weight zero takes no place
    # in a batch (it would change the batches).
    sw = run.data.sw
    rows = np.flatnonzero(sw > 0) if sw.shape[0] and not np.all(sw > 0) else None
    n_samples = run.data.shape[0] if rows is None else rows.shape[0]
    order = run.random_state.permutation(n_samples)
    if rows is not None:
        order = rows[order]
    row_weight = run.total_weight / n_samples  # a row's mean weight
    loglik = 0.0
    for start in range(0, n_samples, settings.batch_size):
        # Sorted rows: memory order.
        batch = run.data.subset(np.sort(order[start : start + settings.batch_size]))
        if not batch.total_weight > 0:
            continue
        batch_loglik, stats = e_step(batch, run.standardiser, params, beta, float32)
        loglik += batch_loglik
        params = online_update(
            settings, run, stats, batch.shape[0] * row_weight, reg, params, run.total_weight
        )
    return loglik, run.online.totals(run.total_weight).nk, params


# One iteration of each solver: summed log-likelihood, weights, parameters.
ITERATIONS = {
    "em": _batch_iteration,
    "gradient": _batch_iteration,
    "minibatch": _minibatch_iteration,
}


def em_phase(
    settings, run, params, lower_bound, reg, max_iter, beta, level, tol, progress, by_move=False,
    float32=False,
):  # fmt: skip
    """Iterate from ``params`` until the gain falls below ``tol`` or ``max_iter``.

    With ``by_move`` (an annealing level) the rule is on the parameters
    (:class:`_Settled`), and with ``solver="em"`` the steps of the modes in
    ``_anneal.ACCELERATED`` are accelerated (:func:`_accelerated`). With
    ``float32`` the E-steps compute in float32 (see
    :func:`~natgmm._em.e_step`), and otherwise an untempered phase of batch
    EM on float64 data takes mixed steps (:func:`_mixed`): both only with
    ``mixed_precision`` and passes large enough to gain
    (:func:`_float32_pays`). Returns the parameters, the last lower
    bound and whether the rule stopped the phase; the iterations are
    recorded in ``run``.
    """
    pays = settings.mixed_precision and _float32_pays(settings, run)
    float32 = float32 and pays
    iterate = _Iterations(settings, run, reg, beta, level, progress, float32, lower_bound)
    if not by_move:
        if pays and _mixed(settings, run, float32, beta):
            iterate.mix(tol, max_iter)
        params, converged = _until(iterate, params, max_iter, lambda *_: abs(iterate.change) < tol)
    elif settings.solver == "em" and settings.annealing in _anneal.ACCELERATED:
        params, converged = _accelerated(iterate, params, reg, max_iter, _Settled(tol))
    else:
        params, converged = _until(iterate, params, max_iter, _Settled(tol))
    return params, iterate.lower_bound, converged


# Bound on a float32 E-step's mean log-likelihood's rounding against
# float64's, as a fraction of its size in internal units: for complete data
# less its operands' rounding bias (_float32_try), for data with missing
# entries as it is. doc/performance.rst, "Mixed precision", has the rounding
# measured: at most 2.2e-7 and 1.4e-6 of a gain, respectively; each bound
# is about four and a half times that.
F32_BOUND_ROUNDING = 1e-6
F32_BOUND_ROUNDING_MISSING = 6e-6


# The float32 path pays from about this many multiply-adds a pass (rows x
# features x components): below, its fixed cost (operands, weights, chunk
# set-up, about 25 us) outweighs its cheaper products, and levels, trials and
# EM's steps stay in the data's precision. Measured by
# benchmarks/study/f32_cross.py: float32 at 1.2 to 1.7 times float64's time
# per pass below 150 000, 0.9 to 1.0 about 500 000, 0.64 to 0.92 at 2 to 2.4
# million; default fits below it were 3 to 19 % slower in float32.
F32_MIN_WORK = 2_000_000


def rows_for_every_path(n_samples, n_features, n_components):
    """Return the fewest rows whose fit takes the compiled paths of a fit of ``n_samples``.

    numba compiles a kernel per argument type, not size, but a fit takes its
    float32 steps (``mixed_precision``) and shares its passes out between
    threads only from a size of pass on (rows x features x components): a
    warm-up fit of this many rows (at least 256), with the same features and
    components, takes the same paths as the larger fit, so that it loads or
    compiles the kernels that fit runs; where fewer rows would not cross
    those sizes, all ``n_samples``.
    """
    work = max(F32_MIN_WORK, _threading.MIN_PARALLEL_WORK)
    return min(n_samples, max(256, -(-work // (n_features * n_components))))


def _float32_pays(settings, run):
    """Whether a pass over ``run``'s rows is large enough for the float32 path to pay."""
    n_rows, n_features = run.data.shape
    return n_rows * n_features * settings.n_components >= F32_MIN_WORK


def _f32_rounding(lower_bound, run):
    """How far a float32 step's bound may be from float64's, at ``lower_bound`` (user units)."""
    share = F32_BOUND_ROUNDING_MISSING if run.data.missing else F32_BOUND_ROUNDING
    return share * (abs(lower_bound - run.standardiser.log_jacobian) + 1.0)


def _mixed(settings, run, float32, beta):
    """Whether an untempered phase of batch EM on float64 data starts in float32.

    With ``mixed_precision``, such a phase takes its steps in float32 until
    one's gain comes within float32's rounding of ``tol``; that step is taken
    again in float64, and so are the steps after it, so that the step that
    converges, or the last one allowed, is in the data's precision
    (doc/performance.rst, "Mixed precision").
    """
    return not float32 and beta == 1.0 and settings.solver == "em" and run.data.dtype == np.float64


class _Iterations:
    """The iterations of one EM phase: each call is one, recorded in the run's trace.

    After :meth:`mix` (``mixed_precision``, :func:`_mixed`) the steps are
    taken in float32 until one's gain comes within float32's rounding of
    ``tol``, or the step is the ``max_iter``-th: that step is taken again in
    float64, and so is every step after it. Its gain is measured from the
    float32 bound before it; where that bound's rounding could decide
    convergence, from the float64 bound of the same parameters (which the
    trace then records).
    """

    def __init__(self, settings, run, reg, beta, level, progress, float32, lower_bound):
        self.settings, self.run, self.reg, self.beta = settings, run, reg, beta
        self.level, self.progress, self.float32 = level, progress, float32
        self.lower_bound, self.change, self.count = lower_bound, np.nan, 0
        self.relative = _relative_scale(run)
        self.mixed = self.tol = self.start = None  # start: the last step's parameters before it

    def mix(self, tol, max_iter):
        """Take the steps in float32 until they near convergence on ``tol`` (see above)."""
        self.mixed, self.tol = max_iter, tol

    def __call__(self, params):
        """Return the parameters after one iteration from ``params``."""
        run = self.run
        loglik, nk, after, float32, switched = self._step(params)
        bound = run.mean_bound(loglik)
        previous = self._previous_bound(bound) if switched else self.lower_bound
        self.start, self.count = params, self.count + 1
        self.lower_bound, self.change = bound, bound - previous
        active = (nk > self.reg.min_weight * nk.sum()) & ~run.empty
        run.record(bound, self.level, int(active.sum()), after.means / self.relative, float32)
        self.progress.iteration(
            len(run.history["lower_bound"]), bound, self.change, run.empty,
            tempered=self.beta != 1.0,
        )  # fmt: skip
        return after

    def _step(self, params):
        """One E- and M-step from ``params``.

        Returns the log-likelihood, the weights, the parameters, whether
        the E-step was asked for float32, and whether it is the first in
        float64 after float32 ones.
        """
        run, step = self.run, ITERATIONS[self.settings.solver]
        if self.mixed is None:
            float32 = self.float32
            return *step(self.settings, run, params, self.reg, self.beta, float32), float32, False
        if self.count + 1 < self.mixed:
            empty = run.empty
            try:
                loglik, nk, after = _float32_try(self.settings, run, params, self.reg, self.beta)
                bound = run.mean_bound(loglik)
                if abs(bound - self.lower_bound) >= self.tol + _f32_rounding(bound, run):
                    return loglik, nk, after, True, False
            except IllDefinedCovariance:
                pass  # float64's step decides
            run.empty = empty
        self.mixed = None
        return *step(self.settings, run, params, self.reg, self.beta, False), False, True

    def _previous_bound(self, bound):
        """Return the bound the first float64 step's gain is measured from.

        The last (float32) bound, unless its rounding could put the gain on
        the other side of ``tol``: then the float64 bound of the parameters
        it was measured at, as float64 steps would have had.
        """
        previous, run = self.lower_bound, self.run
        margin = abs(abs(bound - previous) - self.tol)
        if self.start is None or margin > _f32_rounding(previous, run):
            return previous
        loglik, _ = e_step(run.data, run.standardiser, self.start, self.beta)
        previous = run.mean_bound(loglik)
        run.history["lower_bound"][-1] = previous
        return previous


class _Settled:
    """An annealing level's stopping rule, called with each step's parameters before and after.

    After at least two steps, a level has settled when no mean moved by
    ``tol`` of its standard deviation, nor by more than in the step before
    (means that are splitting move faster and faster).
    """

    def __init__(self, tol):
        self.tol, self.previous_move, self.count = tol, np.inf, 0

    def __call__(self, before, after):
        move, self.count = mean_move(before, after), self.count + 1
        settled = self.count >= MIN_LEVEL_ITER and move < self.tol and move <= self.previous_move
        self.previous_move = move
        return settled


def _until(iterate, params, max_iter, done):
    """Iterate until ``done(before, after)`` or ``max_iter``: the parameters, and whether done."""
    while iterate.count < max_iter:
        before, params = params, iterate(params)
        if done(before, params):
            return params, True
    return params, False


def _accelerated(iterate, params, reg, max_iter, settled):
    """:func:`_until` for a level, two EM steps and a SQUAREM step at a time.

    After two EM steps, the EM step from :func:`~natgmm._anneal.extrapolated`
    (when it moves further than plain EM) replaces the next. If that step
    fails (a variance not positive), or its E-step finds the level's
    objective lower than at the middle of the two steps (the jump overshot),
    EM goes on from where the two ended. Every step counts against
    ``max_iter``; the accepted ones are tested by ``settled``.
    """
    path = [params]
    while iterate.count < max_iter:
        if len(path) == 3:
            jump = _anneal.extrapolated(*path, reg)
            path = path[-1:]
            if jump is not None:
                middle = iterate.lower_bound  # the objective at path[1]
                empty = iterate.run.empty  # that of path[-1], kept if the jump is refused
                try:
                    after = iterate(jump)
                except IllDefinedCovariance:
                    continue
                if iterate.lower_bound < middle:
                    # Off the path kept: EM goes on from path[-1], whose objective
                    # the next step measures; until then, the last one kept.
                    iterate.run.empty, iterate.lower_bound = empty, middle
                    n_recorded = len(iterate.run.history["lower_bound"])
                    iterate.run.off_path.append((n_recorded - 1, n_recorded))
                    continue
                if settled(jump, after):
                    return after, True
                path = [after]
                continue
        after = iterate(path[-1])
        if settled(path[-1], after):
            return after, True
        path.append(after)
    return path[-1], False


def fit_run(settings, run, params, lower_bound, reg, levels, progress):
    """One initialisation's fit: the annealing levels, then EM to convergence.

    The final EM runs with the user's regularisation ``reg`` alone: the
    annealing is released; split-and-merge moves follow a converged final EM
    (:func:`split_merge`). With ``anneal_subsample`` rows fewer than the
    data's, all that runs on a sample of rows drawn from ``run``'s random
    state, and EM on all rows (no moves: "auto" makes none without levels)
    continues from its result. Returns the parameters, the last lower bound
    and whether the final EM (or the last move kept) converged.
    """
    sampled = _on_sample(run, settings.anneal_subsample) if levels.size else None
    if sampled is not None:
        params, _, _ = _annealed_fit(settings, sampled, params, lower_bound, reg, levels, progress)
        run.take_state(sampled)
        progress.sample_end(
            settings.anneal_subsample, run.data.shape[0], len(run.history["lower_bound"])
        )
        levels, lower_bound = np.empty(0), -np.inf  # plain EM from here
    return _annealed_fit(settings, run, params, lower_bound, reg, levels, progress)


def _on_sample(run, n_rows):
    """``run`` on ``n_rows`` of its rows drawn from its random state, or None.

    None when ``n_rows`` is None or not fewer than the data's rows, and when
    the rows drawn all have weight zero (then all rows are used).
    """
    if n_rows is None or n_rows >= run.data.shape[0]:
        return None
    sample = run.data.sample(n_rows, run.random_state)
    return run.on_rows(sample) if sample.total_weight > 0 else None


def _annealed_fit(settings, run, params, lower_bound, reg, levels, progress):
    """:func:`fit_run` on all of ``run``'s rows."""
    index, stride, tried, refused, measured = 0, 1, None, set(), {}
    n_rows = run.data.positive_rows()  # as split_merge counts them: weight zero is no row
    progress.levels_begin(levels)
    while index < levels.size:
        level = levels[index]
        first = len(run.history["lower_bound"])
        level_reg, beta = level_settings(settings.annealing, level, reg, run.standardiser)
        if _anneal.RESEED_EMPTY and run.empty is not None:
            lost = run.empty | _anneal.collapsed(params.weights, n_rows)
            params = _anneal.reseeded(params, lost)
        params = enter_level(params, level, level_reg, run.standardiser, run.random_state, beta)
        params, lower_bound, settled = em_phase(
            settings, run, params, lower_bound, level_reg, settings.anneal_max_iter, beta, level,
            settings.anneal_tol, progress, by_move=True, float32=_anneal.FLOAT32_LEVELS,
        )  # fmt: skip
        n_iter = len(run.history["lower_bound"]) - first
        n_distinct = run.history["n_distinct"][-1]
        if _spare_move_due(settings, settled, n_iter, n_distinct) and n_distinct != tried:
            tried = n_distinct  # not again until the means split or merge
            after = _reallocated(
                settings, run, params, lower_bound, level_reg, beta, level, progress, refused,
                measured,
            )  # fmt: skip
            if after is not None:
                params, lower_bound, settled = after
            n_iter = len(run.history["lower_bound"]) - first
            n_distinct = count_distinct(params.means / _relative_scale(run), _DISTINCT_TOL)
        all_split = n_distinct >= settings.n_components
        following, stride = next_level(
            settings.annealing, index, stride, n_iter, settled, all_split
        )
        n_active = run.history["n_active"][np.flatnonzero(run.kept())[-1]]  # on the path kept
        progress.level_end(
            index, levels.size, run.history, first, min(following, levels.size), lower_bound,
            n_distinct, n_active,
        )  # fmt: skip
        index = following
    if levels.size:
        # The last level's bound belongs to other constraints; the tol test of
        # the final EM starts afresh.
        lower_bound = -np.inf
        progress.final_em(len(run.history["lower_bound"]))
    final = len(run.history["lower_bound"])
    params, lower_bound, converged = em_phase(
        settings, run, params, lower_bound, reg, settings.max_iter, 1.0, np.nan, settings.tol,
        progress,
    )  # fmt: skip
    if settings.solver == "gradient":
        # After levels, the final EM's first bound is measured at the last
        # level's parameters (with "fixed", variances still held), whose step
        # to free variances may lower it whatever the learning rate.
        _warn_if_fell(run.history["lower_bound"][final + bool(levels.size) :], settings)
    n_moves = settings.n_moves(annealed=bool(levels.size))
    if not converged or not n_moves:  # a move is judged against a maximum
        return params, lower_bound, converged
    return split_merge(settings, run, params, lower_bound, reg, n_moves, progress)


def _warn_if_fell(lower_bounds, settings):
    """Warn when a gradient fit's final EM ended well below its best bound.

    A generalised EM step never lowers the likelihood; Adam steps too large
    for the data do (doc/solvers.rst has the measured falls).
    """
    if len(lower_bounds) < 2:
        return
    best, last = max(lower_bounds), lower_bounds[-1]
    if best - last > 10 * settings.tol:
        warnings.warn(
            f"The gradient M-steps lowered the mean log-likelihood from {best:.6g} to "
            f"{last:.6g}: Adam's steps are too large for this data. Lower learning_rate "
            f"(now {settings.gradient.learning_rate:g}) or gradient_clip.",
            ConvergenceWarning,
            stacklevel=caller_level(),
        )


# Two components closer than this (the Bhattacharyya distance of their
# Gaussians, summed over features) are one Gaussian twice: a mean 0.05
# standard deviations away in one feature is 3e-4, a variance 10 % larger
# 5.7e-4.
IDENTICAL_DISTANCE = 1e-3


def identical_pairs(params):
    """Pairs of components that are the same Gaussian, and their distance.

    The Bhattacharyya distance of two diagonal Gaussians, summed over
    features: ``(m1 - m2)**2 / (8 v) + log(v / sqrt(v1 v2)) / 2`` with ``v``
    the mean of the two variances (any units: it does not depend on them).
    """
    m, var = params.means, params.variances
    with np.errstate(over="ignore"):  # far apart: inf, not identical
        apart = np.sum((m[:, np.newaxis] - m) ** 2 / (4.0 * (var[:, np.newaxis] + var)), axis=2)
    pairs = []
    # Both terms are non-negative: only pairs close in their means can be.
    for i, j in zip(*np.nonzero(np.triu(apart < IDENTICAL_DISTANCE, 1)), strict=True):
        v = 0.5 * (var[i] + var[j])
        distance = apart[i, j] + 0.5 * np.sum(np.log(v / np.sqrt(var[i] * var[j])))
        if distance < IDENTICAL_DISTANCE:
            pairs.append((int(i), int(j), float(distance)))
    return pairs


def warn_if_identical(params, empty, settings, annealed):
    """Warn when the fit ended with two components on one Gaussian (no move splits them).

    Pairs with an ``empty`` component are left out (:func:`warn_if_empty`
    names those); the advice follows what the fit did already (``annealed``,
    split-and-merge moves).
    """
    pairs = [p for p in identical_pairs(params) if not (empty[p[0]] or empty[p[1]])]
    if not pairs:
        return
    i, j, _ = pairs[0]
    more = f" ({len(pairs)} such pairs)" if len(pairs) > 1 else ""
    if annealed and settings.n_moves(annealed=True):
        advice = "the annealed fit and its moves found no split, so the data may hold fewer."
    else:
        escape = "split_merge='auto' moves" if annealed else "annealing='temperature', solver='em',"
        advice = (
            "if the data has more clusters, the fit stopped on the saddle between them: "
            f"{escape} can leave it (doc: annealing)."
        )
    # Floors (and the prior's scatter) widen narrow components: advice only when set.
    floored = (
        np.any(settings.min_variance > 0) or settings.min_variance_relative > 0
        or settings.upper_precision_reg > 0
    )  # fmt: skip
    try_ = "a smaller n_components or lower floors" if floored else "a smaller n_components"
    warnings.warn(
        f"Components {i} and {j} ended as the same Gaussian{more}: the model has fewer "
        f"distinct components than n_components. Try {try_}; {advice}",
        ConvergenceWarning,
        stacklevel=caller_level(),
    )


def warn_if_empty(empty):
    """Warn when the fit ended with components that no sample gives weight to."""
    n_components, empty = len(empty), np.flatnonzero(empty)
    if not empty.size:
        return
    listed = ", ".join(map(str, empty[:10])) + (", ..." if empty.size > 10 else "")
    which = "components" if empty.size > 1 else "component"
    warnings.warn(
        f"{empty.size} of the {n_components} components ended empty "
        f"({which} {listed}): no sample gives them weight, so the model uses fewer "
        "components than n_components (empty_components_ lists them). Try a smaller "
        "n_components, or another init_params or random_state.",
        ConvergenceWarning,
        stacklevel=caller_level(),
    )


def _spare_move_due(settings, settled, n_iter, n_distinct):
    """Whether a level that ended so tries to move a spare component (:func:`_reallocated`)."""
    least = _anneal.REALLOCATION_MIN_DISTINCT * settings.n_components
    return (
        settings.annealing in _anneal.REALLOCATING and settings.solver == "em" and settled
        and n_iter <= MIN_LEVEL_ITER and least <= n_distinct < settings.n_components
    )  # fmt: skip


def _relative_scale(run):
    """Each feature's standard deviation in internal units (1 for a constant one)."""
    feature_var = run.standardiser.feature_var
    return np.sqrt(np.where(feature_var > 0, feature_var, 1.0))


def _reallocated(
    settings, run, params, lower_bound, reg, beta, level, progress, refused, measured
):  # fmt: skip
    """Return a settled level's fit after a spare component went to a lone one, or None.

    The move is :func:`_spare_move`'s. The level's EM then runs again from it
    (its first ``REALLOCATION_SCREEN`` iterations a screen), and the move is
    kept if it ends with a higher objective than ``lower_bound``; a lone
    component whose move was not kept goes into ``refused`` and is not tried
    again. Returns the parameters, objective and whether the level's rule
    stopped it.
    """
    chosen = _spare_move(run, params, level, refused, measured)
    if chosen is None:
        return None
    move, covariance = chosen
    empty = run.empty

    def level_em(params, bound, max_iter):
        return _trial(
            settings, run, params, bound, reg, max_iter, settings.anneal_tol, progress,
            _anneal.FLOAT32_LEVELS, level, beta,
        )  # fmt: skip

    # A screen of the first iterations; the rest only if they already beat
    # the level's objective.
    screen = min(_anneal.REALLOCATION_SCREEN, settings.anneal_max_iter)
    start = moved(params, move, split_offset(covariance))
    trial, trial_bound, settled = level_em(start, lower_bound, screen)
    if trial_bound > lower_bound and not settled and settings.anneal_max_iter > screen:
        trial, trial_bound, settled = level_em(
            trial, trial_bound, settings.anneal_max_iter - screen
        )
    kept = bool(trial_bound > lower_bound)
    progress.reallocation(move, lower_bound, trial_bound, kept)
    if not kept:
        run.empty = empty
        refused.add(move[2])
        return None
    measured.clear()  # every responsibility changed
    return trial, trial_bound, settled


class _Measured(NamedTuple):
    """A lone component's critical value and covariance, and where it was when measured."""

    mean: np.ndarray
    variances: np.ndarray
    critical: float
    covariance: np.ndarray


def _spare_move(run, params, level, refused, measured):
    """Return the move of :func:`~natgmm._anneal.spare_move` and its covariance, or None.

    One pass measures the critical values of the widest lone components not
    in ``refused`` (those in ``measured`` that have not moved since keep
    theirs) and, if one is above the level, a second those of the groups of
    coinciding means.
    """
    owner = _anneal.coincident_groups(params.means / _relative_scale(run), _DISTINCT_TOL)
    counts = np.bincount(owner, minlength=owner.size)
    groups = [np.flatnonzero(owner == g) for g in np.flatnonzero(counts >= 2)]
    # The lone components with the widest Gaussians (the lowest mean
    # log-density of their points if they fit them): those that span clusters.
    spread = np.log(params.variances).sum(axis=1)
    lone = [
        int(k)
        for k in np.argsort(-spread, kind="stable")
        if counts[owner[k]] == 1 and params.weights[k] > 0 and k not in refused
    ][: _anneal.REALLOCATION_CANDIDATES]
    if not groups or not lone:
        return None

    def critical_values(components):
        weight, scatter = run.data.component_moments(
            run.standardiser, params, components, _anneal.REALLOCATION_MIN_RESP
        )
        # A scatter that overflowed (rows near float64's limits) measures nothing.
        values = [top_correlation(s) if np.all(np.isfinite(s)) else np.nan for s in scatter]
        with np.errstate(invalid="ignore", divide="ignore"):  # such a one: NaN, never chosen
            return values, scatter / weight[:, np.newaxis, np.newaxis]

    unmeasured = [k for k in lone if not _unmoved(measured.get(k), params, k)]
    if unmeasured:
        for k, value, cov in zip(unmeasured, *critical_values(unmeasured), strict=True):
            measured[k] = _Measured(params.means[k].copy(), params.variances[k].copy(), value, cov)
    lone_critical = [measured[k].critical for k in lone]
    # The groups only matter (a second pass) if a lone one is above the level.
    if not np.fmax.reduce(lone_critical) > _anneal.REALLOCATION_MARGIN * level:
        return None
    move = _anneal.spare_move(groups, critical_values(groups)[0], lone, lone_critical, level)
    return None if move is None else (move, measured[move[2]].covariance)


def _unmoved(entry, params, k, tol=_anneal.REALLOCATION_REMEASURE):
    """Whether component ``k`` is where ``entry`` (a :class:`_Measured`) was measured."""
    if entry is None:
        return False
    sd = np.sqrt(params.variances[k])
    return bool(
        np.max(np.abs(params.means[k] - entry.mean) / sd) < tol
        and np.max(np.abs(np.log(params.variances[k] / entry.variances))) < tol
    )


def split_merge(settings, run, params, lower_bound, reg, n_moves, progress):
    """Run split-and-merge rounds from a converged fit, keeping ``n_moves`` moves at most.

    Each round ranks :data:`~natgmm._split_merge.N_CANDIDATES` moves from
    one pass over the trial rows (all rows, or a sample of
    :data:`~natgmm._split_merge.TRIAL_ROWS`), tries each by partial EM and
    the most promising ones by a few EM iterations (:func:`_try_moves`),
    runs the best to convergence on all rows and keeps it if its lower
    bound beats the fit's. When no pair of components reaches
    :data:`~natgmm._split_merge.MIN_COSINE`, the pairs that share any row
    are tried (any pair when none does), and the best runs on only if its
    finalist bound already beats the fit's on the trial rows
    (:data:`~natgmm._split_merge.SCREENED_ROUNDS`).
    A move not kept, kept without converging or kept with a gain below
    ``tol`` (what the final EM counts as converged)
    ends the rounds. Every iteration is recorded in ``run`` (``level`` NaN,
    ``move`` the round), every move in ``run.moves``. Returns the
    parameters, lower bound and convergence kept.
    """
    converged, empty = True, run.empty
    n_rows = run.data.positive_rows()
    for round_ in range(1, n_moves + 1):
        run.move_round = round_
        first = len(run.history["lower_bound"])
        trial_run = _on_sample(run, _split_merge.TRIAL_ROWS) or run.on_rows(run.data.in_memory())
        progress.round_trials(round_, trial_run.data.shape[0], run.data.shape[0])
        rows = TrialRows(trial_run.data, run.standardiser, params)
        sums = rows.sums()
        moves = candidate_moves(*sums, _split_merge.N_CANDIDATES)
        screened = not moves and _split_merge.SCREENED_ROUNDS
        # No pair reaches MIN_COSINE: those sharing any row, else any pair, screened.
        for gate in _split_merge.SCREENED_MIN_COSINES if screened else ():
            moves = candidate_moves(*sums, _split_merge.N_CANDIDATES, min_cosine=gate)
            if moves:
                break
        if not moves:
            progress.no_move()
            break
        covariance = rows.covariances(sorted({k for _, _, k in moves}))
        offsets = {k: split_offset(c) for k, c in covariance.items()}
        starts = [moved(params, move, offsets[move[2]]) for move in moves]
        best, trial, bound = _try_moves(settings, trial_run, rows, moves, starts, reg, progress)
        trials_end = len(run.history["lower_bound"])
        if screened and not bound > rows.mean_density():
            run.off_path.append((first, trials_end))
            progress.screened_out()
            break
        move = moves[best]
        progress.round_best()
        trial, trial_bound, trial_converged = _trial(
            settings, run, trial, -np.inf, reg, settings.max_iter, settings.tol, progress
        )
        # Never from a model the fit can return to one it cannot, nor to
        # components on a few rows.
        spikes = _split_merge.spiked(trial, params, move, n_rows, reg.min_weight)
        kept = (
            bool(trial_bound > lower_bound)
            and not spikes
            and (_representable(run, trial) or not _representable(run, params))
        )
        run.moves.append((*move, lower_bound, trial_bound, kept))
        run.off_path.append((first, trials_end if kept else len(run.history["lower_bound"])))
        gain = trial_bound - lower_bound
        end = (
            "not kept, it left a component on too few rows (split_merge)" if spikes
            else "not kept" if not kept
            else "kept, its EM did not converge" if not trial_converged
            else f"kept, a gain below tol={settings.tol:g}" if gain < settings.tol
            else None
        )  # fmt: skip
        progress.move(move, lower_bound, trial_bound, end)
        if not kept:
            break
        params, lower_bound, converged, empty = trial, trial_bound, trial_converged, run.empty
        if end is not None:
            break
    run.empty = empty  # that of the parameters kept
    return params, lower_bound, converged


def _representable(run, params):
    """Whether ``params`` give fitted attributes in the data's dtype.

    A move can raise the bound with a component the fit could not return
    (a variance beyond float32's range, on data near its limits): such a
    move is not kept when the fit before it could be returned.
    """
    try:
        model_attributes(run.standardiser, params, run.data.dtype)
    except ValueError:
        return False
    return True


def _try_moves(settings, run, rows, moves, starts, reg, progress):
    """Rank moves: ``(index, parameters, lower bound)`` of the best, to run to convergence.

    Every move gets :data:`~natgmm._split_merge.PARTIAL_ITER` iterations of
    partial EM on the rows its components share (``rows``, a
    :class:`~natgmm._split_merge.TrialRows` of ``run``'s rows); the
    ``N_FINALISTS`` with the highest gains then ``FINALIST_ITER`` EM
    iterations from there (tol 0, in float32 with ``FLOAT32_TRIALS``), and
    the one with the highest lower bound is the best; ties go to the
    earlier move. A move whose partial EM collapses a component ranks last.
    Only the finalists' iterations are EM iterations of the mixture and
    recorded in ``run``.
    """

    def partial_gain(move_start):  # a move's gain and parameters after its partial EM
        move, start = move_start
        chosen = rows.of_move(move)
        if chosen is not None:
            try:
                end, trace = partial_em(chosen, start, move, reg)
            except IllDefinedCovariance:
                pass
            else:
                return trace[-1], end
        return -np.inf, start

    # Independent, and mostly in a compiled kernel: shared out between threads.
    n_rows, n_features = rows.X.shape
    work = len(moves) * min(n_rows, _split_merge.PARTIAL_ROWS) * n_features * 3
    work *= _split_merge.PARTIAL_ITER  # three free components, PARTIAL_ITER iterations
    pairs = zip(moves, starts, strict=True)
    gains, ends = zip(*_threading.share_out_calls(partial_gain, pairs, work), strict=True)
    order = sorted(range(len(moves)), key=lambda i: -gains[i])
    n_iter, float32 = _split_merge.FINALIST_ITER, _split_merge.FLOAT32_TRIALS
    trials = {
        i: _trial(settings, run, ends[i], -np.inf, reg, n_iter, 0.0, progress, float32)
        for i in order[: _split_merge.N_FINALISTS]
    }
    best = max(trials, key=lambda i: (trials[i][1], -i))
    return best, trials[best][0], trials[best][1]


def _trial(
    settings, run, params, lower_bound, reg, max_iter, tol, progress, float32=False, level=None,
    beta=1.0,
):  # fmt: skip
    """:func:`em_phase` from a move's parameters: untempered, or at annealing ``level``.

    A move whose EM collapses a component (an M-step variance that is not
    positive and finite) is a move not kept, not a failed fit: its lower
    bound comes back as -inf, with the parameters it started from. With a
    ``level`` (and its ``beta``), the EM is that of the level, with its
    stopping rule.
    """
    annealed = level is not None
    try:
        return em_phase(
            settings, run, params, lower_bound, reg, max_iter, beta,
            level if annealed else np.nan, tol, progress, by_move=annealed, float32=float32,
        )  # fmt: skip
    except IllDefinedCovariance:
        return params, -np.inf, False


def warn_slow_splits(who, advice):
    """Warn that annealing by online steps (solver="minibatch", partial_fit) splits slowly."""
    warnings.warn(
        f"{who} with annealing: online steps are small, so means that start together split "
        f"slowly and may end together (one Gaussian twice). {advice}",
        UserWarning,
        stacklevel=caller_level(),
    )


def start_stream(data, model, init, settings, random_state, progress):
    """Start a ``partial_fit`` stream: its state after the first batch's set-up.

    The model starts from the first batch as :meth:`fit` would: its start,
    then EM on the batch (``max_iter``, ``tol``) with the estimator's solver,
    unless the stream anneals (its levels go batch by batch) or the batch
    has fewer (weighted) rows than components (then seeded by
    "random_from_data"). Online EM stays near the optimum it starts at: from
    the start alone, a stream of 2 000-row batches of raw-scale latents
    ended 25 nats a sample below batch EM after one pass, from EM on its
    first batch 0.96 (doc/solvers.rst).
    """
    levels = np.empty(0)
    if model.critical_value is not None:
        levels = annealing_levels(settings, model.critical_value)
        # As fit's with solver="minibatch", which takes the same online steps.
        advice = (
            "Fit the stream's first large batch with annealing, then continue with partial_fit."
        )
        warn_slow_splits("partial_fit", advice)
    n_rows = data.positive_rows()
    few = n_rows < settings.n_components and not levels.size
    if few:
        warnings.warn(
            f"The first partial_fit batch has {n_rows} row(s) of positive weight for "
            f"{settings.n_components} components: components start from repeated rows, "
            "and later batches need not separate them (online EM stays near the local "
            "optimum it starts at). Start the stream with a batch of at least n_components "
            "rows, better many more.",
            UserWarning,
            stacklevel=caller_level(),
        )
    how = "pooled" if levels.size else "random_from_data" if few else None
    params = initial_params(data, model.standardiser, model.reg, init, settings, random_state, how)
    if not few and not levels.size:
        progress.first_batch(data.shape[0])
        run = start_run(settings, data, model.standardiser, random_state, params, model.reg)
        params, bound, converged = em_phase(
            settings, run, params, -np.inf, model.reg, settings.max_iter, 1.0, np.nan,
            settings.tol, progress,
        )  # fmt: skip
        progress.first_batch_end(len(run.history["lower_bound"]), bound, converged)
    if few:
        # Seeds repeat, and repeated seeds leave components empty or
        # identical. Equal weights and offsets of a small fraction of each
        # spread let them separate as data arrives.
        noise = random_state.standard_normal(params.means.shape)
        params = Params(
            np.full(settings.n_components, 1.0 / settings.n_components),
            params.means + PERTURBATION * np.sqrt(params.variances) * noise,
            params.variances,
        )
    # A copy: the caller's RandomState (``random_state`` given as one) is
    # theirs to advance; the stream's levels must not follow it.
    return ModelState(model.standardiser, params, None, None, copy.deepcopy(random_state), levels)


def stream_run(settings, data, state, reg):
    """Start a run over one ``partial_fit`` batch, continuing the stream's state.

    The Adam state is copied (its steps work in place).
    """
    online = state.online or Online(state.params, reg)
    adam = _copy_adam(state.adam)
    if settings.solver == "gradient" and adam is None:
        adam = adam_state(state.params, reg.reg_covar)
    return Run(data, state.standardiser, state.random_state, online, adam)


def stream_position(settings, n_steps):
    """Return the level index of a stream's step after ``n_steps`` steps, and its place in it."""
    return divmod(n_steps, settings.anneal_max_iter)


def stream_step(settings, run, params, reg, levels):
    """One ``partial_fit`` step on ``run.data`` at the stream's annealing level.

    Each level lasts ``anneal_max_iter`` steps; after the last, the final
    settings hold. Returns the parameters and the batch's summed
    log-likelihood under the parameters before the step.
    """
    standardiser = run.standardiser
    index, offset = stream_position(settings, run.online.n_steps)
    if index >= levels.size:
        beta = 1.0  # after the last level: the user's own regularisation
    else:
        reg, beta = level_settings(settings.annealing, levels[index], reg, standardiser)
        if offset == 0:  # a new level: let coincident means split
            params = enter_level(params, levels[index], reg, standardiser, run.random_state, beta)
    # In the data's precision even at a level: no final EM follows a stream's
    # levels to settle what float32 would round.
    loglik, stats = e_step(run.data, standardiser, params, beta)
    total_weight = standardiser.moments.nk[0]
    row_weight = standardiser.row_weight
    # A model pickled without a row count: the batch's own weight, as then.
    expected_weight = (
        run.data.total_weight if row_weight is None else run.data.shape[0] * row_weight
    )
    params = online_update(settings, run, stats, expected_weight, reg, params, total_weight)
    return params, loglik
