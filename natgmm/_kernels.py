"""Numba kernels for diagonal Gaussian mixtures in natural parameters.

Every kernel is a pure function of arrays and scalars. Data rows ``x`` are
mapped on the fly to internal coordinates ``z = (x - shift) * scale`` (the
estimator standardises each feature this way), so no copy of ``X`` is made and
the expanded quadratic form below is evaluated on values of order one.

The log-density of component ``k`` is evaluated from its natural parameters,

    log N(z | k) = sum_d z_d * (eta1[k, d] + eta2[k, d] * z_d) + const[k],

with ``eta1 = mu / var`` and ``eta2 = -1 / (2 var)``; ``log_norm`` below holds
``log pi_k + const[k]``.

Rows are split into ``n_blocks`` contiguous blocks whose number is chosen by
the caller from the data shape only. Each block is processed serially in row
order into its own accumulators and the blocks are summed in a fixed order
afterwards, so results are bitwise identical for any number of threads.

The measured alternatives (BLAS products plus a soft-max pass, glibc's exp)
are in doc/performance.rst, "Kernel design".
"""

import math
import types

import numpy as np
from numba import njit, prange

# Explicit fast-math flags: "reassoc" and "contract" let LLVM vectorise the
# reductions over features and fuse multiply-adds. "nnan" and "ninf" are left
# out on purpose: log-sum-exp relies on -inf behaving as -inf (a component of
# zero weight has log-weight -inf).
FASTMATH = {"nsz", "arcp", "contract", "reassoc"}

# exp(t) is subnormal or zero in float64 for t below this value. A term that
# small is below the resolution of a sum holding exp(0) = 1, so it is dropped
# without calling exp, whose subnormal path is several times slower.
_EXP_CUTOFF = -708.3

# Rows evaluated together: each load of a component's parameters feeds this
# many rows' multiply-adds.
_TILE = 4


def _jit(parallel, fastmath=FASTMATH, **options):
    """Return a decorator compiling with the project's flags and disk cache.

    Caching falls back to in-memory compilation where numba finds no writable
    cache location (for example a read-only install with no writable home).
    numba keys its cache on this file's modification time and size, so the
    flags, being constants of this file, cannot be served stale. Kernels
    release the GIL, so that threads (a Dask worker's, a user's) run them
    side by side.
    """
    flags = dict(parallel=parallel, fastmath=fastmath, nogil=True, **options)

    def decorate(func):
        try:
            return njit(cache=True, **flags)(func)
        except RuntimeError:  # "cannot cache function ...: no locator available"
            return njit(cache=False, **flags)(func)

    return decorate


def _serial_and_parallel(func):
    """Compile one kernel body twice: serially and over numba's thread pool.

    Each copy gets its own qualified name, because numba's disk cache is keyed
    by it and would otherwise hand one variant's machine code to the other.
    """
    variants = []
    for parallel in (False, True):
        copy = types.FunctionType(func.__code__, func.__globals__, func.__name__)
        copy.__qualname__ = f"{func.__qualname__}_{'parallel' if parallel else 'serial'}"
        variants.append(_jit(parallel)(copy))
    return tuple(variants)


@_jit(False, inline="always")
def _tile_log_density(X, start, stop, shift, scale, eta1, eta2, log_norm, z, lp):
    """Weighted log-densities of rows ``start .. start + 3`` into ``lp``.

    Rows past ``stop`` repeat the last row, so a partial tile needs no
    special case; the caller ignores their results. ``z`` receives the rows
    in internal coordinates.
    """
    n_features = X.shape[1]
    for r in range(_TILE):
        i = min(start + r, stop - 1)
        for j in range(n_features):
            z[r, j] = (X[i, j] - shift[j]) * scale[j]
    for k in range(eta1.shape[0]):
        a0 = a1 = a2 = a3 = 0.0
        for j in range(n_features):
            e1 = eta1[k, j]
            e2 = eta2[k, j]
            z0 = z[0, j]
            z1 = z[1, j]
            z2 = z[2, j]
            z3 = z[3, j]
            a0 += z0 * (e1 + e2 * z0)
            a1 += z1 * (e1 + e2 * z1)
            a2 += z2 * (e1 + e2 * z2)
            a3 += z3 * (e1 + e2 * z3)
        c = log_norm[k]
        lp[0, k] = a0 + c
        lp[1, k] = a1 + c
        lp[2, k] = a2 + c
        lp[3, k] = a3 + c


# exp(x) by range reduction, x = n ln2 + r with |r| <= ln2 / 2, and the
# degree-13 Taylor polynomial of exp(r) (truncation below 4e-18). ln2 is split
# fdlibm's way so that n * _LN2_HI is exact for |n| < 2^11. Measured against
# np.exp on a million points of [_EXP_CUTOFF, 0]: at most 1 ulp apart
# (tests/test_kernels.py allows 3).
_LOG2E = 1.4426950408889634
_LN2_HI = 6.93147180369123816490e-01
_LN2_LO = 1.90821492927058770002e-10
_INV_FACT = tuple(1.0 / math.factorial(i) for i in range(14))


# No "reassoc" here: it would let LLVM merge the two halves of ln2 back into
# one rounded constant. The loops have no reductions, so they vectorise
# without it; glibc's scalar exp does not.
@_jit(False, fastmath={"nsz", "contract"})
def _exp_shifted(lp_row, top, ev, bits):
    """``ev[k] = exp(lp_row[k] - top)``, exactly zero below ``_EXP_CUTOFF``.

    ``bits`` is int64 scratch of the same length, viewed as float64 to build
    ``2 ** n`` from its exponent field.
    """
    c = _INV_FACT
    for k in range(lp_row.shape[0]):
        x = max(lp_row[k] - top, _EXP_CUTOFF)
        n = -np.int64(0.5 - x * _LOG2E)  # round(x / ln2), since x <= 0
        r = (x - n * _LN2_HI) - n * _LN2_LO
        p = c[13]
        p = p * r + c[12]
        p = p * r + c[11]
        p = p * r + c[10]
        p = p * r + c[9]
        p = p * r + c[8]
        p = p * r + c[7]
        p = p * r + c[6]
        p = p * r + c[5]
        p = p * r + c[4]
        p = p * r + c[3]
        p = p * r + c[2]
        p = p * r + c[1]
        ev[k] = p * r + c[0]
        bits[k] = (n + 1023) << 52
    scale = bits.view(np.float64)
    for k in range(lp_row.shape[0]):
        ev[k] = ev[k] * scale[k] if lp_row[k] - top > _EXP_CUTOFF else 0.0


@_jit(False, inline="always")
def _softmax_terms(lp_row, ev, bits):
    """Log-sum-exp of ``lp_row`` and its terms.

    Returns ``(top, total)``: the maximum and ``sum exp(lp - top)``;
    ``ev`` receives ``exp(lp - top)``, zero for terms below the cutoff. All
    terms go through one vectorised loop: cheaper than compacting the
    non-negligible ones for glibc's scalar exp, whatever the overlap.
    """
    top = -np.inf
    for k in range(lp_row.shape[0]):
        top = max(top, lp_row[k])
    _exp_shifted(lp_row, top, ev, bits)
    total = 0.0
    for k in range(lp_row.shape[0]):
        total += ev[k]
    return top, total


def _em_stats_impl(X, sample_weight, shift, scale, eta1, eta2, log_norm, ref, n_blocks, beta):
    n_samples, n_features = X.shape
    n_components = eta1.shape[0]
    weighted = sample_weight.shape[0] > 0
    block = (n_samples + n_blocks - 1) // n_blocks
    ll = np.zeros(n_blocks)
    nk = np.zeros((n_blocks, n_components))
    s1 = np.zeros((n_blocks, n_components, n_features))
    s2 = np.zeros((n_blocks, n_components, n_features))
    for b in prange(n_blocks):
        z = np.empty((_TILE, n_features), dtype=eta1.dtype)
        lp = np.empty((_TILE, n_components))
        ev = np.empty(n_components)
        bits = np.empty(n_components, dtype=np.int64)
        resp = np.empty((_TILE, n_components))
        stop = min((b + 1) * block, n_samples)
        for start in range(b * block, stop, _TILE):
            _tile_log_density(X, start, stop, shift, scale, eta1, eta2, log_norm, z, lp)
            resp[:] = 0.0  # rows past ``stop`` add nothing
            for r in range(min(_TILE, stop - start)):
                w = sample_weight[start + r] if weighted else 1.0
                top, total = _softmax_terms(lp[r], ev, bits)
                ll[b] += w * (top + math.log(total))
                if beta != 1.0:  # tempered responsibilities, exp(beta * lp)
                    for k in range(n_components):
                        lp[r, k] *= beta
                    top, total = _softmax_terms(lp[r], ev, bits)
                w_over_total = w / total
                for k in range(n_components):
                    resp[r, k] = ev[k] * w_over_total
            # The tile's four rows in one sweep: s1 and s2 are loaded and
            # stored once per tile rather than once per row.
            for k in range(n_components):
                r0 = resp[0, k]
                r1 = resp[1, k]
                r2 = resp[2, k]
                r3 = resp[3, k]
                if r0 == 0.0 and r1 == 0.0 and r2 == 0.0 and r3 == 0.0:
                    continue  # every term below the cutoff
                nk[b, k] += (r0 + r1) + (r2 + r3)
                for j in range(n_features):
                    c = ref[k, j]
                    d0 = z[0, j] - c
                    d1 = z[1, j] - c
                    d2 = z[2, j] - c
                    d3 = z[3, j] - c
                    t0 = r0 * d0
                    t1 = r1 * d1
                    t2 = r2 * d2
                    t3 = r3 * d3
                    s1[b, k, j] += (t0 + t1) + (t2 + t3)
                    s2[b, k, j] += (t0 * d0 + t1 * d1) + (t2 * d2 + t3 * d3)
    # Fixed-order reduction over blocks: independent of the thread count.
    for b in range(1, n_blocks):
        ll[0] += ll[b]
        nk[0] += nk[b]
        s1[0] += s1[b]
        s2[0] += s2[b]
    return ll[0], nk[0], s1[0], s2[0]


_em_stats_serial, _em_stats_parallel = _serial_and_parallel(_em_stats_impl)


def em_stats(
    X, sample_weight, shift, scale, eta1, eta2, log_norm, ref, n_blocks, parallel, beta=1.0
):
    """Fused E-step: weighted log-likelihood and sufficient statistics.

    Parameters
    ----------
    X : ndarray of shape (n_samples, n_features), C-contiguous float32 or float64
        Data in user units (not copied, may be a read-only memmap).
    sample_weight : ndarray of shape (n_samples,) or (0,), float64
        Per-sample weights; an empty array means unit weights.
    shift, scale : ndarray of shape (n_features,), dtype of ``eta1``
        Map to internal coordinates ``z = (x - shift) * scale``.
    eta1, eta2 : ndarray of shape (n_components, n_features)
        Natural parameters in internal coordinates (``eta2 < 0``).
    log_norm : ndarray of shape (n_components,), float64
        ``log(weight_k)`` plus the log-normaliser of component ``k``.
    ref : ndarray of shape (n_components, n_features), float64
        Reference point of each component (its current mean): statistics are
        accumulated about it, which keeps the scatter free of the
        ``E[z^2] - mean^2`` cancellation.
    n_blocks : int
        Number of row blocks; must depend on the data shape only.
    parallel : bool
        Run the blocks on numba's thread pool.
    beta : float, default=1.0
        Inverse temperature of the responsibilities, ``r_ik`` proportional to
        ``(weight_k N(z_i | k)) ** beta`` (deterministic-annealing EM); the
        log-likelihood is always the untempered one.

    Returns
    -------
    loglik : float
        ``sum_i w_i log p(z_i)`` in internal coordinates.
    nk : ndarray of shape (n_components,)
        ``sum_i w_i r_ik``.
    s1 : ndarray of shape (n_components, n_features)
        ``sum_i w_i r_ik (z_i - ref_k)``.
    s2 : ndarray of shape (n_components, n_features)
        ``sum_i w_i r_ik (z_i - ref_k) ** 2``.
    """
    kernel = _em_stats_parallel if parallel else _em_stats_serial
    return kernel(X, sample_weight, shift, scale, eta1, eta2, log_norm, ref, n_blocks, beta)


def _label_stats_impl(X, sample_weight, shift, scale, labels, ref, n_blocks):
    n_samples, n_features = X.shape
    n_components = ref.shape[0]
    weighted = sample_weight.shape[0] > 0
    labelled = labels.shape[0] > 0
    block = (n_samples + n_blocks - 1) // n_blocks
    nk = np.zeros((n_blocks, n_components))
    s1 = np.zeros((n_blocks, n_components, n_features))
    s2 = np.zeros((n_blocks, n_components, n_features))
    for b in prange(n_blocks):
        for i in range(b * block, min((b + 1) * block, n_samples)):
            w = sample_weight[i] if weighted else 1.0
            k = labels[i] if labelled else 0
            nk[b, k] += w
            for j in range(n_features):
                dz = (X[i, j] - shift[j]) * scale[j] - ref[k, j]
                t = w * dz
                s1[b, k, j] += t
                s2[b, k, j] += t * dz
    for b in range(1, n_blocks):
        nk[0] += nk[b]
        s1[0] += s1[b]
        s2[0] += s2[b]
    return nk[0], s1[0], s2[0]


_label_stats_serial, _label_stats_parallel = _serial_and_parallel(_label_stats_impl)


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
    kernel = _label_stats_parallel if parallel else _label_stats_serial
    return kernel(X, sample_weight, shift, scale, labels, ref, n_blocks)


def _log_prob_impl(X, shift, scale, eta1, eta2, log_norm, out_log_prob, labels, resp):
    n_samples, n_features = X.shape
    n_components = eta1.shape[0]
    want_resp = resp.shape[0] > 0
    for tile in prange((n_samples + _TILE - 1) // _TILE):
        z = np.empty((_TILE, n_features), dtype=eta1.dtype)
        lp = np.empty((_TILE, n_components))
        ev = np.empty(n_components)
        bits = np.empty(n_components, dtype=np.int64)
        start = tile * _TILE
        stop = min(start + _TILE, n_samples)
        _tile_log_density(X, start, stop, shift, scale, eta1, eta2, log_norm, z, lp)
        for r in range(stop - start):
            i = start + r
            top, total = _softmax_terms(lp[r], ev, bits)
            out_log_prob[i] = top + math.log(total)
            k = 0
            while lp[r, k] != top:  # first component of largest density
                k += 1
            labels[i] = k
            if want_resp:
                for k in range(n_components):
                    resp[i, k] = ev[k] / total


_log_prob_serial, _log_prob_parallel = _serial_and_parallel(_log_prob_impl)


def log_prob(X, shift, scale, eta1, eta2, log_norm, out_log_prob, labels, resp, parallel):
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
    kernel = _log_prob_parallel if parallel else _log_prob_serial
    kernel(X, shift, scale, eta1, eta2, log_norm, out_log_prob, labels, resp)
