"""Deterministic annealing: what each level of the outer loop changes.

A level is a number from the schedule. For ``annealing="floor"`` it is a
variance floor and for ``"fixed"`` every component's variance, both in
multiples of each feature's data variance; for ``"temperature"`` it is the
temperature ``T`` of the E-step, ``r`` proportional to ``(pi N) ** (1 / T)``.
The functions here turn a level into the M-step's regularisation and the
E-step's inverse temperature and say when a level has settled; the loop
over levels is in :mod:`natgmm._solver`. After the last level the final EM
runs with the user's own regularisation: the annealing is released, so the
fit ends at a maximum of the likelihood the user asked for.
"""

import numpy as np

# Relative size of the noise added to the means at each annealing level, in
# standard deviations times sqrt(level): breaks the exact symmetry of means
# that coincided above a critical level, so that they can split below it.
PERTURBATION = 1e-3

# The levels' E-steps compute in float32 (products and soft-max; sums and
# log-likelihood in float64) whatever the data's dtype: a level's fixed point
# is a step on the way, and the final EM, in the data's own precision, ends
# at a maximum of the likelihood (doc/annealing.rst, "Levels in float32").
FLOAT32_LEVELS = True


def annealing_levels(settings, critical_value):
    """Levels of the schedule for data of this critical value (checked)."""
    levels = settings.schedule.values(critical_value)
    if settings.annealing == "temperature" and np.any(levels < 1.0):
        raise ValueError(f"Temperatures must be at least 1, got {levels.min()}.")
    return levels


def level_settings(annealing, level, reg, standardiser):
    """Regularisation and inverse temperature of one annealing level."""
    if annealing == "temperature":
        return reg, 1.0 / level
    if annealing == "fixed":
        return reg._replace(fixed_var=level * standardiser.feature_var + reg.reg_covar), 1.0
    return reg._replace(floor=np.maximum(reg.floor, level * standardiser.feature_var)), 1.0


def mean_move(before, after):
    """Largest move of a mean, in standard deviations of its component after it."""
    return float(np.max(np.abs(after.means - before.means) / np.sqrt(after.variances)))


def split_levels(history):
    """Levels at which the number of distinct means grew: ``(level, n_distinct)`` rows."""
    level, n_distinct = history["level"], history["n_distinct"]
    grew = np.flatnonzero((np.diff(n_distinct) > 0) & np.isfinite(level[1:])) + 1
    return np.column_stack([level[grew], n_distinct[grew]]).astype(np.float64)


def perturb(params, level, standardiser, random_state):
    """Means moved by ``PERTURBATION * sqrt(level)`` standard deviations of noise."""
    noise = random_state.standard_normal(params.means.shape)
    offset = PERTURBATION * np.sqrt(level * standardiser.feature_var) * noise
    return params._replace(means=params.means + offset)
