"""Internal coordinates: each feature standardised, and everything mapped back.

The kernels and the M-step work on standardised features, so that data and
regularisers are of order one whatever their units. This module holds the
map (:class:`Standardiser`), what is measured in its units (the critical
value of annealing, the M-step's :class:`~natgmm._em.Regularisation`), the
set-up that ``fit`` and ``partial_fit`` share (:func:`set_up`), and the
fitted attributes in user units that the estimator and
:class:`~natgmm.StandardizedGMM` share (:func:`fitted_attributes`).
"""

import copy
import math
import warnings
from contextlib import contextmanager
from contextvars import ContextVar
from typing import NamedTuple

import numpy as np
from sklearn.preprocessing import StandardScaler

from ._blas import single_threaded_blas
from ._data import (
    FAR_ROWS,
    check_finite,
    positive_extremes,
    row_blocks,
    scaled_weights,
    scatter_from_sums,
    top_correlation,
)
from ._em import Params, Regularisation, Stats, combine, feature_weights
from ._progress import caller_level

_UNOBSERVED = (
    "Feature(s) {features} of X are missing (NaN) in every row{weighted}: nothing can be "
    "learnt about them. Drop them, or (for partial_fit) start the stream with a batch in "
    "which every feature is observed: the first batch fixes the map to internal units "
    "and the start."
)

# A partial_fit batch with a value more than this many standard deviations
# (of the data the map was made from) from its feature's mean is rejected:
# its squared distance would exceed 1 / eps times that of the data, drowning
# every other row's scatter (or overflowing the running statistics). Below
# it, with batch weights below _MAX_BATCH_WEIGHT times the first batch's
# mean weight, no running statistic can overflow.
MAX_DEVIATIONS = 2.0**26
_MAX_BATCH_WEIGHT = 2.0**400

_OUTLIER_BATCH = (
    "partial_fit rejected this batch, and the model is unchanged: feature {feature} "
    "reaches {value:.3g}, {deviations:.3g} standard deviations from its mean in the "
    "data the model was started on (the limit is 2**26 = 6.7e7). A row that far out "
    "would drown the running statistics of every component. Remove or clip such rows, "
    "or start again with fit (or a first partial_fit batch) on data that covers their "
    "range."
)
_HEAVY_BATCH = (
    "partial_fit rejected this batch, and the model is unchanged: its weights total "
    "{weight} times the mean weight of the first batch (the limit is 2**400). "
    "Rescale the sample weights of the stream alike."
)

_OUT_OF_RANGE = (
    "The fitted variances or precisions cannot be represented in {dtype}: some "
    "feature's spread (or reg_covar, min_variance, upper_precision_reg in its "
    "units) is too large or too small. Rescale the features of X."
)


class Standardiser:
    """Per-feature affine map to internal coordinates, ``z = (x - shift) * scale``.

    ``shift`` is the weighted feature mean. ``scale`` is the inverse of
    ``sqrt(var + extra_var)``, the feature's weighted variance plus the
    variances the model adds on top (``reg_covar``, floors, prior), so that
    the data and every regulariser are at most of order one inside, whatever
    their units; any positive scale is exact for EM. Both are float64, as is
    every kernel's arithmetic, whatever the dtype of ``X``. The moments come
    from two kernel passes (mean, then scatter about it) after division by
    the largest magnitude, so data from 1e-150 to 1e150 neither underflows
    nor overflows. ``moments`` holds the data's total weight, mean and
    scatter in internal units; :meth:`updated` adds the batches of
    ``partial_fit``. ``weight_scale`` is the power of two the data's sample
    weights were multiplied by (see :func:`natgmm._data.weight_scale`); the
    batches of ``partial_fit`` are scaled alike. With missing entries (NaN),
    mean and variance are those of each feature's observed entries and
    ``moments`` holds their weights (``nkd``); a feature with no observed
    entry of positive weight is an error.
    """

    # Models pickled by natgmm 0.1.0 used the weights as given.
    weight_scale = 1.0
    # Rows behind ``moments`` (all rows, of any weight); unknown in models
    # pickled before 2026-12-06.
    n_rows = None

    def __init__(self, data, extra_var):
        dtype, n_features = data.dtype, data.shape[1]
        largest, smallest = data.extremes()  # of the rows of positive weight
        weighted = " of positive weight" if data.positive_rows() < data.shape[0] else ""
        _check_observed(np.isnan(largest), weighted)
        # Rows of weight zero: checked by fit_rows, which computes their extremes anyway.
        check_finite(largest, smallest, dtype)
        magnitude = np.maximum(np.abs(largest), np.abs(smallest)).astype(np.float64)
        magnitude[magnitude == 0.0] = 1.0
        info = np.finfo(dtype)
        zero = np.zeros(n_features)
        with np.errstate(over="ignore"):  # subnormal magnitudes: capped
            inv_mag = np.minimum(1.0 / magnitude, info.max)
        if data.missing:
            nk, nkd, s1, _ = data.label_stats_masked(zero, inv_mag, np.zeros((1, n_features)))
            _check_observed(nkd[0] <= 0.0, " of positive weight")
            ref = s1 / nkd
            nk, nkd, s1, s2 = data.label_stats_masked(zero, inv_mag, ref)
            counts = nkd[0]
        else:
            nk, s1, _ = data.label_stats(zero, inv_mag, np.zeros((1, n_features)))
            ref = s1 / nk[0]
            nk, s1, s2 = data.label_stats(zero, inv_mag, ref)
            counts, nkd = nk[0], None
        mean = (ref[0] + s1[0] / counts) / inv_mag
        deviation = np.sqrt(np.maximum(s2[0] - s1[0] ** 2 / counts, 0.0) / counts) / inv_mag
        # sqrt(deviation^2 + extra_var) without squaring anything large; the
        # spread is kept above the dtype's resolution at the feature's
        # magnitude so that |z| stays below 2 / eps.
        terms = np.stack([deviation, np.sqrt(np.broadcast_to(extra_var, deviation.shape))])
        top = terms.max(axis=0)
        top[top == 0.0] = 1.0
        spread = top * np.sqrt(np.sum((terms / top) ** 2, axis=0))
        spread = np.maximum(spread, magnitude * info.eps)
        self.shift = mean
        self.scale = np.minimum(1.0 / spread, info.max / 4)
        self.log_jacobian = float(np.sum(np.log(self.scale)))
        self.weight_scale = data.weight_scale
        self.n_rows = data.shape[0]
        total = nk[:1]
        self.moments = Stats(
            total,
            np.zeros((1, n_features)),
            ((deviation * self.scale) ** 2 * (total if nkd is None else nkd[0]))[np.newaxis],
            ((mean - self.shift) * self.scale)[np.newaxis],
            nkd,
        )

    @property
    def feature_var(self):
        """Each feature's variance in internal units (at most about 1)."""
        return self.moments.s2[0] / feature_weights(self.moments)[0]

    def check_batch(self, data):
        """Raise a ValueError if ``data`` (a ``partial_fit`` batch) cannot be added.

        A batch is rejected before it changes anything if some value lies more
        than ``MAX_DEVIATIONS`` standard deviations from its feature's mean
        (in internal units), or if its weights are more than
        ``2**400`` times the first batch's.
        """
        # Over all rows: a batch's far rows are refused whatever their weight.
        largest, smallest = (a.astype(np.float64) for a in data.extremes(positive=False))
        check_finite(largest, smallest, data.dtype)
        with np.errstate(over="ignore"):
            # NaN: a feature missing in every row of the batch, which is fine.
            high, low = (
                np.nan_to_num(np.abs((a - self.shift) * self.scale)) for a in (largest, smallest)
            )
        far = np.maximum(high, low)
        if np.any(far > MAX_DEVIATIONS):
            feature = int(np.argmax(far))
            value = largest[feature] if high[feature] >= low[feature] else smallest[feature]
            scaling = _STANDARDISED_INPUT.get()
            if scaling is not None:  # the value as the user's X has it
                value = scaling.inverse(feature, value)
            raise ValueError(
                _OUTLIER_BATCH.format(feature=feature, value=value, deviations=far[feature])
            )
        if not data.total_weight <= _MAX_BATCH_WEIGHT:
            weight = data.total_weight
            weight = f"{weight:.3g}" if math.isfinite(weight) else "over 1e308"
            raise ValueError(_HEAVY_BATCH.format(weight=weight))

    def updated(self, data):
        """Return the map with a batch added to its data moments (the map is unchanged)."""
        ref = self.moments.ref
        if data.missing:
            nk, nkd, s1, s2 = data.label_stats_masked(self.shift, self.scale, ref)
            batch = Stats(nk, s1, s2, ref, nkd)
        else:
            batch = Stats(*data.label_stats(self.shift, self.scale, ref), ref)
        new = copy.copy(self)
        new.moments = combine(self.moments, batch, 1.0, 1.0)
        if self.n_rows is not None:
            new.n_rows = self.n_rows + data.shape[0]
        return new

    @property
    def row_weight(self):
        """The mean weight of a row of the data seen (times ``weight_scale``), or None.

        None for models pickled without a row count.
        """
        if self.n_rows is None:
            return None
        return float(self.moments.nk[0]) / self.n_rows

    def to_internal(self, means, variances):
        """Means and variances in user units, mapped to internal ones."""
        return (means - self.shift) * self.scale, variances * self.scale**2

    def to_user(self, means, variances):
        """Means and variances in internal units, mapped to user ones."""
        return means / self.scale + self.shift, variances / self.scale**2


class MixtureMap(NamedTuple):
    """A map to internal units made from a mixture's parameters, for predictions.

    For a model whose attributes were set by hand (no data, no
    :class:`Standardiser`): ``shift`` is the mixture's mean and ``scale`` the
    inverse of its standard deviation, per feature. Any positive scale is
    exact; this one keeps the internal terms of order one.
    """

    shift: np.ndarray
    scale: np.ndarray
    log_jacobian: float

    @classmethod
    def of(cls, weights, means, variances):
        """Return the map of the mixture ``weights, means, variances`` (user units, float64)."""
        share = weights / weights.sum()
        shift = share @ means
        with np.errstate(over="ignore", invalid="ignore"):
            spread = np.sqrt(share @ (variances + (means - shift) ** 2))
        spread[~(np.isfinite(spread) & (spread > 0.0))] = 1.0
        scale = 1.0 / spread
        return cls(shift, scale, float(np.sum(np.log(scale))))

    to_internal = Standardiser.to_internal


def _check_observed(unobserved, weighted):
    """Raise the error for features with no observed entry (``unobserved``: a mask)."""
    if np.any(unobserved):
        features = ", ".join(str(j) for j in np.flatnonzero(unobserved))
        raise ValueError(_UNOBSERVED.format(features=features, weighted=weighted))


def critical_value(data, standardiser):
    """Largest eigenvalue of the weighted correlation matrix of X.

    With every variance held at ``v`` times its feature's variance, EM has
    all means at the data mean as a stable fixed point exactly when ``v`` is
    above this value (deterministic annealing's critical temperature; for
    two points at -1 and +1 it is 1). Constant features are left out; 1 when
    every feature is constant.

    With missing entries, the correlation matrix is that of the data with
    its missing entries at the feature means (pairwise sums over the rows
    observing both features, over each feature's own observed scatter). It
    is again exact: near the pooled solution a mean moves in feature ``d``
    by ``sum_i o_id o_ie z_id z_ie / n_d`` times its offset in feature ``e``
    (in units of the level), a matrix similar to that correlation matrix.
    """
    return top_correlation(scatter_from_sums(*data.scatter_sums(standardiser)))


def check_min_variance(min_variance, n_features):
    """``min_variance`` (a float or one value per feature), checked against the data."""
    if min_variance.ndim >= 1:
        if min_variance.shape != (n_features,):
            raise ValueError(
                f"min_variance should be a float or have shape ({n_features},), "
                f"got shape {min_variance.shape}."
            )
        if np.any(min_variance < 0) or not np.all(np.isfinite(min_variance)):
            raise ValueError(
                "min_variance should be finite and non-negative, got "
                f"{np.array2string(min_variance, threshold=8)}."
            )
    return min_variance


def regularisation(standardiser, min_variance, settings):
    """Floors, prior, minimum weight and ``reg_covar`` in internal units."""
    n_features = standardiser.scale.shape[0]
    scale2 = standardiser.scale**2
    # Pseudo-counts are in units of sample weight: scaled with the weights
    # (see Standardiser), so that the MAP estimate is that of the weights as
    # given.
    weight_scale = standardiser.weight_scale
    floor = np.maximum(
        min_variance * scale2, settings.min_variance_relative * standardiser.feature_var
    )
    _check_constant_features(standardiser, settings.reg_covar * scale2 + floor, settings)
    return Regularisation(
        # Own arrays, not broadcast views: the M-step's kernel takes them as they are.
        reg_covar=np.array(np.broadcast_to(settings.reg_covar * scale2, (n_features,))),
        floor=np.array(np.broadcast_to(floor, (n_features,))),
        prior_a1=settings.lower_precision_reg * weight_scale,
        prior_b=settings.upper_precision_reg * scale2 * weight_scale,
        min_weight=settings.min_weight,
    )


def _check_constant_features(standardiser, held, settings):
    """Raise a ValueError for constant features whose variance nothing holds above zero.

    ``held`` is each feature's ``reg_covar`` plus floor in internal units. A
    constant feature beyond about 1e150 has a resolution (and so an internal
    scale) at which ``reg_covar`` underflows to zero; its components would
    then have no variance, reported as "ill-defined empirical covariance".
    """
    # Held below the smallest normal number (zero, or a subnormal whose
    # inverse overflows), and constant but for the rounding of its moments.
    info = np.finfo(np.float64)
    lost = (held < info.tiny) & (standardiser.feature_var < np.sqrt(info.eps))
    if settings.reg_covar > 0.0 and np.any(lost):
        features = ", ".join(str(j) for j in np.flatnonzero(lost))
        raise ValueError(
            f"Feature(s) {features} of X are constant at a magnitude (|x| about "
            f"{np.max(np.abs(standardiser.shift[lost])):.3g}) where reg_covar is below "
            "float64's resolution of their values, so that their variance would be zero. "
            "Drop constant features, or rescale X."
        )


# StandardizedGMM's FeatureScaling while it fits its inner estimator: the
# data are standardised already, so the reg_covar warning's advice would be
# void, and a rejected batch's outlier is quoted in the units of the user's X.
_STANDARDISED_INPUT = ContextVar("natgmm_standardised_input", default=None)
# reg_covar above this fraction of a feature's variance is warned about.
_REG_COVAR_FRACTION = 0.1


@contextmanager
def standardised_input(scaling):
    """Mark the fits run inside as fits of data standardised by ``scaling`` (a FeatureScaling).

    They give no reg_covar warning, and messages quote values in the units
    of the data before ``scaling``.
    """
    token = _STANDARDISED_INPUT.set(scaling)
    try:
        yield
    finally:
        _STANDARDISED_INPUT.reset(token)


def warn_reg_covar(standardiser, reg, settings, n_samples):
    """Warn if ``reg_covar`` exceeds 10% of the variance of a non-constant feature.

    ``reg_covar`` is added to every variance in the units of ``X`` (as in
    scikit-learn); on a feature of small spread it merges clusters narrower
    than its square root, silently. Features that are constant up to
    rounding (scikit-learn's ``StandardScaler`` criterion) are left out.
    """
    if _STANDARDISED_INPUT.get() is not None or not settings.reg_covar > 0:
        return
    var = standardiser.feature_var  # internal units, as reg.reg_covar
    eps = np.finfo(np.float64).eps
    mean = standardiser.shift * standardiser.scale  # at most 1 / eps (see Standardiser)
    constant = var <= n_samples * eps * var + (n_samples * mean * eps) ** 2
    narrow = ~constant & (reg.reg_covar > _REG_COVAR_FRACTION * var)
    if not narrow.any():
        return
    features = np.flatnonzero(narrow)
    with np.errstate(over="ignore", under="ignore"):
        variances = var[features] / standardiser.scale[features] ** 2
    listed = ", ".join(f"{j} ({v:.3g})" for j, v in zip(features[:5], variances[:5], strict=False))
    more = f" and {features.size - 5} more" if features.size > 5 else ""
    warnings.warn(
        f"reg_covar={settings.reg_covar:g} is more than {_REG_COVAR_FRACTION:.0%} of the "
        f"variance of feature(s) {listed}{more}: it is added to every variance in the units "
        f"of X, so clusters narrower than sqrt(reg_covar) = {np.sqrt(settings.reg_covar):.3g} "
        "in these features merge. Use StandardizedGMM, which fits on standardised features, "
        "or a smaller reg_covar.",
        UserWarning,
        stacklevel=caller_level(),
    )


class Model(NamedTuple):
    """What a fit sets up before its first iteration."""

    standardiser: Standardiser
    reg: Regularisation
    critical_value: float | None  # None without annealing
    data: object  # the rows to fit: the data's fit_rows


def set_up(data, settings):
    """Standardise ``data`` and express the regularisation in its units.

    The critical value is computed (one more pass) only with annealing.
    """
    min_variance = check_min_variance(settings.min_variance, data.shape[1])
    extra_var = settings.reg_covar + min_variance + settings.upper_precision_reg
    standardiser = Standardiser(data, extra_var)
    reg = regularisation(standardiser, min_variance, settings)
    warn_reg_covar(standardiser, reg, settings, data.shape[0])
    if settings.min_variance_relative >= 1.0:
        warnings.warn(
            f"min_variance_relative={settings.min_variance_relative:g} holds every variance "
            "at or above its feature's data variance: components at least as wide as the "
            "data separate only along correlated features, if at all. A floor is a small "
            "fraction of the variance (0.01, say).",
            UserWarning,
            stacklevel=caller_level(),
        )
    data = data.fit_rows(standardiser)
    critical = None if settings.annealing is None else critical_value(data, standardiser)
    return Model(standardiser, reg, critical, data)


# StandardScaler is fitted to x itself, rather than to u, when every feature's
# exponent is at most this (|x| from about 1e-30 to 1e30), no row has weight
# zero (such rows may lie far beyond the others) and every weight is at least
# _DIRECT_WEIGHT (the weights' mean is about one): its sums of w x and of
# w (x - mean)**2 then neither overflow nor hold anything but terms far below
# their rounding in subnormals, so they are 2**exponent times those of u, bit
# for bit, and no copy u of X is made.
_DIRECT_EXPONENT = 100
_DIRECT_WEIGHT = 2.0**-60


# StandardizedGMM's scaler fits data with missing entries a block of rows of
# at most this many bytes at a time (64 MiB).
_SCALER_BYTES = 2**26


def _fit_by_blocks(X, blocks, sample_weight):
    """Whether ``X`` has missing entries and each block sees each feature in a weighed row.

    A weighed row: of positive weight. The scaler then fits by blocks;
    ``StandardScaler.partial_fit`` of a
    block without such a row makes that feature's mean NaN (first block)
    or its variance NaN (later), and refuses a block of zero weights.
    """
    missing = False
    for rows in blocks:
        seen = ~np.isnan(X[rows])
        missing = missing or not seen.all()
        if sample_weight is not None:
            seen &= (sample_weight[rows] > 0)[:, np.newaxis]
        if not seen.any(axis=0).all():
            return False
    return missing


def _scaler_of_u(X, exponent, sample_weight, direct):
    """Return ``StandardScaler``'s mean and scale of ``u = X * 2**-exponent``.

    Fitted to ``X`` and scaled if ``direct``, else fitted to ``u``. The
    scale of a constant feature is 1 in the units of ``x``: ``2**-exponent``.
    With missing entries and more rows than a block of ``_SCALER_BYTES``,
    each block observing each feature in a row of positive weight, by
    ``partial_fit`` over such blocks (the same to rounding): on missing
    entries the scaler's one-shot fit holds masks and centred copies of
    ``X``, 858 MiB beyond an ``X`` of 1e6 x 50 with 5 % missing (381 MiB),
    against 135 MiB by blocks.
    """
    blocks = row_blocks(X, _SCALER_BYTES)
    scaler = StandardScaler()
    # One BLAS thread: with weights the scaler sums by a product (weights @ u),
    # whose order of additions follows BLAS's thread count.
    with single_threaded_blas():
        if len(blocks) == 1 or not _fit_by_blocks(X, blocks, sample_weight):
            scaler.fit(X if direct else np.ldexp(X, -exponent), sample_weight=sample_weight)
        else:
            # Its running variance of a constant feature may end a rounding
            # below zero: sqrt warns, and the feature is constant all the same.
            with np.errstate(invalid="ignore"):
                for rows in blocks:
                    u = X[rows] if direct else np.ldexp(X[rows], -exponent)
                    weights = None if sample_weight is None else sample_weight[rows]
                    scaler.partial_fit(u, sample_weight=weights)
    to_u = -exponent if direct else np.zeros_like(exponent)
    # StandardScaler's scale_ is sqrt(var_) but for (near) constant features.
    with np.errstate(invalid="ignore"):
        constant = scaler.scale_ != np.sqrt(scaler.var_)
    with np.errstate(over="ignore"):  # 2**-exponent of the other (subnormal) features
        scale = np.where(constant, np.ldexp(1.0, -exponent), np.ldexp(scaler.scale_, to_u))
    return np.ldexp(scaler.mean_, to_u), scale


class FeatureScaling(NamedTuple):
    """StandardizedGMM's standardisation, ``StandardScaler``'s without overflow.

    Each feature is first multiplied by a power of two, ``u = x *
    2**-exponent``, that brings its largest magnitude into ``[0.5, 1)``;
    ``mean`` and ``scale`` are those of ``StandardScaler`` fitted to ``u``,
    and ``z = (u - mean) / scale``. Multiplying by a power of two is exact
    and commutes with every operation of the scaler (for any data whose
    results are representable), so ``z``, ``mean_`` and ``scale_`` are
    bit for bit those of ``StandardScaler`` on ``x`` (of its ``partial_fit``
    over blocks of rows for large data with missing entries); beyond, where
    ``StandardScaler`` overflows (from about 1e154) or underflows, they
    stay finite and accurate. A constant feature keeps scale 1 in the units
    of ``x``, as in ``StandardScaler``.
    """

    exponent: np.ndarray  # int, per feature
    mean: np.ndarray  # of u
    scale: np.ndarray  # of u: 2**-exponent for a constant feature

    @classmethod
    def fit(cls, X, sample_weight):
        """Fit the standardisation to ``X`` (validated) with ``sample_weight`` (or None)."""
        # fmax, fmin: missing entries (NaN) are left out; no temporary of X's size.
        largest = np.fmax(*(np.abs(f.reduce(X, axis=0)) for f in (np.fmax, np.fmin)))
        # Checked here, before StandardScaler warns of its 0 / 0 for them.
        _check_observed(np.isnan(largest), "")
        check_finite(largest, largest, X.dtype)
        weightless = sample_weight is not None and not np.all(sample_weight > 0)
        if weightless:
            # A row of weight zero sets neither the power of two nor, if so
            # far out that its squares overflow, StandardScaler's sums.
            all_rows = largest
            largest = np.fmax(*map(np.abs, positive_extremes(X, sample_weight)))
            _check_observed(np.isnan(largest), " of positive weight")
        exponent = np.frexp(largest)[1].astype(np.int64)
        with np.errstate(over="ignore"):
            far = weightless and np.max(np.ldexp(all_rows, -exponent)) > FAR_ROWS
        if far:
            X, sample_weight = X[sample_weight > 0], sample_weight[sample_weight > 0]
        if sample_weight is not None:
            sample_weight = scaled_weights(sample_weight)[0]  # exact; the sums cannot overflow
        direct = not weightless and np.all(np.abs(exponent) <= _DIRECT_EXPONENT)
        if direct and sample_weight is not None:
            direct = np.min(sample_weight) >= _DIRECT_WEIGHT
        return cls(exponent, *_scaler_of_u(X, exponent, sample_weight, direct))

    @classmethod
    def from_mean_and_scale(cls, mean, scale):
        """Return the standardisation ``(x - mean) / scale`` (for models pickled without one)."""
        return cls(np.zeros(mean.shape, dtype=np.int64), mean, scale)

    @property
    def mean_(self):
        """Each feature's (weighted) mean, in the units of ``x``."""
        return np.ldexp(self.mean, self.exponent)

    @property
    def scale_(self):
        """Each feature's (weighted) standard deviation in the units of ``x``; 1 if constant."""
        return np.ldexp(self.scale, self.exponent)

    def inverse(self, feature, z):
        """Return the standardised value ``z`` of ``feature`` in the units of ``x``."""
        u = z * self.scale[feature] + self.mean[feature]
        with np.errstate(over="ignore"):
            return float(np.ldexp(u, self.exponent[feature]))

    def transform(self, X):
        """Return ``X`` (validated) standardised, in its dtype (``StandardScaler.transform``)."""
        # As StandardScaler: mean and scale rounded to the dtype of X, and
        # the arithmetic in it. Underflow: values below the resolution of
        # their feature; overflow: the scale of a constant float32 feature
        # below 2**-126, whose values are then all its mean.
        with np.errstate(under="ignore", over="ignore"):
            Z = np.ldexp(X, -self.exponent)
            Z -= self.mean.astype(Z.dtype)
            Z /= self.scale.astype(Z.dtype)
        return Z


# With solver="gradient", the likelier cause comes first.
_DIVERGED_ADAM = (
    "The fitted variances or precisions cannot be represented in {dtype}. With "
    "solver='gradient' that is what Adam steps too large for the data do (they drive the "
    "log-precisions to their bounds): lower learning_rate. Otherwise some feature's spread "
    "(or reg_covar, min_variance, upper_precision_reg in its units) is too large or too "
    "small: rescale the features of X."
)


def model_attributes(standardiser, params, dtype, solver="em"):
    """:func:`fitted_attributes` of ``params`` (internal units) mapped to the user's units.

    The error for values out of range names the learning rate when
    ``solver`` is "gradient".
    """
    # A variance beyond float64 in user units is refused by fitted_attributes.
    with np.errstate(over="ignore", divide="ignore", under="ignore"):
        user = standardiser.to_user(params.means, params.variances)
    try:
        return fitted_attributes(params.weights, *user, dtype)
    except ValueError:
        if solver != "gradient":
            raise
        raise ValueError(_DIVERGED_ADAM.format(dtype=np.dtype(dtype).name)) from None


# The attributes scikit-learn's predictions read (its _estimate_log_prob and
# _estimate_log_weights); natgmm's predictions follow the same ones.
PREDICTIVE_ATTRIBUTES = ("weights_", "means_", "precisions_cholesky_")

_NOT_A_MIXTURE = (
    "weights_, means_ and precisions_cholesky_ do not describe a diagonal mixture: {why}. "
    "They are set by fit; set by hand, weights_ is (n_components,) of non-negative "
    "numbers, not all zero, means_ (n_components, n_features) of finite numbers and "
    "precisions_cholesky_ (n_components, n_features) of positive ones."
)


def predictive_model(attributes, state, published=None):
    """Return the map to internal units, and the parameters in them, that predictions use.

    ``attributes`` are the estimator's ``weights_``, ``means_`` and
    ``precisions_cholesky_``; ``state`` its ModelState, or None;
    ``published`` a copy of those attributes as the fit set them (None:
    computed from ``state``). While the attributes are unchanged, the fit's
    own float64 parameters are used; once changed (or set by hand, without a
    fit), the parameters are made from them, as scikit-learn's predictions
    are.
    """
    if state is not None:
        if published is None:  # a model pickled before the copy was kept
            dtype = np.result_type(attributes[1], np.float32)
            fitted = model_attributes(state.standardiser, state.params, dtype)
            published = [fitted[name] for name in PREDICTIVE_ATTRIBUTES]
        if all(map(_unchanged, attributes, published)):
            return state.standardiser, state.params
    weights, means, variances = mixture_of(attributes)
    standardiser = (
        state.standardiser if state is not None else MixtureMap.of(weights, means, variances)
    )
    return standardiser, Params(weights, *standardiser.to_internal(means, variances))


def _unchanged(attribute, published):
    """``np.array_equal(attribute, published)``, for ``published`` as a fit set it (finite).

    The same bytes are the same finite values: compared as bytes first, a
    quarter of ``array_equal``'s time, which answers otherwise (``-0.0``
    against ``0.0``, another dtype, a list).
    """
    if (
        type(attribute) is np.ndarray
        and attribute.dtype == published.dtype
        and attribute.shape == published.shape
        and attribute.tobytes() == published.tobytes()
    ):
        return True
    return np.array_equal(attribute, published)


def mixture_of(attributes):
    """Return the float64 weights, means and variances that ``attributes`` describe.

    ``attributes`` are ``weights_``, ``means_`` and ``precisions_cholesky_``
    (what scikit-learn's predictions and warm starts read), checked to
    describe a mixture.
    """
    weights, means, root = (np.asarray(a, dtype=np.float64) for a in attributes)
    if (
        weights.ndim != 1
        or means.ndim != 2
        or root.shape != means.shape
        or len(means) != len(weights)
    ):
        why = f"their shapes are {weights.shape}, {means.shape} and {root.shape}"
        raise ValueError(_NOT_A_MIXTURE.format(why=why))
    with np.errstate(over="ignore", divide="ignore"):
        variances = 1.0 / root**2
    checks = [
        (np.all(weights >= 0.0) and np.all(np.isfinite(weights)) and weights.sum() > 0.0,
         "weights_ must be finite, non-negative and not all zero"),
        (np.all(np.isfinite(means)), "means_ must be finite"),
        (np.all((root > 0.0) & np.isfinite(variances) & (variances > 0.0)),
         "precisions_cholesky_ must be positive, with finite and non-zero squared inverses"),
    ]  # fmt: skip
    for holds, why in checks:
        if not holds:
            raise ValueError(_NOT_A_MIXTURE.format(why=why))
    return weights, means, variances


def fitted_attributes(weights, means, covariances, dtype):
    """Return the fitted attributes of a diagonal mixture in user units, as ``dtype``.

    Raises a ValueError when a variance or precision cannot be represented
    in ``dtype`` (zero, infinite or not a number), rather than return it.
    """
    with np.errstate(over="ignore", divide="ignore", invalid="ignore"):
        fitted = {
            "weights_": weights.astype(dtype),
            "means_": means.astype(dtype),
            "covariances_": covariances.astype(dtype),
            "precisions_": (1.0 / covariances).astype(dtype),
            "precisions_cholesky_": (1.0 / np.sqrt(covariances)).astype(dtype),
            "eta1_": (means / covariances).astype(dtype),
            "eta2_": (-0.5 / covariances).astype(dtype),
        }
    finite = all(np.all(np.isfinite(value)) for value in fitted.values())
    if not finite or not np.all(fitted["covariances_"] > 0):
        raise ValueError(_OUT_OF_RANGE.format(dtype=np.dtype(dtype).name))
    return fitted
