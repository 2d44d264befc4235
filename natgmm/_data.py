"""Training data in memory, and the passes over it.

Every pass over the training data goes through a data source: an
:class:`ArrayData` for numpy input, a :class:`natgmm._dask.DaskData` for a
Dask array. Both have the same methods, whose arguments are those of the
kernels without the data, so the EM loop is the same code for both; only how
the statistics of a pass are gathered differs.

NaN entries are missing values. A data source says whether it has any
(``missing``); the passes over data with missing entries run the masked
kernels, which marginalise them exactly, and the numpy passes (the
initialisations' scatter, the critical value) put them at the feature means.
"""

import math

import numpy as np
from sklearn import config_context
from sklearn.utils import assert_all_finite
from sklearn.utils.validation import _check_sample_weight, validate_data

from . import _kernels

# The numpy passes hold BLAS at one thread as the kernels do: a threaded
# BLAS next to a busy core spins (doc/performance.rst, "Threads under load").
from ._blas import single_threaded_blas
from ._em import _LOG_2PI, masked_natural_parameters, natural_parameters
from ._threading import n_blocks

# Rows handled at a time by the numpy passes (initialisations, scatter).
ROW_CHUNK = 4096


# Internal units (standard deviations) beyond which a row's squared terms
# could overflow: rows of weight zero that far out are left out of a fit.
FAR_ROWS = 1e100


# scikit-learn's message, for infinities its input check did not see (Dask
# arrays are checked on the workers; scikit-learn's assume_finite=True skips it).
_INFINITE = "Input X contains infinity or a value too large for {dtype!r}."


def check_finite(largest, smallest, dtype):
    """Raise scikit-learn's error for an infinite entry (the features' extremes given)."""
    if np.any(np.isinf(largest)) or np.any(np.isinf(smallest)):
        raise ValueError(_INFINITE.format(dtype=np.dtype(dtype)))


def far_weightless_rows(data, standardiser):
    """Whether some row of ``data`` (of weight zero) lies beyond ``FAR_ROWS`` internal units.

    Called for data with rows of weight zero, whose map to internal units
    the rows of positive weight set. An infinity in them is an error: a row
    of weight zero is left out of a fit, an infinity is not.
    """
    high, low = data.extremes(positive=False)
    check_finite(high, low, data.dtype)
    with np.errstate(over="ignore", invalid="ignore"):
        spans = [np.abs((a - standardiser.shift) * standardiser.scale) for a in (high, low)]
    return bool(np.nanmax(np.maximum(*spans)) > FAR_ROWS)


def positive_extremes(X, sample_weight):
    """Each feature's largest and smallest value over the rows of positive weight (NaN if none)."""
    rows = (np.asarray(sample_weight) > 0)[:, np.newaxis]
    # NaN, the initial value, is no value to fmax and fmin.
    return tuple(f.reduce(X, axis=0, where=rows, initial=np.nan) for f in (np.fmax, np.fmin))


def weight_scale(largest, mean_over_largest):
    """Return the power of two nearest ``1 / mean(sample_weight)``.

    Given the largest weight and the mean of the weights divided by it (so
    that nothing overflows for weights up to float64's largest). Multiplying
    the weights by it is exact, leaves unit weights (and any whose mean is
    within a factor of sqrt(2) of one) unchanged, and brings any others to a
    mean of about one, where no statistic of a fit over- or underflows: the
    fit depends on the weights through their ratios only. 1.0 when no weight
    is positive.
    """
    if not largest > 0:
        return 1.0
    exponent = -round(math.log2(mean_over_largest) + math.log2(largest))
    return math.ldexp(1.0, min(max(exponent, -1022), 1023))


def scaled_weights(sample_weight, scale=None):
    """``sample_weight`` times :func:`weight_scale` (or ``scale``), and the factor."""
    if scale is None:
        largest = float(sample_weight.max()) if sample_weight.size else 0.0
        mean = float(np.mean(sample_weight / largest)) if largest > 0 else 0.0
        scale = weight_scale(largest, mean)
    return (sample_weight if scale == 1.0 else sample_weight * scale), scale


def sample_rows(n_samples, n_rows, random_state):
    """``n_rows`` distinct row indices of ``n_samples``, sorted (memory order).

    Drawn by a generator seeded from one draw of ``random_state``, whose
    sampling without replacement takes memory for the sample only (legacy
    ``RandomState.choice`` permutes all ``n_samples``).
    """
    generator = np.random.default_rng(random_state.randint(np.iinfo(np.int32).max))
    return np.sort(generator.choice(n_samples, n_rows, replace=False))


def row_chunks(rows):
    """Split an array of row indices into chunks of ``ROW_CHUNK``."""
    return [rows[i : i + ROW_CHUNK] for i in range(0, rows.size, ROW_CHUNK)]


def row_blocks(X, max_bytes, row_bytes=None):
    """Slices of the rows of ``X`` into blocks of at most ``max_bytes`` (at least a row each).

    A row counts ``row_bytes`` (default: those of a row of ``X``). Views of
    ``X`` by bytes, where :func:`row_chunks` takes rows by index.
    """
    row_bytes = X.dtype.itemsize * X.shape[1] if row_bytes is None else row_bytes
    rows = max(1, max_bytes // max(1, row_bytes))
    return [slice(start, start + rows) for start in range(0, X.shape[0], rows)]


def internal_rows(X, rows, standardiser, centre=0.0, unit=1.0):
    """Rows of ``X`` in internal coordinates, minus ``centre``, times ``unit``.

    Missing entries (NaN) are put at ``centre`` (0 in the result): with the
    default, at the feature's mean.
    """
    u = ((X[rows].astype(np.float64) - standardiser.shift) * standardiser.scale - centre) * unit
    u[np.isnan(u)] = 0.0
    return u


def scatter_sums(X, sample_weight, standardiser, rows, centre=0.0, unit=1.0):
    """Weight, weighted sum and weighted outer products of :func:`internal_rows`."""
    n_features = X.shape[1]
    weight, first, second = 0.0, np.zeros(n_features), np.zeros((n_features, n_features))
    with single_threaded_blas():
        for chunk in row_chunks(rows):
            u = internal_rows(X, chunk, standardiser, centre, unit)
            w = sample_weight[chunk] if sample_weight.shape[0] else np.ones(len(chunk))
            weight += w.sum()
            first += w @ u
            second += (u * w[:, np.newaxis]).T @ u
    return weight, first, second


def scatter_from_sums(weight, first, second):
    """Weighted scatter matrix about the weighted mean, from :func:`scatter_sums`."""
    return second - np.outer(first, first) / weight


def scatter_matrix(X, sample_weight, standardiser, rows, centre=0.0, unit=1.0):
    """Weighted scatter matrix of :func:`internal_rows` about their weighted mean.

    Accumulated chunk by chunk about ``centre`` (which should be close to
    the mean, so that removing the mean's outer product cancels little).
    """
    return scatter_from_sums(*scatter_sums(X, sample_weight, standardiser, rows, centre, unit))


def component_moments(
    X, sample_weight, standardiser, params, components, parallel, missing, min_resp=0.0
):  # fmt: skip
    """Responsibility-weighted weight and scatter of the rows about each of ``components``' means.

    An item of ``components`` is a component or a sequence of components
    (a group whose means coincide): a group's rows are weighted by the sum
    of its members' responsibilities, about its first member's mean. With
    ``min_resp`` positive, rows whose (summed) responsibility is not above
    it are left out. Returns the weights, of shape ``(len(components),)``,
    and the scatter matrices, of shape ``(len(components), n_features,
    n_features)``, in internal units; missing entries count as at the
    component's mean.
    """
    n_features = X.shape[1]
    members = [np.atleast_1d(k) for k in components]
    weight = np.zeros(len(members))
    scatter = np.zeros((len(members), n_features, n_features))
    with single_threaded_blas():
        for start in range(0, X.shape[0], ROW_CHUNK):
            rows = X[start : start + ROW_CHUNK]  # a view: no copy of the rows
            resp = log_prob(rows, standardiser, params, parallel, True, missing)[2]
            w = sample_weight[start : start + ROW_CHUNK] if sample_weight.shape[0] else None
            w = np.ones(rows.shape[0]) if w is None else w
            for a, group in enumerate(members):
                r = resp[:, group[0]] if group.size == 1 else resp[:, group].sum(axis=1)
                kept = np.flatnonzero(r > min_resp) if min_resp > 0 else slice(None)
                wr = w[kept] * r[kept]
                v = internal_rows(rows, kept, standardiser, params.means[group[0]])
                weight[a] += wr.sum()
                scatter[a] += (v * wr[:, np.newaxis]).T @ v
    return weight, scatter


def top_correlation(scatter):
    """Largest eigenvalue of the correlation matrix of a scatter matrix (1 if all constant).

    Features without spread are left out. Of the data's scatter, this is its
    critical value (:func:`natgmm._standardise.critical_value`); of a
    component's, the temperature below which that component would split in
    two if it had a partner at its mean.
    """
    # A feature constant up to rounding can come out slightly negative.
    spread = np.sqrt(np.maximum(np.diag(scatter), 0.0))
    keep = spread > 0
    if not keep.any():
        return 1.0
    corr = scatter[np.ix_(keep, keep)] / np.outer(spread[keep], spread[keep])
    return float(np.linalg.eigvalsh(corr)[-1])


class Operands:
    """The natural parameters of ``params`` and the log-density kernels' operands, made once.

    Made when first asked for, for data with or without missing entries,
    float32 or float64: a fitted estimator keeps one beside its parameters,
    so that each prediction does not make them again (a fifth of a one-row
    ``predict``'s time). Only the parameters are pickled.
    """

    def __init__(self, params):
        self.params = params
        self._made = {}  # (missing, float32) -> (natural parameters, kernel operands)

    def __reduce__(self):
        return type(self), (self.params,)

    def get(self, missing, float32):
        """Return the natural parameters and the kernel's operands for such data."""
        key = (bool(missing), bool(float32))
        made = self._made.get(key)
        if made is None:
            if missing:
                natural = masked_natural_parameters(self.params)
                made = natural, _kernels.log_prob_masked_operands(*natural, float32)
            else:
                natural = natural_parameters(self.params)
                made = natural, _kernels.log_prob_operands(*natural, float32)
            # Threads that get here together make the same arrays: one is kept.
            self._made[key] = made
        return made


def log_prob(X, standardiser, params, parallel, want_resp, missing=None, operands=None):
    """Per-row log-density (user units), labels and optionally responsibilities.

    Rows with missing entries (NaN) get the density of their observed
    entries; ``missing`` says whether ``X`` has any (None: look).
    ``operands`` is an :class:`Operands` of ``params`` (None: made here).
    """
    if missing is None:
        missing = _kernels.has_missing(X)
    if operands is None:
        operands = Operands(params)
    n_samples, n_components = X.shape[0], params.means.shape[0]
    out = np.empty(n_samples)
    labels = np.empty(n_samples, dtype=np.int64)
    resp = np.empty((n_samples if want_resp else 0, n_components))
    natural, prepared = operands.get(missing, X.dtype == np.float32)
    if missing:
        eta1, eta2, feature_norm, log_weight = natural
        _kernels.log_prob_masked_prepared(
            X, standardiser.shift, standardiser.scale, prepared, out, labels, resp, parallel
        )
    else:
        eta1, eta2, log_norm, log_weight = natural
        _kernels.log_prob_prepared(
            X, standardiser.shift, standardiser.scale, prepared, out, labels, resp, parallel
        )
    far = np.flatnonzero(~np.isfinite(out))
    if far.size:
        Xf = X[far]
        if missing:
            # Each row's log-normaliser over its observed features.
            log_norm = log_weight + (~np.isnan(Xf)).astype(np.float64) @ feature_norm.T
        out[far], labels[far], far_resp = _far_log_prob(Xf, standardiser, eta1, eta2, log_norm)
        if want_resp:
            resp[far] = far_resp
    out += standardiser.log_jacobian
    return out, labels, resp


def component_log_prob(X, standardiser, params):
    """Each row's log-density under each component, in the units of ``X``.

    An ``(n_samples, n_components)`` array, for scikit-learn's private
    ``_estimate_log_prob``: summed about each component's mean (no
    cancellation), a chunk of rows at a time, over the observed entries of
    rows with missing ones (as :func:`log_prob`).
    """
    _, means, variances = params
    # Per feature and component, in the units of X: the normaliser and the
    # map's log-Jacobian.
    feature_norm = -0.5 * (_LOG_2PI + np.log(variances)) + np.log(standardiser.scale)
    out = np.empty((X.shape[0], means.shape[0]))
    chunk = max(1, 2**18 // means.size)  # a (chunk, K, D) temporary of 2 MiB
    with np.errstate(over="ignore", invalid="ignore"):
        for start in range(0, X.shape[0], chunk):
            z = X[start : start + chunk].astype(np.float64) - standardiser.shift
            z *= standardiser.scale
            d = z[:, np.newaxis, :] - means
            terms = feature_norm - 0.5 * d * d / variances
            out[start : start + chunk] = np.where(np.isnan(d), 0.0, terms).sum(axis=2)
    return out


def _far_log_prob(X, standardiser, eta1, eta2, log_norm):
    """Log-densities, labels and responsibilities of rows far outside the data.

    For rows whose squared internal coordinates overflow, the kernel's
    expanded form gives -inf or NaN. With ``z = 2 t v`` and ``t = max |z| /
    2`` (``v`` is at most one, and found without overflow; ``t`` may be
    inf), component
    ``k``'s log-density is ``4 t**2 b_k``, ``b_k = sum v**2 eta2 +
    sum v eta1 / (2 t) + log_norm / (4 t**2)``, finite: the label is the
    first largest ``b``, the responsibilities the soft-max of ``4 t**2 (b -
    max b)`` (one-hot unless ``b`` ties), and the log-density ``4 t**2 max
    b`` plus their log-normaliser, -inf only where it is below float64's
    range. Never NaN but for rows with an infinite entry (which only
    ``assume_finite`` lets through): NaN density and responsibilities.
    ``log_norm`` has shape ``(n_components,)``, or ``(n_rows, n_components)``
    for rows with missing entries (NaN), which count as ``z = 0`` and whose
    log-normalisers it leaves out.
    """
    with np.errstate(over="ignore", under="ignore", invalid="ignore", divide="ignore"):
        half = X.astype(np.float64) * 0.5 - standardiser.shift * 0.5  # z / 2 / scale, finite
        half[np.isnan(half)] = 0.0
        m = np.max(np.abs(half), axis=1, keepdims=True)
        m[m == 0.0] = 1.0
        c = half / m * standardiser.scale  # finite: scale is
        cm = np.max(np.abs(c), axis=1, keepdims=True)
        cm[cm == 0.0] = 1.0
        v = c / cm
        t = m * cm
        b = (v * v) @ eta2.T + (v / (2.0 * t)) @ eta1.T + log_norm / (4.0 * t * t)
        s2 = 4.0 * t * t  # may be inf
        top = b.max(axis=1, keepdims=True)
        labels = np.argmax(b, axis=1)
        below = b - top
        scaled = np.where(below < 0.0, s2 * below, 0.0)
        terms = np.exp(scaled)
        total = terms.sum(axis=1, keepdims=True)
        lead = np.where(top == 0.0, 0.0, s2 * top)
        log_density = (lead + np.log(total))[:, 0]
        resp = terms / total
    # An infinite entry (only with sklearn's assume_finite) has no density:
    # NaN, not the uniform responsibilities of its NaN terms.
    infinite = np.isinf(X).any(axis=1)
    log_density[infinite] = np.nan
    resp[infinite] = np.nan
    return log_density, labels, resp


# scikit-learn's wording; its versions before 1.9 let all-zero weights through.
ALL_ZERO_WEIGHTS = "Sample weights must contain at least one non-zero number."


def numpy_input(array):
    """Return another array library's ``array`` as a NumPy array, anything else as it is.

    natgmm computes with NumPy on the CPU. An array of another library (one
    with ``__dlpack__`` or ``__array_namespace__``: PyTorch, JAX,
    ``array_api_strict``) is read with ``numpy.asarray``, which keeps its
    dtype. scikit-learn's checks would keep it in its own namespace under
    ``array_api_dispatch`` (and refuse NumPy's dtypes), and read float32 as
    float64 without. An array on a GPU is refused by its library's
    conversion.
    """
    if isinstance(array, np.ndarray):
        return array
    if hasattr(array, "__dlpack__") or hasattr(array, "__array_namespace__"):
        return np.asarray(array)
    return array


def validate_rows(estimator, X, **check_params):
    """scikit-learn's ``validate_data`` for rows natgmm fits or scores.

    ``X`` comes back as a float64 or float32 NumPy array (other array
    libraries read by :func:`numpy_input`); ``check_params`` go to
    ``validate_data`` (``reset``, ``ensure_all_finite``, ...). Few rows
    that ``validate_data`` would return as they are skip it
    (:func:`_plain_rows`).
    """
    if _plain_rows(estimator, X, check_params):
        return X
    return validate_data(estimator, numpy_input(X), dtype=[np.float64, np.float32], **check_params)


# Entries of X up to which plain rows skip validate_data.
_PLAIN_ROWS_SIZE = 65536


def _plain_rows(estimator, X, check_params):
    """Whether ``validate_data`` would return ``X`` itself, with no error or warning.

    Checked for a small C-ordered float32 or float64 ndarray of as many
    features as the fitted estimator's (which has no feature names),
    checked without refitting (``reset=False``), with no infinity (and no
    NaN unless ``ensure_all_finite="allow-nan"``): a prediction's usual
    rows. ``validate_data``'s generic checks took about half of a one-row
    prediction (60 us); anything else goes through them, for their results
    and their words.
    """
    finite = check_params.get("ensure_all_finite", True)
    return (
        type(X) is np.ndarray
        and X.ndim == 2
        and (X.dtype == np.float64 or X.dtype == np.float32)
        and X.flags.c_contiguous
        and X.size <= _PLAIN_ROWS_SIZE
        and check_params.get("reset") is False
        and check_params.get("order") in (None, "C")
        and (finite is True or finite == "allow-nan")
        and X.shape[0] >= max(1, check_params.get("ensure_min_samples", 1))
        and X.shape[1] >= 1
        and getattr(estimator, "n_features_in_", None) == X.shape[1]
        and not hasattr(estimator, "feature_names_in_")
        and bool(np.isfinite(X).all() if finite is True else not np.isinf(X).any())
    )


def check_sample_weight(sample_weight, X):
    """Validate ``sample_weight`` for the rows of ``X`` as scikit-learn does.

    Returns them as float64; raises a ValueError for a wrong shape, NaN,
    infinite or negative weights, and for weights that are all zero.
    """
    # Even under scikit-learn's assume_finite=True, which would let a NaN
    # weight through to a cryptic error or a silently dropped row.
    with config_context(assume_finite=False):
        sample_weight = _check_sample_weight(
            numpy_input(sample_weight), X, dtype=np.float64, ensure_non_negative=True
        )
        # scikit-learn checks arrays for NaN and infinity, not a single number.
        assert_all_finite(sample_weight, input_name="sample_weight")
    if not np.any(sample_weight):
        raise ValueError(ALL_ZERO_WEIGHTS)
    return sample_weight


def mean_log_prob(log_prob, sample_weight):
    """Return the (``sample_weight``-weighted) mean of per-sample log-densities."""
    if sample_weight is None:
        return float(np.mean(log_prob))
    sample_weight = check_sample_weight(sample_weight, log_prob[:, np.newaxis])
    weights = scaled_weights(sample_weight)[0]
    # A row of weight zero adds nothing, even at log-density -inf (0 * -inf is NaN).
    counted = weights > 0
    if not counted.all():
        log_prob, weights = log_prob[counted], weights[counted]
    return float(np.average(log_prob, weights=weights))


def total_weight(sample_weight):
    """Sum of validated weights: the number of samples a weighted ``bic`` or ``aic`` counts."""
    with np.errstate(over="ignore"):
        total = float(np.sum(sample_weight))
    if not math.isfinite(total):
        raise ValueError(
            f"sample_weight sums to {total}, beyond float64's range: bic and aic count the "
            "total weight as the number of samples."
        )
    return total


def information_criterion(name, mean_log_likelihood, n_samples, n_parameters):
    """Return ``bic`` or ``aic`` (``name``): ``-2 log L`` plus the criterion's penalty.

    ``log L`` is ``mean_log_likelihood * n_samples``; the penalty is
    ``n_parameters * log(n_samples)`` (bic) or ``2 * n_parameters`` (aic).
    """
    penalty = n_parameters * math.log(n_samples) if name == "bic" else 2 * n_parameters
    return -2 * mean_log_likelihood * n_samples + penalty


def is_dask(X):
    """Whether ``X`` is a Dask collection (checked without importing dask)."""
    return type(X).__module__.startswith("dask")


class ArrayData:
    """Validated rows in memory, their weights, and the kernels bound to them.

    Parameters
    ----------
    X : ndarray of shape (n_samples, n_features)
        C-contiguous float32 or float64 rows (not copied; a read-only memmap
        is fine).
    sample_weight : ndarray of shape (n_samples,) or None
        Validated float64 weights; None means unit weights.
    parallel : bool
        Whether the kernels share their blocks out between threads.
    weight_scale : float, default=None
        The power of two the weights are multiplied by (exact); None means
        the one that brings their mean close to one (:func:`weight_scale`).
        The fit's prior pseudo-counts are multiplied by the same factor.
    missing : bool, default=None
        Whether ``X`` has missing entries (NaN); None means look (one pass,
        whose minima :meth:`extremes` reuses).
    """

    def __init__(self, X, sample_weight, parallel, weight_scale=None, missing=None):
        self.X, self.parallel = X, parallel
        self._smallest = None  # each feature's least value, NaN where it has one
        if missing is None:  # the look for NaN is a pass that also gives the minima
            self._smallest = X.min(axis=0) if X.size else None
            missing = X.size > 0 and bool(np.isnan(self._smallest).any())
        self.missing = missing
        if sample_weight is None:
            self.sw, self.total_weight, self.weight_scale = np.empty(0), float(X.shape[0]), 1.0
        else:
            self.sw, self.weight_scale = scaled_weights(sample_weight, weight_scale)
            with np.errstate(over="ignore"):  # an infinite total is refused where it matters
                self.total_weight = float(self.sw.sum())
        self.shape, self.dtype = X.shape, X.dtype

    def subset(self, rows):
        """Return the rows ``rows`` (sorted) as a batch of their own."""
        sample_weight = self.sw[rows] if self.sw.shape[0] else None
        # The flag of the whole data; each kernel call still runs serially
        # when its work is small (use_threads).
        return ArrayData(
            self.X[rows], sample_weight, self.parallel, weight_scale=1.0, missing=self.missing
        )

    def sample(self, n_rows, random_state):
        """Return ``n_rows`` rows drawn uniformly without replacement, as data of their own.

        The rows keep their (scaled) weights and the whole data's ``missing``
        flag, so that a fit on them takes the same kernels.
        """
        return self.subset(sample_rows(self.shape[0], n_rows, random_state))

    def extremes(self, positive=True):
        """Each feature's largest and smallest value (NaN for a feature with none).

        Over the rows of positive weight if ``positive`` (a row of weight
        zero, however far, does not set the map to internal units), else
        over all rows.
        """
        if positive and self.sw.shape[0] and not np.all(self.sw > 0):
            return positive_extremes(self.X, self.sw)
        if self.missing:
            return np.fmax.reduce(self.X, axis=0), np.fmin.reduce(self.X, axis=0)
        smallest = self.X.min(axis=0) if self._smallest is None else self._smallest.copy()
        return self.X.max(axis=0), smallest

    def fit_rows(self, standardiser):
        """Return the rows a fit runs on: all, but rows of weight zero too far out.

        A row of weight zero adds nothing to a fit, but its terms must stay
        finite (zero times an overflow is NaN): if one lies beyond
        ``FAR_ROWS`` in the internal units of ``standardiser``, the fit runs
        on the rows of positive weight (a copy of them).
        """
        if self.positive_rows() == self.shape[0] or not far_weightless_rows(self, standardiser):
            return self
        return self.subset(np.flatnonzero(self.sw > 0))

    def label_stats(self, shift, scale, ref):
        """:func:`natgmm._kernels.label_stats` with every row in component 0."""
        return _kernels.label_stats(
            self.X, self.sw, shift, scale, np.empty(0, dtype=np.int64), ref,
            n_blocks(self.shape[0]), self.parallel,
        )  # fmt: skip

    def label_stats_masked(self, shift, scale, ref):
        """:func:`natgmm._kernels.label_stats_masked` with every row in component 0."""
        return _kernels.label_stats_masked(
            self.X, self.sw, shift, scale, np.empty(0, dtype=np.int64), ref,
            n_blocks(self.shape[0]), self.parallel,
        )  # fmt: skip

    def em_stats_masked(
        self, shift, scale, eta1, eta2, feature_norm, log_weight, ref, beta, float32
    ):  # fmt: skip
        """:func:`natgmm._kernels.em_stats_masked` over the rows."""
        return _kernels.em_stats_masked(
            self.X, self.sw, shift, scale, eta1, eta2, feature_norm, log_weight, ref,
            n_blocks(self.shape[0]), self.parallel, beta, float32,
        )  # fmt: skip

    def em_stats(self, shift, scale, eta1, eta2, log_norm, log_weight, ref, beta, float32):
        """:func:`natgmm._kernels.em_stats` over the rows."""
        return _kernels.em_stats(
            self.X, self.sw, shift, scale, eta1, eta2, log_norm, log_weight, ref,
            n_blocks(self.shape[0]), self.parallel, beta, float32,
        )  # fmt: skip

    def scatter_sums(self, standardiser):
        """:func:`scatter_sums` over all rows."""
        return scatter_sums(self.X, self.sw, standardiser, np.arange(self.shape[0]))

    def in_memory(self):
        """Return the rows in memory: this data itself."""
        return self

    def component_moments(self, standardiser, params, components, min_resp=0.0):
        """:func:`component_moments` over all rows."""
        return component_moments(
            self.X, self.sw, standardiser, params, components, self.parallel, self.missing,
            min_resp,
        )  # fmt: skip

    def positive_rows(self):
        """Count the rows of positive weight."""
        return np.count_nonzero(self.sw) if self.sw.shape[0] else self.shape[0]

    def init_rows(self, random_state):
        """Rows, weights and ``missing`` of the initialisation's rows: all of them."""
        return self.X, self.sw, self.missing

    def log_prob(self, standardiser, params, want_resp, operands=None):
        """Log-density, labels and (if ``want_resp``) responsibilities per row.

        ``operands``: an :class:`Operands` of ``params``, or None.
        """
        return log_prob(
            self.X, standardiser, params, self.parallel, want_resp, self.missing, operands
        )
