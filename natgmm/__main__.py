"""Demo: digits -> FactorAnalysis -> NaturalDiagonalGMM beside GaussianMixture.

Run ``python -m natgmm --help`` for the options.
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

from . import NaturalDiagonalGMM


def _fit(model, Z):
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        model.fit(Z)
    return time.perf_counter() - start


def main(argv=None):
    """Fit both mixtures on factor-analysis codes of the digits and print a table."""
    parser = argparse.ArgumentParser(prog="python -m natgmm", description=__doc__)
    parser.add_argument("--n-components", type=int, default=10, help="mixture components")
    parser.add_argument("--n-factors", type=int, default=20, help="FactorAnalysis latents")
    parser.add_argument("--n-init", type=int, default=5, help="initialisations for both")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    X, y = load_digits(return_X_y=True)
    Z = FactorAnalysis(args.n_factors, random_state=args.seed).fit_transform(X)
    common = dict(n_components=args.n_components, n_init=args.n_init, random_state=args.seed)
    models = {
        "natgmm.NaturalDiagonalGMM": NaturalDiagonalGMM(**common),
        "sklearn GaussianMixture(diag)": GaussianMixture(covariance_type="diag", **common),
    }
    _fit(NaturalDiagonalGMM(n_components=2, max_iter=1), Z[:50])  # compile or load cache
    print(
        f"digits {X.shape} -> FactorAnalysis({args.n_factors}) -> "
        f"K={args.n_components}, n_init={args.n_init}"
    )
    print(f"{'model':32s} {'fit s':>8s} {'iters':>6s} {'mean loglik':>12s} {'NMI':>6s}")
    print("(fit time includes k-means initialisation for both)")
    for name, model in models.items():
        seconds = _fit(model, Z)
        nmi = normalized_mutual_info_score(y, model.predict(Z))
        print(f"{name:32s} {seconds:8.3f} {model.n_iter_:6d} {model.score(Z):12.4f} {nmi:6.3f}")
    params = models["natgmm.NaturalDiagonalGMM"]
    assert np.all(np.isfinite(params.eta2_)) and np.all(params.eta2_ < 0)


if __name__ == "__main__":
    main()
