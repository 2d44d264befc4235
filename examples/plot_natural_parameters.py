r"""
=================================================
Natural parameters, variance floors and the prior
=================================================

natgmm stores each component through its natural parameters,
:math:`\eta_1 = \mu / \sigma^2` and :math:`\eta_2 = -1 / (2 \sigma^2)`, so
that the log-density is linear in them:
:math:`\log \mathcal N(x) = \eta_1 x + \eta_2 x^2 + \text{const}`. A
variance :math:`\sigma^2 \to 0` sends :math:`\eta_2 \to -\infty`;
:math:`\eta_2 \to 0` is an infinite variance. Floors and the precision prior
keep :math:`\eta_2` between the two.

The data here are one broad cluster of 200 points and one tight cluster of
8 nearly identical points. Without regularisation the tight component's
variance is that of its 8 points, about :math:`10^{-4}`, and its
:math:`\eta_2` is in the thousands.
"""

# %%
# Data and an unregularised fit
# -----------------------------
import warnings

import matplotlib.pyplot as plt
import numpy as np

from natgmm import NaturalDiagonalGMM

rng = np.random.default_rng(0)
X = np.concatenate([rng.normal(0.0, 1.0, 200), rng.normal(5.0, 0.01, 8)]).reshape(-1, 1)
data_var = X.var()


def fit(**params):
    """Two-component fit; returns (tight, broad) variances and the model.

    Every fit starts from the same parameters: one component on each
    cluster, with unit variances.
    """
    gmm = NaturalDiagonalGMM(
        2,
        weights_init=[200 / 208, 8 / 208],
        means_init=[[0.0], [5.0]],
        precisions_init=[[1.0], [1.0]],
        **params,
    ).fit(X)
    return gmm.covariances_[1, 0], gmm.covariances_[0, 0], gmm


settings = {
    "no regularisation": {},
    "min_variance_relative=0.01": {"min_variance_relative": 0.01},
    "upper_precision_reg=0.01": {"upper_precision_reg": 0.01},
    "Gamma prior a-1=4, b=0.4": {"lower_precision_reg": 4.0, "upper_precision_reg": 0.4},
}
print(f"data variance {data_var:.3f}")
print(f"{'setting':28s} {'var':>10s} {'eta1':>10s} {'eta2':>10s}   (tight component)")
models = {}
for name, params in settings.items():
    tight, broad, gmm = fit(**params)
    models[name] = gmm
    print(f"{name:28s} {tight:10.3g} {gmm.eta1_[1, 0]:10.4g} {gmm.eta2_[1, 0]:10.4g}")

# %%
# The fitted densities
# --------------------
# The floor and the prior widen the tight component, lowering its peak; the
# prior with ``a - 1 = 4`` and ``b = 0.4`` pulls every variance towards
# ``b / (a - 1) = 0.1`` with the strength of 8 pseudo-samples, so it also
# narrows the broad component a little.
# A fine grid around the tight cluster resolves its narrow peak.
grid = np.union1d(np.linspace(-4, 6.5, 1000), np.linspace(4.9, 5.1, 1000)).reshape(-1, 1)
fig, axes = plt.subplots(2, 2, figsize=(10, 6), sharex=True, layout="constrained")
for ax, (name, gmm) in zip(axes.ravel(), models.items(), strict=True):
    ax.hist(X[:, 0], bins=80, density=True, color="0.8", label="data (histogram)")
    ax.semilogy(grid[:, 0], np.exp(gmm.score_samples(grid)), "C0", label="fitted density")
    ax.set(title=name, ylim=(1e-3, 10))
for ax in axes[1]:
    ax.set_xlabel("x")
for ax in axes[:, 0]:
    ax.set_ylabel("density (log scale)")
axes[0, 0].legend(loc="upper left", fontsize="small")

# %%
# Each regulariser against its strength
# -------------------------------------
# Fitted variances of both components (left axes) and the corresponding
# :math:`-\eta_2 = 1 / (2 \sigma^2)` (right axes):
#
# - ``min_variance_relative=c`` is a floor, :math:`\sigma^2 \ge c \cdot
#   \mathrm{Var}(x)`: the tight variance follows the floor once the floor is
#   above it (dashed line); the broad one is untouched until the floor
#   reaches it.
# - ``upper_precision_reg=b`` adds :math:`2b` to each component's scatter:
#   :math:`\sigma^2 = (S + 2b) / N_k`. It matters for a component with
#   little weight and a small scatter, and hardly for the broad one.
# - ``lower_precision_reg=a-1`` with ``b`` adds :math:`2(a-1)` pseudo-samples
#   of variance :math:`b / (a-1)`: here :math:`b / (a-1) = 0.1` and both
#   variances move towards it, the one with 8 samples first.
floors = np.logspace(-6, 0, 13)
bs = np.logspace(-5, 1, 13)
a1s = np.logspace(-2, 3, 11)
with warnings.catch_warnings():
    # The sweep ends at c = 1, a floor at the data's variance, where natgmm
    # warns that every component is as wide as the data: shown on purpose.
    warnings.filterwarnings("ignore", message="min_variance_relative=1 holds")
    floor_fits = [fit(min_variance_relative=c) for c in floors]
sweeps = {
    "min_variance_relative": (floors, floor_fits),
    "upper_precision_reg": (bs, [fit(upper_precision_reg=b) for b in bs]),
    "lower_precision_reg (b = 0.1 (a-1))": (
        a1s,
        [fit(lower_precision_reg=a1, upper_precision_reg=0.1 * a1) for a1 in a1s],
    ),
}


def minus_eta2(variance):
    """-eta2 = 1 / (2 var); the map is its own inverse."""
    with np.errstate(divide="ignore"):
        return 0.5 / variance


fig, axes = plt.subplots(1, 3, figsize=(10, 3.8), sharey=True, layout="constrained")
for ax, (name, (strengths, fits)) in zip(axes, sweeps.items(), strict=True):
    ax.loglog(strengths, [f[0] for f in fits], "o-", ms=3, label="tight component")
    ax.loglog(strengths, [f[1] for f in fits], "s-", ms=3, label="broad component")
    ax.set(xlabel=name)
    secondary = ax.secondary_yaxis("right", functions=(minus_eta2, minus_eta2))
    if ax is axes[-1]:  # (beside a middle panel it would read as the next one's label)
        secondary.set_ylabel(r"$-\eta_2 = 1 / (2\,\mathrm{variance})$, right axes")
axes[0].loglog(floors, floors * data_var, "k--", lw=1, label="floor c Var(x)")
axes[2].axhline(0.1, color="k", ls=":", lw=1, label="b / (a-1)")
axes[0].set_ylabel("fitted variance")
for ax in axes:
    ax.legend(fontsize="small")
plt.show()

# %%
# In natgmm the floors and the prior act in the M-step, in the internally
# standardised coordinates, so ``min_variance`` and ``upper_precision_reg``
# are given in the units of ``X`` and mapped, while ``min_variance_relative``
# and ``lower_precision_reg`` are unitless. See :doc:`/natural_parameters`
# for the formulas.
