"""The Numba kernels against the naive references in ``naive.py``."""

import naive
import numba
import numpy as np
import pytest
from numpy.testing import assert_allclose, assert_array_equal

from natgmm import _kernels
from natgmm._em import Params, natural_parameters

# float64 kernels evaluate the same sums as the references in another order:
# agreement to a few hundred ulps. float32 data and natural parameters carry
# about 7 digits into sums of order n_features, hence the looser bound.
RTOL = {np.float64: 1e-10, np.float32: 2e-5}


def _problem(dtype, n_samples=203, n_features=7, n_components=5, seed=0, spread=3.0):
    rng = np.random.default_rng(seed)
    means = rng.normal(scale=spread, size=(n_components, n_features))
    labels = rng.integers(n_components, size=n_samples)
    X = (means[labels] + rng.normal(size=(n_samples, n_features))) * 10 + 5
    shift = np.full(n_features, 5.0)
    scale = np.full(n_features, 0.1)
    X = X.astype(dtype)
    params = Params(
        rng.dirichlet(np.ones(n_components)),
        rng.normal(scale=spread, size=(n_components, n_features)),
        rng.uniform(0.5, 2.0, size=(n_components, n_features)),
    )
    Z = (X.astype(np.float64) - shift) * scale
    return X, Z, shift.astype(dtype), scale.astype(dtype), params, labels


def _natural(params, dtype):
    eta1, eta2, log_norm = natural_parameters(params)
    return eta1.astype(dtype), eta2.astype(dtype), log_norm


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("parallel", [False, True])
@pytest.mark.parametrize("n_blocks", [1, 3, 64])
def test_em_stats_matches_naive(dtype, weighted, parallel, n_blocks):
    X, Z, shift, scale, params, _ = _problem(dtype)
    rng = np.random.default_rng(1)
    sw = rng.uniform(0, 3, size=X.shape[0]) if weighted else np.empty(0)
    ref = params.means + 0.1
    got = _kernels.em_stats(X, sw, shift, scale, *_natural(params, dtype), ref, n_blocks, parallel)
    expected = naive.em_stats(Z, sw if weighted else np.ones(len(X)), *params, ref)
    for g, e in zip(got, expected, strict=True):
        assert_allclose(g, e, rtol=RTOL[dtype], atol=RTOL[dtype] * np.max(np.abs(e)))


@pytest.mark.parametrize("beta", [0.05, 0.5])
def test_tempered_em_stats_match_naive(beta):
    X, Z, shift, scale, params, _ = _problem(np.float64)
    ref = params.means
    got = _kernels.em_stats(
        X, np.empty(0), shift, scale, *_natural(params, np.float64), ref, 4, True, beta
    )
    expected = naive.em_stats(Z, np.ones(len(X)), *params, ref, beta=beta)
    for g, e in zip(got, expected, strict=True):
        assert_allclose(g, e, rtol=1e-10, atol=1e-10 * np.max(np.abs(e)))


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("parallel", [False, True])
def test_log_prob_matches_naive(dtype, parallel):
    X, Z, shift, scale, params, _ = _problem(dtype, n_samples=101)
    n = X.shape[0]
    out, labels, resp = np.empty(n), np.empty(n, dtype=np.int64), np.empty((n, 5))
    _kernels.log_prob(X, shift, scale, *_natural(params, dtype), out, labels, resp, parallel)
    log_norm, expected_labels, expected_resp = naive.log_prob(Z, *params)
    assert_allclose(out, log_norm, rtol=RTOL[dtype])
    assert_array_equal(labels, expected_labels)
    assert_allclose(resp, expected_resp, rtol=RTOL[dtype] * 10, atol=1e-12)
    # Without a responsibilities array only the log-densities and labels come back.
    empty = np.empty((0, 5))
    _kernels.log_prob(X, shift, scale, *_natural(params, dtype), out, labels, empty, parallel)
    assert_allclose(out, log_norm, rtol=RTOL[dtype])


@pytest.mark.parametrize("weighted", [False, True])
def test_label_stats_matches_naive(weighted):
    X, Z, shift, scale, params, labels = _problem(np.float64)
    sw = np.random.default_rng(2).uniform(0, 2, size=len(X)) if weighted else np.empty(0)
    ref = params.means
    got = _kernels.label_stats(X, sw, shift, scale, labels.astype(np.int64), ref, 5, True)
    expected = naive.label_stats(Z, sw if weighted else np.ones(len(X)), labels, ref)
    for g, e in zip(got, expected, strict=True):
        assert_allclose(g, e, rtol=1e-12, atol=1e-12 * np.max(np.abs(e)))
    # An empty labels array puts every row in component 0.
    got = _kernels.label_stats(X, sw, shift, scale, np.empty(0, np.int64), ref[:1], 5, True)
    expected = naive.label_stats(Z, sw if weighted else np.ones(len(X)), 0 * labels, ref[:1])
    assert_allclose(got[0], expected[0], rtol=1e-12)


def test_far_components_and_zero_weight():
    """Terms below the exp cutoff and log-weight -inf change no result."""
    X, Z, shift, scale, params, _ = _problem(np.float64, spread=300.0)
    weights = params.weights.copy()
    weights[2] = 0.0
    weights /= weights.sum()
    params = params._replace(weights=weights)
    ref = params.means
    got = _kernels.em_stats(
        X, np.empty(0), shift, scale, *_natural(params, np.float64), ref, 4, True
    )
    expected = naive.em_stats(Z, np.ones(len(X)), *params, ref)
    assert got[1][2] == 0.0
    for g, e in zip(got, expected, strict=True):
        assert_allclose(g, e, rtol=1e-10, atol=1e-300)


def test_sparse_chunks_with_rows_between_components():
    """Sparse chunks whose rows have one, two or no non-zero terms.

    Twenty components far apart: most rows have a single non-zero
    responsibility, taken directly; every fifth row lies midway between
    components 3 and 7 (two non-zero terms, neither the first component),
    and some rows have zero weight (no term).
    """
    rng = np.random.default_rng(3)
    n_components, n_features = 20, 4
    means = 40.0 * rng.normal(size=(n_components, n_features))
    labels = rng.integers(n_components, size=640)
    Z = means[labels] + rng.normal(size=(640, n_features))
    Z[::5] = 0.5 * (means[3] + means[7]) + 1e-3 * rng.normal(size=(128, n_features))
    sw = rng.uniform(0.5, 2.0, size=640)
    sw[1::7] = 0.0
    params = Params(np.full(n_components, 1 / n_components), means, np.ones(means.shape))
    ref = means + 0.5
    got = _kernels.em_stats(
        Z,
        sw,
        np.zeros(n_features),
        np.ones(n_features),
        *_natural(params, np.float64),
        ref,
        1,
        False,
    )
    expected = naive.em_stats(Z, sw, *params, ref)
    # The chunks are sparse (the row-by-row path) and the midway rows have
    # two terms of comparable size.
    _, _, resp = naive.log_prob(Z, *params)
    assert np.count_nonzero(resp) < _kernels._DENSE * resp.size
    assert np.all(np.count_nonzero(resp[::5] > 1e-3, axis=1) == 2)
    for g, e in zip(got, expected, strict=True):
        assert_allclose(g, e, rtol=1e-12, atol=1e-12 * np.max(np.abs(e)))


def test_narrow_far_component_keeps_its_digits():
    """A narrow component far from the centre is summed about its mean.

    Chunks where the two broad components overlap every row are dense, so
    their statistics come from one product about the origin; the narrow
    component at 40 (ratio mean**2 / var = 1.6e7, seven digits to cancel)
    is summed term by term about its mean and keeps its scatter to 1e-12,
    against an extended-precision reference.
    """
    rng = np.random.default_rng(3)
    Z = np.concatenate([rng.normal(size=(1800, 3)), 40 + 0.01 * rng.normal(size=(200, 3))])
    params = Params(
        np.array([0.5, 0.4, 0.1]),
        np.array([[0.0] * 3, [1.0] * 3, [40.0] * 3]),
        np.array([[1.0] * 3, [4.0] * 3, [1e-4] * 3]),
    )
    ref = params.means + 1e-3
    ones = np.ones(3)
    got = _kernels.em_stats(
        Z, np.empty(0), 0 * ones, ones, *_natural(params, np.float64), ref, 4, True
    )
    _, _, resp = naive.log_prob(Z, *params)
    R, D = resp.astype(np.longdouble), Z.astype(np.longdouble)
    s2 = np.stack([R[:, k] @ (D - ref[k]) ** 2 for k in range(3)])
    # Every row, so every chunk, has more non-zero terms than a sparse chunk.
    assert np.all(np.count_nonzero(resp, axis=1) > _kernels._DENSE * 3)
    assert_allclose(got[3][2], s2[2].astype(np.float64), rtol=1e-12)
    # The broad components, moved from the origin, lose at most three digits.
    assert_allclose(got[3][:2], s2[:2].astype(np.float64), rtol=1e-13)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_thread_count_does_not_change_results(dtype):
    X, _, shift, scale, params, _ = _problem(dtype, n_samples=5000)
    args = (X, np.empty(0), shift, scale, *_natural(params, dtype), params.means, 16)
    previous = numba.get_num_threads()
    results = []
    try:
        for n_threads in (1, numba.config.NUMBA_NUM_THREADS):
            numba.set_num_threads(n_threads)
            results.append(_kernels.em_stats(*args, True))
    finally:
        numba.set_num_threads(previous)
    results.append(_kernels.em_stats(*args, False))
    for other in results[1:]:
        for a, b in zip(results[0], other, strict=True):
            assert_array_equal(a, b)


def _softmax_exp(x):
    """exp(x) for x <= 0 from the soft-max kernel: a column (x, 0) has top 0."""
    lp = np.stack([x, np.zeros_like(x)])
    ev = np.empty_like(lp)
    top, total = np.empty(x.shape), np.empty(x.shape)
    _kernels._softmax_columns(lp, top, ev, total)
    assert_array_equal(top, 0.0)
    assert_array_equal(ev[1], 1.0)
    assert_allclose(total, 1.0 + ev[0], rtol=1e-16)
    return ev[0]


def test_vectorised_exp_accuracy():
    """The polynomial exp against np.exp over the whole range it is used on.

    Ties to glibc's exp (under 1 ulp) within 3 ulp: Horner's rounding plus
    the range reduction's. Below the cutoff it returns exactly zero.
    """
    rng = np.random.default_rng(0)
    cutoff = _kernels._EXP_CUTOFF
    x = np.concatenate(
        [
            -rng.uniform(0, -cutoff, 200_000),
            -rng.uniform(0, 1e-3, 1000),
            cutoff + rng.uniform(0, 1e-9, 1000),
            np.arange(-1022, 1) * np.log(2.0),  # the ends of every reduction interval
            np.arange(-1022, 1) * np.log(2.0) + np.log(2.0) / 2,
            [0.0, -0.0],
        ]
    )
    x = x[(x > cutoff) & (x <= 0.0)]
    expected = np.exp(x)
    assert np.max(np.abs(_softmax_exp(x) - expected) / np.spacing(expected)) <= 3
    below = np.array([cutoff, cutoff - 1e-9, -745.2, -800.0, -np.inf])
    assert_array_equal(_softmax_exp(below), 0.0)


def test_blas_held_at_one_thread_and_restored():
    """Nested (or concurrent) kernels share the limit; the last one restores it."""
    from threadpoolctl import threadpool_info

    def blas_threads():
        return [info["num_threads"] for info in threadpool_info() if info["user_api"] == "blas"]

    before = blas_threads()
    assert before  # numba's np.dot goes through scipy's BLAS, which must be seen
    with _kernels._single_threaded_blas():
        with _kernels._single_threaded_blas():
            assert set(blas_threads()) == {1}
        assert set(blas_threads()) == {1}
    assert blas_threads() == before
