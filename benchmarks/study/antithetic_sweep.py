"""Study prototype (not in the estimator): opposite offsets within groups of coincident means.

The estimator adds independent noise to every mean as it enters each
annealing level (``natgmm._anneal.enter_level``), so the copies of a mean
that go to each side of a split are drawn at random. This replaces the
noise by pairs of opposite offsets within each group of coincident means
(the copies split evenly), keeping the level's constraints on the
variances, then runs ``sweep.py`` with the same arguments.

RESULTS.md's "it lost: 10/26 and 8/26" at K=20 was measured with an
earlier version that patched ``natgmm._solver.perturb``, before the
perturbation moved into ``enter_level`` and the level's constraints were
applied on entry; this version has not been rerun. Run from the
repository root::

    python benchmarks/study/antithetic_sweep.py k20 "dict(annealing='temperature')"
"""

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import sweep  # noqa: E402

import natgmm._solver as solver  # noqa: E402
from natgmm._anneal import NOISE_SPREAD, PERTURBATION  # noqa: E402

# The solver calls the name it imported; fail loudly if it is gone rather
# than silently run the plain sweep.
assert hasattr(solver, "enter_level"), "natgmm._solver.enter_level is gone: update this patch"
_enter_level = solver.enter_level
calls = 0  # how many levels the patch entered, printed at the end


def groups_of(points, tol):
    """Group rows within tol (max-norm) of the first row of their group."""
    n = len(points)
    group = -np.ones(n, dtype=int)
    g = 0
    for i in range(n):
        if group[i] >= 0:
            continue
        close = np.max(np.abs(points - points[i]), axis=1) < tol
        close &= group < 0
        group[close] = g
        g += 1
    return group


class _NoNoise:
    """A random state whose noise is zero: ``enter_level`` then only applies the constraints."""

    def standard_normal(self, shape):
        return np.zeros(shape)


def enter_level(params, level, level_reg, standardiser, random_state, beta=1.0):
    """``enter_level`` with opposite offsets for pairs of coincident means; a lone mean stays.

    The offsets' scale is ``enter_level``'s: the level's spread of each
    feature, at most ``NOISE_SPREAD`` times each component's own variance
    at the level (its variance over ``beta``).
    """
    global calls
    calls += 1
    params = _enter_level(params, level, level_reg, standardiser, _NoNoise(), beta)
    own = NOISE_SPREAD * params.variances / beta
    sd = np.sqrt(np.minimum(level * standardiser.feature_var, own))
    spread = np.sqrt(np.where(standardiser.feature_var > 0, standardiser.feature_var, 1.0))
    rel = params.means / spread
    group = groups_of(rel, 1e-2)
    noise = random_state.standard_normal(params.means.shape)
    offset = np.zeros_like(params.means)
    for g in np.unique(group):
        members = np.flatnonzero(group == g)
        if members.size < 2:
            continue
        # Pairs of opposite offsets: the copies split evenly between the two
        # sides of whatever direction turns unstable.
        for j in range(0, members.size - 1, 2):
            v = noise[members[j]]
            offset[members[j]] = v
            offset[members[j + 1]] = -v
        # An odd one out stays where it is.
    return params._replace(means=params.means + PERTURBATION * sd * offset)


if __name__ == "__main__":
    solver.enter_level = enter_level
    sweep.main(description=__doc__)
    print(f"patched enter_level: {calls} levels entered")
