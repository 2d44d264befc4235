r"""
===================================================
Choosing K on the digits with GridSearchCV and BIC
===================================================

A scikit-learn pipeline, digits -> :class:`~sklearn.decomposition.FactorAnalysis`
-> :class:`~natgmm.NaturalDiagonalGMM`, tuned by
:class:`~sklearn.model_selection.GridSearchCV` over the number of components
and ``min_variance_relative``. A density estimator's ``score`` is the mean
log-likelihood of held-out data, so the grid search needs no labels.
"""

# %%
# The pipeline and the grid
# -------------------------
# The factor analysis does not depend on the grid, so the pipeline caches it
# (``memory``): it is fitted once per fold instead of once per grid point.
# ``svd_method="lapack"`` is faster than the randomized SVD for 64 features.
import shutil
import tempfile
import time

import matplotlib.pyplot as plt
import numpy as np
from sklearn.datasets import load_digits
from sklearn.decomposition import FactorAnalysis
from sklearn.metrics import adjusted_rand_score
from sklearn.model_selection import GridSearchCV, KFold
from sklearn.pipeline import Pipeline

from natgmm import NaturalDiagonalGMM

X, y = load_digits(return_X_y=True)
cache = tempfile.mkdtemp()
pipeline = Pipeline(
    [
        ("fa", FactorAnalysis(10, svd_method="lapack", random_state=0)),
        ("gmm", NaturalDiagonalGMM(random_state=0)),
    ],
    memory=cache,
)
n_components = [4, 8, 16, 32, 64, 96, 128]
floors = [0.0, 0.1, 0.3]
search = GridSearchCV(
    pipeline,
    {"gmm__n_components": n_components, "gmm__min_variance_relative": floors},
    cv=KFold(3, shuffle=True, random_state=0),
)
start = time.perf_counter()
search.fit(X)
seconds = time.perf_counter() - start
shutil.rmtree(cache)
print(f"{len(search.cv_results_['params'])} settings x 3 folds in {seconds:.1f} s")
print("best:", search.best_params_, f"held-out mean log-likelihood {search.best_score_:.3f}")

# %%
# Held-out log-likelihood
# -----------------------
# Without a floor the held-out score peaks and then falls: extra components
# fit tight clumps of training points, which held-out points do not share.
# A floor of a tenth of each latent's variance stops that and lets more
# components pay off; a floor that is too large costs likelihood at every K.
results = search.cv_results_
fig, ax_cv = plt.subplots(figsize=(7, 4.5), layout="constrained")
for floor in floors:
    rows = np.asarray(results["param_gmm__min_variance_relative"]) == floor
    ax_cv.errorbar(
        np.asarray(results["param_gmm__n_components"])[rows],
        results["mean_test_score"][rows],
        yerr=results["std_test_score"][rows],
        marker="o",
        ms=4,
        capsize=2,
        label=f"min_variance_relative={floor}",
    )
ax_cv.set(
    xlabel="n_components",
    ylabel="held-out mean log-likelihood",
    title="GridSearchCV, 3 folds",
    xscale="log",
)
ax_cv.set_xticks(n_components, labels=n_components, minor=False)
ax_cv.minorticks_off()
ax_cv.legend()

# %%
# BIC and AIC
# -----------
# The information criteria need one fit per K on all the data. BIC penalises
# the ``2 K D + K - 1`` parameters (``D = 10`` latents) more than AIC does and
# picks a smaller K.
Z = FactorAnalysis(10, svd_method="lapack", random_state=0).fit_transform(X)
bic, aic = [], []
for k in n_components:
    gmm = NaturalDiagonalGMM(k, min_variance_relative=0.1, random_state=0).fit(Z)
    bic.append(gmm.bic(Z))
    aic.append(gmm.aic(Z))
fig, ax_ic = plt.subplots(figsize=(7, 4.5), layout="constrained")
ax_ic.semilogx(n_components, bic, "o-", ms=4, label="BIC")
ax_ic.semilogx(n_components, aic, "s-", ms=4, label="AIC")
ax_ic.set(
    xlabel="n_components",
    ylabel="criterion (lower is better)",
    title="Information criteria, min_variance_relative=0.1",
)
ax_ic.set_xticks(n_components, labels=n_components, minor=False)
ax_ic.minorticks_off()
ax_ic.legend()
plt.show()
print(f"BIC picks K={n_components[np.argmin(bic)]}, AIC picks K={n_components[np.argmin(aic)]}")

# %%
# The chosen model
# ----------------
# ``best_estimator_`` is the pipeline refitted on all the digits. Its
# components split the ten digit classes into many sub-styles; the adjusted
# Rand index measures their agreement with the classes beyond chance.
labels = search.best_estimator_.predict(X)
print(f"adjusted Rand index against the digit labels: {adjusted_rand_score(y, labels):.3f}")
