"""NaturalDiagonalGMM: the scikit-learn estimator shell around the kernels."""

import math
import warnings
from contextlib import contextmanager
from numbers import Integral, Real
from time import time

import numba
import numpy as np
from scipy.spatial.distance import pdist, squareform
from sklearn.base import BaseEstimator, ClusterMixin, _fit_context
from sklearn.cluster import KMeans, kmeans_plusplus
from sklearn.exceptions import ConvergenceWarning
from sklearn.metrics import pairwise_distances_argmin
from sklearn.utils import check_array, check_random_state
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.validation import _check_sample_weight, check_is_fitted, validate_data

from . import _kernels
from ._em import (
    Params,
    Regularisation,
    Stats,
    combine,
    empty_components,
    implied_stats,
    m_step,
    natural_parameters,
)
from ._gradient import GradientMStep, adam_state
from ._schedules import GeometricSchedule, Schedule

# Row blocks per kernel call, from the data shape only: a multiple of eight
# (equal shares for 2, 4 or 8 threads), the fewest that keep blocks to at
# most _BLOCK_ROWS rows, and at most _MAX_BLOCKS. Every block has its own
# accumulators to zero and sum each pass; at N = 60000, D = K = 50, 16 blocks
# instead of 64 took a separated pass from 16.4 to 16.0 ms (medians, 2
# threads, accumulators zeroed by each block's thread; 18.2 ms when 64
# blocks were zeroed up front).
_MAX_BLOCKS = 64
_BLOCK_ROWS = 4096
# Relative size of the noise added to the means at each annealing level, in
# standard deviations times sqrt(level): breaks the exact symmetry of means
# that coincided above a critical level, so that they can split below it.
_PERTURBATION = 1e-3
# A mean within this many standard deviations (in every feature) of an
# earlier one does not count in ``history_["n_distinct"]``.
_DISTINCT_TOL = 1e-2
# Rows handled at a time by the numpy parts of the initialisations.
_ROW_CHUNK = 4096


_OUT_OF_RANGE = (
    "The fitted variances or precisions cannot be represented in {dtype}: some "
    "feature's spread (or reg_covar, min_variance, upper_precision_reg in its "
    "units) is too large or too small. Rescale the features of X."
)


def _n_blocks(n_samples):
    return min(_MAX_BLOCKS, 8 * -(-max(n_samples, 1) // (8 * _BLOCK_ROWS)))


def _chunks(rows):
    """Split an array of row indices into chunks of ``_ROW_CHUNK``."""
    return [rows[i : i + _ROW_CHUNK] for i in range(0, rows.size, _ROW_CHUNK)]


def _internal(X, rows, std, centre=0.0, unit=1.0):
    """Rows of ``X`` in internal coordinates, minus ``centre``, times ``unit``."""
    return ((X[rows].astype(np.float64) - std.shift) * std.scale - centre) * unit


def _scatter_sums(X, sw, std, rows, centre=0.0, unit=1.0):
    """Weight, weighted sum and weighted outer products of ``_internal`` rows."""
    n_features = X.shape[1]
    weight, first, second = 0.0, np.zeros(n_features), np.zeros((n_features, n_features))
    for chunk in _chunks(rows):
        u = _internal(X, chunk, std, centre, unit)
        w = sw[chunk] if sw.shape[0] else np.ones(len(chunk))
        weight += w.sum()
        first += w @ u
        second += (u * w[:, np.newaxis]).T @ u
    return weight, first, second


def _scatter_from_sums(weight, first, second):
    return second - np.outer(first, first) / weight


def _scatter_matrix(X, sw, std, rows, centre=0.0, unit=1.0):
    """Weighted scatter matrix of ``_internal`` rows about their weighted mean.

    Accumulated chunk by chunk about ``centre`` (which should be close to
    the mean, so that removing the mean's outer product cancels little).
    """
    return _scatter_from_sums(*_scatter_sums(X, sw, std, rows, centre, unit))


def _critical_value(data, std):
    """Largest eigenvalue of the weighted correlation matrix of X.

    With every variance held at ``v`` times its feature's variance, EM has
    all means at the data mean as a stable fixed point exactly when ``v`` is
    above this value (deterministic annealing's critical temperature; for
    two points at -1 and +1 it is 1). Constant features are left out; 1 when
    every feature is constant.
    """
    scatter = _scatter_from_sums(*data.scatter_sums(std))
    spread = np.sqrt(np.diag(scatter))
    keep = spread > 0
    if not keep.any():
        return 1.0
    corr = scatter[np.ix_(keep, keep)] / np.outer(spread[keep], spread[keep])
    return float(np.linalg.eigvalsh(corr)[-1])


def _e_step(data, std, params, beta):
    """Fused E-step over ``data``: summed log-likelihood and statistics."""
    eta1, eta2, log_norm = natural_parameters(params)
    loglik, nk, s1, s2 = data.em_stats(
        std.shift, std.scale, eta1, eta2, log_norm, params.means, beta
    )
    return loglik, Stats(nk, s1, s2, params.means)


def _log_prob(X, std, params, parallel, want_resp):
    """Per-row log-density (user units), labels and optionally responsibilities."""
    eta1, eta2, log_norm = natural_parameters(params)
    n_samples, n_components = X.shape[0], params.means.shape[0]
    log_prob = np.empty(n_samples)
    labels = np.empty(n_samples, dtype=np.int64)
    resp = np.empty((n_samples if want_resp else 0, n_components))
    _kernels.log_prob(
        X, std.shift, std.scale, eta1, eta2, log_norm, log_prob, labels, resp, parallel
    )
    log_prob += std.log_jacobian
    return log_prob, labels, resp


def _mean_log_prob(log_prob, sample_weight):
    """Return the (``sample_weight``-weighted) mean of per-sample log-densities."""
    if sample_weight is None:
        return float(np.mean(log_prob))
    sample_weight = _check_sample_weight(
        sample_weight, log_prob[:, np.newaxis], ensure_non_negative=True
    )
    return float(np.average(log_prob, weights=sample_weight))


def _is_dask(X):
    """Whether ``X`` is a Dask collection (checked without importing dask)."""
    return type(X).__module__.startswith("dask")


class _Data:
    """Training rows in memory and the kernels bound to them.

    Every pass over the data goes through these methods; the arguments are
    those of the kernels, without the data. ``natgmm._dask.DaskData`` has
    the same methods for a Dask array and gathers the statistics block by
    block on the cluster, so the EM loop is the same for both.
    """

    def __init__(self, X, sw, total_weight, parallel):
        self.X, self.sw, self.total_weight, self.parallel = X, sw, total_weight, parallel
        self.shape, self.dtype = X.shape, X.dtype

    def subset(self, rows):
        """Return the rows ``rows`` (sorted) as a batch of their own."""
        sw = self.sw[rows] if self.sw.shape[0] else self.sw
        return _Data(self.X[rows], sw, sw.sum() if sw.shape[0] else float(rows.size), self.parallel)

    def extremes(self):
        """Each feature's largest and smallest value."""
        return self.X.max(axis=0), self.X.min(axis=0)

    def label_stats(self, shift, scale, ref):
        """:func:`_kernels.label_stats` with every row in component 0."""
        return _kernels.label_stats(
            self.X, self.sw, shift, scale, np.empty(0, dtype=np.int64), ref,
            _n_blocks(self.shape[0]), self.parallel,
        )  # fmt: skip

    def em_stats(self, shift, scale, eta1, eta2, log_norm, ref, beta):
        """:func:`_kernels.em_stats` over the rows."""
        return _kernels.em_stats(
            self.X, self.sw, shift, scale, eta1, eta2, log_norm, ref,
            _n_blocks(self.shape[0]), self.parallel, beta,
        )  # fmt: skip

    def scatter_sums(self, std):
        """:func:`_scatter_sums` over all rows."""
        return _scatter_sums(self.X, self.sw, std, np.arange(self.shape[0]))

    def positive_rows(self):
        """Count the rows of positive weight."""
        return np.count_nonzero(self.sw) if self.sw.shape[0] else self.shape[0]

    def init_rows(self, random_state):
        """Rows and weights the initialisation runs on: all of them."""
        return self.X, self.sw

    def log_prob(self, std, params, want_resp):
        """Log-density, labels and (if ``want_resp``) responsibilities per row."""
        return _log_prob(self.X, std, params, self.parallel, want_resp)


@contextmanager
def _numba_threads(n_jobs):
    """Run the kernels on ``n_jobs`` threads; restore numba's count after.

    Yields whether the parallel kernels should be used.
    """
    available = numba.config.NUMBA_NUM_THREADS
    if n_jobs is None or n_jobs == -1:
        n_threads = available
    elif n_jobs < 0:
        n_threads = max(1, available + 1 + n_jobs)
    else:
        n_threads = min(n_jobs, available)
    previous = numba.get_num_threads()
    numba.set_num_threads(n_threads)
    try:
        yield n_threads > 1
    finally:
        numba.set_num_threads(previous)


def _check_init_array(array, shape, name, dtype):
    array = check_array(array, dtype=[np.float64, np.float32], ensure_2d=False)
    if array.shape != shape:
        raise ValueError(
            f"The parameter '{name}' should have the shape of {shape}, but got {array.shape}"
        )
    return array.astype(dtype, copy=False)


class _Standardiser:
    """Per-feature affine map to internal coordinates, ``z = (x - shift) * scale``.

    ``shift`` is the weighted feature mean. ``scale`` is the inverse of
    ``sqrt(var + extra_var)``, the feature's weighted variance plus the
    variances the model adds on top (``reg_covar``, floors, prior), so that
    the data and every regulariser are at most of order one inside, whatever
    their units; any positive scale is exact for EM. Both are float64, as is
    every kernel's arithmetic, whatever the dtype of ``X``. The moments come
    from two kernel passes (mean, then scatter about it) after division by
    the largest magnitude, so data from 1e-150 to 1e150 neither underflows
    nor overflows. ``moments`` holds the data's
    total weight, mean and scatter in internal units; :meth:`update` adds
    the batches of ``partial_fit``.
    """

    def __init__(self, data, extra_var):
        dtype, n_features = data.dtype, data.shape[1]
        largest, smallest = data.extremes()
        magnitude = np.maximum(np.abs(largest), np.abs(smallest)).astype(np.float64)
        magnitude[magnitude == 0.0] = 1.0
        info = np.finfo(dtype)
        zero = np.zeros(n_features)
        inv_mag = np.minimum(1.0 / magnitude, info.max)
        nk, s1, _ = data.label_stats(zero, inv_mag, np.zeros((1, n_features)))
        ref = s1 / nk[0]
        nk, s1, s2 = data.label_stats(zero, inv_mag, ref)
        mean = (ref[0] + s1[0] / nk[0]) / inv_mag
        std = np.sqrt(np.maximum(s2[0] - s1[0] ** 2 / nk[0], 0.0) / nk[0]) / inv_mag
        # sqrt(std^2 + extra_var) without squaring anything large; the spread
        # is kept above the dtype's resolution at the feature's magnitude so
        # that |z| stays below 2 / eps.
        terms = np.stack([std, np.sqrt(np.broadcast_to(extra_var, std.shape))])
        top = terms.max(axis=0)
        top[top == 0.0] = 1.0
        spread = top * np.sqrt(np.sum((terms / top) ** 2, axis=0))
        spread = np.maximum(spread, magnitude * info.eps)
        scale = np.minimum(1.0 / spread, info.max / 4)
        self.shift = mean
        self.scale = scale
        self.log_jacobian = float(np.sum(np.log(self.scale)))
        total = nk[:1]
        self.moments = Stats(
            total,
            np.zeros((1, n_features)),
            ((std * self.scale) ** 2 * total)[np.newaxis],
            ((mean - self.shift) * self.scale)[np.newaxis],
        )

    @property
    def feature_var(self):
        """Each feature's variance in internal units (at most about 1)."""
        return self.moments.s2[0] / self.moments.nk[0]

    def update(self, data):
        """Add a batch to the data moments (the map itself stays fixed)."""
        ref = self.moments.ref
        batch = Stats(*data.label_stats(self.shift, self.scale, ref), ref)
        self.moments = combine(self.moments, batch, 1.0, 1.0)

    def to_internal(self, means, variances):
        return (means - self.shift) * self.scale, variances * self.scale**2

    def to_user(self, means, variances):
        return means / self.scale + self.shift, variances / self.scale**2


class _Online:
    """Online EM: running statistics per unit weight and the step count.

    Each step replaces the statistics by ``(1 - rho)`` times themselves plus
    ``rho`` times a batch's statistics per unit weight, with the
    Robbins-Monro step ``rho = (n_steps + offset) ** -decay``.
    """

    def __init__(self, params, reg, n_steps=0):
        self.running = implied_stats(params, 1.0, reg.reg)
        self.n_steps = n_steps

    def step(self, stats, batch_weight, offset, decay):
        self.n_steps += 1
        rho = (self.n_steps + offset) ** -decay
        self.running = combine(self.running, stats, 1.0 - rho, rho / batch_weight)

    def totals(self, total_weight):
        """Return the running statistics scaled to ``total_weight`` samples."""
        nk, s1, s2, ref = self.running
        return Stats(nk * total_weight, s1 * total_weight, s2 * total_weight, ref)


class _Run:
    """The data of one fit, its solver's state and one trajectory."""

    def __init__(self, data, std, random_state):
        self.data, self.total_weight, self.std = data, data.total_weight, std
        self.random_state = random_state
        self.empty = None
        self.online = self.adam = None
        self.history = {"lower_bound": [], "level": [], "n_active": [], "n_distinct": []}

    def record(self, lower_bound, level, n_active, relative_means):
        # A mean counts unless it lies within _DISTINCT_TOL of an earlier one.
        close = squareform(pdist(relative_means, "chebyshev") < _DISTINCT_TOL)
        n_distinct = len(relative_means) - int(np.triu(close, 1).any(axis=0).sum())
        for key, value in zip(
            self.history, (lower_bound, level, n_active, n_distinct), strict=True
        ):
            self.history[key].append(value)


class NaturalDiagonalGMM(ClusterMixin, BaseEstimator):
    """Gaussian mixture with diagonal covariances, fitted in natural parameters.

    A drop-in replacement for
    ``sklearn.mixture.GaussianMixture(covariance_type="diag")``: the same
    parameters with the same defaults and meaning, the same fitted attributes,
    plus variance floors, a minimum component weight, a conjugate prior on the
    precisions, ``sample_weight`` and multi-threaded Numba kernels that never
    allocate an ``n_samples x n_components`` array while fitting.

    Each component ``k`` is stored through its natural parameters
    ``eta1 = mean / var`` and ``eta2 = -1 / (2 var)`` per feature. Internally
    every feature is standardised by its (weighted) mean and standard
    deviation and all parameters are mapped back, so features in very
    different units are handled alike; EM is exactly equivariant under this
    map, so results equal those of EM on the raw data.

    Parameters
    ----------
    n_components : int, default=1
        The number of mixture components.
    covariance_type : {"diag"}, default="diag"
        Accepted so that code written for ``GaussianMixture`` runs unchanged;
        only diagonal covariances are supported.
    tol : float, default=1e-3
        Convergence threshold. EM iterations stop when the gain in the mean
        log-likelihood is below this threshold.
    reg_covar : float, default=1e-6
        Non-negative regularisation added to every variance (user units).
    max_iter : int, default=100
        The number of EM iterations to perform.
    n_init : int, default=1
        The number of initialisations; the best result is kept.
    init_params : {"kmeans", "k-means++", "random", "random_from_data", \
"bisect"}, default="kmeans"
        How weights, means and variances are initialised:

        - "kmeans": k-means clustering (as ``GaussianMixture``); each component
          takes the weight, mean and within-cluster variance of its cluster.
        - "k-means++": k-means++ seeds; every sample goes to its nearest seed
          and each component takes its cell's weight, mean and within-cell
          variance.
        - "random_from_data": seeds drawn at random from the data (with
          probability proportional to ``sample_weight``), then as
          "k-means++".
        - "random": random soft responsibilities (as ``GaussianMixture``).
        - "bisect": deterministic, no random numbers: starting from one cell,
          repeatedly split the cell of largest weighted scatter through its
          mean, across its top principal axis (principal direction divisive
          partitioning). Invariant to row order and to replacing repeated
          rows by integer sample weights.

        k-means runs on the data shifted and scaled by one common factor,
        which leaves its clustering unchanged and avoids overflow. Variances
        are never set from the total data variance, and floors and priors
        apply to the initial parameters too (floors also to
        ``precisions_init``).
    weights_init : array-like of shape (n_components,), default=None
        User-provided initial weights.
    means_init : array-like of shape (n_components, n_features), default=None
        User-provided initial means.
    precisions_init : array-like of shape (n_components, n_features), \
default=None
        User-provided initial precisions (inverse variances).
    random_state : int, RandomState instance or None, default=None
        Controls the random seed of the initialisation.
    warm_start : bool, default=False
        If True, each ``fit`` starts from the previous solution and
        ``n_init`` is ignored.
    verbose : int, default=0
        Verbosity: 1 prints the initialisation and convergence, 2 also every
        ``verbose_interval`` iterations with times and log-likelihood change.
    verbose_interval : int, default=10
        Number of iterations between two messages.
    min_variance : float or array-like of shape (n_features,), default=0.0
        Absolute floor on every variance, in the units of ``X``
        (research name ``lat_min_var`` when ``X`` is standardised).
    min_variance_relative : float, default=0.0
        Floor on each variance as a fraction of that feature's (weighted)
        data variance; the floor applied is the larger of the two. A value of
        0.01 is ``lat_min_var=0.01`` in standardised units.
    min_weight : float, default=0.0
        Minimum weight of every component (research name ``min_prob``, usually
        1e-5). Weights below it are raised to it and the others rescaled.
        ``n_components * min_weight`` must be below 1.
    lower_precision_reg : float, default=0.0
        ``a - 1`` of a Gamma(a, b) prior on each precision (research name
        ``lwr_prs_reg``): the penalty ``-(a - 1) log(precision)`` keeps the
        precision away from 0, i.e. bounds the variance from above, acting
        like ``2 (a - 1)`` pseudo-samples in the variance's denominator.
    upper_precision_reg : float, default=0.0
        ``b`` of the Gamma prior, in variance units of ``X`` (research name
        ``upr_prs_reg``): the penalty ``b * precision`` keeps the precision
        finite, i.e. bounds the variance from below. The MAP variance is
        ``(S + 2 b) / (N_k + 2 (a - 1))``, ``S`` being the weighted scatter
        and ``N_k`` the weight of the component.
    n_jobs : int, default=None
        Number of threads of the Numba kernels. None or -1 uses all of
        numba's threads (``NUMBA_NUM_THREADS``), a negative value all but
        ``-n_jobs - 1``. Numba's thread count is restored after each call.
        Results do not depend on it. Inside the workers of joblib's default
        (loky) backend, e.g. ``GridSearchCV(n_jobs=m)``, joblib sets
        ``NUMBA_NUM_THREADS`` to ``cores // m`` (or to the parent's
        ``NUMBA_NUM_THREADS``, or to ``inner_max_num_threads`` of
        ``joblib.parallel_config``), so the workers together use no more
        threads than there are cores. Joblib's threading backend sets no
        limit: pass ``n_jobs=1`` there.
    annealing : {"floor", "fixed", "temperature"}, default=None
        Deterministic annealing, an outer loop over the levels of
        ``schedule`` that runs ``anneal_max_iter`` EM iterations per level
        before the final EM (at most ``max_iter`` iterations, stopping on
        ``tol``). It moves the fit away from the symmetric saddle where all
        means coincide:

        - "floor": each level is a variance floor, in multiples of each
          feature's data variance; the final EM keeps the last floor.
        - "fixed": each level is every component's variance (same multiples);
          only weights and means are fitted. The final EM frees the
          variances, with the last level as floor.
        - "temperature": each level is a temperature ``T >= 1`` and the
          E-step is tempered, ``r_ik`` proportional to
          ``(weight_k N(x_i | k)) ** (1 / T)`` (DAEM); the final EM has
          ``T = 1``.

        At every level the means get a tiny random offset
        (``1e-3 * sqrt(level)`` standard deviations) so that means that
        coincided can split. With ``warm_start``, the schedule runs on the
        first fit only. None fits by plain EM.
    schedule : Schedule, default=None
        The levels, e.g. :class:`GeometricSchedule` or
        :class:`ExplicitSchedule`; ``start="auto"`` starts at a multiple of
        the data's critical value (``critical_value_``). None means
        ``GeometricSchedule(start="auto", stop=0.01, n_levels=25)`` for
        "floor" and "fixed" and ``GeometricSchedule(start="auto", stop=1.0,
        n_levels=25)`` for "temperature". Ignored without ``annealing``.
    anneal_max_iter : int, default=15
        Largest number of EM iterations per annealing level.
    anneal_tol : float, default=None
        Convergence threshold of each level: a level ends when the gain in
        mean log-likelihood falls below it. None uses ``tol``. 0 runs every
        level for ``anneal_max_iter`` iterations: slower, but on an exactly
        symmetric problem the means then split at the first level below the
        critical value, where the likelihood is still flat (with ``tol`` they
        split a few levels later).
    solver : {"em", "minibatch", "gradient"}, default="em"
        How each iteration gathers sufficient statistics and turns them into
        parameters:

        - "em": batch EM, one pass over the data and the closed-form M-step.
        - "minibatch": online EM; an iteration is one pass over shuffled
          batches of ``batch_size`` rows, each batch's statistics blended
          into running ones with step ``(t + learning_offset) **
          -learning_decay`` (t counts batches) before a closed-form M-step.
          It has batch EM's fixed points. :meth:`partial_fit` takes the same
          step on each batch it is given.
        - "gradient": generalised EM; after each batch E-step,
          ``gradient_steps`` steps of Adam (the AMSGrad variant, whose steps
          shrink with the gradient) ascend the expected log-likelihood per
          sample plus the precision prior, over weight logits, ``eta1`` and
          ``omega = log(precision)`` with ``eta2 = -exp(omega) / 2``, so
          ``eta2 < 0`` holds at every step whatever the learning rate. With
          enough steps the M-step reaches the closed form.

        Floors, ``min_weight``, the prior and annealing act on all three.
    batch_size : int, default=1024
        Rows per batch of ``solver="minibatch"``.
    learning_offset : float, default=10.0
        ``tau`` of online EM's step size ``(t + tau) ** -kappa``; larger
        values damp the first steps.
    learning_decay : float, default=0.7
        ``kappa`` in (0.5, 1] of online EM's step size.
    learning_rate : float, default=0.01
        Adam's learning rate for ``solver="gradient"`` (research name ``lr``).
    gradient_steps : int, default=100
        Adam steps per E-step (research name ``batch_steps``).
    gradient_clip : float, default=1.0
        Largest norm of the gradient, which is rescaled beyond it (research
        name ``grad_clip``).

    Attributes
    ----------
    weights_ : ndarray of shape (n_components,)
        The weight of each component.
    means_ : ndarray of shape (n_components, n_features)
        The mean of each component.
    covariances_ : ndarray of shape (n_components, n_features)
        The variances of each component.
    precisions_ : ndarray of shape (n_components, n_features)
        The precisions (inverse variances) of each component.
    precisions_cholesky_ : ndarray of shape (n_components, n_features)
        Square roots of the precisions.
    eta1_ : ndarray of shape (n_components, n_features)
        First natural parameter, ``means_ / covariances_``.
    eta2_ : ndarray of shape (n_components, n_features)
        Second natural parameter, ``-1 / (2 covariances_)``; always negative.
    converged_ : bool
        Whether the best fit converged.
    n_iter_ : int
        Number of EM iterations of the best fit (all annealing levels and
        the final EM; passes over the data for ``solver="minibatch"``; after
        :meth:`partial_fit`, the number of batches).
    n_steps_ : int
        Online EM steps taken (``solver="minibatch"`` and
        :meth:`partial_fit`), 0 otherwise.
    lower_bound_ : float
        Mean log-likelihood of the training data under the parameters of the
        last iteration's E-step of the best fit.
    lower_bounds_ : list of float
        ``lower_bound_`` at every iteration of the best fit.
    labels_ : ndarray or dask.array.Array of shape (n_samples,)
        Component of each training sample, as ``predict``; a lazy Dask
        array after a fit on one.
    history_ : dict of ndarray
        One entry per EM iteration of the best fit, levels and final EM
        alike: "lower_bound" (mean log-likelihood, as ``lower_bounds_``),
        "level" (annealing level: floor, fixed variance or temperature; NaN
        without annealing), "n_active" (components whose weight is above
        ``min_weight`` and that received mass) and "n_distinct" (number of
        means not within 0.01 standard deviations, in every feature, of an
        earlier one).
    critical_value_ : float
        With ``annealing``: the largest eigenvalue of the data's weighted
        correlation matrix. With all variances above this many times their
        feature's variance, every mean sits at the data mean; below, the
        means split.
    empty_components_ : ndarray of bool, shape (n_components,)
        Components that received no mass at the last M-step; they kept
        their previous mean and variance and their weight fell to
        ``min_weight``.
    n_features_in_ : int
        Number of features seen during fit.
    feature_names_in_ : ndarray of shape (`n_features_in_`,)
        Names of features seen during fit, when ``X`` has string column
        names.

    See Also
    --------
    sklearn.mixture.GaussianMixture : The reference implementation.

    Notes
    -----
    ``fit``, ``fit_predict``, ``partial_fit``, ``predict``, ``predict_proba``,
    ``score_samples`` and ``score`` also accept a ``dask.array.Array``
    (``pip install natgmm[dask]``). Each pass over the data then runs the
    kernels on the blocks where they live and only per-component statistics
    reach the client, which runs the same M-step; from the same start the fit
    equals the in-memory one to about 1e-15 relative. Predictions are lazy
    Dask arrays. The initialisation runs on the client on at most 100 000
    rows (all of them, or a uniform sample). ``solver="minibatch"`` needs the
    data in memory. See the user guide's page on Dask.

    Examples
    --------
    >>> import numpy as np
    >>> from natgmm import NaturalDiagonalGMM
    >>> X = np.array([[1, 2], [1, 4], [1, 0], [10, 2], [10, 4], [10, 0]])
    >>> gm = NaturalDiagonalGMM(n_components=2, random_state=0).fit(X)
    >>> gm.means_
    array([[10.,  2.],
           [ 1.,  2.]])
    >>> gm.predict([[0, 0], [12, 3]])
    array([1, 0])
    """

    _parameter_constraints: dict = {
        "n_components": [Interval(Integral, 1, None, closed="left")],
        "covariance_type": [StrOptions({"diag"})],
        "tol": [Interval(Real, 0.0, None, closed="left")],
        "reg_covar": [Interval(Real, 0.0, None, closed="left")],
        "max_iter": [Interval(Integral, 0, None, closed="left")],
        "n_init": [Interval(Integral, 1, None, closed="left")],
        "init_params": [
            StrOptions({"kmeans", "k-means++", "random", "random_from_data", "bisect"})
        ],
        "weights_init": ["array-like", None],
        "means_init": ["array-like", None],
        "precisions_init": ["array-like", None],
        "random_state": ["random_state"],
        "warm_start": ["boolean"],
        "verbose": ["verbose"],
        "verbose_interval": [Interval(Integral, 1, None, closed="left")],
        "min_variance": [Interval(Real, 0.0, None, closed="left"), "array-like"],
        "min_variance_relative": [Interval(Real, 0.0, None, closed="left")],
        "min_weight": [Interval(Real, 0.0, 1.0, closed="left")],
        "lower_precision_reg": [Interval(Real, 0.0, None, closed="left")],
        "upper_precision_reg": [Interval(Real, 0.0, None, closed="left")],
        # joblib's convention: 0 threads has no meaning.
        "n_jobs": [
            Interval(Integral, None, -1, closed="right"),
            Interval(Integral, 1, None, closed="left"),
            None,
        ],
        "annealing": [StrOptions({"floor", "fixed", "temperature"}), None],
        "schedule": [Schedule, None],
        "anneal_max_iter": [Interval(Integral, 1, None, closed="left")],
        "anneal_tol": [Interval(Real, 0.0, None, closed="left"), None],
        "solver": [StrOptions({"em", "minibatch", "gradient"})],
        "batch_size": [Interval(Integral, 1, None, closed="left")],
        "learning_offset": [Interval(Real, 0.0, None, closed="left")],
        "learning_decay": [Interval(Real, 0.5, 1.0, closed="right")],
        "learning_rate": [Interval(Real, 0.0, None, closed="neither")],
        "gradient_steps": [Interval(Integral, 1, None, closed="left")],
        "gradient_clip": [Interval(Real, 0.0, None, closed="neither")],
    }

    def __init__(
        self,
        n_components=1,
        *,
        covariance_type="diag",
        tol=1e-3,
        reg_covar=1e-6,
        max_iter=100,
        n_init=1,
        init_params="kmeans",
        weights_init=None,
        means_init=None,
        precisions_init=None,
        random_state=None,
        warm_start=False,
        verbose=0,
        verbose_interval=10,
        min_variance=0.0,
        min_variance_relative=0.0,
        min_weight=0.0,
        lower_precision_reg=0.0,
        upper_precision_reg=0.0,
        n_jobs=None,
        annealing=None,
        schedule=None,
        anneal_max_iter=15,
        anneal_tol=None,
        solver="em",
        batch_size=1024,
        learning_offset=10.0,
        learning_decay=0.7,
        learning_rate=0.01,
        gradient_steps=100,
        gradient_clip=1.0,
    ):
        self.n_components = n_components
        self.covariance_type = covariance_type
        self.tol = tol
        self.reg_covar = reg_covar
        self.max_iter = max_iter
        self.n_init = n_init
        self.init_params = init_params
        self.weights_init = weights_init
        self.means_init = means_init
        self.precisions_init = precisions_init
        self.random_state = random_state
        self.warm_start = warm_start
        self.verbose = verbose
        self.verbose_interval = verbose_interval
        self.min_variance = min_variance
        self.min_variance_relative = min_variance_relative
        self.min_weight = min_weight
        self.lower_precision_reg = lower_precision_reg
        self.upper_precision_reg = upper_precision_reg
        self.n_jobs = n_jobs
        self.annealing = annealing
        self.schedule = schedule
        self.anneal_max_iter = anneal_max_iter
        self.anneal_tol = anneal_tol
        self.solver = solver
        self.batch_size = batch_size
        self.learning_offset = learning_offset
        self.learning_decay = learning_decay
        self.learning_rate = learning_rate
        self.gradient_steps = gradient_steps
        self.gradient_clip = gradient_clip

    # ------------------------------------------------------------------ fit

    def fit(self, X, y=None, sample_weight=None):
        """Estimate model parameters with the EM algorithm.

        The model is fitted ``n_init`` times and the parameters with the
        largest mean log-likelihood are kept. Each fit alternates E- and
        M-steps until the gain in mean log-likelihood is below ``tol`` or
        ``max_iter`` iterations have run, otherwise a ``ConvergenceWarning``
        is raised. With ``warm_start=True`` a single fit starts from the
        previous solution.

        Parameters
        ----------
        X : array-like or dask.array.Array of shape (n_samples, n_features)
            Training data, one row per sample.
        y : Ignored
            Not used, present for API consistency by convention.
        sample_weight : array-like of shape (n_samples,), default=None
            Non-negative weight of each sample; an integer weight is
            equivalent to repeating the sample. None means unit weights.

        Returns
        -------
        self : object
            The fitted mixture.
        """
        self.fit_predict(X, y, sample_weight=sample_weight)
        return self

    @_fit_context(prefer_skip_nested_validation=True)
    def fit_predict(self, X, y=None, sample_weight=None):
        """Estimate model parameters using X and predict the labels for X.

        See :meth:`fit`; the labels come from a final E-step, so they equal
        ``fit(X).predict(X)``.

        Parameters
        ----------
        X : array-like or dask.array.Array of shape (n_samples, n_features)
            Training data, one row per sample.
        y : Ignored
            Not used, present for API consistency by convention.
        sample_weight : array-like of shape (n_samples,), default=None
            Non-negative weight of each sample. None means unit weights.

        Returns
        -------
        labels : ndarray or dask.array.Array of shape (n_samples,)
            Component labels.
        """
        with _numba_threads(self.n_jobs) as parallel:
            data = self._data(X, sample_weight, parallel, reset=True, ensure_min_samples=2)
            n_samples, n_features = data.shape
            if n_samples < self.n_components:
                raise ValueError(
                    "Expected n_samples >= n_components "
                    f"but got n_components = {self.n_components}, "
                    f"n_samples = {n_samples}"
                )
            if self.solver == "minibatch" and not isinstance(data, _Data):
                raise ValueError(
                    "solver='minibatch' draws random rows and needs X in memory; for a "
                    "Dask array use solver='em', or partial_fit on its blocks."
                )
            init = self._check_init(n_features, data.dtype)
            min_variance = self._check_min_variance(n_features)
            extra_var = self.reg_covar + min_variance + self.upper_precision_reg
            std = _Standardiser(data, extra_var)
            reg = self._regularisation(std, min_variance)
            random_state = check_random_state(self.random_state)
            do_init = not (self.warm_start and hasattr(self, "converged_"))
            levels = np.empty(0)
            if self.annealing is not None:
                self.critical_value_ = _critical_value(data, std)
                if do_init:
                    levels = self._schedule().values(self.critical_value_)
                self._check_levels(levels)
            best = None
            for trial in range(self.n_init if do_init else 1):
                self._verbose_init_begin(trial)
                if do_init:
                    params = self._initial_params(data, std, reg, init, random_state)
                    lower_bound = -np.inf
                else:
                    params = Params(
                        self.weights_.astype(np.float64),
                        *std.to_internal(
                            self.means_.astype(np.float64), self.covariances_.astype(np.float64)
                        ),
                    )
                    lower_bound = self.lower_bound_
                run = _Run(data, std, random_state)
                self._start_solver(run, params, reg, resume=not do_init)
                anneal_tol = self.tol if self.anneal_tol is None else self.anneal_tol
                for level in levels:
                    params = self._perturb(params, level, std, random_state)
                    level_reg, beta = self._level_settings(level, reg, std)
                    # Each level's bound belongs to its own constraints: the
                    # tol test starts afresh.
                    params, lower_bound, _ = self._em_phase(
                        run, params, -np.inf, level_reg, self.anneal_max_iter, beta, level,
                        anneal_tol,
                    )  # fmt: skip
                    self._verbose_level_end(run)
                final_reg, final_level = self._final_settings(levels, reg, std)
                if levels.size:
                    # The last level's bound belongs to other constraints; the
                    # tol test of the final EM starts afresh.
                    lower_bound = -np.inf
                params, lower_bound, converged = self._em_phase(
                    run, params, lower_bound, final_reg, self.max_iter, 1.0, final_level, self.tol
                )
                self._verbose_init_end(lower_bound, converged)
                if best is None or lower_bound > best[1]:
                    best = (params, lower_bound, converged, run)

            params, lower_bound, converged, run = best
            if not converged and self.max_iter > 0:
                warnings.warn(
                    "Best performing initialization did not converge. "
                    "Try different init parameters, or increase max_iter, "
                    "tol, or check for degenerate data.",
                    ConvergenceWarning,
                    stacklevel=2,
                )
            self._set_fitted(params, std, data.dtype)
            self.converged_ = converged
            self.n_iter_ = len(run.history["lower_bound"])
            self.lower_bound_ = lower_bound
            self.lower_bounds_ = list(run.history["lower_bound"])
            self.history_ = {key: np.asarray(value) for key, value in run.history.items()}
            self.empty_components_ = run.empty
            self.n_steps_ = run.online.n_steps if run.online else 0
            self._online, self._adam = run.online, run.adam
            self._partial_rng, self._levels = random_state, np.empty(0)
            # Final E-step, so that fit_predict(X) == fit(X).predict(X).
            self.labels_ = data.log_prob(std, params, want_resp=False)[1]
        return self.labels_

    def partial_fit(self, X, y=None, sample_weight=None):
        """Update the model with one batch of data by an online EM step.

        The batch's sufficient statistics are blended into running ones with
        step ``(t + learning_offset) ** -learning_decay``, ``t`` counting the
        batches seen (continuing from ``n_steps_`` after :meth:`fit`), and the
        M-step (closed form, or Adam for ``solver="gradient"``) turns them
        into parameters. The first call initialises the model from its batch
        as :meth:`fit` would (with ``init_params``; "random_from_data" with
        repeated seeds if the batch has fewer rows than components) and fixes
        the internal standardisation; floors relative to the data variance
        follow the variance of all data seen. With ``annealing``, each level
        lasts ``anneal_max_iter`` batches.

        Parameters
        ----------
        X : array-like or dask.array.Array of shape (n_samples, n_features)
            One batch, one row per sample; a single row is allowed.
        y : Ignored
            Not used, present for API consistency by convention.
        sample_weight : array-like of shape (n_samples,), default=None
            Non-negative weight of each sample. None means unit weights.

        Returns
        -------
        self : object
            The updated mixture; ``lower_bound_`` is the mean log-likelihood
            of the batch under the parameters before the update.
        """
        first = not hasattr(self, "_std")
        if first:
            self._validate_params()
        with _numba_threads(self.n_jobs) as parallel:
            data = self._data(X, sample_weight, parallel, reset=first)
            min_variance = self._check_min_variance(data.shape[1])
            if first:
                self._partial_start(data, min_variance)
            else:
                self._std.update(data)
            std = self._std
            reg = self._regularisation(std, min_variance)
            if self._online is None:  # first call, or after a batch fit
                self._online = _Online(self._params, reg, self.n_steps_)
            if self.solver == "gradient" and self._adam is None:
                self._adam = adam_state(self._params, reg.reg)
            run = _Run(data, std, self._partial_rng)
            run.online, run.adam = self._online, self._adam
            params, reg, beta = self._partial_level(run, self._params, reg)
            loglik, stats = _e_step(data, std, params, beta)
            batch_weight = data.total_weight
            params = self._online_update(run, stats, batch_weight, reg, params, std.moments.nk[0])
            self._set_fitted(params, std, data.dtype)
            self.n_steps_ = self.n_iter_ = self._online.n_steps
            self.lower_bound_ = loglik / batch_weight + std.log_jacobian
            self.empty_components_ = run.empty
        return self

    def _partial_start(self, data, min_variance):
        """First partial_fit call: standardisation, schedule, initial model."""
        extra_var = self.reg_covar + min_variance + self.upper_precision_reg
        std = _Standardiser(data, extra_var)
        reg = self._regularisation(std, min_variance)
        self._partial_rng = check_random_state(self.random_state)
        self._levels = np.empty(0)
        if self.annealing is not None:
            self.critical_value_ = _critical_value(data, std)
            self._levels = self._schedule().values(self.critical_value_)
            self._check_levels(self._levels)
        how = None if data.positive_rows() >= self.n_components else "random_from_data"
        init = self._check_init(data.shape[1], data.dtype)
        params = self._initial_params(data, std, reg, init, self._partial_rng, how)
        if how is not None:
            # Fewer rows than components: seeds repeat, and repeated seeds
            # leave components empty or identical. Equal weights and offsets
            # of a small fraction of each spread let them separate as data
            # arrives.
            noise = self._partial_rng.standard_normal(params.means.shape)
            params = Params(
                np.full(self.n_components, 1.0 / self.n_components),
                params.means + _PERTURBATION * np.sqrt(params.variances) * noise,
                params.variances,
            )
        self._params = params
        self._std, self._online, self._adam, self.n_steps_ = std, None, None, 0

    def _partial_level(self, run, params, reg):
        """Annealing level of the next partial_fit step: params, reg, beta."""
        levels = getattr(self, "_levels", np.empty(0))
        index, offset = divmod(run.online.n_steps, self.anneal_max_iter)
        if index >= levels.size:
            final_reg, _ = self._final_settings(levels, reg, run.std)
            return params, final_reg, 1.0
        if offset == 0:  # a new level: let coincident means split
            params = self._perturb(params, levels[index], run.std, run.random_state)
        level_reg, beta = self._level_settings(levels[index], reg, run.std)
        return params, level_reg, beta

    def _check_levels(self, levels):
        if self.annealing == "temperature" and np.any(levels < 1.0):
            raise ValueError(f"Temperatures must be at least 1, got {levels.min()}.")

    def _schedule(self):
        if self.schedule is not None:
            return self.schedule
        return GeometricSchedule(stop=1.0 if self.annealing == "temperature" else 0.01)

    def _level_settings(self, level, reg, std):
        """Regularisation and inverse temperature of one annealing level."""
        if self.annealing == "temperature":
            return reg, 1.0 / level
        if self.annealing == "fixed":
            return reg._replace(fixed_var=level * std.feature_var + reg.reg), 1.0
        return reg._replace(floor=np.maximum(reg.floor, level * std.feature_var)), 1.0

    def _final_settings(self, levels, reg, std):
        """Regularisation and history level of the EM after the schedule."""
        if not levels.size:
            return reg, np.nan
        if self.annealing == "temperature":
            return reg, 1.0
        return reg._replace(floor=np.maximum(reg.floor, levels[-1] * std.feature_var)), levels[-1]

    def _perturb(self, params, level, std, random_state):
        noise = random_state.standard_normal(params.means.shape)
        offset = _PERTURBATION * np.sqrt(level * std.feature_var) * noise
        return params._replace(means=params.means + offset)

    def _check_init(self, n_features, dtype):
        """Validate user-provided initial parameters without modifying self."""
        shape = (self.n_components, n_features)
        weights = means = precisions = None
        if self.weights_init is not None:
            weights = _check_init_array(
                self.weights_init, (self.n_components,), "weights", np.float64
            )
            if np.any(weights < 0.0) or np.any(weights > 1.0):
                raise ValueError(
                    "The parameter 'weights' should be in the range [0, 1], but got "
                    f"max value {weights.max():.5f}, min value {weights.min():.5f}"
                )
            atol = 1e-6 if dtype == np.float32 else 1e-8
            if abs(1.0 - weights.sum()) > atol:
                raise ValueError(
                    "The parameter 'weights' should be normalized, but got "
                    f"sum(weights) = {weights.sum():.5f}"
                )
        if self.means_init is not None:
            means = _check_init_array(self.means_init, shape, "means", np.float64)
        if self.precisions_init is not None:
            precisions = _check_init_array(
                self.precisions_init, shape, "diag precision", np.float64
            )
            if np.any(precisions <= 0.0):
                raise ValueError("'diag precision' should be positive")
        return weights, means, precisions

    def _check_min_variance(self, n_features):
        min_variance = np.asarray(self.min_variance, dtype=np.float64)
        if min_variance.ndim == 1:
            if min_variance.shape != (n_features,):
                raise ValueError(
                    f"min_variance should be a float or have shape ({n_features},), "
                    f"got shape {min_variance.shape}."
                )
            if np.any(min_variance < 0) or not np.all(np.isfinite(min_variance)):
                raise ValueError("min_variance should be finite and non-negative.")
        return min_variance

    def _regularisation(self, std, min_variance):
        """Floors, prior and reg_covar mapped to internal units."""
        n_features = std.scale.shape[0]
        if self.n_components * self.min_weight >= 1.0:
            raise ValueError(
                f"n_components * min_weight must be below 1, got "
                f"{self.n_components} * {self.min_weight}."
            )
        scale2 = std.scale**2
        return Regularisation(
            reg=np.broadcast_to(self.reg_covar * scale2, (n_features,)),
            floor=np.broadcast_to(
                np.maximum(min_variance * scale2, self.min_variance_relative * std.feature_var),
                (n_features,),
            ),
            prior_a1=float(self.lower_precision_reg),
            prior_b=self.upper_precision_reg * scale2,
            min_weight=float(self.min_weight),
        )

    def _initial_params(self, data, std, reg, init, random_state, how=None):
        weights, means, precisions = init
        if weights is None or means is None or precisions is None:
            X, sw = data.init_rows(random_state)
            stats = self._initial_stats(X, sw, std, random_state, data.parallel, how)
            params, _ = m_step(stats, reg)
        else:
            params = Params(None, None, None)
        if weights is not None:
            params = params._replace(weights=weights)
        if means is not None:
            params = params._replace(means=(means - std.shift) * std.scale)
        if precisions is not None:
            params = params._replace(variances=np.maximum(std.scale**2 / precisions, reg.floor))
        return params

    def _initial_stats(self, X, sw, std, random_state, parallel, how=None):
        """Sufficient statistics of the initial partition of the data.

        ``how`` overrides ``init_params``.
        """
        how = how or self.init_params
        n_samples = X.shape[0]
        n_blocks = _n_blocks(n_samples)
        # k-means is invariant to a common factor on the weights; scaling to
        # a maximum of one keeps them from underflowing in float32.
        weights = sw / sw.max() if sw.shape[0] else None
        k = self.n_components
        if how == "random":
            return self._random_init_stats(X, sw, std, random_state)
        if how == "bisect":
            labels = self._bisect_labels(X, sw, std, parallel)
            centres = None
        else:
            # k-means is invariant to one common shift and scale: use them to
            # keep squared distances finite for any magnitude of X.
            spread = np.max(1.0 / std.scale)
            Xk = (X - std.shift.astype(X.dtype)) / X.dtype.type(spread)
            if how == "kmeans":
                km = KMeans(n_clusters=k, n_init=1, random_state=random_state)
                km.fit(Xk, sample_weight=weights)
                labels, centres = km.labels_, km.cluster_centers_
            else:
                if how == "k-means++":
                    centres, _ = kmeans_plusplus(
                        Xk, k, random_state=random_state, sample_weight=weights
                    )
                else:  # random_from_data
                    p = None if weights is None else weights / weights.sum()
                    # Fewer (weighted) rows than seeds: some seeds repeat.
                    few = (n_samples if p is None else np.count_nonzero(p)) < k
                    idx = random_state.choice(n_samples, size=k, replace=few, p=p)
                    centres = Xk[idx]
                labels = pairwise_distances_argmin(Xk, centres)
            centres = centres.astype(np.float64) * spread * std.scale
        labels = labels.astype(np.int64)
        if centres is None:
            centres = np.zeros((k, X.shape[1]))
        nk, s1, s2 = _kernels.label_stats(
            X, sw, std.shift, std.scale, labels, centres, n_blocks, parallel
        )
        return Stats(nk, s1, s2, centres)

    def _random_init_stats(self, X, sw, std, random_state):
        """Statistics of random soft responsibilities, drawn in row chunks.

        The draws are those of one ``uniform(size=(n_samples, n_components))``
        call, as in ``GaussianMixture``, without the full array.
        """
        n_samples, n_features = X.shape
        k = self.n_components
        nk = np.zeros(k)
        s1 = np.zeros((k, n_features))
        s2 = np.zeros((k, n_features))
        for start in range(0, n_samples, _ROW_CHUNK):
            stop = min(start + _ROW_CHUNK, n_samples)
            resp = random_state.uniform(size=(stop - start, k))
            resp /= resp.sum(axis=1, keepdims=True)
            if sw.shape[0]:
                resp *= sw[start:stop, np.newaxis]
            z = (X[start:stop].astype(np.float64) - std.shift) * std.scale
            nk += resp.sum(axis=0)
            s1 += resp.T @ z
            s2 += resp.T @ (z * z)
        return Stats(nk, s1, s2, np.zeros((k, n_features)))

    def _bisect_labels(self, X, sw, std, parallel):
        """Deterministic divisive partition into ``n_components`` cells.

        Principal direction divisive partitioning: the cell of largest
        weighted scatter is split through its weighted mean, perpendicular to
        its top principal axis, until there are ``n_components`` cells.
        Scatter and axes are those of the data in its own units (as k-means
        sees it; standardised data would hide which feature separates
        clusters), computed after one common rescaling against overflow. The
        axis comes from the cell's weighted covariance accumulated over row
        chunks, and its sign is fixed by its largest entry, so the result
        depends neither on row order nor on how weight is spread over
        repeated rows.
        """
        n_samples, n_features = X.shape
        n_blocks = _n_blocks(n_samples)
        labels = np.zeros(n_samples, dtype=np.int64)
        ref = np.zeros((self.n_components, n_features))
        to_common = 1.0 / (std.scale * np.max(1.0 / std.scale))  # internal -> common units
        for n_cells in range(1, self.n_components):
            nk, s1, s2 = _kernels.label_stats(
                X, sw, std.shift, std.scale, labels, ref, n_blocks, parallel
            )
            live = nk > 0
            ref[live] += s1[live] / nk[live, np.newaxis]
            scatter = (s2 - s1**2 / np.maximum(nk, 1e-300)[:, np.newaxis]) * to_common**2
            score = np.where(live, scatter.sum(axis=1), 0.0)
            cell = int(np.argmax(score[:n_cells]))
            if not score[cell] > 0:
                break  # fewer distinct points than components
            rows = np.flatnonzero(labels == cell)
            cov = _scatter_matrix(X, sw, std, rows, ref[cell], to_common)
            axis = np.linalg.eigh(cov)[1][:, -1]
            axis *= np.sign(axis[np.argmax(np.abs(axis))])
            for chunk in _chunks(rows):
                u = _internal(X, chunk, std, ref[cell], to_common)
                labels[chunk[u @ axis > 0]] = n_cells
        return labels

    def _em_phase(self, run, params, lower_bound, reg, max_iter, beta, level, tol):
        """EM from ``params``: one fused kernel call and one M-step a loop.

        Stops after ``max_iter`` iterations or when the gain falls below
        ``tol``. Returns the parameters, the last lower bound and whether the
        gain fell below ``tol``; the iterations are recorded in ``run``.
        """
        std = run.std
        relative = np.sqrt(np.where(std.feature_var > 0, std.feature_var, 1.0))
        for _ in range(max_iter):
            previous_bound = lower_bound
            if self.solver == "minibatch":
                loglik, nk, params = self._minibatch_epoch(run, params, reg, beta)
            else:
                loglik, stats = _e_step(run.data, std, params, beta)
                nk = stats.nk
                params, run.empty = self._m_step(stats, reg, params, run.adam, run.total_weight)
            lower_bound = loglik / run.total_weight + std.log_jacobian
            active = (nk > reg.min_weight * nk.sum()) & ~run.empty
            run.record(lower_bound, level, int(active.sum()), params.means / relative)
            change = lower_bound - previous_bound
            self._verbose_iter_end(len(run.history["lower_bound"]), change, run.empty)
            if abs(change) < tol:
                return params, lower_bound, True
        return params, lower_bound, False

    def _start_solver(self, run, params, reg, resume):
        """Seed the solver's state (online statistics, Adam) at ``params``.

        A warm start resumes the previous fit's state where it has one.
        """
        if self.solver == "minibatch":
            previous = getattr(self, "_online", None) if resume else None
            run.online = previous or _Online(params, reg)
        elif self.solver == "gradient":
            previous = getattr(self, "_adam", None) if resume else None
            run.adam = previous or adam_state(params, reg.reg)

    def _m_step(self, stats, reg, params, adam, total_weight):
        """Closed-form M-step, or Adam steps when ``solver="gradient"``."""
        if adam is None:
            return m_step(stats, reg, previous=params)
        step = GradientMStep(self.gradient_steps, self.learning_rate, self.gradient_clip)
        return step(stats, reg, adam, total_weight), empty_components(stats.nk)

    def _online_update(self, run, stats, batch_weight, reg, params, total_weight):
        """One online EM step: blend ``stats`` in, then M-step on the blend."""
        run.online.step(stats, batch_weight, self.learning_offset, self.learning_decay)
        params, run.empty = self._m_step(
            run.online.totals(total_weight), reg, params, run.adam, total_weight
        )
        return params

    def _minibatch_epoch(self, run, params, reg, beta):
        """One pass of online EM over shuffled batches of ``batch_size`` rows.

        Returns the summed log-likelihood of the batches (each under the
        parameters at its step), the running weights and the parameters.
        """
        n_samples = run.data.shape[0]
        order = run.random_state.permutation(n_samples)
        loglik = 0.0
        for start in range(0, n_samples, self.batch_size):
            # Sorted rows: memory order.
            batch = run.data.subset(np.sort(order[start : start + self.batch_size]))
            if not batch.total_weight > 0:
                continue
            batch_loglik, stats = _e_step(batch, run.std, params, beta)
            loglik += batch_loglik
            params = self._online_update(
                run, stats, batch.total_weight, reg, params, run.total_weight
            )
        return loglik, run.online.totals(run.total_weight).nk, params

    def _set_fitted(self, params, std, dtype):
        means, covariances = std.to_user(params.means, params.variances)
        with np.errstate(over="ignore", divide="ignore", invalid="ignore"):
            fitted = {
                "weights_": params.weights.astype(dtype),
                "means_": means.astype(dtype),
                "covariances_": covariances.astype(dtype),
                "precisions_": (1.0 / covariances).astype(dtype),
                "precisions_cholesky_": (1.0 / np.sqrt(covariances)).astype(dtype),
                "eta1_": (means / covariances).astype(dtype),
                "eta2_": (-0.5 / covariances).astype(dtype),
            }
        if not all(np.all(np.isfinite(v)) for v in fitted.values()) or not np.all(
            fitted["covariances_"] > 0
        ):
            raise ValueError(_OUT_OF_RANGE.format(dtype=np.dtype(dtype).name))
        self._std = std
        self._params = params
        for name, value in fitted.items():
            setattr(self, name, value)

    # ----------------------------------------------------------- inference

    def _data(self, X, sample_weight, parallel, reset, ensure_min_samples=1):
        """Validate ``X`` and ``sample_weight``; return the source of their statistics.

        A Dask array is checked without computing it (see ``natgmm._dask``).
        """
        if _is_dask(X):
            from ._dask import DaskData

            return DaskData(self, X, sample_weight, parallel, reset, ensure_min_samples)
        X = validate_data(
            self, X, dtype=[np.float64, np.float32], order="C", reset=reset,
            ensure_min_samples=ensure_min_samples,
        )  # fmt: skip
        if sample_weight is None:
            return _Data(X, np.empty(0), float(X.shape[0]), parallel)
        sw = _check_sample_weight(sample_weight, X, dtype=np.float64, ensure_non_negative=True)
        return _Data(X, sw, float(sw.sum()), parallel)

    def _infer(self, X, want_resp=False):
        check_is_fitted(self)
        with _numba_threads(self.n_jobs) as parallel:
            data = self._data(X, None, parallel, reset=False)
            return data.log_prob(self._std, self._params, want_resp)

    def score_samples(self, X):
        """Compute the log-likelihood of each sample.

        Parameters
        ----------
        X : array-like or dask.array.Array of shape (n_samples, n_features)
            Samples, one per row.

        Returns
        -------
        log_prob : ndarray or dask.array.Array of shape (n_samples,)
            Log-density of each sample under the model.
        """
        return self._infer(X)[0]

    def score(self, X, y=None, sample_weight=None):
        """Compute the (weighted) mean log-likelihood of the samples.

        Parameters
        ----------
        X : array-like or dask.array.Array of shape (n_samples, n_features)
            Samples, one per row.
        y : Ignored
            Not used, present for API consistency by convention.
        sample_weight : array-like of shape (n_samples,), default=None
            Weights of the samples in the mean. None means unit weights.

        Returns
        -------
        log_likelihood : float
            Mean log-likelihood of ``X`` under the model.
        """
        log_prob = self.score_samples(X)
        if _is_dask(log_prob):
            from ._dask import weighted_mean

            return weighted_mean(log_prob, sample_weight)
        return _mean_log_prob(log_prob, sample_weight)

    def predict(self, X):
        """Predict the most probable component of each sample.

        Parameters
        ----------
        X : array-like or dask.array.Array of shape (n_samples, n_features)
            Samples, one per row.

        Returns
        -------
        labels : ndarray or dask.array.Array of shape (n_samples,)
            Component labels.
        """
        return self._infer(X)[1]

    def predict_proba(self, X):
        """Posterior probability of each component for each sample.

        Parameters
        ----------
        X : array-like or dask.array.Array of shape (n_samples, n_features)
            Samples, one per row.

        Returns
        -------
        resp : ndarray or dask.array.Array of shape (n_samples, n_components)
            Responsibilities; each row sums to one.
        """
        return self._infer(X, want_resp=True)[2]

    def sample(self, n_samples=1):
        """Generate random samples from the fitted mixture.

        Parameters
        ----------
        n_samples : int, default=1
            Number of samples to generate.

        Returns
        -------
        X : ndarray of shape (n_samples, n_features)
            Generated samples, grouped by component.
        y : ndarray of shape (n_samples,)
            Component of each sample.
        """
        check_is_fitted(self)
        if n_samples < 1:
            raise ValueError(
                f"Invalid value for 'n_samples': {n_samples} . The sampling requires at "
                "least one sample."
            )
        rng = check_random_state(self.random_state)
        counts = rng.multinomial(n_samples, self.weights_.astype(np.float64))
        n_features = self.means_.shape[1]
        X = np.vstack(
            [
                mean + rng.standard_normal(size=(count, n_features)) * np.sqrt(cov)
                for mean, cov, count in zip(
                    self.means_.astype(np.float64),
                    self.covariances_.astype(np.float64),
                    counts,
                    strict=True,
                )
            ]
        )
        y = np.concatenate([np.full(count, k, dtype=np.int64) for k, count in enumerate(counts)])
        return X, y

    def _n_parameters(self):
        n_features = self.means_.shape[1]
        return 2 * self.n_components * n_features + self.n_components - 1

    def bic(self, X):
        """Bayesian information criterion for the current model on X.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            The input samples.

        Returns
        -------
        bic : float
            The lower the better.
        """
        return -2 * self.score(X) * len(X) + self._n_parameters() * math.log(len(X))

    def aic(self, X):
        """Akaike information criterion for the current model on X.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            The input samples.

        Returns
        -------
        aic : float
            The lower the better.
        """
        return -2 * self.score(X) * len(X) + 2 * self._n_parameters()

    # ------------------------------------------------------------- verbose

    def _verbose_init_begin(self, trial):
        if self.verbose >= 1:
            print(f"Initialization {trial}")
            self._init_time = self._iter_time = time()

    def _verbose_iter_end(self, n_iter, change, empty):
        if self.verbose >= 1 and empty.any():
            print(f"  Iteration {n_iter}: components {np.flatnonzero(empty).tolist()} empty")
        if n_iter % self.verbose_interval == 0:
            if self.verbose == 1:
                print(f"  Iteration {n_iter}")
            elif self.verbose >= 2:
                now = time()
                print(
                    f"  Iteration {n_iter}\t time lapse {now - self._iter_time:.5f}s\t "
                    f"ll change {change:.5f}"
                )
                self._iter_time = now

    def _verbose_level_end(self, run):
        if self.verbose >= 1:
            h = run.history
            print(
                f"  Level {h['level'][-1]:.4g} ({self.annealing}): iterations "
                f"{len(h['lower_bound'])}, lower bound {h['lower_bound'][-1]:.5f}, "
                f"active {h['n_active'][-1]}, distinct means {h['n_distinct'][-1]}"
            )

    def _verbose_init_end(self, lower_bound, converged):
        message = "converged" if converged else "did not converge"
        if self.verbose == 1:
            print(f"Initialization {message}.")
        elif self.verbose >= 2:
            print(
                f"Initialization {message}. time lapse {time() - self._init_time:.5f}s\t "
                f"lower bound {lower_bound:.5f}."
            )
