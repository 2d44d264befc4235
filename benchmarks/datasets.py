"""Data sets shared by the benchmarks: every script makes its data here.

Each function is a pure function of its arguments (seeds included), needs no
network, and returns float64 C-contiguous arrays unless a ``dtype`` is given.
"""

import numpy as np


def blobs(n_samples, n_features, centers, cluster_std=1.0, seed=0, dtype=np.float64):
    """Isotropic Gaussian blobs with centres in ``[-10, 10]``: ``X, y``.

    ``cluster_std`` 1 gives well separated clusters at ``D = 50``; 8 gives
    overlapping ones.
    """
    from sklearn.datasets import make_blobs

    X, y = make_blobs(
        n_samples=n_samples,
        n_features=n_features,
        centers=centers,
        cluster_std=cluster_std,
        center_box=(-10, 10),
        random_state=seed,
    )
    return np.ascontiguousarray(X, dtype=dtype), y


def digits():
    """scikit-learn's digits, 1797 rows of 64 pixel counts: ``X, y``."""
    from sklearn.datasets import load_digits

    X, y = load_digits(return_X_y=True)
    return np.ascontiguousarray(X, dtype=np.float64), y


def digits_latents(n_factors=50, seed=0, raw_scale=False, svd_method="randomized"):
    """FactorAnalysis latents of scikit-learn's digits (1797 rows): ``Z, y``.

    With ``raw_scale``, each latent is multiplied by a factor drawn from
    ``uniform(40, 80)``, the per-dimension spread of raw latents that makes
    naive natural-parameter fits collapse.
    """
    from sklearn.datasets import load_digits
    from sklearn.decomposition import FactorAnalysis

    X, y = load_digits(return_X_y=True)
    Z = FactorAnalysis(n_factors, svd_method=svd_method, random_state=seed).fit_transform(X)
    if raw_scale:
        Z = Z * np.random.default_rng(seed).uniform(40, 80, n_factors)
    return np.ascontiguousarray(Z), y


def load_npz(path):
    """``X`` and ``y`` (None when absent) of an ``.npz`` file."""
    data = np.load(path)
    return data["X"], data["y"] if "y" in data else None
