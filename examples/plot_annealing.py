r"""
======================================================
Annealing trajectories: clusters appear level by level
======================================================

Deterministic annealing fits a mixture through a decreasing sequence of
levels. For ``annealing="fixed"`` a level is every component's variance, for
``"floor"`` a variance floor (both in multiples of each feature's variance),
and for ``"temperature"`` the temperature :math:`T` of the tempered E-step
:math:`r_{ik} \propto (\pi_k \mathcal N(x_i \mid k))^{1/T}`. The schedule
starts at 1.2 times the data's critical value (``critical_value_``, the top
eigenvalue of the correlation matrix), where every mean sits at the data
mean, and the means split as the level falls.

``history_`` records, at every EM iteration, the log-likelihood (at a
temperature level, the tempered objective that the level's EM steps
increase, which falls to the log-likelihood at :math:`T = 1`), the level
and the number of distinct means. Here they are for the three modes on six
blobs along a slanted line (correlated features, so the critical value is
well above 1), beside scikit-learn's
``GaussianMixture(covariance_type="diag", n_init=5)``. Each fit starts from
the pooled solution (every component at the data's mean and variance), the
means split as the levels pass the clusters' critical values, and a final
EM with the annealing released ends the annealing; split-and-merge moves
(``split_merge``, shaded) may follow.
"""

import warnings

import matplotlib.pyplot as plt
import numpy as np
from sklearn.datasets import make_blobs
from sklearn.exceptions import ConvergenceWarning
from sklearn.metrics import normalized_mutual_info_score
from sklearn.mixture import GaussianMixture

from natgmm import NaturalDiagonalGMM

CENTRES = [[-6, -5], [-3, -1], [0, 0.5], [3, 2], [6, 5], [2, -3]]
Z, y = make_blobs(1500, centers=CENTRES, cluster_std=0.8, random_state=0)
K = len(CENTRES)

reference = GaussianMixture(K, covariance_type="diag", n_init=5, random_state=0).fit(Z)
print(
    f"sklearn n_init=5: log-likelihood {reference.score(Z):.4f}, "
    f"NMI {normalized_mutual_info_score(y, reference.predict(Z)):.3f}"
)

models = {}
for mode in ("fixed", "floor", "temperature"):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        # anneal_tol=0: every level runs its 30 iterations, so the splitting
        # shows; the default ends a level once its means stop moving, in far
        # fewer iterations.
        models[mode] = NaturalDiagonalGMM(
            K, annealing=mode, anneal_max_iter=30, anneal_tol=0.0, random_state=0
        ).fit(Z)
    model = models[mode]
    print(
        f"annealing={mode!r:13s}: log-likelihood {model.score(Z):.4f}, "
        f"NMI {normalized_mutual_info_score(y, model.labels_):.3f}, "
        f"{model.n_iter_} iterations, critical value {model.critical_value_:.3f}"
    )

# %%
# Log-likelihood and distinct means along the fit
# -----------------------------------------------
# One row per mode. Left: the mean log-likelihood at every EM iteration,
# levels and final EM alike, beside scikit-learn's best of five starts (for
# ``"temperature"``, the tempered objective at its levels: above the
# log-likelihood, and equal to it at T = 1; its downward spikes are
# accelerated steps that overshot and were refused).
# Right: the number of distinct means (left axis) and the level (right
# axis, logarithmic; the final EM has no level). Above the critical value
# (dashed) every mean sits at the data's mean; after the level passes below
# it they split, and the log-likelihood climbs level by level; the shaded
# iterations are split-and-merge moves, kept only where they end higher (a
# refused move's iterations end lower: the star marks the fit kept,
# ``lower_bound_``). With
# ``"fixed"``, the last levels hold every variance below the clusters' own,
# which costs likelihood until the final EM frees the variances.
fig, axes = plt.subplots(3, 2, figsize=(7.5, 9), sharex=True, layout="constrained")
entries = {}  # the left panels' legend, below the figure: inside, it hid the curves
for (mode, model), (ax_ll, ax_k) in zip(models.items(), axes, strict=True):
    h = model.history_
    iterations = np.arange(1, model.n_iter_ + 1)
    ax_ll.plot(iterations, h["lower_bound"], color="C0", label="natgmm, annealed")
    moves = iterations[h["move"] > 0]
    if moves.size:  # each move starts afresh, below the fit it may replace
        ax_ll.axvspan(moves[0] - 0.5, moves[-1] + 0.5, color="0.9", label="split-and-merge")
    ax_ll.axhline(reference.score(Z), color="k", ls=":", lw=1.2, label="sklearn n_init=5")
    ax_ll.plot(
        model.n_iter_, model.lower_bound_, "*", color="C3", ms=11, label="fit kept (lower_bound_)"
    )
    ylabel = "mean log-likelihood" + (" (tempered)" if mode == "temperature" else "")
    ax_ll.set(title=f"annealing={mode!r}", ylabel=ylabel)
    entries.update(zip(*reversed(ax_ll.get_legend_handles_labels()), strict=True))

    means = ax_k.step(iterations, h["n_distinct"], where="post", color="C1", label="distinct means")
    ax_k.set(ylabel="distinct means", ylim=(0, K + 4))
    ax_level = ax_k.twinx()
    if mode == "temperature":
        name, critical, critical_label = "temperature", 1.0, "T = 1"
    else:
        name, critical = "level", model.critical_value_
        critical_label = "critical value"
    level = ax_level.semilogy(iterations, h["level"], color="C2", lw=1.2, label=name)
    line = ax_level.axhline(critical, color="C2", ls="--", lw=1, label=critical_label)
    ax_level.set_ylabel("temperature" if mode == "temperature" else "level (x feature variance)")
    # Both curves in the lower two thirds of the panel, the legend above them.
    # (The final EM has no level: NaN, a gap at the end of the curve.)
    levels = h["level"][np.isfinite(h["level"])]
    low, high = np.log10(min(levels.min(), critical)), np.log10(levels.max())
    ax_level.set_ylim(10 ** (low - 0.05 * (high - low)), 10 ** (low + (high - low) / 0.62))
    ax_level.legend(
        handles=[*means, *level, line], loc="upper center", ncols=2, fontsize="small",
        columnspacing=1.0, handlelength=1.5,
    )  # fmt: skip
axes[-1, 0].set_xlabel("EM iteration")
axes[-1, 1].set_xlabel("EM iteration")
fig.legend(entries.values(), entries.keys(), loc="outside lower left", ncols=2)
plt.show()

# %%
# Distinct means against the level
# --------------------------------
# The same runs, with the level on the horizontal axis (falling from left to
# right), for the two variance modes. The dashed line marks the critical
# value.
fig, ax = plt.subplots(figsize=(7, 4), layout="constrained")
for mode in ("fixed", "floor"):
    h = models[mode].history_
    ax.semilogx(h["level"], h["n_distinct"], ".-", label=f"annealing={mode!r}")
ax.axvline(models["fixed"].critical_value_, color="k", ls="--", lw=1, label="critical value")
ax.invert_xaxis()
ax.set(xlabel="level (multiple of each feature's variance)", ylabel="distinct means")
ax.legend()
plt.show()
