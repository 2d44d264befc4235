"""Initialisations: starting parameters from the data, one function per strategy.

Each strategy of ``init_params`` is a function in :data:`STRATEGIES` that
returns the sufficient statistics of a starting partition of the rows (hard
cells, or random soft responsibilities), given the rows, their weights, the
map to internal units, the number of components, the random state, whether
to use threads and whether the rows have missing entries (None: it looks);
the M-step, with the fit's floors and prior, turns them into starting
parameters. User-given ``weights_init``, ``means_init`` and
``precisions_init`` replace the corresponding parts.

With missing entries (NaN), "kmeans", "k-means++" and "random_from_data"
measure distances over the features a row observes (k-means by partial
distances, :func:`natgmm._kmeans.kmeans_masked`): imputed values would
make rows that lack a feature look alike. "random" and "bisect" see a
missing entry at the mean (of the data, or of the cell being split, so
that it pushes the row to neither side). The cells' statistics are taken
over the observed entries only, and a feature that none of a cell's rows
observes starts at the data's mean and variance.
"""

import warnings
from typing import NamedTuple

import numpy as np
from sklearn.exceptions import ConvergenceWarning
from sklearn.utils import check_array

from . import _kernels, _kmeans
from ._blas import single_threaded_blas
from ._data import ROW_CHUNK, internal_rows, numpy_input, row_chunks, scatter_matrix
from ._em import Params, Stats, feature_weights, m_step
from ._progress import caller_level
from ._threading import n_blocks


class InitArrays(NamedTuple):
    """User-given starting parameters (None where not given), checked."""

    weights: np.ndarray | None
    means: np.ndarray | None
    precisions: np.ndarray | None


def _check_array(array, shape, name):
    """``array`` as float64 or float32 (its own, if either) of shape ``shape``."""
    array = check_array(numpy_input(array), dtype=[np.float64, np.float32], ensure_2d=False)
    if array.shape != shape:
        raise ValueError(
            f"The parameter '{name}' should have the shape of {shape}, but got {array.shape}"
        )
    return array


def check_init_arrays(estimator, n_features):
    """Check ``weights_init``, ``means_init`` and ``precisions_init`` of ``estimator``.

    The checks and messages are those of ``GaussianMixture`` (the weights'
    sum in their own precision, with its tolerance); the arrays are returned
    in float64.
    """
    n_components = estimator.n_components
    shape = (n_components, n_features)
    weights = means = precisions = None
    if estimator.weights_init is not None:
        weights = _check_array(estimator.weights_init, (n_components,), "weights")
        if np.any(weights < 0.0) or np.any(weights > 1.0):
            raise ValueError(
                "The parameter 'weights' should be in the range [0, 1], but got "
                f"max value {weights.max():.5f}, min value {weights.min():.5f}"
            )
        atol = 1e-6 if weights.dtype == np.float32 else 1e-8
        if abs(1.0 - weights.sum()) > atol:
            raise ValueError(
                "The parameter 'weights' should be normalized, but got "
                f"sum(weights) = {weights.sum():.5f}"
            )
    if estimator.means_init is not None:
        means = _check_array(estimator.means_init, shape, "means")
    if estimator.precisions_init is not None:
        precisions = _check_array(estimator.precisions_init, shape, "diag precision")
        if np.any(precisions <= 0.0):
            raise ValueError("'diag precision' should be positive")
    return InitArrays(
        *(None if a is None else a.astype(np.float64) for a in (weights, means, precisions))
    )


def initial_params(data, standardiser, reg, init, settings, random_state, how=None):
    """Return starting parameters in internal units.

    Parameters
    ----------
    data : ArrayData or DaskData
        The training data; the strategy runs on ``data.init_rows``.
    standardiser : Standardiser
        The map to internal units.
    reg : Regularisation
        Floors and prior, applied to the starting parameters too.
    init : InitArrays
        User-given parts of the start.
    settings : Settings
        ``n_components`` and ``init_params``.
    random_state : RandomState
        Source of the strategy's random numbers.
    how : str, default=None
        A strategy to use instead of ``settings.init_params``: a key of
        :data:`STRATEGIES`, or "pooled" (see :func:`pooled_stats`).

    Returns
    -------
    params : Params
    """
    weights, means, precisions = init
    how = how or settings.init_params
    if weights is None or means is None or precisions is None:
        if how == "pooled":  # from the data's moments: no pass over the rows
            stats = pooled_stats(standardiser, settings.n_components)
        else:
            X, sw, missing = data.init_rows(random_state)
            stats = STRATEGIES[how](
                X, sw, standardiser, settings.n_components, random_state, data.parallel, missing
            )
        previous = None
        if stats.nkd is not None:
            # Features a cell never observes start at the pooled solution.
            previous = m_step(pooled_stats(standardiser, settings.n_components), reg)[0]
        params, _ = m_step(stats, reg, previous)
    else:
        params = Params(None, None, None)
    if weights is not None:
        params = params._replace(weights=weights)
    if means is not None:
        params = params._replace(means=(means - standardiser.shift) * standardiser.scale)
    if precisions is not None:
        variances = np.maximum(standardiser.scale**2 / precisions, reg.floor)
        params = params._replace(variances=variances)
    return params


def pooled_stats(standardiser, n_components):
    """Statistics of the pooled solution: every component the whole data, at equal weight.

    Its M-step puts every mean at the data's mean and every variance at the
    data's variance (plus regularisation): the start of deterministic
    annealing, which the first level's perturbation breaks.
    """
    total, _, scatter, mean, nkd = standardiser.moments
    shape = (n_components, mean.shape[1])
    return Stats(
        np.full(n_components, total[0] / n_components),
        np.zeros(shape),
        np.broadcast_to(scatter / n_components, shape).copy(),
        np.broadcast_to(mean, shape).copy(),
        None if nkd is None else np.broadcast_to(nkd / n_components, shape).copy(),
    )


def _cell_stats(X, sw, standardiser, labels, centres, parallel, missing=None):
    """Statistics of hard cells about ``centres`` (internal units).

    Over the observed entries if ``X`` has missing ones (``missing``; None: look).
    """
    if missing is None:
        missing = _kernels.has_missing(X)
    args = (
        X, sw, standardiser.shift, standardiser.scale, labels.astype(np.int64), centres,
        n_blocks(X.shape[0]), parallel,
    )  # fmt: skip
    if missing:
        nk, nkd, s1, s2 = _kernels.label_stats_masked(*args)
        return Stats(nk, s1, s2, centres, nkd)
    nk, s1, s2 = _kernels.label_stats(*args)
    return Stats(nk, s1, s2, centres)


def _common_map(standardiser):
    """Shift and common scale of the rows k-means runs on, and that scale's inverse.

    k-means is invariant to one common shift and scale: dividing by the
    largest feature spread keeps squared distances finite for any magnitude
    of ``X``, while each feature keeps its own units (as k-means sees them).
    """
    spread = np.max(1.0 / standardiser.scale)
    return standardiser.shift, 1.0 / spread, spread


def _unit_max(sw):
    """Sample weights scaled to a maximum of one (None for unit weights).

    k-means is invariant to a common factor on the weights; this one keeps
    them from underflowing.
    """
    return sw / sw.max() if sw.shape[0] else None


def _warn_if_fewer_clusters(found, n_components):
    """Warn of fewer cells than components, as scikit-learn's KMeans (and so GaussianMixture) do."""
    if found < n_components:
        warnings.warn(
            f"Number of distinct clusters ({found}) found smaller than n_clusters "
            f"({n_components}). Possibly due to duplicate points in X.",
            ConvergenceWarning,
            stacklevel=caller_level(),
        )


def _kmeans_cells(X, sw, standardiser, labels, centres, spread, parallel, missing=False):
    """Statistics of k-means cells, about their centres mapped to internal units."""
    centres = centres * spread * standardiser.scale
    return _cell_stats(X, sw, standardiser, labels, centres, parallel, missing)


def _without_unobserved_rows(X, sw, missing):
    """``sw`` with rows that observe no feature at zero weight (None: unit weights).

    Such a row is at the same partial distance from every point (the
    masked k-means gives it twice the total variance), usually farther than
    any other row: k-means++ drew it as a seed that no observed row joined,
    and refilled empty cells with it. It tells nothing of where clusters
    are; in EM its responsibilities are the weights, so the start leaves it
    out (weight zero in the seeding, the cells and their statistics).
    """
    if not missing:
        return sw
    unobserved = np.zeros(X.shape[0], dtype=bool)
    for start in range(0, X.shape[0], ROW_CHUNK):  # no N x D mask at once
        unobserved[start : start + ROW_CHUNK] = np.isnan(X[start : start + ROW_CHUNK]).all(axis=1)
    if not unobserved.any():
        return sw
    weights = np.ones(X.shape[0]) if not sw.shape[0] else sw.copy()
    weights[unobserved] = 0.0
    return weights


def kmeans_stats(X, sw, standardiser, n_components, random_state, parallel, missing=None):
    """Cells of k-means, as scikit-learn's ``KMeans(n_init=1)``: ``init_params="kmeans"``.

    The compiled k-means of :mod:`natgmm._kmeans` draws the same random
    numbers and finds the same labels as scikit-learn's (but for rows within
    rounding of two centres), without a float64 copy of ``X``. On data of few
    distinct values (0/1 or one-hot columns) many rows are equally far from
    two centres, and each library's rounding breaks those ties: there the
    labels differ (adjusted Rand 0.12 to 0.71 after one EM iteration, in an
    audit on 2026-12-07), and the fits are other local optima.
    """
    shift, scale, spread = _common_map(standardiser)
    missing = _kernels.has_missing(X) if missing is None else missing
    sw = _without_unobserved_rows(X, sw, missing)
    kmeans = _kmeans.kmeans_masked if missing else _kmeans.kmeans
    labels, centres, _ = kmeans(
        X, _unit_max(sw), shift, scale, n_components, random_state, parallel
    )
    _warn_if_fewer_clusters(np.count_nonzero(np.bincount(labels)), n_components)
    return _kmeans_cells(X, sw, standardiser, labels, centres, spread, parallel, missing)


def kmeans_plusplus_stats(X, sw, standardiser, n_components, random_state, parallel, missing=None):
    """Cells of the nearest k-means++ seed: ``init_params="k-means++"``."""
    shift, scale, spread = _common_map(standardiser)
    missing = _kernels.has_missing(X) if missing is None else missing
    sw = _without_unobserved_rows(X, sw, missing)
    seeding = _kmeans.kmeans_plusplus_masked if missing else _kmeans.kmeans_plusplus
    labels, seeds, _ = seeding(X, _unit_max(sw), shift, scale, n_components, random_state, parallel)
    return _kmeans_cells(X, sw, standardiser, labels, seeds, spread, parallel, missing)


def random_from_data_stats(X, sw, standardiser, n_components, random_state, parallel, missing=None):
    """Cells of the nearest of seeds drawn from the rows: ``"random_from_data"``.

    Rows are drawn with probability proportional to their weight, with
    replacement only when there are fewer (weighted) rows than seeds.
    """
    shift, scale, spread = _common_map(standardiser)
    missing = _kernels.has_missing(X) if missing is None else missing
    sw = _without_unobserved_rows(X, sw, missing)
    weights = _unit_max(sw)
    # Equal weights draw as none (numpy draws otherwise when given p).
    equal = weights is None or np.all(weights == weights[0])
    p = None if equal else weights / weights.sum()
    n_samples = X.shape[0]
    few = (n_samples if p is None else np.count_nonzero(p)) < n_components
    rows = random_state.choice(n_samples, size=n_components, replace=few, p=p)
    scales = np.full(X.shape[1], scale)
    if missing:
        seeds, observed = _kmeans.masked_map(X, rows, shift, scales)
        labels = _kmeans.nearest_masked(X, shift, scale, seeds, observed, parallel, sw)
        return _kmeans_cells(X, sw, standardiser, labels, seeds, spread, parallel, True)
    seeds = _kmeans.map_rows(X, rows.astype(np.int64), shift, scales)
    labels = _kmeans.nearest(X, shift, scale, seeds, parallel)
    return _kmeans_cells(X, sw, standardiser, labels, seeds, spread, parallel)


def random_stats(X, sw, standardiser, n_components, random_state, parallel, missing=None):
    """Statistics of random soft responsibilities: ``init_params="random"``.

    The draws are those of one ``uniform(size=(n_samples, n_components))``
    call, as in ``GaussianMixture``, made in row chunks without the full
    array.
    """
    n_samples, n_features = X.shape
    missing = _kernels.has_missing(X) if missing is None else missing
    nk = np.zeros(n_components)
    nkd = np.zeros((n_components, n_features)) if missing else None
    s1 = np.zeros((n_components, n_features))
    s2 = np.zeros((n_components, n_features))
    with single_threaded_blas():
        for chunk in row_chunks(np.arange(n_samples)):
            resp = random_state.uniform(size=(chunk.size, n_components))
            resp /= resp.sum(axis=1, keepdims=True)
            if sw.shape[0]:
                resp *= sw[chunk, np.newaxis]
            z = internal_rows(X, chunk, standardiser)  # 0 where missing
            nk += resp.sum(axis=0)
            if missing:
                nkd += resp.T @ ~np.isnan(X[chunk])
            s1 += resp.T @ z
            s2 += resp.T @ (z * z)
    return Stats(nk, s1, s2, np.zeros((n_components, n_features)), nkd)


def bisect_stats(X, sw, standardiser, n_components, random_state, parallel, missing=None):
    """Cells of a deterministic divisive partition: ``init_params="bisect"``.

    Principal direction divisive partitioning: the cell of largest weighted
    scatter is split through its weighted mean, perpendicular to its top
    principal axis, until there are ``n_components`` cells. Scatter and axes
    are those of the data in its own units (as k-means sees it; standardised
    data would hide which feature separates clusters), computed after one
    common rescaling against overflow. The axis comes from the cell's
    weighted covariance accumulated over row chunks, and its sign is fixed by
    its largest entry, so the result depends neither on row order nor on how
    weight is spread over repeated rows. ``random_state`` is not used.
    """
    n_samples, n_features = X.shape
    missing = _kernels.has_missing(X) if missing is None else missing
    labels = np.zeros(n_samples, dtype=np.int64)
    ref = np.zeros((n_components, n_features))
    to_common = 1.0 / (standardiser.scale * np.max(1.0 / standardiser.scale))
    for n_cells in range(1, n_components):
        stats = _cell_stats(X, sw, standardiser, labels, ref, parallel, missing)
        nk, s1, s2 = stats[:3]
        counts = feature_weights(stats)  # per feature, with missing entries
        live = nk > 0
        ref[live] += s1[live] / np.where(counts > 0, counts, 1.0)[live]
        scatter = (s2 - s1**2 / np.maximum(counts, 1e-300)) * to_common**2
        score = np.where(live, scatter.sum(axis=1), 0.0)
        cell = int(np.argmax(score[:n_cells]))
        if not score[cell] > 0:  # fewer distinct points than components
            _warn_if_fewer_clusters(n_cells, n_components)
            break
        rows = np.flatnonzero(labels == cell)
        cov = scatter_matrix(X, sw, standardiser, rows, ref[cell], to_common)
        axis = np.linalg.eigh(cov)[1][:, -1]
        axis *= np.sign(axis[np.argmax(np.abs(axis))])
        for chunk in row_chunks(rows):
            u = internal_rows(X, chunk, standardiser, ref[cell], to_common)
            labels[chunk[u @ axis > 0]] = n_cells
    centres = np.zeros((n_components, n_features))
    return _cell_stats(X, sw, standardiser, labels, centres, parallel, missing)


STRATEGIES = {
    "kmeans": kmeans_stats,
    "k-means++": kmeans_plusplus_stats,
    "random_from_data": random_from_data_stats,
    "random": random_stats,
    "bisect": bisect_stats,
}
