"""Internal coordinates: each feature standardised, and everything mapped back.

The kernels and the M-step work on standardised features, so that data and
regularisers are of order one whatever their units. This module holds the
map (:class:`Standardiser`), what is measured in its units (the critical
value of annealing, the M-step's :class:`~natgmm._em.Regularisation`), the
set-up that ``fit`` and ``partial_fit`` share (:func:`set_up`), and the
fitted attributes in user units that the estimator and
:class:`~natgmm.StandardizedGMM` share (:func:`fitted_attributes`).
"""

from typing import NamedTuple

import numpy as np

from ._data import scatter_from_sums
from ._em import Regularisation, Stats, combine, feature_weights

_UNOBSERVED = (
    "Feature(s) {features} of X are missing (NaN) in every row{weighted}: nothing can be "
    "learnt about them. Drop them, or (for partial_fit) start the stream with a batch in "
    "which every feature is observed: the first batch fixes the map to internal units "
    "and the start."
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
    scatter in internal units; :meth:`update` adds the batches of
    ``partial_fit``. With missing entries (NaN), mean and variance are those
    of each feature's observed entries and ``moments`` holds their weights
    (``nkd``); a feature with no observed entry of positive weight is an
    error.
    """

    def __init__(self, data, extra_var):
        dtype, n_features = data.dtype, data.shape[1]
        largest, smallest = data.extremes()
        _check_observed(np.isnan(largest), "")
        magnitude = np.maximum(np.abs(largest), np.abs(smallest)).astype(np.float64)
        magnitude[magnitude == 0.0] = 1.0
        info = np.finfo(dtype)
        zero = np.zeros(n_features)
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

    def update(self, data):
        """Add a batch to the data moments (the map itself stays fixed)."""
        ref = self.moments.ref
        if data.missing:
            nk, nkd, s1, s2 = data.label_stats_masked(self.shift, self.scale, ref)
            batch = Stats(nk, s1, s2, ref, nkd)
        else:
            batch = Stats(*data.label_stats(self.shift, self.scale, ref), ref)
        self.moments = combine(self.moments, batch, 1.0, 1.0)

    def to_internal(self, means, variances):
        """Means and variances in user units, mapped to internal ones."""
        return (means - self.shift) * self.scale, variances * self.scale**2

    def to_user(self, means, variances):
        """Means and variances in internal units, mapped to user ones."""
        return means / self.scale + self.shift, variances / self.scale**2


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
    scatter = scatter_from_sums(*data.scatter_sums(standardiser))
    spread = np.sqrt(np.diag(scatter))
    keep = spread > 0
    if not keep.any():
        return 1.0
    corr = scatter[np.ix_(keep, keep)] / np.outer(spread[keep], spread[keep])
    return float(np.linalg.eigvalsh(corr)[-1])


def check_min_variance(min_variance, n_features):
    """``min_variance`` (a float or one value per feature), checked against the data."""
    if min_variance.ndim == 1:
        if min_variance.shape != (n_features,):
            raise ValueError(
                f"min_variance should be a float or have shape ({n_features},), "
                f"got shape {min_variance.shape}."
            )
        if np.any(min_variance < 0) or not np.all(np.isfinite(min_variance)):
            raise ValueError("min_variance should be finite and non-negative.")
    return min_variance


def regularisation(standardiser, min_variance, settings):
    """Floors, prior, minimum weight and ``reg_covar`` in internal units."""
    n_features = standardiser.scale.shape[0]
    scale2 = standardiser.scale**2
    floor = np.maximum(
        min_variance * scale2, settings.min_variance_relative * standardiser.feature_var
    )
    return Regularisation(
        reg_covar=np.broadcast_to(settings.reg_covar * scale2, (n_features,)),
        floor=np.broadcast_to(floor, (n_features,)),
        prior_a1=settings.lower_precision_reg,
        prior_b=settings.upper_precision_reg * scale2,
        min_weight=settings.min_weight,
    )


class Model(NamedTuple):
    """What a fit sets up before its first iteration."""

    standardiser: Standardiser
    reg: Regularisation
    critical_value: float | None  # None without annealing


def set_up(data, settings):
    """Standardise ``data`` and express the regularisation in its units.

    The critical value is computed (one more pass) only with annealing.
    """
    min_variance = check_min_variance(settings.min_variance, data.shape[1])
    extra_var = settings.reg_covar + min_variance + settings.upper_precision_reg
    standardiser = Standardiser(data, extra_var)
    reg = regularisation(standardiser, min_variance, settings)
    critical = None if settings.annealing is None else critical_value(data, standardiser)
    return Model(standardiser, reg, critical)


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
