"""``python -m natgmm``, the main job: its output's structure, not its figures.

The job is run in a subprocess in a small mode (``--quick`` with fewer rows);
its helpers (the verdict, the naive gradient fit, the data), in
``natgmm._demo``, are tested directly.
"""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import run_python

import natgmm
from natgmm._demo import digits_latents, mixture_data, naive_gradient_fit, verdict


def _run(*args):
    return subprocess.run(
        [sys.executable, "-m", "natgmm", *args], capture_output=True, text=True, timeout=900
    )


@pytest.mark.parametrize("module", ["natgmm.__main__", "natgmm._demo"])
def test_import_runs_nothing(module):
    result = subprocess.run(
        [sys.executable, "-c", f"import {module}"], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == ""


# Every module of natgmm imported, then the benchmarks' count of the
# signatures each compiled function holds (warm.loaded_kernels).
_SIGNATURES = """
import importlib, io, json, pkgutil, sys
sys.path.insert(0, BENCHMARKS)
import natgmm
from warm import loaded_kernels as signatures

for info in pkgutil.iter_modules(natgmm.__path__):
    try:
        importlib.import_module("natgmm." + info.name)
    except ImportError:  # natgmm._dask without dask
        pass

def gained(before):
    after = signatures()
    return {name: after[name] - before.get(name, 0) for name in after
            if after[name] != before.get(name, 0)}
""".replace("BENCHMARKS", repr(str(Path(__file__).resolve().parents[1] / "benchmarks")))

_NO_NEW_SIGNATURES = (
    _SIGNATURES
    + """
from natgmm import _demo

shape = SHAPE
report = _demo._Reporter(io.StringIO())
_demo._prepare_kernels(report, "temperature", None, shape)
before = signatures()
_demo.speed(report, *shape, n_timed=1)
Z, y = _demo.digits_latents(10)
_demo.quality(report, Z, y, 10, "temperature")
_demo.robustness(report, Z, 10, 20)
print(json.dumps(gained(before)))
"""
)


@pytest.mark.parametrize("shape", [(20_000, 20, 20), (3_000, 50, 50), (1_000, 5, 3)])
def test_timed_fits_compile_nothing(shape):
    """After the preparation, the sections' timed fits load or compile no kernel.

    Every compiled function of natgmm's modules keeps its signatures through
    the three sections: a cold cache would otherwise count seconds of
    compilation as natgmm's fit time (the speed section's default fit, whose
    float32 steps and k-means groups the tiny preparatory fits did not take,
    compiled for 12 s: natgmm 2.2x slower than scikit-learn on a first run;
    earlier, the quality section's split-and-merge moves, until the
    preparation's annealed fit had three components). In a fresh
    interpreter, where no kernel has been loaded yet.

    The shapes: the quick job's; the full job's features and components
    (100 000 x 50, K=50) on fewer rows, whose passes still take float32
    steps and threads; and one too small for either.
    """
    result = run_python(_NO_NEW_SIGNATURES.replace("SHAPE", repr(shape)))
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout.strip().splitlines()[-1]) == {}


def test_rows_for_every_path_load_what_the_larger_fit_runs():
    """A warm-up fit on ``rows_for_every_path`` rows leaves the larger fit nothing to load.

    The demo's preparation and the benchmarks' warm-ups (``warm_up_rows``)
    rely on it: 20 000 x 20 rows at K=20 take float32 steps and threads, and
    7 500 of them (fewer than the whole, so that the check means something)
    do too; plain and annealed fits. In a fresh interpreter.
    """
    code = _SIGNATURES + (
        "import numpy as np\n"
        "from natgmm import NaturalDiagonalGMM\n"
        "from natgmm._solver import rows_for_every_path\n"
        "X = np.random.default_rng(0).normal(size=(20_000, 20))\n"
        "rows = rows_for_every_path(*X.shape, 20)\n"
        "settings = ({}, {'annealing': 'temperature'})\n"
        "for options in settings:\n"
        "    NaturalDiagonalGMM(20, random_state=0, **options).fit(X[:rows])\n"
        "before = signatures()\n"
        "for options in settings:\n"
        "    NaturalDiagonalGMM(20, random_state=0, **options).fit(X)\n"
        "print(json.dumps([rows, gained(before)]))\n"
    )
    result = run_python(code)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout.strip().splitlines()[-1]) == [7500, {}]


def test_help_explains_options_and_columns():
    result = _run("--help")
    assert result.returncode == 0, result.stderr
    for word in ["--quick", "--n-samples", "--annealing", "NMI", "iters", "s/iter", "finite"]:
        assert word in result.stdout


def test_help_and_usage_errors_come_before_the_jobs_imports():
    """--help and a refused argument exit before the job's imports (``natgmm._demo``,
    scikit-learn, numba): the package imports its classes on first use."""
    code = (
        "import contextlib, io, json, sys\n"
        "from natgmm.__main__ import main\n"
        "codes, out = [], io.StringIO()\n"
        "for argv in (['--help'], ['--bogus'], ['--sections', '14'], ['--threads', '0']):\n"
        "    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):\n"
        "        try:\n"
        "            main(argv)\n"
        "        except SystemExit as exit:\n"
        "            codes.append(exit.code)\n"
        "usage = 'usage: python -m natgmm' in out.getvalue()\n"
        "heavy = [m for m in ('natgmm._demo', 'sklearn', 'numba') if m in sys.modules]\n"
        "print(json.dumps([codes, heavy, usage]))\n"
    )
    result = run_python(code)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == [[0, 2, 2, 2], [], True]


def test_package_classes_load_on_first_use():
    """``import natgmm`` sets the wait policy only; each public name imports on access."""
    code = (
        "import json, os, sys\n"
        "import natgmm\n"
        "before = 'sklearn' in sys.modules\n"
        "names = sorted(n for n in natgmm.__all__ if n in dir(natgmm))\n"
        "classes = {n: getattr(natgmm, n).__module__ for n in natgmm.__all__}\n"
        "from natgmm import *  # noqa: F403\n"
        "try:\n"
        "    natgmm.NoSuchThing\n"
        "    missing = None\n"
        "except AttributeError as error:\n"
        "    missing = str(error)\n"
        "policy = os.environ.get('OMP_WAIT_POLICY')\n"
        "print(json.dumps([before, names == sorted(natgmm.__all__), classes, missing, policy]))\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    result = run_python(code, env)
    assert result.returncode == 0, result.stderr
    before, listed, classes, missing, policy = json.loads(result.stdout)
    assert not before and listed and policy == "passive"
    assert classes["NaturalDiagonalGMM"] == "natgmm._estimator"
    assert classes["StandardizedGMM"] == "natgmm._wrapper"
    assert classes["GeometricSchedule"] == "natgmm._schedules"
    assert missing == "module 'natgmm' has no attribute 'NoSuchThing'"


def test_unknown_option_is_refused():
    result = _run("--bogus")
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr.startswith("usage: python -m natgmm")
    assert "unrecognized arguments: --bogus" in result.stderr


def test_bad_sections_are_refused():
    result = _run("--sections", "14")
    assert result.returncode == 2
    assert "--sections" in result.stderr


def test_no_quality_seeds_is_refused():
    result = _run("--quality-seeds", "0")
    assert result.returncode == 2
    assert "--quality-seeds must be at least 1" in result.stderr


@pytest.fixture(scope="module")
def quick_run():
    result = _run(
        "--quick", "--n-samples", "4000", "--n-features", "10", "--n-components", "8",
        "--quality-seeds", "2",
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result.stdout


def test_quick_run_has_every_section_in_order(quick_run):
    out = quick_run
    assert out.startswith(f"natgmm {natgmm.__version__}:")
    headings = ["Machine:", "  (loading|compiling).* kernels", "1. Speed", "2. Quality"]
    headings += ["3. Robustness", "Verdict", "Read more:", "Total "]
    found = [re.search(f"^{h}", out, flags=re.MULTILINE) for h in headings]
    assert None not in found, dict(zip(headings, found, strict=True))
    positions = [match.start() for match in found]
    assert positions == sorted(positions)


def test_quick_run_prints_a_line_before_the_kernels_are_ready(quick_run):
    # Progress lines end with the step's time; the kernels' line comes first.
    steps = re.findall(r"^  (.+) \.\.\.\.* (\d+\.\d) s$", quick_run, flags=re.MULTILINE)
    assert steps and "kernels" in steps[0][0]
    assert "compiling" in steps[0][0] or "loading" in steps[0][0]


def _table(out, header):
    """Rows of the table whose header line contains ``header``."""
    lines = out.splitlines()
    start = next(i for i, line in enumerate(lines) if header in line)
    rows = []
    for line in lines[start + 1 :]:
        if not line.strip() or ": " in line:  # the explanation under the table
            break
        rows.append(line)
    return rows


def test_quick_run_tables(quick_run):
    speed = _table(quick_run, "fit s  iters  s/iter  mean log-lik")
    assert [row.split()[0] for row in speed] == ["sklearn", "natgmm", "sklearn"]
    # A ratio is NaN when noise hides a tiny per-iteration time.
    assert re.search(r"time / natgmm time\s+(\d+\.\d|nan)x\s+(\d+\.\d|nan)x$", speed[2])
    # The same EM from the same start: the two log-likelihoods agree.
    scores = [float(row.split()[-1]) for row in speed[:2]]
    assert scores[0] == pytest.approx(scores[1], rel=1e-6)

    quality = _table(quick_run, "mean log-lik    NMI")
    assert [row.split()[0] for row in quality] == ["sklearn", "natgmm"]
    assert "n_init=5" in quality[0] and "annealing=" in quality[1]
    for row in quality:
        assert 0.0 <= float(row.split()[-1]) <= 1.0
    # One difference per seed under the table, random_state 0 and 1.
    assert "digits latents, K=10, random_state 0 to 1" in quick_run
    per_seed = re.search(r"mean log-lik per seed: (.*)\.$", quick_run, flags=re.MULTILINE)
    assert len(per_seed.group(1).split(", ")) == 2

    robust = _table(quick_run, "steps/iters  finite")
    assert len(robust) == 4
    finite = [row.split()[-2] for row in robust]
    assert set(finite) <= {"yes", "NO"}
    assert finite[2:] == ["yes", "yes"]  # natgmm's two fits


def test_quick_run_verdict_names_each_outcome(quick_run):
    paragraphs = quick_run.split("Verdict\n", 1)[1].split("Read more:")[0]
    openings = re.findall(
        r"^- (\w+), (natgmm wins|natgmm loses|mixed|a tie|not measured|natgmm holds|natgmm fails"
        r"|nothing to avoid this time)\b",
        paragraphs,
        flags=re.MULTILINE,
    )
    assert [name for name, _ in openings] == ["Speed", "Quality", "Robustness"]


def _results(nat_fit, nat_iter, nat_score, nat_seconds, naive_finite=False, nat_finite=True):
    return {
        "speed": dict(
            shape=(1000, 5),
            n_components=3,
            fit_seconds={"sklearn": 2.0, "natgmm": nat_fit},
            n_iter={"sklearn": 10, "natgmm": 10},
            seconds_per_iter={"sklearn": 0.1, "natgmm": nat_iter},
            score={"sklearn": -5.0, "natgmm": -5.0},
        ),
        "quality": dict(
            n_components=3,
            annealing="floor",
            seeds=[0, 1, 2],
            seconds={"sklearn": [1.0, 0.9, 1.1], "natgmm": [nat_seconds] * 3},
            n_iter={"sklearn": [10] * 3, "natgmm": [50] * 3},
            score={"sklearn": [-2.0] * 3, "natgmm": [nat_score] * 3},
            nmi={"sklearn": [0.5] * 3, "natgmm": [0.4] * 3},
        ),
        "robustness": {
            "naive raw": dict(steps=2, finite=naive_finite, score=np.nan),
            "naive standardised": dict(steps=100, finite=True, score=-3.0),
            "natgmm em": dict(steps=10, finite=nat_finite, score=-2.9),
            "natgmm gradient": dict(steps=10, finite=True, score=-2.9),
        },
    }


def test_verdict_says_when_natgmm_loses():
    text = "\n".join(verdict(_results(4.0, 0.2, -2.5, 3.0, naive_finite=True, nat_finite=False)))
    assert "Speed, natgmm loses" in text and "2.0x SLOWER" in text
    assert "Quality, natgmm loses" in text and "below in 3 (-0.500, -0.500, -0.500;" in text
    assert "3.0x SLOWER" in text
    assert "Robustness, natgmm fails" in text and "natgmm em" in text
    assert "wins" not in text


def test_verdict_says_when_natgmm_wins():
    text = "\n".join(verdict(_results(0.5, 0.02, -1.5, 0.25)))
    assert "Speed, natgmm wins" in text and "4.0x faster" in text and "5.0x faster" in text
    assert "Quality, natgmm wins" in text and "above in 3 of 3 seeds" in text
    assert "+0.500, +0.500, +0.500" in text
    # Against a naive gradient fit, not scikit-learn: "holds", and it says so.
    assert "Robustness, natgmm holds" in text and "turned NaN after 2" in text
    assert "not a contest with scikit-learn" in text
    assert "loses" not in text and "SLOWER" not in text


def test_verdict_counts_the_seeds_won_and_lost():
    results = _results(0.5, 0.02, -2.0, 0.25)
    results["quality"]["score"]["natgmm"] = [-1.9, -2.1, -1.9995]
    text = verdict(results)[1]
    assert text.startswith("Quality, a tie")
    assert "above in 1 of 3 seeds, below in 1, within 0.001 in 1 (+0.100, -0.100, +0.000;" in text
    results["quality"]["score"]["natgmm"][2] = -1.99
    assert verdict(results)[1].startswith("Quality, natgmm wins")


def test_verdict_with_an_unmeasurable_iteration_time():
    # Noise can hide a tiny per-iteration time (NaN, or 0 in older runs).
    for hidden in (float("nan"), 0.0):
        results = _results(0.5, 0.02, -1.5, 0.25)
        results["speed"]["seconds_per_iter"]["sklearn"] = hidden
        text = verdict(results)[0]
        assert text.startswith("Speed, natgmm wins") and "not measurable" in text
        results["speed"]["fit_seconds"]["natgmm"] = hidden
        assert verdict(results)[0].startswith("Speed, not measured")


def test_verdict_warns_when_the_machine_was_busy():
    results = _results(0.5, 0.02, -1.5, 0.25)
    assert "busy" not in " ".join(verdict(results))
    results["speed"]["busy"] = True
    assert "overstate" in verdict(results)[0]


def test_verdict_mixed_speed_and_skipped_sections():
    results = _results(3.0, 0.02, -2.0, 1.0)
    lines = verdict({"speed": results["speed"]})
    assert len(lines) == 1 and lines[0].startswith("Speed, mixed")


def test_naive_fit_turns_nan_on_raw_scale_only():
    Z, _ = digits_latents(5)
    Z_raw = Z * np.random.default_rng(0).uniform(40, 80, Z.shape[1])
    steps, score = naive_gradient_fit(Z_raw, 4, 50)
    assert steps < 50 and np.isnan(score)
    steps, score = naive_gradient_fit((Z_raw - Z_raw.mean(0)) / Z_raw.std(0), 4, 50)
    assert steps == 50 and np.isfinite(score)


def test_mixture_data_is_deterministic():
    X1, y1 = mixture_data(500, 4, 3, seed=1)
    X2, y2 = mixture_data(500, 4, 3, seed=1)
    assert X1.shape == (500, 4) and y1.shape == (500,)
    np.testing.assert_array_equal(X1, X2)
    np.testing.assert_array_equal(y1, y2)
    assert not np.array_equal(X1, mixture_data(500, 4, 3, seed=2)[0])
