"""Slow, obviously correct numpy references for the kernels."""

import numpy as np
from scipy.spatial.distance import pdist, squareform
from scipy.special import logsumexp


def weighted_log_prob(Z, weights, means, variances):
    """log(weight_k N(z_i | mean_k, diag(var_k))) for every row and component."""
    diff = Z[:, np.newaxis, :] - means[np.newaxis, :, :]
    log_dens = -0.5 * np.sum(
        np.log(2 * np.pi * variances)[np.newaxis] + diff**2 / variances[np.newaxis], axis=2
    )
    with np.errstate(divide="ignore"):
        return log_dens + np.log(weights)[np.newaxis]


def em_stats(Z, sample_weight, weights, means, variances, ref, beta=1.0):
    """Weighted log-likelihood and statistics about ``ref`` (tempered by ``beta``).

    At ``beta != 1`` the first value is the tempered objective, the weighted
    sum of ``logsumexp(beta * log(weight_k N)) / beta`` over the rows.
    """
    wlp = weighted_log_prob(Z, weights, means, variances)
    tempered = beta * wlp
    log_norm = logsumexp(tempered, axis=1) / beta
    resp = np.exp(tempered - logsumexp(tempered, axis=1)[:, np.newaxis])
    resp *= sample_weight[:, np.newaxis]
    nk = resp.sum(axis=0)
    s1 = np.stack([resp[:, k] @ (Z - ref[k]) for k in range(len(weights))])
    s2 = np.stack([resp[:, k] @ (Z - ref[k]) ** 2 for k in range(len(weights))])
    return float(sample_weight @ log_norm), nk, s1, s2


def log_prob(Z, weights, means, variances):
    """Per-row log-density, first argmax component, responsibilities."""
    wlp = weighted_log_prob(Z, weights, means, variances)
    log_norm = logsumexp(wlp, axis=1)
    return log_norm, np.argmax(wlp, axis=1), np.exp(wlp - log_norm[:, np.newaxis])


def label_stats(Z, sample_weight, labels, ref):
    """Statistics of a hard assignment about ``ref``."""
    n_components = ref.shape[0]
    nk = np.array([sample_weight[labels == k].sum() for k in range(n_components)])
    s1 = np.stack(
        [sample_weight[labels == k] @ (Z[labels == k] - ref[k]) for k in range(n_components)]
    )
    s2 = np.stack(
        [sample_weight[labels == k] @ (Z[labels == k] - ref[k]) ** 2 for k in range(n_components)]
    )
    return nk, s1, s2


def observed_log_prob(Z, weights, means, variances):
    """Per-row log-density of the observed (non-NaN) entries, first argmax, responsibilities.

    Row by row: the mixture restricted to the row's observed features, each
    feature's density from ``scipy.stats.norm``; a row with none has
    density 1 and the weights as responsibilities.
    """
    from scipy.stats import norm

    n_samples, n_components = Z.shape[0], len(weights)
    wlp = np.empty((n_samples, n_components))
    with np.errstate(divide="ignore"):
        log_w = np.log(weights)
    for i, z in enumerate(Z):
        seen = ~np.isnan(z)
        for k in range(n_components):
            dens = norm.logpdf(z[seen], means[k, seen], np.sqrt(variances[k, seen]))
            wlp[i, k] = log_w[k] + dens.sum()
    log_norm = logsumexp(wlp, axis=1)
    return log_norm, np.argmax(wlp, axis=1), np.exp(wlp - log_norm[:, np.newaxis])


def observed_em_stats(Z, sample_weight, weights, means, variances, ref, beta=1.0):
    """Log-likelihood of the observed entries and statistics over them: ll, nk, nkd, s1, s2.

    At ``beta != 1`` the log-likelihood is the tempered objective, as in
    :func:`em_stats`.
    """
    log_norm, _, _ = observed_log_prob(Z, weights, means, variances)
    # Tempered responsibilities: the soft-max of beta times the weighted log-densities.
    resp = np.stack([observed_log_prob(z[np.newaxis], weights, means, variances)[2][0] for z in Z])
    if beta != 1.0:
        with np.errstate(divide="ignore"):
            wlp = np.log(resp) + log_norm[:, np.newaxis]
        log_norm = logsumexp(beta * wlp, axis=1) / beta
        resp = np.exp(beta * wlp - logsumexp(beta * wlp, axis=1)[:, np.newaxis])
    resp *= sample_weight[:, np.newaxis]
    seen = ~np.isnan(Z)
    nk = resp.sum(axis=0)
    nkd = resp.T @ seen
    s1 = np.stack([resp[:, k] @ np.where(seen, Z - ref[k], 0.0) for k in range(len(weights))])
    s2 = np.stack([resp[:, k] @ np.where(seen, Z - ref[k], 0.0) ** 2 for k in range(len(weights))])
    return float(sample_weight @ log_norm), nk, nkd, s1, s2


def count_distinct(points, tol):
    """Rows not within ``tol`` (max-norm) of an earlier row, by scipy's pairwise distances."""
    close = squareform(pdist(points, "chebyshev") < tol)
    return len(points) - int(np.triu(close, 1).any(axis=0).sum())


def exact_shifted_dots(x, shift, C):
    """``(x - shift) @ C.T`` summed exactly (fractions) after the one rounding of ``x - shift``."""
    from fractions import Fraction

    u = x.astype(np.float64) - shift
    return [sum(Fraction(a) * Fraction(b) for a, b in zip(u, row, strict=True)) for row in C]


def partial_e_step(Z, observed, sample_weight, log_other, weights, means, variances):
    """Split-and-merge's partial E-step: ``log_other`` holds the other components' mass.

    Returns the weighted log-likelihood and, for the free components, ``nk``,
    ``nkd``, ``s1`` and ``s2`` about ``means`` over the observed entries
    (``observed`` None: all).
    """
    obs = np.ones(Z.shape, dtype=bool) if observed is None else observed
    diff = (Z[:, np.newaxis, :] - means[np.newaxis]) * obs[:, np.newaxis, :]
    terms = (np.log(2 * np.pi * variances) + diff**2 / variances) * obs[:, np.newaxis, :]
    with np.errstate(divide="ignore"):
        log_dens = np.log(weights) - 0.5 * terms.sum(axis=2)
    log_p = np.logaddexp(log_other, logsumexp(log_dens, axis=1))
    resp = np.exp(log_dens - log_p[:, np.newaxis]) * sample_weight[:, np.newaxis]
    s1 = np.stack([resp[:, k] @ diff[:, k] for k in range(len(weights))])
    s2 = np.stack([resp[:, k] @ diff[:, k] ** 2 for k in range(len(weights))])
    return float(sample_weight @ log_p), resp.sum(axis=0), resp.T @ obs, s1, s2


def m_step_moments(nk, nkd, s1, s2, ref, a1, b, reg_covar, fixed_var, floor, eps):
    """The M-step's means, variances and empty components, in numpy: the formula, array by array.

    ``nkd`` (per-feature weights) and ``fixed_var`` may be None. The variances
    are raised to ``floor``; ``valid``: every mean and variance finite and
    every variance positive.
    """
    counts = (nk + 10.0 * eps)[:, np.newaxis] if nkd is None else nkd + 10.0 * eps
    delta = s1 / counts
    means = ref + delta
    scatter = np.maximum(s2 - s1 * delta, 0.0)
    var = (scatter + 2.0 * b) / (counts + 2.0 * a1) + reg_covar
    if fixed_var is not None:
        var = np.broadcast_to(fixed_var, var.shape).copy()
    var = np.maximum(var, floor)
    empty = nk <= eps * nk.sum()
    valid = bool(np.all(var > 0.0) and np.all(np.isfinite(var)) and np.all(np.isfinite(means)))
    return means, var, empty, valid
