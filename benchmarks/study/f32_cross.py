"""Per-pass time of the E-step kernel on float64 rows: the float32 path against float64's.

By the size of a pass (rows x features x components), on blobs fitted five
float64 EM steps from k-means. Below about half a million multiply-adds the
float32 path's fixed cost (its operands, weights and chunk set-up, about
25 us) outweighs its cheaper products; this set
``natgmm._solver.F32_MIN_WORK``. Best of two rounds of alternating timed
loops. Run: ``python benchmarks/study/f32_cross.py`` (about a minute).
"""

import time
import warnings

import numpy as np

from natgmm import NaturalDiagonalGMM, _kernels
from natgmm._em import natural_parameters
from natgmm._threading import n_blocks

SHAPES = ((4, 3), (13, 10), (30, 10), (50, 20), (64, 10))  # (features, components)
ROWS = (150, 500, 2000, 8000, 30000)


def pass_seconds(X, n_components):
    """Best seconds of one kernel pass on ``X``: float32 path, float64 path."""
    model = NaturalDiagonalGMM(n_components, max_iter=5, random_state=0, mixed_precision=False)
    model.fit(X)
    std, params = model._state.standardiser, model._state.params
    operands = (
        np.empty(0), std.shift, std.scale, *natural_parameters(params), params.means,
        n_blocks(len(X)), True, 1.0,
    )  # fmt: skip
    for float32 in (False, True):  # compile or load
        _kernels.em_stats(X, *operands, float32)
    reps = max(20, int(4e7 / X.size / n_components))
    times = {True: [], False: []}
    for float32 in (False, True, False, True):
        start = time.perf_counter()
        for _ in range(reps):
            _kernels.em_stats(X, *operands, float32)
        times[float32].append((time.perf_counter() - start) / reps)
    return min(times[True]), min(times[False])


def main():
    warnings.simplefilter("ignore")
    rng = np.random.default_rng(0)
    for n_features, n_components in SHAPES:
        for n_rows in ROWS:
            centres = rng.normal(0, 3, (n_components, n_features))
            labels = rng.integers(n_components, size=n_rows)
            X = centres[labels] + rng.normal(size=(n_rows, n_features))
            f32, f64 = pass_seconds(X, n_components)
            print(
                f"N={n_rows:6d} D={n_features:3d} K={n_components:3d} "
                f"work={X.size * n_components:10d}  float32 {f32 * 1e6:9.1f} us  "
                f"float64 {f64 * 1e6:9.1f} us  ratio {f32 / f64:.2f}",
                flush=True,
            )


if __name__ == "__main__":
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from cli import parser

    parser(__doc__).parse_args()  # --help, and an error for any argument
    main()
