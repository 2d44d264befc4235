"""Kernel calls shared out over natgmm's threads; OpenMP's wait policy (natgmm/_threading.py)."""

import os
import textwrap
import threading
import time
import warnings

import numpy as np
import pytest
from conftest import run_python
from numpy.testing import assert_array_equal
from sklearn.exceptions import ConvergenceWarning

from natgmm import NaturalDiagonalGMM, _kernels, _kmeans, _threading, _wait_policy

# The library's limit, read before tests/conftest.py's fixture sets it to 0.
_DEFAULT_MIN_PARALLEL_WORK = _threading.MIN_PARALLEL_WORK


def _blockwise_kernels():
    return [
        value
        for module in (_kernels, _kmeans)
        for value in vars(module).values()
        if isinstance(value, _kernels._Blockwise)
    ]


def test_configure_wait_policy_keeps_the_users_choice():
    environ = {}
    assert _wait_policy.configure_wait_policy(environ) == {"OMP_WAIT_POLICY": "passive"}
    assert environ == {"OMP_WAIT_POLICY": "passive"}
    environ = {"OMP_WAIT_POLICY": "active"}
    assert _wait_policy.configure_wait_policy(environ) == {}
    assert environ == {"OMP_WAIT_POLICY": "active"}


def test_import_sets_passive_waiting_and_fits_load_no_numba_threading_layer():
    """``import natgmm`` sets the policy; a fit never starts numba's OpenMP, TBB or workqueue pool.

    natgmm's kernels run on its own Python threads, so numba's layers (and
    the libgomp numba would load) stay out of the process.
    """
    code = textwrap.dedent(
        """
        import os, sys
        import numpy as np
        import natgmm
        X = np.random.default_rng(0).normal(size=(4000, 8))
        natgmm.NaturalDiagonalGMM(3, random_state=0, max_iter=3).fit(X).predict(X)
        layers = ("omppool", "tbbpool", "workqueue")
        loaded = any("numba.np.ufunc." + m in sys.modules for m in layers)
        print(os.environ.get("OMP_WAIT_POLICY"), loaded)
        """
    )
    environ = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    result = run_python(code, environ)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["passive", "False"]
    code = "import os, natgmm; print(os.environ['OMP_WAIT_POLICY'])"
    kept = run_python(code, OMP_WAIT_POLICY="active")
    assert kept.stdout.strip() == "active"


def test_concurrent_fits_from_python_threads():
    """Fits from four Python threads at once, three each, give the fits run one after another.

    Every call shares its blocks out over the one pool (tests/conftest.py
    sets the work limit to 0), so the threads' calls interleave on it.
    """
    from sklearn.datasets import make_blobs

    X, _ = make_blobs(3000, 5, centers=4, random_state=0)

    def fit(seed):
        model = NaturalDiagonalGMM(4, random_state=seed, max_iter=20, tol=0.0).fit(X)
        return model.means_, model.covariances_, model.weights_, model.predict(X)

    serial = [fit(seed) for seed in range(4)]
    results = [[] for _ in range(4)]

    def work(seed):
        for _ in range(3):
            results[seed].append(fit(seed))

    threads = [threading.Thread(target=work, args=(seed,)) for seed in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert all(len(runs) == 3 for runs in results)
    for seed in range(4):
        for run in results[seed]:
            for a, b in zip(run, serial[seed], strict=True):
                assert_array_equal(a, b)


def _fake_kernel(calls):
    """A kernel over blocks: block ``b`` of ``out`` (in place) and of the result is ``b``."""

    def kernel(out, n_blocks, first, last):
        calls.append((first, last, threading.get_ident()))
        result = np.full((n_blocks, 2), -1.0), np.full(n_blocks, -1, dtype=np.int64)
        for b in range(first, last):
            out[b] = b
            result[0][b] = b
            result[1][b] = b
        return result

    return kernel


@pytest.mark.parametrize("count", [1, 2, 3, 7])
def test_share_out_runs_each_block_once_and_gathers_them(monkeypatch, count):
    """Contiguous ranges, the first on the calling thread; every block's rows from its own call."""
    monkeypatch.setattr(_threading, "current_threads", lambda: count)
    calls = []
    out = np.full(5, -1.0)
    nb, blocks = _threading.share_out(_fake_kernel(calls), (out, 5), 5)
    assert_array_equal(out, np.arange(5))
    assert_array_equal(nb, np.repeat(np.arange(5.0), 2).reshape(5, 2))
    assert_array_equal(blocks, np.arange(5))
    ranges = sorted((first, last) for first, last, _ in calls)
    assert ranges[0][0] == 0 and ranges[-1][1] == 5
    assert all(a[1] == b[0] for a, b in zip(ranges, ranges[1:], strict=False))  # no gap, no overlap
    assert len(calls) == min(count, 5)
    assert any(c[:2] == ranges[0] and c[2] == threading.get_ident() for c in calls)


@pytest.mark.parametrize("raising", ["pool", "caller"])
def test_share_out_raises_an_error_after_every_call_ended(monkeypatch, raising):
    """The error of either thread's call is raised once the other call has ended too.

    The call that does not raise takes a while: an error raised before it
    ended would leave it running on arrays its caller then reuses.
    """
    monkeypatch.setattr(_threading, "current_threads", lambda: 2)
    ended = []

    def kernel(first, last):
        on_pool = first > 0
        if on_pool == (raising == "pool"):
            raise ValueError(f"from the {raising}")
        time.sleep(0.2)
        ended.append(first)

    with pytest.raises(ValueError, match=f"from the {raising}"):
        _threading.share_out(kernel, (), 2)
    assert ended == ([0] if raising == "pool" else [1])


@pytest.mark.parametrize("count", [1, 2, 3])
def test_share_out_calls_returns_each_call_in_order(monkeypatch, count):
    """Every item once, results in the items' order, the pool's thread taking items too."""
    monkeypatch.setattr(_threading, "current_threads", lambda: count)
    caller, threads = threading.get_ident(), {}
    pool_took_one = threading.Event()

    def call(item):
        threads[item] = threading.get_ident()
        if threads[item] != caller:
            pool_took_one.set()
        elif count > 1:
            pool_took_one.wait(timeout=10)  # the calling thread leaves the pool some
        time.sleep(0.01)
        return item * item

    work = _threading.MIN_PARALLEL_WORK
    assert _threading.share_out_calls(call, iter(range(7)), work) == [i * i for i in range(7)]
    assert sorted(threads) == list(range(7))
    assert len(set(threads.values())) == (1 if count == 1 else 2)  # one pool thread here
    assert _threading.share_out_calls(call, [], work) == []
    threads.clear()  # too little work: all on the calling thread
    assert _threading.share_out_calls(call, range(3), work - 1) == [0, 1, 4]
    assert set(threads.values()) == {caller}


def _one_item_each(barrier, func):
    """``func``, called once the other thread has taken an item too (two items, two threads)."""

    def call(item):
        barrier.wait(timeout=10)
        return func(item)

    return call


@pytest.mark.parametrize("raising", ["pool", "caller"])
def test_share_out_calls_raises_an_error_after_every_call_ended(monkeypatch, raising):
    """As share_out: the error comes once the other thread's call has ended."""
    monkeypatch.setattr(_threading, "current_threads", lambda: 2)
    caller, ended = threading.get_ident(), []

    def call(item):
        if (threading.get_ident() == caller) == (raising == "caller"):
            raise ValueError(f"from the {raising}")
        time.sleep(0.2)
        ended.append(item)

    call = _one_item_each(threading.Barrier(2), call)
    with pytest.raises(ValueError, match=f"from the {raising}"):
        _threading.share_out_calls(call, range(2), _threading.MIN_PARALLEL_WORK)
    assert len(ended) == 1


def test_calls_on_the_pool_share_nothing_out():
    """A kernel call made on a pool thread runs there alone: it cannot wait for the pool."""
    calls, seen = [], []

    def kernel(first, last):
        calls.append((threading.get_ident(), first, last))

    def caller():
        work = _threading.MIN_PARALLEL_WORK
        with _threading.kernel_threads(2):
            count = _one_item_each(threading.Barrier(2), lambda _: _threading.current_threads())
            seen.extend(_threading.share_out_calls(count, [0, 1], work))
            shared = _one_item_each(
                threading.Barrier(2), lambda _: _threading.share_out(kernel, (), 4)
            )
            _threading.share_out_calls(shared, [0, 1], work)

    # On a thread of its own, so that a deadlock fails the test instead of hanging it.
    thread = threading.Thread(target=caller, daemon=True)
    thread.start()
    thread.join(timeout=30)
    assert not thread.is_alive()
    assert sorted(seen) == [1, 2]
    # The calling thread's item shared its blocks out; the pool thread's ran
    # all four itself (sharing out, it would wait for ever).
    assert sorted(call[1:] for call in calls) == [(0, 2), (0, 4), (2, 4)]
    assert any(call[1:] == (0, 4) and call[0] != thread.ident for call in calls)


def test_kernel_threads_is_per_thread_and_restored():
    default = _threading.current_threads()
    seen = []
    with _threading.kernel_threads(1) as parallel:
        assert parallel is False and _threading.current_threads() == 1
        other = threading.Thread(target=lambda: seen.append(_threading.current_threads()))
        other.start()
        other.join()
    assert seen == [default]
    assert _threading.current_threads() == default


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_a_forked_child_gets_a_pool_of_its_own():
    """The parent's pool threads do not exist in a forked child: the child makes a new pool."""
    code = textwrap.dedent(
        """
        import multiprocessing, os, numpy as np
        from natgmm import _kernels, _threading
        _threading.MIN_PARALLEL_WORK = 0  # this call's work is below the limit: share it out
        X = np.random.default_rng(0).normal(size=(20000, 6))
        def work(queue):
            with _threading.kernel_threads(2):
                result = _kernels.em_stats(*ARGS, True)[0]
            queue.put(result if _threading._pool_pid == os.getpid() else "not shared out")
        ARGS = (X, np.empty(0), np.zeros(6), np.ones(6), np.zeros((2, 6)), -0.5 * np.ones((2, 6)),
                np.zeros(2), np.zeros(2), np.zeros((2, 6)), 8)
        with _threading.kernel_threads(2):
            parent = _kernels.em_stats(*ARGS, True)[0]  # starts the parent's pool
        queue = multiprocessing.get_context("fork").Queue()
        child = multiprocessing.get_context("fork").Process(target=work, args=(queue,))
        child.start()
        print(queue.get(timeout=600) == parent)
        child.join()
        """
    )
    result = run_python(code, NUMBA_NUM_THREADS="2")
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.split()[-1] == "True"


def test_a_hold_limits_blas_on_other_threads_too():
    """After the main thread's holds, a hold on another thread still runs BLAS on one thread.

    This OpenBLAS ignores the process-wide thread count set from any thread
    but the one that set it first; the hold also sets the per-thread limit.
    """
    code = textwrap.dedent(
        """
        import threading
        from natgmm._blas import blas_controller, single_threaded_blas
        def counts():
            libraries = blas_controller().select(user_api="blas").lib_controllers
            return [lib.num_threads for lib in libraries]
        original = counts()
        with single_threaded_blas():  # the main thread sets and restores the count
            pass
        seen = []
        def work():
            with single_threaded_blas():
                seen.append(counts())
        other = threading.Thread(target=work)
        other.start()
        other.join()
        print(original == counts(), set(seen[0]) == {1}, max(original) > 1)
        """
    )
    result = run_python(code, OPENBLAS_NUM_THREADS="2")
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.split()[-3:] == ["True"] * 3


def test_a_release_run_inside_another_restores_once():
    """A release that runs inside another one's (a hold's frame freed there) restores once.

    A hold interrupted on its ``finally``'s line is released when its frame
    goes, which can be at any line of this thread, the other release's
    own (its lock is re-entrant). Here a stale token's release runs just
    before the last hold's release restores the limits: it restores them,
    and the outer release then finds nothing left to restore (it raised
    ``TypeError`` iterating the recorded limits, None by then).
    """
    code = textwrap.dedent(
        """
        import inspect, sys
        from natgmm import _blas
        from natgmm._blas import blas_controller, single_threaded_blas as hold
        def counts():
            libraries = blas_controller().select(user_api="blas").lib_controllers
            return [lib.num_threads for lib in libraries]
        lines, first = inspect.getsourcelines(type(hold)._leave)
        target = first + next(i for i, text in enumerate(lines) if "self._restore()" in text)
        nested = []
        def local(frame, event, arg):
            if event == "line" and frame.f_lineno == target and not nested:
                nested.append(True)
                hold._leave(object())  # a stale token's release, from a finalizer
            return local
        def tracer(frame, event, arg):
            return local if frame.f_code is type(hold)._leave.__code__ else None
        original = counts()
        with hold():
            held = counts()
            sys.settrace(tracer)
        sys.settrace(None)
        print(bool(nested), set(held) == {1}, counts() == original, hold._original is None)
        """
    )
    result = run_python(code, OPENBLAS_NUM_THREADS="2")
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.split()[-4:] == ["True"] * 4


@pytest.mark.parametrize("main_first", [False, True])
def test_holds_overlapping_on_two_threads_keep_and_restore_the_limit(main_first):
    """A in, B in, A out, B out: B still at one thread, and the count restored after.

    The setter's count is one for the process in pthreads builds of
    OpenBLAS: each thread's own restore, as the holds overlapped, put back
    A's count inside B's hold (2), and B's (1) for good; a GridSearchCV on
    joblib's threading backend left numpy's BLAS at one thread.
    """
    code = textwrap.dedent(
        f"""
        import threading
        from natgmm._blas import blas_controller, single_threaded_blas
        def counts():
            libraries = blas_controller().select(user_api="blas").lib_controllers
            return [lib.num_threads for lib in libraries]
        original = counts()
        if {main_first}:
            with single_threaded_blas():  # an earlier fit on the main thread
                pass
        a_in, b_in, a_out = threading.Event(), threading.Event(), threading.Event()
        seen = []
        def first():
            with single_threaded_blas():
                a_in.set()
                b_in.wait()
            a_out.set()
        def second():
            a_in.wait()
            with single_threaded_blas():
                b_in.set()
                a_out.wait()
                seen.append(counts())
        threads = [threading.Thread(target=first), threading.Thread(target=second)]
        [t.start() for t in threads]
        [t.join() for t in threads]
        print(set(seen[0]) == {{1}}, counts() == original, max(original) > 1)
        """
    )
    result = run_python(code, OPENBLAS_NUM_THREADS="2")
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.split()[-3:] == ["True"] * 3


def test_a_users_limit_ending_during_a_hold_is_not_put_back_for_good():
    """The user's own limit on another thread, begun before a hold and ended inside it.

    The hold saw the user's 1 as the count to put back, and put it back
    after the user had restored theirs: BLAS stayed at one thread.
    """
    code = textwrap.dedent(
        """
        import threading
        from threadpoolctl import threadpool_limits
        from natgmm._blas import blas_controller, single_threaded_blas
        def counts():
            libraries = blas_controller().select(user_api="blas").lib_controllers
            return [lib.num_threads for lib in libraries]
        original = counts()
        limited, held, ended = threading.Event(), threading.Event(), threading.Event()
        def user():
            with threadpool_limits(1, user_api="blas"):
                limited.set()
                held.wait()
            ended.set()
        other = threading.Thread(target=user)
        other.start()
        limited.wait()
        with single_threaded_blas():
            held.set()
            ended.wait()
        other.join()
        print(counts() == original, max(original) > 1)
        """
    )
    result = run_python(code, OPENBLAS_NUM_THREADS="2")
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.split()[-2:] == ["True"] * 2


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_a_child_forked_while_another_thread_compiles_can_fit():
    """The fork waits for numba's compiler lock, which the child would inherit held for ever.

    Another thread holds the lock as while it loads or compiles the
    kernels (the first fit of a process); the child's first kernel call
    then waited for a thread it does not have.
    """
    code = textwrap.dedent(
        """
        import multiprocessing, threading, time
        import numpy as np
        from numba.core.compiler_lock import global_compiler_lock
        from natgmm import NaturalDiagonalGMM
        held = threading.Event()
        def compiling():
            with global_compiler_lock:
                held.set()
                time.sleep(0.5)
        other = threading.Thread(target=compiling)
        other.start()
        held.wait()
        def fit(queue):
            X = np.random.default_rng(0).normal(size=(200, 2))
            queue.put(NaturalDiagonalGMM(2, random_state=0).fit(X).converged_)
        queue = multiprocessing.get_context("fork").Queue()
        child = multiprocessing.get_context("fork").Process(target=fit, args=(queue,))
        child.start()
        print(queue.get(timeout=120))
        child.join()
        other.join()
        """
    )
    result = run_python(code)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.split()[-1] == "True"


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_a_child_forked_while_another_thread_takes_the_pool_lock_can_share_out():
    """Every shared-out call takes the pool lock for a moment; a child forked then can still fit.

    Another thread holds the lock at the fork, as a thread in
    ``_executor()`` does; the child inherited it held, and its first
    shared-out call waited for ever.
    """
    code = textwrap.dedent(
        """
        import multiprocessing, threading
        import numpy as np
        import os
        from natgmm import _kernels, _threading
        _threading.MIN_PARALLEL_WORK = 0  # this call's work is below the limit: share it out
        X = np.random.default_rng(0).normal(size=(20000, 6))
        ARGS = (X, np.empty(0), np.zeros(6), np.ones(6), np.zeros((2, 6)), -0.5 * np.ones((2, 6)),
                np.zeros(2), np.zeros(2), np.zeros((2, 6)), 8)
        def work(queue):
            with _threading.kernel_threads(2):
                result = _kernels.em_stats(*ARGS, True)[0]
            queue.put(result if _threading._pool_pid == os.getpid() else "not shared out")
        with _threading.kernel_threads(2):
            parent = _kernels.em_stats(*ARGS, True)[0]
        held, release = threading.Event(), threading.Event()
        def holder():
            with _threading._pool_lock:
                held.set()
                release.wait()
        other = threading.Thread(target=holder)
        other.start()
        held.wait()
        queue = multiprocessing.get_context("fork").Queue()
        child = multiprocessing.get_context("fork").Process(target=work, args=(queue,))
        child.start()
        release.set()
        other.join()
        try:
            print(queue.get(timeout=60) == parent)
        finally:
            child.kill()
            child.join()
        """
    )
    result = run_python(code, NUMBA_NUM_THREADS="2")
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.split()[-1] == "True"


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_a_child_forked_during_a_hold_limits_its_own_blas():
    """A BLAS hold of another parent thread is not the child's: its kernels still hold BLAS at 1."""
    code = textwrap.dedent(
        """
        import multiprocessing, threading
        from natgmm._blas import blas_controller, single_threaded_blas
        def counts():
            libraries = blas_controller().select(user_api="blas").lib_controllers
            return [lib.num_threads for lib in libraries]
        original = counts()
        entered, done = threading.Event(), threading.Event()
        def hold():
            with single_threaded_blas():
                entered.set()
                done.wait()
        other = threading.Thread(target=hold)
        other.start()
        entered.wait()
        def work(queue):
            start = counts()
            with single_threaded_blas():
                inside = counts()
            queue.put((start, inside, counts()))
        queue = multiprocessing.get_context("fork").Queue()
        child = multiprocessing.get_context("fork").Process(target=work, args=(queue,))
        child.start()
        start, inside, after = queue.get(timeout=600)
        child.join()
        done.set()
        other.join()
        print(start == original, set(inside) == {1}, after == original, counts() == original)
        """
    )
    result = run_python(code, OPENBLAS_NUM_THREADS="2")
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.split()[-4:] == ["True"] * 4


def test_small_calls_run_serially(monkeypatch):
    """A call with less work than MIN_PARALLEL_WORK runs on the calling thread: the same results."""
    monkeypatch.setattr(_threading, "MIN_PARALLEL_WORK", 1000)
    use = _threading.use_threads
    assert (use(True, 999), use(True, 1000), use(False, 10**9)) == (False, True, False)
    # Through a fit: a spy in place of the shared-out E-step sees only the large data.
    X = np.random.default_rng(0).normal(size=(400, 5))
    calls = []
    shared_out = _kernels._em_stats_kernel.parallel

    def spy(*args):
        calls.append(args[0].shape[0])
        return shared_out(*args)

    monkeypatch.setattr(_kernels._em_stats_kernel, "parallel", spy)
    monkeypatch.setattr(_threading, "MIN_PARALLEL_WORK", 400 * 5 * 3 + 1)
    # float64 steps (mixed_precision's float32 ones run another kernel).
    kwargs = dict(random_state=0, max_iter=5, tol=0, mixed_precision=False)
    small = NaturalDiagonalGMM(3, **kwargs).fit(X)
    assert calls == []
    monkeypatch.setattr(_threading, "MIN_PARALLEL_WORK", 400 * 5 * 3)
    big = NaturalDiagonalGMM(3, **kwargs).fit(X)
    assert calls == [400] * 5
    for name in ("means_", "covariances_", "weights_"):
        assert_array_equal(getattr(small, name), getattr(big, name))


def test_small_fits_share_nothing_out(monkeypatch):
    """With the default limit, small data never reach the pool, on any path."""
    monkeypatch.setattr(_threading, "MIN_PARALLEL_WORK", _DEFAULT_MIN_PARALLEL_WORK)
    called = []
    kernels = _blockwise_kernels()
    assert len(kernels) == 18
    for kernel in kernels:
        monkeypatch.setattr(kernel, "parallel", lambda *args, k=kernel: called.append(k))
    rng = np.random.default_rng(0)
    X = rng.normal(size=(300, 4))
    missing = np.where(rng.random(X.shape) < 0.1, np.nan, X)
    for data in (X, X.astype(np.float32), missing):
        for options in ({}, {"annealing": "temperature"}, {"init_params": "k-means++"}):
            model = NaturalDiagonalGMM(3, random_state=0, max_iter=5, **options).fit(data)
            model.predict_proba(data)
            model.partial_fit(data[:50])
    assert called == []


def test_a_fit_sets_blas_threads_once(monkeypatch):
    """BLAS is held at one thread around the whole fit, not put back between kernel calls.

    Putting it back between the calls made an annealed fit a quarter slower
    with BLAS's default threads (doc/performance.rst); afterwards the user's
    setting is back.
    """
    from sklearn.datasets import make_blobs
    from threadpoolctl import threadpool_info, threadpool_limits

    from natgmm import NaturalDiagonalGMM, _blas

    def blas_threads():
        return [info["num_threads"] for info in threadpool_info() if info["user_api"] == "blas"]

    calls = []
    for lib in _blas.blas_controller().select(user_api="blas").lib_controllers:
        original = lib.set_num_threads

        def counted(n, original=original):
            calls.append(n)
            return original(n)

        monkeypatch.setattr(lib, "set_num_threads", counted)
    X, _ = make_blobs(2000, 4, centers=3, random_state=0)
    with threadpool_limits(2, user_api="blas"):
        before = blas_threads()
        model = NaturalDiagonalGMM(3, annealing="temperature", random_state=0).fit(X)
        assert model.n_iter_ > 20  # many kernel calls
        assert blas_threads() == before
    n_libraries = len(before)
    assert calls == [1] * n_libraries + [2] * n_libraries


def test_standardized_weighted_scaling_holds_blas_at_one_thread(monkeypatch):
    # With weights, StandardScaler sums by a product whose order of additions
    # follows BLAS's threads: at 40 000 x 50 on two cores, mean_ and scale_
    # moved by 1e-14 with the thread count (audit M, stop 48).
    from sklearn.preprocessing import StandardScaler
    from threadpoolctl import threadpool_info, threadpool_limits

    from natgmm import NaturalDiagonalGMM, StandardizedGMM, _standardise

    seen = []
    for method in ("fit", "partial_fit"):  # partial_fit: by blocks, with missing entries
        original = getattr(StandardScaler, method)

        def recorded(self, *args, original=original, **kwargs):
            seen.extend(i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas")
            return original(self, *args, **kwargs)

        monkeypatch.setattr(StandardScaler, method, recorded)
    X = np.random.default_rng(0).normal(size=(200, 3))
    holed = X.copy()
    holed[::7, 1] = np.nan
    monkeypatch.setattr(_standardise, "_SCALER_BYTES", 50 * 3 * 8)
    with threadpool_limits(2, user_api="blas"):
        for data in (X, holed):
            model = StandardizedGMM(NaturalDiagonalGMM(2, random_state=0, max_iter=2))
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", ConvergenceWarning)
                model.fit(data, sample_weight=np.linspace(0.5, 2.0, 200))
    assert len(seen) > 4 and set(seen) == {1}


def test_blas_setters_are_found_with_threadpoolctl_before_3_2(monkeypatch):
    # threadpoolctl 3.1 (the floor in pyproject.toml) names the library's
    # handle "_dynlib": every fit failed there with an AttributeError.
    from natgmm import _blas

    class Setter:
        argtypes = restype = None

        def __call__(self, n):
            return n

    class Handle:
        openblas_set_num_threads_local = Setter()

    class Old:  # threadpoolctl 3.1's controller of an OpenBLAS
        _dynlib = Handle()
        threading_layer = "pthreads"

    class Selection:
        lib_controllers = [Old()]

    class Controller:
        def select(self, **kwargs):
            return Selection()

    monkeypatch.setattr(_blas, "blas_controller", lambda: Controller())
    setters = _blas.thread_blas_setters.__wrapped__()
    assert setters == ((Old._dynlib.openblas_set_num_threads_local, False),)
