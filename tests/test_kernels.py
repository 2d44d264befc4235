"""The Numba kernels against the naive references in ``naive.py``."""

import os
import subprocess
import sys
import time

import naive
import numba
import numpy as np
import pytest
from conftest import assert_overflowing_chunk_falls_back
from numpy.testing import assert_allclose, assert_array_equal
from scipy.special import logsumexp

from natgmm import _kernels, _threading
from natgmm._blas import single_threaded_blas
from natgmm._em import Params, masked_natural_parameters, natural_parameters

# float64 kernels evaluate the same sums as the references in another order:
# agreement to a few hundred ulps. float32 kernels get first-order error
# bounds from float32's unit roundoff and the sizes of their sums
# (_f32_log_density_error and _f32_tolerances below).
RTOL = 1e-10
U32 = float(np.finfo(np.float32).eps) / 2
U64 = float(np.finfo(np.float64).eps) / 2
_F32_DROPPED = float(np.exp(_kernels._EXP_CUTOFF_F32))  # the largest term dropped, relative


def _problem(dtype, n_samples=203, n_features=7, n_components=5, seed=0, spread=3.0):
    rng = np.random.default_rng(seed)
    means = rng.normal(scale=spread, size=(n_components, n_features))
    labels = rng.integers(n_components, size=n_samples)
    X = (means[labels] + rng.normal(size=(n_samples, n_features))) * 10 + 5
    shift = np.full(n_features, 5.0).astype(dtype)
    scale = np.full(n_features, 0.1).astype(dtype)
    X = X.astype(dtype)
    params = Params(
        rng.dirichlet(np.ones(n_components)),
        rng.normal(scale=spread, size=(n_components, n_features)),
        rng.uniform(0.5, 2.0, size=(n_components, n_features)),
    )
    Z = (X.astype(np.float64) - shift.astype(np.float64)) * scale.astype(np.float64)
    return X, Z, shift, scale, params, labels


def _natural(params, dtype):
    eta1, eta2, log_norm, log_weight = natural_parameters(params)
    return eta1.astype(dtype), eta2.astype(dtype), log_norm, log_weight


def _f32_log_density_error(Z, params, eta_f32=False):
    """First-order bound on the float32 kernels' error in each weighted log-density.

    A log-density is the dot product of ``[z, z**2, 1]`` and
    ``[eta1, eta2, log_norm]``, ``2 D + 1`` terms. In float32 each term has
    its two operands rounded (``z`` or ``z**2`` from float64, ``W`` from
    float64) and its product and running sum rounded once each, so the error
    is at most ``(2 D + 5) u`` times the sum of the terms' magnitudes (to
    first order; BLAS may sum in any order). A wide component (a float64
    product, see ``_kernels._f32_operands``) has the same bound in float64's
    ``u`` plus one float32 rounding of the result, and float32's ``u`` per
    term if the caller's natural parameters were float32 (``eta_f32``).
    """
    eta1, eta2, log_norm, _ = natural_parameters(params)
    finite_norm = np.where(np.isfinite(log_norm), np.abs(log_norm), 0.0)
    magnitude = np.abs(Z) @ np.abs(eta1).T + Z**2 @ np.abs(eta2).T + finite_norm
    n_ops = 2 * Z.shape[1] + 5
    bound = n_ops * U32 * magnitude
    wide = _kernels._f32_operands(eta1, eta2, log_norm)[3]
    wlp = naive.weighted_log_prob(Z, *params)
    bound[:, wide] = (n_ops * U64 + (U32 if eta_f32 else 0.0)) * magnitude[:, wide] + U32 * np.abs(
        np.where(np.isfinite(wlp[:, wide]), wlp[:, wide], 0.0)
    )
    return bound


def _resp_relative_error(Z, params, eta_f32=False, beta=1.0):
    """Responsibilities, and a bound on each one's relative error in float32.

    A responsibility ``r_k`` moves by ``r_k (d_k - sum_j r_j d_j)`` for
    log-density errors ``d``, at most ``(1 - r_k) b_k + sum_(j != k) r_j b_j``
    relative for bounds ``b``; the exponential adds 1 ulp, the sum of K
    terms K roundings, the weighting and the division two more. Tempered
    ones (``beta``) use ``beta`` times the log-densities, rounded once more. Returns the (tempered)
    responsibilities, the log-densities' error bounds and the bounds on the
    responsibilities' relative errors.
    """
    delta = _f32_log_density_error(Z, params, eta_f32)
    wlp = naive.weighted_log_prob(Z, *params)
    tempered = beta * delta + (U32 * beta * np.abs(np.where(np.isfinite(wlp), wlp, 0.0)))
    resp = np.exp(beta * wlp - logsumexp(beta * wlp, axis=1, keepdims=True))
    mean_delta = np.sum(resp * tempered, axis=1, keepdims=True)
    rel = tempered + mean_delta - 2 * resp * tempered
    return resp, delta, rel + (resp.shape[1] + 3) * U32


def _f32_tolerances(Z, sw, params, ref, eta_f32=False, beta=1.0, exact=None):
    """First-order bounds on the errors of float32 ``em_stats``: loglik, nk, s1, s2.

    Each row's log-likelihood ``(top + log(total)) / beta`` is off by at most
    the (tempered) responsibility-weighted error of its log-densities, plus
    ``u |lp|`` for the rounding of ``beta lp`` and ``(K + 2) u / beta`` for
    the sum and its logarithm. A statistic is off by the weighted
    responsibilities' errors times ``|z - ref|**p``, plus, in dense chunks,
    a float32 product over at most ``_CHUNK`` rows (``(_CHUNK + 2) u`` of
    its terms' magnitudes) about the origin, moved to ``ref`` in float64:
    ``(|z| + |ref|)**p`` per term bounds both.
    """
    resp, delta, rel = _resp_relative_error(Z, params, eta_f32, beta)
    n_components = resp.shape[1]
    wr = sw[:, np.newaxis] * resp
    # Terms below exp(_EXP_CUTOFF_F32) of their row's largest are dropped.
    dr = wr * rel + sw[:, np.newaxis] * _F32_DROPPED
    # Components summed about ref term by term (exact) have no product.
    acc = np.full(n_components, (_kernels._CHUNK + 2) * U32)
    if exact is not None:
        acc[exact] = 0.0
    wlp = np.abs(naive.weighted_log_prob(Z, *params))
    rounding = U32 * np.max(np.where(np.isfinite(wlp), wlp, 0.0), axis=1) if beta != 1.0 else 0.0
    tol_ll = sw @ (np.sum(resp * delta, axis=1) + rounding + (n_components + 2) * U32 / beta)
    tol = [dr.sum(axis=0) + acc * wr.sum(axis=0)]
    for power in (1, 2):
        tol.append(
            np.stack(
                [
                    dr[:, k] @ np.abs(Z - ref[k]) ** power
                    + acc[k] * wr[:, k] @ (np.abs(Z) + np.abs(ref[k])) ** power
                    for k in range(n_components)
                ]
            )
        )
    return tol_ll, *tol


def _assert_within(got, expected, tolerance):
    """Assert ``|got - expected| <= tolerance`` elementwise (first-order bounds: + 1e-3 of them)."""
    got, expected = np.asarray(got, dtype=np.float64), np.asarray(expected, dtype=np.float64)
    excess = np.abs(got - expected) - 1.001 * np.asarray(tolerance)
    assert np.all(excess <= 0.0), f"max excess {np.max(excess):.3g} over the bound"


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
    weights = sw if weighted else np.ones(len(X))
    expected = naive.em_stats(Z, weights, *params, ref)
    if dtype == np.float64:
        for g, e in zip(got, expected, strict=True):
            assert_allclose(g, e, rtol=RTOL, atol=RTOL * np.max(np.abs(e)))
        return
    tolerances = _f32_tolerances(Z, weights, params, ref, eta_f32=True)
    for g, e, t in zip(got, expected, tolerances, strict=True):
        _assert_within(g, e, t)
    # The bounds are worst cases (the errors measured are about 1% of them),
    # but still keep three digits of every nk: an exponential or a weighting
    # off by 1e-3 would fail.
    assert np.max(tolerances[1] / expected[1]) < 1e-3


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_em_stats_of_rows_weighing_nothing_are_zero(dtype):
    # A Dask block can hold only rows of weight zero (the checks refuse that
    # only for the data as a whole).
    X, _, shift, scale, params, _ = _problem(dtype)
    natural = _natural(params, dtype)
    got = _kernels.em_stats(X, np.zeros(len(X)), shift, scale, *natural, params.means, 3, False)
    for stat in got:
        assert_array_equal(stat, 0.0)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("beta", [0.05, 0.5])
def test_tempered_em_stats_match_naive(dtype, beta):
    X, Z, shift, scale, params, _ = _problem(dtype)
    ref = params.means
    got = _kernels.em_stats(
        X, np.empty(0), shift, scale, *natural_parameters(params), ref, 4, True, beta
    )
    expected = naive.em_stats(Z, np.ones(len(X)), *params, ref, beta=beta)
    if dtype == np.float64:
        tolerances = [RTOL * np.max(np.abs(e)) + RTOL * np.abs(e) for e in expected]
    else:
        tolerances = _f32_tolerances(Z, np.ones(len(X)), params, ref, beta=beta)
    for g, e, t in zip(got, expected, tolerances, strict=True):
        _assert_within(g, e, t)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("parallel", [False, True])
def test_log_prob_matches_naive(dtype, parallel):
    X, Z, shift, scale, params, _ = _problem(dtype, n_samples=101)
    n = X.shape[0]
    out, labels, resp = np.empty(n), np.empty(n, dtype=np.int64), np.empty((n, 5))
    _kernels.log_prob(X, shift, scale, *_natural(params, dtype), out, labels, resp, parallel)
    log_norm, expected_labels, expected_resp = naive.log_prob(Z, *params)
    if dtype == np.float64:
        assert_allclose(out, log_norm, rtol=RTOL)
        assert_array_equal(labels, expected_labels)
        assert_allclose(resp, expected_resp, rtol=RTOL * 10, atol=1e-12)
    else:
        _check_f32_log_prob(Z, params, out, labels, resp, eta_f32=True)
    # Without a responsibilities array only the log-densities and labels come back.
    again = np.empty(n)
    _kernels.log_prob(
        X, shift, scale, *_natural(params, dtype), again, labels, np.empty((0, 5)), parallel
    )
    assert_array_equal(again, out)


def _check_f32_log_prob(Z, params, out, labels, resp, eta_f32=False):
    """float32 ``log_prob`` outputs against the naive ones, within first-order bounds.

    Labels may differ only on rows whose two largest log-densities are
    within their error bounds of each other.
    """
    log_norm, expected_labels, expected_resp = naive.log_prob(Z, *params)
    expected_resp, delta, rel = _resp_relative_error(Z, params, eta_f32)
    n_components = delta.shape[1]
    _assert_within(out, log_norm, np.sum(expected_resp * delta, axis=1) + (n_components + 2) * U32)
    _assert_within(resp, expected_resp, expected_resp * rel + _F32_DROPPED)
    wlp = naive.weighted_log_prob(Z, *params)
    rows = np.arange(len(Z))
    chosen, best = wlp[rows, labels], wlp[rows, expected_labels]
    assert np.all(best - chosen <= delta[rows, labels] + delta[rows, expected_labels])


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


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("spread", [3.0, 300.0])
def test_far_components_and_zero_weight(dtype, spread):
    """Terms below the exp cutoff and log-weight -inf change no result.

    At spread 300 every component is far from the centre: in float32 their
    log-densities come from the float64 product (wide components).
    """
    X, Z, shift, scale, params, _ = _problem(dtype, spread=spread)
    weights = params.weights.copy()
    weights[2] = 0.0
    weights /= weights.sum()
    params = params._replace(weights=weights)
    ref = params.means
    natural = natural_parameters(params)
    got = _kernels.em_stats(X, np.empty(0), shift, scale, *natural, ref, 4, True)
    expected = naive.em_stats(Z, np.ones(len(X)), *params, ref)
    assert got[1][2] == 0.0 and np.all(got[2][2] == 0.0) and np.all(got[3][2] == 0.0)
    if dtype == np.float64:
        for g, e in zip(got, expected, strict=True):
            assert_allclose(g, e, rtol=RTOL, atol=1e-300)
    else:
        wide = _kernels._f32_operands(*natural[:3])[3]
        assert len(wide) == (5 if spread == 300.0 else 0)
        tolerances = _f32_tolerances(Z, np.ones(len(X)), params, ref)
        for g, e, t in zip(got, expected, tolerances, strict=True):
            _assert_within(g, e, t)
        n = X.shape[0]
        out, labels, resp = np.empty(n), np.empty(n, dtype=np.int64), np.empty((n, 5))
        _kernels.log_prob(X, shift, scale, *natural, out, labels, resp, True)
        assert np.all(resp[:, 2] == 0.0)
        _check_f32_log_prob(Z, params, out, labels, resp)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("missing", [False, True])
def test_narrow_components_far_from_the_centre_keep_their_log_densities(dtype, missing):
    """Log-densities about the means where ``[z, z**2, 1] @ W`` would cancel.

    Two components a few float ulps wide at +-1 (float32: +-1000) in every
    feature, beside a broad one: ``sum_d mean**2 / var`` is 3e16 (float32:
    about 3e14), so the expanded form's terms of that size cancel to leave
    log-densities of about 40 nats. Before the centred form they were off by
    up to 5.7 nats in float64 (6.6 with missing entries) and 0.02 (0.04) in
    float32; now by 1.4e-14 and 9e-7. About its mean a component's
    log-density is off by at most ``|z - mean| * |d mean| / var`` per
    feature, ``d mean`` the rounding of the mean from ``eta1 / eta2`` (2
    ulps of 1): 1.3e-7 nats here at 3 sd; float32's output adds a float32
    rounding of the log-density (4e-6 at 60). Tolerances: 1e-6 and 1e-5.
    """
    rng = np.random.default_rng(0)
    far, sd = (1.0, 1e-8) if dtype == np.float64 else (1000.0, 1e-4)
    means = np.array([[far, -far, far], [-far, far, -far], [0.0, 0.0, 0.0]])
    variances = np.array([[sd**2] * 3, [sd**2] * 3, [1.0] * 3])
    params = Params(np.array([0.4, 0.4, 0.2]), means, variances)
    labels = np.repeat([0, 1, 2], [40, 40, 20])
    X = (means[labels] + np.sqrt(variances[labels]) * rng.normal(size=(100, 3))).astype(dtype)
    if missing:
        X[::5, 1] = np.nan
    Z = X.astype(np.float64)
    zeros, ones = np.zeros(3), np.ones(3)
    out, labels_out, resp = np.empty(100), np.empty(100, dtype=np.int64), np.empty((100, 3))
    if missing:
        natural = masked_natural_parameters(params)
        expected = naive.observed_log_prob(Z, *params)[0]
        _kernels.log_prob_masked(X, zeros, ones, *natural, out, labels_out, resp, False)
        loglik = _kernels.em_stats_masked(X, np.empty(0), zeros, ones, *natural, means, 1, False)
    else:
        natural = natural_parameters(params)
        expected = naive.log_prob(Z, *params)[0]
        _kernels.log_prob(X, zeros, ones, *natural, out, labels_out, resp, False)
        loglik = _kernels.em_stats(X, np.empty(0), zeros, ones, *natural, means, 1, False)
    assert len(_kernels.centred_components(*natural[:2], natural[-1])[0]) == 2
    tolerance = 1e-6 if dtype == np.float64 else 1e-5
    assert_allclose(out, expected, rtol=0, atol=tolerance)
    assert_array_equal(labels_out[np.arange(0, 100, 10)], [0] * 4 + [1] * 4 + [2] * 2)
    assert loglik[0] == pytest.approx(expected.sum(), rel=0, abs=100 * tolerance)


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


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_weighed_terms_below_the_smallest_normal_are_zero(dtype):
    """Weighted terms that would be subnormal are zero, and not counted.

    Subnormal operands slow the statistics' BLAS product severalfold; each
    dropped term is below ``tiny`` times its row's weight.
    """
    tiny = np.finfo(dtype).tiny
    ev = np.array([[1.0, tiny, 4.0 * tiny, 0.5], [tiny, 1.0, 0.25, np.nan]], dtype=dtype)
    w = np.array([0.5, 0.5, 0.5, 1.0], dtype=dtype)
    expected = ev * w
    expected[expected < tiny] = 0.0
    row_terms = np.empty(4, dtype=np.int32)
    row_last = np.empty(4, dtype=np.int32)
    _kernels._weigh_terms(ev, w, row_terms, row_last)
    assert_array_equal(ev, expected)  # the NaN stays NaN
    assert ev[0, 1] == 0.0 and ev[1, 0] == 0.0 and ev[0, 2] == 2.0 * tiny
    assert_array_equal(row_terms, [1, 1, 2, 2])
    assert_array_equal(row_last, [0, 1, 1, 1])


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
    results = []
    for n_threads in (1, numba.config.NUMBA_NUM_THREADS):
        with _threading.kernel_threads(n_threads):
            results.append(_kernels.em_stats(*args, True))
    results.append(_kernels.em_stats(*args, False))
    for other in results[1:]:
        for a, b in zip(results[0], other, strict=True):
            assert_array_equal(a, b)


def _narrow_pair(
    n_features=3, offset=40.0, sd=0.01, n_broad=1800, n_narrow=400, seed=3, pair=True
):  # fmt: skip
    """Two broad components at the centre and two narrow ones far from it, overlapping.

    The narrow pair sits at ``offset`` (``offset**2 / sd**2`` per feature),
    half a standard deviation apart: their responsibilities are about a
    half each, so their log-densities must be right to many digits. Every
    row has more than a quarter of its terms non-zero (dense chunks). With
    ``pair=False`` there is one narrow component.
    """
    rng = np.random.default_rng(seed)
    narrow = offset + sd * rng.normal(size=(n_narrow, n_features))
    Z = np.concatenate([rng.normal(size=(n_broad, n_features)), narrow])
    ones = np.ones(n_features)
    params = Params(
        np.array([0.45, 0.4, 0.075, 0.075]),
        np.array([0 * ones, ones, offset * ones, (offset + sd / 2) * ones]),
        np.array([ones, 4 * ones, sd**2 * ones, sd**2 * ones]),
    )
    if not pair:
        params = Params(np.array([0.45, 0.4, 0.15]), params.means[:3], params.variances[:3])
    return Z, params


def test_f32_narrow_far_components_are_wide_and_exact(monkeypatch):
    """float32: narrow components far from the centre keep their digits.

    Their float32 log-densities would be off by about eps32 * 5e7 (several
    units): they are marked wide and computed by the float64 product, and
    their statistics are summed about their means in float64 (exact). The
    data are float32 and the map to internal units inexact, so the
    statistics also check that ``z`` is taken from ``X`` in float64.
    """
    Z, params = _narrow_pair()
    shift, scale = np.full(3, 0.1), np.full(3, 1 / 3)
    X = (Z / scale + shift).astype(np.float32)
    Z = (X.astype(np.float64) - shift) * scale
    ref = params.means + 1e-3
    natural = natural_parameters(params)
    assert list(_kernels._f32_operands(*natural[:3])[3]) == [2, 3]
    got = _kernels.em_stats(X, np.empty(0), shift, scale, *natural, ref, 4, True)
    expected = naive.em_stats(Z, np.ones(len(X)), *params, ref)
    exact = np.max(ref**2 / params.variances, axis=1) > _kernels._MAX_CANCELLATION_F32
    assert list(np.flatnonzero(exact)) == [2, 3]
    tolerances = _f32_tolerances(Z, np.ones(len(X)), params, ref, exact=exact)
    for g, e, t in zip(got, expected, tolerances, strict=True):
        _assert_within(g, e, t)
    # The narrow pair's statistics to about float32's resolution.
    assert_allclose(got[1][2:], expected[1][2:], rtol=1e-6)
    assert_allclose(got[3][2:], expected[3][2:], rtol=1e-5)
    # Without the float64 columns the pair's responsibilities are off by far more.
    monkeypatch.setattr(_kernels, "_MAX_MAGNITUDE_F32", np.inf)
    assert len(_kernels._f32_operands(*natural[:3])[3]) == 0
    naive_f32 = _kernels.em_stats(X, np.empty(0), shift, scale, *natural, ref, 4, True)
    assert np.max(np.abs(naive_f32[1][2:] - expected[1][2:]) / expected[1][2:]) > 1e-3


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_f32_wide_component_beyond_float32_range_leaves_padding_harmless(dtype):
    """A wide component whose log-weight-and-normaliser is beyond float32's range.

    Its rows' log-densities cancel to 0 exactly in the float64 product, while
    the chunk's padding rows (three rows of a 64-row chunk) would get
    ``log_norm = -2**129`` alone, -inf in float32: the sums came back NaN
    (found by the fuzz run of 2026-12-04, a constant column and a variance of
    2**-130 in internal units). float64 data take this path at the annealing
    levels (``float32=True``). With missing entries the padding's
    log-density is the log-weight alone, within float32's range.
    """
    X = np.ones((3, 1), dtype=dtype)
    eta1, eta2, log_norm = (
        np.array([[2.0**130]]),
        np.array([[-(2.0**129)]]),
        np.array([-(2.0**129)]),
    )
    assert list(_kernels._f32_operands(eta1, eta2, log_norm)[3]) == [0]
    args = (
        X,
        np.empty(0),
        np.zeros(1),
        np.ones(1),
        eta1,
        eta2,
        log_norm,
        # The log-weight of that normaliser: mean 1, variance 2**-130.
        np.array([0.5 * np.log(2 * np.pi) - 65 * np.log(2.0)]),
        np.ones((1, 1)),
        1,
        False,
    )
    loglik, nk, s1, s2 = _kernels.em_stats(*args, 1.0, True)
    assert loglik == 0.0 and nk[0] == 3.0
    assert_array_equal(s1, 0.0)
    assert_array_equal(s2, 0.0)


def test_f32_moderate_cancellation_takes_float64_moments(monkeypatch):
    """float32: a component with ref**2 / var of 400 takes its moments in float64.

    Moved from the origin in float32 it would lose about 2.6 of float32's
    seven digits of its scatter; above _MAX_CANCELLATION_F32 its moments
    come from a float64 product (which loses 2.6 of float64's sixteen), and
    its scatter is within the bound of a sum with no float32 product (no
    ``(_CHUNK + 2) u`` term). Summed about its mean term by term instead (as
    above _MAX_CANCELLATION), the sums of the deviations agree to 1e-11.
    """
    Z, params = _narrow_pair(n_features=4, offset=2.0, sd=0.1, pair=False)
    X = Z.astype(np.float32)
    Z = X.astype(np.float64)
    ones = np.ones(4)
    ref = params.means + 1e-3
    natural = natural_parameters(params)
    exact = np.max(ref**2 / params.variances, axis=1) > _kernels._MAX_CANCELLATION_F32
    assert list(np.flatnonzero(exact)) == [2]
    assert len(_kernels._f32_operands(*natural[:3])[3]) == 0  # float32 log-densities
    expected = naive.em_stats(Z, np.ones(len(X)), *params, ref)
    tolerances = _f32_tolerances(Z, np.ones(len(X)), params, ref, exact=exact)
    got = _kernels.em_stats(X, np.empty(0), 0 * ones, ones, *natural, ref, 4, True)
    for g, e, t in zip(got, expected, tolerances, strict=True):
        _assert_within(g, e, t)
    with monkeypatch.context() as patch:
        patch.setattr(_kernels, "_MAX_CANCELLATION", _kernels._MAX_CANCELLATION_F32)
        summed = _kernels.em_stats(X, np.empty(0), 0 * ones, ones, *natural, ref, 4, True)
    assert got[0] == summed[0]
    # The weights of the term-by-term path come from the float32 product.
    assert_allclose(got[1], summed[1], rtol=1e-6)
    for g, e in zip(got[2:], summed[2:], strict=True):
        assert_allclose(g, e, rtol=1e-11)
    # Moved from the origin in float32 instead, the scatter leaves that bound.
    monkeypatch.setattr(_kernels, "_MAX_CANCELLATION_F32", np.inf)
    moved = _kernels.em_stats(X, np.empty(0), 0 * ones, ones, *natural, ref, 4, True)
    assert np.any(np.abs(moved[3][2] - expected[3][2]) > tolerances[3][2])


def test_float64_data_on_the_float32_path_takes_float32_moments():
    """float64 ``X`` with ``float32=True`` (the annealing levels): no float64 moments.

    The component of ref**2 / var 400 that float32 ``X`` sends to a float64
    product (above) is moved from the origin in float32 here: within the
    float32 product's bound, and not float32 ``X``'s sums.
    """
    Z, params = _narrow_pair(n_features=4, offset=2.0, sd=0.1, pair=False)
    Z = Z.astype(np.float32).astype(np.float64)
    ones = np.ones(4)
    ref = params.means + 1e-3
    natural = natural_parameters(params)
    args = (np.empty(0), 0 * ones, ones, *natural, ref, 4, True, 1.0, True)
    _, precise = _kernels._f32_tiers(ref, 1.0 / params.variances)
    assert list(np.flatnonzero(precise)) == [2]
    got = _kernels.em_stats(Z, *args)
    expected = naive.em_stats(Z, np.ones(len(Z)), *params, ref)
    tolerances = _f32_tolerances(Z, np.ones(len(Z)), params, ref)
    for g, e, t in zip(got, expected, tolerances, strict=True):
        _assert_within(g, e, t)
    of_float32_data = _kernels.em_stats(Z.astype(np.float32), *args)
    assert_array_equal(got[3][:2], of_float32_data[3][:2])
    assert np.any(got[3][2] != of_float32_data[3][2])


def test_float64_data_mostly_wide_in_float32_takes_the_float64_path():
    """float64 ``X`` with ``float32=True`` and most components wide: the float64 kernel.

    Wide components' log-densities come from a float64 product on the
    float32 path too; beyond ``_MOSTLY_WIDE`` of them the float32 product
    only adds time (raw pixels, features constant within components, make
    nearly all of them wide), so the levels take the float64 path, bit for
    bit. Below it they stay on the float32 path.
    """
    for pair, n_wide, float64_path in [(True, 2, True), (False, 1, False)]:
        Z, params = _narrow_pair(pair=pair)
        natural = natural_parameters(params)
        wide = _kernels._f32_operands(*natural[:3])[3]
        assert len(wide) == n_wide
        assert (len(wide) > _kernels._MOSTLY_WIDE * len(params.weights)) == float64_path
        ones = np.ones(Z.shape[1])
        args = (Z, np.empty(0), 0 * ones, ones, *natural, params.means + 1e-3, 4, True, 1.0)
        levels, exact = _kernels.em_stats(*args, True), _kernels.em_stats(*args, False)
        same = all(np.array_equal(a, b) for a, b in zip(levels, exact, strict=True))
        assert same == float64_path
        # float32 data stays on the float32 path whatever its components.
        of_float32 = _kernels.em_stats(Z.astype(np.float32), *args[1:], False)
        assert not np.array_equal(of_float32[2], exact[2])


def test_f32_rows_outside_float32_range_fall_back_to_float64():
    """A chunk with a row whose float32 log-densities overflow is done in float64.

    Its rows then get exactly the float64 kernel's results; other chunks
    stay within the float32 bounds.
    """
    X, Z, shift, scale, params, _ = _problem(np.float32, n_samples=300)
    X[70] = 3e30  # z**2 overflows float32, in the second chunk (rows 64 to 127)
    natural = natural_parameters(params)
    outputs = assert_overflowing_chunk_falls_back(
        X, _kernels.log_prob, _kernels.em_stats, shift, scale, natural, params.means
    )
    rest = np.r_[0:64, 128 : len(X)]
    Zr, (out, labels, resp) = Z[rest], (a[rest] for a in outputs[np.float32])
    _check_f32_log_prob(Zr, params, out, labels, resp)


def test_f32_statistics_scale_exactly_with_the_weights():
    """Sample weights times a power of two scale every float32 statistic exactly.

    The responsibilities are weighted in float32 after scaling the largest
    weight to [1/2, 1), so weights of 2**-1000 or 2**1000 neither underflow
    nor overflow.
    """
    X, _, shift, scale, params, _ = _problem(np.float32)
    sw = np.random.default_rng(1).uniform(0, 3, size=X.shape[0])
    args = (shift, scale, *natural_parameters(params), params.means, 4, True)
    base = _kernels.em_stats(X, sw, *args)
    for exponent in (-1000, 1000):
        factor = 2.0**exponent
        scaled = _kernels.em_stats(X, sw * factor, *args)
        for a, b in zip(scaled, base, strict=True):
            assert_array_equal(np.asarray(a) / factor, b)


def test_f32_thread_count_and_blocks_do_not_change_results():
    """float32 with wide components, a float64 chunk, weights and tempering: bitwise."""
    Z, params = _narrow_pair(n_broad=4000, n_narrow=1000)
    X = Z.astype(np.float32)
    X[1234] = 3e30
    sw = np.random.default_rng(0).uniform(0, 2, size=len(X))
    ones = np.ones(3)
    for beta in (1.0, 0.3):
        args = (X, sw, 0 * ones, ones, *natural_parameters(params), params.means, 16)
        results = []
        for n_threads in (1, numba.config.NUMBA_NUM_THREADS):
            with _threading.kernel_threads(n_threads):
                results.append(_kernels.em_stats(*args, True, beta))
        results.append(_kernels.em_stats(*args, False, beta))
        for other in results[1:]:
            for a, b in zip(results[0], other, strict=True):
                assert_array_equal(a, b)


def _softmax_exp(x):
    """exp(x) for x <= 0 from the soft-max kernel: a column (x, 0) has top 0."""
    lp = np.stack([x, np.zeros_like(x)])
    ev = np.empty_like(lp)
    top, total = np.empty(x.shape), np.empty(x.shape)
    _kernels._softmax_columns(lp, top, ev, total, 1.0)
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


def test_vectorised_float32_exp_accuracy():
    """The float32 polynomial exp within 1.5 float32 ulp of the exact exp.

    Measured: at most 1.01 ulp over [cutoff, 0] (np.exp in float32: 2.4).
    NaN in a column, or an infinite largest entry, makes its total NaN (the
    chunk is then redone in float64).
    """
    rng = np.random.default_rng(0)
    cutoff = _kernels._EXP_CUTOFF_F32
    x = np.concatenate(
        [
            -rng.uniform(0, -cutoff, 200_000),
            -rng.uniform(0, 1e-3, 1000),
            np.arange(-125, 1) * np.log(2.0),  # the ends of every reduction interval
            np.arange(-125, 1) * np.log(2.0) + np.log(2.0) / 2,
            [0.0, -0.0],
        ]
    ).astype(np.float32)
    x = x[(x > cutoff) & (x <= 0.0)]

    def softmax(lp):
        ev, top, total = (
            np.empty_like(lp),
            np.empty(lp.shape[1], np.float32),
            np.empty(lp.shape[1], np.float32),
        )
        no_tally = np.empty(0, np.int32)
        _kernels._softmax_columns_f32(lp, top, ev, total, 1.0, no_tally, no_tally)
        # The tallies of _chunk_stats_tallied: the terms above the cutoff, and
        # the last of them (in columns of finite total; the others are redone
        # in float64).
        row_terms, row_last = np.full(lp.shape[1], 7, np.int32), np.empty(lp.shape[1], np.int32)
        ev2, top2, total2 = np.empty_like(lp), np.empty_like(top), np.empty_like(total)
        _kernels._softmax_columns_f32(lp.copy(), top2, ev2, total2, 1.0, row_terms, row_last)
        assert_array_equal(ev2, ev)
        for r in np.flatnonzero(np.isfinite(total)):
            assert row_terms[r] == np.sum(ev[:, r] != 0.0)
            assert row_last[r] == (np.flatnonzero(ev[:, r])[-1] if row_terms[r] else 0)
        return ev, top, total

    ev, top, total = softmax(np.stack([x, np.zeros_like(x)]))
    assert_array_equal(top, 0.0)
    assert_array_equal(ev[1], 1.0)
    exact = np.exp(x.astype(np.float64))
    ulp = np.spacing(exact.astype(np.float32)).astype(np.float64)
    assert np.max(np.abs(ev[0] - exact) / ulp) <= 1.5
    below = np.array([cutoff, cutoff - 1e-5, -88.0, -100.0, -np.inf], np.float32)
    assert_array_equal(softmax(np.stack([below, np.zeros_like(below)]))[0][0], 0.0)
    odd = np.array([[np.nan, 0, np.inf, -np.inf, 1], [0, np.nan, 1, -np.inf, np.inf]], np.float32)
    assert np.all(np.isnan(softmax(odd)[2]))


def test_blas_held_at_one_thread_and_restored():
    """Nested (or concurrent) kernels share the limit; the last one restores it."""
    from threadpoolctl import threadpool_info

    def blas_threads():
        return [info["num_threads"] for info in threadpool_info() if info["user_api"] == "blas"]

    before = blas_threads()
    assert before  # numba's np.dot goes through scipy's BLAS, which must be seen
    with single_threaded_blas():
        with single_threaded_blas():
            assert set(blas_threads()) == {1}
        assert set(blas_threads()) == {1}
    assert blas_threads() == before


def test_a_hold_inside_its_own_threads_hold_adds_nothing():
    """Nested on one thread: one user; another thread's hold meanwhile is a user of its own."""
    import threading

    hold = single_threaded_blas
    seen = []

    def other():
        with hold():
            seen.append(len(hold._users))

    with hold():
        with hold():
            assert len(hold._users) == 1
            thread = threading.Thread(target=other)
            thread.start()
            thread.join()
        assert len(hold._users) == 1
    assert seen == [2]
    assert not hold._users and not hold._holding and hold._original is None


@pytest.mark.parametrize("n_points", [1, 2, 30])
def test_count_distinct_matches_naive(n_points):
    """Distinct means as scipy's Chebyshev distances count them, ties near tol included."""
    rng = np.random.default_rng(n_points)
    for scale in (1e-3, 1e-2, 1.0):
        points = rng.normal(size=(n_points, 4)) * scale
        if n_points > 2:
            # Near copies: some within the tolerance in every feature, some not.
            points[5:15] = points[:10] + rng.uniform(-1.2e-2, 1.2e-2, (10, 4))
        assert _kernels.count_distinct(points, 1e-2) == naive.count_distinct(points, 1e-2)
    assert _kernels.count_distinct(np.zeros((7, 3)), 1e-2) == 1


@pytest.mark.parametrize("masked", [False, True])
@pytest.mark.parametrize("fixed", [False, True])
@pytest.mark.parametrize("prior", [False, True])
def test_m_step_moments_is_the_numpy_formula_bit_for_bit(masked, fixed, prior):
    """The compiled M-step does numpy's arithmetic element by element: the same bits.

    Statistics about a reference point away from the means, an empty
    component, scatter that rounds below zero, floors above some variances.
    """
    rng = np.random.default_rng(0)
    n_components, n_features = 5, 7
    nk = rng.uniform(1.0, 50.0, n_components)
    nk[2] = 0.0  # no mass
    nkd = nk[:, None] * rng.uniform(0.5, 1.0, (n_components, n_features)) if masked else None
    weight = nk[:, None] if nkd is None else nkd
    ref = rng.normal(size=(n_components, n_features))
    s1 = weight * rng.normal(size=(n_components, n_features))
    s2 = s1**2 / np.where(weight > 0, weight, 1.0) * (1.0 + rng.uniform(0.0, 2.0, s1.shape))
    s2[0, 0] = s1[0, 0] ** 2 / weight[0, 0] * (1.0 - 1e-15)  # scatter rounding below zero
    a1 = 0.5 if prior else 0.0
    b = rng.uniform(0.0, 0.1, n_features) if prior else np.zeros(n_features)
    reg_covar = np.full(n_features, 1e-6)
    fixed_var = rng.uniform(0.5, 2.0, n_features) if fixed else None
    floor = np.where(np.arange(n_features) % 2, 0.0, 0.3)
    eps = np.finfo(np.float64).eps
    got = _kernels.m_step_moments(
        nk, np.empty((0, 0)) if nkd is None else nkd, s1, s2, ref, a1, b, reg_covar,
        np.empty(0) if fixed_var is None else fixed_var, floor, eps,
    )  # fmt: skip
    expected = naive.m_step_moments(nk, nkd, s1, s2, ref, a1, b, reg_covar, fixed_var, floor, eps)
    for g, e in zip(got[:3], expected[:3], strict=True):
        assert_array_equal(g, e)
    assert got[3] == expected[3]


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_m_step_moments_reports_what_is_not_finite(bad):
    """A non-finite statistic makes ``valid`` False, as numpy's checks did."""
    nk, s1, s2 = np.ones(2), np.zeros((2, 3)), np.ones((2, 3))
    s2[1, 2] = bad
    zero = np.zeros(3)
    got = _kernels.m_step_moments(
        nk, np.empty((0, 0)), s1, s2, np.zeros((2, 3)), 0.0, zero, zero, np.empty(0), zero,
        np.finfo(np.float64).eps,
    )  # fmt: skip
    assert not got[3]


# A child that compiles racemod.f for one argument type, its cache save slowed
# between reading the index, writing it and writing the data (argv: type,
# start time, seconds before the index is written, seconds before the data).
_SLOW_SAVER = """
import itertools, sys, time
from numba.core import caching

def slow_save(self, key, data):
    overloads = self._load_index()
    time.sleep(float(sys.argv[3]))
    try:
        data_name = overloads[key]
    except KeyError:
        existing = set(overloads.values())
        data_name = next(
            name for name in map(self._data_name, itertools.count(1)) if name not in existing
        )
        overloads[key] = data_name
        self._save_index(overloads)
    time.sleep(float(sys.argv[4]))
    self._save_data(data_name, data)

caching.IndexDataCacheFile.save = slow_save  # numba's steps, with the pauses
import racemod
while time.time() < float(sys.argv[2]):
    time.sleep(0.001)
print(racemod.f(1 if sys.argv[1] == "int" else 1.5))
"""


@pytest.mark.skipif(sys.platform == "win32", reason="saves are serialised with fcntl locks")
def test_processes_compiling_one_kernel_at_once_leave_a_consistent_cache(tmp_path):
    """Two processes save two signatures of one kernel at once; a third loads both right.

    Unserialised, both read the empty index, both take the first data file,
    the float signature's index entry is written last and the int one's
    machine code last: the third process then loaded the int code for a
    float argument (f(1.5) returned 2). Serialised, each save reads the
    index the other wrote.
    """
    (tmp_path / "racemod.py").write_text(
        "from natgmm._kernels import _jit\n\n@_jit()\ndef f(x):\n    return x + 1\n"
    )
    (tmp_path / "child.py").write_text(_SLOW_SAVER)
    env = {
        **os.environ,
        "NUMBA_CACHE_DIR": str(tmp_path / "cache"),
        "NUMBA_DISABLE_JIT": "0",  # compiled children, also under a pure-Python run
        "PYTHONPATH": os.pathsep.join([str(tmp_path), os.environ.get("PYTHONPATH", "")]),
    }
    start = str(time.time() + 3.0)  # both children have imported numba by then
    children = [
        subprocess.Popen(
            [sys.executable, str(tmp_path / "child.py"), kind, start, *pauses],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )  # fmt: skip
        for kind, pauses in (("int", ("0.5", "1.5")), ("float", ("1.0", "0.1")))
    ]
    outputs = [child.communicate(timeout=600) for child in children]
    assert [out.strip() for out, _ in outputs] == ["2", "2.5"], outputs
    check = (
        "import racemod\n"
        "print(racemod.f(1), racemod.f(1.5), sorted(map(str, racemod.f.stats.cache_hits)))"
    )
    result = subprocess.run(
        [sys.executable, "-c", check], env=env, capture_output=True, text=True, timeout=600
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split("\n")[0] == "2 2.5 ['(float64,)', '(int64,)']", result.stdout


@pytest.mark.skipif(sys.platform == "win32", reason="saves are serialised with fcntl locks")
def test_a_save_goes_on_where_no_lock_can_be_taken(tmp_path, monkeypatch):
    from natgmm import _numba_cache

    def no_locks(fd, operation):
        raise OSError(37, "No locks available")

    entered = []
    with _numba_cache._exclusive(str(tmp_path / "missing" / "f.nbi.lock")):
        entered.append("no lock file")  # its directory does not exist
    monkeypatch.setattr(_numba_cache.fcntl, "flock", no_locks)
    with _numba_cache._exclusive(str(tmp_path / "f.nbi.lock")):
        entered.append("no lock")
    assert entered == ["no lock file", "no lock"]
