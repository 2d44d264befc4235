"""float32 against float64 kernels: time of one E-step pass and the error.

For each data set a float64 fit of ten EM iterations gives the parameters;
then ``_kernels.em_stats`` runs on the data in float64 and in float32 (the
same float32-rounded values), interleaved, ``--reps`` times, and
``log_prob`` once each. Times are the calling thread's CPU time of the
serial kernel (a shared machine's load disturbs it much less than wall
time) and the wall time of the parallel one; errors are of the float32
results against the float64 ones: log-densities, responsibilities,
log-likelihood, means (in units of each component's standard deviation)
and variances from the statistics. ``float32 / float64`` is the float32
time over the float64 one (below 1: float32 is faster). "Wide components"
are those whose log-densities the float32 kernel takes from a float64
product, because float32's would lose too much (a narrow component far
from the centre; doc/performance.rst, "float32").

Run from the repository root (``--quick --reps 3`` took 33 s on one core)::

    python benchmarks/bench_float32.py --quick
"""

import os
import sys
import time
import warnings

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import datasets  # noqa: E402
from cli import check, parser  # noqa: E402

from natgmm import NaturalDiagonalGMM, _kernels  # noqa: E402
from natgmm._em import natural_parameters  # noqa: E402
from natgmm._threading import n_blocks  # noqa: E402


def _cases(quick):
    for std in (1.0, 8.0):
        X, _ = datasets.blobs(60_000, 50, 50, cluster_std=std)
        yield f"blobs N=60000 D=50 K=50 std={std:g}", X, 50
    if not quick:
        Z, _ = datasets.digits_latents(50)
        for k in (10, 50):
            yield f"digits FactorAnalysis(50) K={k}", Z, k


def _time(clock, *args):
    start = clock()
    _kernels.em_stats(*args)
    return clock() - start


def main(argv=None):
    """Print times and errors per data set."""
    parser_ = parser(__doc__)
    parser_.add_argument(
        "--reps", type=int, default=7, help="timed calls of each kernel and dtype; best and median"
    )
    parser_.add_argument("--quick", action="store_true", help="the two blob cases only")
    args = parser_.parse_args(argv)
    check(parser_, args.reps, "--reps", at_least=1)
    for name, X, k in _cases(args.quick):
        X32 = X.astype(np.float32)
        X64 = X32.astype(np.float64)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model = NaturalDiagonalGMM(k, max_iter=10, tol=0.0, random_state=0).fit(X64)
        std, params = model._state.standardiser, model._state.params
        natural = natural_parameters(params)
        n = len(X)
        common = (np.empty(0), std.shift, std.scale, *natural, params.means, n_blocks(n))
        data = {"float64": X64, "float32": X32}
        for data_ in data.values():  # compile or load
            _kernels.em_stats(data_, *common, False)
            _kernels.em_stats(data_, *common, True)
        serial = {d: [] for d in data}
        parallel = {d: [] for d in data}
        for _ in range(args.reps):
            for d, data_ in data.items():
                serial[d].append(_time(time.thread_time, data_, *common, False))
                parallel[d].append(_time(time.perf_counter, data_, *common, True))
        print(name)
        for d in data:
            print(
                f"  {d}: serial CPU {1e3 * min(serial[d]):6.1f} ms "
                f"(median {1e3 * np.median(serial[d]):6.1f}), "
                f"parallel wall {1e3 * min(parallel[d]):6.1f} ms "
                f"(median {1e3 * np.median(parallel[d]):6.1f})"
            )
        print(f"  float32 / float64 time (< 1: float32 faster): serial "
              f"{min(serial['float32']) / min(serial['float64']):.2f}, "
              f"parallel {min(parallel['float32']) / min(parallel['float64']):.2f}")  # fmt: skip
        base = _kernels.em_stats(X64, *common, True)
        got = _kernels.em_stats(X32, *common, True)
        out = {}
        for d, data_ in data.items():
            lp, lab, resp = np.empty(n), np.empty(n, np.int64), np.empty((n, k))
            _kernels.log_prob(data_, std.shift, std.scale, *natural, lp, lab, resp, True)
            out[d] = lp, lab, resp
        (lp64, lab64, r64), (lp32, lab32, r32) = out["float64"], out["float32"]
        nk0, s10, s20 = base[1:]
        nk1, s11, s21 = got[1:]
        mean_err = np.abs(s11 / nk1[:, None] - s10 / nk0[:, None]) / np.sqrt(params.variances)
        v0 = s20 / nk0[:, None] - (s10 / nk0[:, None]) ** 2
        v1 = s21 / nk1[:, None] - (s11 / nk1[:, None]) ** 2
        with np.errstate(divide="ignore", invalid="ignore"):
            var_err = np.nanmax(np.abs(v1 / v0 - 1))
        wide = len(_kernels._f32_operands(*natural[:3])[3])
        print(
            f"  errors ({wide} wide components): log-density max {np.max(np.abs(lp32 - lp64)):.1e}"
            f" median {np.median(np.abs(lp32 - lp64)):.1e}; responsibilities max "
            f"{np.max(np.abs(r32 - r64)):.1e}; labels differing {np.sum(lab32 != lab64)}; "
            f"log-likelihood relative {abs(got[0] - base[0]) / abs(base[0]):.1e}; "
            f"means/sd {np.max(mean_err):.1e}; variances relative {var_err:.1e}"
        )
        sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
