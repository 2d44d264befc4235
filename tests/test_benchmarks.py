"""The benchmarks' own logic: verdicts that follow from their rows."""

import sys
from pathlib import Path

import pytest
from sklearn.datasets import make_blobs

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
bench_annealing = pytest.importorskip("bench_annealing")


def _row(method, seed, train, time):
    return dict(
        data="d", k=20, seed=seed, method=method, train=train, test=train, nmi=0.0,
        time=time, n_iter=1, splits=[],
    )  # fmt: skip


def test_annealing_bar_is_not_judged_without_sklearn():
    rows = [_row("temperature", s, -1.0, 0.1) for s in range(5)]
    _, _, verdict = bench_annealing.summarise(rows, ["temperature"], range(5))
    assert verdict == ["not judged: this run has no sk5 fit at K=20 or K=50 to compare with"]


@pytest.mark.parametrize(
    "train, time, met",
    [(-1.0, 0.1, True), (-1.0, 0.3, False), (-2.0, 0.1, False)],
)
def test_annealing_bar_verdict(train, time, met):
    rows = [_row("sk5", s, -1.0, 1.0) for s in range(5)]
    rows += [_row("temperature", s, train if s else -1.0, time) for s in range(5)]
    _, _, verdict = bench_annealing.summarise(rows, ["sk5", "temperature"], range(5))
    expected = (
        ["every method met it (1 rows judged)"]
        if met
        else ["temperature misses the bar on d, K=20"]
    )
    assert verdict == expected


def test_repeated_fits_keep_the_shortest_time(monkeypatch):
    """``--repeats``: a fresh model per fit, the last one's results, the shortest time."""
    from types import SimpleNamespace

    import numpy as np

    from natgmm import NaturalDiagonalGMM

    X = np.random.default_rng(0).standard_normal((60, 2))
    data = SimpleNamespace(X_train=X, X_test=X, y_train=None)
    clock = iter([0.0, 3.0, 10.0, 11.0, 20.0, 22.0])  # fits of 3, 1 and 2 seconds
    import warm  # the benchmarks' timing of a call, after a pause

    monkeypatch.setattr(warm.time, "perf_counter", lambda: next(clock))
    monkeypatch.setattr(warm.time, "sleep", lambda seconds: None)
    made = []

    def make():
        made.append(NaturalDiagonalGMM(2, random_state=0))
        return made[-1]

    row = bench_annealing.run_one("temperature", make, data, repeats=3)
    assert len(made) == 3 and row["time"] == 1.0
    assert row["train"] == made[-1].score(X) and row["n_iter"] == made[-1].n_iter_


def test_a_file_of_your_own_is_a_split(tmp_path):
    """``--datasets my.npz`` / ``--whole-data my.npy``: the arrays as stored, keys as documented."""
    import numpy as np

    datasets = pytest.importorskip("datasets")
    rng = np.random.default_rng(0)
    X, X_test, y = rng.standard_normal((30, 3)), rng.standard_normal((10, 3)), np.arange(30) % 2
    np.savez(tmp_path / "full.npz", X_train=X, X_test=X_test, y_train=y, y_test=y[:10])
    np.savez(tmp_path / "short.npz", X=X.astype(np.float32), y=y)
    np.save(tmp_path / "bare.npy", (X * 10).astype(np.int64))

    full = datasets.split(str(tmp_path / "full.npz"))
    assert full.name == "full" and np.array_equal(full.X_test, X_test)
    assert np.array_equal(full.X_train, X) and np.array_equal(full.y_test, y[:10])
    short = datasets.split(str(tmp_path / "short.npz"))
    assert short.X_train.dtype == np.float32 and np.array_equal(short.y_train, y)
    assert short.X_test.shape == (0, 3) and short.y_test is None
    bare = datasets.split(str(tmp_path / "bare.npy"))
    assert bare.X_train.dtype == np.float64 and bare.X_train.flags.c_contiguous
    assert bare.y_train is None and bare.X_test.shape == (0, 3)


def test_no_test_rows_give_no_test_score():
    from types import SimpleNamespace

    import numpy as np

    from natgmm import NaturalDiagonalGMM

    X = np.random.default_rng(0).standard_normal((60, 2))
    data = SimpleNamespace(X_train=X, X_test=X[:0], y_train=None)
    row = bench_annealing.run_one("em", lambda: NaturalDiagonalGMM(2, random_state=0), data)
    assert np.isnan(row["test"]) and np.isfinite(row["train"])


def test_threshold_rules_are_scored_against_each_shapes_best_way():
    bench_threshold = pytest.importorskip("bench_threshold")
    rows = [
        dict(n=1000, d=10, k=5, times={"serial": 1.0, "km 1": 2.0, "shared": 4.0}),
        dict(n=9000, d=10, k=5, times={"serial": 4.0, "km 1": 2.0, "shared": 1.0}),
    ]
    # Shared from 100 000 multiply-adds: serial for the first shape, shared for the second.
    mean, worst = bench_threshold._score(rows, lambda n, d, k: (n * d * k >= 100_000,) * 2)
    assert (mean, worst) == (1.0, 1.0)
    # Always serial: the best way for the first, four times the best for the second.
    mean, worst = bench_threshold._score(rows, lambda n, d, k: (False, False))
    assert (mean, worst) == (pytest.approx(2.0), 4.0)
    # k-means serial, EM shared: twice the best for both.
    mean, worst = bench_threshold._score(rows, lambda n, d, k: (False, True))
    assert (mean, worst) == (pytest.approx(2.0), 2.0)


def test_threshold_ways_force_and_restore_the_rule(monkeypatch):
    """Each way shares out what it says, whatever the size, and the rule is put back."""
    import numpy as np

    from natgmm import NaturalDiagonalGMM, _kernels, _kmeans, _threading

    bench_threshold = pytest.importorskip("bench_threshold")
    if _threading.n_threads(None) < 2:  # one core, or NUMBA_NUM_THREADS=1
        pytest.skip("one kernel thread: no way shares a pass out")
    shared = []
    for module, name in ((_kernels, "_em_stats_kernel"), (_kmeans, "_lloyd_kernel")):
        kernel = getattr(module, name)
        spy = lambda *a, n=name, k=kernel: shared.append(n) or k.serial(*a)  # noqa: E731
        monkeypatch.setattr(kernel, "parallel", spy)
    X = np.random.default_rng(0).normal(size=(200, 3))
    expected = {
        "serial": set(),
        "km 1": {"_em_stats_kernel"},
        "shared": {"_em_stats_kernel", "_lloyd_kernel"},
    }
    try:
        for way, forced in bench_threshold.WAYS.items():
            shared.clear()
            bench_threshold._force(*forced)
            NaturalDiagonalGMM(2, random_state=0).fit(X)
            assert set(shared) == expected[way], way
    finally:
        bench_threshold._restore()
    times = bench_threshold._time_ways(X, 2, reps=1, pause=0)
    assert set(times) == set(expected)
    assert _kmeans.use_threads is _threading.use_threads
    assert _kernels.use_threads is _threading.use_threads


def test_float32_bench_runs_on_the_kernels_as_they_are(monkeypatch, capsys):
    # It calls private kernels: a change of their signatures must show here
    # (one went unnoticed until a benchmark run on 2026-12-06).
    bench_float32 = pytest.importorskip("bench_float32")
    X, _ = make_blobs(n_samples=600, n_features=5, centers=3, random_state=0)
    monkeypatch.setattr(bench_float32, "_cases", lambda quick: [("tiny blobs", X, 3)])
    bench_float32.main(["--reps", "1"])
    assert "float32 / float64" in capsys.readouterr().out


def test_small_bench_default_fits_are_scikit_learns(capsys):
    """``bench_small.py``: each default fit runs scikit-learn's iterations to its log-likelihood."""
    bench_small = pytest.importorskip("bench_small")
    bench_small.fits(1, annealed=(False,))
    rows = [line.split() for line in capsys.readouterr().out.splitlines() if "default vs" in line]
    assert len(rows) == len(bench_small.FITS)
    for row in rows:
        ours, theirs = row[-2].split("/")
        assert ours == theirs, row
        assert abs(float(row[-1])) < 1e-3, row  # the table's three decimals


def test_fuzz_settings_run_fits_and_refits(capsys):
    """``fuzz_robustness.py --runs settings``: random settings, then a refused refit checked."""
    fuzz = pytest.importorskip("fuzz_robustness")
    assert fuzz.main(["--n", "20", "--runs", "settings"]) == 0
    out = capsys.readouterr().out
    assert "findings: 0" in out
    assert "refused, model intact" in out  # the refit check ran
    assert "finite" in out


def test_timed_call_says_when_it_loaded_kernels():
    """``warm.timed_after_pause`` names the kernels a timed call loaded, and only then.

    In a fresh interpreter: the first fit loads (or compiles) natgmm's
    kernels inside the timing, the second loads none.
    """
    from conftest import run_python

    code = (
        "import sys\n"
        f"sys.path.insert(0, {str(Path(__file__).resolve().parents[1] / 'benchmarks')!r})\n"
        "import numpy as np\n"
        "import warm\n"
        "from natgmm import NaturalDiagonalGMM\n"
        "X = np.random.default_rng(0).normal(size=(300, 3))\n"
        "for _ in range(2):\n"
        "    warm.timed_after_pause(NaturalDiagonalGMM(2, random_state=0).fit, X)\n"
        "    print('call done', file=sys.stderr)\n"
    )
    result = run_python(code)
    assert result.returncode == 0, result.stderr
    first, second = result.stderr.split("call done")[:2]
    assert "a timed call loaded or compiled" in first and "natgmm._kernels." in first
    assert "loaded or compiled" not in second


def test_the_cache_goes_where_the_environment_says(tmp_path):
    import subprocess

    where = tmp_path / "elsewhere"
    code = (
        "import datasets; datasets.split('synthetic_separated'); "
        "print(sorted(p.name.split('-')[0] for p in datasets.CACHE.iterdir()))"
    )
    env = {"NATGMM_BENCH_CACHE": str(where), "PATH": "/usr/bin:/bin"}
    run = subprocess.run(
        [sys.executable, "-c", code], cwd=Path(__file__).resolve().parents[1] / "benchmarks",
        env=env, capture_output=True, text=True, check=True,
    )  # fmt: skip
    assert run.stdout.split() == ["['synthetic_separated']"]
    assert [p.name.split("-")[0] for p in where.iterdir()] == ["synthetic_separated"]
