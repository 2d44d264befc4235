"""Fits on Dask arrays with a real distributed.LocalCluster."""

import logging
import os
import warnings

import numpy as np
import pytest
from numpy.testing import assert_allclose, assert_array_equal
from sklearn.cluster import KMeans
from sklearn.datasets import make_blobs
from sklearn.exceptions import ConvergenceWarning

da = pytest.importorskip("dask.array", reason="dask is not installed (extra natgmm[dask])")
distributed = pytest.importorskip(
    "distributed", reason="distributed is not installed (extra natgmm[dask])"
)

import dask  # noqa: E402
import dask.bag as db  # noqa: E402
import scipy.sparse as sp  # noqa: E402
from conftest import outcome_kind, problem  # noqa: E402

from natgmm import NaturalDiagonalGMM, _kernels  # noqa: E402

RTOL = 1e-10
K = 3
# Uneven row chunks, none of them the in-memory kernel's block size.
CHUNKS = ((3000, 5000, 4000, 8000), (4,))


def _warm_serial_kernels():
    # The workers run the serial kernels. Compiling them once here puts them
    # in numba's disk cache, so that the worker processes load them instead
    # of each compiling them.
    X = np.zeros((8, 4))
    empty, ref = np.empty(0), np.zeros((K, 4))
    eta = np.full((K, 4), -0.5)
    _kernels.label_stats(X, empty, X[0], X[0] + 1, np.empty(0, np.int64), ref[:1], 1, False)
    for float32 in (False, True):  # annealing levels compute in float32
        _kernels.em_stats(
            X,
            empty,
            X[0],
            X[0] + 1,
            eta,
            eta,
            np.zeros(K),
            np.zeros(K),
            ref,
            1,
            False,
            1,
            float32,
        )
    out = np.empty(8), np.empty(8, np.int64), np.empty((8, K))
    _kernels.log_prob(X, X[0], X[0] + 1, eta, eta, np.zeros(K), np.zeros(K), *out, False)
    X[0, 0] = np.nan  # and the kernels for missing entries
    zeros = np.zeros(K)
    _kernels.label_stats_masked(X, empty, X[1], X[1] + 1, np.empty(0, np.int64), ref[:1], 1, False)
    for float32 in (False, True):
        _kernels.em_stats_masked(
            X, empty, X[1], X[1] + 1, eta, eta, eta, zeros, ref, 1, False, 1, float32
        )
    _kernels.log_prob_masked(X, X[1], X[1] + 1, eta, eta, eta, zeros, *out, False)


@pytest.fixture(scope="module")
def cluster():
    _warm_serial_kernels()
    with distributed.LocalCluster(
        n_workers=2,
        threads_per_worker=1,
        processes=True,
        dashboard_address=None,
        silence_logs=logging.ERROR,
    ) as cluster:
        yield cluster


@pytest.fixture(scope="module")
def client(cluster):
    with distributed.Client(cluster) as client:
        yield client


@pytest.fixture(scope="module")
def data():
    X, _ = make_blobs(sum(CHUNKS[0]), n_features=4, centers=K, cluster_std=1.5, random_state=0)
    X = X * [1.0, 10.0, 1e3, 0.1] + [0.0, 5.0, -2e3, 1.0]
    weights = np.random.default_rng(0).uniform(0.0, 2.0, X.shape[0])
    return X, weights


def _start(X):
    """Explicit initial parameters, so numpy and Dask fits start alike."""
    km = KMeans(K, n_init=1, random_state=0).fit(X[:2000])
    labels = km.labels_
    precisions = np.array([1.0 / X[:2000][labels == k].var(axis=0) for k in range(K)])
    return {
        "weights_init": np.bincount(labels, minlength=K) / labels.size,
        "means_init": km.cluster_centers_,
        "precisions_init": precisions,
    }


def _fit(X, sample_weight=None, **kwargs):
    """A fit with every step in float64 unless ``kwargs`` say otherwise.

    The sources then agree to summation order. float32 steps (levels, moves'
    trials, EM's steps before convergence: ``mixed_precision``) round each
    chunk of rows as it is grouped, and Dask's blocks group them otherwise
    than the in-memory kernel
    (``test_annealed_fit_with_float32_steps_equals_numpy_fit``).
    """
    params = {
        "n_components": K, "max_iter": 15, "tol": 0.0, "random_state": 0,
        "mixed_precision": False, **kwargs,
    }  # fmt: skip
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return NaturalDiagonalGMM(**params).fit(X, sample_weight=sample_weight)


def _assert_same_model(ours, reference):
    for name in ("weights_", "means_", "covariances_", "eta1_", "eta2_"):
        assert_allclose(getattr(ours, name), getattr(reference, name), rtol=RTOL, err_msg=name)
    assert_allclose(ours.lower_bounds_, reference.lower_bounds_, rtol=RTOL)
    assert ours.n_iter_ == reference.n_iter_


def _record_gathers(scheduler):
    """Wrap the scheduler's gather handler: record what clients fetch.

    A client (not on a worker) receives every result through this handler.
    Returns the list that receives ``(key, nbytes)`` per fetched key.
    """
    records = []
    original = scheduler.handlers["gather"]

    async def gather(keys, **kwargs):
        records.extend((key, scheduler.tasks[key].nbytes) for key in keys)
        return await original(keys=keys, **kwargs)

    scheduler.handlers["gather"] = gather
    return records, original


@pytest.mark.parametrize("weighted", [False, True])
def test_fit_equals_numpy_fit_and_data_stays_on_workers(cluster, client, data, weighted):
    X, weights = data
    sw = weights if weighted else None
    start = _start(X)
    reference = _fit(X, sw, **start)

    Xd = da.from_array(X, chunks=CHUNKS).persist()
    swd = da.from_array(weights, chunks=CHUNKS[0]).persist() if weighted else None
    distributed.wait([Xd, swd] if weighted else [Xd])
    block_keys = {key for block in Xd.__dask_keys__() for key in block}
    block_bytes = min(CHUNKS[0]) * X.shape[1] * X.itemsize

    records, original = _record_gathers(cluster.scheduler)
    try:
        ours = _fit(Xd, swd, **start)
        fit_records = list(records)
        # The recording sees data when data is fetched.
        Xd.blocks[0].compute()
    finally:
        cluster.scheduler.handlers["gather"] = original
    assert max(nbytes for _, nbytes in records[len(fit_records) :]) >= block_bytes

    _assert_same_model(ours, reference)
    assert fit_records, "the fit fetched nothing: the recording is broken"
    assert not block_keys & {key for key, _ in fit_records}
    # Everything the fit fetched, over all its passes, is smaller than one block.
    assert sum(nbytes for _, nbytes in fit_records) < block_bytes


def test_predictions_are_lazy_and_equal(client, data):
    X, weights = data
    Xd = da.from_array(X, chunks=CHUNKS)
    model = _fit(X, max_iter=5, **_start(X))
    outputs = {
        "score_samples": model.score_samples,
        "predict": model.predict,
        "predict_proba": model.predict_proba,
    }
    for name, method in outputs.items():
        lazy = method(Xd)
        assert isinstance(lazy, da.Array), name
        assert lazy.chunks[0] == CHUNKS[0]
        assert_allclose(lazy.compute(), method(X), rtol=RTOL, err_msg=name)
    assert_allclose(model.score(Xd), model.score(X), rtol=RTOL)
    assert_allclose(
        model.score(Xd, sample_weight=da.from_array(weights, chunks=5000)),
        model.score(X, sample_weight=weights),
        rtol=RTOL,
    )
    far = np.vstack([X, np.full((1, X.shape[1]), 1e300)])  # log-density -inf, weight zero
    assert_allclose(
        model.score(da.from_array(far, chunks=5000), sample_weight=np.r_[weights, 0.0]),
        model.score(X, sample_weight=weights),
        rtol=RTOL,
    )
    for name in ("bic", "aic"):
        for sw in (weights, da.from_array(weights, chunks=5000)):
            assert_allclose(
                getattr(model, name)(Xd, sample_weight=sw),
                getattr(model, name)(X, sample_weight=weights),
                rtol=RTOL,
            )
    fitted = _fit(Xd, max_iter=5, **_start(X))
    assert isinstance(fitted.labels_, da.Array)
    assert_array_equal(fitted.labels_.compute(), model.labels_)


def _assert_same_stream(X, Xd, weights):
    """Two partial_fit blocks of ``X`` and of its Dask copy ``Xd`` give the same model.

    In float64 (the first batch's EM would take float32 steps: see :func:`_fit`).
    """
    stream, dask_stream = (
        NaturalDiagonalGMM(K, random_state=0, mixed_precision=False),
        NaturalDiagonalGMM(K, random_state=0, mixed_precision=False),
    )
    for rows in (slice(0, 8000), slice(8000, 20000)):
        stream.partial_fit(X[rows], sample_weight=weights[rows])
        dask_stream.partial_fit(Xd[rows], sample_weight=weights[rows])
    assert_allclose(dask_stream.lower_bound_, stream.lower_bound_, rtol=RTOL)
    assert_allclose(dask_stream.means_, stream.means_, rtol=RTOL)
    assert_allclose(dask_stream.covariances_, stream.covariances_, rtol=RTOL)


def test_initialisation_annealing_and_partial_fit(client, data):
    X, weights = data
    Xd = da.from_array(X, chunks=CHUNKS)
    # Up to INIT_ROWS rows the initialisation runs on all of them: the same
    # k-means start, and the critical value over the whole data.
    kwargs = {"annealing": "fixed", "anneal_max_iter": 2, "max_iter": 3}
    reference = _fit(X, weights, **kwargs)
    ours = _fit(Xd, da.from_array(weights, chunks=CHUNKS[0]), **kwargs)
    assert_allclose(ours.critical_value_, reference.critical_value_, rtol=RTOL)
    _assert_same_model(ours, reference)

    _assert_same_stream(X, Xd, weights)


@pytest.mark.parametrize("missing", [False, True])
def test_annealed_fit_with_float32_steps_equals_numpy_fit(client, data, missing):
    """Levels in float32 (the default), then the final EM to convergence in float64.

    With the default split-and-merge moves after it, whose short trials are
    float32 too and whose kept moves run to convergence in float64; and the
    steps of the final EM and of the kept moves in float32 until they near
    convergence (``mixed_precision``).

    The float32 sums differ between Dask's blocks and the in-memory
    chunks by float32's rounding, a few 1e-7 of the parameters; EM from two
    starts that close converges to the same maximum, and ``tol=1e-12`` (of
    the lower bound) stops both within 1e-6 of it, relative, with room to
    spare (measured: 3e-11, 1e-9 with missing entries). Leaving the first
    block out moves the parameters by a fifth.
    """
    X, weights = data
    if missing:
        X = X.copy()
        X[np.random.default_rng(3).random(X.shape) < 0.3] = np.nan
    kwargs = {
        "annealing": "temperature", "anneal_max_iter": 3, "max_iter": 500, "tol": 1e-12,
        "mixed_precision": True,
    }  # fmt: skip
    reference = _fit(X, weights, **kwargs)
    ours = _fit(da.from_array(X, chunks=CHUNKS), da.from_array(weights, chunks=CHUNKS[0]), **kwargs)
    assert reference.converged_ and ours.converged_
    for name in ("weights_", "means_", "covariances_"):
        assert_allclose(getattr(ours, name), getattr(reference, name), rtol=1e-6, err_msg=name)
    assert ours.lower_bound_ == pytest.approx(reference.lower_bound_, rel=1e-12)


def test_split_merge_equals_numpy_fit(client, data):
    """Moves ranked from sums over the blocks: the same moves, bounds and model."""
    X, weights = data
    kwargs = {"split_merge": 2, "tol": 1e-3, "max_iter": 100, **_start(X)}
    reference = _fit(X, weights, **kwargs)
    ours = _fit(da.from_array(X, chunks=CHUNKS), da.from_array(weights, chunks=CHUNKS[0]), **kwargs)
    assert len(reference.split_merge_moves_) >= 1
    assert_allclose(ours.split_merge_moves_, reference.split_merge_moves_, rtol=RTOL)
    _assert_same_model(ours, reference)


def test_annealing_on_a_subsample_equals_numpy_fit(client, data):
    """The sample's rows are drawn alike and computed to the client: the same fit."""
    X, weights = data
    kwargs = {"annealing": "floor", "anneal_max_iter": 2, "max_iter": 5, "anneal_subsample": 3000}
    reference = _fit(X, weights, **kwargs)
    ours = _fit(da.from_array(X, chunks=CHUNKS), da.from_array(weights, chunks=CHUNKS[0]), **kwargs)
    assert np.sum(reference.history_["rows"] == 3000) > 0
    assert_array_equal(ours.history_["rows"], reference.history_["rows"])
    _assert_same_model(ours, reference)


def test_missing_entries_equal_numpy_fit(client, data):
    """NaN entries (30%, and a row with none observed): the Dask fit equals the in-memory one.

    The default start (k-means by partial distances on all rows), the
    annealing's critical value, the EM iterations, the predictions and a
    stream of blocks, with sample weights.
    """
    X, weights = data
    Xm = X.copy()
    Xm[np.random.default_rng(3).random(X.shape) < 0.3] = np.nan
    Xm[7] = np.nan
    Xd = da.from_array(Xm, chunks=CHUNKS)
    wd = da.from_array(weights, chunks=CHUNKS[0])
    kwargs = {"annealing": "floor", "anneal_max_iter": 2, "max_iter": 5}
    reference = _fit(Xm, weights, **kwargs)
    ours = _fit(Xd, wd, **kwargs)
    assert_allclose(ours.critical_value_, reference.critical_value_, rtol=RTOL)
    _assert_same_model(ours, reference)
    for name in ("score_samples", "predict_proba"):
        expected = getattr(reference, name)(Xm)
        assert_allclose(getattr(ours, name)(Xd).compute(), expected, rtol=RTOL, err_msg=name)
    assert_array_equal(ours.predict(Xd).compute(), reference.predict(Xm))
    assert ours.score_samples(Xd[7:8]).compute()[0] == pytest.approx(0.0, abs=1e-12)

    _assert_same_stream(Xm, Xd, weights)


def test_initialisation_on_a_sample(client, data, monkeypatch):
    from natgmm import _dask

    X, _ = data
    monkeypatch.setattr(_dask, "INIT_ROWS", 5000)
    model = _fit(da.from_array(X, chunks=CHUNKS), max_iter=0)
    # The start is k-means on INIT_ROWS rows drawn first from the random
    # state, k-means then drawing from the same state: a numpy fit on those
    # rows, from the state after the draw, starts alike (k-means does not
    # depend on the standardisation, one common shift and scale).
    random_state = np.random.RandomState(0)
    rows = np.sort(random_state.choice(X.shape[0], 5000, replace=False))
    reference = _fit(X[rows], max_iter=0, random_state=random_state)
    for name in ("weights_", "means_", "covariances_"):
        assert_allclose(getattr(model, name), getattr(reference, name), rtol=RTOL, err_msg=name)


def test_bad_dask_input(client, data):
    X, _ = data
    bad = X.copy()
    bad[12345, 2] = np.inf
    with pytest.raises(ValueError, match="Input X contains infinity or a value too large"):
        _fit(da.from_array(bad, chunks=CHUNKS))
    bad[12346, 1] = np.nan  # with missing entries too, inf is refused
    with pytest.raises(ValueError, match="Input X contains infinity"):
        _fit(da.from_array(bad, chunks=CHUNKS))
    bad[:, 1] = np.nan
    with pytest.raises(ValueError, match=r"Feature\(s\) 1 of X are missing"):
        _fit(da.from_array(bad, chunks=CHUNKS))
    with pytest.raises(ValueError, match="Negative values"):
        _fit(da.from_array(X, chunks=CHUNKS), -np.ones(X.shape[0]))
    with pytest.raises(ValueError, match="minibatch"):
        _fit(da.from_array(X, chunks=CHUNKS), solver="minibatch")
    model = _fit(X, max_iter=2)
    with pytest.raises(ValueError, match="features"):
        model.predict(da.from_array(X[:, :3], chunks=1000))
    # Predictions are lazy: an infinite entry is refused when its block is computed.
    infinite = da.from_array(np.where(np.arange(len(X))[:, None] == 7, np.inf, X), chunks=6000)
    for predict in (model.predict, model.score_samples, model.predict_proba):
        with pytest.raises(ValueError, match="Input X contains infinity"):
            predict(infinite).compute()
    # Integers are cast to float64, as for numpy input.
    integers = np.rint(X).astype(np.int64)
    assert_allclose(
        model.score_samples(da.from_array(integers, chunks=6000)).compute(),
        model.score_samples(integers),
        rtol=RTOL,
    )


def test_misshapen_dask_input_gets_the_words_of_numpy_input():
    # Dask input's messages lacked "by NaturalDiagonalGMM" and spoke of a
    # "2D Dask array" (audit H, stop 48). A 1-D array's values are not printed.
    X = np.random.default_rng(0).normal(size=(60, 3))
    for bad in (X[:0], X[:, :0], X[:, :, None], X[:1]):
        with pytest.raises(ValueError) as numpy_error:
            NaturalDiagonalGMM(2).fit(bad)
        with pytest.raises(ValueError) as dask_error:
            NaturalDiagonalGMM(2).fit(da.from_array(bad))
        assert str(dask_error.value) == str(numpy_error.value)
    with pytest.raises(ValueError, match=r"Expected 2D array, got 1D array instead\. Reshape"):
        NaturalDiagonalGMM(2).fit(da.from_array(X[:, 0]))


def test_other_dask_collections_and_block_types(data):
    """Clear errors for what is not a Dask array of dense real blocks; masked blocks read as numpy.

    Before: a Delayed failed on its truth value, a Bag on a missing ``ndim``,
    complex blocks were cast to their real part with a warning per block,
    sparse blocks failed in ``isnan`` on the workers and masked ones in numba.
    """
    X, _ = data
    X = X[:2000]
    for other in (dask.delayed(X), db.from_sequence(list(X[:10]), npartitions=2)):
        with pytest.raises(TypeError, match="takes Dask input as a dask.array.Array"):
            _fit(other)
    with pytest.raises(ValueError, match="Complex data not supported"):
        _fit(da.from_array(X + 1j, chunks=500))
    sparse_blocks = da.from_array(X, chunks=(500, 4)).map_blocks(sp.csr_matrix, dtype=X.dtype)
    with pytest.raises(TypeError, match="Sparse data was passed for X"):
        _fit(sparse_blocks)
    masked = np.ma.masked_array(X, mask=np.zeros_like(X, bool))
    masked.mask[0, 0] = True  # ignored, as check_array ignores it in memory
    with dask.config.set(scheduler="synchronous"):
        ours = _fit(da.from_array(masked, chunks=500, asarray=False), max_iter=3)
    _assert_same_model(ours, _fit(masked, max_iter=3))
    unknown = da.from_array(X, chunks=500)
    unknown = unknown[unknown[:, 0] > -np.inf]
    with pytest.raises(ValueError, match=r"unknown chunk sizes.*compute_chunk_sizes\(\) first"):
        _fit(unknown)


def test_weights_are_computed_once(data):
    """Lazy weights are computed once a fit (and a score), not once a pass.

    Numpy weights are persisted once too, rather than sent with each pass's
    graph (on a cluster: 15 MiB a pass for 2 million rows). Before, a fit
    computed lazy weights three times to check them and once every pass.
    """
    X, weights = data
    calls = []

    def counted(block):
        if block.size:  # not dask's call to infer the block type
            calls.append(block.shape[0])
        return block

    lazy = da.from_array(weights, chunks=CHUNKS[0]).map_blocks(counted, dtype=float)
    n_blocks = len(CHUNKS[0])
    with dask.config.set(scheduler="synchronous"):
        model = _fit(da.from_array(X, chunks=CHUNKS), lazy, max_iter=5)
        assert len(calls) == n_blocks
        model.score(da.from_array(X, chunks=CHUNKS), sample_weight=lazy)
    assert len(calls) == 2 * n_blocks


def test_weighted_criteria_submit_no_key_twice_with_another_graph(client, data):
    # bic/aic summed the unpersisted weights under the key that score's sum of
    # the persisted ones has: the scheduler warned "Detected different
    # `run_spec`", which dask/dask#9888 says can end in failures and deadlocks.
    X, weights = data
    model = NaturalDiagonalGMM(K, random_state=0, max_iter=3).fit(X)
    Xd = da.from_array(X, chunks=CHUNKS)

    class Catch(logging.Handler):
        def __init__(self):
            super().__init__(logging.WARNING)
            self.messages = []

        def emit(self, record):
            self.messages.append(record.getMessage())

    scheduler = logging.getLogger("distributed.scheduler")
    catch, level = Catch(), scheduler.level
    scheduler.addHandler(catch)
    scheduler.setLevel(logging.WARNING)
    try:
        for w in (weights, da.from_array(weights, chunks=CHUNKS[0])):
            for name in ("score", "bic", "aic", "score"):
                getattr(model, name)(Xd, sample_weight=w)
    finally:
        scheduler.removeHandler(catch)
        scheduler.setLevel(level)
    assert not [m for m in catch.messages if "run_spec" in m], catch.messages


def test_a_far_row_of_weight_zero_is_left_aside_or_named(client):
    # As in memory, a row of weight zero does not set the internal units; one
    # whose squared terms would overflow is named (numpy input leaves it out).
    X, _ = make_blobs(200, n_features=3, centers=2, random_state=0)
    weights = np.r_[np.ones(len(X)), 0.0]
    reference = NaturalDiagonalGMM(2, random_state=0).fit(X, sample_weight=np.ones(len(X)))
    near = da.from_array(np.vstack([X, np.full((1, 3), 1e100)]), chunks=67)
    model = NaturalDiagonalGMM(2, random_state=0).fit(near, sample_weight=weights)
    assert_allclose(model.lower_bound_, reference.lower_bound_, rtol=1e-9)
    far = da.from_array(np.vstack([X, np.full((1, 3), 1e200)]), chunks=67)
    with pytest.raises(ValueError, match="rows of sample_weight zero more than 1e"):
        NaturalDiagonalGMM(2, random_state=0).fit(far, sample_weight=weights)


def test_bad_dask_sample_weights_are_refused_and_the_stream_kept(client, data):
    """Weights all zero, negative, NaN, infinite or 2-D: scikit-learn's errors, in any batch.

    A stream's later batches are checked too (their scale is the first
    batch's); before, they went unchecked into the statistics. A number is
    every row's weight, as for numpy input.
    """
    X, _ = data
    X = X[:2000]
    n = X.shape[0]
    with pytest.raises(ValueError, match="at least one non-zero number"):
        _fit(da.from_array(X, chunks=500), np.zeros(n))
    # A number weighs every row alike, as for numpy input.
    _assert_same_model(
        _fit(da.from_array(X, chunks=500), 2.0, max_iter=2), _fit(X, 2.0, max_iter=2)
    )
    model = _fit(X, max_iter=2)
    with pytest.raises(ValueError, match="at least one non-zero number"):
        model.score(da.from_array(X, chunks=500), sample_weight=np.zeros(n))
    stream = NaturalDiagonalGMM(3, random_state=0)
    stream.partial_fit(da.from_array(X, chunks=500), sample_weight=np.ones(n))
    means = stream.means_.copy()
    for weights, message in (
        (np.zeros(n), "at least one non-zero number"),
        (-np.ones(n), "Negative values in data passed to `sample_weight`"),
        (np.full(n, np.nan), "Input sample_weight contains NaN"),
        (np.full(n, np.inf), "Input sample_weight contains infinity"),
        (np.ones((n, 1)), "Sample weights must be 1D array or scalar, got 2D array"),
    ):
        with pytest.raises(ValueError, match=message):
            stream.partial_fit(da.from_array(X, chunks=500), sample_weight=weights)
        assert_array_equal(stream.means_, means)


def _fuzz_fit(data, k, weights):
    return NaturalDiagonalGMM(k, random_state=0, max_iter=20, n_jobs=1).fit(data, weights)


def _fuzz_stream(data, k, weights):
    model = NaturalDiagonalGMM(k, random_state=0, n_jobs=1)
    for rows in np.array_split(np.arange(data.shape[0]), 3):
        if rows.size:
            model.partial_fit(data[rows], None if weights is None else weights[rows])
    return model


def test_fuzzed_dask_fits_end_as_numpy_fits(client):
    """12 hostile arrays as Dask arrays: a fit and a stream each end as on the numpy array.

    Finite both ways or refused both ways (``fuzz_robustness.py --runs dask``
    runs the same on 2000 arrays).
    """
    rng = np.random.default_rng(23)
    findings = []
    for i in range(12):
        X, weights, k = problem(rng)
        Xd = da.from_array(X, chunks=(max(1, X.shape[0] // 3), -1))
        for run in (_fuzz_fit, _fuzz_stream):
            on_dask = outcome_kind(run, Xd, k, weights)
            on_numpy = outcome_kind(run, X, k, weights)
            if on_dask != on_numpy or on_dask not in ("finite", "ValueError"):
                findings.append((i, run.__name__, on_numpy, on_dask))
    assert not findings, findings


def test_worker_killed_mid_fit_is_survived(cluster, client, data, tmp_path):
    X, _ = data
    start = _start(X)
    reference = _fit(X, **start)
    n_blocks = len(CHUNKS[0])
    # Passes: extremes, two moment passes, then one per EM iteration; the
    # data is not persisted, so every pass recomputes its blocks.
    doomed_call = n_blocks * 5 + 1

    def die_once(block):
        # Calls are numbered across processes by exclusive file creation;
        # the process making the doomed call exits without cleanup.
        number = 0
        while True:
            try:
                os.close(os.open(tmp_path / f"call-{number}", os.O_CREAT | os.O_EXCL))
                break
            except FileExistsError:
                number += 1
        if number == doomed_call:
            os._exit(1)
        return block

    Xd = da.from_array(X, chunks=CHUNKS).map_blocks(die_once, dtype=X.dtype)
    pids = set(client.run(os.getpid).values())
    ours = _fit(Xd, **start)
    assert (tmp_path / f"call-{doomed_call}").exists()
    client.wait_for_workers(2, timeout=60)
    assert set(client.run(os.getpid).values()) != pids, "no worker was replaced"
    _assert_same_model(ours, reference)


def test_a_block_that_never_observes_a_feature(monkeypatch):
    # Its NaN maximum must not hide the other blocks' values: the fit equals
    # numpy's (a plain maximum reported the feature missing in every row).
    rng = np.random.default_rng(0)
    X = rng.normal(size=(400, 2))
    X[:100, 1] = np.nan
    kwargs = dict(random_state=0, mixed_precision=False)  # see _fit
    with dask.config.set(scheduler="synchronous"):
        lazy = NaturalDiagonalGMM(2, **kwargs).fit(da.from_array(X, chunks=(100, 2)))
    eager = NaturalDiagonalGMM(2, **kwargs).fit(X)
    assert_allclose(lazy.means_, eager.means_, rtol=1e-10)
    assert_allclose(lazy.covariances_, eager.covariances_, rtol=1e-10)


def test_a_stream_of_dask_batches_weighs_them_as_numpy_does():
    # The weights' scale is fixed by the first batch: a Dask stream that
    # recomputed it per batch counted a batch of weights 1e-3 1024 times.
    rng = np.random.default_rng(0)
    A, B = rng.normal(0, 1, (400, 2)), rng.normal(3, 1, (400, 2))
    wa, wb = np.ones(400), np.full(400, 1e-3)
    fits = []
    with dask.config.set(scheduler="synchronous"):
        for wrap in (np.asarray, lambda a: da.from_array(a, chunks=100)):
            model = NaturalDiagonalGMM(1, random_state=0)
            model.partial_fit(wrap(A), sample_weight=wrap(wa))
            fits.append(model.partial_fit(wrap(B), sample_weight=wrap(wb)))
    assert_allclose(fits[1].means_, fits[0].means_, rtol=1e-10)
    assert_allclose(fits[1].covariances_, fits[0].covariances_, rtol=1e-10)
