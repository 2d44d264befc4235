"""The benchmarks' own logic: verdicts that follow from their rows."""

import sys
from pathlib import Path

import pytest

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
