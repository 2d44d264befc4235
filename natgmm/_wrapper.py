"""StandardizedGMM: fit a diagonal mixture on standardised features, report raw units."""

import copy
from inspect import signature

import numpy as np
from sklearn.base import BaseEstimator, ClusterMixin, MetaEstimatorMixin, _fit_context, clone
from sklearn.utils import get_tags
from sklearn.utils._param_validation import HasMethods
from sklearn.utils.metaestimators import available_if
from sklearn.utils.validation import check_is_fitted

from ._data import check_sample_weight, mean_log_prob, row_blocks, validate_rows
from ._estimator import NaturalDiagonalGMM, criterion
from ._interrupt import commit, input_attributes
from ._per_component import PerComponentMixin
from ._settings import ParamNamesOnce, nested_default
from ._standardise import FeatureScaling, fitted_attributes, standardised_input
from ._version import stamped, unstamped

# Predictions standardise X a block of rows at a time, each copy at most this
# large (16 MiB): not a copy of the whole of X.
_BLOCK_BYTES = 2**24


class StandardizedGMM(
    PerComponentMixin, ParamNamesOnce, ClusterMixin, MetaEstimatorMixin, BaseEstimator
):
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
        ``weights_``, ``converged_``, ``n_iter_``, ``lower_bound_``,
        ``predict``, ``predict_proba``, ``score_samples``, ``sample``,
        ``bic`` and ``aic`` (and ``_n_parameters()`` for weighted criteria,
        as scikit-learn's mixtures have). None means
        ``NaturalDiagonalGMM()``. It is cloned in :meth:`fit`; with
        ``warm_start=True``, a refit continues from ``estimator_`` in the
        same standardised coordinates (an estimator of another class starts
        anew).

    Attributes
    ----------
    estimator_ : estimator object
        The fitted clone of ``estimator``, in standardised units; its own
        records of the fit (``history_``, ``critical_value_``,
        ``split_levels_``, ``split_merge_moves_``, ``empty_components_``)
        are there, their log-likelihoods those of the standardised data, as
        are those its ``verbose`` output prints (``lower_bound_`` and
        ``lower_bounds_`` here are in the units of ``X``).
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
    lower_bounds_ : ndarray of shape (n_bounds,)
        The inner fit's ``lower_bounds_``, in the units of ``X`` (if the
        estimator records them: NaturalDiagonalGMM does, the path of the
        parameters it kept, shorter than ``n_iter_`` when split-and-merge
        trials or refused extrapolation steps of "temperature" levels ran;
        scikit-learn's ``GaussianMixture`` from 1.7).
    n_features_in_ : int
        Number of features seen during fit.
    feature_names_in_ : ndarray of shape (`n_features_in_`,)
        Names of features seen during fit, when ``X`` has string column
        names.

    See Also
    --------
    NaturalDiagonalGMM : The default inner estimator; it also standardises
        internally, but takes its floors and priors in the units of ``X``.
    sklearn.preprocessing.StandardScaler : The standardisation used (here
        computed without overflow for data up to float64's largest values).

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
            HasMethods(
                ["fit", "predict", "predict_proba", "score_samples", "sample", "bic", "aic"]
            ),
            None,
        ],
    }

    def __init__(self, estimator=None):
        self.estimator = estimator

    def __getstate__(self):
        return stamped(super().__getstate__())

    def __setstate__(self, state):
        super().__setstate__(unstamped(state, type(self).__name__))

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
            means unit weights. The wrapper consumes the weights itself
            (they define its scaling) and always passes them on: with
            metadata routing enabled, the inner estimator's own
            ``set_fit_request`` is not consulted. Weights given to a wrapper
            whose estimator's ``fit`` takes none (``GaussianMixture``) raise
            a TypeError.

        Returns
        -------
        self : object
            The fitted wrapper.
        """
        estimator = self._estimator()
        resume = getattr(estimator, "warm_start", False) and self._continues(estimator)
        self._update(estimator, "fit", X, sample_weight, resume, ensure_min_samples=2)
        return self

    @available_if(lambda self: hasattr(self._estimator(), "partial_fit"))
    @_fit_context(prefer_skip_nested_validation=False)
    def partial_fit(self, X, y=None, sample_weight=None):
        """Standardise a batch as the first one was and update the inner estimator by it.

        The first call (on a wrapper not fitted before) fixes ``mean_`` and
        ``scale_`` from its batch, so make it a large one; later calls, and
        calls after :meth:`fit`, keep them, so that the inner estimator's
        ``partial_fit`` continues in the same standardised coordinates
        (floors and priors given to it in standardised units keep their
        meaning). A rejected or failed batch leaves the model as it was. As
        :meth:`NaturalDiagonalGMM.partial_fit` does, this removes the
        attributes that describe a whole fit (``converged_``, ``labels_``,
        ``lower_bounds_``); ``lower_bound_`` is the batch's mean
        log-likelihood before the update, in the units of X (the inner
        estimator's, mapped back).
        Available if the estimator has ``partial_fit``.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            One batch, one row per sample.
        y : Ignored
            Not used, present for API consistency by convention.
        sample_weight : array-like of shape (n_samples,), default=None
            Non-negative weight of each sample, used for the first batch's
            feature means and standard deviations and passed to the inner
            ``partial_fit``. None means unit weights.

        Returns
        -------
        self : object
            The updated wrapper.
        """
        estimator = self._estimator()
        resume = self._continues(estimator)
        self._update(estimator, "partial_fit", X, sample_weight, resume, ensure_min_samples=1)
        return self

    def _continues(self, estimator):
        """Whether ``estimator_`` can continue as ``estimator`` (another class starts anew)."""
        return hasattr(self, "estimator_") and type(self.estimator_) is type(estimator)

    def _update(self, estimator, method, X, sample_weight, resume, ensure_min_samples):
        """Standardise X, run the inner ``fit`` or ``partial_fit`` and commit the result.

        Everything is computed aside and committed at the end, so that a
        failed or interrupted call leaves the previous model as it was.
        """
        name = type(estimator).__name__
        takes_weights = "sample_weight" in signature(getattr(estimator, method)).parameters
        if sample_weight is not None and not takes_weights:
            raise TypeError(
                f"StandardizedGMM passes sample_weight to its estimator, but {name}.{method} "
                "does not take it; NaturalDiagonalGMM does."
            )
        validated = self if resume else copy.copy(self)
        try:
            X = validate_rows(
                validated, X, ensure_min_samples=ensure_min_samples, reset=not resume,
                ensure_all_finite=self._finite(),
            )  # fmt: skip
        except ValueError as error:
            if self._finite() is True and "NaN" in str(error):
                raise ValueError(
                    f"Input X contains NaN. StandardizedGMM passes missing values to its "
                    f"estimator, and {name} does not accept them; NaturalDiagonalGMM does "
                    "(it marginalises missing entries)."
                ) from error
            raise
        if sample_weight is not None:
            sample_weight = check_sample_weight(sample_weight, X)
        if resume:
            # Same coordinates as before, so that the estimator continues where it stopped.
            scaling = self._feature_scaling()
            inner = copy.deepcopy(self.estimator_)
            inner.set_params(**estimator.get_params(deep=False))
        else:
            scaling = FeatureScaling.fit(X, sample_weight)
            inner = clone(estimator)
        Z = scaling.transform(X)
        update = getattr(inner, method)
        # The map's log-determinant, X's bound minus the inner one (one pass
        # over Z's missing entries, if any): for the verbose line and the bounds.
        jacobian = _mean_log_jacobian(scaling.scale_, Z, sample_weight)
        if getattr(inner, "verbose", 0) and method == "fit":
            print(
                f"StandardizedGMM: the {name} below fits the standardised data; add "
                f"{jacobian:.5f} to its bounds for those of X (as lower_bound_ has)."
            )
        with standardised_input(scaling):
            if sample_weight is None:
                update(Z)
            else:
                update(Z, sample_weight=sample_weight)
        stream = method == "partial_fit"
        fitted = self._fitted_attributes(inner, scaling, Z, jacobian, stream)
        attributes, remove = ({}, ()) if resume else input_attributes(validated)
        # "_scaler": the StandardScaler of models pickled by natgmm 0.1.0;
        # lower_bounds_ of a previous estimator that had them (set again if
        # this one has them: commit removes first, then sets); a stream's
        # step describes no whole fit.
        remove = (*remove, "_scaler", "lower_bounds_", *(("converged_", "labels_") * stream))
        commit(self, {**fitted, **attributes}, remove)

    def set_params(self, **params):
        """Set the parameters; nested ones of a default ``estimator`` (None) create it.

        ``estimator__n_components=3`` with ``estimator=None`` sets it on a new
        :class:`NaturalDiagonalGMM`, the estimator that None stands for (so
        that a grid search can tune the default estimator).

        Parameters
        ----------
        **params : dict
            Parameters of the wrapper and, as ``estimator__<name>``, of its
            estimator.

        Returns
        -------
        self : object
            The wrapper.
        """
        params = nested_default(params, "estimator", self.estimator, NaturalDiagonalGMM)
        return super().set_params(**params)

    def _finite(self):
        """``ensure_all_finite`` of the input checks: "allow-nan" if the estimator takes NaN."""
        return "allow-nan" if get_tags(self).input_tags.allow_nan else True

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.allow_nan = get_tags(self._estimator()).input_tags.allow_nan
        return tags

    def _estimator(self):
        """Return ``estimator``, or a default :class:`NaturalDiagonalGMM` if it is None."""
        return NaturalDiagonalGMM() if self.estimator is None else self.estimator

    def _fitted_attributes(self, inner, scaling, Z, jacobian, stream=False):
        """Return the wrapper's attributes, ``inner`` fitted on ``Z`` (``scaling`` of X).

        ``jacobian`` is :func:`_mean_log_jacobian` of the fit's rows.

        ``stream``: ``inner`` was updated by ``partial_fit``; its attributes
        that describe a whole fit are not there to map.
        """
        if inner.covariances_.shape != inner.means_.shape:
            raise ValueError(
                "StandardizedGMM needs an estimator with diagonal covariances, of the shape of "
                f"means_ {inner.means_.shape}; got covariances_ of shape "
                f"{inner.covariances_.shape}."
            )
        mean, scale = scaling.mean_, scaling.scale_
        # Beyond float64 in the units of X: refused by fitted_attributes.
        with np.errstate(over="ignore", under="ignore", invalid="ignore"):
            means = inner.means_.astype(np.float64) * scale + mean
            covariances = inner.covariances_.astype(np.float64) * scale**2
        fitted = fitted_attributes(inner.weights_, means, covariances, inner.means_.dtype)
        fitted.update(
            estimator_=inner,
            _scaling=scaling,
            mean_=mean,
            scale_=scale,
            n_iter_=inner.n_iter_,
            lower_bound_=inner.lower_bound_ + jacobian,
        )
        if stream:
            return fitted
        bounds = getattr(inner, "lower_bounds_", None)
        if bounds is not None:
            fitted["lower_bounds_"] = np.asarray(bounds, dtype=np.float64) + jacobian
        labels = getattr(inner, "labels_", None)
        fitted["labels_"] = inner.predict(Z) if labels is None else labels
        fitted["converged_"] = inner.converged_
        return fitted

    def _feature_scaling(self, state=None):
        """Return the fitted :class:`~natgmm._standardise.FeatureScaling`.

        From ``state``, a ``__dict__`` of the wrapper (None: its own, read now).
        """
        state = vars(self) if state is None else state
        scaling = state.get("_scaling")
        if scaling is None:  # a model pickled by natgmm 0.1.0
            scaling = FeatureScaling.from_mean_and_scale(state["mean_"], state["scale_"])
        return scaling

    def _fitted_model(self):
        """Return ``estimator_`` and the feature scaling of one fit, read together.

        A fit on another thread replaces the wrapper's ``__dict__`` in one
        assignment (:func:`~natgmm._interrupt.commit`); reading both from one
        ``__dict__`` keeps a prediction on one model, the old or the new
        (read one by one, a refit landing between the reads scored X
        standardised by the old fit with the new inner model).
        """
        check_is_fitted(self)
        state = vars(self)
        return state["estimator_"], self._feature_scaling(state)

    def _standardised_blocks(self, X, fitted=None):
        """Return the rows of ``X`` (validated) and a generator of ``(rows, Z)``: it standardised.

        A block's copy, and a block of per-component results, take at most
        about ``_BLOCK_BYTES`` (or one row), so that predictions on large
        ``X`` hold no standardised copy of it; ``fitted`` is
        :meth:`_fitted_model` (None: read now). The
        blocks are in float64 if any entry of ``X`` overflows its dtype once
        standardised (as one standardisation of the whole would be).
        """
        inner, scaling = self._fitted_model() if fitted is None else fitted
        X = validate_rows(self, X, reset=False, ensure_all_finite=self._finite())
        wide = _overflows(scaling, X)
        # A row's float64 values: its features, or its results per component.
        row_bytes = 8 * max(X.shape[1], inner.means_.shape[0])
        blocks = row_blocks(X, _BLOCK_BYTES, row_bytes)
        return X.shape[0], ((rows, _standardised(scaling, X[rows], wide)) for rows in blocks)

    def _blockwise(self, X, predict):
        """``predict(inner, scale, Z)`` of ``X``'s standardised rows ``Z``, block by block, joined.

        The results go into one array as they come: the output and a block
        are held, not every block's result beside the output. ``inner``
        (``estimator_``) and ``scale`` (``scale_``) are those of the scaling
        that standardised ``Z``, read once (:meth:`_fitted_model`), so that
        every block is predicted by one model while other threads refit.
        """
        fitted = self._fitted_model()
        inner, scale = fitted[0], fitted[1].scale_
        n_samples, blocks = self._standardised_blocks(X, fitted)
        out = None
        for rows, Z in blocks:
            result = predict(inner, scale, Z)
            if out is None:
                if rows.stop >= n_samples:
                    return result  # one block
                out = np.empty((n_samples, *result.shape[1:]), dtype=result.dtype)
            out[rows] = result
        return out

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
        return self._blockwise(X, lambda inner, scale, Z: inner.predict(Z))

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
        return self._blockwise(X, lambda inner, scale, Z: inner.predict_proba(Z))

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
        return self._blockwise(
            X, lambda inner, scale, Z: inner.score_samples(Z) + _log_jacobian(scale, Z)
        )

    def _predictive_weights(self):
        """Return the inner model's weights: predictions read ``estimator_``, not ``weights_``."""
        return self.estimator_.weights_

    def _estimate_log_prob(self, X):
        """Return each sample's log-density under each component, in the units of X."""

        def log_prob(inner, scale, Z):
            jacobian = _log_jacobian(scale, Z)
            return inner._estimate_log_prob(Z) + np.reshape(jacobian, (-1, 1))

        return self._blockwise(X, log_prob)

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
        inner, scaling = self._fitted_model()  # of one fit, while other threads refit
        Z, y = inner.sample(n_samples)
        X = np.asarray(Z, dtype=np.result_type(Z, scaling.scale_))  # copied only to widen
        X *= scaling.scale_  # in place: the sample is held once
        X += scaling.mean_
        return X, y

    def bic(self, X, sample_weight=None):
        """Bayesian information criterion for the current model on X.

        The criterion of the raw data: ``-2`` times their log-likelihood
        (the inner model's of the standardised data plus each row's
        log-Jacobian, a block of rows at a time) plus the inner model's
        ``_n_parameters()`` times ``log(n_samples)``; an estimator without
        ``_n_parameters`` gives its own criterion of the whole standardised
        data, corrected by the log-Jacobian.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Samples in the units of the training data.
        sample_weight : array-like of shape (n_samples,), default=None
            Weights of the samples, counted as repetitions of their rows: the
            log-likelihood is the weighted sum and the number of samples the
            total weight. None means unit weights.

        Returns
        -------
        bic : float
            The lower the better.
        """
        return self._criterion("bic", X, sample_weight)

    def aic(self, X, sample_weight=None):
        """Akaike information criterion for the current model on X.

        The criterion of the raw data: ``-2`` times their log-likelihood
        (the inner model's of the standardised data plus each row's
        log-Jacobian, a block of rows at a time) plus the inner model's
        ``_n_parameters()`` times 2; an estimator without
        ``_n_parameters`` gives its own criterion of the whole standardised
        data, corrected by the log-Jacobian.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Samples in the units of the training data.
        sample_weight : array-like of shape (n_samples,), default=None
            Weights of the samples, counted as repetitions of their rows: the
            log-likelihood is the weighted sum and the number of samples the
            total weight. None means unit weights.

        Returns
        -------
        aic : float
            The lower the better.
        """
        return self._criterion("aic", X, sample_weight)

    def _n_parameters(self):
        """Return the inner model's number of free parameters (the map adds none to fit)."""
        return self.estimator_._n_parameters()

    def _criterion(self, name, X, sample_weight):
        """Return ``bic`` or ``aic`` of X in raw units.

        Both are ``-2 log L`` plus a penalty; the raw log-likelihood is the
        standardised one plus the rows' log-Jacobians. From :meth:`score` (by
        blocks of rows) and the inner model's number of parameters, as
        scikit-learn's mixtures count them (the inner criterion may take no
        weights: scikit-learn's does not); without ``_n_parameters``, the
        inner criterion of the whole standardised X.
        """
        check_is_fitted(self)
        if sample_weight is not None or hasattr(self.estimator_, "_n_parameters"):
            return criterion(self, name, X, sample_weight)  # by blocks of rows
        Z = np.concatenate([Z for _, Z in self._standardised_blocks(X)[1]])
        jacobian = _log_jacobian(self.scale_, Z)
        total = np.sum(jacobian) if np.ndim(jacobian) else len(Z) * jacobian
        return getattr(self.estimator_, name)(Z) - 2 * total


def _overflows(scaling, X):
    """Whether an entry of ``X`` (validated) is infinite once standardised by ``scaling``.

    In the dtype of ``X``; the map is monotone in each feature, so its
    extremes tell (an infinity of ``X`` itself included).
    """
    extremes = np.stack([np.fmax.reduce(X, axis=0), np.fmin.reduce(X, axis=0)])
    return bool(np.isinf(scaling.transform(extremes)).any())


def _standardised(scaling, X, wide):
    """Rows ``X`` (validated) standardised by ``scaling``, in float64 if ``wide``.

    A finite entry beyond the dtype's range once standardised would be
    refused by the estimator: with ``wide`` (see :func:`_overflows`) the
    rows are standardised in float64, and beyond float64's range (some
    1e308 standard deviations out, where the log-density is -inf anyway)
    held at its largest value, so that the estimator predicts them. An
    infinity in X itself (let through by scikit-learn's assume_finite=True)
    stays one: its row has no density, as for NaturalDiagonalGMM.
    """
    if not wide:
        return scaling.transform(X)
    Z = scaling.transform(X.astype(np.float64))
    limit = np.finfo(np.float64).max
    np.clip(Z, -limit, limit, out=Z, where=~np.isinf(X))
    return Z


def _mean_log_jacobian(scale, Z, sample_weight):
    """:func:`_log_jacobian`, its (weighted) mean over the rows of ``Z`` with missing entries."""
    jacobian = _log_jacobian(scale, Z)
    return mean_log_prob(jacobian, sample_weight) if np.ndim(jacobian) else jacobian


def _log_jacobian(scale, Z=None):
    """Log-determinant of the map from raw to standardised units (``scale``: the raw sds).

    A float; per row of ``Z``, over its observed features, if ``Z`` has
    missing entries.
    """
    log_scale = np.log(scale)
    # By blocks of rows: the product of a whole mask would convert it to a
    # float copy of Z (381 MiB beside a fit's 381 MiB Z at 1e6 x 50).
    blocks = [] if Z is None else row_blocks(Z, _BLOCK_BYTES)
    if not any(np.isnan(Z[rows]).any() for rows in blocks):
        return -float(np.sum(log_scale))
    jacobian = np.empty(Z.shape[0])
    for rows in blocks:
        jacobian[rows] = -((~np.isnan(Z[rows])) @ log_scale)
    return jacobian
