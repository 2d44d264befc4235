"""One EM step: the E-step's sufficient statistics and the M-step's parameters.

:func:`e_step` asks a data source (in memory or Dask) for the summed
statistics of a pass under the current parameters; :func:`m_step` turns
them into new parameters. Everything here works on small
``(n_components, n_features)`` float64 arrays in the estimator's internal
(standardised) coordinates. Floors, the precision prior and the minimum
weight act here and nowhere else, whatever gathered the statistics.
"""

import math
from typing import NamedTuple

import numpy as np

from ._kernels import f32_operand_bias, m_step_moments

_EPS = np.finfo(np.float64).eps
_LOG_2PI = math.log(2.0 * math.pi)

ILL_DEFINED_COVARIANCE = (
    "Fitting the mixture model failed because some components have "
    "ill-defined empirical covariance (for instance caused by singleton "
    "or collapsed samples). Try to decrease the number of components, "
    "increase reg_covar, or scale the input data."
)
# A variance beyond float64's range can only come from the prior: the data's
# own scatter is in internal units (about one).
PRIOR_OVERFLOW = (
    "Fitting the mixture model failed because a component's variance overflowed: "
    "upper_precision_reg counts in sample weight (as a weighted scatter), and against "
    "sample weights this small it is beyond float64's range. Scale the sample weights "
    "up or upper_precision_reg down, alike."
)


class IllDefinedCovariance(ValueError):
    """An M-step gave a variance or mean that is not a positive finite number.

    A ValueError with scikit-learn's message (``ILL_DEFINED_COVARIANCE``);
    its own type lets a split-and-merge trial that collapses a component be
    dropped rather than end the fit.
    """


class Params(NamedTuple):
    """Mixture parameters in internal coordinates."""

    weights: np.ndarray  # (n_components,)
    means: np.ndarray  # (n_components, n_features)
    variances: np.ndarray  # (n_components, n_features)


class Stats(NamedTuple):
    """Sufficient statistics of one pass, accumulated about ``ref``.

    ``nk = sum w r``, ``s1 = sum w r (z - ref)``, ``s2 = sum w r (z - ref)^2``.
    Statistics about the same ``ref`` add up. With missing entries, ``s1``
    and ``s2`` sum over the rows observing each feature, and ``nkd = sum w r
    o`` (shape ``(n_components, n_features)``, ``o`` the observed indicator)
    holds their weights; None means every row observes every feature
    (``nkd = nk`` in every feature, see :func:`feature_weights`).
    """

    nk: np.ndarray
    s1: np.ndarray
    s2: np.ndarray
    ref: np.ndarray
    nkd: np.ndarray | None = None


def feature_weights(stats):
    """Return the weight behind ``s1`` and ``s2`` per feature: ``nkd``, or ``nk`` as a column."""
    return stats.nk[:, np.newaxis] if stats.nkd is None else stats.nkd


def scaled_stats(stats, factor):
    """Statistics of ``factor`` times the data of ``stats``."""
    nkd = None if stats.nkd is None else stats.nkd * factor
    return Stats(stats.nk * factor, stats.s1 * factor, stats.s2 * factor, stats.ref, nkd)


class Regularisation(NamedTuple):
    """What the M-step adds to maximum likelihood, in internal units.

    ``reg_covar``, ``floor`` and ``prior_b`` are per-feature variances (shape
    ``(n_features,)``); ``prior_a1`` is the Gamma shape minus one. When
    ``fixed_var`` is not None, every component's variances are held at it
    (raised to ``floor``) and only weights and means are estimated; the
    annealing schedule sets it, or raises ``floor``, level by level.
    """

    reg_covar: np.ndarray
    floor: np.ndarray
    prior_a1: float
    prior_b: np.ndarray
    min_weight: float
    fixed_var: np.ndarray | None = None


def natural_parameters(params):
    """Natural parameters and per-component log-normalisers.

    Returns
    -------
    eta1 : ndarray of shape (n_components, n_features)
        ``mean / var``.
    eta2 : ndarray of shape (n_components, n_features)
        ``-1 / (2 var)``.
    log_norm : ndarray of shape (n_components,)
        ``log weight - sum_d (mean^2 / (2 var) + log(2 pi var) / 2)``, so that
        ``log(weight N(z)) = sum_d z (eta1 + eta2 z) + log_norm``. It is
        computed from the mean and variance directly, not from ``eta``, to keep
        full precision; a zero weight gives ``-inf``.
    log_weight : ndarray of shape (n_components,)
        ``log weight``, for log-densities taken about the means (the kernels'
        ``centred_components``).
    """
    weights, means, var = params
    eta1 = means / var
    eta2 = -0.5 / var
    with np.errstate(divide="ignore"):
        log_w = np.log(weights)
    log_norm = log_w - np.sum(0.5 * means * eta1 + 0.5 * (_LOG_2PI + np.log(var)), axis=1)
    return eta1, eta2, log_norm, log_w


def masked_natural_parameters(params):
    """Natural parameters with the log-normalisers feature by feature.

    Returns
    -------
    eta1, eta2 : ndarray of shape (n_components, n_features)
        As in :func:`natural_parameters`.
    feature_norm : ndarray of shape (n_components, n_features)
        ``-(mean^2 / (2 var) + log(2 pi var) / 2)``: the log-normaliser of
        each feature, so that a row's log-density over its observed features
        is ``sum_(d observed) (z eta1 + z^2 eta2 + feature_norm) + log_weight``.
    log_weight : ndarray of shape (n_components,)
        ``log weight`` (``-inf`` for a zero weight).
    """
    weights, means, var = params
    eta1 = means / var
    eta2 = -0.5 / var
    with np.errstate(divide="ignore"):
        log_weight = np.log(weights)
    feature_norm = -(0.5 * means * eta1 + 0.5 * (_LOG_2PI + np.log(var)))
    return eta1, eta2, feature_norm, log_weight


def e_step(data, standardiser, params, beta=1.0, float32=False):
    """Fused E-step over ``data``: summed log-likelihood and statistics.

    Parameters
    ----------
    data : ArrayData or DaskData
        The data source; its ``em_stats`` runs the kernel over all rows.
    standardiser : Standardiser
        The map of the rows to internal coordinates.
    params : Params
        Current parameters in internal coordinates.
    beta : float, default=1.0
        Inverse temperature of the responsibilities (annealing).
    float32 : bool, default=False
        Products and soft-max in float32 whatever the data's dtype (see
        :func:`natgmm._kernels.em_stats`).

    Returns
    -------
    loglik : float
        Weighted sum of the rows' log-densities in internal coordinates; at
        ``beta < 1``, of the tempered objective (see
        :func:`natgmm._kernels.em_stats`).
    stats : Stats
        Summed statistics about the current means.

    Notes
    -----
    For data with missing entries (``data.missing``) the log-likelihood is
    that of the observed entries, each row's responsibilities come from its
    observed entries, and the statistics carry per-feature weights ``nkd``.
    """
    if data.missing:
        loglik, nk, nkd, s1, s2 = data.em_stats_masked(
            standardiser.shift, standardiser.scale, *masked_natural_parameters(params),
            params.means, beta, float32,
        )  # fmt: skip
        return loglik, Stats(nk, s1, s2, params.means, nkd)
    loglik, nk, s1, s2 = data.em_stats(
        standardiser.shift,
        standardiser.scale,
        *natural_parameters(params),
        params.means,
        beta,
        float32,
    )
    return loglik, Stats(nk, s1, s2, params.means)


def f32_rounding_bias(data, params, stats):
    """First-order change of a float32 E-step's log-likelihood from rounding its operands.

    For the pass of :func:`e_step` (``float32=True``) over ``data`` at
    ``params`` that gave ``stats``: its log-likelihood less this one is
    float64's to the roundings of the rows and of the products, which
    average out over the rows (:func:`natgmm._kernels.f32_operand_bias`).
    0.0 for data with missing entries.
    """
    if stats.nkd is not None:
        # With missing entries other roundings weigh as much (the bias
        # taken the same way changed the rounding by a few per cent,
        # doc/performance.rst): none is taken off.
        return 0.0
    eta1, eta2, log_norm, _ = natural_parameters(params)
    return f32_operand_bias(data.dtype, eta1, eta2, log_norm, *stats[:4])


def floor_weights(weights, min_weight):
    """Raise every weight to at least ``min_weight`` and renormalise.

    The weights that were raised are held at ``min_weight`` and the others
    rescaled to fill the remaining mass, repeated until no rescaled weight
    falls below the minimum (at most ``n_components`` rounds). Requires
    ``n_components * min_weight < 1``.
    """
    if min_weight <= 0.0:
        return weights
    weights = weights.copy()
    held = np.zeros(weights.shape, dtype=bool)
    for _ in range(weights.shape[0]):
        low = ~held & (weights < min_weight)
        if not low.any():
            break
        held |= low
        free = ~held
        weights[held] = min_weight
        free_mass = weights[free].sum()
        if free_mass > 0:
            weights[free] *= (1.0 - min_weight * held.sum()) / free_mass
    return weights


def empty_components(nk):
    """Components whose weight is below ``eps`` times the total: no mass.

    The compiled M-step (:func:`~natgmm._kernels.m_step_moments`) applies the
    same rule; this is the gradient solver's.
    """
    return nk <= _EPS * nk.sum()


# m_step_moments' "none" for nkd and fixed_var.
_NONE, _NONE_ROW = np.empty((0, 0)), np.empty(0)


def _row(values, n_features):
    """``values`` as a writeable C-ordered float64 ``(n_features,)`` array.

    The one array type :func:`~natgmm._kernels.m_step_moments` is compiled
    for (a read-only or broadcast view would compile it again); the
    regularisation's own arrays pass through uncopied.
    """
    values = np.asarray(values, dtype=np.float64)
    if values.shape == (n_features,) and values.flags.c_contiguous and values.flags.writeable:
        return values
    return np.array(np.broadcast_to(values, (n_features,)))


def m_step(stats, reg, previous=None):
    """Maximum-a-posteriori parameters from summed statistics.

    Parameters
    ----------
    stats : Stats
        Summed sufficient statistics.
    reg : Regularisation
        Floors, prior and minimum weight in internal units.
    previous : Params or None
        Parameters that produced ``stats``. A component that received no mass
        (``nk`` below ``eps`` times the total) keeps its previous mean and
        variance, since the data say nothing about them; its weight drops to
        ``min_weight``. Likewise a feature that none of a component's rows
        observes (``nkd`` below ``eps`` times the total) keeps its previous
        mean and variance in that component.

    Returns
    -------
    params : Params
    empty : ndarray of bool, shape (n_components,)
        Components that received no mass.

    Notes
    -----
    With ``a1 = prior_a1`` and ``b = prior_b`` the variance is the mode of
    the posterior under a Gamma(a1 + 1, b) prior on each precision,
    ``var = (S + 2 b) / (nk + 2 a1) + reg``, then raised to ``floor``; ``S``
    is the weighted scatter about the new mean. With ``a1 = b = 0`` this is
    scikit-learn's estimate, including its ``10 * eps`` added to ``nk``.
    With missing entries, means and variances use each feature's weight
    ``nkd`` in place of ``nk`` (the exact M-step of EM for the observed
    entries); the weights use ``nk``.
    """
    nk, s1, s2, ref = stats[:4]
    n_features = s1.shape[1]
    means, var, empty, valid = m_step_moments(
        nk, _NONE if stats.nkd is None else stats.nkd, s1, s2, ref, float(reg.prior_a1),
        _row(reg.prior_b, n_features), _row(reg.reg_covar, n_features),
        _NONE_ROW if reg.fixed_var is None else _row(reg.fixed_var, n_features),
        _row(reg.floor, n_features), _EPS,
    )  # fmt: skip
    if previous is not None and (empty.any() or stats.nkd is not None):
        # Keep the previous parameters where the data say nothing.
        unseen = (
            np.zeros_like(means, dtype=bool) if stats.nkd is None else stats.nkd <= _EPS * nk.sum()
        )
        unseen[empty] = True
        means[unseen] = previous.means[unseen]
        var[unseen] = previous.variances[unseen]
        var = np.maximum(var, reg.floor)
        valid = np.all(var > 0.0) and np.all(np.isfinite(var)) and np.all(np.isfinite(means))
    if not valid:
        overflow = np.any(np.isposinf(var) & (np.asarray(reg.prior_b) > 0.0))
        raise IllDefinedCovariance(PRIOR_OVERFLOW if overflow else ILL_DEFINED_COVARIANCE)
    nk_eff = nk + 10.0 * _EPS
    weights = floor_weights(nk_eff / nk_eff.sum(), reg.min_weight)
    return Params(weights, means, var), empty


def combine(a, b, weight_a, weight_b):
    """Statistics of ``weight_a`` times ``a``'s data plus ``weight_b`` times ``b``'s.

    The pairwise update of Chan, Golub and LeVeque: exact and free of
    cancellation, whatever the two reference points. Online EM's step
    ``(1 - rho) * running + rho * batch`` is ``combine(running, batch, 1 - rho,
    rho / batch_weight)``. The result has ``s1 = 0``: it is accumulated about
    its own means. With missing entries on either side, the same update runs
    feature by feature on the per-feature weights (:func:`_combine_masked`).
    """
    if a.nkd is not None or b.nkd is not None:
        return _combine_masked(a, b, weight_a, weight_b)
    n_a, n_b = weight_a * a.nk, weight_b * b.nk
    n = n_a + n_b
    safe = [np.where(v > 0, v, 1.0)[:, np.newaxis] for v in (a.nk, b.nk, n)]
    mean_a = a.ref + a.s1 / safe[0]
    mean_b = b.ref + b.s1 / safe[1]
    scatter_a = np.maximum(a.s2 - a.s1**2 / safe[0], 0.0)
    scatter_b = np.maximum(b.s2 - b.s1**2 / safe[1], 0.0)
    mean = np.where(
        n[:, np.newaxis] > 0, (n_a[:, None] * mean_a + n_b[:, None] * mean_b) / safe[2], mean_a
    )
    scatter = (
        weight_a * scatter_a
        + weight_b * scatter_b
        + (n_a * n_b)[:, np.newaxis] / safe[2] * (mean_a - mean_b) ** 2
    )
    return Stats(n, np.zeros_like(mean), scatter, mean)


def _combine_masked(a, b, weight_a, weight_b):
    """:func:`combine` with per-feature weights (``nkd``) on at least one side."""
    count_a, count_b = feature_weights(a), feature_weights(b)
    n_a, n_b = weight_a * count_a, weight_b * count_b
    n = n_a + n_b
    safe_a, safe_b, safe = (np.where(v > 0, v, 1.0) for v in (count_a, count_b, n))
    mean_a = a.ref + a.s1 / safe_a
    mean_b = b.ref + b.s1 / safe_b
    scatter_a = np.maximum(a.s2 - a.s1**2 / safe_a, 0.0)
    scatter_b = np.maximum(b.s2 - b.s1**2 / safe_b, 0.0)
    mean = np.where(n > 0, (n_a * mean_a + n_b * mean_b) / safe, mean_a)
    scatter = (
        weight_a * scatter_a + weight_b * scatter_b + n_a * n_b / safe * (mean_a - mean_b) ** 2
    )
    nk = weight_a * a.nk + weight_b * b.nk
    return Stats(nk, np.zeros_like(mean), scatter, mean, np.broadcast_to(n, mean.shape).copy())


def implied_stats(params, total_weight, reg_var):
    """Statistics whose maximum-likelihood estimate is ``params``.

    Seeds online EM's running statistics from any starting parameters; the
    variances lose ``reg_var`` (``reg_covar``), which the M-step adds back.
    """
    nk = params.weights * total_weight
    scatter = np.maximum(params.variances - reg_var, 0.0) * nk[:, np.newaxis]
    return Stats(nk, np.zeros_like(params.means), scatter, params.means)
