"""Time to a given log-likelihood: batch EM, minibatch EM and the gradient solver.

Synthetic overlapping blobs (default N=1e6, D=50, K=50, float64). Every
solver starts from the same k-means++ initialisation and runs one iteration
per ``fit`` call with ``warm_start=True``; after each call the mean
log-likelihood of the full data is evaluated (not timed). The target is batch
EM's converged log-likelihood minus ``--gap`` (per sample); each row reports
the seconds and iterations to reach it, or the best value reached within
``--budget`` seconds. Rows:

- batch EM (``solver="em"``),
- minibatch EM (``solver="minibatch"``, batches of 10000),
- the gradient solver at lr 0.05 with 100 Adam steps per E-step,
- the research regime: lr 1e-4 with 1000 Adam steps per E-step, gradient
  clipping 1.0.

The reference batch EM fit comes first and runs until it converges (up
to ten times ``--budget``); then each solver runs until it reaches the
target or for ``--budget`` seconds, so a default run takes minutes. Run from the
repository root (``--n-samples 20000 --n-components 5 --budget 5`` took
33 s on one core)::

    python benchmarks/bench_solvers.py [--n-samples 1000000] [--budget 120]
"""

import os
import sys
import time
import warnings

from sklearn.exceptions import ConvergenceWarning

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import datasets  # noqa: E402
from cli import check, parser  # noqa: E402
from warm import warm_up  # noqa: E402

from natgmm import NaturalDiagonalGMM  # noqa: E402

SOLVERS = {
    "batch EM": dict(solver="em"),
    "minibatch EM (10000 rows)": dict(solver="minibatch", batch_size=10_000),
    "gradient lr=0.05, 100 steps": dict(solver="gradient", learning_rate=0.05, gradient_steps=100),
    "research: lr=1e-4, 1000 steps": dict(
        solver="gradient", learning_rate=1e-4, gradient_steps=1000, gradient_clip=1.0
    ),
}


def _trajectory(X, start, settings, budget, target=None):
    model = NaturalDiagonalGMM(
        start["weights_init"].shape[0], warm_start=True, max_iter=1, **start, **settings
    )
    elapsed, points = 0.0, []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        while elapsed < budget:
            t0 = time.perf_counter()
            model.fit(X)
            elapsed += time.perf_counter() - t0
            points.append((elapsed, model.score(X)))
            if target is not None and points[-1][1] >= target:
                break
            if target is None and len(points) > 1 and points[-1][1] - points[-2][1] < 1e-7:
                break  # batch EM has converged
    return points


def main(argv=None):
    """Print seconds and iterations to the target for each solver."""
    parser_ = parser(__doc__)
    parser_.add_argument("--n-samples", type=int, default=1_000_000, help="rows, N")
    parser_.add_argument("--n-features", type=int, default=50, help="columns, D")
    parser_.add_argument("--n-components", type=int, default=50, help="blobs and components, K")
    parser_.add_argument("--budget", type=float, default=120.0, help="seconds per solver")
    parser_.add_argument("--gap", type=float, default=1e-3, help="per-sample log-likelihood gap")
    args = parser_.parse_args(argv)
    for name in ("n_samples", "n_features", "n_components"):
        check(parser_, getattr(args, name), "--" + name.replace("_", "-"), at_least=1)
    if args.n_samples < args.n_components:
        parser_.error("--n-samples must be at least --n-components")
    if not args.budget > 0 or not args.gap >= 0:
        parser_.error("--budget must be > 0 and --gap >= 0")

    X, _ = datasets.blobs(args.n_samples, args.n_features, args.n_components, cluster_std=4.0)
    init = NaturalDiagonalGMM(
        args.n_components, init_params="k-means++", max_iter=0, random_state=0
    )
    init.fit(X[:100_000])
    start = dict(
        weights_init=init.weights_, means_init=init.means_, precisions_init=init.precisions_
    )
    warm_up(_trajectory, X[:1000], start, SOLVERS["research: lr=1e-4, 1000 steps"], 0.1)

    print("converging the reference batch EM fit (no output until it has)...", flush=True)
    reference = _trajectory(X, start, SOLVERS["batch EM"], 10 * args.budget)
    target = reference[-1][1] - args.gap
    print(
        f"N={args.n_samples} D={args.n_features} K={args.n_components}: batch EM converges to "
        f"{reference[-1][1]:.5f} in {len(reference)} iterations, {reference[-1][0]:.1f} s; "
        f"target {target:.5f}"
    )
    print(f"{'solver':32s} {'seconds':>8s} {'iters':>6s} {'reached':>8s} {'best loglik':>12s}")
    for name, settings in SOLVERS.items():
        points = _trajectory(X, start, settings, args.budget, target)
        reached = points[-1][1] >= target
        print(
            f"{name:32s} {points[-1][0]:8.1f} {len(points):6d} {str(reached):>8s} "
            f"{max(p[1] for p in points):12.5f}",
            flush=True,
        )


if __name__ == "__main__":
    main()
