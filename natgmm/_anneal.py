"""Deterministic annealing: what each level of the outer loop changes.

A level is a number from the schedule. For ``annealing="floor"`` it is a
variance floor and for ``"fixed"`` every component's variance, both in
multiples of each feature's data variance; for ``"temperature"`` it is the
temperature ``T`` of the E-step, ``r`` proportional to ``(pi N) ** (1 / T)``.
The functions here turn a level into the M-step's regularisation and the
E-step's inverse temperature, say when a level has settled and take the
SQUAREM steps that accelerate a temperature level's EM; the loop over
levels is in :mod:`natgmm._solver`. After the last level the final EM
runs with the user's own regularisation: the annealing is released, so the
fit ends at a maximum of the likelihood the user asked for.
"""

import math

import numpy as np

from ._em import Params, floor_weights

# Relative size of the noise added to the means at each annealing level, in
# standard deviations times sqrt(level): breaks the exact symmetry of means
# that coincided above a critical level, so that they can split below it.
PERTURBATION = 1e-3

# The levels' E-steps compute in float32 (products and soft-max; sums and
# log-likelihood in float64) whatever the data's dtype: a level's fixed point
# is a step on the way, and the final EM, in the data's own precision, ends
# at a maximum of the likelihood (doc/annealing.rst, "Levels in float32").
FLOAT32_LEVELS = True

# The annealing modes whose levels take SQUAREM steps (Varadhan and Roland,
# 2008, scheme S3) with solver="em": two EM steps, a step of up to MAX_STEP
# times their length along the path they trace, then an EM step from there,
# kept unless it lowered the level's objective. Measured with "temperature":
# the same wins in a third fewer iterations; without the guard, with
# a variance floor or a fixed variance (whose M-steps clip) it lost wins
# (doc/annealing.rst, "Accelerated levels").
ACCELERATED = ("temperature",)
MAX_STEP = 8.0

# The annealing modes whose levels are skipped while they settle at once and
# every mean has split: after a level that settled in its fewest iterations
# (MIN_LEVEL_ITER) with as many distinct means as components, the next level
# run is twice as far along the schedule as the step before, and the next
# one again after any other level. Such levels move the means little; while
# some means coincide every level runs, as a split must not be jumped.
# Measured with "temperature": the same wins in a sixth fewer iterations on
# the 60 000-row sets (doc/annealing.rst, "Skipped levels").
SKIPPING = ("temperature",)
MIN_LEVEL_ITER = 2

# Components left empty by a level (no row gives them weight: a tempered
# E-step can starve a component whose variances sit near reg_covar, as on
# data of repeated values) are placed on the heaviest active ones before the
# next level (:func:`reseeded`), so that they can split off again. Measured
# (doc/annealing.rst, "Empty components"): raw digit pixels, "temperature",
# K=50, seed 0, with the levels' noise at the data's spread: 35 of 50
# components empty and a train log-likelihood of -12.95 without it, one and
# 24.60 with it (scikit-learn's best of five: 21.40); on the benchmark's
# sets it changed only the three fits (of 110) that had an empty component.
RESEED_EMPTY = True

# So are components holding less weight than two rows': a variance from
# fewer than two rows is the floor's, not the data's, and such a component
# is a singular maximum (its density at its row grows without bound as
# reg_covar shrinks) that keeps a component from a cluster for the rest of
# the run. Measured (doc/annealing.rst, "Collapsed components"): 40 blobs of
# 20 rows in 40 dimensions, K=40, six seeds, train -60.6 to -63.7 with zero
# to four such components, -58.04 (scikit-learn's best of five) on every seed
# with them re-seeded. Not applied with fewer than twice that many rows per
# component in the data, where small components are all there can be.
COLLAPSED_ROWS = 2.0

# The annealing modes whose levels move a spare component to where it is
# needed (with solver="em"). With a fixed number of components the splits
# can share them out unevenly: two means coincide on a cluster that will not
# split (its critical value is about 1), while a lone component spans
# clusters that would split at this level if it had a partner. At a level
# that settled at once with means coinciding, the lone component whose
# critical value (the top eigenvalue of its responsibility-weighted
# correlation matrix) is above the level, and above the coinciding group's
# by REALLOCATION_MARGIN, takes one of the group's components as a partner:
# a split-and-merge move made while annealing, kept if the level's
# objective rises (doc/annealing.rst, "Spare components").
REALLOCATING = ("temperature",)
REALLOCATION_MARGIN = 1.5
# Lone components whose critical values are measured, the widest first, and
# the responsibility below which a row is left out of them (its share of a
# component's scatter is that small: the values decide with a margin of 1.5).
REALLOCATION_CANDIDATES = 3
REALLOCATION_MIN_RESP = 1e-8
# Not before this share of the means is distinct: until then most groups
# have splits ahead of them, and the passes found no move (measured: the
# moves kept on the separated set came with 18 or 19 distinct means of 20;
# the passes with 2 to 4 took 9 to 14 ms a fit, a tenth of it).
REALLOCATION_MIN_DISTINCT = 0.5
# A lone component's value is measured again once its mean has moved by this
# many standard deviations, or a variance by this factor in log, or after a
# move was kept.
REALLOCATION_REMEASURE = 0.05
# The level's EM runs on from a move only if its objective after this many
# iterations is above the level's before the move (measured: kept moves were
# above it by the second iteration, refused ones below it all 15).
REALLOCATION_SCREEN = 2


def annealing_levels(settings, critical_value):
    """Levels of the schedule for data of this critical value (checked)."""
    levels = settings.schedule.values(critical_value)
    if settings.annealing == "temperature" and np.any(levels < 1.0):
        raise ValueError(
            f"Temperatures must be at least 1, got {levels.min():g}. A schedule for "
            "'temperature' stops at 1, e.g. GeometricSchedule(stop=1.0, n_levels=24), its "
            "default (schedule=None); GeometricSchedule()'s stop=0.01 is that of 'floor' and "
            "'fixed'."
        )
    return levels


def level_settings(annealing, level, reg, standardiser):
    """Regularisation and inverse temperature of one annealing level."""
    if annealing == "temperature":
        return reg, 1.0 / level
    if annealing == "fixed":
        return reg._replace(fixed_var=level * standardiser.feature_var + reg.reg_covar), 1.0
    return reg._replace(floor=np.maximum(reg.floor, level * standardiser.feature_var)), 1.0


def next_level(annealing, index, stride, n_iter, settled, all_split):
    """Index of the next level to run after level ``index``, and the step taken to it.

    ``stride`` is the step that led to level ``index``, ``n_iter`` the
    iterations it ran, ``settled`` whether its rule stopped it and
    ``all_split`` whether it ended with every component's mean distinct. In
    the modes of ``SKIPPING`` a level that settled in ``MIN_LEVEL_ITER``
    iterations with all means split doubles the step; any other level
    returns it to one.
    """
    if annealing in SKIPPING and settled and all_split and n_iter <= MIN_LEVEL_ITER:
        stride *= 2
    else:
        stride = 1
    return index + stride, stride


def coincident_groups(relative_means, tol):
    """Each mean's group: the first mean it is within ``tol`` of, in every feature, or itself.

    The groups of :func:`natgmm._kernels.count_distinct`: a mean within
    ``tol`` of an earlier one joins that one's group.
    """
    n_means = relative_means.shape[0]
    owner = np.arange(n_means)
    for k in range(1, n_means):
        gap = np.max(np.abs(relative_means[:k] - relative_means[k]), axis=1)
        close = np.flatnonzero(gap < tol)
        if close.size:
            owner[k] = owner[close[0]]
    return owner


def spare_move(groups, group_critical, lone, lone_critical, level, margin=REALLOCATION_MARGIN):
    """Return the move ``(i, j, k)`` that gives a spare component to a lone one, or None.

    ``groups`` are arrays of components whose means coincide (two or more
    each) and ``lone`` components alone at their means, each with its
    critical value. The lone component with the highest one takes a partner
    from the group with the lowest, if its critical value is above
    ``margin`` times both the level and that group's: the group's first two
    members ``i`` and ``j`` merge and ``k`` splits (:func:`natgmm._split_merge.moved`).
    """
    if not groups or not lone:
        return None
    # A value not measured (NaN) wins either choice, and stops the move.
    k = int(np.argmax(lone_critical))
    g = int(np.argmax(-np.asarray(group_critical)))
    if not lone_critical[k] > margin * np.maximum(level, group_critical[g]):
        return None
    i, j = (int(m) for m in groups[g][:2])
    return i, j, int(lone[k])


def mean_move(before, after):
    """Largest move of a mean, in standard deviations of its component after it."""
    return float(np.max(np.abs(after.means - before.means) / np.sqrt(after.variances)))


def split_levels(history, kept):
    """Levels at which the number of distinct means grew: ``(level, n_distinct)`` rows.

    Over the iterations ``kept`` (a mask: those on the path of the parameters
    kept, not a refused step's).
    """
    level, n_distinct = history["level"][kept], history["n_distinct"][kept]
    grew = np.flatnonzero((np.diff(n_distinct) > 0) & np.isfinite(level[1:])) + 1
    return np.column_stack([level[grew], n_distinct[grew]]).astype(np.float64)


# A level's noise is at most this many times a component's own variance at
# the level (its variance times the temperature): PERTURBATION times 100 of
# its standard deviations, a tenth of one. The data's spread alone threw
# narrow components off their rows (doc/annealing.rst, "Empty components");
# a cap of 100 changed fits of the benchmark's sets that 1e4 leaves alone.
NOISE_SPREAD = 1e4


def enter_level(params, level, level_reg, standardiser, random_state, beta=1.0):
    """Return the parameters a level starts from: its constraints applied, means perturbed.

    The variances are raised to the level's floor or set to its fixed
    variance (``level_reg``, as its M-steps would), so that the level's
    first E-step already sees the level's model; then the means move by
    ``PERTURBATION * sqrt(level)`` standard deviations of noise, a thousandth
    of a standard deviation of a component at the level's floor, but at most
    ``PERTURBATION * sqrt(NOISE_SPREAD)`` of each component's own standard
    deviation at the level (its standard deviation over ``sqrt(beta)``).
    The data's spread alone threw narrow components far from their rows
    where a few outliers made it large (rows of 1e6 among blobs of spread
    1: 17 of 20 components empty) and on features where a component's
    spread is near ``reg_covar`` (doc/annealing.rst, "Empty components"). Without the
    constraint, the first E-step of a level far above the data's variance
    saw the noise at the previous variances (ten standard deviations at a
    floor of 1e8) and gave every row to one component; at such a floor all
    components then have the same density, so the others' weights stayed
    near zero for good.
    """
    variances = params.variances
    if level_reg.fixed_var is not None:
        variances = np.broadcast_to(level_reg.fixed_var, variances.shape)
    variances = np.maximum(variances, level_reg.floor)
    noise = random_state.standard_normal(params.means.shape)
    spread = np.minimum(level * standardiser.feature_var, NOISE_SPREAD * variances / beta)
    offset = PERTURBATION * np.sqrt(spread) * noise
    return params._replace(means=params.means + offset, variances=variances)


def collapsed(weights, n_rows):
    """Components holding less than :data:`COLLAPSED_ROWS` rows' weight.

    Parameters
    ----------
    weights : ndarray of shape (n_components,)
        Mixing weights.
    n_rows : int
        Number of rows of positive weight (a component's weight times it is
        its number of rows, in units of their mean weight).

    Returns
    -------
    collapsed : ndarray of shape (n_components,), bool
        None set when the data has fewer than ``2 * COLLAPSED_ROWS`` rows per
        component.
    """
    if n_rows < 2 * COLLAPSED_ROWS * weights.size:
        return np.zeros(weights.size, dtype=bool)
    return weights * n_rows < COLLAPSED_ROWS


def reseeded(params, empty):
    """Return ``params`` with each ``empty`` component placed on an active one, sharing its weight.

    The heaviest active components take one each, in order (again from the
    heaviest when there are more empty than active ones): the pair starts on
    one mean, as the components of a pooled start do, and the level's
    perturbation (:func:`enter_level`) lets it split where the level allows.
    """
    empty = np.asarray(empty, dtype=bool)
    active = np.flatnonzero(~empty)
    if not empty.any() or not active.size:
        return params
    weights, means, variances = (a.copy() for a in params)
    order = active[np.argsort(-weights[active], kind="stable")]
    for e, k in zip(np.flatnonzero(empty), np.resize(order, int(empty.sum())), strict=True):
        weights[e] = weights[k] = 0.5 * weights[k]
        means[e], variances[e] = means[k], variances[k]
    return Params(weights / weights.sum(), means, variances)


def _coordinates(params):
    """Means, log-variances and log-weights in one vector: the space SQUAREM steps in."""
    with np.errstate(divide="ignore"):
        logs = np.log(params.variances).ravel(), np.log(params.weights)
    return np.concatenate([params.means.ravel(), *logs])


def extrapolated(p0, p1, p2, reg, max_step=MAX_STEP):
    """SQUAREM's step from three successive EM iterates of one level, or None.

    With ``r = x1 - x0`` and ``v = x2 - 2 x1 + x0`` in :func:`_coordinates`,
    the step is ``x0 + 2 s r + s**2 v`` with ``s = |r| / |v|`` (at most
    ``max_step``); ``s = 1`` gives ``p2``, so None is returned for
    ``s <= 1``. Where EM converges linearly, by a common factor ``a`` per
    step, the step lands on the fixed point (``s = 1 / (1 - a)``); near a
    saddle the means leave, it goes on along their way out. The parameters
    returned obey ``reg``'s floors, ``reg_covar``, fixed variance and minimum weight; a
    coordinate that is not finite in all three (a log of a zero weight)
    keeps ``p2``'s value, and so do variances that ``reg`` fixes.

    Parameters
    ----------
    p0, p1, p2 : Params
        ``p1`` and ``p2`` the M-steps from ``p0`` and ``p1``.
    reg : Regularisation
        The level's regularisation (that of the M-steps).
    max_step : float, default=MAX_STEP
        Largest ``s``.

    Returns
    -------
    params : Params or None
    """
    x0, x1, x2 = (_coordinates(p) for p in (p0, p1, p2))
    use = np.isfinite(x0) & np.isfinite(x1) & np.isfinite(x2)
    n_means = p2.means.size
    if reg.fixed_var is not None:
        use[n_means : 2 * n_means] = False
    with np.errstate(invalid="ignore"):  # -inf - -inf where not used
        r = np.where(use, x1 - x0, 0.0)
        v = np.where(use, (x2 - x1) - r, 0.0)
    curvature = float(v @ v)
    if not curvature > 0.0:
        return None
    step = min(math.sqrt(float(r @ r) / curvature), max_step)
    if not step > 1.0:
        return None
    x = np.where(use, x0 + 2.0 * step * r + step**2 * v, x2)
    means = x[:n_means].reshape(p2.means.shape)
    moved = use[n_means : 2 * n_means].reshape(means.shape)
    variances = np.where(moved, np.exp(x[n_means : 2 * n_means]).reshape(means.shape), p2.variances)
    # At least what an M-step gives (reg_covar on top of a scatter, then the
    # floor): an empty component keeps the step's variances for good.
    variances = np.maximum(variances, np.maximum(reg.floor, reg.reg_covar))
    log_weights = x[2 * n_means :]
    finite = np.isfinite(log_weights)
    weights = np.where(finite, np.exp(log_weights - log_weights[finite].max()), 0.0)
    weights = floor_weights(weights / weights.sum(), reg.min_weight)
    return Params(weights, means, variances)
