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


def digits_like_latents(n_samples, n_factors=50, noise=2.0, seed=0, dtype=np.float64):
    """FactorAnalysis latents of noisy resampled digits: ``Z, y``.

    Rows of scikit-learn's digits (8 x 8 images) drawn with replacement, each
    pixel plus Gaussian noise of standard deviation ``noise`` (pixels range
    over 0..16), reduced to ``n_factors`` latents by ``FactorAnalysis``:
    overlapping, unevenly spread clusters like latents of real images, at any
    ``n_samples``. The factor model is fitted on the first 5000 rows and
    applied to all of them, which keeps large ``n_samples`` quick.
    """
    from sklearn.datasets import load_digits
    from sklearn.decomposition import FactorAnalysis

    X, y = load_digits(return_X_y=True)
    rng = np.random.default_rng(seed)
    rows = rng.integers(X.shape[0], size=n_samples)
    images = X[rows] + rng.normal(scale=noise, size=(n_samples, X.shape[1]))
    fa = FactorAnalysis(n_factors, random_state=seed).fit(images[:5000])
    Z = fa.transform(images)
    return np.ascontiguousarray(Z, dtype=dtype), y[rows]


def fuzz_problem(seed):
    """One adversarial small problem for robustness fuzzing: ``X, sample_weight, n_components``.

    Hostile in the ways of issue #17: per-feature scales from 1e-160 to 1e160
    (1e-38 to 1e38 in float32, which is drawn for a third of the problems),
    offsets of up to 1e12 spreads, constant columns, duplicated rows,
    ``n_samples`` close to ``n_components`` and, for a third, random sample
    weights. ``X`` may hold values that validation rejects (float32
    overflow to inf); the caller decides what counts as a clear refusal.
    """
    rng = np.random.default_rng(seed)
    n_components = int(rng.integers(1, 5))
    if rng.random() < 0.3:  # n close to K
        n_samples = max(2, n_components + int(rng.integers(0, 2)))
    else:
        n_samples = int(rng.integers(max(2, n_components), 41))
    n_features = int(rng.integers(1, 5))
    dtype = np.float32 if rng.random() < 1 / 3 else np.float64
    top = 38.0 if dtype == np.float32 else 160.0
    centres = rng.normal(scale=3.0, size=(n_components, n_features))
    X = centres[rng.integers(0, n_components, n_samples)] + rng.normal(size=(n_samples, n_features))
    if rng.random() < 0.3:  # duplicated rows
        X[rng.integers(0, n_samples, n_samples // 2)] = X[0]
    scale = 10.0 ** rng.uniform(-top, top, n_features)
    offset = np.where(
        rng.random(n_features) < 0.5,
        0.0,
        rng.choice([-1.0, 1.0], n_features) * 10.0 ** rng.uniform(0, 12, n_features),
    )
    with np.errstate(over="ignore"):
        X = (X + offset) * scale
        constant = rng.random(n_features) < 0.2
        X[:, constant] = X[0, constant]
        X = np.ascontiguousarray(X, dtype=dtype)
    sample_weight = rng.uniform(0.0, 3.0, n_samples) if rng.random() < 1 / 3 else None
    if sample_weight is not None and not sample_weight.sum() > 0:
        sample_weight[0] = 1.0
    return X, sample_weight, n_components
