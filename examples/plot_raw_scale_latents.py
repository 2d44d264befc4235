r"""
==================================================================
Raw-scale latents: natgmm, sklearn and the normalising wrapper
==================================================================

Latent codes are often used in raw units. Here the 10 factor-analysis
latents of the digits are multiplied by per-dimension factors drawn from
[40, 80], giving standard deviations of about 40 to 70, and mixtures with 10
components are fitted to both the unscaled and the scaled latents by
:class:`~natgmm.NaturalDiagonalGMM`, by
:class:`sklearn.mixture.GaussianMixture` and by natgmm inside
:class:`~natgmm.StandardizedGMM`, the wrapper that standardises every
feature, fits, and maps the parameters back to raw units.

At this scale a component with the data's variance has
:math:`\eta_2 = -1/(2\sigma^2) \approx -10^{-4}`. A gradient-based fit in
natural parameters is then a few small steps from :math:`\eta_2 > 0`, an
invalid variance (see :doc:`/collapse`). EM takes no steps, so both libraries
fit; natgmm additionally works in standardised units internally, where the
same component has :math:`\eta_2 \approx -0.5`, and maps the parameters
back.
"""

# %%
# Fits on unscaled and scaled latents
# -----------------------------------
# ``init_params="random"`` draws random responsibilities that do not depend
# on the data's units, so with the same ``random_state`` both fits start from
# the same partition; EM is equivariant under a per-feature rescaling, so the
# labels are the same.
import matplotlib.pyplot as plt
import numpy as np
from sklearn.datasets import load_digits
from sklearn.decomposition import FactorAnalysis
from sklearn.metrics import adjusted_rand_score
from sklearn.mixture import GaussianMixture

from natgmm import NaturalDiagonalGMM, StandardizedGMM

X, _ = load_digits(return_X_y=True)
Z = FactorAnalysis(10, svd_method="lapack", random_state=0).fit_transform(X)
factors = np.random.default_rng(0).uniform(40, 80, Z.shape[1])
Z_raw = Z * factors
print("per-dimension std of the scaled latents:", Z_raw.std(axis=0).round(1))
print("eta2 of one component with the data variance:", (-0.5 / Z_raw.var(axis=0)).round(6))

libraries = {
    "natgmm": lambda init: NaturalDiagonalGMM(10, init_params=init, random_state=0),
    "sklearn": lambda init: GaussianMixture(
        10, covariance_type="diag", init_params=init, random_state=0
    ),
    "wrapper": lambda init: StandardizedGMM(
        NaturalDiagonalGMM(10, init_params=init, random_state=0)
    ),
}
fits = {
    (name, scale): make("random").fit(data)
    for name, make in libraries.items()
    for scale, data in [("unscaled", Z), ("scaled", Z_raw)]
}
log_jacobian = np.log(factors).sum()  # density change under the rescaling
for (name, scale), model in fits.items():
    bound = model.lower_bound_ + (log_jacobian if scale == "scaled" else 0.0)
    print(
        f"{name:8s} {scale:9s}: converged={model.converged_}, n_iter={model.n_iter_}, "
        f"mean log-likelihood in unscaled units {bound:.6f}"
    )

nat = fits["natgmm", "scaled"]
print("natgmm parameters finite:", all(np.isfinite(a).all() for a in (nat.eta1_, nat.eta2_)))
print(f"natgmm eta2_ from {nat.eta2_.min():.2e} to {nat.eta2_.max():.2e}")
same = np.array_equal(fits["natgmm", "unscaled"].predict(Z), nat.predict(Z_raw))
print("natgmm labels on scaled == labels on unscaled:", same)

# %%
# Starts from k-means
# -------------------
# The k-means-based initialisations are a different matter: k-means measures
# distances in the data's units, so rescaling the features changes the
# starting partition, in scikit-learn and natgmm alike, and EM may end in a
# different local optimum. The adjusted Rand index between the labels on the
# unscaled and the scaled latents shows it. Standardise the features first
# if the start should not depend on their units.
inits = ["random", "kmeans", "k-means++"]
agreement = {
    name: [
        adjusted_rand_score(make(init).fit(Z).predict(Z), make(init).fit(Z_raw).predict(Z_raw))
        for init in inits
    ]
    for name, make in libraries.items()
}
for name, values in agreement.items():
    print(f"{name:8s}", ", ".join(f"{i}: {v:.3f}" for i, v in zip(inits, values, strict=True)))

# %%
# The normalising wrapper
# -----------------------
# :class:`~natgmm.StandardizedGMM` runs the whole fit, k-means start
# included, on standardised features, so the start no longer depends on the
# units: its labels agree across the rescaling for every initialisation
# (the "wrapper" rows above). Its inner estimator sees order-one numbers,
# and its floors and priors, given in absolute units, are fractions of each
# feature's variance; its parameters and densities are reported in raw
# units.
wrapped = fits["wrapper", "scaled"]
print(
    f"inner eta2_ from {wrapped.estimator_.eta2_.min():.2f} to {wrapped.estimator_.eta2_.max():.2f}"
)
print(f"raw-unit eta2_ from {wrapped.eta2_.min():.2e} to {wrapped.eta2_.max():.2e}")
print("wrapper density == natgmm density:", np.allclose(wrapped.score(Z_raw), nat.score(Z_raw)))

# %%
# The figure
# ----------
# Top left: natgmm's fitted :math:`\eta_2` on the scaled latents, of order
# :math:`10^{-4}` and negative throughout. Top right: the same components in
# standardised units, :math:`\eta_2 \cdot \mathrm{Var}(x_d)`, the order-one
# numbers natgmm's kernels (and the wrapper's inner estimator) work with.
# Bottom: agreement of the labels on unscaled and scaled latents for each
# initialisation.
fig, axes = plt.subplot_mosaic(
    [["raw", "standardised"], ["ari", "ari"]], figsize=(9, 7), layout="constrained"
)
for ax, values, title in [
    (axes["raw"], np.log10(-nat.eta2_), r"$\log_{10}(-\eta_2)$, scaled latents"),
    (
        axes["standardised"],
        np.log10(-nat.eta2_ * Z_raw.var(axis=0)),
        r"$\log_{10}(-\eta_2)$, standardised",
    ),
]:
    image = ax.imshow(values, cmap="viridis")
    fig.colorbar(image, ax=ax, shrink=0.8, label=r"$\log_{10}(-\eta_2)$")
    ax.set(title=title, xlabel="latent dimension", ylabel="component")
width = 0.27
positions = np.arange(len(inits))
for i, (name, values) in enumerate(agreement.items()):
    label = "StandardizedGMM(NaturalDiagonalGMM)" if name == "wrapper" else name
    axes["ari"].bar(positions + (i - 1) * width, values, width, label=label)
axes["ari"].set_xticks(positions, inits)
axes["ari"].set(
    ylim=(0, 1.25),
    xlabel="init_params",
    ylabel="ARI(unscaled, scaled labels)",
    title="Same labels after rescaling?",
)
# Above the bars (which reach 1): inside them, the legend hid the first group.
axes["ari"].legend(loc="upper center", ncol=3)
plt.show()
