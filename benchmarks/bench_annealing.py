"""One annealed fit against GaussianMixture(covariance_type="diag", n_init=5).

On FactorAnalysis latents of the digits (or of ``--data FILE.npz`` holding
``X`` and optionally ``y``), for each K: the final mean train
log-likelihood, the NMI against the labels and the wall time of

- sklearn ``GaussianMixture(covariance_type="diag", n_init=5)`` (k-means
  initialisations),
- natgmm with the same settings (the drop-in),
- natgmm with a single initialisation and each annealing mode, using the
  default schedule (25 geometric levels from 1.2 x the critical value down to
  0.01, at most 15 EM iterations per level, each level ending early when
  its gain is below ``tol``, then EM to convergence),

all in one run. Every fit gets the same ``max_iter`` for its final EM and
the same variance floor: ``reg_covar`` for sklearn and plain natgmm, plus
the last level (0.01 of each feature's variance) for the annealed fits.

Run from the repository root::

    python benchmarks/bench_annealing.py [--n-factors 50] [--k 20 50] [--seed 0]
"""

import argparse
import time
import warnings

import numpy as np
from sklearn.datasets import load_digits
from sklearn.decomposition import FactorAnalysis
from sklearn.exceptions import ConvergenceWarning
from sklearn.metrics import normalized_mutual_info_score
from sklearn.mixture import GaussianMixture

from natgmm import NaturalDiagonalGMM


def _load(args):
    if args.data:
        data = np.load(args.data)
        X = data["X"]
        y = data["y"] if "y" in data else None
        name = args.data
    else:
        X, y = load_digits(return_X_y=True)
        name = "digits"
    Z = FactorAnalysis(args.n_factors, random_state=args.seed).fit_transform(X)
    return name, Z, y


def _row(name, model, Z, y):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        start = time.perf_counter()
        model.fit(Z)
        seconds = time.perf_counter() - start
    labels = model.predict(Z)
    nmi = normalized_mutual_info_score(y, labels) if y is not None else float("nan")
    return name, model.score(Z), nmi, seconds, model.n_iter_


def main(argv=None):
    """Print one table per K."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", help=".npz with X (and optionally y)")
    parser.add_argument("--n-factors", type=int, default=50)
    parser.add_argument("--k", type=int, nargs="+", default=[20, 50])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--max-iter", type=int, default=300)
    args = parser.parse_args(argv)

    name, Z, y = _load(args)
    NaturalDiagonalGMM(2, max_iter=1).fit(Z[:100])  # compile or load the kernels
    print(f"{name}: {Z.shape[0]} x {Z.shape[1]} FactorAnalysis latents, seed {args.seed}")
    for k in args.k:
        common = dict(n_components=k, random_state=args.seed, max_iter=args.max_iter)
        rows = [
            _row(
                "sklearn GaussianMixture n_init=5",
                GaussianMixture(covariance_type="diag", n_init=5, **common),
                Z,
                y,
            ),
            _row("natgmm n_init=5", NaturalDiagonalGMM(n_init=5, **common), Z, y),
        ]
        for mode in ("floor", "fixed", "temperature"):
            model = NaturalDiagonalGMM(annealing=mode, **common)
            rows.append(_row(f"natgmm annealing={mode!r}, 1 init", model, Z, y))
        print(f"\nK = {k}")
        print(f"{'model':36s} {'train loglik':>12s} {'NMI':>6s} {'seconds':>8s} {'iters':>6s}")
        for label, loglik, nmi, seconds, n_iter in rows:
            print(f"{label:36s} {loglik:12.4f} {nmi:6.3f} {seconds:8.2f} {n_iter:6d}")


if __name__ == "__main__":
    main()
