"""StandardizedGMM: fit a diagonal mixture on standardised features, report raw units."""

import numpy as np
from sklearn.base import BaseEstimator, ClusterMixin, MetaEstimatorMixin, _fit_context, clone
from sklearn.preprocessing import StandardScaler
from sklearn.utils import get_tags
from sklearn.utils._param_validation import HasMethods
from sklearn.utils.validation import _check_sample_weight, check_is_fitted, validate_data

from ._data import mean_log_prob
from ._estimator import NaturalDiagonalGMM
from ._standardise import fitted_attributes


class StandardizedGMM(ClusterMixin, MetaEstimatorMixin, BaseEstimator):
    """Diagonal Gaussian mixture fitted on standardised features.

    Each feature is shifted by its (weighted) mean and divided by its
    (weighted) standard deviation, a clone of ``estimator`` is fitted to the
    standardised data, and every fitted parameter is mapped back to the
    units of ``X``: ``mean = mean_std * scale_ + mean_`` and
    ``var = var_std * scale_ ** 2``. Floors, priors and ``reg_covar`` given
    to ``estimator`` in absolute units therefore mean the same thing in
    every feature: ``min_variance=0.01`` is 1% of each feature's variance.
    Densities are those of ``X``: :meth:`score_samples` adds the
    log-Jacobian ``-sum(log(scale_))`` of the map. Missing entries (NaN)
    are passed on to an estimator that takes them (its ``allow_nan`` tag,
    as :class:`NaturalDiagonalGMM`); the means and standard deviations are
    those of the observed entries, and a row's log-Jacobian sums over its
    observed features only.

    Parameters
    ----------
    estimator : estimator object, default=None
        The mixture to fit on standardised data, for example
        :class:`NaturalDiagonalGMM` or
        ``sklearn.mixture.GaussianMixture(covariance_type="diag")``: any
        estimator with diagonal ``covariances_`` of the shape of ``means_``,
        ``weights_``, ``predict``, ``predict_proba``, ``score_samples``,
        ``sample``, ``bic`` and ``aic``. None means
        ``NaturalDiagonalGMM()``. It is cloned in :meth:`fit`; with
        ``warm_start=True``, a refit continues from ``estimator_`` in the
        same standardised coordinates.

    Attributes
    ----------
    estimator_ : estimator object
        The fitted clone of ``estimator``, in standardised units.
    mean_ : ndarray of shape (n_features,)
        The (weighted) mean of each feature.
    scale_ : ndarray of shape (n_features,)
        The (weighted) standard deviation of each feature; 1 for a feature
        of (numerically) zero variance, as in
        :class:`~sklearn.preprocessing.StandardScaler`.
    weights_ : ndarray of shape (n_components,)
        The weight of each component.
    means_ : ndarray of shape (n_components, n_features)
        The mean of each component, in the units of ``X``.
    covariances_ : ndarray of shape (n_components, n_features)
        The variances of each component, in the units of ``X``.
    precisions_ : ndarray of shape (n_components, n_features)
        The precisions (inverse variances) of each component.
    precisions_cholesky_ : ndarray of shape (n_components, n_features)
        Square roots of the precisions.
    eta1_ : ndarray of shape (n_components, n_features)
        First natural parameter, ``means_ / covariances_``.
    eta2_ : ndarray of shape (n_components, n_features)
        Second natural parameter, ``-1 / (2 covariances_)``.
    labels_ : ndarray of shape (n_samples,)
        Component of each training sample.
    converged_ : bool
        Whether the inner fit converged.
    n_iter_ : int
        Number of iterations of the inner fit.
    lower_bound_ : float
        The inner fit's mean log-likelihood of the training data, in the
        units of ``X``.
    n_features_in_ : int
        Number of features seen during fit.
    feature_names_in_ : ndarray of shape (`n_features_in_`,)
        Names of features seen during fit, when ``X`` has string column
        names.

    See Also
    --------
    NaturalDiagonalGMM : The default inner estimator; it also standardises
        internally, but takes its floors and priors in the units of ``X``.
    sklearn.preprocessing.StandardScaler : The standardisation used.

    Examples
    --------
    >>> import numpy as np
    >>> from natgmm import NaturalDiagonalGMM, StandardizedGMM
    >>> X = np.array([[1, 200], [1, 400], [1, 0], [10, 200], [10, 400], [10, 0]])
    >>> gm = StandardizedGMM(NaturalDiagonalGMM(2, random_state=0)).fit(X)
    >>> gm.means_
    array([[ 10., 200.],
           [  1., 200.]])
    >>> gm.predict([[0, 0], [12, 300]])
    array([1, 0])
    """

    _parameter_constraints: dict = {
        "estimator": [
            HasMethods(["fit", "predict", "predict_proba", "score_samples", "sample"]),
            None,
        ],
    }

    def __init__(self, estimator=None):
        self.estimator = estimator

    @_fit_context(prefer_skip_nested_validation=False)
    def fit(self, X, y=None, sample_weight=None):
        """Standardise X, fit the inner estimator and map its parameters back.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Training data, one row per sample.
        y : Ignored
            Not used, present for API consistency by convention.
        sample_weight : array-like of shape (n_samples,), default=None
            Non-negative weight of each sample, used for the feature means
            and standard deviations and passed to the inner ``fit``. None
            means unit weights.

        Returns
        -------
        self : object
            The fitted wrapper.
        """
        estimator = NaturalDiagonalGMM() if self.estimator is None else self.estimator
        resume = getattr(estimator, "warm_start", False) and hasattr(self, "estimator_")
        X = validate_data(
            self, X, dtype=[np.float64, np.float32], ensure_min_samples=2, reset=not resume,
            ensure_all_finite=self._finite(),
        )  # fmt: skip
        if sample_weight is not None:
            sample_weight = _check_sample_weight(
                sample_weight, X, dtype=np.float64, ensure_non_negative=True
            )
        if resume:
            # Same coordinates as before, so that EM continues where it stopped.
            self.estimator_.set_params(**estimator.get_params(deep=False))
        else:
            self._scaler = StandardScaler().fit(X, sample_weight=sample_weight)
            self.mean_, self.scale_ = self._scaler.mean_, self._scaler.scale_
            self.estimator_ = clone(estimator)
        Z = self._scaler.transform(X)
        if sample_weight is None:
            self.estimator_.fit(Z)
        else:
            self.estimator_.fit(Z, sample_weight=sample_weight)
        self._set_fitted(Z, sample_weight)
        return self

    def _finite(self):
        """``ensure_all_finite`` of the input checks: "allow-nan" if the estimator takes NaN."""
        estimator = NaturalDiagonalGMM() if self.estimator is None else self.estimator
        return "allow-nan" if get_tags(estimator).input_tags.allow_nan else True

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        estimator = NaturalDiagonalGMM() if self.estimator is None else self.estimator
        tags.input_tags.allow_nan = get_tags(estimator).input_tags.allow_nan
        return tags

    def _set_fitted(self, Z, sample_weight=None):
        inner = self.estimator_
        if inner.covariances_.shape != inner.means_.shape:
            raise ValueError(
                "StandardizedGMM needs an estimator with diagonal covariances, of the shape of "
                f"means_ {inner.means_.shape}; got covariances_ of shape "
                f"{inner.covariances_.shape}."
            )
        means = inner.means_.astype(np.float64) * self.scale_ + self.mean_
        covariances = inner.covariances_.astype(np.float64) * self.scale_**2
        fitted = fitted_attributes(inner.weights_, means, covariances, inner.means_.dtype)
        for name, value in fitted.items():
            setattr(self, name, value)
        self.labels_ = getattr(inner, "labels_", None)
        if self.labels_ is None:
            self.labels_ = inner.predict(Z)
        self.converged_ = inner.converged_
        self.n_iter_ = inner.n_iter_
        jacobian = self._log_jacobian(Z)
        if np.ndim(jacobian):  # missing entries: the weighted mean over the rows
            jacobian = mean_log_prob(jacobian, sample_weight)
        self.lower_bound_ = inner.lower_bound_ + jacobian

    def _log_jacobian(self, Z=None):
        """Log-determinant of the map from raw to standardised units.

        A float; per row of ``Z``, over its observed features, if ``Z`` has
        missing entries.
        """
        log_scale = np.log(self.scale_)
        if Z is not None and np.isnan(Z).any():
            return -((~np.isnan(Z)) @ log_scale)
        return -float(np.sum(log_scale))

    def _standardise(self, X):
        check_is_fitted(self)
        X = validate_data(
            self, X, dtype=[np.float64, np.float32], reset=False, ensure_all_finite=self._finite()
        )
        return self._scaler.transform(X)

    def predict(self, X):
        """Predict the most probable component of each sample.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Samples in the units of the training data.

        Returns
        -------
        labels : ndarray of shape (n_samples,)
            Component labels.
        """
        Z = self._standardise(X)
        return self.estimator_.predict(Z)

    def predict_proba(self, X):
        """Posterior probability of each component for each sample.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Samples in the units of the training data.

        Returns
        -------
        resp : ndarray of shape (n_samples, n_components)
            Responsibilities; each row sums to one.
        """
        Z = self._standardise(X)
        return self.estimator_.predict_proba(Z)

    def score_samples(self, X):
        """Compute the log-density of each sample in the units of X.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Samples in the units of the training data.

        Returns
        -------
        log_prob : ndarray of shape (n_samples,)
            Log-density of each sample: the inner model's log-density of the
            standardised sample plus the log-Jacobian of the map.
        """
        Z = self._standardise(X)
        return self.estimator_.score_samples(Z) + self._log_jacobian(Z)

    def score(self, X, y=None, sample_weight=None):
        """Compute the (weighted) mean log-likelihood of the samples.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Samples in the units of the training data.
        y : Ignored
            Not used, present for API consistency by convention.
        sample_weight : array-like of shape (n_samples,), default=None
            Weights of the samples in the mean. None means unit weights.

        Returns
        -------
        log_likelihood : float
            Mean log-likelihood of ``X`` under the model, in the units of
            ``X``.
        """
        return mean_log_prob(self.score_samples(X), sample_weight)

    def sample(self, n_samples=1):
        """Generate random samples from the fitted mixture, in the units of X.

        Parameters
        ----------
        n_samples : int, default=1
            Number of samples to generate.

        Returns
        -------
        X : ndarray of shape (n_samples, n_features)
            Generated samples, grouped by component.
        y : ndarray of shape (n_samples,)
            Component of each sample.
        """
        check_is_fitted(self)
        Z, y = self.estimator_.sample(n_samples)
        return Z * self.scale_ + self.mean_, y

    def bic(self, X):
        """Bayesian information criterion for the current model on X.

        The inner model's criterion on the standardised data, corrected by
        the log-Jacobian, so that it is the criterion of the raw data.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Samples in the units of the training data.

        Returns
        -------
        bic : float
            The lower the better.
        """
        return self._criterion("bic", X)

    def aic(self, X):
        """Akaike information criterion for the current model on X.

        The inner model's criterion on the standardised data, corrected by
        the log-Jacobian, so that it is the criterion of the raw data.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Samples in the units of the training data.

        Returns
        -------
        aic : float
            The lower the better.
        """
        return self._criterion("aic", X)

    def _criterion(self, name, X):
        """Return the inner ``bic`` or ``aic`` of standardised X, in raw units.

        Both are ``-2 log L`` plus a penalty; the raw log-likelihood is the
        standardised one plus the rows' log-Jacobians.
        """
        Z = self._standardise(X)
        jacobian = self._log_jacobian(Z)
        total = np.sum(jacobian) if np.ndim(jacobian) else len(Z) * jacobian
        return getattr(self.estimator_, name)(Z) - 2 * total
