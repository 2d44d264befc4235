"""The gradient M-step: Adam on natural parameters that keep ``eta2 < 0``.

Generalised EM as trained in larger models: after each E-step, a number of
Adam steps ascend the expected complete-data log-likelihood plus the log of
the Gamma prior on the precisions, divided by the total weight (a per-sample
mean, as in gradient-trained models). The variables are the weight logits
``alpha``, the first natural parameter ``eta1`` and ``omega``, the log
precision, with ``eta2 = -exp(omega) / 2``: ``eta2`` is negative for every
finite ``omega``, and ``omega`` is clipped to ``[-OMEGA_MAX, OMEGA_TOP]`` so
that ``exp`` neither overflows nor underflows. No step size can cross
``eta2 = 0``. At the optimum the gradients vanish exactly where the
closed-form M-step lands: ``mean = S1 / N_k`` and
``var = (S + 2 b) / (N_k + 2 a1)``, with ``N_k`` the weight of the rows
observing the feature when entries are missing.
"""

import math
from typing import NamedTuple

import numpy as np

from ._em import Params, feature_weights, floor_weights
from ._interrupt import keyboard_interrupts
from ._kernels import _jit

# exp(+-600) is finite in float64 with room for the products it enters.
OMEGA_MAX = 600.0
# The largest omega: a variance at least exp(-30) ~ 1e-13 (in internal units,
# where each feature's variance is 1) above reg_covar. omega's gradient is
# the precision times a scatter about the mean whose rounding is about 1e-14
# (rows a few standard deviations out): from exp(30) ~ 1e13 on, it is that
# rounding's. A start cell of identical rows (variance reg_covar exactly)
# had omega 600 and gradients of 1e228, and the clip of the gradient's norm
# scaled every other coordinate's to nothing: the fit never moved.
OMEGA_TOP = 30.0
_BETA1, _BETA2, _ADAM_EPS = 0.9, 0.999, 1e-8


class AdamState(NamedTuple):
    """Variables and Adam moments, carried from one M-step to the next.

    ``theta`` holds ``alpha`` (n_components), then ``eta1`` and ``omega``
    (n_components x n_features each), flattened; ``m`` and ``v`` are Adam's
    moments of the same layout and ``step`` its step counter.
    """

    theta: np.ndarray
    m: np.ndarray
    v: np.ndarray
    step: np.ndarray


@_jit()
def _unpack(theta, n_components, n_features):
    size = n_components * n_features
    return (
        theta[:n_components],
        theta[n_components : n_components + size].reshape(n_components, n_features),
        theta[n_components + size :].reshape(n_components, n_features),
    )


def adam_state(params, reg_var):
    """Adam variables at ``params``, with zero moments.

    ``omega`` is the log precision of the variances less ``reg_var``
    (``reg_covar``), which the M-step adds back.
    """
    with np.errstate(divide="ignore"):
        alpha = np.maximum(np.log(params.weights), -OMEGA_MAX)
        omega = np.clip(-np.log(params.variances - reg_var), -OMEGA_MAX, OMEGA_TOP)
    precision = np.exp(omega)
    theta = np.concatenate([alpha, (params.means * precision).ravel(), omega.ravel()])
    return AdamState(theta, np.zeros_like(theta), np.zeros_like(theta), np.zeros(1, np.int64))


@_jit()
def _adam_steps(nk, nkd, s1, s2, ref, total, theta, m, v, step, n_steps, lr, clip, a1, b):
    n_components, n_features = ref.shape
    alpha, eta1, omega = _unpack(theta, n_components, n_features)
    grad = np.empty_like(theta)
    g_alpha, g_eta1, g_omega = _unpack(grad, n_components, n_features)
    for _ in range(n_steps):
        top = alpha.max()
        norm = 0.0
        for k in range(n_components):
            norm += math.exp(alpha[k] - top)
        for k in range(n_components):
            g_alpha[k] = nk[k] / total - math.exp(alpha[k] - top) / norm
            for j in range(n_features):
                precision = math.exp(omega[k, j])
                mean = eta1[k, j] / precision
                gap = ref[k, j] - mean
                # sum r (z - mean) and sum r (z - mean)^2, without cancellation
                # (nkd: the weight of the rows observing feature j)
                first = s1[k, j] + nkd[k, j] * gap
                second = s2[k, j] + gap * (2.0 * s1[k, j] + nkd[k, j] * gap)
                # d/d eta2 of the expected log-likelihood: S2 - N (mean^2 + var)
                d_eta2 = second + 2.0 * mean * first - nkd[k, j] / precision
                g_eta1[k, j] = first / total
                g_omega[k, j] = (-0.5 * precision * d_eta2 + a1 - b[j] * precision) / total
        norm = math.sqrt(np.sum(grad * grad))
        shrink = min(1.0, clip / norm) if norm > 0.0 else 1.0
        step[0] += 1
        c1 = 1.0 - _BETA1 ** step[0]
        c2 = 1.0 - _BETA2 ** step[0]
        for i in range(theta.shape[0]):
            g = grad[i] * shrink
            m[i] = _BETA1 * m[i] + (1.0 - _BETA1) * g
            # AMSGrad: v never decreases, so the step shrinks with the
            # gradient and the steps converge instead of orbiting the optimum.
            v[i] = max(v[i], _BETA2 * v[i] + (1.0 - _BETA2) * g * g)
            theta[i] += lr * (m[i] / c1) / (math.sqrt(v[i] / c2) + _ADAM_EPS)
        for i in range(n_components):
            alpha[i] = max(alpha[i], -OMEGA_MAX)
        for k in range(n_components):
            for j in range(n_features):
                omega[k, j] = min(max(omega[k, j], -OMEGA_MAX), OMEGA_TOP)


class GradientMStep:
    """Adam M-step settings: steps per E-step, learning rate, gradient clip."""

    def __init__(self, n_steps, learning_rate, clip):
        self.n_steps, self.learning_rate, self.clip = n_steps, learning_rate, clip

    @keyboard_interrupts()
    def __call__(self, stats, reg, state, total_weight):
        """Advance ``state`` (in place) and return the parameters it implies.

        Parameters
        ----------
        stats : Stats
            Summed statistics of the last E-step.
        reg : Regularisation
            Floors, prior and minimum weight, as for the closed-form M-step;
            ``reg_covar`` and floors act on the returned variances, and a
            ``fixed_var`` (annealing) replaces them.
        state : AdamState
            Variables and moments, updated in place.
        total_weight : float
            Total weight of the data the statistics come from.

        Returns
        -------
        params : Params
        """
        nk, s1, s2, ref = stats[:4]
        # Per-feature weights (missing entries), or nk in every feature.
        nkd = np.ascontiguousarray(np.broadcast_to(feature_weights(stats), s1.shape))
        b = np.broadcast_to(reg.prior_b, (ref.shape[1],)).astype(np.float64)
        _adam_steps(
            nk, nkd, s1, s2, ref, float(total_weight), state.theta, state.m, state.v, state.step,
            self.n_steps, self.learning_rate, self.clip, float(reg.prior_a1), b,
        )  # fmt: skip
        alpha, eta1, omega = _unpack(state.theta, *ref.shape)
        precision = np.exp(omega)
        weights = np.exp(alpha - alpha.max())
        variances = 1.0 / precision + reg.reg_covar
        if reg.fixed_var is not None:
            variances = np.broadcast_to(reg.fixed_var, variances.shape).copy()
        return Params(
            floor_weights(weights / weights.sum(), reg.min_weight),
            eta1 / precision,
            np.maximum(variances, reg.floor),
        )
