"""The explicit SIMD of ``natgmm._simd`` against the loops it stands for.

The transposition moves values: it must give exactly ``src.T``. The
deviation updates must give, bit for bit, what the kernels' scalar loop
gives (the same operations and multiply-adds per element), whatever the
feature count (vectors and a remainder), the row's dtype and its stride.
"""

import numba
import numpy as np
import pytest
from numpy.testing import assert_allclose, assert_array_equal

from natgmm import _kernels, _simd


@pytest.mark.parametrize(
    "src_dtype, dst_dtype",
    [(np.float64, np.float64), (np.float32, np.float32), (np.float64, np.float32)],
)
def test_transpose_is_exact(src_dtype, dst_dtype):
    """Shapes around the tiles (full, partial, none); the columns past ``n_rows`` untouched."""
    rng = np.random.default_rng(0)
    shapes = [(r, c) for r in (1, 7, 8, 9, 16, 23) for c in (1, 3, 8, 13, 17)]
    for n_rows, n_cols in [*shapes, (64, 50), (128, 50), (128, 20), (64, 784)]:
        src = rng.normal(size=(n_rows + 3, n_cols)).astype(src_dtype)
        dst = np.full((n_cols, n_rows + 5), -1.0, dtype=dst_dtype)
        _kernels._transpose(src, n_rows, dst)
        assert_array_equal(dst[:, :n_rows], src[:n_rows].T.astype(dst_dtype))
        assert np.all(dst[:, n_rows:] == -1.0)


@numba.njit(fastmath=_kernels.FASTMATH)
def _loop(x, shift, scale, ref, rk, s1, s2):
    # The kernels' loop (_add_about_ref_x before the intrinsic; without a
    # map, _add_about_ref's).
    for j in range(ref.shape[0]):
        z = (x[j] - shift[j]) * scale[j] if shift.shape[0] else np.float64(x[j])
        d = z - ref[j]
        t = rk * d
        s1[j] += t
        s2[j] += t * d


@numba.njit
def _mapped(x, shift, scale, ref, rk, s1, s2):
    _simd._add_mapped_deviations(x, shift, scale, ref, rk, s1, s2)


@numba.njit
def _unmapped(z, ref, rk, s1, s2):
    _simd._add_deviations(z, ref, rk, s1, s2)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("mapped", [True, False])
def test_deviation_updates_are_the_kernels_loop(dtype, mapped):
    rng = np.random.default_rng(1)
    for n_features in [*range(1, 20), 50, 101]:
        row = (rng.normal(size=n_features + 2) * 30.0 + 100.0).astype(dtype)
        shift = rng.normal(size=n_features) + 100.0 if mapped else np.empty(0)
        scale = rng.uniform(0.01, 0.1, size=n_features) if mapped else np.empty(0)
        ref = rng.normal(size=n_features) * (1.0 if mapped else 30.0)
        rk = float(rng.uniform(0.1, 2.0))
        s1, s2 = rng.normal(size=(2, n_features))
        strided = np.stack([row, row], axis=1)[:, 0]
        for x in (row, strided):  # longer than ref: its first features
            got = [s1.copy(), s2.copy()]
            if mapped:
                _mapped(x, shift, scale, ref, rk, *got)
            else:
                _unmapped(x, ref, rk, *got)
            expected = [s1.copy(), s2.copy()]
            _loop(x, shift, scale, ref, rk, *expected)
            assert_array_equal(got[0], expected[0])
            assert_array_equal(got[1], expected[1])
            z = x[:n_features].astype(np.float64)
            d = ((z - shift) * scale if mapped else z) - ref
            assert_allclose(got[0], s1 + rk * d, rtol=1e-12, atol=1e-12)
            assert_allclose(got[1], s2 + rk * d * d, rtol=1e-12, atol=1e-12)
