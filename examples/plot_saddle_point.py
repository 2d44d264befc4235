r"""
===============================================
The symmetric saddle point of a two-cluster fit
===============================================

Two data points, :math:`x \in \{-1, +1\}`, and the symmetric two-component
model

.. math::

    p(x \mid \mu, \sigma) = \tfrac12 \mathcal N(x; \mu, \sigma^2)
                           + \tfrac12 \mathcal N(x; -\mu, \sigma^2).

Its mean log-likelihood :math:`L(\mu, \sigma)` has a critical point at
:math:`(\mu, \sigma) = (0, 1)`: both components sit on the data mean with the
data variance. It is a saddle with a singular Hessian, and EM started near it
stays there for hundreds of iterations, long enough for a tolerance-based
stopping rule to call it converged. Below the critical variance
:math:`\sigma^2 = 1` (the top eigenvalue of the data covariance) the
components split; above it they merge.
"""

# %%
# The log-likelihood surface
# --------------------------
# :math:`L` is even in :math:`\mu` (swapping the components) and unbounded
# as :math:`\sigma \to 0` with :math:`\mu = \pm 1`: each component then
# sits on one point. That is the collapse the variance floors prevent, so the
# plots stop at :math:`\sigma = 0.15`.
import warnings

import matplotlib.pyplot as plt
import numpy as np

from natgmm import GeometricSchedule, NaturalDiagonalGMM

x = np.array([-1.0, 1.0])


def log_likelihood(mu, sigma):
    """Mean log-likelihood of ``x``; ``mu`` and ``sigma`` broadcast together."""
    mu, sigma = np.broadcast_arrays(np.asarray(mu, float), np.asarray(sigma, float))
    xs = x.reshape((-1,) + (1,) * mu.ndim)
    a = -0.5 * ((xs - mu) / sigma) ** 2
    b = -0.5 * ((xs + mu) / sigma) ** 2
    per_point = np.logaddexp(a, b) + np.log(0.5) - np.log(sigma) - 0.5 * np.log(2 * np.pi)
    return per_point.mean(axis=0)


mu_grid = np.linspace(-1.25, 1.25, 251)
sigma_grid = np.linspace(0.15, 1.6, 146)
MU, SIGMA = np.meshgrid(mu_grid, sigma_grid)
LL = log_likelihood(MU, SIGMA)
levels = np.linspace(-2.2, 0.4, 27)

fig, (ax_surface, ax_slices) = plt.subplots(1, 2, figsize=(11, 4.5), layout="constrained")
contours = ax_surface.contourf(MU, SIGMA, np.clip(LL, levels[0], levels[-1]), levels=levels)
fig.colorbar(contours, ax=ax_surface, label="L")
ax_surface.axhline(1.0, color="w", ls="--", lw=1)
ax_surface.plot(0, 1, "w*", ms=12, label="saddle (0, 1)")
ax_surface.set(xlabel=r"$\mu$", ylabel=r"$\sigma$", title="L(mu, sigma)")
ax_surface.legend(loc="lower center")

# Slices along mu: below sigma = 1 the symmetric point is a minimum along mu
# (the components split), above it a maximum (they merge).
for sigma, color in [(0.8, "C0"), (1.0, "k"), (1.2, "C3")]:
    ax_slices.plot(mu_grid, log_likelihood(mu_grid, sigma), color=color, label=f"sigma = {sigma}")
ax_slices.set(xlabel=r"$\mu$", ylabel="L", title="Slices at fixed sigma")
ax_slices.legend()

# %%
# The Hessian at the saddle
# -------------------------
# Central differences give :math:`\partial^2 L / \partial \mu^2 = 0` and
# :math:`\partial^2 L / \partial \sigma^2 = -2`: the Hessian is singular.
# Along :math:`\mu` at fixed :math:`\sigma`, the curvature at :math:`\mu = 0`
# is :math:`(\lambda - \sigma^2) / \sigma^4` with :math:`\lambda = 1` the
# data variance, so the sign changes exactly at the critical variance. The
# point is still a saddle: along :math:`\mu^2 = 6 (1 - \sigma)` the
# likelihood rises above :math:`L(0, 1)`.
h = 1e-3
L0 = log_likelihood(0.0, 1.0)
d_mumu = (log_likelihood(h, 1.0) - 2 * L0 + log_likelihood(-h, 1.0)) / h**2
d_ss = (log_likelihood(0.0, 1 + h) - 2 * L0 + log_likelihood(0.0, 1 - h)) / h**2
d_mus = (
    log_likelihood(h, 1 + h)
    - log_likelihood(h, 1 - h)
    - log_likelihood(-h, 1 + h)
    + log_likelihood(-h, 1 - h)
) / (4 * h**2)
hessian = np.array([[d_mumu, d_mus], [d_mus, d_ss]])
print("Hessian at (0, 1):\n", hessian.round(6))
print("eigenvalues:", np.linalg.eigvalsh(hessian).round(6))
t = 0.01
print(f"L(0, 1) = {L0:.8f}, L(sqrt(6t), 1 - t) = {log_likelihood(np.sqrt(6 * t), 1 - t):.8f}")

# %%
# Gradient ascent
# ---------------
# The gradient of :math:`L`, with :math:`r(x) = \mathrm{sigmoid}(2 x \mu /
# \sigma^2)` the responsibility of the component at :math:`+\mu`:
#
# .. math::
#
#     \frac{\partial L}{\partial \mu} =
#         \frac{\overline{(2 r - 1) x} - \mu}{\sigma^2}, \qquad
#     \frac{\partial L}{\partial \sigma} =
#         \frac{\overline{r (x - \mu)^2 + (1 - r)(x + \mu)^2}}{\sigma^3}
#         - \frac{1}{\sigma}.
#
# Arrows show its direction (its length grows without bound as
# :math:`\sigma \to 0`). Trajectories started on :math:`\mu = 0` stay on it
# and end on the saddle; one started just off it, at :math:`\mu = 0.05`,
# crawls along the flat direction and is still near the saddle after 5000
# steps; the others leave and run to a point where :math:`\sigma`
# collapses.


def gradient(mu, sigma):
    """Gradient of the mean log-likelihood with respect to (mu, sigma)."""
    mu, sigma = np.broadcast_arrays(np.asarray(mu, float), np.asarray(sigma, float))
    xs = x.reshape((-1,) + (1,) * mu.ndim)
    r = 0.5 * (1 + np.tanh(xs * mu / sigma**2))  # sigmoid(2 x mu / sigma^2)
    d_mu = (((2 * r - 1) * xs).mean(axis=0) - mu) / sigma**2
    scatter = (r * (xs - mu) ** 2 + (1 - r) * (xs + mu) ** 2).mean(axis=0)
    return d_mu, scatter / sigma**3 - 1 / sigma


def gradient_ascent(mu, sigma, step=0.01, n_steps=5000, sigma_min=0.15):
    """Fixed-step gradient ascent from (mu, sigma) until sigma < sigma_min."""
    path = [(mu, sigma)]
    for _ in range(n_steps):
        d_mu, d_sigma = gradient(mu, sigma)
        mu, sigma = mu + step * float(d_mu), sigma + step * float(d_sigma)
        path.append((mu, sigma))
        if sigma < sigma_min:
            break
    return np.array(path)


starts = [(0.0, 1.5), (0.05, 1.45), (0.2, 1.2), (0.6, 0.7), (-0.4, 1.55)]


def draw_paths(ax, paths, label):
    """Draw (mu, sigma) paths on the surface, a dot at each start, one legend entry each."""
    for i, path in enumerate(paths):
        start = f"({path[0, 0]:g}, {path[0, 1]:g})"
        ax.plot(path[:, 0], path[:, 1], "-", color=f"C{i}", lw=1.5, label=f"{label} from {start}")
        ax.plot(path[0, 0], path[0, 1], "o", color=f"C{i}")


def surface_axes(ax, title):
    """Contours of L, the critical variance and the saddle."""
    ax.contour(MU, SIGMA, LL, levels=levels, colors="0.7", linewidths=0.6, linestyles="solid")
    ax.axhline(1.0, color="0.4", ls="--", lw=1)
    ax.plot(0, 1, "k*", ms=12, label="saddle (0, 1)")
    ax.set(xlim=(-1.25, 1.25), ylim=(0.15, 1.6), xlabel=r"$\mu$", ylabel=r"$\sigma$", title=title)


fig, ax = plt.subplots(figsize=(7, 5), layout="constrained")
surface_axes(ax, "Gradient field and gradient-ascent paths")
coarse = (slice(None, None, 12), slice(None, None, 12))
G_mu, G_sigma = gradient(MU[coarse], SIGMA[coarse])
norm = np.hypot(G_mu, G_sigma) + 1e-12
ax.quiver(MU[coarse], SIGMA[coarse], G_mu / norm, G_sigma / norm, color="0.5", angles="xy")
ascent = [gradient_ascent(mu, sigma) for mu, sigma in starts]
draw_paths(ax, ascent, "gradient ascent")
ax.legend(loc="lower center", fontsize="small")
for (mu, sigma), path in zip(starts, ascent, strict=True):
    print(f"start ({mu:5.2f}, {sigma:4.2f}): {len(path) - 1:4d} steps, end {path[-1].round(3)}")

# %%
# EM trajectories
# ---------------
# For this model the EM update has a closed form. The E-step gives
# :math:`2 r(x) - 1 = \tanh(x \mu / \sigma^2)`; the M-step with
# :math:`x = \pm 1` gives
#
# .. math::
#
#     \mu' = \tanh(\mu / \sigma^2), \qquad
#     \sigma'^2 = \max(1 - \mu'^2, v_{\min}),
#
# with :math:`v_{\min}` a variance floor (natgmm's ``min_variance``). Without
# it EM ends where the likelihood is infinite, :math:`\sigma = 0`; with
# :math:`v_{\min} = 0.05` it ends at :math:`(\pm 1, \sqrt{0.05})`. Near
# the saddle :math:`\mu` grows by only about :math:`\tfrac23 \mu^3` per
# iteration, so the log-likelihood plateaus at :math:`L(0, 1)`. A start on
# :math:`\mu = 0` goes to the saddle in one step and never leaves.
MIN_VAR = 0.05


def em_path(mu, sigma, n_iter=3000, min_var=MIN_VAR):
    """EM iterates of the symmetric model from (mu, sigma)."""
    path = [(mu, sigma)]
    for _ in range(n_iter):
        mu = np.tanh(mu / sigma**2)
        sigma = np.sqrt(max(1 - mu**2, min_var))
        path.append((mu, sigma))
    return np.array(path)


em = [em_path(mu, sigma) for mu, sigma in starts]

# natgmm from the same symmetric start (the data and the start are symmetric,
# so its free weights, means and variances stay those of this model). With
# its default tol=1e-3 it stops on the plateau; with tol=0 it reaches the
# floored optimum.
stops = {}
for tol in (1e-3, 0.0):
    mu0, sigma0 = starts[2]
    gmm = NaturalDiagonalGMM(
        2,
        weights_init=[0.5, 0.5],
        means_init=[[-mu0], [mu0]],
        precisions_init=[[1 / sigma0**2], [1 / sigma0**2]],
        min_variance=MIN_VAR,
        tol=tol,
        max_iter=200,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tol=0 never "converges"
        gmm.fit(x.reshape(-1, 1))
    stops[tol] = (gmm.means_.max(), np.sqrt(gmm.covariances_[0, 0]), gmm.n_iter_)
    print(
        f"natgmm tol={tol:g}: mu = {stops[tol][0]:.4f}, sigma = {stops[tol][1]:.4f} "
        f"after {gmm.n_iter_} iterations (converged_={gmm.converged_})"
    )

fig, (ax_paths, ax_ll) = plt.subplots(1, 2, figsize=(11, 4.5), layout="constrained")
surface_axes(ax_paths, "EM paths (variance floor 0.05)")
draw_paths(ax_paths, em, "EM")
ax_paths.plot(*stops[1e-3][:2], "kx", ms=10, mew=2, label="natgmm, tol=1e-3 stops")
ax_paths.legend(loc="lower center", fontsize="small")
for i, path in enumerate(em):
    ax_ll.semilogx(
        np.arange(1, len(path) + 1),
        log_likelihood(path[:, 0], path[:, 1]),
        color=f"C{i}",
        label=f"start ({starts[i][0]}, {starts[i][1]})",
    )
ax_ll.axhline(L0, color="k", ls=":", lw=1, label="L at the saddle (0, 1)")
ax_ll.set(xlabel="EM iteration", ylabel="mean log-likelihood", title="EM: plateau at the saddle")
ax_ll.legend(fontsize="small")
for (mu, sigma), path in zip(starts, em, strict=True):
    left = np.flatnonzero(np.abs(path[:, 0]) > 0.9)
    print(
        f"EM from ({mu:5.2f}, {sigma:4.2f}): "
        + (f"|mu| > 0.9 after {left[0]} iterations" if left.size else "stays on the saddle")
    )
plt.show()

# %%
# Annealed trajectories
# ---------------------
# Variance annealing (``annealing="fixed"``) holds :math:`\sigma^2` at each
# level of a decreasing schedule, from 1.2 times the critical variance down
# to the floor, and fits only :math:`\mu` there: :math:`\mu' = \tanh(\mu /
# \sigma^2)`. Above :math:`\sigma^2 = 1` every start is pulled onto
# :math:`\mu = 0`; below it :math:`\mu = 0` repels at the linear rate
# :math:`1 / \sigma^2`, not the cubic one, so the components split within a
# few levels. Free EM at the floor then finishes. Even the start on
# :math:`\mu = 0` leaves, because natgmm offsets the means by a tiny random
# amount at each level (here a fixed :math:`10^{-3}`).
SCHEDULE = GeometricSchedule(start="auto", stop=MIN_VAR, n_levels=25)


def annealed_path(mu, sigma, n_iter=15, offset=1e-3):
    """Fixed-variance annealing, then free EM at the floor, from (mu, sigma)."""
    path = [(mu, sigma)]
    for level in SCHEDULE.values(1.0):  # the critical value of the two points
        mu += offset
        for _ in range(n_iter):
            mu = np.tanh(mu / level)
            path.append((mu, np.sqrt(level)))
    return np.vstack([path, em_path(mu, np.sqrt(MIN_VAR), n_iter=20)[1:]])


annealed = [annealed_path(mu, sigma) for mu, sigma in starts]
# natgmm itself, from the start nearest the saddle and with every level run
# in full (anneal_tol=0, as in the closed form above).
mu0, sigma0 = starts[1]
gmm = NaturalDiagonalGMM(
    2,
    weights_init=[0.5, 0.5],
    means_init=[[-mu0], [mu0]],
    precisions_init=[[1 / sigma0**2], [1 / sigma0**2]],
    min_variance=MIN_VAR,
    annealing="fixed",
    schedule=SCHEDULE,
    anneal_tol=0.0,
    random_state=0,
).fit(x.reshape(-1, 1))
print(
    f"natgmm annealing='fixed' from ({mu0}, {sigma0}): means {np.sort(gmm.means_.ravel())}, "
    f"sigma {np.sqrt(gmm.covariances_.ravel()).round(4)} after {gmm.n_iter_} iterations"
)
# The start's two means merge above the critical variance, then split
# (in the levels and the final EM: split-and-merge trials, "move" > 0, after).
merged = np.flatnonzero((gmm.history_["n_distinct"] == 1) & (gmm.history_["move"] == 0))[-1]
print(f"the means split at the level sigma^2 = {gmm.history_['level'][merged + 1]:.3f}")

fig, (ax_paths, ax_ll) = plt.subplots(1, 2, figsize=(11, 4.5), layout="constrained")
surface_axes(ax_paths, "Annealed paths (fixed variance, then EM)")
draw_paths(ax_paths, annealed, "annealing")
ax_paths.plot(
    gmm.means_.max(), np.sqrt(gmm.covariances_[0, 0]), "kx", ms=10, mew=2, label="natgmm's fit"
)
ax_paths.legend(loc="lower center", fontsize="small")
for i, (path, em_iterates) in enumerate(zip(annealed, em, strict=True)):
    ax_ll.semilogx(
        np.arange(1, len(path) + 1),
        log_likelihood(path[:, 0], path[:, 1]),
        color=f"C{i}",
        label="annealing (the five curves coincide)" if i == 0 else None,
    )
    ax_ll.semilogx(
        np.arange(1, len(em_iterates) + 1),
        log_likelihood(em_iterates[:, 0], em_iterates[:, 1]),
        color=f"C{i}",
        ls=":",
        label="EM" if i == 0 else None,
    )
ax_ll.axhline(L0, color="k", ls=":", lw=1, label="L at the saddle (0, 1)")
ax_ll.set(
    xlabel="iteration", ylabel="mean log-likelihood", title="Annealing (solid) against EM (dotted)"
)
# Room below the plateau for the legend, which elsewhere covers a curve.
ax_ll.set_ylim(bottom=L0 - 0.55)
ax_ll.legend(loc="lower right")
for (mu, sigma), path in zip(starts, annealed, strict=True):
    left = np.flatnonzero(np.abs(path[:, 0]) > 0.99)
    print(f"annealing from ({mu:5.2f}, {sigma:4.2f}): |mu| > 0.99 after {left[0]} iterations")
plt.show()

# %%
# What this means in practice
# ---------------------------
# A mixture fitted from a start in which two components nearly coincide can
# stop, "converged", on a saddle like this one. natgmm's initialisations avoid
# such starts: every k-means-based start gives each component the mean and
# variance of its own cell, below the critical variance, rather than the
# variance of all the data. Deterministic annealing attacks the problem from
# the other side, as above: it starts above the critical variance and lowers
# the variance (or a temperature) through it, so that components split one
# at a time. :ref:`sphx_glr_auto_examples_plot_annealing.py` follows it on
# real data.
