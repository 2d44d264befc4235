r"""
===========================================
Time per EM iteration: natgmm and sklearn
===========================================

Seconds per EM iteration of :class:`~natgmm.NaturalDiagonalGMM` and
:class:`sklearn.mixture.GaussianMixture` with ``covariance_type="diag"`` on
synthetic blobs, as a function of the number of samples. Both start from the
same parameters and run with ``tol=0``, so every fit does exactly
``max_iter`` iterations. The time per iteration is the difference between
the best of three 12-iteration fits and the best of three 2-iteration fits,
divided by 10, which removes the start-up work (validation, initialisation).

Both run on one core: scikit-learn with its BLAS limited to one thread and
natgmm with ``n_jobs=1``. The figures are measured while this page is built,
on whatever machine builds it; :doc:`/performance` has larger cases on all
cores.
"""

# %%
import time
import warnings

import matplotlib.pyplot as plt
import numpy as np
from sklearn.datasets import make_blobs
from sklearn.mixture import GaussianMixture
from threadpoolctl import threadpool_limits

from natgmm import NaturalDiagonalGMM

N_FEATURES, N_COMPONENTS = 20, 20
sizes = [1_000, 3_000, 10_000, 30_000]


def seconds_per_iteration(make_model, X, start):
    """(best t(12 iterations) - best t(2 iterations)) / 10, best of three."""
    best = {}
    for max_iter in (2, 12):
        times = []
        for _ in range(3):
            model = make_model(max_iter, start)
            t0 = time.perf_counter()
            model.fit(X)
            times.append(time.perf_counter() - t0)
        best[max_iter] = min(times)
    return (best[12] - best[2]) / 10


def sklearn_model(max_iter, start):
    """GaussianMixture from ``start``.

    "random_from_data" keeps scikit-learn from running k-means in every fit:
    it runs its initialisation even when all three ``*_init`` arrays are
    given, which then replace the initial parameters.
    """
    return GaussianMixture(
        N_COMPONENTS,
        covariance_type="diag",
        init_params="random_from_data",
        max_iter=max_iter,
        **start,
    )


def natgmm_model(max_iter, start):
    """NaturalDiagonalGMM from ``start`` on one thread."""
    return NaturalDiagonalGMM(N_COMPONENTS, max_iter=max_iter, n_jobs=1, **start)


timings = {"sklearn": [], "natgmm": []}
with warnings.catch_warnings(), threadpool_limits(limits=1):
    warnings.simplefilter("ignore")  # with tol=0 no fit "converges"
    for n_samples in sizes:
        X, _ = make_blobs(
            n_samples, N_FEATURES, centers=N_COMPONENTS, center_box=(-10, 10), random_state=0
        )
        start = dict(
            weights_init=np.full(N_COMPONENTS, 1 / N_COMPONENTS),
            means_init=X[:N_COMPONENTS],
            precisions_init=np.ones((N_COMPONENTS, N_FEATURES)),
            tol=0.0,
        )
        natgmm_model(1, start).fit(X)  # compile or load the kernels for this dtype
        timings["sklearn"].append(seconds_per_iteration(sklearn_model, X, start))
        timings["natgmm"].append(seconds_per_iteration(natgmm_model, X, start))

sk, nat = np.array(timings["sklearn"]), np.array(timings["natgmm"])
print(f"D={N_FEATURES}, K={N_COMPONENTS}, one thread each")
print(f"{'n_samples':>9s} {'sklearn ms/it':>14s} {'natgmm ms/it':>13s} {'ratio':>6s}")
for n_samples, s, n in zip(sizes, sk, nat, strict=True):
    print(f"{n_samples:9d} {s * 1e3:14.3f} {n * 1e3:13.3f} {s / n:6.1f}")

# %%
# The figure
# ----------
# The cost per iteration of both grows linearly with ``n_samples``. At a few
# thousand samples an iteration takes about a millisecond or less, and the
# ratio is noisier.
fig, (ax_time, ax_ratio) = plt.subplots(1, 2, figsize=(7.5, 3.4), layout="constrained")
ax_time.loglog(sizes, sk, "o-", label="sklearn GaussianMixture(diag)")
ax_time.loglog(sizes, nat, "s-", label="natgmm NaturalDiagonalGMM")
ax_time.set(
    xlabel="n_samples",
    ylabel="seconds per EM iteration",
    title=f"D={N_FEATURES}, K={N_COMPONENTS}, one thread",
)
ax_time.legend(fontsize="small")
ax_ratio.semilogx(sizes, sk / nat, "o-", label="natgmm's speed-up")
ax_ratio.axhline(1, color="k", lw=0.8, label="equal speed")
ax_ratio.set(
    xlabel="n_samples", ylabel="sklearn time / natgmm time", title="Speed-up", ylim=(0, None)
)
ax_ratio.legend(loc="lower right", fontsize="small")
plt.show()
