"""scikit-learn's private per-component methods, shared by both estimators.

Code written for ``GaussianMixture`` calls ``_estimate_weighted_log_prob``
and its relatives for per-component log-densities; each estimator gives
``_estimate_log_prob`` (in the units of ``X``, float64 as ``score_samples``)
and this mixin the rest, from the weights its predictions read
(``_predictive_weights``).
"""

import numpy as np
from scipy.special import logsumexp
from sklearn.utils.validation import check_is_fitted


class PerComponentMixin:
    """``_estimate_log_weights``, ``_estimate_weighted_log_prob``, ``_estimate_log_prob_resp``."""

    def _estimate_log_weights(self):
        """Return the log of each component's weight."""
        check_is_fitted(self)
        with np.errstate(divide="ignore"):
            return np.log(np.asarray(self._predictive_weights(), dtype=np.float64))

    def _predictive_weights(self):
        """Return the weights predictions read: ``weights_``."""
        return self.weights_

    def _estimate_weighted_log_prob(self, X):
        """Return ``log(weight_k) + log p_k(x)`` of each sample and component."""
        return self._estimate_log_prob(X) + self._estimate_log_weights()

    def _estimate_log_prob_resp(self, X):
        """Return each sample's log-density and log-responsibilities, as scikit-learn's."""
        weighted = self._estimate_weighted_log_prob(X)
        log_prob_norm = logsumexp(weighted, axis=1)
        with np.errstate(under="ignore", invalid="ignore"):
            return log_prob_norm, weighted - log_prob_norm[:, np.newaxis]
