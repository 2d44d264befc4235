"""Numba kernels for diagonal Gaussian mixtures in natural parameters.

Every kernel is a pure function of arrays and scalars. Data rows ``x`` are
mapped on the fly to internal coordinates ``z = (x - shift) * scale`` (the
estimator standardises each feature this way), so no copy of ``X`` is made and
the expanded quadratic form below is evaluated on values of order one.

The log-density of component ``k`` is evaluated from its natural parameters,

    log N(z | k) = sum_d (z_d * eta1[k, d] + z_d**2 * eta2[k, d]) + const[k],

with ``eta1 = mu / var`` and ``eta2 = -1 / (2 var)``; ``log_norm`` below holds
``log pi_k + const[k]``. For a chunk of rows that is one matrix product,
``[z, z**2, 1] @ [eta1.T; eta2.T; log_norm]``, and the responsibility-weighted
sums of ``z``, ``z**2`` and ``1`` are another; both go to BLAS (scipy's, through numba's
``np.dot``), the soft-max between them is a vectorised Numba loop, and no
``n_samples x n_components`` array is ever formed. Arithmetic is float64 for
float64 ``X``; float32 ``X`` has a float32 path (products and soft-max in
float32, accumulators in float64), described before :func:`_em_stats_f32`.

Rows are split into ``n_blocks`` contiguous blocks whose number is chosen by
the caller from the data shape only. Each block is processed serially in row
order, chunk by chunk, into its own accumulators and the blocks are summed by
numpy afterwards, so results are bitwise identical for any number of
threads. BLAS products of these sizes run on the calling thread.

The measured alternatives (one fused Numba loop, BLAS over whole arrays,
glibc's exp) are in doc/performance.rst, "Kernel design".
"""

import inspect
import math
import operator

import numpy as np
import scipy.linalg.cython_blas  # noqa: F401  (the BLAS numba's np.dot calls: loaded first)
from numba import njit

from ._blas import blas_hold, single_threaded_blas
from ._interrupt import keyboard_interrupts
from ._numba_cache import serialise_saves
from ._simd import TILE, _add_deviations, _add_mapped_deviations, _transpose_tile
from ._threading import share_out, use_threads

# Explicit fast-math flags: "contract" fuses multiply-adds. "nnan" and "ninf"
# are left out on purpose: log-sum-exp relies on -inf behaving as -inf (a
# component of zero weight has log-weight -inf). "reassoc" is left out: it
# would let LLVM merge the two halves of ln2 in the exponential back into one
# rounded constant, and it lets LLVM reorder sums. doc/performance.rst has
# the measurements behind these choices.
FASTMATH = {"nsz", "contract"}

# exp(t) is subnormal or zero in float64 for t below this value. A term that
# small is below the resolution of a sum holding exp(0) = 1, so it is dropped
# without calling exp, whose subnormal path is several times slower.
_EXP_CUTOFF = -708.3

# Rows per BLAS product: each chunk's log-densities and statistics are one
# (_CHUNK x 2 n_features) by (2 n_features x n_components) product and one
# (n_components x _CHUNK) by (_CHUNK x 2 n_features) product, and its
# scratch stays in cache. doc/performance.rst has the measured sizes.
_CHUNK = 64
# The float32 E-step's chunks, twice as long: its scratch is half as wide.
_CHUNK_F32 = 128

# The statistics of a component are moved from the origin to its reference
# point when ``ref ** 2 / var`` is at most this in every feature: at most
# three of float64's sixteen digits of its scatter are lost to cancellation.
_MAX_CANCELLATION = 1e3
# The log-densities [z, z**2, 1] @ W lose about log10(sum_d mean**2 / var) digits
# near a component's mean to cancellation (sum_d in internal units): a narrow
# component far from the data's centre had log-densities off by several nats.
# Above this sum a component's log-densities are recomputed about its mean
# (:func:`_centre_log_densities`, five times the product's time when every
# component is). Below it the product is off by at most about 2.6e-16 times the
# sum, 3e-8 nats (doc/performance.rst, "Kernel design").
_MAX_CANCELLATION_LP = 1e8

# A chunk whose share of non-zero responsibilities is above this has its
# statistics summed by one BLAS product; a sparser one (well separated
# components) row by row over its non-zero terms, about ``ref``.
_DENSE = 0.25
# The same for float32 terms, whose product costs about half as much: the
# dense path pays from about half the share.
_DENSE_F32 = 0.125

# The ``count`` flags of the term-by-term sums, as numpy booleans: a literal
# True or False would compile the function once for each.
_YES, _NO = np.bool_(True), np.bool_(False)

# The smallest normal numbers of float64 and float32 (powers of two, exact in
# either dtype), picked by the terms' itemsize: np.finfo in a kernel compiles
# numba's finfo machinery into a cold first fit.
_TINY64 = float(np.finfo(np.float64).tiny)
_TINY32 = float(np.finfo(np.float32).tiny)

# Kernels allocate with np.empty and fill (``a[:] = 0.0``), not np.zeros or
# np.ones: each of those compiles three of numba's overloads per array type
# and set of flags on a cold first fit.

# Row ranges of log_prob shared out between threads, each with its own
# scratch; the rows' results do not depend on how they are grouped.
_LOG_PROB_GROUPS = 64


def _jit(fastmath=FASTMATH, **options):
    """Return a decorator compiling with the project's flags and disk cache.

    Caching falls back to in-memory compilation where numba finds no writable
    cache location (for example a read-only install with no writable home).
    numba keys its cache on this file's modification time and size, so the
    flags, being constants of this file, cannot be served stale. Kernels
    release the GIL, so that threads (a Dask worker's, a user's) run them
    side by side. Processes that compile at once save to the cache in turn
    (:mod:`._numba_cache`).
    """
    flags = dict(fastmath=fastmath, nogil=True, **options)

    def decorate(func):
        try:
            dispatcher = njit(cache=True, **flags)(func)
        except RuntimeError:  # "cannot cache function ...: no locator available"
            return njit(cache=False, **flags)(func)
        serialise_saves(dispatcher)
        return dispatcher

    return decorate


def _f64(a):
    return np.ascontiguousarray(a, dtype=np.float64)


def _read_only(X):
    """``X`` as a read-only view (never a copy).

    numba compiles a kernel once per array type, and a read-only array (a
    memmap opened with ``mmap_mode="r"``) is a type of its own: passing the
    data always read-only compiles one specialisation per dtype, not two.
    """
    if X.flags.writeable:
        X = X.view()
        X.flags.writeable = False
    return X


class _Blockwise:
    """A kernel over a range of row blocks, compiled once, run serially or on threads.

    ``func(*args, first, last)`` computes blocks ``first`` to ``last - 1`` of
    a call's ``n_blocks`` (its argument of that name, or ``n_groups``):
    it fills those blocks' rows of each array it returns (arrays of
    ``n_blocks`` rows) and those blocks' rows of the arrays it writes in
    place. No block reads another's results, so :meth:`parallel`, which
    shares the blocks out between threads (:func:`~._threading.share_out`),
    gives bitwise the results of :meth:`serial` whatever the thread count.
    One compiled function serves both: numba's parallel variant would
    compile for as long again (doc/performance.rst, "Threads").
    """

    def __init__(self, func):
        self.kernel = _jit()(func)
        names = list(inspect.signature(func).parameters)
        self._count = operator.itemgetter(
            names.index("n_blocks" if "n_blocks" in names else "n_groups")
        )

    def serial(self, *args):
        """Run every block on the calling thread."""
        return self.kernel(*args, 0, self._count(args))

    def parallel(self, *args):
        """Share the blocks out between the calling thread and natgmm's pool."""
        return share_out(self.kernel, args, self._count(args))

    def runner(self, parallel):
        """Return :meth:`parallel` if ``parallel``, else :meth:`serial`."""
        return self.parallel if parallel else self.serial


def _log_prob_groups(n_samples):
    """Return the number of row groups a log-density call shares out (of ``_CHUNK`` rows each)."""
    return min((n_samples + _CHUNK - 1) // _CHUNK, _LOG_PROB_GROUPS)


# exp(x) by range reduction, x = n ln2 + r with |r| <= ln2 / 2, and the
# degree-13 Taylor polynomial of exp(r) (truncation below 4e-18). ln2 is split
# fdlibm's way so that n * _LN2_HI is exact for |n| < 2^11. Measured against
# np.exp on a million points of [_EXP_CUTOFF, 0]: at most 1 ulp apart
# (tests/test_kernels.py allows 3).
_LOG2E = 1.4426950408889634
_LN2_HI = 6.93147180369123816490e-01
_LN2_LO = 1.90821492927058770002e-10
_INV_FACT = tuple(1.0 / math.factorial(i) for i in range(14))
# n = round(t / ln2) without a float-to-integer conversion, which AVX2 lacks
# for 64-bit integers (LLVM scalarises it inside the vectorised loop): adding
# 1.5 * 2**52 rounds t / ln2 to an integer held in the low bits of the sum's
# bit pattern, so that pattern minus _EXP_BIAS, shifted into the exponent
# field, is 2 ** n. The soft-max takes a quarter less time (doc/performance.rst).
_ROUNDER = 1.5 * 2.0**52
_EXP_BIAS = int(np.float64(_ROUNDER).view(np.int64)) - 1023


@_jit()
def count_distinct(points, tol):
    """Count the rows of ``points`` not within ``tol`` (max-norm) of an earlier row.

    Compiled: the trace of every iteration counts its distinct means with this.
    """
    n, d = points.shape
    count = 0
    for i in range(n):
        distinct = True
        for j in range(i):
            close = True
            for f in range(d):
                if not abs(points[i, f] - points[j, f]) < tol:
                    close = False
                    break
            if close:
                distinct = False
                break
        count += distinct
    return count


@_jit()
def _flatnonzero(mask):
    """``np.flatnonzero(mask)`` of a 1-d boolean array, as int64.

    A loop: numba's np.flatnonzero (and the ``astype`` after it) compiled for
    about as long as the kernel calling it, once per set of flags.
    """
    n = 0
    for k in range(mask.shape[0]):
        n += mask[k]
    index = np.empty(n, dtype=np.int64)
    n = 0
    for k in range(mask.shape[0]):
        if mask[k]:
            index[n] = k
            n += 1
    return index


@_jit()
def _transpose(src, n_rows, dst):
    """``dst[j, r] = src[r, j]`` for the first ``n_rows`` rows of ``src``, every column.

    ``dst`` has ``src``'s columns as rows, at least ``n_rows`` long, and
    ``src``'s dtype or float32. By tiles of ``TILE x TILE`` transposed in
    registers (:func:`natgmm._simd._transpose_tile`), the rest element by
    element: a loop over one index reading the other by strides moved about
    one element a cycle, the tiles up to three times as many
    (doc/performance.rst, "Transpositions and sparse statistics in explicit
    SIMD").
    """
    n_cols = src.shape[1]
    rows = n_rows - n_rows % TILE
    cols = n_cols - n_cols % TILE
    for r0 in range(0, rows, TILE):
        for k0 in range(0, cols, TILE):
            _transpose_tile(src, dst, r0, k0)
    for k in range(cols, n_cols):
        for r in range(rows):
            dst[k, r] = src[r, k]
    for k in range(n_cols):
        for r in range(rows, n_rows):
            dst[k, r] = src[r, k]


@_jit()
def _chunk_scratch(n_features, n_components, rows):
    """Arrays for :func:`_chunk_log_density`: ``u, lp_rows, lp, ev, top, total, z_row``.

    ``rows`` per chunk; ``z_row`` is :func:`_fill_z`'s row of ``z``.

    Allocated once per block: allocation inside the threaded loop serialises
    the threads. The last column of ``u`` is ones, for every row: a
    log-weight of -inf times zero would be NaN.
    """
    u = np.empty((rows, 2 * n_features + 1))
    u[:, 2 * n_features] = 1.0
    return (
        u,
        np.empty((rows, n_components)),
        np.empty((n_components, rows)),
        np.empty((n_components, rows)),
        np.empty(rows),
        np.empty(rows),
        np.empty(n_features),
    )


def centred_components(eta1, eta2, log_weight):
    """Return the components whose log-densities are taken about their means, with their terms.

    Those whose ``sum_d mean**2 / var`` exceeds ``_MAX_CANCELLATION_LP``.
    Returns ``(index, mean, eta2, feature_norm, log_weight)`` of them, with
    ``feature_norm = -log(2 pi var) / 2`` per feature, for
    :func:`_centre_log_densities`. Such a component is always wide in the
    float32 path (its magnitude there is at least this sum).
    """
    return _centred_components(_f64(eta1), _f64(eta2), _f64(log_weight), _MAX_CANCELLATION_LP)


# Compiled: called once per pass, where its dozen numpy calls took 5 us.
@_jit(fastmath=False, error_model="numpy")
def _centred_components(eta1, eta2, log_weight, max_cancellation):
    """:func:`centred_components` of float64 arrays."""
    n_components, n_features = eta1.shape
    # sum_d mean**2 / var = sum_d -eta1**2 / (2 eta2); most fits have none above.
    far = np.empty(n_components, dtype=np.bool_)
    for k in range(n_components):
        acc = 0.0
        for d in range(n_features):
            acc += eta1[k, d] * (eta1[k, d] / eta2[k, d])
        far[k] = acc < -2.0 * max_cancellation
    index = _flatnonzero(far)
    e2 = np.empty((index.shape[0], n_features))
    mean = np.empty((index.shape[0], n_features))
    norm = np.empty((index.shape[0], n_features))
    log_w = np.empty(index.shape[0])
    for i in range(index.shape[0]):
        k = index[i]
        log_w[i] = log_weight[k]
        for d in range(n_features):
            e2[i, d] = eta2[k, d]
            mean[i, d] = eta1[k, d] * (-0.5 / eta2[k, d])
            norm[i, d] = 0.5 * np.log(-eta2[k, d] / np.pi)
    return index, mean, e2, norm, log_w


@_jit()
def _centre_log_densities(u, n_rows, lp_rows, centred):
    """Put the log-densities of the ``centred`` components, taken about their means, in ``lp_rows``.

    ``lp_rows[r, k] = log_weight + sum_d o_d (eta2 (z_d - mean_d)**2 +
    feature_norm_d)`` for rows ``r < n_rows`` of ``u`` (``[z, z**2, 1]``,
    or ``[z, z**2, o, 1]`` with missing entries; ``o_d = 1`` otherwise),
    which needs no cancellation of large terms. ``centred`` is from
    :func:`centred_components`; ``lp_rows`` may be float32.
    """
    index, mean, eta2, norm, log_weight = centred
    n_features = mean.shape[1]
    masked = u.shape[1] > 2 * n_features + 1  # read from u: no literal flag to compile for
    for i in range(index.shape[0]):
        k = index[i]
        for r in range(n_rows):
            acc = 0.0
            for j in range(n_features):
                d = np.float64(u[r, j]) - mean[i, j]
                t = eta2[i, j] * d * d + norm[i, j]
                acc += t * np.float64(u[r, 2 * n_features + j]) if masked else t
            lp_rows[r, k] = log_weight[i] + acc


@_jit()
def _chunk_log_density(X, start, stop, shift, scale, W, centred, scratch, beta):
    """Log-densities and soft-max terms of rows ``start .. stop`` of ``X``, at ``beta``.

    ``scratch`` is from :func:`_chunk_scratch` and ``W`` from
    :func:`_products_matrix`. On return ``u[r] = [z, z**2, 1]`` of row
    ``start + r`` (``[0, 0, 1]`` past ``stop``), ``lp[k, r]`` its weighted
    log-density under component ``k`` (one BLAS product ``u @ W`` into
    ``lp_rows``, those of the ``centred`` components taken about their
    means instead, transposed), ``top[r]`` its maximum over components,
    ``ev[k, r] = exp(lp[k, r] - top[r])`` and ``total[r]`` the sum of ``ev``
    over components. The soft-max runs components by rows, ``_CHUNK`` rows
    wide, so that its loops are long and vectorise. With ``beta != 1``
    (a temperature level) ``lp`` is multiplied by ``beta`` first, so that
    ``ev`` are the terms of the tempered responsibilities.
    """
    u, lp_rows, lp, ev, top, total, z_row = scratch
    _fill_z(X, start, stop, shift, scale, u, z_row)
    np.dot(u, W, lp_rows)
    _centre_log_densities(u, stop - start, lp_rows, centred)
    _transpose(lp_rows, lp.shape[1], lp)
    _softmax_columns(lp, top, ev, total, beta)


# The loops run over the rows of a chunk, each row a lane, so they vectorise;
# glibc's scalar exp does not.
@_jit()
def _softmax_columns(lp, top, ev, total, beta):
    """Soft-max terms of each column of ``beta * lp``; see :func:`_chunk_log_density`.

    ``lp`` is multiplied by ``beta`` in place (unless it is 1). ``ev = exp(lp
    - top)`` is exactly zero below ``_EXP_CUTOFF``: the factor ``2 ** n`` is
    built from its exponent field, and is zero for those terms.
    """
    if beta != 1.0:
        lp *= beta
    n_components, width = lp.shape
    top[:] = -np.inf
    for k in range(n_components):
        for r in range(width):
            top[r] = max(top[r], lp[k, r])
    c = _INV_FACT
    total[:] = 0.0
    for k in range(n_components):
        for r in range(width):
            t = lp[k, r] - top[r]
            keep = t > _EXP_CUTOFF
            t = max(t, _EXP_CUTOFF)
            shifted = np.float64(t * _LOG2E + _ROUNDER)
            n = shifted - _ROUNDER  # round(t / ln2), as a float
            x = (t - n * _LN2_HI) - n * _LN2_LO
            p = c[13]
            p = p * x + c[12]
            p = p * x + c[11]
            p = p * x + c[10]
            p = p * x + c[9]
            p = p * x + c[8]
            p = p * x + c[7]
            p = p * x + c[6]
            p = p * x + c[5]
            p = p * x + c[4]
            p = p * x + c[3]
            p = p * x + c[2]
            p = p * x + c[1]
            p = p * x + c[0]
            bits = shifted.view(np.int64) - _EXP_BIAS
            e = p * np.int64(bits << 52 if keep else 0).view(np.float64)
            ev[k, r] = e
            total[r] += e


@_jit()
def _add_about_ref(u, resp, ref, use, count, row_terms, row_last, s0, s1, s2):
    """Add ``resp``, ``resp * (z - ref)`` and ``resp * (z - ref)**2`` term by term.

    ``u[r, :n_features]`` holds row ``r``'s ``z`` and ``resp[k, r]`` its
    responsibility, ``row_terms[r]`` the number of its non-zero
    responsibilities and ``row_last[r]`` the last component with one (see
    :func:`_weigh_terms`). Only components with ``use`` set are added, to
    ``s0`` only if ``count``; zero responsibilities are skipped, and a row
    with one non-zero term (most rows, with well separated components) goes
    straight to it. Each accumulator receives its terms in row order.
    """
    for r in range(resp.shape[1]):
        if row_terms[r] == 0:
            continue
        single = row_terms[r] == 1
        for k in range(row_last[r] if single else 0, row_last[r] + 1):
            rk = resp[k, r]
            if rk == 0.0 or not use[k]:
                continue
            if count:
                s0[k] += rk
            _add_deviations(u[r], ref[k], rk, s1[k], s2[k])


@_jit()
def _weigh_terms(ev, w, row_terms, row_last):
    """Scale ``ev[k, r]`` by ``w[r]`` in place, and count what is not zero.

    ``row_terms[r]`` receives the number of non-zero terms of row ``r`` and
    ``row_last[r]`` the last component with one. Integer tallies only: the
    sums of the terms are left to BLAS or to :func:`_add_about_ref`, in a
    fixed order. A term below the smallest normal number of its dtype is
    set to zero (it is less than that fraction of its row's weight).
    """
    n_components, width = ev.shape
    # Subnormal operands make the statistics' BLAS product take microcode
    # assists (doc/performance.rst, "Subnormal responsibilities"). Constants
    # of the terms' dtype, so that float32 terms are not widened.
    tiny, zero = ev.dtype.type(_TINY32 if ev.itemsize == 4 else _TINY64), ev.dtype.type(0)
    row_terms[:] = 0
    row_last[:] = 0
    for k in range(n_components):
        for r in range(width):
            t = ev[k, r] * w[r]
            t = zero if t < tiny else t
            ev[k, r] = t
            row_terms[r] += t != 0.0
            row_last[r] = k if t != 0.0 else row_last[r]


def _em_stats_impl(
    X, sample_weight, shift, scale, W, centred, ref, exact, n_blocks, beta, first, last
):  # fmt: skip
    n_samples, n_features = X.shape
    n_components = W.shape[1]
    weighted = sample_weight.shape[0] > 0
    every = np.empty(n_components, dtype=np.bool_)
    every[:] = True
    any_exact = exact.any()
    # Blocks a whole number of chunks long, as in _em_stats_f32_impl: each
    # chunk costs its two BLAS calls whatever its rows (178 rows in eight
    # blocks made eight chunks of 23 rows instead of three).
    block = _CHUNK * -(-n_samples // (n_blocks * _CHUNK))
    # Each block zeroes its own accumulators, on its own thread.
    ll = np.empty(n_blocks)
    # About ref: sparse chunks, and the components marked exact in dense ones
    # (whose weights are counted in m).
    s0 = np.empty((n_blocks, n_components))
    s1 = np.empty((n_blocks, n_components, n_features))
    s2 = np.empty((n_blocks, n_components, n_features))
    # About the origin: dense chunks, by BLAS ([sum r z, sum r z**2, sum r]).
    m = np.empty((n_blocks, n_components, 2 * n_features + 1))
    # Scratch once per call (one thread's range of blocks), not once per
    # block: on small data most blocks are short or empty.
    scratch = _chunk_scratch(n_features, n_components, np.int64(_CHUNK))
    u, _, _, ev, top, total, _ = scratch
    w_over_total = np.empty(_CHUNK)
    moments = np.empty((n_components, 2 * n_features + 1))
    # int32 tallies, as in the float32 E-step: an annealed fit, which runs
    # both, compiles _weigh_terms and its callers' tallies for one type.
    row_terms = np.empty(_CHUNK, dtype=np.int32)
    row_last = np.empty(_CHUNK, dtype=np.int32)
    for b in range(first, last):
        ll[b] = 0.0
        s0[b] = 0.0
        s1[b] = 0.0
        s2[b] = 0.0
        m[b] = 0.0
        stop = min((b + 1) * block, n_samples)
        for start in range(b * block, stop, _CHUNK):
            n_rows = min(_CHUNK, stop - start)
            _chunk_log_density(X, start, start + n_rows, shift, scale, W, centred, scratch, beta)
            w_over_total[n_rows:] = 0.0  # rows past n_rows add nothing below
            for r in range(n_rows):
                w = sample_weight[start + r] if weighted else 1.0
                ll[b] += w * (top[r] + math.log(total[r])) / beta
                w_over_total[r] = w
            for r in range(n_rows):
                w_over_total[r] /= total[r]
            _weigh_terms(ev, w_over_total, row_terms, row_last)
            if row_terms.sum() > _DENSE * n_rows * n_components:
                np.dot(ev, u, moments)
                for k in range(n_components):
                    for j in range(2 * n_features + 1):
                        m[b, k, j] += moments[k, j]
                if any_exact:
                    _add_about_ref(u, ev, ref, exact, _NO, row_terms, row_last, s0[b], s1[b], s2[b])
            else:
                _add_about_ref(u, ev, ref, every, _YES, row_terms, row_last, s0[b], s1[b], s2[b])
    return ll, s0, s1, s2, m


_em_stats_kernel = _Blockwise(_em_stats_impl)


def _sum_blocks(per_block):
    """Sum each per-block array over its first axis, in an order fixed by its shape."""
    return tuple(a.sum(axis=0) for a in per_block)


def _float64_moments(X):
    """Whether the float32 path takes far components' moments from a float64 product.

    For float32 ``X``, yes: its statistics are the fit's. For float64 ``X``
    taking the float32 path (``float32=True``: the annealing levels and the
    moves' finalists, steps on the way to a float64 EM) no: such a component
    loses up to ``log10(_MAX_CANCELLATION)`` of float32's digits of its
    scatter (a few 1e-5 of its variance) instead of two, for less time
    (doc/annealing.rst, "Levels in float32").
    """
    return X.dtype == np.float32


def _products_matrix(eta1, eta2, log_norm):
    """``W = [eta1.T; eta2.T; log_norm]``: ``[z, z**2, 1] @ W`` is the weighted log-density."""
    return np.ascontiguousarray(np.vstack([eta1.T, eta2.T, log_norm]), dtype=np.float64)


@keyboard_interrupts()
def em_stats(
    X, sample_weight, shift, scale, eta1, eta2, log_norm, log_weight, ref, n_blocks, parallel,
    beta=1.0, float32=False,
):  # fmt: skip
    """Fused E-step: weighted log-likelihood and sufficient statistics.

    Parameters
    ----------
    X : ndarray of shape (n_samples, n_features), C-contiguous float32 or float64
        Data in user units (not copied, may be a read-only memmap).
    sample_weight : ndarray of shape (n_samples,) or (0,), float64
        Per-sample weights; an empty array means unit weights.
    shift, scale : ndarray of shape (n_features,)
        Map to internal coordinates ``z = (x - shift) * scale``.
    eta1, eta2 : ndarray of shape (n_components, n_features)
        Natural parameters in internal coordinates (``eta2 < 0``).
    log_norm : ndarray of shape (n_components,), float64
        ``log(weight_k)`` plus the log-normaliser of component ``k``.
    log_weight : ndarray of shape (n_components,), float64
        ``log(weight_k)``: for the log-densities of components narrow and far
        from the centre, taken about their means (:func:`centred_components`).
    ref : ndarray of shape (n_components, n_features), float64
        Reference point of each component (its current mean) about which the
        statistics are returned.
    n_blocks : int
        Number of row blocks; must depend on the data shape only.
    parallel : bool
        Share the blocks out between threads (:func:`~._threading.share_out`).
    beta : float, default=1.0
        Inverse temperature of the responsibilities, ``r_ik`` proportional to
        ``(weight_k N(z_i | k)) ** beta`` (deterministic-annealing EM).
    float32 : bool, default=False
        Take the float32 path (below) for float64 ``X`` too, reading ``X``
        as it is: for the annealing levels, whose fixed points are steps on
        the way to the final EM's. Far components' moments then come from
        the float32 product up to ``_MAX_CANCELLATION`` (see
        :func:`_float64_moments`). Unless more than ``_MOSTLY_WIDE`` of the
        components are wide in float32 (:func:`_f32_operands`): their
        log-densities would come from a float64 product anyway, and the
        float64 path is taken.

    Returns
    -------
    loglik : float
        ``sum_i w_i log p(z_i)`` in internal coordinates at ``beta = 1``;
        otherwise the objective of the tempered E-step, ``sum_i w_i
        log(sum_k (weight_k N(z_i | k)) ** beta) / beta``, which each EM
        step at ``beta`` increases (one soft-max serves both).
    nk : ndarray of shape (n_components,)
        ``sum_i w_i r_ik``.
    s1 : ndarray of shape (n_components, n_features)
        ``sum_i w_i r_ik (z_i - ref_k)``.
    s2 : ndarray of shape (n_components, n_features)
        ``sum_i w_i r_ik (z_i - ref_k) ** 2``.

    Notes
    -----
    For float64 ``X`` the computation is in float64 unless ``float32``. For
    float32 ``X`` the products and the soft-max are in float32 and the sums
    in float64; see :func:`_em_stats_f32`. In a chunk with
    more than ``_DENSE`` (float32: ``_DENSE_F32``) of its responsibilities
    non-zero, the statistics are
    one BLAS product about the origin, moved to ``ref`` afterwards, which
    loses ``log10(ref_k ** 2 / var_k)`` digits of the scatter to
    cancellation. A component for which that exceeds
    ``log10(_MAX_CANCELLATION)`` (a narrow component far from the data's
    centre), and every component in a sparser chunk, is accumulated about
    ``ref`` term by term instead, without that loss.
    """
    X = _read_only(X)
    centred = centred_components(eta1, eta2, log_weight)
    operands = _f32_path(X.dtype, float32, eta1, eta2, log_norm)
    if operands is not None:
        return _em_stats_f32(
            X, sample_weight, shift, scale, operands, centred, ref, n_blocks, parallel, beta
        )
    W, exact = _f64_operands(_f64(eta1), _f64(eta2), _f64(log_norm), _f64(ref), _MAX_CANCELLATION)
    work = X.size * W.shape[1]
    parallel = use_threads(parallel, work)
    with single_threaded_blas():
        kernel = _em_stats_kernel.runner(parallel)
        per_block = kernel(
            X, sample_weight, _f64(shift), _f64(scale), W, centred, ref, exact, n_blocks, beta
        )
    return _moved_to_ref(per_block, ref, exact)


# Compiled: called once per pass (seven numpy calls took 10 us).
@_jit(fastmath=False)
def _f64_operands(eta1, eta2, log_norm, ref, max_cancellation):
    """``W`` of :func:`_products_matrix` and the components summed about ``ref`` (``exact``).

    A component is ``exact`` where ``ref**2 * precision`` exceeds
    ``max_cancellation`` in some feature (see :func:`em_stats`).
    """
    n_components, n_features = eta1.shape
    W = np.empty((2 * n_features + 1, n_components))
    exact = np.empty(n_components, dtype=np.bool_)
    exact[:] = False
    for k in range(n_components):
        for d in range(n_features):
            W[d, k] = eta1[k, d]
            W[n_features + d, k] = eta2[k, d]
            exact[k] |= ref[k, d] ** 2 * (-2.0 * eta2[k, d]) > max_cancellation
        W[2 * n_features, k] = log_norm[k]
    return W, exact


# Compiled: called once per EM step, where its two dozen numpy calls on
# (n_components, n_features) arrays took 20 us (a sixth of a step on 178
# rows). Element by element the arithmetic of the numpy it replaced.
@keyboard_interrupts()
def m_step_moments(nk, nkd, s1, s2, ref, a1, b, reg_covar, fixed_var, floor, eps):
    """Means and variances of :func:`natgmm._em.m_step`, before the weights.

    ``nkd`` is ``(n_components, n_features)`` with missing entries, else
    ``(0, 0)``; ``fixed_var`` is ``(n_features,)``, or ``(0,)`` for none.
    Returns ``means``, ``var`` (raised to ``floor``), ``empty`` (the
    components without mass) and whether every mean and variance is finite
    and every variance positive.
    """
    return _m_step_moments(nk, nkd, s1, s2, ref, a1, b, reg_covar, fixed_var, floor, eps)


@_jit(fastmath=False, error_model="numpy")
def _m_step_moments(nk, nkd, s1, s2, ref, a1, b, reg_covar, fixed_var, floor, eps):
    n_components, n_features = s1.shape
    total = 0.0
    for k in range(n_components):
        total += nk[k]
    masked, fixed = nkd.shape[0] > 0, fixed_var.shape[0] > 0
    means = np.empty((n_components, n_features))
    var = np.empty((n_components, n_features))
    empty = np.empty(n_components, dtype=np.bool_)
    valid = True
    for k in range(n_components):
        empty[k] = nk[k] <= eps * total  # the rule of _em.empty_components
        for d in range(n_features):
            count = (nkd[k, d] if masked else nk[k]) + 10.0 * eps
            delta = s1[k, d] / count
            mean = ref[k, d] + delta
            scatter = s2[k, d] - s1[k, d] * delta
            scatter = 0.0 if scatter < 0.0 else scatter  # NaN stays NaN
            v = (scatter + 2.0 * b[d]) / (count + 2.0 * a1)
            v += reg_covar[d]
            v = fixed_var[d] if fixed else v
            v = floor[d] if v < floor[d] else v  # NaN stays NaN
            valid &= v > 0.0 and math.isfinite(v) and math.isfinite(mean)
            means[k, d], var[k, d] = mean, v
    return means, var, empty, valid


def _moved_to_ref(per_block, ref, exact):
    """Sum a kernel's per-block results and move the moments about the origin to ``ref``.

    ``per_block`` is ``(ll, s0, s1, s2, m)`` of :func:`_em_stats_impl`. The
    moments ``m`` are added to ``s1`` and ``s2`` only for the components not
    ``exact``; the others were summed about ``ref`` directly. Returns
    ``loglik, nk, s1, s2``.
    """
    ll, s0, s1, s2, m = per_block
    return (ll.sum(), *_summed_about_ref(s0, s1, s2, m, ref, exact))


# Compiled: called once per pass. The blocks are added in order, without fast-math:
# numpy's sum over the first axis gave the same bits (but with one component,
# whose arrays it sums pairwise from nine blocks on).
@_jit(fastmath=False)
def _summed_about_ref(s0, s1, s2, m, ref, exact):
    """``nk, s1, s2`` of :func:`_moved_to_ref`."""
    n_blocks, n_components, n_features = s1.shape
    # Scalar loops, not numpy's in-place array sums: the same additions in
    # the same order, compiled in about half the time.
    t1 = np.empty((n_components, n_features))
    t2 = np.empty((n_components, n_features))
    tm = np.empty((n_components, m.shape[2]))
    nk = np.empty(n_components)
    for k in range(n_components):
        for j in range(n_features):
            a1, a2 = s1[0, k, j], s2[0, k, j]
            for b in range(1, n_blocks):
                a1 += s1[b, k, j]
                a2 += s2[b, k, j]
            t1[k, j], t2[k, j] = a1, a2
        for j in range(m.shape[2]):
            a = m[0, k, j]
            for b in range(1, n_blocks):
                a += m[b, k, j]
            tm[k, j] = a
        a = s0[0, k]
        for b in range(1, n_blocks):
            a += s0[b, k]
        nk[k] = a + tm[k, -1]
    for k in range(n_components):
        if exact[k]:
            continue
        m0 = tm[k, -1]
        for j in range(n_features):
            c, m1, m2 = ref[k, j], tm[k, j], tm[k, n_features + j]
            t1[k, j] += m1 - c * m0
            t2[k, j] += m2 - c * (2.0 * m1 - c * m0)
    return nk, t1, t2


def _label_stats_impl(X, sample_weight, shift, scale, labels, ref, n_blocks, first, last):
    n_samples, n_features = X.shape
    n_components = ref.shape[0]
    weighted = sample_weight.shape[0] > 0
    labelled = labels.shape[0] > 0
    block = (n_samples + n_blocks - 1) // n_blocks
    nk = np.empty((n_blocks, n_components))
    s1 = np.empty((n_blocks, n_components, n_features))
    s2 = np.empty((n_blocks, n_components, n_features))
    nk[:], s1[:], s2[:] = 0.0, 0.0, 0.0
    for b in range(first, last):
        for i in range(b * block, min((b + 1) * block, n_samples)):
            w = sample_weight[i] if weighted else 1.0
            k = labels[i] if labelled else 0
            nk[b, k] += w
            _add_mapped_deviations(X[i], shift, scale, ref[k], w, s1[b, k], s2[b, k])
    return nk, s1, s2


_label_stats_kernel = _Blockwise(_label_stats_impl)


@keyboard_interrupts()
def label_stats(X, sample_weight, shift, scale, labels, ref, n_blocks, parallel):
    """Sufficient statistics of a hard assignment of rows to components.

    Parameters are those of :func:`em_stats`, with ``labels`` (int64 array of
    shape ``(n_samples,)``, or ``(0,)`` for all rows in component 0) in place
    of the natural parameters: each row has responsibility one for its
    labelled component.

    Returns
    -------
    nk, s1, s2 : ndarray
        As in :func:`em_stats`.
    """
    X = _read_only(X)
    kernel = _label_stats_kernel.runner(use_threads(parallel, X.size))
    per_block = kernel(X, sample_weight, shift, scale, labels, ref, n_blocks)
    return _sum_blocks(per_block)


def _log_prob_impl(
    X, shift, scale, W, centred, out_log_prob, labels, resp, n_groups, first, last
):  # fmt: skip
    n_samples, n_features = X.shape
    n_components = W.shape[1]
    want_resp = resp.shape[0] > 0
    n_chunks = (n_samples + _CHUNK - 1) // _CHUNK
    for g in range(first, last):
        scratch = _chunk_scratch(n_features, n_components, np.int64(_CHUNK))
        _, _, lp, ev, top, total, _ = scratch
        best = np.empty(_CHUNK, dtype=np.int64)
        for chunk in range(g * n_chunks // n_groups, (g + 1) * n_chunks // n_groups):
            start = chunk * _CHUNK
            stop = min(start + _CHUNK, n_samples)
            _chunk_log_density(X, start, stop, shift, scale, W, centred, scratch, 1.0)
            # _chunk_outputs' work, but the float64 total is the responsibilities'
            # divisor (_chunk_outputs sums a float32 chunk's again in float64).
            for k in range(n_components - 1, -1, -1):  # first component of largest density
                for r in range(_CHUNK):
                    best[r] = k if lp[k, r] == top[r] else best[r]
            for r in range(stop - start):
                i = start + r
                out_log_prob[i] = top[r] + math.log(total[r])
                labels[i] = best[r]
                if want_resp:
                    for k in range(n_components):
                        resp[i, k] = ev[k, r] / total[r]


_log_prob_kernel = _Blockwise(_log_prob_impl)


@keyboard_interrupts()
def log_prob(
    X, shift, scale, eta1, eta2, log_norm, log_weight, out_log_prob, labels, resp, parallel
):  # fmt: skip
    """Per-row log-density, most probable component and responsibilities.

    Parameters are those of :func:`em_stats`; the outputs are written in
    place.

    Parameters
    ----------
    out_log_prob : ndarray of shape (n_samples,), float64
        Receives ``log p(z_i)`` in internal coordinates.
    labels : ndarray of shape (n_samples,), int64
        Receives the first component of largest weighted log-density.
    resp : ndarray of shape (n_samples, n_components) or (0, n_components)
        Receives the responsibilities unless it has no rows.
    """
    prepared = log_prob_operands(eta1, eta2, log_norm, log_weight, X.dtype == np.float32)
    log_prob_prepared(X, shift, scale, prepared, out_log_prob, labels, resp, parallel)


@keyboard_interrupts()
def log_prob_operands(eta1, eta2, log_norm, log_weight, float32):
    """Return what :func:`log_prob` computes from the model alone, for :func:`log_prob_prepared`.

    The compiled kernel for float32 ``X`` (``float32``) or float64 ``X``,
    its operands made from the natural parameters, the components taken
    about their means (:func:`centred_components`) and the number of
    components. A model's predictions can make these once and reuse them:
    they were a fifth of a one-row prediction's time.
    """
    if float32:
        kernel = _log_prob_f32_kernel
        operands = _f32_operands(eta1, eta2, log_norm)
    else:
        kernel = _log_prob_kernel
        operands = (_products_matrix(eta1, eta2, log_norm),)
    centred = centred_components(eta1, eta2, log_weight)
    return kernel, operands, centred, np.shape(log_norm)[0]


def log_prob_work(X, n_components):
    """At most the multiply-adds of a BLAS product of a log-density call over ``X``.

    Each product is a whole chunk's, ``_CHUNK`` rows however few are read,
    by ``[z, z**2, o, 1] @ W`` at most.
    """
    return _CHUNK * (3 * X.shape[1] + 1) * n_components


@keyboard_interrupts()
def log_prob_prepared(X, shift, scale, prepared, out_log_prob, labels, resp, parallel):
    """:func:`log_prob` with its model's part made (:func:`log_prob_operands` of ``X``'s dtype)."""
    kernel, operands, centred, n_components = prepared
    X = _read_only(X)
    parallel = use_threads(parallel, X.size * n_components)
    with blas_hold(log_prob_work(X, n_components)):
        kernel.runner(parallel)(
            X, _f64(shift), _f64(scale), *operands, centred, out_log_prob, labels, resp,
            _log_prob_groups(X.shape[0]),
        )  # fmt: skip


# The float32 path. float32 X gets float32 [z, z**2, 1], float32 natural
# parameters and float32 BLAS products (twice the float64 rate), a float32
# soft-max, and float64 accumulators: each chunk's statistics are one float32
# product, added to float64 sums, and the log-likelihood is summed in float64.
# doc/performance.rst ("float32") has the error measurements behind the
# constants below.
# A float32 product loses about eps32 times the sum of the magnitudes of its
# terms; for rows near a component's mean that sum is about
# sum_d (3 mean**2 / (2 var) + 1 / 2) + |log_norm|, in internal units. A
# component whose sum is above this (a narrow component far from the centre)
# has its log-densities computed by a float64 product instead, so that the
# log-densities of rows near a component are off by about 1e-3 at most
# (eps32 * 1e4 = 1.2e-3).
_MAX_MAGNITUDE_F32 = 1e4

# Moving float32 moments about the origin to ``ref`` loses
# ``log10(ref**2 / var)`` of float32's seven digits: a component above this
# takes its moments from a float64 product instead (and, above
# _MAX_CANCELLATION, is summed about ``ref`` term by term, as in float64).
_MAX_CANCELLATION_F32 = 1e2
# The float32 path for float64 data (the annealing levels) only while at most
# this share of the components is wide (see em_stats).
_MOSTLY_WIDE = 0.4

# Parameters above this (a quarter of float32's largest) make a component wide.
_BIG_F32 = float(np.finfo(np.float32).max) / 4

# exp(t) is subnormal or zero in float32 below this: such terms are dropped.
_EXP_CUTOFF_F32 = -87.0

# float32 exp(x) by range reduction, x = n ln2 + r with |r| <= ln2 / 2, ln2
# split Cody and Waite's way (n * _LN2_HI_F32 exact for |n| < 2^15), and
# cephes' degree-7 polynomial for exp(r) (truncation 1.1e-9); tested against
# np.exp in float32 in tests/test_kernels.py.
_LN2_HI_F32 = 0.693359375
_LN2_LO_F32 = -2.12194440e-4
_EXP_POLY_F32 = (
    1.9875691500e-4,
    1.3981999507e-3,
    8.3334519073e-3,
    4.1665795894e-2,
    1.6666665459e-1,
    5.0000001201e-1,
)


@_jit()
def _chunk_scratch_f32(n_features, n_components, n_wide, rows):
    """float32 arrays for :func:`_chunk_log_density_f32`, and two float64 ones.

    ``u, lp_rows, lp, ev, top, total`` as :func:`_chunk_scratch`, in float32;
    ``u64`` (``[z, z**2, 1]`` in float64) and ``lp_wide`` receive the
    log-densities of the ``n_wide`` components computed in float64;
    ``z_row`` (float64) is :func:`_fill_z`'s row of ``z``.
    """
    u = np.empty((rows, 2 * n_features + 1), dtype=np.float32)
    u[:, 2 * n_features] = 1.0
    u64 = np.empty((rows if n_wide else 0, 2 * n_features + 1))
    u64[:, 2 * n_features] = 1.0
    return (
        u,
        np.empty((rows, n_components), dtype=np.float32),
        np.empty((n_components, rows), dtype=np.float32),
        np.empty((n_components, rows), dtype=np.float32),
        np.empty(rows, dtype=np.float32),
        np.empty(rows, dtype=np.float32),
        u64,
        np.empty((rows, n_wide)),
        np.empty(n_features),
    )


@_jit()
def _chunk_log_density_f32(
    X, start, stop, shift, scale, W32, W_wide, wide, centred, scratch, beta, tally
):  # fmt: skip
    """:func:`_chunk_log_density` in float32; whether every row came out finite.

    ``tally`` is ``(row_terms, row_last)`` for :func:`_softmax_columns_f32`.

    ``z`` is computed in float64 and rounded. The components listed in
    ``wide`` (their columns of ``W32`` are ignored) take their log-densities
    from a float64 product with ``W_wide``, rounded to float32. A row with a
    non-finite ``total`` (a log-density beyond float32's range, or inf - inf
    in the product, for rows far outside the data) makes the function
    return False: the caller redoes the chunk in float64.
    """
    u, lp_rows, lp, ev, top, total, u64, lp_wide, z_row = scratch
    n_rows = stop - start
    _fill_z(X, start, stop, shift, scale, u, z_row)
    np.dot(u, W32, lp_rows)
    if wide.shape[0]:
        _fill_z(X, start, stop, shift, scale, u64, z_row)
        np.dot(u64, W_wide, lp_wide)
        _copy_wide(lp_wide, wide, n_rows, lp_rows)
        _centre_log_densities(u64, n_rows, lp_rows, centred)  # all wide
    _transpose(lp_rows, lp.shape[1], lp)
    _softmax_columns_f32(lp, top, ev, total, beta, tally[0], tally[1])
    for r in range(n_rows):
        if not math.isfinite(total[r]):
            return False
    return True


@_jit()
def _copy_wide(lp_wide, wide, n_rows, lp_rows):
    """Put the wide components' float64 log-densities into the float32 ``lp_rows``.

    Rows past ``n_rows`` (the chunk's padding, of weight zero) get 0: their
    log-density is the component's ``log_norm``, which may be beyond
    float32's range, and an infinite padding row would turn the chunk's sums
    into NaN (infinity minus infinity, then NaN times a zero weight).
    """
    for r in range(lp_rows.shape[0]):
        for i in range(wide.shape[0]):
            lp_rows[r, wide[i]] = lp_wide[r, i] if r < n_rows else 0.0


@_jit()
def _softmax_columns_f32(lp, top, ev, total, beta, row_terms, row_last):
    """:func:`_softmax_columns` in float32, with cephes' expf.

    A NaN anywhere in a column, or a column whose largest entry is infinite,
    makes its ``total`` NaN. Unless ``row_terms`` is empty, ``row_terms[r]``
    receives the number of column ``r``'s terms above the cutoff and
    ``row_last[r]`` the last component with one: :func:`_weigh_terms`'
    tallies before weighing, of which those are a superset (a sparse
    chunk's statistics then need no separate pass over its terms).
    """
    if beta != 1.0:
        lp *= np.float32(beta)
    n_components, width = lp.shape
    top[:] = -np.inf
    for k in range(n_components):
        for r in range(width):
            top[r] = max(top[r], lp[k, r])
    c = _EXP_POLY_F32
    total[:] = 0.0
    tallied = row_terms.shape[0] > 0
    if tallied:
        row_terms[:] = 0
        row_last[:] = 0
    for k in range(n_components):
        k32 = row_last.dtype.type(k)  # tallies in their own width: no widening in the loop
        one = row_terms.dtype.type(1)
        nought = row_terms.dtype.type(0)
        for r in range(width):
            d = lp[k, r] - top[r]
            keep = d > np.float32(_EXP_CUTOFF_F32)
            t = max(d, np.float32(_EXP_CUTOFF_F32))
            n = -np.int32(np.float32(0.5) - t * np.float32(_LOG2E))
            fn = np.float32(n)
            x = (t - fn * np.float32(_LN2_HI_F32)) - fn * np.float32(_LN2_LO_F32)
            p = np.float32(c[0])
            p = p * x + np.float32(c[1])
            p = p * x + np.float32(c[2])
            p = p * x + np.float32(c[3])
            p = p * x + np.float32(c[4])
            p = p * x + np.float32(c[5])
            p = (p * x) * x + x + np.float32(1.0)
            e = p * np.int32((n + 127) << 23 if keep else 0).view(np.float32)
            ev[k, r] = e if d == d else d  # NaN stays NaN
            total[r] += ev[k, r]
            if tallied:
                row_terms[r] += one if keep else nought
                row_last[r] = k32 if keep else row_last[r]


@_jit()
def _chunk_loglik(top, total, sample_weight, weight_scale, start, n_rows, w_row, ll, beta):
    """Add the chunk's weighted log-likelihood to ``ll[0]`` (float64).

    ``top`` and ``total`` are from the soft-max at ``beta``: the sum is the
    tempered objective ``log(sum_k exp(beta lp_k)) / beta``, the
    log-likelihood at ``beta = 1``. ``w_row`` receives each row's weight
    times ``weight_scale``.
    """
    weighted = sample_weight.shape[0] > 0
    for r in range(n_rows):
        w = sample_weight[start + r] if weighted else 1.0
        ll[0] += w * (np.float64(top[r]) + math.log(np.float64(total[r]))) / beta
        w_row[r] = w * weight_scale


@_jit()
def _weighed_chunk_is_dense(ev, total, n_rows, w_row, work):
    """Turn a chunk's soft-max terms ``ev`` into weighted responsibilities; whether it is dense.

    ``ev[k, r]`` becomes ``w_row[r] * ev[k, r] / total[r]`` (rows past
    ``n_rows`` add nothing), with the tallies of :func:`_weigh_terms` in
    ``work``'s ``row_terms`` and ``row_last``. Dense: more than ``_DENSE``
    of the terms non-zero, ``_DENSE_F32`` for float32 terms.
    """
    w_over_total, _, row_terms, row_last = work
    w_over_total[n_rows:] = 0.0
    for r in range(n_rows):
        w_over_total[r] = w_row[r] / np.float64(total[r])
    _weigh_terms(ev, w_over_total, row_terms, row_last)
    dense = _DENSE_F32 if ev.itemsize == 4 else _DENSE
    return row_terms.sum() > dense * n_rows * ev.shape[0]


@_jit()
def _chunk_stats(
    X, start, shift, scale, u, ev, total, n_rows, w_row, ref, exact, every, work, s0, s1, s2, m,
    precise,
):  # fmt: skip
    """Add a chunk's statistics to one block's float64 accumulators.

    ``u``, ``ev`` and ``total`` are from :func:`_chunk_log_density` or its
    float32 version (``ev`` is overwritten), ``w_row`` the rows' weights,
    ``s0, s1, s2, m`` one block's accumulators as in :func:`_em_stats_impl`,
    ``work`` the scratch ``(w_over_total, moments, row_terms, row_last)``,
    of the dtype of ``ev`` but for the integer tallies. The terms added about
    ``ref`` take ``z`` from ``X`` in float64 (:func:`_add_about_ref_x`).
    With float32 ``ev``, the moments of the components ``precise`` marks
    come from a float64 product (:func:`_add_product_moments`). Returns
    whether the chunk was dense.
    """
    _, moments, row_terms, row_last = work
    n_components, n_features = s1.shape
    if _weighed_chunk_is_dense(ev, total, n_rows, w_row, work):
        np.dot(ev, u, moments)
        in_float32 = ev.itemsize == 4
        for k in range(n_components):
            if in_float32 and precise[0][k]:
                continue
            for j in range(2 * n_features + 1):
                m[k, j] += moments[k, j]
        if in_float32 and precise[1].shape[0]:
            _fill_z(X, start, start + n_rows, shift, scale, precise[2], precise[5])
            _add_product_moments(ev, precise, m)
        if exact.any():
            _add_about_ref_x(
                X, start, shift, scale, ev, ref, exact, _NO, row_terms, row_last, s0, s1, s2,
                work[0][:0],
            )  # fmt: skip
        return True
    _add_about_ref_x(
        X, start, shift, scale, ev, ref, every, _YES, row_terms, row_last, s0, s1, s2,
        work[0][:0],
    )  # fmt: skip
    return False


@_jit()
def _chunk_stats_tallied(
    X, start, shift, scale, u, ev, total, n_rows, w_row, ref, exact, every, work, s0, s1, s2, m,
    precise,
):  # fmt: skip
    """:func:`_chunk_stats` of a float32 chunk whose soft-max has tallied its terms.

    ``work``'s ``row_terms`` and ``row_last`` hold :func:`_softmax_columns_f32`'s
    tallies (terms above the exponential's cutoff, before weighing); returns
    whether the chunk is sparse by them. A sparse chunk has its terms
    weighed one by one as they are added, without :func:`_weigh_terms`'
    pass over all of them (0.2 to 0.3 ms of a 13 ms float32 pass over the
    separated blobs of ``bench_float32.py``). Weighing only removes terms
    (those below float32's smallest normal number), so a chunk sparse by
    these tallies is sparse by the weighed ones too, and its sums are bit
    for bit those of :func:`_chunk_stats`, to which any other chunk goes.
    """
    w_over_total, _, row_terms, row_last = work
    row_terms[n_rows:] = 0  # the padding rows' terms (of weight zero)
    if row_terms.sum() > _DENSE_F32 * n_rows * ev.shape[0]:
        return not _chunk_stats(
            X, start, shift, scale, u, ev, total, n_rows, w_row, ref, exact, every, work, s0,
            s1, s2, m, precise,
        )  # fmt: skip
    for r in range(n_rows):
        w_over_total[r] = w_row[r] / np.float64(total[r])
    _add_about_ref_x(
        X, start, shift, scale, ev, ref, every, _YES, row_terms, row_last, s0, s1, s2,
        w_over_total[:n_rows],
    )  # fmt: skip
    return True


@_jit()
def _fill_z(X, start, stop, shift, scale, u, z_row):
    """``u[r, :2 n_features] = [z, z**2]`` of row ``start + r``, zero past ``stop``.

    ``z = (x - shift) * scale`` is computed in float64, into ``z_row``
    (``n_features``, float64), and stored in the dtype of ``u``.
    """
    # Two loops through z_row: LLVM vectorises them without the checks for
    # overlap between u and X that one loop needs (doc/performance.rst,
    # "Filling z").
    n_features = X.shape[1]
    n_rows = stop - start
    for r in range(n_rows):
        x, z = X[start + r], u[r]
        for j in range(n_features):
            z_row[j] = (x[j] - shift[j]) * scale[j]
        for j in range(n_features):
            t = z_row[j]
            z[j] = t
            z[n_features + j] = t * t
    u[n_rows:, : 2 * n_features] = 0.0


@_jit()
def _add_product_moments(ev, precise, m):
    """Add a chunk's moments about the origin of some components, by a float64 product.

    ``precise`` starts ``(mask, index, u64, ev64, moments64)``: the
    components' mask and indices, the chunk's ``[z, z**2, 1]`` (or ``[z,
    z**2, o, 1]``) computed from ``X`` in float64, and scratch for their
    responsibilities ``ev`` in float64 and for the product ``ev64 @ u64``,
    whose rows are added to ``m``.
    """
    index, u64, ev64, moments64 = precise[1], precise[2], precise[3], precise[4]
    for i in range(index.shape[0]):
        for r in range(ev.shape[1]):
            ev64[i, r] = ev[index[i], r]
    np.dot(ev64, u64, moments64)
    for i in range(index.shape[0]):
        for j in range(moments64.shape[1]):
            m[index[i], j] += moments64[i, j]


@_jit()
def _add_about_ref_x(
    X, start, shift, scale, resp, ref, use, count, row_terms, row_last, s0, s1, s2, w_over_total
):  # fmt: skip
    """:func:`_add_about_ref` with ``z`` of row ``start + r`` computed from ``X`` in float64.

    The float32 ``u`` would round ``z``, by up to ``eps32 * |z| / 2``: for a
    narrow component far from the centre that is a large part of its spread.
    With ``w_over_total`` not empty, ``resp`` holds unweighed terms, each
    weighed here as :func:`_weigh_terms` would (``row_terms`` and
    ``row_last`` may then count terms that come out zero).
    """
    weigh = w_over_total.shape[0] > 0
    tiny, zero = resp.dtype.type(_TINY32 if resp.itemsize == 4 else _TINY64), resp.dtype.type(0)
    for r in range(resp.shape[1]):
        if row_terms[r] == 0:
            continue
        x = X[start + r]
        single = row_terms[r] == 1
        for k in range(row_last[r] if single else 0, row_last[r] + 1):
            rk = resp[k, r]
            if weigh:
                rk = rk * w_over_total[r]
                rk = zero if rk < tiny else rk
            rk = np.float64(rk)
            if rk == 0.0 or not use[k]:
                continue
            if count:
                s0[k] += rk
            _add_mapped_deviations(x, shift, scale, ref[k], rk, s1[k], s2[k])


def _em_stats_f32_impl(
    X, sample_weight, weight_scale, shift, scale, W, W32, W_wide, wide, centred, ref, exact,
    precise, n_blocks, beta, first, last,
):  # fmt: skip
    n_samples, n_features = X.shape
    n_components = W.shape[1]
    every = np.empty(n_components, dtype=np.bool_)
    every[:] = True
    precise_index = _flatnonzero(precise)
    # Blocks a whole number of chunks long: a block's last, partial chunk
    # costs a full one (the products and the soft-max run over all its 128
    # rows), 16 of them 2 % of a 60 000-row pass. Still fixed by the shape.
    block = _CHUNK_F32 * -(-n_samples // (n_blocks * _CHUNK_F32))
    ll = np.empty((n_blocks, 1))
    s0 = np.empty((n_blocks, n_components))
    s1 = np.empty((n_blocks, n_components, n_features))
    s2 = np.empty((n_blocks, n_components, n_features))
    m = np.empty((n_blocks, n_components, 2 * n_features + 1))
    # Scratch once per call (one thread's range of blocks), as in _em_stats_impl.
    w_row = np.empty(_CHUNK_F32)
    # int32 tallies, the width of the float32 terms they count: no
    # widening in _weigh_terms' vector loop (2-4 % of this kernel).
    row_terms = np.empty(_CHUNK_F32, dtype=np.int32)
    row_last = np.empty(_CHUNK_F32, dtype=np.int32)
    scratch = _chunk_scratch_f32(n_features, n_components, wide.shape[0], np.int64(_CHUNK_F32))
    u, _, _, ev, top, total, _, _, _ = scratch
    work = (
        np.empty(_CHUNK_F32, dtype=np.float32),
        np.empty((n_components, 2 * n_features + 1), dtype=np.float32),
        row_terms,
        row_last,
    )
    # For chunks with a row outside float32's range, done in float64.
    scratch64 = _chunk_scratch(n_features, n_components, np.int64(_CHUNK_F32))
    u64, _, _, ev64, top64, total64, z_row = scratch64
    # Their moments in float64: u64 is free in a float32 chunk.
    precise_work = (
        precise,
        precise_index,
        u64,
        np.empty((precise_index.shape[0], _CHUNK_F32)),
        np.empty((precise_index.shape[0], 2 * n_features + 1)),
        z_row,
    )
    work64 = (
        np.empty(_CHUNK_F32),
        np.empty((n_components, 2 * n_features + 1)),
        row_terms,
        row_last,
    )
    for b in range(first, last):
        ll[b] = 0.0
        s0[b] = 0.0
        s1[b] = 0.0
        s2[b] = 0.0
        m[b] = 0.0
        # The soft-max tallies a chunk's terms when the block's previous
        # chunk was sparse (_chunk_stats_tallied): sparse chunks come in runs
        # (separated data), and in dense ones the tallies would be wasted
        # (they are weighed and tallied again). Either way the same sums.
        no_tally = row_terms[:0]
        tally = True
        stop = min((b + 1) * block, n_samples)
        for start in range(b * block, stop, _CHUNK_F32):
            n_rows = min(_CHUNK_F32, stop - start)
            if _chunk_log_density_f32(
                X, start, start + n_rows, shift, scale, W32, W_wide, wide, centred, scratch, beta,
                (row_terms, row_last) if tally else (no_tally, no_tally),
            ):  # fmt: skip
                _chunk_loglik(
                    top, total, sample_weight, weight_scale, start, n_rows, w_row, ll[b], beta
                )
                if tally:
                    tally = _chunk_stats_tallied(
                        X, start, shift, scale, u, ev, total, n_rows, w_row, ref, exact, every,
                        work, s0[b], s1[b], s2[b], m[b], precise_work,
                    )  # fmt: skip
                else:
                    tally = not _chunk_stats(
                        X, start, shift, scale, u, ev, total, n_rows, w_row, ref, exact, every,
                        work, s0[b], s1[b], s2[b], m[b], precise_work,
                    )  # fmt: skip
            else:
                _chunk_log_density(
                    X, start, start + n_rows, shift, scale, W, centred, scratch64, beta
                )
                _chunk_loglik(
                    top64, total64, sample_weight, weight_scale, start, n_rows, w_row, ll[b],
                    beta,
                )  # fmt: skip
                _chunk_stats(
                    X, start, shift, scale, u64, ev64, total64, n_rows, w_row, ref, exact,
                    every, work64, s0[b], s1[b], s2[b], m[b], precise_work,
                )  # fmt: skip
    return ll[:, 0], s0, s1, s2, m


_em_stats_f32_kernel = _Blockwise(_em_stats_f32_impl)


def _f32_path(dtype, float32, eta1, eta2, log_norm):
    """:func:`_f32_operands` if :func:`em_stats` takes the float32 path for ``dtype``, else None."""
    if dtype == np.float32 or float32:
        operands = _f32_operands(eta1, eta2, log_norm)
        # float64 X whose components are mostly wide in float32 (features all
        # but constant within components, as raw pixels): the float32 path
        # would take their log-densities from a float64 product anyway, after
        # a float32 one; at 0.6 of float64's time per component, it gains
        # nothing beyond _MOSTLY_WIDE of them.
        if dtype == np.float32 or operands[3].shape[0] <= _MOSTLY_WIDE * eta1.shape[0]:
            return operands
    return None


def f32_operand_bias(dtype, eta1, eta2, log_norm, nk, s1, s2, ref):
    """First-order change of :func:`em_stats`' float32 log-likelihood from its rounded operands.

    The float32 path takes row ``i``'s log-densities from ``u_i @ W32``,
    ``u_i = [z_i, z_i**2, 1]`` and ``W32`` the products matrix ``W`` rounded
    to float32 (:func:`_f32_operands`; the wide components keep float64
    columns): component ``k``'s is off by ``u_i . (W32 - W)[:, k]`` for
    every row alike. The derivative of the summed log-likelihood in a
    log-density is the row's weighted responsibility, so the sum is off by
    ``sum_k S_k . (W32 - W)[:, k]`` to first order, ``S_k = sum_i w_i r_ik
    u_i`` (from ``nk, s1, s2`` about ``ref``, the pass's statistics). The
    rest, the roundings of ``u`` and of the products, has no common sign
    over the rows. 0.0 where :func:`em_stats` takes the float64 path.
    """
    operands = _f32_path(dtype, True, eta1, eta2, log_norm)
    if operands is None:
        return 0.0
    W, W32, _, wide = operands
    with np.errstate(invalid="ignore"):  # -inf - -inf: a zero weight's log_norm
        error = W32.astype(np.float64) - W
    error[:, wide] = 0.0
    error[~np.isfinite(error)] = 0.0
    counts = nk[:, np.newaxis]
    moments = np.hstack([s1 + counts * ref, s2 + ref * (2.0 * s1 + counts * ref), counts])
    return float(np.sum(moments.T * error))


def _f32_operands(eta1, eta2, log_norm):
    """``W`` in float64, in float32, and the float64 columns of the wide components.

    A component is wide when its float32 log-densities would be off by more
    than about ``eps32 * _MAX_MAGNITUDE_F32`` near its mean (see
    ``_MAX_MAGNITUDE_F32``) or its parameters do not fit in float32. A
    zero-weight component (``log_norm`` -inf) gives -inf in either.
    """
    W, W32, wide = _f32_operands_kernel(_f64(eta1), _f64(eta2), _f64(log_norm), _MAX_MAGNITUDE_F32)
    wide = np.flatnonzero(wide)
    return W, W32, np.ascontiguousarray(W[:, wide]), wide


# Compiled: called once per pass. No fast-math: W32 must be W rounded, and
# the magnitudes are compared with a limit.
@_jit(fastmath=False, error_model="numpy")
def _f32_operands_kernel(eta1, eta2, log_norm, max_magnitude):
    """``W`` (see :func:`_products_matrix`), ``W32`` with zero columns where wide, and ``wide``."""
    n_components, n_features = eta1.shape
    big = _BIG_F32
    W = np.empty((2 * n_features + 1, n_components))
    W32 = np.empty((2 * n_features + 1, n_components), dtype=np.float32)
    wide = np.empty(n_components, dtype=np.bool_)
    for k in range(n_components):
        magnitude = 0.0
        fits = True
        for d in range(n_features):
            a, b = eta1[k, d], eta2[k, d]
            W[d, k] = a
            W[n_features + d, k] = b
            fits &= abs(a) <= big and abs(b) <= big
            var = -0.5 / b
            mean = a * var
            magnitude += abs(a * mean) - b * (mean * mean + var)
        c = log_norm[k]
        W[2 * n_features, k] = c
        finite = math.isfinite(c)
        magnitude += abs(c) if finite else 0.0
        wide[k] = not (magnitude <= max_magnitude) or not fits or (abs(c) > big and finite)
        for i in range(2 * n_features + 1):
            W32[i, k] = 0.0 if wide[k] else np.float32(W[i, k])
    return W, W32, wide


def _weight_scale(sample_weight):
    """Return a power of two that brings the largest sample weight to [1/2, 1).

    The float32 responsibilities are scaled by it, so that no sample weight
    overflows float32 and tiny ones do not all underflow; the statistics
    are scaled back in float64. Weights all zero (a Dask block can have
    them) or none give 1 (``frexp(0.0)`` has the exponent 0).
    """
    if not sample_weight.shape[0]:
        return 1.0  # unit weights (what the formula below gives for none)
    largest = float(np.max(sample_weight, initial=0.0))
    return math.ldexp(1.0, min(-math.frexp(largest)[1], 1000))


def _f32_tiers(ref, precision, float64_moments=True):
    """Return the float32 path's ``exact`` and ``precise`` components (``ref**2 / var``).

    Summed about ``ref`` term by term above ``_MAX_CANCELLATION`` (as in
    float64); moments from a float64 product above ``_MAX_CANCELLATION_F32``
    if ``float64_moments``, else none (``precise`` all False).
    """
    cancellation = np.max(ref**2 * precision, axis=1)
    exact = cancellation > _MAX_CANCELLATION
    if not float64_moments:
        return exact, np.zeros_like(exact)
    return exact, (cancellation > _MAX_CANCELLATION_F32) & ~exact


def _em_stats_f32(
    X, sample_weight, shift, scale, operands, centred, ref, n_blocks, parallel, beta
):  # fmt: skip
    """:func:`em_stats` for float32 ``X`` (and float64 ``X`` with ``float32``).

    ``operands`` are the parameters' :func:`_f32_operands`.

    The log-densities are a float32 product (float64 for the wide components
    of :func:`_f32_operands`), the soft-max is float32, each dense chunk's
    statistics are a float32 product added to float64 sums, and the
    log-likelihood is summed in float64. A component with ``ref**2 / var``
    above ``_MAX_CANCELLATION_F32`` in some feature takes its moments from a
    float64 product (``z`` from ``X``; float32 ``X`` only, see
    :func:`_float64_moments`), and above ``_MAX_CANCELLATION`` is
    summed about ``ref`` term by term, as in float64. Any chunk with a row
    whose float32 log-densities are not finite is redone in float64. On the
    benchmarks' data the results are within a few float32 ulps of the
    float64 path's (doc/performance.rst, "float32"); a moved moment keeps
    ``log10(_MAX_CANCELLATION_F32)`` fewer digits.
    """
    W, W32, W_wide, wide = operands
    ref = _f64(ref)
    n_features = ref.shape[1]
    precision = -2.0 * W[n_features : 2 * n_features].T  # W holds eta2 in float64
    exact, precise = _f32_tiers(ref, precision, _float64_moments(X))
    weight_scale = _weight_scale(sample_weight)
    parallel = use_threads(parallel, X.size * W.shape[1])
    with single_threaded_blas():
        kernel = _em_stats_f32_kernel.runner(parallel)
        per_block = kernel(
            X, sample_weight, weight_scale, _f64(shift), _f64(scale), W, W32, W_wide, wide,
            centred, ref, exact, precise, n_blocks, beta,
        )  # fmt: skip
    loglik, nk, s1, s2 = _moved_to_ref(per_block, ref, exact)
    if weight_scale == 1.0:  # dividing by one changes no bit: three numpy calls saved
        return loglik, nk, s1, s2
    return loglik, nk / weight_scale, s1 / weight_scale, s2 / weight_scale


@_jit()
def _chunk_outputs(lp, ev, top, total, best, start, stop, out_log_prob, labels, resp):
    """Write a chunk's log-densities, labels and responsibilities (see log_prob)."""
    n_components = lp.shape[0]
    for k in range(n_components - 1, -1, -1):  # first component of largest density
        for r in range(_CHUNK):
            best[r] = k if lp[k, r] == top[r] else best[r]
    for r in range(stop - start):
        i = start + r
        out_log_prob[i] = np.float64(top[r]) + math.log(np.float64(total[r]))
        labels[i] = best[r]
        if resp.shape[0] > 0:
            # Divided by their float64 sum, not the float32 total: rows sum to
            # one to float64's rounding, as scikit-learn's do.
            row_total = 0.0
            for k in range(n_components):
                row_total += np.float64(ev[k, r])
            for k in range(n_components):
                resp[i, k] = np.float64(ev[k, r]) / row_total


def _log_prob_f32_impl(
    X, shift, scale, W, W32, W_wide, wide, centred, out_log_prob, labels, resp, n_groups, first,
    last,
):  # fmt: skip
    n_samples, n_features = X.shape
    n_components = W.shape[1]
    n_chunks = (n_samples + _CHUNK - 1) // _CHUNK
    for g in range(first, last):
        scratch = _chunk_scratch_f32(n_features, n_components, wide.shape[0], np.int64(_CHUNK))
        _, _, lp, ev, top, total, _, _, _ = scratch
        scratch64 = _chunk_scratch(n_features, n_components, np.int64(_CHUNK))
        _, _, lp64, ev64, top64, total64, _ = scratch64
        best = np.empty(_CHUNK, dtype=np.int64)
        no_tally = np.empty(0, dtype=np.int32)
        for chunk in range(g * n_chunks // n_groups, (g + 1) * n_chunks // n_groups):
            start = chunk * _CHUNK
            stop = min(start + _CHUNK, n_samples)
            if _chunk_log_density_f32(
                X, start, stop, shift, scale, W32, W_wide, wide, centred, scratch, 1.0,
                (no_tally, no_tally),
            ):  # fmt: skip
                _chunk_outputs(lp, ev, top, total, best, start, stop, out_log_prob, labels, resp)
            else:
                _chunk_log_density(X, start, stop, shift, scale, W, centred, scratch64, 1.0)
                _chunk_outputs(
                    lp64, ev64, top64, total64, best, start, stop, out_log_prob, labels, resp
                )


_log_prob_f32_kernel = _Blockwise(_log_prob_f32_impl)


# Missing values. NaN entries of X are missing: a row's density is that of its
# observed features, the product over them of the diagonal Gaussian's
# factors. With ``o`` the observed indicator of a row and ``z`` zero where it
# is missing, ``u = [z, z**2, o, 1]`` and
# ``W = [eta1.T; eta2.T; C.T; log_weight]``, ``C[k, d]`` the log-normaliser
# of feature d in component k, give every component's weighted marginal
# log-density in one product ``u @ W``, and ``ev @ u`` gives ``sum r z o``,
# ``sum r z**2 o`` and ``sum r o`` per feature: the statistics of EM with the
# labels as the only latent variables (exact for data missing at random). A
# row with every feature missing has ``u = [0, 0, 0, 1]``: the weights are its
# responsibilities and its log-density is 0. The kernels below are the
# complete-data kernels with this ``u``; data without NaN never reaches them.
# Each row's log-density is returned less ``sum_(d missing) log(scale_d)``,
# so that the caller's adding ``sum_d log(scale_d)`` (the log-Jacobian of the
# map, for complete rows) gives the density of the observed features in user
# units.


def has_missing(X):
    """Whether ``X`` (a float array) has a NaN entry: one vectorised pass, no copy."""
    return X.size > 0 and bool(np.isnan(np.min(X)))


@_jit()
def _fill_masked(X, start, stop, shift, scale, log_scale, u, jac):
    """``u[r] = [z, z**2, o, 1]`` of row ``start + r`` (``z = 0`` where missing).

    ``jac[r]`` receives the sum of ``log_scale`` over the row's missing
    features, in four interleaved partial sums (a fixed order; a single
    running sum would keep the loop from vectorising). Rows past ``stop``
    get ``[0, 0, 0, 1]`` and ``jac`` 0. ``z`` is computed in float64 and
    rounded to the dtype of ``u``.
    """
    n_features = X.shape[1]
    n_rows = stop - start
    m = n_features - n_features % 4
    for r in range(n_rows):
        x = X[start + r]
        z, z2 = u[r, :n_features], u[r, n_features : 2 * n_features]
        o = u[r, 2 * n_features : 3 * n_features]
        for j in range(n_features):
            v = x[j]
            seen = v == v
            t = (v - shift[j]) * scale[j]
            t = t if seen else 0.0
            z[j] = t
            z2[j] = t * t
            o[j] = seen
        s0 = 0.0
        s1 = 0.0
        s2 = 0.0
        s3 = 0.0
        for j in range(0, m, 4):
            s0 += log_scale[j] * (1.0 - o[j])
            s1 += log_scale[j + 1] * (1.0 - o[j + 1])
            s2 += log_scale[j + 2] * (1.0 - o[j + 2])
            s3 += log_scale[j + 3] * (1.0 - o[j + 3])
        for j in range(m, n_features):
            s0 += log_scale[j] * (1.0 - o[j])
        jac[r] = (s0 + s1) + (s2 + s3)
    u[n_rows:, : 3 * n_features] = 0.0
    jac[n_rows:] = 0.0


@_jit()
def _chunk_scratch_masked(n_features, n_components, rows):
    """:func:`_chunk_scratch` with ``u`` of width ``3 n_features + 1``, and ``jac``."""
    u = np.empty((rows, 3 * n_features + 1))
    u[:, 3 * n_features] = 1.0
    return (
        u,
        np.empty((rows, n_components)),
        np.empty((n_components, rows)),
        np.empty((n_components, rows)),
        np.empty(rows),
        np.empty(rows),
        np.empty(rows),
    )


@_jit()
def _chunk_log_density_masked(
    X, start, stop, shift, scale, log_scale, W, centred, scratch, beta
):  # fmt: skip
    """:func:`_chunk_log_density` over the observed entries (see :func:`_fill_masked`)."""
    u, lp_rows, lp, ev, top, total, jac = scratch
    _fill_masked(X, start, stop, shift, scale, log_scale, u, jac)
    np.dot(u, W, lp_rows)
    _centre_log_densities(u, stop - start, lp_rows, centred)
    _transpose(lp_rows, lp.shape[1], lp)
    _softmax_columns(lp, top, ev, total, beta)


@_jit()
def _chunk_scratch_masked_f32(n_features, n_components, n_wide, rows):
    """:func:`_chunk_scratch_f32` with ``u`` of width ``3 n_features + 1``, and ``jac``."""
    u = np.empty((rows, 3 * n_features + 1), dtype=np.float32)
    u[:, 3 * n_features] = 1.0
    u64 = np.empty((rows if n_wide else 0, 3 * n_features + 1))
    u64[:, 3 * n_features] = 1.0
    return (
        u,
        np.empty((rows, n_components), dtype=np.float32),
        np.empty((n_components, rows), dtype=np.float32),
        np.empty((n_components, rows), dtype=np.float32),
        np.empty(rows, dtype=np.float32),
        np.empty(rows, dtype=np.float32),
        np.empty(rows),
        u64,
        np.empty((rows, n_wide)),
    )


@_jit()
def _chunk_log_density_masked_f32(
    X, start, stop, shift, scale, log_scale, W32, W_wide, wide, centred, scratch, beta
):  # fmt: skip
    """:func:`_chunk_log_density_f32` over the observed entries; whether all rows are finite."""
    u, lp_rows, lp, ev, top, total, jac, u64, lp_wide = scratch
    n_rows = stop - start
    n_wide = wide.shape[0]
    _fill_masked(X, start, stop, shift, scale, log_scale, u, jac)
    np.dot(u, W32, lp_rows)
    if n_wide:
        _fill_masked(X, start, stop, shift, scale, log_scale, u64, jac)
        np.dot(u64, W_wide, lp_wide)
        _copy_wide(lp_wide, wide, n_rows, lp_rows)
        _centre_log_densities(u64, n_rows, lp_rows, centred)  # all wide
    _transpose(lp_rows, lp.shape[1], lp)
    no_tally = np.empty(0, dtype=np.int32)
    _softmax_columns_f32(lp, top, ev, total, beta, no_tally, no_tally)
    for r in range(n_rows):
        if not math.isfinite(total[r]):
            return False
    return True


@_jit()
def _chunk_loglik_masked(
    top, total, jac, sample_weight, weight_scale, start, n_rows, w_row, ll, beta
):  # fmt: skip
    """:func:`_chunk_loglik` with each row's ``jac`` subtracted."""
    weighted = sample_weight.shape[0] > 0
    for r in range(n_rows):
        w = sample_weight[start + r] if weighted else 1.0
        ll[0] += w * ((np.float64(top[r]) + math.log(np.float64(total[r]))) / beta - jac[r])
        w_row[r] = w * weight_scale


@_jit()
def _add_about_ref_masked(
    X, start, shift, scale, u, resp, ref, use, count, row_terms, row_last, s0, s0d, s1, s2
):  # fmt: skip
    """:func:`_add_about_ref` over the observed entries; ``s0d`` counts them per feature.

    ``z`` comes from a float64 ``u`` (``[z, z**2, o, 1]``), or for a float32
    ``u`` from ``X`` in float64 (as :func:`_add_about_ref_x`). Branch-free in
    the features (a missing entry adds zeros), so that the loops vectorise.
    """
    n_features = ref.shape[1]
    from_x = u.itemsize < 8  # float32 u
    for r in range(resp.shape[1]):
        if row_terms[r] == 0:
            continue
        x = X[start + r]
        z = u[r, :n_features]
        o = u[r, 2 * n_features : 3 * n_features]
        single = row_terms[r] == 1
        for k in range(row_last[r] if single else 0, row_last[r] + 1):
            rk = np.float64(resp[k, r])
            if rk == 0.0 or not use[k]:
                continue
            if count:
                s0[k] += rk
                for j in range(n_features):
                    s0d[k, j] += rk * np.float64(o[j])
            if from_x:
                for j in range(n_features):
                    v = x[j]
                    d = (v - shift[j]) * scale[j] - ref[k, j]
                    d = d if v == v else 0.0
                    t = rk * d
                    s1[k, j] += t
                    s2[k, j] += t * d
            else:
                for j in range(n_features):
                    d = (np.float64(z[j]) - ref[k, j]) * np.float64(o[j])
                    t = rk * d
                    s1[k, j] += t
                    s2[k, j] += t * d


@_jit()
def _chunk_stats_masked(
    X, start, shift, scale, u, ev, total, n_rows, w_row, ref, exact, every, work,
    s0, s0d, s1, s2, m, precise,
):  # fmt: skip
    """:func:`_chunk_stats` for ``u = [z, z**2, o, 1]``, ``s0d`` counting observed entries.

    A dense chunk's product gives ``m[k] = [sum r z, sum r z**2, sum r o, sum r]``.
    With float32 ``ev`` the components ``precise`` marks take theirs from a
    float64 product, as in :func:`_chunk_stats` (``precise`` as there, with
    ``jac`` scratch and ``log_scale`` for :func:`_fill_masked`).
    """
    _, moments, row_terms, row_last = work
    n_components = s1.shape[0]
    width = moments.shape[1]
    if _weighed_chunk_is_dense(ev, total, n_rows, w_row, work):
        np.dot(ev, u, moments)
        in_float32 = ev.itemsize == 4
        for k in range(n_components):
            if in_float32 and precise[0][k]:
                continue
            for j in range(width):
                m[k, j] += moments[k, j]
        if in_float32 and precise[1].shape[0]:
            jac, log_scale = precise[5], precise[6]
            _fill_masked(X, start, start + n_rows, shift, scale, log_scale, precise[2], jac)
            _add_product_moments(ev, precise, m)
        if exact.any():
            _add_about_ref_masked(
                X, start, shift, scale, u, ev, ref, exact, _NO, row_terms, row_last,
                s0, s0d, s1, s2,
            )  # fmt: skip
    else:
        _add_about_ref_masked(
            X, start, shift, scale, u, ev, ref, every, _YES, row_terms, row_last,
            s0, s0d, s1, s2,
        )  # fmt: skip


def _em_stats_masked_impl(
    X, sample_weight, shift, scale, log_scale, W, centred, ref, exact, n_blocks, beta, first,
    last,
):  # fmt: skip
    n_samples, n_features = X.shape
    n_components = W.shape[1]
    every = np.empty(n_components, dtype=np.bool_)
    every[:] = True
    block = (n_samples + n_blocks - 1) // n_blocks
    ll = np.empty((n_blocks, 1))
    s0 = np.empty((n_blocks, n_components))
    s0d = np.empty((n_blocks, n_components, n_features))
    s1 = np.empty((n_blocks, n_components, n_features))
    s2 = np.empty((n_blocks, n_components, n_features))
    m = np.empty((n_blocks, n_components, 3 * n_features + 1))
    for b in range(first, last):
        ll[b] = 0.0
        s0[b] = 0.0
        s0d[b] = 0.0
        s1[b] = 0.0
        s2[b] = 0.0
        m[b] = 0.0
        w_row = np.empty(_CHUNK)
        row_terms = np.empty(_CHUNK, dtype=np.int32)
        row_last = np.empty(_CHUNK, dtype=np.int32)
        scratch = _chunk_scratch_masked(n_features, n_components, np.int64(_CHUNK))
        u, _, _, ev, top, total, jac = scratch
        work = (
            np.empty(_CHUNK),
            np.empty((n_components, 3 * n_features + 1)),
            row_terms,
            row_last,
        )
        # float64 products: no component is treated apart.
        precise_work = (
            np.zeros(n_components, dtype=np.bool_),
            np.empty(0, dtype=np.int64),
            u,
            np.empty((0, _CHUNK)),
            np.empty((0, 3 * n_features + 1)),
            jac,
            log_scale,
        )
        stop = min((b + 1) * block, n_samples)
        for start in range(b * block, stop, _CHUNK):
            n_rows = min(_CHUNK, stop - start)
            _chunk_log_density_masked(
                X, start, start + n_rows, shift, scale, log_scale, W, centred, scratch, beta
            )
            _chunk_loglik_masked(
                top, total, jac, sample_weight, 1.0, start, n_rows, w_row, ll[b], beta
            )
            _chunk_stats_masked(
                X, start, shift, scale, u, ev, total, n_rows, w_row, ref, exact, every, work,
                s0[b], s0d[b], s1[b], s2[b], m[b], precise_work,
            )  # fmt: skip
    return ll[:, 0], s0, s0d, s1, s2, m


_em_stats_masked_kernel = _Blockwise(_em_stats_masked_impl)


def _em_stats_masked_f32_impl(
    X, sample_weight, weight_scale, shift, scale, log_scale, W, W32, W_wide, wide, centred, ref,
    exact, precise, n_blocks, beta, first, last,
):  # fmt: skip
    n_samples, n_features = X.shape
    n_components = W.shape[1]
    every = np.empty(n_components, dtype=np.bool_)
    every[:] = True
    precise_index = _flatnonzero(precise)
    block = (n_samples + n_blocks - 1) // n_blocks
    ll = np.empty((n_blocks, 1))
    s0 = np.empty((n_blocks, n_components))
    s0d = np.empty((n_blocks, n_components, n_features))
    s1 = np.empty((n_blocks, n_components, n_features))
    s2 = np.empty((n_blocks, n_components, n_features))
    m = np.empty((n_blocks, n_components, 3 * n_features + 1))
    for b in range(first, last):
        ll[b] = 0.0
        s0[b] = 0.0
        s0d[b] = 0.0
        s1[b] = 0.0
        s2[b] = 0.0
        m[b] = 0.0
        w_row = np.empty(_CHUNK_F32)
        row_terms = np.empty(_CHUNK_F32, dtype=np.int32)
        row_last = np.empty(_CHUNK_F32, dtype=np.int32)
        scratch = _chunk_scratch_masked_f32(
            n_features, n_components, wide.shape[0], np.int64(_CHUNK_F32)
        )
        u, _, _, ev, top, total, jac, _, _ = scratch
        work = (
            np.empty(_CHUNK_F32, dtype=np.float32),
            np.empty((n_components, 3 * n_features + 1), dtype=np.float32),
            row_terms,
            row_last,
        )
        # For chunks with a row outside float32's range, done in float64.
        scratch64 = _chunk_scratch_masked(n_features, n_components, np.int64(_CHUNK_F32))
        u64, _, _, ev64, top64, total64, jac64 = scratch64
        # Their moments in float64: u64 and jac64 are free in a float32 chunk.
        precise_work = (
            precise,
            precise_index,
            u64,
            np.empty((precise_index.shape[0], _CHUNK_F32)),
            np.empty((precise_index.shape[0], 3 * n_features + 1)),
            jac64,
            log_scale,
        )
        work64 = (
            np.empty(_CHUNK_F32),
            np.empty((n_components, 3 * n_features + 1)),
            row_terms,
            row_last,
        )
        stop = min((b + 1) * block, n_samples)
        for start in range(b * block, stop, _CHUNK_F32):
            n_rows = min(_CHUNK_F32, stop - start)
            if _chunk_log_density_masked_f32(
                X, start, start + n_rows, shift, scale, log_scale, W32, W_wide, wide, centred,
                scratch, beta,
            ):  # fmt: skip
                _chunk_loglik_masked(
                    top, total, jac, sample_weight, weight_scale, start, n_rows, w_row, ll[b],
                    beta,
                )  # fmt: skip
                _chunk_stats_masked(
                    X, start, shift, scale, u, ev, total, n_rows, w_row, ref, exact, every,
                    work, s0[b], s0d[b], s1[b], s2[b], m[b], precise_work,
                )  # fmt: skip
            else:
                _chunk_log_density_masked(
                    X, start, start + n_rows, shift, scale, log_scale, W, centred, scratch64, beta
                )
                _chunk_loglik_masked(
                    top64, total64, jac64, sample_weight, weight_scale, start, n_rows, w_row,
                    ll[b], beta,
                )  # fmt: skip
                _chunk_stats_masked(
                    X, start, shift, scale, u64, ev64, total64, n_rows, w_row, ref, exact,
                    every, work64, s0[b], s0d[b], s1[b], s2[b], m[b], precise_work,
                )  # fmt: skip
    return ll[:, 0], s0, s0d, s1, s2, m


_em_stats_masked_f32_kernel = _Blockwise(_em_stats_masked_f32_impl)


def _masked_products_matrix(eta1, eta2, feature_norm, log_weight):
    """``W = [eta1.T; eta2.T; C.T; log_weight]``: ``[z, z**2, o, 1] @ W`` (see above)."""
    return np.ascontiguousarray(
        np.vstack([eta1.T, eta2.T, feature_norm.T, log_weight]), dtype=np.float64
    )


def _f32_operands_masked(eta1, eta2, feature_norm, log_weight):
    """:func:`_f32_operands` for :func:`_masked_products_matrix`.

    The magnitude of a component's terms counts ``|C|`` feature by feature
    and ``|log_weight|``, in place of ``|log_norm|``.
    """
    W = _masked_products_matrix(eta1, eta2, feature_norm, log_weight)
    eta1 = np.asarray(eta1, dtype=np.float64)
    eta2 = np.asarray(eta2, dtype=np.float64)
    log_weight = np.asarray(log_weight, dtype=np.float64)
    var = -0.5 / eta2
    mean = eta1 * var
    with np.errstate(over="ignore", invalid="ignore"):
        magnitude = np.sum(
            np.abs(eta1 * mean) - eta2 * (mean**2 + var) + np.abs(feature_norm), axis=1
        )
        magnitude += np.where(np.isfinite(log_weight), np.abs(log_weight), 0.0)
        W32 = W.astype(np.float32)
    big = _BIG_F32
    wide = ~(magnitude <= _MAX_MAGNITUDE_F32) | ~np.all(np.abs(W[:-1]) <= big, axis=0)
    wide |= (np.abs(log_weight) > big) & np.isfinite(log_weight)
    wide = np.flatnonzero(wide)
    W32[:, wide] = 0.0
    return W, W32, np.ascontiguousarray(W[:, wide]), wide


def _moved_to_ref_masked(loglik, s0, s0d, s1, s2, m, ref, exact):
    """:func:`_moved_to_ref` with the per-feature weights ``m[:, 2D:3D]``."""
    n_features = s1.shape[1]
    nk = s0 + m[:, -1]
    nkd = s0d + m[:, 2 * n_features : 3 * n_features]
    moved = ~exact
    c, mm = ref[moved], m[moved]
    m1, m2 = mm[:, :n_features], mm[:, n_features : 2 * n_features]
    m0 = mm[:, 2 * n_features : 3 * n_features]
    s1[moved] += m1 - c * m0
    s2[moved] += m2 - c * (2.0 * m1 - c * m0)
    return loglik, nk, nkd, s1, s2


@keyboard_interrupts()
def em_stats_masked(
    X, sample_weight, shift, scale, eta1, eta2, feature_norm, log_weight, ref, n_blocks,
    parallel, beta=1.0, float32=False,
):  # fmt: skip
    """:func:`em_stats` for ``X`` with missing entries (NaN), marginalised exactly.

    Parameters
    ----------
    X, sample_weight, shift, scale, eta1, eta2, ref, n_blocks, parallel, beta, float32
        As in :func:`em_stats`; NaN entries of ``X`` are missing.
    feature_norm : ndarray of shape (n_components, n_features), float64
        ``C[k, d] = -(mean**2 / (2 var) + log(2 pi var) / 2)`` of feature
        ``d`` in component ``k``.
    log_weight : ndarray of shape (n_components,), float64
        Log-weight of each component.

    Returns
    -------
    loglik : float
        ``sum_i w_i (log p(z_i, observed) - sum_(d missing in i) log(scale_d))``:
        with ``sum_d log(scale_d)`` per unit weight added, the log-likelihood
        of the observed entries in user units.
    nk : ndarray of shape (n_components,)
        ``sum_i w_i r_ik`` over all rows.
    nkd : ndarray of shape (n_components, n_features)
        ``sum_i w_i r_ik o_id``: the weights of the rows observing each feature.
    s1, s2 : ndarray of shape (n_components, n_features)
        ``sum_i w_i r_ik o_id (z_id - ref_kd) ** p`` for ``p = 1, 2``.

    Notes
    -----
    Responsibilities come from the observed entries of each row. float32
    ``X`` (or any with ``float32``) follows the float32 path of
    :func:`em_stats`, with the same fallbacks to float64.
    """
    X = _read_only(X)
    ref = _f64(ref)
    scale = _f64(scale)
    log_scale = np.log(scale)
    precision = -2.0 * np.asarray(eta2, dtype=np.float64)
    centred = centred_components(eta1, eta2, log_weight)
    work = X.size * np.shape(eta2)[0]
    parallel = use_threads(parallel, work)
    with single_threaded_blas():
        if X.dtype == np.float32 or float32:
            W, W32, W_wide, wide = _f32_operands_masked(eta1, eta2, feature_norm, log_weight)
            exact, precise = _f32_tiers(ref, precision, _float64_moments(X))
            weight_scale = _weight_scale(sample_weight)
            kernel = _em_stats_masked_f32_kernel.runner(parallel)
            per_block = kernel(
                X, sample_weight, weight_scale, _f64(shift), scale, log_scale, W, W32, W_wide,
                wide, centred, ref, exact, precise, n_blocks, beta,
            )  # fmt: skip
        else:
            W = _masked_products_matrix(eta1, eta2, feature_norm, log_weight)
            exact = np.max(ref**2 * precision, axis=1) > _MAX_CANCELLATION
            weight_scale = 1.0
            kernel = _em_stats_masked_kernel.runner(parallel)
            per_block = kernel(
                X, sample_weight, _f64(shift), scale, log_scale, W, centred, ref, exact,
                n_blocks, beta,
            )  # fmt: skip
    loglik, nk, nkd, s1, s2 = _moved_to_ref_masked(*_sum_blocks(per_block), ref, exact)
    if weight_scale != 1.0:
        nk, nkd, s1, s2 = (a / weight_scale for a in (nk, nkd, s1, s2))
    return loglik, nk, nkd, s1, s2


def _label_stats_masked_impl(X, sample_weight, shift, scale, labels, ref, n_blocks, first, last):
    n_samples, n_features = X.shape
    n_components = ref.shape[0]
    weighted = sample_weight.shape[0] > 0
    labelled = labels.shape[0] > 0
    block = (n_samples + n_blocks - 1) // n_blocks
    nk = np.zeros((n_blocks, n_components))
    nkd = np.zeros((n_blocks, n_components, n_features))
    s1 = np.zeros((n_blocks, n_components, n_features))
    s2 = np.zeros((n_blocks, n_components, n_features))
    for b in range(first, last):
        for i in range(b * block, min((b + 1) * block, n_samples)):
            w = sample_weight[i] if weighted else 1.0
            k = labels[i] if labelled else 0
            nk[b, k] += w
            for j in range(n_features):
                v = X[i, j]
                if v == v:
                    dz = (v - shift[j]) * scale[j] - ref[k, j]
                    t = w * dz
                    nkd[b, k, j] += w
                    s1[b, k, j] += t
                    s2[b, k, j] += t * dz
    return nk, nkd, s1, s2


_label_stats_masked_kernel = _Blockwise(_label_stats_masked_impl)


@keyboard_interrupts()
def label_stats_masked(X, sample_weight, shift, scale, labels, ref, n_blocks, parallel):
    """:func:`label_stats` over the observed entries of ``X`` (NaN entries are missing).

    Returns
    -------
    nk : ndarray of shape (n_components,)
        Weight of each component's rows.
    nkd : ndarray of shape (n_components, n_features)
        Weight of its rows observing each feature.
    s1, s2 : ndarray of shape (n_components, n_features)
        As in :func:`label_stats`, over the observed entries.
    """
    X = _read_only(X)
    kernel = _label_stats_masked_kernel.runner(use_threads(parallel, X.size))
    per_block = kernel(X, sample_weight, shift, scale, labels, ref, n_blocks)
    return _sum_blocks(per_block)


def _log_prob_masked_impl(
    X, shift, scale, log_scale, W, centred, out_log_prob, labels, resp, n_groups, first, last
):  # fmt: skip
    n_samples, n_features = X.shape
    n_components = W.shape[1]
    n_chunks = (n_samples + _CHUNK - 1) // _CHUNK
    for g in range(first, last):
        scratch = _chunk_scratch_masked(n_features, n_components, np.int64(_CHUNK))
        _, _, lp, ev, top, total, jac = scratch
        best = np.empty(_CHUNK, dtype=np.int64)
        for chunk in range(g * n_chunks // n_groups, (g + 1) * n_chunks // n_groups):
            start = chunk * _CHUNK
            stop = min(start + _CHUNK, n_samples)
            _chunk_log_density_masked(
                X, start, stop, shift, scale, log_scale, W, centred, scratch, 1.0
            )
            _chunk_outputs(lp, ev, top, total, best, start, stop, out_log_prob, labels, resp)
            for r in range(stop - start):
                out_log_prob[start + r] -= jac[r]


_log_prob_masked_kernel = _Blockwise(_log_prob_masked_impl)


def _log_prob_masked_f32_impl(
    X, shift, scale, log_scale, W, W32, W_wide, wide, centred, out_log_prob, labels, resp,
    n_groups, first, last,
):  # fmt: skip
    n_samples, n_features = X.shape
    n_components = W.shape[1]
    n_chunks = (n_samples + _CHUNK - 1) // _CHUNK
    for g in range(first, last):
        scratch = _chunk_scratch_masked_f32(
            n_features, n_components, wide.shape[0], np.int64(_CHUNK)
        )
        _, _, lp, ev, top, total, jac, _, _ = scratch
        scratch64 = _chunk_scratch_masked(n_features, n_components, np.int64(_CHUNK))
        _, _, lp64, ev64, top64, total64, jac64 = scratch64
        best = np.empty(_CHUNK, dtype=np.int64)
        for chunk in range(g * n_chunks // n_groups, (g + 1) * n_chunks // n_groups):
            start = chunk * _CHUNK
            stop = min(start + _CHUNK, n_samples)
            if _chunk_log_density_masked_f32(
                X, start, stop, shift, scale, log_scale, W32, W_wide, wide, centred, scratch, 1.0
            ):
                _chunk_outputs(lp, ev, top, total, best, start, stop, out_log_prob, labels, resp)
                for r in range(stop - start):
                    out_log_prob[start + r] -= jac[r]
            else:
                _chunk_log_density_masked(
                    X, start, stop, shift, scale, log_scale, W, centred, scratch64, 1.0
                )
                _chunk_outputs(
                    lp64, ev64, top64, total64, best, start, stop, out_log_prob, labels, resp
                )
                for r in range(stop - start):
                    out_log_prob[start + r] -= jac64[r]


_log_prob_masked_f32_kernel = _Blockwise(_log_prob_masked_f32_impl)


@keyboard_interrupts()
def log_prob_masked(
    X, shift, scale, eta1, eta2, feature_norm, log_weight, out_log_prob, labels, resp, parallel
):  # fmt: skip
    """:func:`log_prob` for ``X`` with missing entries (NaN), marginalised exactly.

    Parameters are those of :func:`log_prob` and :func:`em_stats_masked`.
    ``out_log_prob`` receives ``log p(z_i, observed) - sum_(d missing in i)
    log(scale_d)`` (see :func:`em_stats_masked`); labels and
    responsibilities come from the observed entries (the weights for a row
    with none).
    """
    float32 = X.dtype == np.float32
    prepared = log_prob_masked_operands(eta1, eta2, feature_norm, log_weight, float32)
    log_prob_masked_prepared(X, shift, scale, prepared, out_log_prob, labels, resp, parallel)


@keyboard_interrupts()
def log_prob_masked_operands(eta1, eta2, feature_norm, log_weight, float32):
    """:func:`log_prob_operands` of :func:`log_prob_masked` (for the ``_prepared`` call)."""
    if float32:
        kernel = _log_prob_masked_f32_kernel
        operands = _f32_operands_masked(eta1, eta2, feature_norm, log_weight)
    else:
        kernel = _log_prob_masked_kernel
        operands = (_masked_products_matrix(eta1, eta2, feature_norm, log_weight),)
    centred = centred_components(eta1, eta2, log_weight)
    return kernel, operands, centred, np.shape(eta2)[0]


@keyboard_interrupts()
def log_prob_masked_prepared(X, shift, scale, prepared, out_log_prob, labels, resp, parallel):
    """:func:`log_prob_masked` with its model's part made (:func:`log_prob_masked_operands`)."""
    kernel, operands, centred, n_components = prepared
    X = _read_only(X)
    scale = _f64(scale)
    log_scale = np.log(scale)
    parallel = use_threads(parallel, X.size * n_components)
    with blas_hold(log_prob_work(X, n_components)):
        kernel.runner(parallel)(
            X, _f64(shift), scale, log_scale, *operands, centred, out_log_prob, labels, resp,
            _log_prob_groups(X.shape[0]),
        )  # fmt: skip
