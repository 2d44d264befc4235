"""Split-and-merge moves: leaving the local maximum where EM stopped.

EM, annealed or not, ends at a local maximum of the likelihood, typically one
where two components share a cluster while another spans two. A move (Ueda
et al., 2000, "SMEM algorithm for mixture models") merges the pair of
components whose responsibilities overlap most and splits the component
whose points the mixture fits worst, so the number of components stays the
same. Here the functions that rank the moves and make one; the rounds that
try them are :func:`natgmm._solver.split_merge`.
"""

import numpy as np

from ._em import Params

# Moves tried per round, and the EM iterations each gets before the one with
# the highest lower bound is run to convergence (benchmarks/study/sweep.py,
# doc/annealing.rst, "Split-and-merge moves"). Every candidate gets
# SCREEN_ITER iterations (one: the lower bound at the moved parameters); the
# N_FINALISTS highest then get the rest of SHORT_ITER. Each merge is tried
# with the N_SPLITS worst-fitted other components: the worst alone was often
# one that no split helps, and a round whose moves all split it failed where
# the second or third worst would have gained. 15 candidates and 5 finalists
# (with three splits per merge) won one more of 43 fits on the large sets
# than 10 and 3, with 10 to 17 % more iterations there.
N_CANDIDATES = 15
N_SPLITS = 3
# Pairs whose responsibilities have a cosine below this are not merged: two
# components that share almost no rows each fit a cluster of their own, and
# merging them cannot help. At a well separated mixture's answer every pair
# is below it (1e-7 and less on the separated synthetic set, against 0.4 to
# 0.99 for a pair sharing a cluster), so no round is spent on it.
MIN_COSINE = 1e-3
SHORT_ITER = 5
SCREEN_ITER = 1
N_FINALISTS = 5
# The short iterations compute in float32 (as the annealing levels do): they
# only rank the moves, and the best runs on in the data's precision.
FLOAT32_TRIALS = True
# On more rows than this, the short trials run on this many drawn from the
# fit's random state (the best continues on all rows): the noise of a mean
# log-likelihood over n rows goes as 1 / sqrt(n), whatever the data's size.
# Measured (benchmarks/study/sweep.py): 16 000 rows took the 60 000-row fits
# a fifth less time with the same wins and mean; 8 000 lost three wins of 43.
TRIAL_ROWS = 16000
# A split puts the halves' means this many standard deviations to either side
# along the component's leading direction: where the means of the two halves
# of a Gaussian cut in two lie. Along it, each half keeps the rest of the
# variance, 1 - 2 / pi of it.
SPLIT_OFFSET = np.sqrt(2.0 / np.pi)


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
        that up to a constant).
        Only a component with responsibilities (positive ``weight``) is
        split: an empty one has no covariance to split along, but it is
        merged (last), whatever ``min_cosine``. Empty with fewer than three
        components, or with no such component outside every pair.
    """
    n_components = weight.shape[0]
    if n_components < 3:
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
        moves.extend((i, j, k) for k in others)
        if len(moves) >= n_candidates:
            break
    return moves[:n_candidates]


def moved(params, move, covariance):
    """Return the parameters after ``move``: i and j merged into i, k split into k and j.

    The merged component matches the pair's weight, mean and per-feature
    variance; the split halves share ``k``'s weight, sit
    :data:`SPLIT_OFFSET` standard deviations to either side of its mean along
    the leading eigenvector of ``covariance`` (``k``'s responsibility-
    weighted covariance, internal units), with that direction's share of
    the variance removed.
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
    eigenvalues, eigenvectors = np.linalg.eigh(covariance)
    offset = SPLIT_OFFSET * np.sqrt(max(eigenvalues[-1], 0.0)) * eigenvectors[:, -1]
    weights[j] = weights[k] = 0.5 * weights[k]
    means[j], means[k] = means[k] + offset, means[k] - offset
    variances[j] = variances[k] = np.maximum(
        variances[k] - offset**2, (1.0 - SPLIT_OFFSET**2) * variances[k]
    )
    return Params(weights, means, variances)
