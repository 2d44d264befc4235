"""Study prototype (not in the estimator): opposite offsets within groups of coincident means.

The estimator adds independent noise to every mean at each annealing level,
so the copies of a mean that go to each side of a split are drawn at random.
This replaces ``natgmm._solver.perturb`` by pairs of opposite offsets within
each group of coincident means (the copies split evenly), then runs
``sweep.py``. Measured at K=20 in RESULTS.md (it lost: 10/26 and 8/26).
Run from the repository root::

    python benchmarks/study/antithetic_sweep.py k20 "dict(annealing='temperature')"
"""

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import sweep  # noqa: E402

import natgmm._solver as solver  # noqa: E402
from natgmm._anneal import PERTURBATION  # noqa: E402


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


def perturb(params, level, standardiser, random_state):
    """Opposite offsets for pairs of coincident means; a lone mean stays put."""
    sd = np.sqrt(level * standardiser.feature_var)
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


solver.perturb = perturb
sweep.main()
