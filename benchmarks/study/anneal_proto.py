"""Prototype of annealed EM for the study of issue #15 (not the estimator).

A fast driver over natgmm's stable pieces (``natgmm._kernels.em_stats``,
``natgmm._em.m_step``, ``Regularisation``, ``Params``, ``Stats``,
``natural_parameters``) with its own standardisation ``z = (x - mean) / std``
passed to the kernels as ``shift``, ``scale``. Everything is in internal
(standardised) units, where each feature's variance is about 1, so a level
``v`` of "floor" or "fixed" is a variance of ``v`` times the feature's
variance and the data's critical value is the top eigenvalue of its
correlation matrix.

:func:`fit` runs one annealed fit for a :class:`Config` and returns the
parameters in user units, the train log-likelihood, the number of EM
iterations (passes over the data), the wall time and the history.
"""

import math
import time
from dataclasses import dataclass, field

import numpy as np
from scipy.special import logsumexp

from natgmm import _kernels
from natgmm._em import Params, Regularisation, Stats, m_step, natural_parameters

_MAX_BLOCKS, _BLOCK_ROWS = 64, 4096
_DISTINCT_TOL = 1e-2


def _n_blocks(n_samples):
    return min(_MAX_BLOCKS, 8 * -(-max(n_samples, 1) // (8 * _BLOCK_ROWS)))


@dataclass(frozen=True)
class Config:
    """One annealing algorithm.

    mode : "floor", "fixed", "temperature" or "none" (plain EM from ``start``).
    start : "pooled" (every component on the data mean with the data
        variance, equal weights; the first perturbation separates them) or
        "kmeans" (one k-means run, as natgmm's default init).
    n_levels, start_factor, stop : geometric levels from ``start_factor``
        times the critical value down to ``stop`` (``stop`` is a temperature,
        at least 1, for "temperature").
    level_rule : how a level ends, besides ``level_max_iter``:
        "ll": the gain in mean log-likelihood is below ``level_tol``;
        "param": the largest move of a mean, in standard deviations of its
        component, is below ``level_tol`` and not larger than the move
        before (a split under way accelerates, so it is never cut short);
        "fixed": never (every level runs ``level_max_iter`` iterations).
    final : "release" (final EM with the user's floor ``min_variance`` only)
        or "keep" (final EM keeps the last level as floor; "temperature":
        no difference).
    final_tol, max_iter : the final EM stops when its gain is below
        ``final_tol`` or after ``max_iter`` iterations.
    perturb : noise added to the means at each level, in standard
        deviations times sqrt(level) (natgmm's ``_PERTURBATION``).
    """

    mode: str = "floor"
    start: str = "pooled"
    n_levels: int = 12
    start_factor: float = 1.2
    stop: float = 0.01
    level_rule: str = "param"
    level_tol: float = 1e-2
    level_max_iter: int = 15
    level_min_iter: int = 2
    final: str = "release"
    final_tol: float = 1e-3
    max_iter: int = 500
    perturb: float = 1e-3
    min_variance: float = 0.0
    reg_covar: float = 1e-6
    label: str = field(default="", compare=False)

    def name(self):
        if self.label:
            return self.label
        if self.mode == "none":
            return f"em[{self.start}]"
        return (
            f"{self.mode}[{self.start},L{self.n_levels},{self.stop:g},{self.level_rule}"
            f"{self.level_tol:g}x{self.level_max_iter},{self.final},{self.final_tol:g}]"
        )


@dataclass
class Result:
    weights: np.ndarray
    means: np.ndarray
    variances: np.ndarray
    train: float
    n_iter: int
    seconds: float
    history: dict
    critical_value: float


class _Problem:
    def __init__(self, X, cfg):
        self.X = np.ascontiguousarray(X, dtype=np.float64)
        n, d = self.X.shape
        self.n = n
        mean = self.X.mean(axis=0)
        var = self.X.var(axis=0)
        self.shift = mean
        self.scale = 1.0 / np.sqrt(var + cfg.reg_covar + cfg.min_variance)
        self.feature_var = var * self.scale**2
        self.log_jacobian = float(np.sum(np.log(self.scale)))
        self.sw = np.empty(0)
        self.n_blocks = _n_blocks(n)
        s2 = self.scale**2
        self.reg = Regularisation(
            reg_covar=np.full(d, cfg.reg_covar) * s2,
            floor=np.full(d, cfg.min_variance) * s2,
            prior_a1=0.0,
            prior_b=np.zeros(d),
            min_weight=0.0,
        )
        self.relative = np.sqrt(np.where(self.feature_var > 0, self.feature_var, 1.0))

    def critical_value(self):
        z = (self.X - self.shift) * self.scale
        cov = z.T @ z / self.n
        spread = np.sqrt(np.diag(cov))
        keep = spread > 0
        corr = cov[np.ix_(keep, keep)] / np.outer(spread[keep], spread[keep])
        return float(np.linalg.eigvalsh(corr)[-1])

    def e_step(self, params, beta=1.0):
        eta1, eta2, log_norm, log_weight = natural_parameters(params)
        loglik, nk, s1, s2 = _kernels.em_stats(
            self.X, self.sw, self.shift, self.scale, eta1, eta2, log_norm, log_weight, params.means,
            self.n_blocks, True, beta,
        )  # fmt: skip
        return loglik / self.n + self.log_jacobian, Stats(nk, s1, s2, params.means)

    def to_user(self, params):
        return (
            params.weights.copy(),
            params.means / self.scale + self.shift,
            params.variances / self.scale**2,
        )


def _n_distinct(relative_means):
    from scipy.spatial.distance import pdist, squareform

    close = squareform(pdist(relative_means, "chebyshev") < _DISTINCT_TOL)
    return len(relative_means) - int(np.triu(close, 1).any(axis=0).sum())


def _kmeans_start(prob, k, rng):
    from sklearn.cluster import KMeans

    z = (prob.X - prob.shift) * prob.scale
    km = KMeans(n_clusters=k, n_init=1, random_state=rng).fit(z)
    labels = km.labels_
    nk = np.bincount(labels, minlength=k).astype(np.float64)
    means = np.zeros((k, z.shape[1]))
    var = np.ones((k, z.shape[1]))
    for j in range(k):
        rows = z[labels == j]
        if len(rows):
            means[j] = rows.mean(axis=0)
            var[j] = rows.var(axis=0) + prob.reg.reg_covar
    return Params(nk / nk.sum(), means, np.maximum(var, prob.reg.floor))


def _pooled_start(prob, k):
    d = prob.X.shape[1]
    return Params(
        np.full(k, 1.0 / k),
        np.zeros((k, d)),
        np.tile(prob.feature_var + prob.reg.reg_covar, (k, 1)),
    )


def levels_of(cfg, critical_value):
    start = cfg.start_factor * critical_value
    if cfg.mode == "temperature":
        start = max(start, 1.0)
        return np.geomspace(start, max(cfg.stop, 1.0), cfg.n_levels)
    return np.geomspace(start, cfg.stop, cfg.n_levels)


def level_settings(cfg, prob, level):
    """Regularisation and inverse temperature at one level."""
    reg = prob.reg
    if cfg.mode == "temperature":
        return reg, 1.0 / level
    if cfg.mode == "fixed":
        return reg._replace(fixed_var=level * prob.feature_var + reg.reg_covar), 1.0
    return reg._replace(floor=np.maximum(reg.floor, level * prob.feature_var)), 1.0


def fit(X, k, seed, cfg, levels=None):
    """One fit of ``cfg`` on ``X`` with ``k`` components: a Result."""
    t0 = time.perf_counter()
    prob = _Problem(X, cfg)
    rng = np.random.RandomState(seed)
    history = {"lower_bound": [], "level": [], "n_distinct": [], "move": []}
    crit = prob.critical_value() if cfg.mode != "none" else float("nan")
    if cfg.start == "pooled":
        params = _pooled_start(prob, k)
    else:
        params = _kmeans_start(prob, k, rng)
    if cfg.mode != "none" and levels is None:
        levels = levels_of(cfg, crit)
    elif cfg.mode == "none":
        levels = np.empty(0)
        if cfg.start == "pooled":
            params = _perturb(params, 1.0, prob, rng, cfg)

    def record(ll, level, params, move):
        history["lower_bound"].append(ll)
        history["level"].append(level)
        history["n_distinct"].append(_n_distinct(params.means / prob.relative))
        history["move"].append(move)

    for level in levels:
        params = _perturb(params, level, prob, rng, cfg)
        reg, beta = level_settings(cfg, prob, level)
        prev_ll, prev_move = -np.inf, np.inf
        for it in range(cfg.level_max_iter):
            ll, stats = prob.e_step(params, beta)
            new, _ = m_step(stats, reg, previous=params)
            move = float(np.max(np.abs(new.means - params.means) / np.sqrt(new.variances)))
            params = new
            record(ll, level, params, move)
            if it + 1 >= cfg.level_min_iter:
                if cfg.level_rule == "ll" and abs(ll - prev_ll) < cfg.level_tol:
                    break
                if cfg.level_rule == "param" and move < cfg.level_tol and move <= prev_move:
                    break
            prev_ll, prev_move = ll, move
    # Final EM.
    reg = prob.reg
    final_level = np.nan
    if levels.size and cfg.final == "keep" and cfg.mode != "temperature":
        reg = reg._replace(floor=np.maximum(reg.floor, levels[-1] * prob.feature_var))
        final_level = levels[-1]
    prev_ll = -np.inf
    ll = -np.inf
    for _ in range(cfg.max_iter):
        ll, stats = prob.e_step(params)
        new, _ = m_step(stats, reg, previous=params)
        move = float(np.max(np.abs(new.means - params.means) / np.sqrt(new.variances)))
        params = new
        record(ll, final_level if levels.size else np.nan, params, move)
        if abs(ll - prev_ll) < cfg.final_tol:
            break
        prev_ll = ll
    # The train log-likelihood of the returned parameters (one more E-step,
    # as score(X_train) would compute; not counted as an iteration).
    train, _ = prob.e_step(params)
    seconds = time.perf_counter() - t0
    w, m, v = prob.to_user(params)
    hist = {key: np.asarray(val) for key, val in history.items()}
    return Result(w, m, v, train, len(hist["lower_bound"]), seconds, hist, crit)


def _perturb(params, level, prob, rng, cfg):
    noise = rng.standard_normal(params.means.shape)
    offset = cfg.perturb * np.sqrt(level * prob.feature_var) * noise
    return params._replace(means=params.means + offset)


def score(result, X):
    """Mean log-likelihood of ``X`` under a Result's parameters (user units)."""
    X = np.asarray(X, dtype=np.float64)
    w, m, v = result.weights, result.means, result.variances
    prec = 1.0 / v
    log_det = np.sum(np.log(prec), axis=1)
    d = X.shape[1]
    quad = np.sum(m**2 * prec, axis=1) - 2.0 * X @ (m * prec).T + (X**2) @ prec.T
    with np.errstate(divide="ignore"):
        lp = np.log(w) - 0.5 * (d * math.log(2 * math.pi) + quad) + 0.5 * log_det
    return float(np.mean(logsumexp(lp, axis=1)))


def predict(result, X):
    X = np.asarray(X, dtype=np.float64)
    w, m, v = result.weights, result.means, result.variances
    prec = 1.0 / v
    quad = np.sum(m**2 * prec, axis=1) - 2.0 * X @ (m * prec).T + (X**2) @ prec.T
    with np.errstate(divide="ignore"):
        lp = np.log(w) - 0.5 * quad + 0.5 * np.sum(np.log(prec), axis=1)
    return np.argmax(lp, axis=1)


def split_levels(history):
    """Levels at which the number of distinct means grows (annealing path)."""
    nd = history["n_distinct"]
    lv = history["level"]
    out = []
    for i in range(1, len(nd)):
        if nd[i] > nd[i - 1] and np.isfinite(lv[i]):
            out.append((float(lv[i]), int(nd[i - 1]), int(nd[i])))
    return out


# --------------------------------------------------------------------------
# Growing annealing: mass-constrained deterministic annealing, one split at a
# time where a component's own critical level is crossed.


def instability(prob, params, beta, n_sub, rng, z_sub=None):
    """Per-component ``rho_k = beta * lambda_max(V_k^-1/2 S_k V_k^-1/2)`` and top directions.

    ``S_k`` is the component's responsibility-weighted covariance (on a
    subsample of ``n_sub`` rows), ``V_k`` its model variances. The component
    is unstable (its mean splits under EM) when ``rho_k > 1``.
    """
    z = z_sub
    w, m, v = params
    lp = (
        np.log(w)
        - 0.5 * np.sum(np.log(v), axis=1)
        - 0.5 * (np.sum(m**2 / v, axis=1) - 2.0 * z @ (m / v).T + (z**2) @ (1.0 / v).T)
    )
    lp *= beta
    lp -= lp.max(axis=1, keepdims=True)
    r = np.exp(lp)
    r /= r.sum(axis=1, keepdims=True)
    k, d = m.shape
    rho = np.zeros(k)
    dirs = np.zeros((k, d))
    for j in range(k):
        nj = r[:, j].sum()
        if nj < 5:
            continue
        c = (z - m[j]) / np.sqrt(v[j])
        S = (c * r[:, j : j + 1]).T @ c / nj
        vals, vecs = np.linalg.eigh(S)
        rho[j] = beta * vals[-1]
        dirs[j] = vecs[:, -1] * np.sqrt(v[j])
    return rho, dirs


@dataclass(frozen=True)
class GrowConfig(Config):
    """Config of :func:`fit_grow`: ``split_margin`` (split when rho > 1 + margin),
    ``split_offset`` (half-distance of the two new means in component std),
    ``n_sub`` (rows of the instability subsample)."""

    split_margin: float = 0.05
    split_offset: float = 0.25
    n_sub: int = 4000
    splits_per_level: int = 1000

    def name(self):
        return "grow-" + super().name() + f"m{self.split_margin:g}"


def fit_grow(X, k, seed, cfg):
    """Growing annealing: start with 1 component, split unstable ones level by level."""
    t0 = time.perf_counter()
    prob = _Problem(X, cfg)
    rng = np.random.RandomState(seed)
    history = {"lower_bound": [], "level": [], "n_distinct": [], "move": []}
    crit = prob.critical_value()
    levels = levels_of(cfg, crit)
    params = _pooled_start(prob, 1)
    rows = rng.choice(prob.n, size=min(cfg.n_sub, prob.n), replace=False)
    z_sub = (prob.X[np.sort(rows)] - prob.shift) * prob.scale

    def record(ll, level, params, move):
        history["lower_bound"].append(ll)
        history["level"].append(level)
        history["n_distinct"].append(len(params.weights))
        history["move"].append(move)

    def em_level(params, reg, beta, level):
        prev_ll, prev_move = -np.inf, np.inf
        for it in range(cfg.level_max_iter):
            ll, stats = prob.e_step(params, beta)
            new, _ = m_step(stats, reg, previous=params)
            move = float(np.max(np.abs(new.means - params.means) / np.sqrt(new.variances)))
            params = new
            record(ll, level, params, move)
            if it + 1 >= cfg.level_min_iter:
                if cfg.level_rule == "ll" and abs(ll - prev_ll) < cfg.level_tol:
                    break
                if cfg.level_rule == "param" and move < cfg.level_tol and move <= prev_move:
                    break
            prev_ll, prev_move = ll, move
        return params

    def split(params, beta, force=False):
        m_now = len(params.weights)
        if m_now >= k:
            return params, 0
        rho, dirs = instability(prob, params, beta, cfg.n_sub, rng, z_sub)
        order = np.argsort(-rho)
        todo = [j for j in order if force or rho[j] > 1.0 + cfg.split_margin]
        todo = todo[: min(k - m_now, cfg.splits_per_level)]
        if not todo:
            return params, 0
        w, m, v = (a.copy() for a in params)
        new_w, new_m, new_v = [], [], []
        for j in todo:
            off = cfg.split_offset * dirs[j]
            w[j] /= 2
            new_w.append(w[j])
            new_m.append(m[j] - off)
            new_v.append(v[j])
            m[j] = m[j] + off
        return Params(
            np.concatenate([w, new_w]), np.vstack([m, new_m]), np.vstack([v, new_v])
        ), len(todo)

    for level in levels:
        reg, beta = level_settings(cfg, prob, level)
        params = em_level(params, reg, beta, level)
        # Split what is unstable here, then let the new pairs settle.
        for _ in range(3):
            params, n_split = split(params, beta)
            if not n_split:
                break
            params = em_level(params, reg, beta, level)
    # Components still missing: split the most unstable ones at the last level.
    while len(params.weights) < k:
        reg, beta = level_settings(cfg, prob, levels[-1])
        params, _ = split(params, beta, force=True)
        params = em_level(params, reg, beta, levels[-1])
    reg = prob.reg
    final_level = np.nan
    if cfg.final == "keep" and cfg.mode != "temperature":
        reg = reg._replace(floor=np.maximum(reg.floor, levels[-1] * prob.feature_var))
        final_level = levels[-1]
    prev_ll = -np.inf
    for _ in range(cfg.max_iter):
        ll, stats = prob.e_step(params)
        new, _ = m_step(stats, reg, previous=params)
        move = float(np.max(np.abs(new.means - params.means) / np.sqrt(new.variances)))
        params = new
        record(ll, final_level, params, move)
        if abs(ll - prev_ll) < cfg.final_tol:
            break
        prev_ll = ll
    train, _ = prob.e_step(params)
    seconds = time.perf_counter() - t0
    w, m, v = prob.to_user(params)
    hist = {key: np.asarray(val) for key, val in history.items()}
    return Result(w, m, v, train, len(hist["lower_bound"]), seconds, hist, crit)


def run(X, k, seed, cfg):
    """:func:`fit_grow` for a GrowConfig, :func:`fit` otherwise."""
    return (fit_grow if isinstance(cfg, GrowConfig) else fit)(X, k, seed, cfg)


# The study's recommendation (see the report of issue #15).
RECOMMENDED = Config(mode="floor", label="proto floor, pooled")
