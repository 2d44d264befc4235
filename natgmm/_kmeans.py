"""Numba k-means: k-means++ seeding and Lloyd's iterations with Yinyang's bounds.

The same algorithm as scikit-learn's ``KMeans(n_init=1)`` (greedy k-means++
seeding drawing the same random numbers, Lloyd's iterations, the same
stopping rule and relocation of empty clusters) in the kernels' style: rows
are mapped on the fly to ``z = (x - shift) * scale``, no copy of ``X`` (but
a float32 one of at most 64 MiB, below) and no ``n_samples x n_clusters``
array is made, and every reduction runs over
fixed blocks of rows in a fixed order, so results do not depend on the
number of threads. Arithmetic is float64 whatever the dtype of ``X``, but
for Lloyd's distance products, whose rounding is bounded (below).

Seeding evaluates the candidates' distances as scikit-learn does,
``-2 z.c + |c|**2 + |z|**2``, row by row: ``z.c`` is ``(x - shift).(scale
* c)`` in explicit SIMD (:func:`_shifted_dots`, one fixed order), which
reads each row once for all candidates, where a BLAS product of a chunk of
rows by the few candidates ran far below its peak. The distances are kept
(``n_samples x n_trials``) so that taking the best candidate reads no row
again. Its cumulative potential is never stored: a draw finds its block
from the blocks' totals and its row by summing within the block.

Lloyd's iterations keep, per row, an upper bound on the distance to its
centre and, per group of about ten centres (Yinyang k-means), a lower bound
on the distance to the group's other centres, both moved by the centres'
shifts each iteration. A row whose upper bound is below every lower bound
(or below half the distance from its centre to the nearest other one) keeps
its label with at most one distance evaluated. The other rows are gathered
into chunks whose distances to all centres are one BLAS product in the
expanded form, in float32 unless that could over- or underflow
(``_product_dtype``); its rounding is bounded (``_assign_rows``), and the centres
it leaves within that bound of the nearest are compared by exact sums of
squared differences, first index winning ties as in Lloyd's. The bounds keep
a margin far above their own rounding, so a skipped evaluation never
changes a label: the labels are those of Lloyd's iterations in exact
arithmetic but for rows within about 1e-11 of the data's diameter of two
centres, and scikit-learn's agree with them but for rows within its own
rounding. The centre sums are kept per block and updated only for rows that
change label. Where a float32 copy of the mapped rows takes at most
``_COPY_BYTES`` (64 MiB; 60 000 x 50 takes 11 MiB), Lloyd's iterations read
their rows from it (made in the seeding's first pass), half the bytes of
float64 rows and no map, with upper bounds widened by its rounding; a row
that may change label is read from ``X`` again, so that labels and centres
are those without the copy, bit for bit.

On latents of images (D = 50), the triangle inequality spares almost no
distance in the seeding (a candidate is rarely twice as far from a row's
seed as the row) and the bounds spare about three rows in four over a run.
"""

import math
from typing import NamedTuple

import numpy as np
from sklearn.utils import check_random_state

from ._blas import single_threaded_blas
from ._interrupt import keyboard_interrupts
from ._kernels import (
    _Blockwise,
    _f64,
    _jit,
    _read_only,
    _transpose,
    label_stats_masked,
)
from ._simd import _prefetch_row, _shifted_dots, _sum_sq, _sum_sq_diff, _sum_sq_diff_and_sq
from ._threading import n_blocks as _n_blocks
from ._threading import use_threads

# Absolute margin of the bound tests, times a bound on the data's diameter:
# each bound moves by at most ``max_iter`` rounded additions of values below
# the diameter, so its error stays below 1e-13 of it.
_BOUND_MARGIN = 1e-11
# Rows per BLAS product (distances of a chunk of rows to all centres, or,
# with missing entries, to the seeding's candidates).
_ROWS = 128
# Lloyd's iterations test the bounds of _SCAN rows, then recompute the
# own-centre distances of those that failed, each row's memory prefetched
# _AHEAD rows before it is read.
_SCAN = 512
_AHEAD = 8
# A row rounded to float32 is within 2**-24 |z| of the row (round to nearest;
# subnormals' absolute error is far below _BOUND_MARGIN's); the factor covers
# the float64 rounding of the distance's root.
_ROUNDING_32 = 2.0**-24 * (1.0 + 2.0**-20)
# Lloyd's iterations read their rows from a float32 copy of the mapped data
# when it takes at most this many bytes (and the products are float32).
_COPY_BYTES = 64 * 2**20


@_jit()
def _map_row(x, shift, scale, z):
    for j in range(z.shape[0]):
        z[j] = (x[j] - shift[j]) * scale[j]


@keyboard_interrupts()
def map_rows(X, rows, shift, scale):
    """Map rows ``rows`` of ``X`` to ``(x - shift) * scale`` as the kernels map them.

    Parameters
    ----------
    X : ndarray of shape (n_samples, n_features), float32 or float64
        Data in user units.
    rows : ndarray of shape (n_rows,), int64
        Row indices.
    shift, scale : ndarray of shape (n_features,), float64
        The map.

    Returns
    -------
    Z : ndarray of shape (n_rows, n_features), float64
        The mapped rows, bit for bit as the kernels compute them.
    """
    return _map_rows(_read_only(X), rows, shift, scale)


@_jit()
def _map_rows(X, rows, shift, scale):
    out = np.empty((rows.shape[0], X.shape[1]))
    for r in range(rows.shape[0]):
        _map_row(X[rows[r]], shift, scale, out[r])
    return out


@_jit()
def _sq_dist(z, c):
    """``sum((z - c) ** 2)`` in SIMD, in one fixed order."""
    return _sum_sq_diff(z, c)


@_jit()
def _sq_norm(z):
    """``sum(z ** 2)`` in SIMD, in one fixed order."""
    return _sum_sq(z)


@_jit()
def _sq_dist_and_norm(z, c):
    """``(_sq_dist(z, c), _sq_norm(z))``, bit for bit, in one pass over ``z``."""
    return _sum_sq_diff_and_sq(z, c)


@_jit()
def _pairwise_sq_dists(A, B):
    out = np.empty((A.shape[0], B.shape[0]))
    for i in range(A.shape[0]):
        for k in range(B.shape[0]):
            out[i, k] = _sq_dist(A[i], B[k])
    return out


def _seed_moments_impl(X, shift, scale, c0, zsq, z32, n_blocks, first, last):
    """Each row's ``|z|**2`` into ``zsq``; per block, the sums of ``z - c0`` and of its square.

    Unless ``z32`` is empty, each row's ``z`` rounded to float32 into it.
    """
    n_samples, n_features = X.shape
    copy = z32.shape[0] > 0
    block = (n_samples + n_blocks - 1) // n_blocks
    s1 = np.empty((n_blocks, n_features))
    s2 = np.empty((n_blocks, n_features))
    s1[:], s2[:] = 0.0, 0.0
    for b in range(first, last):
        z = np.empty(n_features)
        for i in range(b * block, min((b + 1) * block, n_samples)):
            _map_row(X[i], shift, scale, z)
            zsq[i] = _sq_norm(z)
            if copy:
                for j in range(n_features):
                    z32[i, j] = z[j]
            for j in range(n_features):
                dev = z[j] - c0[j]
                s1[b, j] += dev
                s2[b, j] += dev * dev
    return s1, s2


_seed_moments_kernel = _Blockwise(_seed_moments_impl)


def _seed_trials_impl(X, w, shift, scale, d, labels, prev, k_prev, cand, cand_sq, dist, zsq,
                      n_blocks, first, last):  # fmt: skip
    """Each row's distances to the candidates into ``dist``; per block, each candidate's potential.

    Unless ``prev`` is negative, the previous call's candidate ``prev``
    was taken as seed ``k_prev``: each row's ``d`` and label take it first
    (as :func:`_seed_update` would), so that no serial pass is needed
    between calls; the potentials are with it.
    """
    n_samples, n_features = X.shape
    n_trials = cand.shape[0]
    weighted = w.shape[0] > 0
    block = (n_samples + n_blocks - 1) // n_blocks
    pots = np.empty((n_blocks, n_trials))
    for b in range(first, last):
        # z.c = (x - shift).(scale * c): the map folded into the candidates.
        scaled = np.empty((n_trials, n_features))
        for t in range(n_trials):
            for j in range(n_features):
                scaled[t, j] = scale[j] * cand[t, j]
        dots = np.empty(n_trials)
        pot = np.empty(n_trials)
        pot[:] = 0.0
        for i in range(b * block, min((b + 1) * block, n_samples)):
            if prev >= 0:
                e = dist[i, prev]
                if e < d[i]:
                    d[i] = e
                    labels[i] = k_prev
            _shifted_dots(X[i], shift, scaled, dots)
            wi = w[i] if weighted else 1.0
            zi = zsq[i]
            di = d[i]
            for t in range(n_trials):
                # scikit-learn's order: -2 z.c, plus |c|**2, plus |z|**2.
                e = max((-2.0 * dots[t] + cand_sq[t]) + zi, 0.0)
                dist[i, t] = e
                pot[t] += wi * min(di, e)
        for t in range(n_trials):  # not pots[b] = pot: its size check compiles string code
            pots[b, t] = pot[t]
    return pots


_seed_trials_kernel = _Blockwise(_seed_trials_impl)


@_jit()
def _seed_update(d, labels, dist, best, k):
    """Take candidate ``best`` as seed ``k``: each row's ``d`` and label, if it is nearer.

    The last seed's update (each earlier one's is made in the next trials
    pass). Serial: it reads only ``d`` and ``dist`` (no row of ``X``) and
    takes a fraction of a millisecond, less than sharing it out between
    threads costs on a loaded machine.
    """
    for i in range(d.shape[0]):
        e = dist[i, best]
        if e < d[i]:
            d[i] = e
            labels[i] = k


@_jit()
def _draw(w, d, dist, prev, block_pot, r, n_blocks):
    """``searchsorted(cumsum(w * d), r)`` without the cumulative sum, clipped to the last row.

    The cumulative sum is the running sum of the blocks' totals ``block_pot``
    plus the running sum within the block, so that the block total is reached
    exactly at its last row. Unless ``prev`` is negative, ``d`` is each
    row's ``d`` or its ``dist[:, prev]``, the smaller (the candidate just
    taken, whose update :func:`_seed_trials_impl` makes later).
    """
    n_samples = d.shape[0]
    weighted = w.shape[0] > 0
    block = (n_samples + n_blocks - 1) // n_blocks
    out = np.empty(r.shape[0], dtype=np.int64)
    for t in range(r.shape[0]):
        out[t] = n_samples - 1
        before = 0.0
        for b in range(n_blocks):
            if before + block_pot[b] >= r[t]:
                # The block's last row, should a contracted multiply-add
                # leave the running sum an ulp short of the block total.
                out[t] = min((b + 1) * block, n_samples) - 1
                partial = 0.0
                for i in range(b * block, min((b + 1) * block, n_samples)):
                    di = d[i]
                    if prev >= 0:
                        e = dist[i, prev]
                        di = e if e < di else di
                    partial += (w[i] if weighted else 1.0) * di
                    if before + partial >= r[t]:
                        out[t] = i
                        break
                break
            before += block_pot[b]
    return out


def _sequential_sum(a):
    """Sum over the first axis, one term after the other, in float64."""
    a = np.asarray(a, dtype=np.float64)
    return _ordered_total(a.reshape(a.shape[0], -1)).reshape(a.shape[1:])


@_jit(fastmath=False)
def _ordered_total(a):
    """``sum(a, axis=0)`` with the rows added one after the other, from zeros.

    Compiled (it runs every Lloyd iteration) without fast-math flags, so
    that nothing is reordered or folded.
    """
    total = np.empty(a.shape[1])
    total[:] = 0.0
    for b in range(a.shape[0]):
        for j in range(a.shape[1]):
            total[j] = total[j] + a[b, j]
    return total


def _label_sums_impl(X, w, shift, scale, labels, n_clusters, n_blocks, first, last):
    n_samples, n_features = X.shape
    weighted = w.shape[0] > 0
    block = (n_samples + n_blocks - 1) // n_blocks
    sums = np.empty((n_blocks, n_clusters, n_features))
    weight = np.empty((n_blocks, n_clusters))
    count = np.empty((n_blocks, n_clusters), dtype=np.int64)
    for b in range(first, last):
        z = np.empty(n_features)
        sums[b] = 0.0
        weight[b] = 0.0
        count[b] = 0
        for i in range(b * block, min((b + 1) * block, n_samples)):
            wi = w[i] if weighted else 1.0
            if wi == 0.0:
                continue
            k = labels[i]
            _map_row(X[i], shift, scale, z)
            weight[b, k] += wi
            count[b, k] += 1
            for j in range(n_features):
                sums[b, k, j] += wi * z[j]
    return sums, weight, count


_label_sums_kernel = _Blockwise(_label_sums_impl)


@_jit()
def _assign_scratch(zbuf, CP, n_groups):
    """Scratch of :func:`_assign_rows` for the rows of ``zbuf``, centres ``CP``, ``n_groups``."""
    n_rows, n_clusters = zbuf.shape[0], CP.shape[0]
    zt = np.empty((zbuf.shape[1], n_rows), dtype=CP.dtype)
    zt[:] = 0.0
    return (
        zt,
        np.empty((n_clusters, n_rows), dtype=CP.dtype),
        np.empty((n_clusters, n_rows)),
        np.empty((3, n_rows)),
        np.empty((2, n_rows), dtype=np.int64),
        np.empty((max(n_groups, 1), n_rows)),
        np.empty(n_clusters),
    )


@_jit()
def _group_bounds(low, best, start, n_rows, out):
    """``out[g, r]``: root of the least ``low[start[g]:start[g + 1], r]`` but ``low[best[r], r]``.

    For the first ``n_rows`` columns. ``low`` holds a column per row (see
    :func:`_assign_rows`); the centres are in group order, so that each
    group's least is over a contiguous run of its rows. Each loop runs over
    the rows: it vectorises.
    """
    for g in range(start.shape[0] - 1):
        m = out[g]
        m[:n_rows] = np.inf
        for q in range(start[g], start[g + 1]):
            v = low[q]
            for r in range(n_rows):
                m[r] = min(m[r], v[r] if q != best[r] else np.inf)
        for r in range(n_rows):
            m[r] = math.sqrt(max(m[r], 0.0))


@_jit()
def _move_row(z, wi, a, best, b, sums, weight, count):
    """Move a row of weight ``wi`` from cluster ``a`` to ``best`` in block ``b``'s sums."""
    weight[b, a] -= wi
    weight[b, best] += wi
    count[b, a] -= 1
    count[b, best] += 1
    for j in range(z.shape[0]):
        t = wi * z[j]
        sums[b, a, j] -= t
        sums[b, best, j] += t


@_jit()
def _column_bounds(zbuf, zsqs, n_rows, CP, csq, scratch):
    """Make the product and bounds of :func:`_assign_rows`, in columns of ``scratch``.

    Returns ``(low, top, n_inside, index_sum, group_low)``: ``low[q, r]``,
    a lower bound of row ``r``'s squared distance to centre ``q`` (in
    ``CP``'s order), ``top[r]`` the bound above which no centre can be the
    nearest, ``n_inside[r]`` the number of centres at most ``top[r]`` and
    ``index_sum[r]`` the sum of their indices; ``group_low`` is scratch for
    :func:`_group_bounds`.
    """
    zt, prod, low, per_row, picks, group_low, csq_low = scratch
    n_clusters = CP.shape[0]
    # |fl(|z|**2 - 2 z.c + |c|**2) - |z - c|**2| <= gamma_(D+2) (|z| + |c|)**2, at
    # most 2 gamma_(D+2) (|z|**2 + |c|**2), whatever the order of the sums, with
    # the unit roundoff u of the product (float32: the rounding of z and c to
    # float32 adds 2u |z||c|, within the slack of D + 4 over D + 2).
    err = (zbuf.shape[1] + 4) * (2.0**-23 if CP.itemsize == 4 else 2.0**-52)
    # The rows as columns: every loop below runs over the chunk's rows, one
    # lane per row, and vectorises (a loop per row over ~K centres did not:
    # a quarter of the time of an assigned row went to its group bounds).
    zsq, zsq_low, top = per_row[0], per_row[1], per_row[2]
    for r in range(n_rows):
        zsq[r] = zsqs[r] if zsqs.shape[0] > 0 else _sq_norm(zbuf[r])
    # The rows transposed, so that the product's operands are both
    # contiguous: its fastest form here.
    _transpose(zbuf, n_rows, zt)
    np.dot(CP, zt, prod)
    for q in range(n_clusters):
        csq_low[q] = csq[q] * (1.0 - err)
    # csq.max() as a loop (its first NaN, else its largest): numba's array max
    # compiles an nditer and four helpers into a cold first fit.
    csq_max = csq[0]
    for k in range(1, n_clusters):
        take = not math.isnan(csq_max) and (csq[k] > csq_max or math.isnan(csq[k]))
        csq_max = csq[k] if take else csq_max
    # Whole columns, for loops of a fixed length: those past n_rows hold an
    # earlier chunk's rows (or zeros), and what is made of them is not read.
    n = zt.shape[1]
    for r in range(n):
        zsq_low[r] = zsq[r] * (1.0 - err) if r < n_rows else 0.0
        top[r] = np.inf
    # Lower bounds of the squared distances (the slack in err covers the
    # roundings of this expression), and their least per row.
    for q in range(n_clusters):
        dots, lq, c = prod[q], low[q], csq_low[q]
        for r in range(n):
            v = (zsq_low[r] - 2.0 * dots[r]) + c
            lq[r] = v
            top[r] = min(top[r], v)
    # No centre whose lower bound is above top can be the nearest: count
    # those at most top, and sum their indices (for one, its index).
    n_inside, index_sum = picks[0], picks[1]
    for r in range(n):
        top[r] += 2.0 * err * ((zsq[r] if r < n_rows else 0.0) + csq_max)
        n_inside[r] = 0
        index_sum[r] = 0
    for q in range(n_clusters):
        lq = low[q]
        for r in range(n):
            inside = lq[r] <= top[r]
            n_inside[r] += inside
            index_sum[r] += q * inside
    return low, top, n_inside, index_sum, group_low


@_jit()
def _assign_rows(zbuf, rows, own, zsqs, n_rows, C, CP, csq, groups, scratch, w, labels, upper,
                 glb, b, sums, weight, count, update, X, shift, scale, zx):  # fmt: skip
    """Nearest centre of the mapped rows ``zbuf[:n_rows]`` (rows ``rows`` of ``X``).

    One BLAS product, in the precision of ``CP`` (the centres, float32 or
    float64), gives ``|z|**2 - 2 z.c + |c|**2`` for every centre, within
    ``err * (|z|**2 + |c|**2)`` of the exact value; the centres that can be
    nearest within that error are compared by exact sums of squared
    differences in float64 (the first of the smallest wins, as in Lloyd's),
    so the labels do not depend on that precision nor on the product's
    order of additions. The row's bounds become (an upper bound of) the
    distance to it and, per group of centres, the smallest distance allowed
    by the error to any other centre. Labels, and if ``update`` the block's
    sums, follow. ``scratch`` is from :func:`_assign_scratch`. ``own``,
    unless empty, holds each row's :func:`_sq_dist` to the centre of its
    label, reused as it is, and ``zsqs``, unless empty, each row's exact
    :func:`_sq_norm` (both from :func:`_sq_dist_and_norm`). Returns the
    number of changed labels.

    ``zx`` empty: ``zbuf`` holds the rows as mapped. Otherwise (float32
    ``CP`` only, whose product rounds the rows so anyway: its error bound
    holds) ``zbuf`` holds them rounded to float32 (``_lloyd_impl``'s copy)
    and ``own`` their distances as rounded: a row
    whose nearest centre is its own and alone within the error keeps its
    label, its upper bound that distance plus the rounding's
    (:data:`_ROUNDING_32`); any other row is mapped again from ``X`` into
    ``zx`` and decided, and its sums moved, exactly as above.

    ``groups = (members, start)``: the rows of ``CP`` and the entries of
    ``csq`` are the centres ``C[members]``, those of group ``g`` at
    ``start[g]:start[g + 1]`` (contiguous, so that a group's least bound is
    a run, not a gather); labels are rows of ``C``.
    """
    members, start = groups
    low, top, n_inside, index_sum, group_low = _column_bounds(zbuf, zsqs, n_rows, CP, csq, scratch)
    bounds = glb.shape[0] > 0
    rounded = zx.shape[0] > 0
    n_clusters = C.shape[0]
    changed = 0
    for r in range(n_rows):
        i = rows[r]
        z = zbuf[r]
        a = labels[i]
        best_q = index_sum[r]
        if n_inside[r] == 1 and rounded and members[best_q] == a:
            best = a  # the rounded row's own centre, alone within the error
            root = math.sqrt(own[r]) + _ROUNDING_32 * math.sqrt(zsqs[r])
        else:
            have_own = own.shape[0] > 0
            own_v = own[r] if have_own else 0.0
            if rounded:  # the exact row, for exact distances and sums
                _map_row(X[i], shift, scale, zx)
                z = zx
                own_v = _sq_dist(z, C[a])
            if n_inside[r] == 1:  # most rows: no other centre within the rounding
                best = members[best_q]
                best_v = own_v if best == a and have_own else _sq_dist(z, C[best])
            else:
                best = np.int64(0)
                best_v = np.inf
                for q in range(n_clusters):
                    if low[q, r] <= top[r]:
                        k = members[q]
                        v = own_v if k == a and have_own else _sq_dist(z, C[k])
                        if v < best_v or (v == best_v and k < best):  # the first of the smallest
                            best_v = v
                            best = k
                            best_q = q
            root = math.sqrt(best_v)
        index_sum[r] = best_q  # from here on, each row's nearest centre (in CP's order)
        if bounds:
            upper[i] = root
        if best != a:
            labels[i] = best
            changed += 1
            wi = w[i] if w.shape[0] > 0 else 1.0
            if update and wi != 0.0:
                _move_row(z, wi, a, best, b, sums, weight, count)
    if bounds:
        _group_bounds(low, index_sum, start, n_rows, group_low)
        for r in range(n_rows):
            i = rows[r]
            for g in range(glb.shape[1]):
                glb[i, g] = group_low[g, r]
    return changed


@_jit()
def _drift_bounds(first, stop, labels, upper, glb, drift, group_drift, half_sep, margin, todo,
                  todo_bound):  # fmt: skip
    """Move the bounds of rows ``first .. stop`` by the centres' drifts, reading no row of X.

    The rows whose upper bound is not below their lower bound go to
    ``todo``, with that lower bound in ``todo_bound``; returns their number.
    """
    n_todo = 0
    for i in range(first, stop):
        a = labels[i]
        up = upper[i] + drift[a]
        upper[i] = up
        low = np.inf
        for g in range(group_drift.shape[0]):
            v = glb[i, g] - group_drift[g]
            glb[i, g] = v
            low = min(low, v)
        bound = max(half_sep[a], low) - margin
        # Written always, kept if the bound fails: no branch to mispredict.
        todo[n_todo] = i
        todo_bound[n_todo] = bound
        n_todo += not up < bound
    return n_todo


def _lloyd_impl(X, Z, zsq, w, shift, scale, C, CP, csq, half_sep, groups, drift, group_drift,
                labels, upper, glb, sums, weight, count, margin, update, n_blocks,
                first, last):  # fmt: skip
    n_samples = X.shape[0]
    block = (n_samples + n_blocks - 1) // n_blocks
    changed = np.empty(n_blocks, dtype=np.int64)
    full = np.empty(n_blocks, dtype=np.int64)
    for b in range(first, last):
        changed[b], full[b] = _lloyd_block(
            X, Z, zsq, w, shift, scale, C, CP, csq, half_sep, groups, drift, group_drift, labels,
            upper, glb, sums, weight, count, margin, update, b, b * block,
            min((b + 1) * block, n_samples),
        )  # fmt: skip
    return changed, full


@_jit(inline="always")
def _prefetch_either(X, Z, i):
    """Prefetch row ``i`` of the float32 copy ``Z``, or of ``X`` if ``Z`` is empty."""
    if Z.shape[0] > 0:
        _prefetch_row(Z, i)
    else:
        _prefetch_row(X, i)


@_jit()
def _block_scratch(n_features, rounded):
    """:func:`_lloyd_block`'s buffers: rows, an exact row, indices, distances, norms, the scan's."""
    zbuf = np.empty((_ROWS, n_features))
    zbuf[:] = 0.0
    return (
        zbuf,
        np.empty(n_features if rounded else 0),
        np.empty(_ROWS, dtype=np.int64),
        np.empty(_ROWS),
        np.empty(_ROWS),
        np.empty(_SCAN, dtype=np.int64),
        np.empty(_SCAN),
    )


@_jit()
def _lloyd_block(X, Z, zsq, w, shift, scale, C, CP, csq, half_sep, groups, drift, group_drift,
                 labels, upper, glb, sums, weight, count, margin, update, b, start,
                 stop):  # fmt: skip
    """One Lloyd iteration over rows ``start .. stop`` of block ``b``: changed labels, product rows.

    ``Z`` (norms ``zsq``), unless empty, is the float32 copy of the mapped
    rows, read in place of ``X`` wherever a row's label cannot change.
    """
    n_features = X.shape[1]
    rounded = Z.shape[0] > 0
    changed = full = 0
    zbuf, zx, rows, own, zsqs, todo, todo_bound = _block_scratch(n_features, rounded)
    scratch = _assign_scratch(zbuf, CP, glb.shape[1])
    # n_buf never a literal (nor b, an int64 as first and last are): each
    # other integer type would compile _assign_rows once more.
    n_buf = np.int64(0)
    for scan in range(start, stop, _SCAN):
        n_todo = _drift_bounds(
            scan, min(scan + _SCAN, stop), labels, upper, glb, drift, group_drift, half_sep,
            margin, todo, todo_bound,
        )  # fmt: skip
        for t in range(min(_AHEAD, n_todo)):
            _prefetch_either(X, Z, todo[t])
        for t in range(n_todo):
            if t + _AHEAD < n_todo:
                _prefetch_either(X, Z, todo[t + _AHEAD])
            i = todo[t]
            z = zbuf[n_buf]
            if rounded:
                # Half the bytes of a float64 row, and no map; the distance
                # of the rounded row is within the rounding's bound of the row's.
                zr = Z[i]
                for j in range(n_features):
                    z[j] = zr[j]
                own_d = _sq_dist(z, C[labels[i]])
                zsqs[n_buf] = zsq[i]
                up = math.sqrt(own_d) + _ROUNDING_32 * math.sqrt(zsq[i])
            else:
                _map_row(X[i], shift, scale, z)
                # The row's norm too, for the product should the bound fail.
                own_d, zsqs[n_buf] = _sq_dist_and_norm(z, C[labels[i]])
                up = math.sqrt(own_d)
            own[n_buf] = own_d
            upper[i] = up
            if up < todo_bound[t]:
                continue
            rows[n_buf] = i
            n_buf += 1
            if n_buf == _ROWS:
                changed += _assign_rows(zbuf, rows, own, zsqs, n_buf, C, CP, csq, groups, scratch,
                                        w, labels, upper, glb, b, sums, weight, count, update, X,
                                        shift, scale, zx)  # fmt: skip
                full += n_buf
                n_buf = np.int64(0)
    if n_buf > 0:
        changed += _assign_rows(zbuf, rows, own, zsqs, n_buf, C, CP, csq, groups, scratch, w,
                                labels, upper, glb, b, sums, weight, count, update, X, shift,
                                scale, zx)  # fmt: skip
        full += n_buf
    return changed, full


_lloyd_kernel = _Blockwise(_lloyd_impl)


def _distances_to_own_impl(X, shift, scale, centres, labels, out, n_blocks, first, last):
    n_samples, n_features = X.shape
    block = (n_samples + n_blocks - 1) // n_blocks
    for b in range(first, last):
        z = np.empty(n_features)
        for i in range(b * block, min((b + 1) * block, n_samples)):
            _map_row(X[i], shift, scale, z)
            out[i] = _sq_dist(z, centres[labels[i]])


_distances_to_own_kernel = _Blockwise(_distances_to_own_impl)


def _nearest_impl(X, shift, scale, C, CP, csq, labels, n_blocks, first, last):
    n_samples, n_features = X.shape
    block = (n_samples + n_blocks - 1) // n_blocks
    for b in range(first, last):
        zbuf = np.empty((_ROWS, n_features))
        zbuf[:] = 0.0
        rows = np.empty(_ROWS, dtype=np.int64)
        scratch = _assign_scratch(zbuf, CP, np.int64(0))
        none = np.empty(0)
        no_bounds = np.empty((0, 1))
        no_sums = np.empty((1, 1, 1))
        no_weight = np.empty((1, 1))
        no_count = np.empty((1, 1), dtype=np.int64)
        groups = (np.arange(C.shape[0]), np.zeros(1, dtype=np.int64))  # in order, no bounds
        stop_b = min((b + 1) * block, n_samples)
        for start in range(b * block, stop_b, _ROWS):
            n_rows = min(_ROWS, stop_b - start)
            for r in range(n_rows):
                _map_row(X[start + r], shift, scale, zbuf[r])
                rows[r] = start + r
                labels[start + r] = 0
            # Block 0 and no update, typed as _lloyd_impl passes them (int64
            # and bool, not literals): one compiled _assign_rows serves both.
            _assign_rows(zbuf, rows, none, none, n_rows, C, CP, csq, groups, scratch, none, labels,
                         none, no_bounds, np.int64(0), no_sums, no_weight, no_count,
                         np.bool_(False), X, shift, scale, none)  # fmt: skip


_nearest_kernel = _Blockwise(_nearest_impl)


def _seed(X, w, shift, scale, n_clusters, random_state, parallel, n_blocks, z32=None):
    """k-means++ seeds, their rows, nearest seeds, feature variances, diameter, ``|z|**2``.

    ``z32``, if given, receives each row's ``z`` in float32 (in the pass
    that computes ``|z|**2``).
    """
    n_samples, n_features = X.shape
    first, n_trials = _first_draw(w, n_samples, n_clusters, random_state)
    indices = np.empty(n_clusters, dtype=np.int64)
    indices[0] = first
    seeds = np.empty((n_clusters, n_features))
    seeds[0] = map_rows(X, indices[:1], shift, scale)[0]
    d = np.full(n_samples, np.inf)
    labels = np.zeros(n_samples, dtype=np.int64)
    dist = np.empty((n_samples, n_trials))
    zsq = np.empty(n_samples)
    trials = _seed_trials_kernel.runner(parallel)
    moments = _seed_moments_kernel.runner(parallel)
    cand = seeds[:1]
    # |z|**2 of every row, kept for the distances; sums for the tolerance.
    if z32 is None:
        z32 = np.empty((0, n_features), dtype=np.float32)
    s1, s2 = moments(X, shift, scale, seeds[0], zsq, z32, n_blocks)
    none = np.int64(-1)
    pots = trials(X, w, shift, scale, d, labels, none, none, cand, _sq_norms(cand), dist, zsq,
                  n_blocks)  # fmt: skip
    far = float(np.max(dist[:, 0]))
    # A seed's update of d and labels waits for the next pass over the rows
    # (a serial pass of its own took 4 to 8 ms of a 60 000 x 50 seeding);
    # the blocks' potentials with it are its column of the trials'.
    best = np.int64(0)
    for c in range(1, n_clusters):
        block_pot = np.ascontiguousarray(pots[:, best])
        ids = _draw_candidates(w, d, dist, best, block_pot, n_trials, random_state, n_blocks)
        cand = map_rows(X, ids, shift, scale)
        pots = trials(X, w, shift, scale, d, labels, best, np.int64(c - 1), cand,
                      _sq_norms(cand), dist, zsq, n_blocks)  # fmt: skip
        best = np.int64(np.argmin(_sequential_sum(pots)))
        indices[c] = ids[best]
        seeds[c] = cand[best]
    _seed_update(d, labels, dist, best, n_clusters - 1)
    s1, s2 = _sequential_sum(s1), _sequential_sum(s2)
    var = np.maximum(s2 / n_samples - (s1 / n_samples) ** 2, 0.0)
    return seeds, indices, labels, var, 2.0 * math.sqrt(far), zsq


def _first_draw(w, n_samples, n_clusters, random_state):
    """Draw the first seed's row; return it and the number of candidates per later seed.

    Drawn exactly as scikit-learn's ``_kmeans_plusplus`` draws them (unit
    weights are ones there), as is every later draw (:func:`_draw_candidates`).
    """
    p = w / w.sum() if w.shape[0] else np.full(n_samples, 1.0) / float(n_samples)
    return random_state.choice(n_samples, p=p), 2 + int(np.log(n_clusters))


def _draw_candidates(w, d, dist, prev, block_pot, n_trials, random_state, n_blocks):
    """Draw the rows of the next seed's ``n_trials`` candidates, by their share of the potential.

    ``dist`` and ``prev``: see :func:`_draw`.
    """
    current_pot = _sequential_sum(block_pot[:, np.newaxis])[0]
    r = random_state.uniform(size=n_trials) * current_pot
    return _draw(w, d, dist, prev, block_pot, r, n_blocks)


def _sq_norms(C):
    return np.einsum("ij,ij->i", C, C)


def _check(X, sample_weight, shift, scale):
    n_features = X.shape[1]
    # Copies: a broadcast view is read-only when given an array and not when
    # given a scalar, and each flag would compile the kernels once more.
    shift = np.array(np.broadcast_to(shift, (n_features,)), dtype=np.float64)
    scale = np.array(np.broadcast_to(scale, (n_features,)), dtype=np.float64)
    if sample_weight is None:
        sample_weight = np.empty(0)
    return shift, scale, _f64(sample_weight)


def _check_X(X, n_clusters):
    if X.shape[0] < n_clusters:
        raise ValueError(f"n_samples={X.shape[0]} should be >= n_clusters={n_clusters}.")
    return _read_only(X)


@keyboard_interrupts()
def kmeans_plusplus(X, sample_weight, shift, scale, n_clusters, random_state, parallel):
    """Greedy k-means++ seeds of ``(X - shift) * scale`` and each row's nearest seed.

    Draws the same random numbers as :func:`sklearn.cluster.kmeans_plusplus`
    (default ``n_local_trials``), so that from the same ``random_state`` the
    same rows are picked, up to rounding (see :func:`kmeans`).

    Parameters
    ----------
    X : ndarray of shape (n_samples, n_features), float32 or float64
        Data in user units (not copied; may be a read-only memmap).
    sample_weight : ndarray of shape (n_samples,) or (0,), or None
        Non-negative weights; empty or None means unit weights.
    shift, scale : float or ndarray of shape (n_features,)
        Map to the coordinates k-means works in, ``z = (x - shift) * scale``.
    n_clusters : int
        Number of seeds.
    random_state : int, RandomState instance or None
        Source of the draws, advanced as scikit-learn advances it.
    parallel : bool
        Share the blocks out between threads (results do not depend on it).

    Returns
    -------
    labels : ndarray of shape (n_samples,), int64
        Index of each row's nearest seed (the first one on ties), by the
        distances the seeding evaluates (``|c|**2 - 2 z.c + |z|**2``, as
        scikit-learn's ``pairwise_distances_argmin``).
    seeds : ndarray of shape (n_clusters, n_features), float64
        The seeds in mapped units.
    indices : ndarray of shape (n_clusters,), int64
        Rows of ``X`` the seeds are.
    """
    X, random_state = _check_X(X, n_clusters), check_random_state(random_state)
    shift, scale, w = _check(X, sample_weight, shift, scale)
    parallel = use_threads(parallel, X.size * n_clusters)
    with single_threaded_blas():
        seeds, indices, labels, _, _, _ = _seed(
            X, w, shift, scale, n_clusters, random_state, parallel, _n_blocks(X.shape[0])
        )
    return labels, seeds, indices


def _relocate(X, w, shift, scale, centres, labels, sums, weight, parallel, n_blocks):
    """scikit-learn's relocation of empty clusters, on the summed statistics in place.

    Each empty cluster takes one of the rows farthest from their centres
    (``np.argpartition`` as scikit-learn calls it), whose weighted row moves
    out of its cluster's sums. Labels are left as they are, as there.
    """
    empty = np.flatnonzero(weight == 0.0)
    if empty.size == 0:
        return
    kernel = _distances_to_own_kernel.runner(parallel)
    distances = np.empty(X.shape[0])
    kernel(X, shift, scale, centres, labels, distances, n_blocks)
    if np.max(distances) == 0.0:
        return
    far = np.argpartition(distances, -empty.size)[: -empty.size - 1 : -1]
    del distances
    rows = map_rows(X, far.astype(np.int64), shift, scale)
    for new, idx, z in zip(empty, far, rows, strict=True):
        wi = w[idx] if w.shape[0] else 1.0
        old = labels[idx]
        sums[old] -= z * wi
        sums[new] = z * wi
        weight[new] = wi
        weight[old] -= wi


@_jit(fastmath=False)
def _totals(bsums, bweight, bcount):
    """Return the clusters' sums and weights from the blocks', and whether every weight is positive.

    Totals in a fixed order, :func:`_ordered_total`'s; a cluster without a
    row of positive weight has exactly zero weight and sums, as in
    scikit-learn. Counts are integers: any order of additions gives the same.
    Compiled: as numpy calls (a dozen per Lloyd iteration) they were most of an
    iteration's time on small data.
    """
    n_blocks, n_clusters, n_features = bsums.shape
    flat = bsums.reshape(n_blocks, n_clusters * n_features)
    sums = _ordered_total(flat).reshape(n_clusters, n_features)
    weight = _ordered_total(bweight)
    filled = True
    for k in range(n_clusters):
        count = 0
        for b in range(n_blocks):
            count += bcount[b, k]
        if count == 0:
            sums[k] = 0.0
            weight[k] = 0.0
        filled = filled and weight[k] > 0.0
    return sums, weight, filled


def _average(sums, weight):
    """Centres from sums, scikit-learn's way (an empty cluster copies row ``argmax(weight)``)."""
    filled = weight > 0
    heaviest = int(np.argmax(weight))
    centres = sums * np.where(filled, 1.0 / np.where(filled, weight, 1.0), 1.0)[:, np.newaxis]
    # As a loop over k would copy it: scaled if it comes before k, else not.
    empty = np.flatnonzero(~filled)
    centres[empty] = np.where((empty > heaviest)[:, np.newaxis], centres[heaviest], sums[heaviest])
    return centres


def _groups(seeds, n_groups):
    """Yinyang's groups of centres: five Lloyd iterations over the seeds."""
    if n_groups == 1:  # what the iterations give, without their numpy calls (small data)
        return np.zeros(seeds.shape[0], dtype=np.int64), 1
    means = seeds[:n_groups]
    for _ in range(5):
        group_of = np.argmin(_pairwise_sq_dists(seeds, means), axis=1)
        means = np.stack([seeds[group_of == g].mean(axis=0) for g in np.unique(group_of)])
    return np.unique(group_of, return_inverse=True)[1].astype(np.int64), means.shape[0]


def _float32_rows(X, wanted):
    """Room for Lloyd's float32 copy of the mapped rows of ``X`` if ``wanted``, else 0 rows."""
    return np.empty(X.shape if wanted else (0, X.shape[1]), dtype=np.float32)


def _group_moves(move, group_of, n_groups):
    """Each group's largest centre move, by which its rows' lower bounds drop."""
    if n_groups == 1:
        return np.array([np.max(move)])
    group_move = np.zeros(n_groups)
    np.maximum.at(group_move, group_of, move)
    return group_move


def _product_dtype(seeds, diameter):
    """Precision of Lloyd's distance products: float32 unless it could over- or underflow.

    Every row is within ``diameter / 2`` of the first seed, so that bounds
    the norms of rows and centres. ``_assign_rows`` decides labels by exact
    float64 sums whatever this precision, which only widens the rounding
    window of its bounds; float32 products run at twice the speed.
    """
    largest = math.sqrt(_sq_norm(seeds[0])) + 0.5 * diameter
    return np.float32 if 1e-8 <= diameter and largest <= 1e15 else np.float64


def _geometry(centres, dtype, members):
    """Centres (in ``dtype``) and squared norms, ``members`` order; half-separations.

    The half-separation of a centre is half its distance to the nearest other
    (in the centres' own order).
    """
    ordered = centres[members]
    return (
        np.ascontiguousarray(ordered, dtype=dtype),
        _sq_norms(ordered),
        _half_separations(centres),
    )


@_jit(inline="always")
def _nan_min(a, b):
    """``min(a, b)``, NaN if either is (as numpy's ``min``; Python's ``min`` keeps ``a``)."""
    return a if a != a or not (b < a or b != b) else b


@_jit()
def _half_separations(centres):
    """Half of each centre's distance to the nearest other (``inf`` for one centre).

    Each pair's squared distance once: ``_sq_dist(a, b)`` and ``_sq_dist(b,
    a)`` are the same bits (``(a - b)**2 == (b - a)**2``). A NaN distance
    makes the centre's NaN, as ``min`` over numpy's array would.
    """
    n = centres.shape[0]
    least = np.full(n, np.inf)
    for i in range(n):
        for k in range(i + 1, n):
            d = _sq_dist(centres[i], centres[k])
            least[i] = _nan_min(least[i], d)
            least[k] = _nan_min(least[k], d)
    # sqrt is correctly rounded and monotonic: the root of the least square
    # is the least root, with K roots instead of K**2.
    for i in range(n):
        least[i] = 0.5 * math.sqrt(least[i])
    return least


def kmeans(
    X,
    sample_weight,
    shift,
    scale,
    n_clusters,
    random_state,
    parallel,
    max_iter=300,
    tol=1e-4,
):
    """Cluster ``(X - shift) * scale`` as scikit-learn's ``KMeans(n_init=1)``, in bounded memory.

    k-means++ seeds (as :func:`kmeans_plusplus`), then Lloyd's iterations
    until no label changes, or until the squared centre shifts sum to at
    most ``tol`` times the mean feature variance (unweighted, of the mapped
    data), or ``max_iter``; in the last two cases the labels are assigned
    once more to the final centres. Empty clusters are relocated as
    scikit-learn relocates them.

    Parameters
    ----------
    X : ndarray of shape (n_samples, n_features), float32 or float64
        Data in user units (not copied; may be a read-only memmap).
    sample_weight : ndarray of shape (n_samples,) or (0,), or None
        Non-negative weights; empty or None means unit weights.
    shift, scale : float or ndarray of shape (n_features,)
        Map to the coordinates k-means works in, ``z = (x - shift) * scale``
        (k-means is invariant to a shift and to a common scale, not to a
        per-feature one).
    n_clusters : int
        Number of clusters.
    random_state : int, RandomState instance or None
        Source of the seeding's draws, advanced as scikit-learn's ``KMeans``
        advances it.
    parallel : bool
        Share the blocks out between threads (results do not depend on it).
    max_iter : int, default=300
        Maximum number of Lloyd iterations.
    tol : float, default=1e-4
        Relative tolerance of the centre shift, as in ``KMeans``.

    Returns
    -------
    labels : ndarray of shape (n_samples,), int64
        Cluster of each row.
    centres : ndarray of shape (n_clusters, n_features), float64
        Final centres in mapped units.
    n_iter : int
        Number of Lloyd iterations run, as ``KMeans.n_iter_``.

    Notes
    -----
    All arithmetic that decides a label or a centre is float64 whatever the
    dtype of ``X``, so for float32 data the result is that of scikit-learn
    on the data cast to float64.
    scikit-learn evaluates distances as ``|c|**2 - 2 x.c`` in the dtype of
    ``X``, summed in an order that depends on its threads; here the nearest
    centre is decided by exact sums of squared differences among the
    centres that the expanded form leaves within its rounding. Labels agree
    except for rows within rounding of two centres (exact ties included,
    which data of few distinct values has by the thousand), and the seeding's draws
    agree except where one falls within rounding of a boundary of the
    cumulative potential.

    Extra memory: ``n_samples`` int64 labels, ``n_samples`` float64 upper
    bounds, ``n_samples x n_groups`` float64 lower bounds (``n_groups =
    max(1, n_clusters // 10)``), ``n_samples`` float64 squared norms, and
    during the seeding ``n_samples x (2 + log(n_clusters))`` float64
    distances to the candidates; where it takes at most 64 MiB, a float32
    copy of the mapped rows (``n_samples x n_features``).
    """
    labels, centres, n_iter, _ = _kmeans(
        X, sample_weight, shift, scale, n_clusters, random_state, parallel, max_iter, tol
    )
    return labels, centres, n_iter


@keyboard_interrupts()
def _kmeans(X, sample_weight, shift, scale, n_clusters, random_state, parallel, max_iter, tol):
    """:func:`kmeans`, plus the number of rows whose distances were evaluated per iteration."""
    X, random_state = _check_X(X, n_clusters), check_random_state(random_state)
    shift, scale, w = _check(X, sample_weight, shift, scale)
    n_samples = X.shape[0]
    n_blocks = _n_blocks(n_samples)
    parallel = use_threads(parallel, X.size * n_clusters)
    # Lloyd's rows, mapped and rounded to float32, if small enough (made in
    # the seeding's first pass; dropped should the products be float64).
    Z = _float32_rows(X, X.shape[0] * X.shape[1] * 4 <= _COPY_BYTES)
    with single_threaded_blas():
        seeds, _, labels, var, diameter, zsq = _seed(
            X, w, shift, scale, n_clusters, random_state, parallel, n_blocks, Z
        )
        tol = float(np.mean(var) * tol)
        # Every bound moves by at most max_iter rounded additions of values
        # below the diameter: their error stays far below this margin.
        margin = _BOUND_MARGIN * diameter
        group_of, n_groups = _groups(seeds, max(1, n_clusters // 10))
        members = np.argsort(group_of, kind="stable")
        groups = (members, np.searchsorted(group_of[members], np.arange(n_groups + 1)))
        dtype = _product_dtype(seeds, diameter)
        if dtype != np.float32 or Z.shape[0] == 0:  # (new arrays: views would keep theirs)
            Z, zsq = _float32_rows(X, False), np.empty(0)
        upper = np.full(n_samples, np.inf)
        glb = np.full((n_samples, n_groups), -np.inf)
        sums_kernel = _label_sums_kernel.runner(parallel)
        bsums, bweight, bcount = sums_kernel(X, w, shift, scale, labels, n_clusters, n_blocks)
        lloyd = _lloyd_kernel.runner(parallel)
        centres = seeds
        strict = False
        work = []
        drifts = changed = None
        for it in range(max_iter):
            if it > 0:
                changed, full = lloyd(
                    X, Z, zsq, w, shift, scale, centres, *_geometry(centres, dtype, members),
                    groups, *drifts, labels, upper, glb, bsums, bweight, bcount, margin, True,
                    n_blocks,
                )  # fmt: skip
                work.append(int(full.sum()))
            sums, weight, filled = _totals(bsums, bweight, bcount)
            if filled:  # _average's arithmetic, without its handling of empty clusters
                new = sums * (1.0 / weight)[:, np.newaxis]
            else:
                _relocate(X, w, shift, scale, centres, labels, sums, weight, parallel, n_blocks)
                new = _average(sums, weight)
            move = np.sqrt(np.sum((new - centres) ** 2, axis=1))
            centres = new
            drifts = (move, _group_moves(move, group_of, n_groups))
            if it > 0 and changed.sum() == 0:
                strict = True
                break
            if np.sum(move**2) <= tol:
                break
        if not strict:
            lloyd(
                X, Z, zsq, w, shift, scale, centres, *_geometry(centres, dtype, members), groups,
                *drifts, labels, upper, glb, bsums, bweight, bcount, margin, False, n_blocks,
            )  # fmt: skip
    return labels, centres, it + 1, work


@keyboard_interrupts()
def nearest(X, shift, scale, centres, parallel):
    """Index of the nearest centre to each row of ``(X - shift) * scale``.

    Parameters
    ----------
    X : ndarray of shape (n_samples, n_features), float32 or float64
        Data in user units (not copied; may be a read-only memmap).
    shift, scale : float or ndarray of shape (n_features,)
        Map to the centres' coordinates, ``z = (x - shift) * scale``.
    centres : ndarray of shape (n_clusters, n_features)
        Centres in mapped units.
    parallel : bool
        Share the blocks out between threads (results do not depend on it).

    Returns
    -------
    labels : ndarray of shape (n_samples,), int64
        The first centre at the smallest distance, decided as in
        :func:`kmeans` (exact sums of squared differences in float64).
    """
    X = _read_only(X)
    shift, scale, _ = _check(X, None, shift, scale)
    C = _f64(centres)
    labels = np.empty(X.shape[0], dtype=np.int64)
    parallel = use_threads(parallel, X.size * C.shape[0])
    with single_threaded_blas():
        kernel = _nearest_kernel.runner(parallel)
        kernel(X, shift, scale, C, C, _sq_norms(C), labels,
               _n_blocks(X.shape[0]))  # fmt: skip
    return labels


# Rows with missing entries (NaN): k-means with partial distances. A row's
# squared distance to a centre is summed over the features both have (a seed
# drawn from the rows lacks its row's missing entries) and scaled by the
# data's total variance over that of the features summed: an estimate of the
# full distance (the partial distance strategy of Dixon, 1979, weighted by
# each feature's variance since k-means runs in the data's own units). With
# no feature in common it is twice the total variance, the mean squared
# distance of two rows. Each centre is the mean of its rows' observed
# entries, feature by feature: Lloyd's iterations minimise the objective of
# k-POD (Chi, Chi and Baraniuk, 2016), the hard-assignment limit of the
# mixture's EM with missing entries. Mean imputation instead makes rows that
# lack a feature look alike and gathers them into clusters of their own.
# With ``u = [o, z, z**2]`` of a row (``o`` the observed indicator, ``z``
# zero where missing), one BLAS product ``u @ M`` gives, per centre, the sum
# over common features and their variance (:func:`_masked_operand`). Lloyd's
# iterations evaluate every distance (no bounds). Data without NaN never
# reaches these functions.


@_jit()
def _masked_chunk(X, start, n_rows, shift, scale, u):
    """``u[r] = [o, z, z**2]`` of row ``start + r`` (``z = 0`` where missing); 0 past ``n_rows``."""
    n_features = X.shape[1]
    for r in range(n_rows):
        x = X[start + r]
        # Three 1-D views: their loop vectorises (twice as fast as writing
        # into u by two indices), with the same values.
        o, z, q = u[r, :n_features], u[r, n_features : 2 * n_features], u[r, 2 * n_features :]
        for j in range(n_features):
            v = x[j]
            seen = v == v
            t = (v - shift[j]) * scale[j]
            t = t if seen else 0.0
            o[j] = 1.0 if seen else 0.0
            z[j] = t
            q[j] = t * t
    u[n_rows:] = 0.0


@_jit()
def _scaled(prod, r, k, n_centres, total_var, whole):
    """Row ``r``'s estimated squared distance to centre ``k`` from the product ``u @ M``.

    See :func:`_masked_operand` (``whole``: one column of variances).
    """
    common = prod[r, n_centres] if whole else prod[r, n_centres + k]
    if common > 0.0:
        return max(prod[r, k], 0.0) * (total_var / common)
    return 2.0 * total_var


class _MaskedOperand(NamedTuple):
    """``[o, z, z**2] @ M`` gives partial distances: see :func:`_masked_operand`."""

    M: np.ndarray
    whole: np.bool_  # every centre has every feature: one column of variances


def _masked_operand(C, observed, var):
    """``M`` for centres ``C`` with entries ``observed``, features of variance ``var``.

    ``[o, z, z**2] @ M`` has, for centre ``k``, the squared distance summed
    over the features the row and the centre both have (column ``k``) and
    the sum of their variances (column ``n_centres + k``). When every centre
    has every feature (Lloyd's means, as a rule) that sum is the row's own,
    the same for every centre: one column (``n_centres``), and the product
    takes about half the time (the same labels; the distances to rounding,
    as BLAS sums a product of another shape in another order).
    """
    C = np.where(observed, C, 0.0)
    seen = observed.astype(np.float64)
    whole = bool(observed.all())
    zero = np.zeros((C.shape[1], 1 if whole else C.shape[0]))
    variances = var[:, np.newaxis] if whole else (seen * var).T
    M = np.block([[(C**2).T, variances], [-2.0 * C.T, zero], [seen.T, zero]])
    return _MaskedOperand(np.ascontiguousarray(M), np.bool_(whole))


def masked_map(X, rows, shift, scale):
    """Rows ``rows`` of ``X`` mapped (zero where missing) and their observed indicator."""
    x = X[rows].astype(np.float64)
    observed = ~np.isnan(x)
    return np.where(observed, (x - shift) * scale, 0.0), observed


def _masked_variances(X, w, shift, scale, parallel, n_blocks):
    """Each feature's variance over its observed entries, weighted by ``w``, in mapped units.

    Weighted, so that a row of weight zero is as good as absent (unweighted,
    one such row far out changed the partial distances' scaling and the
    start) and an integer weight counts as repeats.
    """
    _, nkd, s1, s2 = label_stats_masked(
        X, w, shift, scale, np.empty(0, dtype=np.int64), np.zeros((1, X.shape[1])),
        n_blocks, parallel,
    )  # fmt: skip
    count = np.where(nkd[0] > 0.0, nkd[0], 1.0)
    return np.maximum(s2[0] / count - (s1[0] / count) ** 2, 0.0)


def _masked_trials_impl(X, w, shift, scale, d, labels, prev, k_prev, M, whole, total_var, dist,
                        n_blocks, first, last):  # fmt: skip
    """:func:`_seed_trials_impl` by partial distances; the candidates are in ``M``.

    See :func:`_masked_operand`.
    """
    n_samples, n_features = X.shape
    n_trials = M.shape[1] - 1 if whole else M.shape[1] // 2
    weighted = w.shape[0] > 0
    block = (n_samples + n_blocks - 1) // n_blocks
    pots = np.empty((n_blocks, n_trials))
    for b in range(first, last):
        u = np.zeros((_ROWS, 3 * n_features))
        prod = np.empty((_ROWS, M.shape[1]))
        pots[b] = 0.0
        stop = min((b + 1) * block, n_samples)
        for start in range(b * block, stop, _ROWS):
            n_rows = min(_ROWS, stop - start)
            _masked_chunk(X, start, n_rows, shift, scale, u)
            np.dot(u, M, prod)
            for r in range(n_rows):
                i = start + r
                if prev >= 0:
                    e = dist[i, prev]
                    if e < d[i]:
                        d[i] = e
                        labels[i] = k_prev
                wi = w[i] if weighted else 1.0
                di = d[i]
                for t in range(n_trials):
                    e = _scaled(prod, r, t, n_trials, total_var, whole)
                    dist[i, t] = e
                    pots[b, t] += wi * min(di, e)
    return pots


_masked_trials_kernel = _Blockwise(_masked_trials_impl)


def _masked_assign_impl(
    X, w, shift, scale, M, whole, total_var, labels, nearest_d, n_blocks, update, first, last
):
    n_samples, n_features = X.shape
    n_clusters = M.shape[1] - 1 if whole else M.shape[1] // 2
    weighted = w.shape[0] > 0
    block = (n_samples + n_blocks - 1) // n_blocks
    changed = np.zeros(n_blocks, dtype=np.int64)
    sums = np.zeros((n_blocks, n_clusters, n_features))
    counts = np.zeros((n_blocks, n_clusters, n_features))
    weight = np.zeros((n_blocks, n_clusters))
    for b in range(first, last):
        u = np.zeros((_ROWS, 3 * n_features))
        prod = np.empty((_ROWS, M.shape[1]))
        stop = min((b + 1) * block, n_samples)
        for start in range(b * block, stop, _ROWS):
            n_rows = min(_ROWS, stop - start)
            _masked_chunk(X, start, n_rows, shift, scale, u)
            np.dot(u, M, prod)
            for r in range(n_rows):
                i = start + r
                best = 0
                best_v = np.inf
                for k in range(n_clusters):
                    v = _scaled(prod, r, k, n_clusters, total_var, whole)
                    if v < best_v:  # the first of the smallest
                        best_v = v
                        best = k
                nearest_d[i] = best_v
                if labels[i] != best:
                    changed[b] += 1
                    labels[i] = best
                if update:
                    wi = w[i] if weighted else 1.0
                    weight[b, best] += wi
                    # A missing entry adds wi * 0 (z and o are 0 there): the
                    # same sums as skipping it, in a loop that vectorises.
                    o, z = u[r, :n_features], u[r, n_features : 2 * n_features]
                    s, c = sums[b, best], counts[b, best]
                    for j in range(n_features):
                        s[j] += wi * z[j]
                        c[j] += wi * o[j]
    return changed, sums, counts, weight


_masked_assign_kernel = _Blockwise(_masked_assign_impl)


def _masked_seed(X, w, shift, scale, n_clusters, random_state, parallel, n_blocks, var):
    """Greedy k-means++ seeds by partial distances: seeds, their observed entries, labels.

    Draws random numbers as :func:`_seed` does; ``labels`` is each row's
    nearest seed by the seeding's distances; ``var`` the features' variances.
    """
    n_samples, n_features = X.shape
    total_var = float(np.sum(var))
    first, n_trials = _first_draw(w, n_samples, n_clusters, random_state)
    seeds = np.empty((n_clusters, n_features))
    observed = np.empty((n_clusters, n_features), dtype=bool)
    seeds[:1], observed[:1] = masked_map(X, [first], shift, scale)
    d = np.full(n_samples, np.inf)
    labels = np.zeros(n_samples, dtype=np.int64)
    dist = np.empty((n_samples, n_trials))
    trials = _masked_trials_kernel.runner(parallel)
    M = _masked_operand(seeds[:1], observed[:1], var)
    none = np.int64(-1)
    pots = trials(X, w, shift, scale, d, labels, none, none, *M, total_var, dist, n_blocks)
    # Each seed's update of d and labels waits for the next pass, as in _seed.
    best = np.int64(0)
    for c in range(1, n_clusters):
        block_pot = np.ascontiguousarray(pots[:, best])
        ids = _draw_candidates(w, d, dist, best, block_pot, n_trials, random_state, n_blocks)
        cand, cand_observed = masked_map(X, ids, shift, scale)
        M = _masked_operand(cand, cand_observed, var)
        pots = trials(X, w, shift, scale, d, labels, best, np.int64(c - 1), *M, total_var, dist,
                      n_blocks)  # fmt: skip
        best = np.int64(np.argmin(_sequential_sum(pots)))
        seeds[c], observed[c] = cand[best], cand_observed[best]
    _seed_update(d, labels, dist, best, n_clusters - 1)
    return seeds, observed, labels


@keyboard_interrupts()
def kmeans_plusplus_masked(X, sample_weight, shift, scale, n_clusters, random_state, parallel):
    """:func:`kmeans_plusplus` for ``X`` with missing entries (NaN), by partial distances.

    The squared distance of a row to a seed is summed over the features both
    observe and scaled up to all features (see the comment above). Seeds
    are returned zero where their row has a missing entry.

    Returns
    -------
    labels : ndarray of shape (n_samples,), int64
        Each row's nearest seed.
    seeds : ndarray of shape (n_clusters, n_features), float64
        The seeds in mapped units.
    observed : ndarray of shape (n_clusters, n_features), bool
        Which entries of each seed's row are observed.
    """
    X, random_state = _check_X(X, n_clusters), check_random_state(random_state)
    shift, scale, w = _check(X, sample_weight, shift, scale)
    n_blocks = _n_blocks(X.shape[0])
    parallel = use_threads(parallel, X.size * n_clusters)
    with single_threaded_blas():
        var = _masked_variances(X, w, shift, scale, parallel, n_blocks)
        seeds, observed, labels = _masked_seed(
            X, w, shift, scale, n_clusters, random_state, parallel, n_blocks, var
        )
    return labels, seeds, observed


@keyboard_interrupts()
def nearest_masked(X, shift, scale, centres, observed, parallel, sample_weight=None):
    """:func:`nearest` for ``X`` with missing entries (NaN), by partial distances.

    Parameters
    ----------
    X, shift, scale, centres, parallel
        As in :func:`nearest`.
    observed : ndarray of shape (n_clusters, n_features), bool
        Which entries of each centre count (all of them for means, those of
        its row for a seed drawn from ``X``).
    sample_weight : ndarray of shape (n_samples,) or None, default=None
        The weights of the features' variances that scale the partial
        distances (as in :func:`kmeans_masked`); None means unit weights.

    Returns
    -------
    labels : ndarray of shape (n_samples,), int64
        The first centre at the smallest distance over the features both the
        row and the centre have, scaled up to all features (see
        :func:`kmeans_plusplus_masked`).
    """
    X = _read_only(X)
    shift, scale, w = _check(X, sample_weight, shift, scale)
    n_samples = X.shape[0]
    n_blocks = _n_blocks(n_samples)
    labels = np.full(n_samples, -1, dtype=np.int64)
    work = X.size * np.shape(centres)[0]
    parallel = use_threads(parallel, work)
    with single_threaded_blas():
        kernel = _masked_assign_kernel.runner(parallel)
        var = _masked_variances(X, w, shift, scale, parallel, n_blocks)
        M = _masked_operand(_f64(centres), observed, var)
        kernel(X, w, shift, scale, *M, float(np.sum(var)), labels, np.empty(n_samples),
               n_blocks, False)  # fmt: skip
    return labels


@keyboard_interrupts()
def kmeans_masked(
    X, sample_weight, shift, scale, n_clusters, random_state, parallel, max_iter=300, tol=1e-4
):  # fmt: skip
    """:func:`kmeans` for ``X`` with missing entries (NaN): k-means by partial distances.

    Seeds as :func:`kmeans_plusplus_masked`, then Lloyd's iterations: each
    row joins the centre nearest over its observed features, and each
    centre becomes the weighted mean of its rows' observed entries, feature
    by feature (a feature none of them observes keeps its value, or stays
    unobserved for a seed). Stops when no label changes, when the squared
    centre moves sum to at most ``tol`` times the mean variance of the
    observed entries (weighted by ``sample_weight``, unlike :func:`kmeans`'s,
    which is scikit-learn's unweighted one), or after ``max_iter`` iterations (then assigns once
    more). An empty cluster takes the row farthest from its centre, as
    scikit-learn relocates them.

    Returns
    -------
    labels : ndarray of shape (n_samples,), int64
        Cluster of each row.
    centres : ndarray of shape (n_clusters, n_features), float64
        Final centres in mapped units (zero where ``observed`` is False).
    n_iter : int
        Number of Lloyd iterations run.
    """
    X, random_state = _check_X(X, n_clusters), check_random_state(random_state)
    shift, scale, w = _check(X, sample_weight, shift, scale)
    n_samples = X.shape[0]
    n_blocks = _n_blocks(n_samples)
    parallel = use_threads(parallel, X.size * n_clusters)
    with single_threaded_blas():
        assign = _masked_assign_kernel.runner(parallel)
        var = _masked_variances(X, w, shift, scale, parallel, n_blocks)
        total_var = float(np.sum(var))
        tol = float(np.mean(var) * tol)
        centres, observed, labels = _masked_seed(
            X, w, shift, scale, n_clusters, random_state, parallel, n_blocks, var
        )
        nearest_d = np.empty(n_samples)
        for it in range(max_iter):
            M = _masked_operand(centres, observed, var)
            changed, sums, counts, weight = (
                _sequential_sum(a)
                for a in assign(
                    X, w, shift, scale, *M, total_var, labels, nearest_d, n_blocks, True
                )
            )
            if it > 0 and changed == 0:
                return labels, centres, it + 1
            new = np.where(counts > 0, sums / np.where(counts > 0, counts, 1.0), centres)
            observed = observed | (counts > 0)
            empty = np.flatnonzero(weight == 0.0)
            if empty.size and np.max(nearest_d) > 0.0:
                far = np.argpartition(nearest_d, -empty.size)[: -empty.size - 1 : -1]
                new[empty], observed[empty] = masked_map(X, far, shift, scale)
            move = np.sum((new - centres) ** 2)
            centres = new
            if move <= tol:
                break
        assign(X, w, shift, scale, *_masked_operand(centres, observed, var), total_var, labels,
               nearest_d, n_blocks, False)  # fmt: skip
    return labels, centres, it + 1
