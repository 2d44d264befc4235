"""OpenMP's wait policy and numba's threading layers (natgmm/_threading.py).

Process-wide state (the environment, numba's layer) is checked in fresh
subprocesses.
"""

import json
import os
import subprocess
import sys
import textwrap

import numba
import numpy as np
import pytest
from numpy.testing import assert_array_equal

from natgmm import NaturalDiagonalGMM, _kernels, _threading

# The library's limit, read before tests/conftest.py's fixture sets it to 0.
_DEFAULT_MIN_PARALLEL_WORK = _threading.MIN_PARALLEL_WORK

# Fits from four Python threads at once, three each, against the same fits
# run one after another: every fitted array must be bitwise equal.
_CONCURRENT = textwrap.dedent(
    """
    import json, threading
    import numpy as np
    import numba
    from sklearn.datasets import make_blobs
    from natgmm import NaturalDiagonalGMM, _threading

    _threading.MIN_PARALLEL_WORK = 0  # parallel kernels, however small the data
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
    equal = all(
        np.array_equal(a, b)
        for seed in range(4) for run in results[seed] for a, b in zip(run, serial[seed])
    ) and all(len(runs) == 3 for runs in results)
    print(json.dumps({"layer": numba.threading_layer(), "equal": bool(equal)}))
    """
)


def _run(code, **env):
    environ = {**os.environ, **env}
    return subprocess.run(
        [sys.executable, "-c", code], env=environ, capture_output=True, text=True, timeout=1800
    )


def _available_layers():
    """numba's layers that load in this environment (tbb needs libtbb)."""
    layers = []
    for layer in ("omp", "tbb", "workqueue"):
        probe = _run(
            "import numba; numba.get_num_threads(); print(numba.threading_layer())",
            NUMBA_THREADING_LAYER=layer,
        )
        if probe.returncode == 0 and probe.stdout.strip() == layer:
            layers.append(layer)
    return layers


def test_configure_wait_policy_keeps_the_users_choice():
    environ = {}
    assert _threading.configure_wait_policy(environ) == {"OMP_WAIT_POLICY": "passive"}
    assert environ == {"OMP_WAIT_POLICY": "passive"}
    environ = {"OMP_WAIT_POLICY": "active"}
    assert _threading.configure_wait_policy(environ) == {}
    assert environ == {"OMP_WAIT_POLICY": "active"}


def test_import_sets_passive_waiting_before_openmp_loads():
    """``import natgmm`` sets the policy before numba's OpenMP runtime is loaded."""
    code = textwrap.dedent(
        """
        import os, sys
        import natgmm
        print(os.environ.get("OMP_WAIT_POLICY"), "numba.np.ufunc.omppool" in sys.modules)
        """
    )
    environ = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    result = subprocess.run(
        [sys.executable, "-c", code], env=environ, capture_output=True, text=True, timeout=1800
    )
    assert result.returncode == 0, result.stderr
    # numba's OpenMP layer (and its libgomp) is loaded at the first parallel launch.
    assert result.stdout.split() == ["passive", "False"]
    kept = _run("import os, natgmm; print(os.environ['OMP_WAIT_POLICY'])", OMP_WAIT_POLICY="active")
    assert kept.stdout.strip() == "active"


@pytest.mark.parametrize("layer", ["omp", "tbb", "workqueue"])
def test_concurrent_fits_from_python_threads(layer):
    """Fits from four Python threads finish, under every layer, with the serial results.

    Under workqueue two parallel launches at once abort the process (rc 134)
    unless they are serialised: natgmm runs the serial kernel in every thread
    but the one holding workqueue's pool.
    """
    if layer not in _available_layers():
        pytest.skip(f"numba's {layer} layer is not available here")
    result = _run(_CONCURRENT, NUMBA_THREADING_LAYER=layer)
    assert result.returncode == 0, result.stderr[-2000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report == {"layer": layer, "equal": True}


def test_parallel_launch_serialises_workqueue(monkeypatch):
    """Under workqueue one caller at a time gets the parallel kernel; others run serially."""
    monkeypatch.setattr(_threading, "threading_layer", lambda: "workqueue")
    with _threading.parallel_launch(True) as first:
        with _threading.parallel_launch(True) as second:
            assert (first, second) == (True, False)
        with _threading.parallel_launch(False) as serial:
            assert serial is False
    with _threading.parallel_launch(True) as again:
        assert again is True
    monkeypatch.setattr(_threading, "threading_layer", lambda: "omp")
    with _threading.parallel_launch(True) as first:
        with _threading.parallel_launch(True) as second:
            assert (first, second) == (True, True)


def test_small_calls_run_serially(monkeypatch):
    """A call with less work than MIN_PARALLEL_WORK runs the serial kernel: the same results."""
    monkeypatch.setattr(_threading, "threading_layer", lambda: "omp")
    monkeypatch.setattr(_threading, "MIN_PARALLEL_WORK", 1000)
    launch = _threading.parallel_launch
    with launch(True, 999) as small, launch(True, 1000) as big:
        assert (small, big) == (False, True)
    with launch(True) as unknown, launch(False, 10**9) as unwanted:
        assert (unknown, unwanted) == (True, False)
    # Through a fit: a spy in place of the parallel E-step sees only the large data.
    X = np.random.default_rng(0).normal(size=(400, 5))
    calls = []
    parallel_kernel = _kernels._em_stats_parallel

    def spy(*args):
        calls.append(args[0].shape[0])
        return parallel_kernel(*args)

    monkeypatch.setattr(_kernels, "_em_stats_parallel", spy)
    monkeypatch.setattr(_threading, "MIN_PARALLEL_WORK", 400 * 5 * 3 + 1)
    small = NaturalDiagonalGMM(3, random_state=0, max_iter=5, tol=0).fit(X)
    assert calls == []
    monkeypatch.setattr(_threading, "MIN_PARALLEL_WORK", 400 * 5 * 3)
    big = NaturalDiagonalGMM(3, random_state=0, max_iter=5, tol=0).fit(X)
    assert calls == [400] * 5
    for name in ("means_", "covariances_", "weights_"):
        assert_array_equal(getattr(small, name), getattr(big, name))


def test_small_fits_call_no_parallel_kernel(monkeypatch):
    """With the default limit, small data never reach a parallel kernel, on any path."""
    from natgmm import _kmeans

    monkeypatch.setattr(_threading, "MIN_PARALLEL_WORK", _DEFAULT_MIN_PARALLEL_WORK)
    called = []
    for module in (_kernels, _kmeans):
        for name, value in list(vars(module).items()):
            if name.endswith("_parallel") and isinstance(value, numba.core.registry.CPUDispatcher):
                monkeypatch.setattr(module, name, lambda *args, name=name: called.append(name))
    rng = np.random.default_rng(0)
    X = rng.normal(size=(300, 4))
    missing = np.where(rng.random(X.shape) < 0.1, np.nan, X)
    for data in (X, X.astype(np.float32), missing):
        for options in ({}, {"annealing": "temperature"}, {"init_params": "k-means++"}):
            model = NaturalDiagonalGMM(3, random_state=0, max_iter=5, **options).fit(data)
            model.predict_proba(data)
            model.partial_fit(data[:50])
    assert called == []


def test_threading_layer_is_known_after_the_call():
    assert _threading.threading_layer() in ("omp", "tbb", "workqueue")
    assert numba.threading_layer() == _threading.threading_layer()


def test_a_fit_sets_blas_threads_once(monkeypatch):
    """BLAS is held at one thread around the whole fit, not put back between kernel calls.

    Putting it back between the calls made an annealed fit a quarter slower
    with BLAS's default threads (doc/performance.rst); afterwards the user's
    setting is back.
    """
    from sklearn.datasets import make_blobs
    from threadpoolctl import threadpool_info, threadpool_limits

    from natgmm import NaturalDiagonalGMM, _kernels

    def blas_threads():
        return [info["num_threads"] for info in threadpool_info() if info["user_api"] == "blas"]

    calls = []
    for lib in _kernels._blas_controller().select(user_api="blas").lib_controllers:
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
