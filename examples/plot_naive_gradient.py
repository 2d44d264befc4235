r"""
=============================================================
A naive gradient fit in natural parameters turns NaN
=============================================================

Models that learn a mixture over latent codes by gradient descent often
take the natural parameters :math:`\eta_1 = \mu / \sigma^2` and
:math:`\eta_2 = -1 / (2\sigma^2)` as their variables, in the units of the
latents. Here the 10 factor-analysis latents of the digits are multiplied by
per-dimension factors from [40, 80], as raw latents often are, and a mixture
of 10 components is fitted three ways:

- a naive fit: Adam steps (learning rate :math:`10^{-3}`, gradient clipped
  to norm 1) on the weight logits, :math:`\eta_1` and :math:`\eta_2` in raw
  units, nothing keeping :math:`\eta_2` negative;
- the same naive fit on the latents standardised (mean 0, variance 1 per
  dimension);
- :class:`~natgmm.NaturalDiagonalGMM` on the raw latents, by EM.

At this scale a component as wide as the data has
:math:`\eta_2 \approx -10^{-4}`, and one Adam step moves it by up to the
learning rate: :math:`\eta_2` crosses 0, the variance turns negative and
the log-likelihood NaN (see :doc:`/collapse`).
"""

import matplotlib.pyplot as plt
import numpy as np
from scipy.special import log_softmax, logsumexp, softmax
from sklearn.datasets import load_digits
from sklearn.decomposition import FactorAnalysis
from threadpoolctl import threadpool_limits

from natgmm import NaturalDiagonalGMM

X, _ = load_digits(return_X_y=True)
with threadpool_limits(limits=1):
    Z = FactorAnalysis(10, svd_method="randomized", random_state=0).fit_transform(X)
Z_raw = Z * np.random.default_rng(0).uniform(40, 80, Z.shape[1])
K = 10


def naive_adam(X, n_steps, learning_rate=1e-3, clip=1.0, seed=0):
    """Adam on (logits, eta1, eta2); per step the largest eta2 and the log-likelihood."""
    rng = np.random.default_rng(seed)
    n_samples = X.shape[0]
    variance = np.tile(X.var(axis=0), (K, 1))
    params = [np.zeros(K), X[rng.choice(n_samples, K, replace=False)] / variance, -0.5 / variance]
    first = [np.zeros_like(p) for p in params]
    second = [np.zeros_like(p) for p in params]
    largest_eta2, log_lik = [], []
    with np.errstate(all="ignore"):
        for step in range(1, n_steps + 1):
            logits, eta1, eta2 = params
            largest_eta2.append(eta2.max())
            log_norm = (eta1**2 / (4 * eta2) + 0.5 * np.log(-eta2 / np.pi)).sum(axis=1)
            log_joint = X @ eta1.T + X**2 @ eta2.T + log_norm + log_softmax(logits)
            row_log_lik = logsumexp(log_joint, axis=1)
            log_lik.append(row_log_lik.mean())
            if not np.isfinite(log_lik[-1]):
                break
            resp = np.exp(log_joint - row_log_lik[:, None])
            mass = resp.mean(axis=0)
            mean, square = -eta1 / (2 * eta2), eta1**2 / (4 * eta2**2) - 0.5 / eta2
            grads = [
                mass - softmax(logits),
                resp.T @ X / n_samples - mass[:, None] * mean,
                resp.T @ X**2 / n_samples - mass[:, None] * square,
            ]
            norm = np.sqrt(sum((g**2).sum() for g in grads))
            grads = [g * min(1.0, clip / norm) for g in grads]
            for p, g, m, v in zip(params, grads, first, second, strict=True):
                m += 0.1 * (g - m)
                v += 0.001 * (g * g - v)
                p += learning_rate * (m / (1 - 0.9**step)) / (np.sqrt(v / (1 - 0.999**step)) + 1e-8)
    return np.array(largest_eta2), np.array(log_lik)


eta2_raw, ll_raw = naive_adam(Z_raw, 300)
scale = Z_raw.std(axis=0)
eta2_std, ll_std = naive_adam((Z_raw - Z_raw.mean(axis=0)) / scale, 300)
ll_std -= np.log(scale).sum()  # the log-likelihood of the raw latents
natgmm = NaturalDiagonalGMM(K, random_state=0).fit(Z_raw)

print(f"raw units: eta2 starts between {-0.5 / Z_raw.var(axis=0).min():.1e} and "
      f"{-0.5 / Z_raw.var(axis=0).max():.1e}")  # fmt: skip
print(f"naive, raw units: log-likelihood {ll_raw[-1]} after {len(ll_raw)} steps")
print(f"naive, standardised: log-likelihood {ll_std[-1]:.3f} after {len(ll_std)} steps")
print(
    f"natgmm EM, raw units: log-likelihood {natgmm.score(Z_raw):.3f} after "
    f"{natgmm.n_iter_} iterations, largest eta2 {natgmm.eta2_.max():.1e}"
)

# %%
# The figure
# ----------
# Left: the largest :math:`\eta_2` of the naive fit in raw units, step by
# step, until the log-likelihood is NaN (the cross). Right: the
# log-likelihood of the raw latents along the naive fit on standardised
# latents, which stays finite, and natgmm's EM fit of the raw latents
# (dashed), which works on internally standardised data.
fig, (ax_eta, ax_ll) = plt.subplots(1, 2, figsize=(9, 3.6), layout="constrained")
steps = np.arange(1, len(eta2_raw) + 1)
ax_eta.plot(steps, eta2_raw, "o-", color="C3", label="naive Adam, raw units")
ax_eta.axhline(0.0, color="k", lw=0.8, ls="--", label=r"$\eta_2 = 0$: infinite variance")
ax_eta.plot(steps[-1], eta2_raw[-1], "x", color="k", ms=12, mew=2, label="log-likelihood NaN")
ax_eta.set(xlabel="Adam step", ylabel=r"largest $\eta_2$", xticks=steps)
ax_eta.ticklabel_format(axis="y", style="sci", scilimits=(0, 0))
ax_eta.legend(loc="upper left")
ax_ll.plot(np.arange(1, len(ll_std) + 1), ll_std, color="C0", label="naive Adam, standardised")
ax_ll.axhline(natgmm.score(Z_raw), color="C2", ls="--", label="natgmm EM, raw units")
ax_ll.set(xlabel="Adam step", ylabel="mean log-likelihood (raw units)")
ax_ll.legend(loc="lower right")
plt.show()
