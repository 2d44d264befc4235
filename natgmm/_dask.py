"""Dask arrays: every pass over the data runs block by block on the cluster.

:class:`DaskData` has the methods of :class:`natgmm._data.ArrayData`, so
``fit``, ``partial_fit`` and the EM loop are the same code for both; only how
the statistics of a pass are gathered differs. Each pass sends the small
arguments of the kernel (shift, scale, natural parameters: one task holding
them, fetched once by each worker) and runs the serial kernel on every block
where it lives; the per-block results, ``n_components x n_features`` arrays,
are summed in block order by a fixed reduction tree on the workers, so a pass
is deterministic and only its sum travels to the client. The M-step, floors,
prior and annealing run on the client as for numpy input.

NaN entries are missing values, as for numpy input: the first pass (the
feature extremes) finds whether there are any, and the passes over data with
missing entries run the masked kernels on every block (blocks without NaN
too), so the sums equal those of the in-memory fit.

Imported only when a Dask array is passed: ``import natgmm`` never imports
dask.
"""

import functools
import operator

import dask
import dask.array as da
import numpy as np
from sklearn.utils import check_array

from . import _kernels
from ._data import (
    ALL_ZERO_WEIGHTS,
    FAR_ROWS,
    ArrayData,
    component_moments,
    far_weightless_rows,
    log_prob,
    positive_extremes,
    sample_rows,
    scatter_sums,
    total_weight,
    weight_scale,
)
from ._threading import n_blocks

# Rows computed to the client for the initialisation (k-means and friends)
# when init_params must be estimated: all rows up to this many (the same
# start as for numpy input), a uniform sample without replacement beyond.
INIT_ROWS = 100_000
# Partial results summed by one task of the reduction tree.
_FAN_IN = 16
_NO_LABELS = np.empty(0, dtype=np.int64)


def _as_check_array(shape, estimator_name, **params):
    """Raise scikit-learn's ValueError for an array of ``shape``, from an empty array of it."""
    check_array(np.zeros(shape), estimator=estimator_name, **params)  # not empty: NaN-free
    raise AssertionError(f"check_array accepted an array of shape {shape}")  # not reached


def check_dask_array(X, ensure_min_samples=1, estimator_name="NaturalDiagonalGMM"):
    """Check a Dask array as ``check_array`` would, without computing it.

    Infinite values are looked for on the workers, by the first pass of
    statistics over the data (NaN entries are missing values);
    the number of features against a fitted model by the estimator. Other
    dtypes than float32 and float64 are cast to float64 (lazily), and
    columns are merged into one chunk so that every block holds whole rows.
    """
    if not isinstance(X, da.Array):
        raise TypeError(
            f"natgmm takes Dask input as a dask.array.Array, got a {type(X).__name__}; "
            "convert it first (a Dask DataFrame with df.to_dask_array(lengths=True))."
        )
    # scikit-learn's words, one check at a time: those of its check of an
    # empty array of the same shape (a 1-D array's values are not printed:
    # they would have to be computed).
    if X.ndim < 2:
        raise ValueError(
            f"Expected 2D array, got {X.ndim}D array instead. Reshape your data either using "
            "array.reshape(-1, 1) if your data has a single feature or array.reshape(1, -1) "
            "if it contains a single sample."
        )
    if X.ndim > 2:
        _as_check_array((0,) * X.ndim, estimator_name)
    if any(np.isnan(size) for size in X.shape):
        raise ValueError(
            "X has unknown chunk sizes (after boolean indexing, for example); call "
            "X.compute_chunk_sizes() first."
        )
    if X.dtype.kind == "c":
        raise ValueError("Complex data not supported")
    meta = getattr(X, "_meta", None)
    if type(meta).__module__.startswith("scipy.sparse"):
        raise TypeError(
            "Sparse data was passed for X, but dense data is required. Use "
            "X.map_blocks(lambda b: b.toarray()) to convert its blocks to dense arrays."
        )
    if meta is not None and type(meta) is not np.ndarray:
        # Blocks of another array type (masked arrays, ...) are read as
        # numpy reads them, as check_array does for in-memory input.
        X = X.map_blocks(np.asarray, meta=np.empty((0, 0), dtype=X.dtype))
    n_samples, n_features = X.shape
    if n_samples < ensure_min_samples or n_features < 1:
        _as_check_array(X.shape, estimator_name, ensure_min_samples=ensure_min_samples)
    if X.dtype not in (np.float32, np.float64):
        X = X.astype(np.float64)
    return X.rechunk({1: -1})


def _as_weights(sample_weight, row_chunks):
    """``sample_weight`` (numpy or Dask) as a float64 Dask array with ``row_chunks``."""
    n_samples = sum(row_chunks)
    if isinstance(sample_weight, da.Array):
        sw = sample_weight.astype(np.float64)
    elif np.ndim(sample_weight) == 0:  # one number for every row, as scikit-learn takes it
        sw = da.full(n_samples, float(sample_weight), chunks=(row_chunks,))
    else:
        sw = da.from_array(np.asarray(sample_weight, dtype=np.float64), chunks=-1)
    if sw.ndim != 1:
        raise ValueError(
            f"Sample weights must be 1D array or scalar, got {sw.ndim}D array. Expected "
            f"either a scalar value or a 1D array of length {n_samples}."
        )
    if sw.shape != (n_samples,):
        raise ValueError(f"sample_weight.shape == {sw.shape}, expected {(n_samples,)}!")
    return sw.rechunk((row_chunks,))


def _checked_scale(sw, scale=None):
    """Check ``sw`` as :func:`natgmm._data.check_sample_weight` does; return its scale.

    The scale is ``scale`` if given (a stream's, fixed by its first batch),
    else :func:`natgmm._data.weight_scale` of ``sw``.
    """
    largest, smallest = dask.compute(sw.max(), sw.min())
    if np.isnan(largest):
        raise ValueError("Input sample_weight contains NaN.")
    if np.isinf(largest) or np.isinf(smallest):
        raise ValueError(
            "Input sample_weight contains infinity or a value too large for dtype('float64')."
        )
    if smallest < 0:
        raise ValueError("Negative values in data passed to `sample_weight`.")
    if not largest > 0:
        raise ValueError(ALL_ZERO_WEIGHTS)
    if scale is not None:
        return scale
    return weight_scale(float(largest), float((sw / largest).mean().compute()))


def _sum_parts(parts):
    """Sum tuples of arrays and floats item by item, in the order given."""
    return tuple(functools.reduce(operator.add, items) for items in zip(*parts, strict=True))


def _extreme_parts(parts):
    """Featurewise maximum and minimum over ``(maximum, minimum, has NaN)`` triples.

    NaN entries are left out (NaN only for a feature with no other value).
    """
    highs, lows, nans = zip(*parts, strict=True)
    return functools.reduce(np.fmax, highs), functools.reduce(np.fmin, lows), any(nans)


def _weights(w):
    return np.empty(0) if w is None else np.ascontiguousarray(w)


# Functions run on the workers, one call per block. The kernels are the
# serial ones: each worker thread processes one block.


def _block_extremes(x, w, positive):
    high, low = x.max(axis=0), x.min(axis=0)
    missing = bool(np.isnan(high).any())  # over all rows: which kernels run
    if positive and w is not None and not np.all(w > 0):  # as ArrayData.extremes
        return (*positive_extremes(x, w), missing)
    if missing:
        high, low = np.fmax.reduce(x, axis=0), np.fmin.reduce(x, axis=0)
    return high, low, missing


def _block_label_stats(x, w, shared):
    shift, scale, ref = shared
    x = np.ascontiguousarray(x)
    stats = _kernels.label_stats(
        x, _weights(w), shift, scale, _NO_LABELS, ref, n_blocks(x.shape[0]), False
    )
    return (*stats, int(not np.isfinite(x).all()))


def _block_label_stats_masked(x, w, shared):
    shift, scale, ref = shared
    x = np.ascontiguousarray(x)
    stats = _kernels.label_stats_masked(
        x, _weights(w), shift, scale, _NO_LABELS, ref, n_blocks(x.shape[0]), False
    )
    return (*stats, int(np.isinf(x).any()))


def _block_em_stats(x, w, shared):
    shift, scale, eta1, eta2, log_norm, log_weight, ref, beta, float32 = shared
    x = np.ascontiguousarray(x)
    return _kernels.em_stats(
        x, _weights(w), shift, scale, eta1, eta2, log_norm, log_weight, ref,
        n_blocks(x.shape[0]), False, beta, float32,
    )  # fmt: skip


def _block_em_stats_masked(x, w, shared):
    shift, scale, eta1, eta2, feature_norm, log_weight, ref, beta, float32 = shared
    x = np.ascontiguousarray(x)
    return _kernels.em_stats_masked(
        x, _weights(w), shift, scale, eta1, eta2, feature_norm, log_weight, ref,
        n_blocks(x.shape[0]), False, beta, float32,
    )  # fmt: skip


def _block_scatter_sums(x, w, shared):
    (standardiser,) = shared
    return scatter_sums(x, _weights(w), standardiser, np.arange(x.shape[0]))


def _block_component_moments(x, w, shared):
    standardiser, params, components, missing, min_resp = shared
    x = np.ascontiguousarray(x)
    return component_moments(
        x, _weights(w), standardiser, params, components, False, missing, min_resp
    )


_OUTPUTS = ("log_prob", "labels", "resp")


def _infinite_x(dtype):
    """scikit-learn's error for an infinite entry of X (found on a worker)."""
    return ValueError(f"Input X contains infinity or a value too large for {dtype!r}.")


def _block_predictions(x, standardiser, params, output):
    """One of the block's per-row outputs of :func:`natgmm._data.log_prob`.

    Infinite entries are refused as numpy input's are (when the block is
    computed: the predictions are lazy); NaN entries are missing values.
    """
    if np.isinf(x).any():
        raise _infinite_x(x.dtype)
    want_resp = output == "resp"
    outputs = log_prob(np.ascontiguousarray(x), standardiser, params, False, want_resp)
    return outputs[_OUTPUTS.index(output)]


class DaskData:
    """Training rows in a Dask array and the kernels run over its blocks.

    Parameters
    ----------
    X : dask.array.Array of shape (n_samples, n_features)
        The data, checked by :func:`check_dask_array`; it stays on the
        workers.
    sample_weight : dask.array.Array, array-like or None
        Rechunked to the row chunks of ``X``; checked (one pass over the
        weights only) when given.
    parallel : bool
        Whether the client's in-memory work (the initialisation) shares the
        kernels' blocks out between threads.
    weight_scale : float, default=None
        As for :class:`natgmm._data.ArrayData`: the power of two the
        weights are multiplied by, None for the one that brings their mean
        close to one.
    """

    def __init__(self, X, sample_weight, parallel, weight_scale=None):
        self.X, self.parallel = X, parallel
        self.shape, self.dtype = X.shape, X.dtype
        # Empty blocks add nothing and would break the reductions' max/min.
        keep = np.asarray(X.chunks[0]) > 0
        self._x_blocks = list(X.to_delayed().ravel()[keep])
        if sample_weight is None:
            self.sw = None
            self.total_weight, self.weight_scale = float(X.shape[0]), 1.0
            self._positive_rows = X.shape[0]
            self._w_blocks = [None] * len(self._x_blocks)
        else:
            # Persisted once: in memory (numpy weights) they would be part
            # of the graph of every pass, and lazy ones computed by each.
            sw = _as_weights(sample_weight, X.chunks[0]).persist()
            self.weight_scale = _checked_scale(sw, weight_scale)
            if self.weight_scale != 1.0:  # exact: a power of two
                sw = (sw * self.weight_scale).persist()
            self.sw = sw
            # One pass for both: a fit asks for the count up to three times.
            total, positive = dask.compute(self.sw.sum(), da.count_nonzero(self.sw))
            self.total_weight, self._positive_rows = float(total), int(positive)
            self._w_blocks = list(self.sw.to_delayed().ravel()[keep])
        self._sample = None
        self._missing = None

    def _reduce(self, block_func, shared, combine=_sum_parts):
        """``combine`` of ``block_func(block, weights, shared)`` over all blocks.

        ``shared`` becomes one task, so it travels once to each worker; the
        reduction tree has a fixed shape, so the result is deterministic, and
        only its root comes back to the client.
        """
        shared = dask.delayed(shared)
        parts = [
            dask.delayed(block_func)(x, w, shared)
            for x, w in zip(self._x_blocks, self._w_blocks, strict=True)
        ]
        while len(parts) > 1:
            parts = [
                dask.delayed(combine)(parts[i : i + _FAN_IN]) for i in range(0, len(parts), _FAN_IN)
            ]
        (result,) = dask.compute(parts[0])
        return result

    def extremes(self, positive=True):
        """Each feature's largest and smallest value (NaN for a feature with none).

        Over the rows of positive weight if ``positive``, else over all
        rows. Also finds whether X has missing entries (:attr:`missing`).
        """
        high, low, self._missing = self._reduce(_block_extremes, positive, _extreme_parts)
        return high, low

    def fit_rows(self, standardiser):
        """Return the rows a fit runs on: all of them.

        Rows of weight zero beyond :data:`natgmm._data.FAR_ROWS` internal
        units, which :meth:`natgmm._data.ArrayData.fit_rows` leaves out, are
        an error here (one more pass over X when some weight is zero).
        """
        if self.positive_rows() < self.shape[0] and far_weightless_rows(self, standardiser):
            raise ValueError(
                f"X has rows of sample_weight zero more than {FAR_ROWS:g} standard deviations "
                "from the weighted mean of a feature, whose squared terms would overflow: "
                "leave them out of the Dask array (X[sample_weight > 0])."
            )
        return self

    @property
    def missing(self):
        """Whether X has missing entries (NaN); the first call makes a pass over X."""
        if self._missing is None:
            self.extremes()
        return self._missing

    def label_stats(self, shift, scale, ref):
        """Statistics of all rows as one component; checks that X is finite.

        Called only for X without missing entries, so a block that is not
        finite holds an infinity.
        """
        nk, s1, s2, n_bad_blocks = self._reduce(_block_label_stats, (shift, scale, ref))
        if n_bad_blocks:
            raise _infinite_x(self.dtype)
        return nk, s1, s2

    def label_stats_masked(self, shift, scale, ref):
        """:meth:`label_stats` over the observed entries; checks that X has no infinity."""
        nk, nkd, s1, s2, n_bad_blocks = self._reduce(_block_label_stats_masked, (shift, scale, ref))
        if n_bad_blocks:
            raise _infinite_x(self.dtype)
        return nk, nkd, s1, s2

    def em_stats_masked(
        self, shift, scale, eta1, eta2, feature_norm, log_weight, ref, beta, float32
    ):  # fmt: skip
        """:meth:`em_stats` over the observed entries, summed over the blocks."""
        shared = (shift, scale, eta1, eta2, feature_norm, log_weight, ref, beta, float32)
        return self._reduce(_block_em_stats_masked, shared)

    def em_stats(self, shift, scale, eta1, eta2, log_norm, log_weight, ref, beta, float32):
        """Log-likelihood and E-step statistics, summed over the blocks."""
        shared = (shift, scale, eta1, eta2, log_norm, log_weight, ref, beta, float32)
        return self._reduce(_block_em_stats, shared)

    def scatter_sums(self, standardiser):
        """Weight, sum and outer products of the rows in internal units."""
        return self._reduce(_block_scatter_sums, (standardiser,))

    def in_memory(self):
        """Return all rows computed to the client: an :class:`~natgmm._data.ArrayData`."""
        X, sw = dask.compute(self.X, self.sw)
        return ArrayData(
            np.ascontiguousarray(X), sw, self.parallel, weight_scale=1.0, missing=self.missing
        )

    def component_moments(self, standardiser, params, components, min_resp=0.0):
        """:func:`natgmm._data.component_moments`, summed over the blocks."""
        shared = (standardiser, params, components, self.missing, min_resp)
        return self._reduce(_block_component_moments, shared)

    def positive_rows(self):
        """Count the rows of positive weight."""
        return self._positive_rows

    def init_rows(self, random_state):
        """Rows the initialisation runs on, computed to the client, their weights and ``missing``.

        All rows if there are at most ``INIT_ROWS``, else that many drawn
        uniformly without replacement from ``random_state`` (kept in row
        order, with their weights). Drawn once and reused by later
        initialisations. ``missing`` is None: the sample may have no NaN
        where the data has some.
        """
        if self._sample is None:
            X, sw = self.X, self.sw
            if self.shape[0] > INIT_ROWS:
                rows = np.sort(random_state.choice(self.shape[0], INIT_ROWS, replace=False))
                X, sw = X[rows], None if sw is None else sw[rows]
            X, sw = dask.compute(X, sw)
            self._sample = (np.ascontiguousarray(X), np.empty(0) if sw is None else sw, None)
        return self._sample

    def sample(self, n_rows, random_state):
        """Return ``n_rows`` rows drawn uniformly without replacement, in memory.

        An :class:`~natgmm._data.ArrayData` on the client with the rows' scaled
        weights and the whole data's ``missing`` flag.
        """
        rows = sample_rows(self.shape[0], n_rows, random_state)
        X, sw = self.X[rows], None if self.sw is None else self.sw[rows]
        X, sw = dask.compute(X, sw)
        return ArrayData(
            np.ascontiguousarray(X), sw, self.parallel, weight_scale=1.0, missing=self.missing
        )

    def log_prob(self, standardiser, params, want_resp, operands=None):
        """Lazy log-density, labels and responsibilities (None unless ``want_resp``).

        Each is a Dask array with the row chunks of X, computed block by block
        by the kernel; the parameters are one task shared by all blocks.
        ``operands`` (:meth:`ArrayData.log_prob`'s) is not used: each block
        makes its own, a small cost beside a block's.
        """
        shared = dask.delayed(standardiser), dask.delayed(params)
        log_density, labels = (
            self.X.map_blocks(_block_predictions, *shared, output, drop_axis=1, dtype=dtype)
            for output, dtype in (("log_prob", np.float64), ("labels", np.int64))
        )
        resp = None
        if want_resp:
            chunks = (self.X.chunks[0], (params.means.shape[0],))
            resp = self.X.map_blocks(
                _block_predictions, *shared, "resp", chunks=chunks, dtype=np.float64
            )
        return log_density, labels, resp


def weights_total(sample_weight, row_chunks):
    """Sum of ``sample_weight`` (numpy or Dask) for rows in ``row_chunks``, computed to a float."""
    # Persisted first, as weighted_mean persists them: the same sum's key with
    # another graph behind it made a distributed scheduler warn of deadlocks.
    return total_weight(_as_weights(sample_weight, row_chunks).persist().sum().compute())


def weighted_mean(log_prob, sample_weight):
    """(Weighted) mean of a Dask array of log-densities, computed to a float."""
    if sample_weight is None:
        return float(log_prob.mean().compute())
    sw = _as_weights(sample_weight, log_prob.chunks[0]).persist()  # checked, then summed
    scale = _checked_scale(sw)
    if scale != 1.0:
        sw = sw * scale  # exact, and no overflow in the sums
    # A row of weight zero adds nothing, even at log-density -inf (0 * -inf is NaN).
    total, weight = dask.compute((da.where(sw > 0, log_prob, 0.0) * sw).sum(), sw.sum())
    return float(total / weight)
