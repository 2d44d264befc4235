"""Explicit SIMD for the kernels, written as LLVM IR (numba intrinsics).

numba vectorises loops but not every pattern the kernels need: it leaves
floating-point reductions scalar unless allowed to reassociate them (which
would leave their order to the compiler), and it does not run LLVM's SLP
vectoriser, which turns fixed-size blocks of code into vector operations.
The intrinsics here spell those vector operations out: sums over features
in one fixed order (k-means' distances), the transposition of small
matrices tile by tile (the kernels' log-densities, rows by components, into
components by rows), and the update of a component's sums by one row's
deviations from its mean (the statistics of sparse chunks and of labels).
Each has a NumPy stand-in under ``NUMBA_DISABLE_JIT=1``.
"""

import numpy as np
from llvmlite import ir
from numba import config, types
from numba.core import cgutils
from numba.extending import intrinsic

# Reductions over features in explicit SIMD, written as LLVM IR: numba
# vectorises no floating-point reduction without reassociation (which would
# leave the order to the compiler) and does not run LLVM's SLP vectoriser.
# Every sum has one fixed order: the features in vectors of _LANES, the
# even and the odd vectors in two vector accumulators (products fused into
# them where the CPU has FMA, as the kernels' "contract" flag allows), added
# lane by lane, the lanes as (l0 + l1) + (l2 + l3), then the last
# n_features % _LANES features one by one.
_LANES = 4  # float64 lanes (AVX2's)
_GROUP = 4  # sums of _shifted_dots sharing each loaded vector of the row
_MERGED = 3  # rows past the last group of four that join it (not a group of their own)


def _is_float_array(a, dtypes=(types.float64,), ndim=1, contiguous=False):
    return (
        isinstance(a, types.Array) and a.ndim == ndim and a.dtype in dtypes
        and (a.layout == "C" or not contiguous)
    )  # fmt: skip


def _vector_loader(builder, arr, arr_type):
    """``load(j)``: elements ``j`` to ``j + _LANES - 1`` as a float64 vector; ``load(j, 1)``: ``j``.

    Elements of a C-contiguous array (of any dimension) in their flat order,
    of another 1-D array by its stride.
    """
    element = arr.data.type.pointee
    double = ir.DoubleType()
    contiguous = arr_type.layout == "C"
    if not contiguous:
        raw = builder.bitcast(arr.data, ir.IntType(8).as_pointer())
        stride = builder.extract_value(arr.strides, 0)

    def pointer(j):
        if contiguous:
            return builder.gep(arr.data, [j])
        return builder.bitcast(builder.gep(raw, [builder.mul(j, stride)]), element.as_pointer())

    def load(j, width=_LANES):
        if width == 1:
            v = builder.load(pointer(j))
            return v if element == double else builder.fpext(v, double)
        vector = ir.VectorType(element, width)
        if contiguous:
            ptr = builder.bitcast(pointer(j), vector.as_pointer())
            v = builder.load(ptr, align=arr_type.dtype.bitwidth // 8)
        else:
            v = ir.Constant(vector, ir.Undefined)
            for k in range(width):
                ptr = pointer(builder.add(j, ir.Constant(j.type, k)))
                v = builder.insert_element(v, builder.load(ptr), ir.Constant(ir.IntType(32), k))
        return v if element == double else builder.fpext(v, ir.VectorType(double, width))

    return load


def _emit_sums(builder, n_features, shared, terms):
    """``[sum_j term(shared(j), j) for term in terms]`` over ``j < n_features``, in the order above.

    ``shared(j, width)`` is computed once per vector (or feature) for all the
    sums; ``term(u, j, width)`` returns the vector (or scalar) of products.
    """
    intp = n_features.type

    def const(v):
        return ir.Constant(intp, v)

    flags = ("contract",)
    n_vec = builder.sdiv(n_features, const(_LANES))
    zero = ir.Constant(ir.VectorType(ir.DoubleType(), _LANES), [0.0] * _LANES)
    accs = [[cgutils.alloca_once_value(builder, zero) for _ in range(2)] for _ in terms]

    def step(q, k):
        j = builder.mul(q, const(_LANES))
        u = shared(j, _LANES)
        for term, acc in zip(terms, accs, strict=True):
            builder.store(
                builder.fadd(builder.load(acc[k]), term(u, j, _LANES), flags=flags), acc[k]
            )

    with cgutils.for_range(builder, builder.sdiv(n_vec, const(2))) as loop:
        q = builder.mul(loop.index, const(2))
        step(q, 0)
        step(builder.add(q, const(1)), 1)
    with builder.if_then(builder.icmp_signed("!=", builder.srem(n_vec, const(2)), const(0))):
        step(builder.sub(n_vec, const(1)), 0)
    totals = []
    for acc in accs:
        v = builder.fadd(builder.load(acc[0]), builder.load(acc[1]))
        lane = [builder.extract_element(v, ir.Constant(ir.IntType(32), k)) for k in range(4)]
        total = builder.fadd(builder.fadd(lane[0], lane[1]), builder.fadd(lane[2], lane[3]))
        totals.append(cgutils.alloca_once_value(builder, total))
    start = builder.mul(n_vec, const(_LANES))
    with cgutils.for_range_slice(builder, start, n_features, const(1)) as (j, _):
        u = shared(j, 1)
        for term, total in zip(terms, totals, strict=True):
            builder.store(builder.fadd(builder.load(total), term(u, j, 1), flags=flags), total)
    return [builder.load(total) for total in totals]


def _square(builder):
    return lambda u, j, width: builder.fmul(u, u, flags=("contract",))


def _pair_loaders(context, builder, signature, args):
    """Return the length of the first of two 1-D arrays and a :func:`_vector_loader` of each."""
    aa, ba = (
        context.make_array(t)(context, builder, v)
        for t, v in zip(signature.args, args, strict=True)
    )
    load_a = _vector_loader(builder, aa, signature.args[0])
    load_b = _vector_loader(builder, ba, signature.args[1])
    return builder.extract_value(aa.shape, 0), load_a, load_b


@intrinsic
def _sum_sq_diff(typingctx, a, b):
    """``sum((a - b) ** 2)`` of float64 vectors of one length, in SIMD in the order above."""
    if not (_is_float_array(a) and _is_float_array(b)):
        return None

    def codegen(context, builder, signature, args):
        n, load_a, load_b = _pair_loaders(context, builder, signature, args)

        def diff(j, width):
            return builder.fsub(load_a(j, width), load_b(j, width))

        return _emit_sums(builder, n, diff, [_square(builder)])[0]

    return types.float64(a, b), codegen


@intrinsic
def _sum_sq(typingctx, a):
    """``sum(a ** 2)`` of a float64 vector, in SIMD in the order above."""
    if not _is_float_array(a):
        return None

    def codegen(context, builder, signature, args):
        aa = context.make_array(signature.args[0])(context, builder, args[0])
        load_a = _vector_loader(builder, aa, signature.args[0])
        n = builder.extract_value(aa.shape, 0)
        return _emit_sums(builder, n, load_a, [_square(builder)])[0]

    return types.float64(a), codegen


@intrinsic
def _sum_sq_diff_and_sq(typingctx, a, b):
    """``(sum((a - b) ** 2), sum(a ** 2))`` in one pass over ``a``, each in the order above.

    Bit for bit ``(_sum_sq_diff(a, b), _sum_sq(a))``: the same operations
    per sum, sharing the loads of ``a``. Lloyd's iterations need both for a
    row whose bounds failed (its own-centre distance, then its norm if it
    goes on to the product); the second sum is an independent chain that
    costs little beside the first, where a pass of its own over the row
    cost more: Lloyd's kernel took 5 to 6 % less time (60 000 x 50
    latents, K = 20 and 50, serial).
    """
    if not (_is_float_array(a) and _is_float_array(b)):
        return None

    def codegen(context, builder, signature, args):
        n, load_a, load_b = _pair_loaders(context, builder, signature, args)

        def diff_sq(u, j, width):
            d = builder.fsub(u, load_b(j, width))
            return builder.fmul(d, d, flags=("contract",))

        sums = _emit_sums(builder, n, load_a, [diff_sq, _square(builder)])
        return context.make_tuple(builder, signature.return_type, sums)

    return types.UniTuple(types.float64, 2)(a, b), codegen


@intrinsic
def _shifted_dots(typingctx, x, shift, C, out):
    """``out[t] = sum_j (x[j] - shift[j]) * C[t, j]`` for every row ``t`` of ``C``, in SIMD.

    ``x`` is a row of the data (float32 or float64, any stride), the others
    float64 and C-contiguous, ``C`` of shape ``(len(out), len(x))``. Each sum
    is in the order above whatever ``len(out)``. Rows of ``C`` are taken four
    at a time (up to seven for the last group rather than a group of one to
    three of its own), sharing each loaded vector of ``x - shift``.
    """
    if not (
        _is_float_array(x, (types.float32, types.float64))
        and _is_float_array(shift, contiguous=True)
        and _is_float_array(C, ndim=2, contiguous=True)
        and _is_float_array(out, contiguous=True)
    ):
        return None

    def codegen(context, builder, signature, args):
        xa, sa, ca, oa = (
            context.make_array(a)(context, builder, v)
            for a, v in zip(signature.args, args, strict=True)
        )
        load_x = _vector_loader(builder, xa, signature.args[0])
        load_shift = _vector_loader(builder, sa, signature.args[1])
        load_c = _vector_loader(builder, ca, signature.args[2])
        intp = ca.shape.type.element
        n_trials = builder.extract_value(ca.shape, 0)
        n_features = builder.extract_value(ca.shape, 1)
        row_len = builder.sdiv(builder.extract_value(ca.strides, 0), ir.Constant(intp, 8))

        def const(v):
            return ir.Constant(intp, v)

        def shifted(j, width):
            return builder.fsub(load_x(j, width), load_shift(j, width))

        def candidate(row):
            def term(u, j, width):
                return builder.fmul(u, load_c(builder.add(row, j), width), flags=("contract",))

            return term

        def group(t0, size):
            rows = [builder.mul(builder.add(t0, const(g)), row_len) for g in range(size)]
            sums = _emit_sums(builder, n_features, shifted, [candidate(row) for row in rows])
            for g, total in enumerate(sums):
                builder.store(total, builder.gep(oa.data, [builder.add(t0, const(g))]))

        # Groups of four; the last one to _MERGED rows join the group before it
        # (1 <= last <= _MERGED as one unsigned comparison of last - 1).
        n_groups = builder.sdiv(n_trials, const(_GROUP))
        last = builder.sub(n_trials, builder.mul(n_groups, const(_GROUP)))
        merge = builder.and_(
            builder.icmp_unsigned("<", builder.sub(last, const(1)), const(_MERGED)),
            builder.icmp_signed(">", n_groups, const(0)),
        )
        n_full = builder.sub(n_groups, builder.zext(merge, intp))
        with cgutils.for_range(builder, n_full) as loop:
            group(builder.mul(loop.index, const(_GROUP)), _GROUP)
        start = builder.mul(n_full, const(_GROUP))
        size = builder.sub(n_trials, start)
        for k in (*range(1, _GROUP), *range(_GROUP + 1, _GROUP + _MERGED + 1)):
            with builder.if_then(builder.icmp_signed("==", size, const(k))):
                group(start, k)
        return context.get_dummy_value()

    return types.void(x, shift, C, out), codegen


@intrinsic
def _prefetch_row(typingctx, X, i):
    """Hint the CPU to load row ``i`` of the 2-D array ``X`` into cache; no effect on results.

    Lloyd's iterations read the scattered rows whose bounds failed: without
    the hint each waits for memory. A prefetch never faults, so the index
    is taken as valid, as any stride is.
    """
    if not (isinstance(X, types.Array) and X.ndim == 2 and i == types.int64):
        return None

    def codegen(context, builder, signature, args):
        xa = context.make_array(signature.args[0])(context, builder, args[0])
        byte = ir.IntType(8).as_pointer()
        i32 = ir.IntType(32)
        prefetch = builder.module.declare_intrinsic(
            "llvm.prefetch", [byte], ir.FunctionType(ir.VoidType(), [byte, i32, i32, i32])
        )
        intp = xa.strides.type.element
        start = builder.gep(
            builder.bitcast(xa.data, byte),
            [builder.mul(args[1], builder.extract_value(xa.strides, 0))],
        )
        n_bytes = builder.mul(
            builder.extract_value(xa.shape, 1), builder.extract_value(xa.strides, 1)
        )
        line = ir.Constant(intp, 64)
        with cgutils.for_range_slice(builder, ir.Constant(intp, 0), n_bytes, line) as (offset, _):
            # Read, keep in all cache levels, data cache.
            builder.call(
                prefetch, [builder.gep(start, [offset]), *(ir.Constant(i32, v) for v in (0, 3, 1))]
            )
        return context.get_dummy_value()

    return types.void(X, i), codegen


# Square tiles of the transposition: eight rows of eight elements, as
# vectors of eight, a 256-bit register of float32 (two of float64).
TILE = 8


def _shuffle(builder, a, b, mask):
    i32 = ir.IntType(32)
    return builder.shuffle_vector(a, b, ir.Constant(ir.VectorType(i32, len(mask)), mask))


def _transpose_vectors(builder, rows):
    """Return the eight columns of the eight vectors ``rows``, as vectors.

    Three rounds of two-vector shuffles (AVX's unpack, shuffle and 128-bit
    permute of an 8 x 8 float32 transposition), as LLVM's x86 backend
    lowers them.
    """
    a = []
    for p in range(0, TILE, 2):
        a.append(_shuffle(builder, rows[p], rows[p + 1], [0, 8, 1, 9, 4, 12, 5, 13]))
        a.append(_shuffle(builder, rows[p], rows[p + 1], [2, 10, 3, 11, 6, 14, 7, 15]))
    low, high = [0, 1, 8, 9, 4, 5, 12, 13], [2, 3, 10, 11, 6, 7, 14, 15]
    b = []
    for p, q in ((0, 2), (1, 3), (4, 6), (5, 7)):
        b += [_shuffle(builder, a[p], a[q], low), _shuffle(builder, a[p], a[q], high)]
    low, high = [0, 1, 2, 3, 8, 9, 10, 11], [4, 5, 6, 7, 12, 13, 14, 15]
    return [_shuffle(builder, b[j], b[j + 4], low) for j in range(4)] + [
        _shuffle(builder, b[j], b[j + 4], high) for j in range(4)
    ]


@intrinsic
def _transpose_tile(typingctx, src, dst, r0, k0):
    """``dst[k0 + j, r0 + i] = src[r0 + i, k0 + j]`` for ``i, j < TILE``.

    ``src`` and ``dst`` are C-contiguous 2-D float64 or float32 arrays
    (float64 into float32 rounds, as an assignment does); the tile must lie
    inside both. Exact data movement: the same values as a loop.
    """
    dtypes = (types.float32, types.float64)
    if not (
        all(isinstance(a, types.Array) and a.ndim == 2 and a.layout == "C" for a in (src, dst))
        and src.dtype in dtypes
        and dst.dtype in dtypes
        and not (src.dtype == types.float32 and dst.dtype == types.float64)
    ):
        return None

    def codegen(context, builder, signature, args):
        sa, da = (
            context.make_array(t)(context, builder, v)
            for t, v in zip(signature.args[:2], args[:2], strict=True)
        )
        r0, k0 = args[2], args[3]
        n_cols = builder.extract_value(sa.shape, 1)
        n_rows = builder.extract_value(da.shape, 1)
        intp = n_cols.type
        load_type = ir.VectorType(sa.data.type.pointee, TILE)
        store_type = ir.VectorType(da.data.type.pointee, TILE)
        rows = []
        for i in range(TILE):
            at = builder.add(builder.mul(builder.add(r0, ir.Constant(intp, i)), n_cols), k0)
            pointer = builder.bitcast(builder.gep(sa.data, [at]), load_type.as_pointer())
            row = builder.load(pointer, align=signature.args[0].dtype.bitwidth // 8)
            if load_type != store_type:
                row = builder.fptrunc(row, store_type)
            rows.append(row)
        for j, column in enumerate(_transpose_vectors(builder, rows)):
            at = builder.add(builder.mul(builder.add(k0, ir.Constant(intp, j)), n_rows), r0)
            pointer = builder.bitcast(builder.gep(da.data, [at]), store_type.as_pointer())
            builder.store(column, pointer, align=signature.args[1].dtype.bitwidth // 8)
        return context.get_dummy_value()

    return types.void(src, dst, r0, k0), codegen


def _vector_storer(builder, arr):
    """``store(value, j, width)``: a float64 vector (or scalar) at ``j`` of a C-contiguous array."""

    def store(value, j, width):
        pointer = builder.gep(arr.data, [j])
        if width > 1:
            pointer = builder.bitcast(pointer, ir.VectorType(ir.DoubleType(), width).as_pointer())
        builder.store(value, pointer, align=8)

    return store


# float64 lanes of the deviations' updates (two AVX2 registers, one AVX-512).
_UPDATE_LANES = 8


def _deviations_codegen(mapped):
    """Codegen of :func:`_add_mapped_deviations` (``mapped``) or :func:`_add_deviations`."""

    def codegen(context, builder, signature, args):
        arrays = [
            context.make_array(t)(context, builder, v) if isinstance(t, types.Array) else v
            for t, v in zip(signature.args, args, strict=True)
        ]
        loaders = [
            _vector_loader(builder, a, t) if isinstance(t, types.Array) else None
            for a, t in zip(arrays, signature.args, strict=True)
        ]
        if mapped:
            load_x, load_shift, load_scale, load_ref, _, load_s1, load_s2 = loaders
            ref, rk, s1, s2 = arrays[3:]
        else:
            load_x, load_ref, _, load_s1, load_s2 = loaders
            ref, rk, s1, s2 = arrays[1:]
        store_s1, store_s2 = _vector_storer(builder, s1), _vector_storer(builder, s2)
        n = builder.extract_value(ref.shape, 0)
        intp = n.type
        flags = ("nsz", "contract")  # the kernels' fast-math flags

        def step(j, width):
            z = load_x(j, width)
            if mapped:
                z = builder.fsub(z, load_shift(j, width), flags=flags)
                z = builder.fmul(z, load_scale(j, width), flags=flags)
            d = builder.fsub(z, load_ref(j, width), flags=flags)
            r = rk
            if width > 1:
                vector = ir.VectorType(ir.DoubleType(), width)
                r = builder.insert_element(ir.Constant(vector, ir.Undefined), rk, ir.IntType(32)(0))
                r = _shuffle(builder, r, ir.Constant(vector, ir.Undefined), [0] * width)
            t = builder.fmul(r, d, flags=flags)
            store_s1(builder.fadd(load_s1(j, width), t, flags=flags), j, width)
            t2 = builder.fmul(t, d, flags=flags)
            store_s2(builder.fadd(load_s2(j, width), t2, flags=flags), j, width)

        lanes = ir.Constant(intp, _UPDATE_LANES)
        n_vec = builder.sdiv(n, lanes)
        with cgutils.for_range(builder, n_vec) as loop:
            step(builder.mul(loop.index, lanes), _UPDATE_LANES)
        with cgutils.for_range_slice(builder, builder.mul(n_vec, lanes), n, intp(1)) as (j, _):
            step(j, 1)
        return context.get_dummy_value()

    return codegen


def _deviations_typed(x, ref, rk, s1, s2, *map_arrays):
    return (
        _is_float_array(x, (types.float32, types.float64))
        and all(_is_float_array(a) for a in map_arrays)
        and all(_is_float_array(a, contiguous=True) for a in (ref, s1, s2))
        and rk == types.float64
    )


@intrinsic
def _add_mapped_deviations(typingctx, x, shift, scale, ref, rk, s1, s2):
    """``d = (x - shift) * scale - ref``, ``t = rk * d``; ``s1 += t``, ``s2 += t * d``.

    Elementwise over the ``len(ref)`` first features, in vectors of
    ``_UPDATE_LANES``. ``x`` is a row of the data (float32 or float64, any
    stride), ``rk`` a float64, the arrays float64, ``ref``, ``s1`` and
    ``s2`` C-contiguous. Each element gets the operations, with their
    "contract" flags (so the same multiply-adds), of the kernels' loop
    ``for j: d = (x[j] - shift[j]) * scale[j] - ref[j]; ...``: numba
    vectorised that loop in blocks of 32 features, which left most of 50
    to its scalar remainder.
    """
    if not _deviations_typed(x, ref, rk, s1, s2, shift, scale):
        return None
    return types.void(x, shift, scale, ref, rk, s1, s2), _deviations_codegen(True)


@intrinsic
def _add_deviations(typingctx, z, ref, rk, s1, s2):
    """:func:`_add_mapped_deviations` of a mapped row ``z``: ``d = z - ref``."""
    if not _deviations_typed(z, ref, rk, s1, s2):
        return None
    return types.void(z, ref, rk, s1, s2), _deviations_codegen(False)


if config.DISABLE_JIT:
    # numba's pure-Python mode (NUMBA_DISABLE_JIT=1, for debuggers and
    # coverage) cannot run intrinsics: the same sums in NumPy, whose order
    # of additions, and so last bits, differ.
    def _sum_sq_diff(a, b):
        return float(np.sum((np.asarray(a, dtype=np.float64) - b) ** 2))

    def _sum_sq(a):
        return float(np.sum(np.asarray(a, dtype=np.float64) ** 2))

    def _sum_sq_diff_and_sq(a, b):
        return _sum_sq_diff(a, b), _sum_sq(a)

    def _shifted_dots(x, shift, C, out):
        u = np.asarray(x, dtype=np.float64) - shift
        for t in range(C.shape[0]):  # a row's sum does not depend on the others
            out[t] = C[t] @ u

    def _prefetch_row(X, i):
        pass

    def _transpose_tile(src, dst, r0, k0):
        dst[k0 : k0 + TILE, r0 : r0 + TILE] = src[r0 : r0 + TILE, k0 : k0 + TILE].T

    def _add_mapped_deviations(x, shift, scale, ref, rk, s1, s2):
        n = ref.shape[0]
        d = (np.asarray(x[:n], dtype=np.float64) - shift[:n]) * scale[:n] - ref
        s1 += rk * d
        s2 += rk * d * d

    def _add_deviations(z, ref, rk, s1, s2):
        d = np.asarray(z[: ref.shape[0]], dtype=np.float64) - ref
        s1 += rk * d
        s2 += rk * d * d
