"""natgmm's compiled k-means against scikit-learn's KMeans and kmeans_plusplus.

Equality is asserted, not closeness: both evaluate the same algorithm from the
same random draws, and they can differ only for a row within rounding of two
centres (about 1e-16 of the squared distances in float64) or a draw within
rounding of a boundary of the cumulative potential. On continuous random data
of a few thousand rows neither happens (the chance is of order 1e-9 per run);
a failure here means a real difference.
"""

import os
import subprocess
import sys
import warnings

import naive
import numba
import numpy as np
import pytest
from numpy.testing import assert_allclose, assert_array_equal
from sklearn.cluster import KMeans, kmeans_plusplus
from sklearn.cluster._k_means_common import _relocate_empty_clusters_dense
from sklearn.exceptions import ConvergenceWarning
from sklearn.metrics import pairwise_distances_argmin

from natgmm import _kmeans, _threading


def _data(n_samples=2000, n_features=8, n_centres=12, seed=0, dtype=np.float64):
    """Overlapping blobs in user units far from the origin, and the k-means map."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(scale=3.0, size=(n_centres, n_features))
    X = centres[rng.integers(n_centres, size=n_samples)] + rng.normal(size=(n_samples, n_features))
    X = (X * 50.0 + 1000.0).astype(dtype)
    shift = X.astype(np.float64).mean(axis=0)
    spread = X.astype(np.float64).std(axis=0).max()
    return X, shift, 1.0 / spread


def _mapped(X, shift, scale):
    """The rows as the kernels map them, for scikit-learn."""
    shift, scale, _ = _kmeans._check(X, None, shift, scale)
    return _kmeans.map_rows(X, np.arange(X.shape[0]), shift, scale)


@pytest.mark.parametrize("n_clusters", [1, 5, 20])
@pytest.mark.parametrize("seed", [0, 3])
@pytest.mark.parametrize("weighted", [False, True])
def test_seeds_are_kmeans_plusplus_rows(n_clusters, seed, weighted):
    X, shift, scale = _data(seed=seed)
    Z = _mapped(X, shift, scale)
    sw = np.random.default_rng(seed).uniform(0.1, 2.0, X.shape[0]) if weighted else None
    centres, indices = kmeans_plusplus(Z, n_clusters, random_state=seed, sample_weight=sw)
    labels, seeds, ours = _kmeans.kmeans_plusplus(X, sw, shift, scale, n_clusters, seed, True)
    assert_array_equal(ours, indices)
    assert_array_equal(seeds, centres)
    assert_array_equal(labels, pairwise_distances_argmin(Z, centres))


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("n_clusters", [2, 7, 25])
@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("weighted", [False, True])
def test_labels_are_kmeans_labels(dtype, n_clusters, seed, weighted):
    X, shift, scale = _data(dtype=dtype, seed=seed)
    # float32 data is mapped in float64: the reference is scikit-learn on it.
    Z = _mapped(X, shift, scale)
    sw = np.random.default_rng(seed).uniform(0.1, 2.0, X.shape[0]) if weighted else None
    reference = KMeans(n_clusters, n_init=1, random_state=seed).fit(Z, sample_weight=sw)
    labels, centres, n_iter = _kmeans.kmeans(X, sw, shift, scale, n_clusters, seed, True)
    assert labels.dtype == np.int64
    assert_array_equal(labels, reference.labels_)
    assert n_iter == reference.n_iter_
    # Centres are weighted means, summed in another order (and here
    # incrementally): agreement to a few hundred ulps of their spread.
    assert_allclose(centres, reference.cluster_centers_, rtol=0, atol=1e-12)


def test_integer_weight_is_repetition():
    X, shift, scale = _data(n_samples=800)
    rng = np.random.default_rng(5)
    counts = rng.integers(1, 4, size=X.shape[0])
    reference = KMeans(6, n_init=1, random_state=2).fit(
        _mapped(X, shift, scale), sample_weight=counts.astype(float)
    )
    labels, _, _ = _kmeans.kmeans(X, counts.astype(float), shift, scale, 6, 2, False)
    assert_array_equal(labels, reference.labels_)


def test_random_state_advances_as_scikit_learns():
    X, shift, scale = _data(n_samples=500)
    ours, theirs = np.random.RandomState(4), np.random.RandomState(4)
    _kmeans.kmeans(X, None, shift, scale, 6, ours, False)
    KMeans(6, n_init=1, random_state=theirs).fit(_mapped(X, shift, scale))
    assert ours.uniform() == theirs.uniform()


@pytest.mark.parametrize("n_clusters", [4, 6])
def test_fewer_distinct_rows_than_clusters(n_clusters):
    # Three distinct rows: the seeding runs out of potential and repeats row
    # 0, Lloyd's leaves clusters empty, and they copy the heaviest centre.
    rng = np.random.default_rng(0)
    points = rng.normal(size=(3, 4))
    X = points[rng.integers(3, size=90)]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        reference = KMeans(n_clusters, n_init=1, random_state=1).fit(X)
    labels, centres, n_iter = _kmeans.kmeans(X, None, 0.0, 1.0, n_clusters, 1, True)
    assert_array_equal(labels, reference.labels_)
    assert n_iter == reference.n_iter_
    used = np.unique(labels)
    assert_allclose(centres[used], reference.cluster_centers_[used], atol=1e-12)
    # An empty cluster's centre is a copy of another centre or a relocated
    # row; which one depends on whether rounding leaves a row 1e-32 away from
    # its centre (then scikit-learn relocates), in either implementation.
    for centre in np.delete(centres, used, axis=0):
        assert np.min(np.abs(points - centre).max(axis=1)) < 1e-12


@pytest.mark.parametrize("random_state", [0, 1, 2])
def test_empty_clusters_take_scikit_learns_centres(random_state):
    # Two distinct rows, four clusters: the two empty clusters' centres are
    # scikit-learn's (the heaviest cluster's mean, not its unscaled sum).
    X = np.array([[1.0, 1.0]] * 3 + [[2.0, 5.0]] * 2)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        reference = KMeans(4, n_init=1, random_state=random_state).fit(X)
    labels, centres, _ = _kmeans.kmeans(X, None, np.zeros(2), np.ones(2), 4, random_state, False)
    assert_array_equal(labels, reference.labels_)
    assert_allclose(centres, reference.cluster_centers_, rtol=1e-15)


def test_duplicated_rows():
    X, shift, scale = _data(n_samples=600)
    X = np.concatenate([X, X[:300], X[:100]])
    reference = KMeans(9, n_init=1, random_state=0).fit(_mapped(X, shift, scale))
    labels, _, _ = _kmeans.kmeans(X, None, shift, scale, 9, 0, True)
    assert_array_equal(labels, reference.labels_)


@pytest.mark.parametrize("zero_weight", [False, True])
def test_relocation_is_scikit_learns(zero_weight):
    # Relocation is rare after k-means++ seeding: compare it on crafted
    # statistics with scikit-learn's own routine.
    rng = np.random.default_rng(0)
    X = rng.normal(size=(50, 3))
    w = rng.uniform(0.5, 2.0, size=50)
    if zero_weight:
        w[np.argmax(np.sum(X**2, axis=1))] = 0.0
    centres = np.stack([X[:25].mean(axis=0), X[25:].mean(axis=0), X.mean(0), X.mean(0) + 1])
    labels = np.where(np.arange(50) < 25, 0, 1).astype(np.int64)
    sums = np.zeros((4, 3))
    weight = np.zeros(4)
    for k in range(2):
        sums[k] = w[labels == k] @ X[labels == k]
        weight[k] = w[labels == k].sum()
    expected_sums, expected_weight = sums.copy(), weight.copy()
    _relocate_empty_clusters_dense(
        X, w, centres, expected_sums, expected_weight, labels.astype(np.int32)
    )
    _kmeans._relocate(X, w, np.zeros(3), np.ones(3), centres, labels, sums, weight, False, 1)
    assert_allclose(sums, expected_sums, rtol=1e-14)
    assert_array_equal(weight, expected_weight)


def test_thread_count_does_not_change_results():
    X, shift, scale = _data(n_samples=70_000, n_features=6, n_centres=15)
    results = []
    for parallel, n_threads in [(False, 1), (True, 1), (True, numba.config.NUMBA_NUM_THREADS)]:
        with _threading.kernel_threads(n_threads):
            results.append(_kmeans.kmeans(X, None, shift, scale, 15, 0, parallel))
    for labels, centres, n_iter in results[1:]:
        assert_array_equal(labels, results[0][0])
        assert_array_equal(centres, results[0][1])
        assert n_iter == results[0][2]


def test_float32_products_change_nothing(monkeypatch):
    """Lloyd's products in float32 only widen the window of the exact comparison."""
    X, shift, scale = _data(n_samples=5000, n_features=12, n_centres=30)
    assert _kmeans._product_dtype(_mapped(X[:1], shift, scale), 10.0) is np.float32
    runs = {}
    for dtype in (np.float32, np.float64):
        monkeypatch.setattr(_kmeans, "_product_dtype", lambda seeds, diameter, d=dtype: d)
        runs[dtype] = _kmeans._kmeans(X, None, shift, scale, 30, 0, True, 300, 1e-4)
    (labels32, centres32, n_iter32, work32), (labels, centres, n_iter, work) = runs.values()
    assert_array_equal(labels32, labels)
    assert_array_equal(centres32, centres)
    assert n_iter32 == n_iter
    # The wider window evaluates a few more rows, never a tenth more.
    assert sum(work) <= sum(work32) <= 1.1 * sum(work)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("weighted", [False, True])
def test_float32_copy_changes_nothing(monkeypatch, dtype, weighted):
    """Lloyd's rows read from the float32 copy give the labels, centres and iterations of ``X``'s.

    The copy's rounding loosens the upper bounds by about 6e-8 of a row's
    norm but decides no label: a row that may change label is read from
    ``X`` again.
    Rows by the thousand repeat (exact ties between centres).
    """
    X, shift, scale = _data(n_samples=6000, n_features=10, n_centres=25, dtype=dtype)
    X[3000:] = X[:3000]  # exact duplicates
    w = np.random.default_rng(1).integers(0, 3, size=X.shape[0]).astype(float) if weighted else None
    assert X.nbytes <= _kmeans._COPY_BYTES
    with_copy = _kmeans._kmeans(X, w, shift, scale, 25, 0, True, 300, 1e-4)
    monkeypatch.setattr(_kmeans, "_COPY_BYTES", 0)
    without = _kmeans._kmeans(X, w, shift, scale, 25, 0, True, 300, 1e-4)
    for a, b in zip(with_copy[:3], without[:3], strict=True):
        assert_array_equal(a, b)
    # The rounding's slack (6e-8 of a row's norm) hardly changes which rows
    # the products take (on these data, not one; fresher lower bounds could
    # even spare some): at most 1 % more.
    assert sum(with_copy[3]) <= 1.01 * sum(without[3])


@pytest.mark.parametrize("members", [[0, 1, 2, 3, 4, 5], [3, 0, 5, 4, 1, 2]])
@pytest.mark.parametrize(
    "dtype, rounded", [(np.float32, False), (np.float64, False), (np.float32, True)]
)
def test_assignment_near_bisectors_is_exact(dtype, members, rounded):
    """Rows within rounding of the bisector of two centres get the exact nearest.

    Far from the origin (|z| about 100) a float32 product is off by about
    1e-2 in the squared distances, far more than the gap between the two
    nearest centres of these rows: the rounding window must send both to
    the exact comparison, and every lower bound must stay below the exact
    distance it bounds. Centres 2 and 4 are equal: the first index wins,
    whatever the order of the products' columns (``members``). ``rounded``:
    the rows come as Lloyd's float32 copy has them (about 6e-6 off in each
    feature, 200 times the rows' distance from the bisector), with their
    rounded distances to their current centres; the labels must still be
    exact, and each upper bound at least the exact distance, within the
    rounding's bound of it (float32 products only, which round the rows so).
    """
    rng = np.random.default_rng(0)
    n_clusters, n_features, n_rows = 6, 12, 128
    C = 100.0 + rng.normal(size=(n_clusters, n_features))
    C[4] = C[2]
    pairs = rng.integers(n_clusters, size=(n_rows, 2))
    pairs[:, 1] = (pairs[:, 0] + 1 + pairs[:, 1] % (n_clusters - 1)) % n_clusters
    t = rng.uniform(-1e-7, 1e-7, size=(n_rows, 1))
    Z = 0.5 * (C[pairs[:, 0]] + C[pairs[:, 1]]) + t * (C[pairs[:, 1]] - C[pairs[:, 0]])
    exact = _kmeans._pairwise_sq_dists(Z, C)
    members = np.array(members)
    group_of = np.empty(n_clusters, dtype=np.int64)
    group_of[members] = [0, 0, 1, 1, 1, 2]
    groups = (members, np.array([0, 2, 5, 6]))
    CP = np.ascontiguousarray(C[members], dtype=dtype)
    upper, glb = np.empty(n_rows), np.empty((n_rows, 3))
    unused = np.empty((1, 1, 1)), np.empty((1, 1)), np.empty((1, 1), dtype=np.int64)
    zsq = np.einsum("ij,ij->i", Z, Z)
    if rounded:  # each row starts in one of its two centres, or another
        labels = np.where(
            rng.random(n_rows) < 0.8, pairs[:, 0], rng.integers(n_clusters, size=n_rows)
        )
        zbuf = Z.astype(np.float32).astype(np.float64)
        own = _kmeans._pairwise_sq_dists(zbuf, C)[np.arange(n_rows), labels]
        zx = np.empty(n_features)
    else:
        labels = np.full(n_rows, -1)
        zbuf, own, zx = Z, np.empty(0), np.empty(0)
    _kmeans._assign_rows(
        zbuf, np.arange(n_rows), own, zsq if rounded else np.empty(0), n_rows, C, CP,
        _kmeans._sq_norms(C[members]), groups,
        _kmeans._assign_scratch(Z, CP, 3), np.empty(0), labels, upper, glb, 0, *unused, False,
        Z, np.zeros(n_features), np.ones(n_features), zx,
    )  # fmt: skip
    assert_array_equal(labels, np.argmin(exact, axis=1))
    nearest = np.sqrt(exact.min(axis=1))
    if rounded:  # (the root of the rows' norms is about 350: the bound about 2e-5 above)
        assert np.all(upper >= nearest)
        assert np.all(upper <= nearest + 2.0 * _kmeans._ROUNDING_32 * np.sqrt(zsq))
    else:
        assert_array_equal(upper, nearest)
    others = np.where(np.arange(n_clusters) == labels[:, None], np.inf, exact)
    for g in range(3):
        assert np.all(glb[:, g] <= np.sqrt(others[:, group_of == g].min(axis=1)))


def test_float32_products_only_where_they_cannot_overflow():
    seeds = np.zeros((2, 3))
    assert _kmeans._product_dtype(seeds, 1.0) is np.float32
    assert _kmeans._product_dtype(seeds + 1e16, 1.0) is np.float64
    assert _kmeans._product_dtype(seeds, 1e-12) is np.float64
    # Data at 1e20 (squares beyond float32) cluster as they do at 1.
    X, shift, scale = _data(n_samples=1000)
    small = _kmeans.kmeans(X, None, shift, scale, 5, 0, True)
    large = _kmeans.kmeans(X, None, shift, scale * 1e20, 5, 0, True)
    assert_array_equal(large[0], small[0])


def test_read_only_memmap(tmp_path):
    X, shift, scale = _data(n_samples=1000, dtype=np.float32)
    path = tmp_path / "X.npy"
    np.save(path, X)
    mapped = np.load(path, mmap_mode="r")
    expected = _kmeans.kmeans(X, None, shift, scale, 5, 0, True)
    got = _kmeans.kmeans(mapped, None, shift, scale, 5, 0, True)
    assert_array_equal(got[0], expected[0])
    assert_array_equal(got[1], expected[1])
    assert_array_equal(_kmeans.nearest(mapped, shift, scale, got[1], True), got[0])


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_nearest_is_pairwise_argmin(dtype):
    X, shift, scale = _data(dtype=dtype)
    Z = _mapped(X, shift, scale)
    centres = Z[np.random.default_rng(0).choice(len(Z), 30, replace=False)]
    centres[5] = centres[3]  # a tie: the first of equal centres wins
    expected = pairwise_distances_argmin(Z, centres)
    for parallel in (False, True):
        assert_array_equal(_kmeans.nearest(X, shift, scale, centres, parallel), expected)


def test_max_iter_and_tolerance():
    X, shift, scale = _data()
    Z = _mapped(X, shift, scale)
    for max_iter, tol in [(1, 1e-4), (3, 1e-4), (300, 1e-2), (300, 0.0)]:
        reference = KMeans(9, n_init=1, random_state=0, max_iter=max_iter, tol=tol).fit(Z)
        labels, _, n_iter = _kmeans.kmeans(X, None, shift, scale, 9, 0, True, max_iter, tol)
        assert n_iter == reference.n_iter_
        assert_array_equal(labels, reference.labels_)


def test_too_few_rows():
    with pytest.raises(ValueError, match="n_samples=3 should be >= n_clusters=4"):
        _kmeans.kmeans(np.zeros((3, 2)), None, 0.0, 1.0, 4, 0, False)


@pytest.mark.parametrize("taken", [False, True])
@pytest.mark.parametrize("weighted", [False, True])
def test_draw_is_searchsorted_of_cumsum(weighted, taken):
    """``taken``: a candidate was just taken, whose distances lower ``d`` where smaller."""
    rng = np.random.default_rng(0)
    n, n_blocks = 1000, 7
    d = rng.uniform(size=n) * (rng.uniform(size=n) < 0.7)  # zero terms: rows never drawn
    w = rng.uniform(0, 2, size=n) * (rng.uniform(size=n) < 0.8) if weighted else np.empty(0)
    dist = rng.uniform(size=(n, 3))
    prev = 1 if taken else -1
    given = d.copy()
    if taken:
        d = np.minimum(d, dist[:, prev])
    terms = d * (w if weighted else 1.0)
    block = -(-n // n_blocks)
    block_pot = np.array([terms[b * block : (b + 1) * block].sum() for b in range(n_blocks)])
    r = np.concatenate([rng.uniform(size=200) * terms.sum(), [0.0, 2 * terms.sum()]])
    expected = np.minimum(np.searchsorted(np.cumsum(terms), r), n - 1)
    # Sums in another order than np.cumsum: a draw within rounding of a
    # boundary may differ; none of these 202 falls within 1e-12 of one.
    assert np.min(np.abs(np.cumsum(terms)[:, None] - r[:200])) > 1e-12
    assert_array_equal(_kmeans._draw(w, given, dist, prev, block_pot, r, n_blocks), expected)


@numba.njit
def _shifted_dots(x, shift, C):
    out = np.empty(C.shape[0])
    _kmeans._shifted_dots(x, shift, C, out)
    return out


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_shifted_dots_are_dots_in_one_order(dtype):
    """Every feature count (vectors of four and a tail) and candidate count (groups of four).

    The error is a dot product's, at most ``(n_features + 1) u sum|u_j c_j|``
    with u the unit roundoff; each row's value is the same bits whichever
    group it is computed in, and for a strided row of the data as for a
    contiguous one.
    """
    rng = np.random.default_rng(0)
    for n_features in range(1, 14):
        x = (rng.normal(size=n_features) * 10.0 + 3.0).astype(dtype)
        shift = rng.normal(size=n_features)
        C = rng.normal(size=(11, n_features))
        u = x.astype(np.float64) - shift
        bound = (n_features + 1) * 2.0**-53 * (np.abs(C) @ np.abs(u))
        for n_rows in range(1, 12):
            out = _shifted_dots(x, shift, C[:n_rows])
            exact = naive.exact_shifted_dots(x, shift, C[:n_rows])
            error = np.array([abs(float(o - e)) for o, e in zip(out, exact, strict=True)])
            assert np.all(error <= bound[:n_rows])
            alone = [_shifted_dots(x, shift, C[t : t + 1])[0] for t in range(n_rows)]
            assert_array_equal(out, alone)
        strided = np.stack([x, x + 1], axis=1)[:, 0]
        assert n_features == 1 or not strided.flags.c_contiguous
        assert_array_equal(_shifted_dots(strided, shift, C), _shifted_dots(x, shift, C))


def test_sq_dist_and_norm_in_simd():
    """Every feature count: within a sum's rounding of the exact value; strided rows alike."""
    rng = np.random.default_rng(1)
    for n_features in range(1, 20):
        a, b = rng.normal(size=(2, n_features)) * 10.0
        bound = (n_features + 1) * 2.0**-53
        diff = a - b  # the one rounding before the sums, as in the kernels
        exact = naive.exact_shifted_dots(diff, np.zeros(n_features), diff[np.newaxis])[0]
        assert abs(float(_kmeans._sq_dist(a, b) - exact)) <= bound * float(exact)
        exact = naive.exact_shifted_dots(a, np.zeros(n_features), a[np.newaxis])[0]
        assert abs(float(_kmeans._sq_norm(a) - exact)) <= bound * float(exact)
        strided = np.stack([a, b], axis=1)
        assert _kmeans._sq_dist(strided[:, 0], strided[:, 1]) == _kmeans._sq_dist(a, b)
        assert _kmeans._sq_norm(strided[:, 0]) == _kmeans._sq_norm(a)
        # Both sums in one pass, bit for bit as alone (Lloyd's rows use it).
        both = (_kmeans._sq_dist(a, b), _kmeans._sq_norm(a))
        assert _kmeans._sq_dist_and_norm(a, b) == both
        assert _kmeans._sq_dist_and_norm(strided[:, 0], strided[:, 1]) == both


def test_half_separations_are_numpys_bit_for_bit():
    """Each pair once: the same bits as the full matrix's row minima, NaN and one centre alike."""
    rng = np.random.default_rng(3)
    for n_centres, n_features in [(1, 3), (2, 1), (7, 5), (23, 50)]:
        centres = rng.normal(size=(n_centres, n_features)) * 10.0
        if n_centres == 7:
            centres[3, 2] = np.nan
        sq = _kmeans._pairwise_sq_dists(centres, centres)
        np.fill_diagonal(sq, np.inf)
        expected = 0.5 * np.sqrt(sq.min(axis=1))
        assert_array_equal(_kmeans._half_separations(centres), expected)


def test_group_bounds_are_least_per_group_but_best():
    rng = np.random.default_rng(2)
    # A column per row: squared distances to 23 centres (the roots below differ).
    low = rng.uniform(1.0, 2.0, size=(23, 9))
    low[5, 3] = -1e-9  # a bound rounded below zero gives 0
    group_of = np.sort(rng.integers(4, size=23))  # groups are contiguous runs
    start = np.searchsorted(group_of, np.arange(5))
    best = np.array([0, 7, 22, 0, 7, 22, 5, 1, 3])
    # The best centre usually has the least bound of all: leaving it out matters.
    nearest = np.array([False, False, False, True, True, True, True, False, False])
    low[best[nearest], np.flatnonzero(nearest)] = 0.5
    # Columns past n_rows (the chunk's unused rows) are left as they are.
    n_rows = 8
    out = np.full((4, 9), 7.0)
    _kmeans._group_bounds(low, best, start, n_rows, out)
    for r in range(n_rows):
        others = np.where(np.arange(23) == best[r], np.inf, low[:, r])
        expected = [others[group_of == g].min() for g in range(4)]
        assert_array_equal(out[:, r], np.sqrt(np.maximum(expected, 0.0)))
    assert_array_equal(out[:, n_rows:], 7.0)


# Run in a fresh process, so that only what the fits compile is looked at
# (tests that call kernels directly compile types of their own).
_FIT_PATHS = """
import numba, numpy as np
from natgmm import NaturalDiagonalGMM, _kernels, _kmeans, _threading
_threading.MIN_PARALLEL_WORK = 0  # the parallel kernels too, on these small data
rng = np.random.default_rng(0)
X = rng.normal(size=(600, 4))
missing = np.where(rng.random(X.shape) < 0.1, np.nan, X)
# k-means (and nearest-seed labels), the E-step untempered and tempered,
# serial and parallel, float32, missing entries.
NaturalDiagonalGMM(3, random_state=0).fit(X).predict(X)
NaturalDiagonalGMM(3, random_state=0, annealing="temperature", n_jobs=1).fit(X)
NaturalDiagonalGMM(3, random_state=0).fit(X.astype(np.float32))
NaturalDiagonalGMM(3, random_state=0).fit(missing).predict(missing)
_kmeans.nearest(X, 0.0, 1.0, X[:3], True)
for module in (_kernels, _kmeans):
    for name, dispatcher in vars(module).items():
        if isinstance(dispatcher, _kernels._Blockwise):
            dispatcher = dispatcher.kernel
        if not isinstance(dispatcher, numba.core.registry.CPUDispatcher):
            continue
        for signature in dispatcher.signatures:
            if any(isinstance(a, numba.types.Literal) for a in signature) or (
                numba.types.uint64 in signature
            ):
                print("literal or uint64:", name, signature)
        writeable = [
            tuple(a.copy(readonly=False) if isinstance(a, numba.types.Array) else a for a in s)
            for s in dispatcher.signatures
        ]
        if len(set(writeable)) < len(writeable):
            print("read-only twins:", name, dispatcher.signatures)
"""


def test_no_kernel_compiled_for_literals_or_unsigned_indices(tmp_path):
    """Each helper is compiled once per array dtype, not per literal, index type or flag.

    A literal argument (``0``, ``True``), the parallel loop's ``uint64``
    index or an array read-only at one call and writeable at another compiles
    a helper once more, and each copy costs seconds of a cold start
    (``_assign_rows`` was compiled three times: 3.7 s of k-means' 23.7 s here).
    With an empty numba cache of its own: a kernel loaded from the disk cache
    compiles none of its helpers, so that a warm cache would hide them all
    (it hid three such copies until 2026-12-05).
    """
    env = dict(os.environ, NUMBA_CACHE_DIR=str(tmp_path))
    result = subprocess.run(
        [sys.executable, "-c", _FIT_PATHS], capture_output=True, text=True, check=True, env=env
    )
    assert result.stdout == "", result.stdout
