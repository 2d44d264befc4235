"""Split-and-merge moves: leaving the local maximum where EM stopped.

EM, annealed or not, ends at a local maximum of the likelihood, typically one
where two components share a cluster while another spans two. A move (Ueda
et al., 2000, "SMEM algorithm for mixture models") merges the pair of
components whose responsibilities overlap most and splits the component
whose points the mixture fits worst, so the number of components stays the
same. Here the functions that rank the moves, make one and try it by
partial EM (Ueda et al.'s partial E-step: only the move's three components
change); the rounds that run them are :func:`natgmm._solver.split_merge`.
"""

import math
from typing import NamedTuple

import numpy as np

from ._data import ROW_CHUNK, internal_rows, log_prob
from ._em import Params, Stats, m_step
from ._interrupt import keyboard_interrupts
from ._kernels import _jit
from ._threading import share_out_calls

# Moves tried per round, and how (benchmarks/study/sweep.py; doc/annealing.rst,
# "Split-and-merge moves"). Every candidate gets PARTIAL_ITER iterations of
# partial EM on the rows its three components share (those whose summed
# responsibility is above PARTIAL_MIN_RESP; every n-th of them above
# PARTIAL_ROWS, as the loop over three components costs about as much per
# row as a BLAS pass over all of them); the N_FINALISTS with the highest
# partial gains then FINALIST_ITER iterations of EM on all components, and
# the one with the highest lower bound runs to convergence. Partial EM alone
# ranked worse where clusters overlap (the neighbours do not move). Each
# merge is tried with the N_SPLITS worst-fitted other components: the worst
# alone was often one that no split helps, and a round whose moves all split
# it failed where the second or third worst would have gained.
N_CANDIDATES = 15
N_SPLITS = 3
PARTIAL_ITER = 5
PARTIAL_MIN_RESP = 1e-3
PARTIAL_ROWS = 4000
N_FINALISTS = 3
FINALIST_ITER = 4
# Pairs whose responsibilities have a cosine below this are not merged: two
# components that share almost no rows each fit a cluster of their own, and
# merging them cannot help. At a well separated mixture's answer every pair
# is below it (1e-7 and less on the separated synthetic set, against 0.4 to
# 0.99 for a pair sharing a cluster), so no round is spent on it.
MIN_COSINE = 1e-3
# When no pair reaches MIN_COSINE, a round still tries the pairs that share
# any row (cosine above 0), but keeps going only if the best finalist's bound
# after its FINALIST_ITER iterations is already above the fit's on the trial
# rows (:func:`natgmm._solver.split_merge`). In many dimensions (300) and on
# one-hot columns responsibilities are hard, so every pair is below the gate
# while one component spans two clusters: audit S (2026-12-07) measured
# annealed fits 22 to 53 nats a sample below scikit-learn's there, and 5 to 15
# on one-hot columns beside continuous ones, which the moves recover. The
# screen keeps what the round costs a well separated fit, where no move
# gains, to its trials (doc/annealing.rst, "Split-and-merge moves").
SCREENED_ROUNDS = True
# The gates of a screened round, in turn: any cosine above zero (a pair that
# shares a row), then any pair. Where no pair shares a row (responsibilities
# exactly 0 or 1: 300 dimensions, five components on ten clusters) each
# component spans whole clusters and only a merge can free one: audit S2
# (2026-12-07) measured such a fit at -733.6 nats a sample against -709.3
# for scikit-learn's best of five, -705.3 with the second gate (in index
# order, as all cosines are 0). The screen still decides whether to go on.
SCREENED_MIN_COSINES = (np.finfo(np.float64).tiny, 0.0)
# Pairs whose responsibilities have a cosine above this share their rows
# (two components on one mean, as annealing can leave them: the likelihood
# is flat there, a saddle whenever the pair's points are not one Gaussian,
# and EM does not leave it). Such a pair is also tried split anew, ``(i, j,
# i)``: merged, then split along its leading direction; with two components
# that is the only move there is.
RESPLIT_COSINE = 0.999
# The finalists' iterations compute in float32 (as the annealing levels do):
# they only rank the moves, and the best runs on in the data's precision.
FLOAT32_TRIALS = True
# On more rows than this, a round ranks and tries its moves on this many
# drawn from the fit's random state (the best continues on all rows): the
# noise of a mean log-likelihood over n rows goes as 1 / sqrt(n), whatever
# the data's size. A round holds their responsibilities (TRIAL_ROWS x
# n_components).
# Measured (benchmarks/study/sweep.py): 16 000 rows took the 60 000-row fits
# a fifth less time with the same wins and mean; 8 000 lost three wins of 43.
TRIAL_ROWS = 16000
# A split puts the halves' means this many standard deviations to either side
# along the component's leading direction: where the means of the two halves
# of a Gaussian cut in two lie. Along it, each half keeps the rest of the
# variance, 1 - 2 / pi of it.
SPLIT_OFFSET = np.sqrt(2.0 / np.pi)
# A move that leaves one of its components on fewer rows than this (its
# weight times the rows of positive weight), or at the min_weight floor, and
# the mixture with more such components than before, is not kept: a
# component on a few rows holds some variances near reg_covar, and its
# spikes of density buy train likelihood that does not generalise. Judged
# on the move's own components alone, the rule also refused moves that
# repair fits which had few-row components already: hence the comparison
# with the mixture before the move. doc/annealing.rst ("Split-and-merge
# moves") has the measurements behind the limit.
MIN_COMPONENT_ROWS = 5.0
# Log-densities below this count as this in the ranking (far rows, not NaN).
_FAR_BELOW = -1e100
_LOG_2PI = math.log(2.0 * math.pi)


def candidate_moves(
    overlap, fit, weight, n_candidates=N_CANDIDATES, n_splits=N_SPLITS, min_cosine=MIN_COSINE
):
    """Return the moves to try, best first: ``(i, j, k)`` merges i and j, splits k.

    Parameters
    ----------
    overlap : ndarray of shape (n_components, n_components)
        ``sum w r_i r_j`` over the rows (responsibilities ``r``, weights ``w``).
    fit : ndarray of shape (n_components,)
        ``sum w r_k log p(x)``, ``p`` the mixture's density.
    weight : ndarray of shape (n_components,)
        ``sum w r_k``.
    n_candidates : int, default=N_CANDIDATES
        Largest number of moves returned.
    n_splits : int, default=N_SPLITS
        Components to split tried with each merge.
    min_cosine : float, default=MIN_COSINE
        Pairs whose responsibilities have a lower cosine are not merged.

    Returns
    -------
    moves : list of tuple of int
        Merges by the cosine of the pair's responsibilities, highest first;
        each with the ``n_splits`` worst-fitted other components to split,
        worst first: those whose points have the lowest mean log-density
        under the mixture (Ueda et al.'s local Kullback-Leibler divergence,
        with the responsibility-weighted points as the local density, is
        that up to a constant). A pair on one mean (cosine above
        :data:`RESPLIT_COSINE`), or any pair that shares rows when no third
        component can be split, is first tried split anew, ``(i, j, i)``.
        Only a component with responsibilities (positive ``weight``) is
        split: an empty one has no covariance to split along, but it is
        merged (last), whatever ``min_cosine``. Empty with one component,
        or with no component to split outside every pair and no pair
        sharing its rows.
    """
    n_components = weight.shape[0]
    if n_components < 2:
        return []
    norm = np.sqrt(np.diag(overlap))
    norms = np.outer(norm, norm)
    with np.errstate(divide="ignore", invalid="ignore"):
        cosine = np.where(norms > 0, overlap / norms, -np.inf)
        misfit = -fit / weight
    first, second = np.triu_indices(n_components, 1)
    pair_cosine = np.nan_to_num(cosine[first, second], nan=-np.inf)
    order = np.argsort(-np.nan_to_num(misfit, nan=-np.inf), kind="stable")
    splits = [int(s) for s in order if weight[s] > 0 and np.isfinite(misfit[s])]
    moves = []
    # An empty component shares no rows, but merging it frees it for a split.
    empty = ~(weight > 0)
    apart = ~(pair_cosine >= min_cosine) & ~empty[first] & ~empty[second]
    for pair in np.argsort(-pair_cosine, kind="stable"):
        if apart[pair]:
            continue
        i, j = int(first[pair]), int(second[pair])
        others = [k for k in splits if k != i and k != j][:n_splits]
        # With no third component to split (two components), splitting the
        # pair anew is the only move: tried for any pair that shares rows.
        if (pair_cosine[pair] > RESPLIT_COSINE or not others) and weight[i] > 0:
            moves.append((i, j, i))
        moves.extend((i, j, k) for k in others)
        if len(moves) >= n_candidates:
            break
    return moves[:n_candidates]


def spiked(params, before, move, n_rows, min_weight):
    """Whether ``move`` (``before`` to ``params``) made a component on too few rows.

    One of the move's components ended on too few rows (see
    MIN_COMPONENT_ROWS) or at the ``min_weight`` floor, and the mixture has
    more such components than before the move: a move that repairs a fit
    which already had some is kept. ``n_rows`` counts the rows of positive
    weight, so that neither rows of weight zero nor the scale of the
    weights change the verdict. Rows, not weight: a spike is a component on
    a few distinct points, whatever their weights (integer weights that
    stand for repeated rows included). The effective number of rows,
    ``sum(w) ** 2 / sum(w ** 2)``, which counts rows of negligible weight
    for nothing, would make one row of weight 3000 among 1240 count as 2.
    """
    # On data of fewer than 2 * MIN_COMPONENT_ROWS rows a component (two
    # points and two components: one each), half of an equal share.
    least = min(MIN_COMPONENT_ROWS, 0.5 * n_rows / len(params.weights))

    def few(weights):
        at_floor = (weights <= min_weight * (1.0 + 1e-9)) if min_weight > 0.0 else False
        return (weights * n_rows < least) | at_floor

    made = np.any(few(params.weights[_components(move)]))
    return bool(made and np.sum(few(params.weights)) > np.sum(few(before.weights)))


def _components(move):
    """Return the components a move changes, each once: three, or two for a pair split anew."""
    return list(dict.fromkeys(move))


def split_offset(covariance):
    """Where a split puts its halves, from the mean: :data:`SPLIT_OFFSET` standard deviations.

    Along the leading eigenvector of ``covariance`` (the split component's
    responsibility-weighted covariance, internal units). A round's
    candidates split few components: each is decomposed once.
    """
    eigenvalues, eigenvectors = np.linalg.eigh(covariance)
    return SPLIT_OFFSET * np.sqrt(max(eigenvalues[-1], 0.0)) * eigenvectors[:, -1]


def moved(params, move, offset):
    """Return the parameters after ``move``: i and j merged into i, k split into k and j.

    The merged component matches the pair's weight, mean and per-feature
    variance; the split halves share ``k``'s weight and sit ``offset`` to
    either side of its mean (:func:`split_offset` of ``k``'s covariance),
    with that direction's share of the variance removed. With ``k == i``
    the merged pair is split anew (the offset then from ``i``'s covariance,
    which is the pair's when the two share their rows).
    """
    i, j, k = move
    weights, means, variances = (a.copy() for a in params)
    total = weights[i] + weights[j]
    share_i, share_j = weights[i] / total, weights[j] / total
    mean = share_i * means[i] + share_j * means[j]
    variances[i] = share_i * (variances[i] + (means[i] - mean) ** 2) + share_j * (
        variances[j] + (means[j] - mean) ** 2
    )
    weights[i], means[i] = total, mean
    weights[j] = weights[k] = 0.5 * weights[k]
    means[j], means[k] = means[k] + offset, means[k] - offset
    variances[j] = variances[k] = np.maximum(
        variances[k] - offset**2, (1.0 - SPLIT_OFFSET**2) * variances[k]
    )
    return Params(weights, means, variances)


class TrialRows:
    """The rows a split-and-merge round ranks and tries its moves on, under the fit's parameters.

    One pass of the mixture over ``data`` (in memory: at most
    :data:`TRIAL_ROWS` rows) keeps each row's log-density and
    responsibilities (``n_rows x n_components``), from which the round's
    sums, the split components' covariances and each move's rows are taken;
    rows in internal coordinates are made a chunk or a move at a time.
    """

    def __init__(self, data, standardiser, params):
        self.X, self.standardiser, self.params = data.X, standardiser, params
        self.density, _, self.resp = log_prob(
            data.X, standardiser, params, data.parallel, True, data.missing
        )
        self.total = self.resp.sum(axis=1)  # 1 up to rounding
        self.w = data.sw if data.sw.shape[0] else np.ones(data.shape[0])
        self.missing = data.missing

    def sums(self):
        """Return the arguments of :func:`candidate_moves`: ``overlap``, ``fit``, ``weight``.

        ``overlap[k, j] = sum w r_k r_j``, ``fit[k] = sum w r_k log p(x)``
        and ``weight[k] = sum w r_k``, ``p`` the mixture's density in user
        units.
        """
        wr = self.resp * self.w[:, np.newaxis]
        fit = np.maximum(self.density, _FAR_BELOW) @ wr
        return wr.T @ self.resp, fit, wr.sum(axis=0)

    def mean_density(self):
        """Return the mixture's (weighted) mean log-likelihood of the rows, as a trial's bound."""
        return float(np.average(self.density, weights=self.w))

    def covariances(self, components):
        """Each of ``components``' responsibility-weighted covariance about its mean.

        A dict by component, internal units; missing entries count as at the
        mean. One pass over the rows, a chunk at a time: the chunks' scatter
        matrices are made on natgmm's threads and added in the chunks' order.
        """
        n_rows, n_features = self.X.shape
        starts = range(0, n_rows, ROW_CHUNK)
        work = n_rows * n_features * n_features * len(components)
        chunks = share_out_calls(lambda start: self._chunk_scatter(components, start), starts, work)
        scatter = dict.fromkeys(components, 0.0)
        for chunk in chunks:
            for k in components:
                scatter[k] = scatter[k] + chunk[k]
        return {k: s / np.sum(self.w * self.resp[:, k]) for k, s in scatter.items()}

    def _chunk_scatter(self, components, start):
        """Each of ``components``' weighted scatter about its mean over the chunk at ``start``."""
        rows = np.arange(start, min(start + ROW_CHUNK, self.X.shape[0]))
        z = internal_rows(self.X, rows, self.standardiser)
        observed = ~np.isnan(self.X[rows]) if self.missing else None
        scatter = {}
        for k in components:
            v = z - self.params.means[k]
            if observed is not None:
                v *= observed
            wr = self.w[rows] * self.resp[rows, k]
            scatter[k] = (v * wr[:, np.newaxis]).T @ v
        return scatter

    def of_move(self, move, min_resp=PARTIAL_MIN_RESP, max_rows=PARTIAL_ROWS):
        """Return the rows ``move``'s components share (:class:`MoveRows`), or None.

        A row is kept when its responsibilities summed over the three are
        above ``min_resp``: the others hardly change under the move.
        """
        share = self.resp[:, _components(move)].sum(axis=1)
        kept = np.flatnonzero(share > min_resp)
        if not kept.size:
            return None
        stride = -(-kept.size // max_rows)
        kept = kept[::stride]
        # The held components' share, 1 minus the three's: where it cancels,
        # it is below rounding next to the three's, and so is its error.
        held = np.maximum(self.total[kept] - share[kept], 0.0)
        density = self.density[kept] - self.standardiser.log_jacobian
        with np.errstate(divide="ignore"):
            log_other = density + np.log(held)
        observed = ~np.isnan(self.X[kept]) if self.missing else None
        z = internal_rows(self.X, kept, self.standardiser)
        w = self.w[kept] * stride  # every stride-th row stands for stride of them
        return MoveRows(z, observed, w, log_other, float(w @ density))


class MoveRows(NamedTuple):
    """The rows of one move's partial EM (internal units)."""

    z: np.ndarray  # (n_rows, n_features); missing entries 0
    observed: np.ndarray | None  # (n_rows, n_features) bool; None: every entry observed
    w: np.ndarray  # (n_rows,) weights
    log_other: np.ndarray  # log of the held components' summed weighted densities
    base: float  # sum w log p(x) before the move


# Fast-math may reorder the sums over features here (a serial kernel: the
# result does not depend on the thread count), so that they vectorise.
@_jit(fastmath={"nsz", "contract", "reassoc"})
def _partial_e_step(z, observed, w, log_other, log_weight, means, inv_var, feature_norm):
    """Partial E-step: the held components' mass fixed, three (or any few) free.

    Returns the weighted sum of the rows' log-densities and, for the free
    components, the statistics about ``means``: ``nk``, ``nkd`` (per-feature
    weights; left zero when ``observed`` is empty: every entry observed),
    ``s1``, ``s2``. ``observed`` is 1.0 where an entry is observed, 0.0
    where not (and ``z`` is 0 there); ``inv_var`` and ``feature_norm``
    (``-log(2 pi var) / 2``) are the free components' per feature. Serial,
    in row order.
    """
    n_rows, n_features = z.shape
    n_free = means.shape[0]
    masked = observed.shape[0] > 0
    log_norm = np.empty(n_free)
    for m in range(n_free):
        log_norm[m] = log_weight[m]
        for d in range(n_features):
            log_norm[m] += feature_norm[m, d]
    nk = np.zeros(n_free)
    nkd = np.zeros((n_free, n_features))
    s1 = np.zeros((n_free, n_features))
    s2 = np.zeros((n_free, n_features))
    log_dens = np.empty(n_free)
    diff = np.empty((n_free, n_features))
    loglik = 0.0
    for r in range(n_rows):
        top = log_other[r]
        for m in range(n_free):
            acc = 0.0
            if masked:
                norm = log_weight[m]
                for d in range(n_features):
                    o = observed[r, d]
                    t = (z[r, d] - means[m, d]) * o
                    diff[m, d] = t
                    acc += t * t * inv_var[m, d]
                    norm += feature_norm[m, d] * o
            else:
                norm = log_norm[m]
                for d in range(n_features):
                    t = z[r, d] - means[m, d]
                    diff[m, d] = t
                    acc += t * t * inv_var[m, d]
            log_dens[m] = norm - 0.5 * acc
            top = max(top, log_dens[m])
        if top == -np.inf:
            continue
        total = math.exp(log_other[r] - top)
        for m in range(n_free):
            log_dens[m] = math.exp(log_dens[m] - top)  # from here its density over the top's
            total += log_dens[m]
        loglik += w[r] * (top + math.log(total))
        for m in range(n_free):
            wr = w[r] * log_dens[m] / total
            nk[m] += wr
            if masked:
                for d in range(n_features):
                    nkd[m, d] += wr * observed[r, d]
            for d in range(n_features):
                t = diff[m, d]
                s1[m, d] += wr * t
                s2[m, d] += wr * t * t
    return loglik, nk, nkd, s1, s2


def partial_em(rows, start, move, reg, n_iter=PARTIAL_ITER):
    """Run partial EM from ``start``: ``n_iter`` iterations of ``move``'s components only.

    The other components are held (their summed densities in
    ``rows.log_other``), and the three's weights keep their total; the
    M-step's floors and prior apply as in EM. Returns the parameters after
    the last M-step and the gain of the rows' weighted log-likelihood
    (internal units) at each E-step over ``rows.base``.
    """
    free = _components(move)
    total = start.weights[free].sum()
    observed = np.empty((0, 0)) if rows.observed is None else rows.observed.astype(np.float64)
    params, gains = start, []
    for _ in range(n_iter):
        means, var = params.means[free], params.variances[free]
        with np.errstate(divide="ignore"):
            log_weight = np.log(params.weights[free])
        with keyboard_interrupts():
            loglik, nk, nkd, s1, s2 = _partial_e_step(
                rows.z, observed, rows.w, rows.log_other, log_weight, means, 1.0 / var,
                -0.5 * (_LOG_2PI + np.log(var)),
            )  # fmt: skip
        gains.append(loglik - rows.base)
        stats = Stats(nk, s1, s2, means, None if rows.observed is None else nkd)
        new = m_step(stats, reg, Params(params.weights[free], means, var))[0]
        weights, all_means, variances = (a.copy() for a in params)
        nk = nk + 10.0 * np.finfo(np.float64).eps  # as m_step: no zero weight
        weights[free] = total * nk / nk.sum()
        all_means[free], variances[free] = new.means, new.variances
        params = Params(weights, all_means, variances)
    return params, gains
