"""NaturalDiagonalGMM: the scikit-learn estimator, a thin shell over the fit's steps.

The estimator validates its parameters and the data, then runs the steps that
live in their own modules: standardisation (:mod:`natgmm._standardise`),
initialisation (:mod:`natgmm._init`), the annealing levels and EM loops
(:mod:`natgmm._solver`), and predictions through the data source
(:mod:`natgmm._data`, :mod:`natgmm._dask`). Fitted attributes are assigned
once the fit has succeeded.
"""

import copy
import math
import warnings
from contextlib import contextmanager
from numbers import Integral, Real

import numpy as np
from sklearn.base import BaseEstimator, ClusterMixin, _fit_context
from sklearn.exceptions import ConvergenceWarning
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.validation import _num_samples, check_is_fitted, validate_data

from ._anneal import annealing_levels, split_levels
from ._blas import blas_hold, single_threaded_blas
from ._data import (
    ArrayData,
    Operands,
    check_sample_weight,
    component_log_prob,
    information_criterion,
    is_dask,
    mean_log_prob,
    total_weight,
    validate_rows,
)
from ._em import ILL_DEFINED_COVARIANCE, IllDefinedCovariance, Params
from ._init import check_init_arrays, initial_params
from ._interrupt import commit, input_attributes
from ._kernels import log_prob_work
from ._per_component import PerComponentMixin
from ._progress import Progress, caller_level
from ._schedules import Schedule
from ._settings import DiagonalOnly, ParamNamesOnce, Settings, default_schedule, nested_default
from ._solver import (
    ModelState,
    Online,
    fit_run,
    start_run,
    start_stream,
    stream_position,
    stream_run,
    stream_step,
    warn_if_empty,
    warn_if_identical,
    warn_slow_splits,
)
from ._standardise import (
    PREDICTIVE_ATTRIBUTES,
    Standardiser,
    check_min_variance,
    mixture_of,
    model_attributes,
    predictive_model,
    regularisation,
    set_up,
)
from ._threading import kernel_threads
from ._version import stamped, unstamped


def __getattr__(name):
    # Classes that pickles of natgmm 0.1.0 models name in this module.
    moved = {"_Standardiser": Standardiser, "_Online": Online}
    if name in moved:
        return moved[name]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _check_fit_data(data, settings):
    # scikit-learn's check; a row of zero weight is as good as absent.
    positive = data.positive_rows()
    if positive < settings.n_components:
        which = "" if positive == data.shape[0] else " (rows of positive sample_weight)"
        raise ValueError(
            "Expected n_samples >= n_components "
            f"but got n_components = {settings.n_components}, "
            f"n_samples = {positive}{which}"
        )
    if settings.solver == "minibatch" and not isinstance(data, ArrayData):
        raise ValueError(
            "solver='minibatch' draws random rows and needs X in memory; for a "
            "Dask array use solver='em', or partial_fit on its blocks."
        )


def _fit_levels(settings, model, resume):
    """Return the annealing levels of a fit: none without annealing or on a warm start."""
    if model.critical_value is None or resume:
        return np.empty(0)
    levels = annealing_levels(settings, model.critical_value)
    if settings.solver == "minibatch":
        warn_slow_splits(
            "solver='minibatch'", "Anneal with solver='em', then continue with partial_fit."
        )
    return levels


@contextmanager
def _threads_and_blas(n_jobs):
    """Run on ``n_jobs`` threads, with BLAS at one thread, for a whole call.

    Yields whether kernel calls should be shared out between threads. Each kernel call
    holds BLAS at one thread anyway; held once around the call, it is not
    put back between a fit's hundreds of kernel calls, which made them
    slower (doc/performance.rst).
    """
    with kernel_threads(n_jobs) as parallel, single_threaded_blas():
        yield parallel


# numpy's multinomial refuses weights whose first n - 1 (Kahan) sum exceeds
# 1 + 1e-12; from a hair below it sample() renormalises them.
_MULTINOMIAL_SUM = 1.0 + 1e-12 - 1e-15
# Fitted attributes of a whole fit, which a partial_fit step makes stale.
_FIT_ONLY = (
    "converged_", "lower_bounds_", "history_", "labels_", "split_levels_", "split_merge_moves_",
)  # fmt: skip


def _draw(weights, means, covariances, n_samples, rng):
    """``n_samples`` rows drawn from the mixture, grouped by component, and their components.

    As scikit-learn's ``sample``, to the last bit: float32 attributes are
    promoted by the float64 draws, after the square root. The rows are
    filled in place (stacked, they would be held twice).
    """
    p = weights.astype(np.float64)
    if math.fsum(p[:-1]) > _MULTINOMIAL_SUM:
        # float32 weights whose rounding sums above one, which multinomial refuses
        # (scikit-learn's sample fails there); the draws of all others are unchanged.
        p = p / p.sum()
    counts = rng.multinomial(n_samples, p)
    X = np.empty((int(counts.sum()), means.shape[1]))  # n_samples may be a float, as for sklearn
    ends = np.cumsum(counts)
    for mean, cov, end, count in zip(means, covariances, ends, counts, strict=True):
        rows = rng.standard_normal(size=(count, means.shape[1]))
        rows *= np.sqrt(cov)
        rows += mean
        X[end - count : end] = rows
        del rows  # before the next component's draws
    return X, np.repeat(np.arange(len(counts), dtype=np.int64), counts)


# Parameters added since natgmm 0.1.0, at the values under which a pickle from
# before them fits as it did: before anneal_tol (2026-12-01) every level ran
# anneal_max_iter iterations. Before mixed_precision (2026-12-07) the levels
# and the moves' trials were already in float32, EM's steps in X's precision;
# such a pickle takes the default.
_ADDED_PARAMETERS = {
    "split_merge": 0, "anneal_subsample": None, "anneal_tol": 0.0, "mixed_precision": True,
}  # fmt: skip


def _upgraded_state(state):
    """Return a pickled estimator's ``state`` (stamp removed) in this version's layout."""
    if "_std" in state:  # a natgmm 0.1.0 pickle: its private state as one ModelState
        state = dict(state)
        state["_state"] = ModelState(
            state.pop("_std"),
            state.pop("_params"),
            state.pop("_online", None),
            state.pop("_adam", None),
            state.pop("_partial_rng"),
            state.pop("_levels", np.empty(0)),
        )
    state = {**_ADDED_PARAMETERS, **state}
    if "_state" in state:
        state["_operands"] = Operands(state["_state"].params)
    return state


def _not_converged(settings, run, levels):
    """Return what a fit that did not converge adds to its warning."""
    bounds = run.history["lower_bound"]
    # The final EM's iterations (after levels, those without a level).
    final = len(bounds)
    if levels.size:
        final = len(bounds) - np.flatnonzero(~np.isnan(run.history["level"]))[-1] - 1
    note = ""
    gain = bounds[-1] - bounds[-2] if final > 1 else np.nan
    if np.isfinite(gain):
        note = f" Its last iteration gained {gain:.3g} nats per sample (tol={settings.tol:g})."
    if levels.size:  # the final EM ran out, not the start
        note += (
            f" With annealing, init_params is not used: the final EM ran out of its "
            f"max_iter={settings.max_iter} iterations after {levels.size} levels."
        )
    return note


class NaturalDiagonalGMM(PerComponentMixin, ParamNamesOnce, ClusterMixin, BaseEstimator):
    """Gaussian mixture with diagonal covariances, fitted in natural parameters.

    A drop-in replacement for
    ``sklearn.mixture.GaussianMixture(covariance_type="diag")``: the same
    parameters with the same defaults and meaning (but for the
    "k-means++" and "random_from_data" starts, below), the same fitted attributes,
    plus variance floors, a minimum component weight, a conjugate prior on the
    precisions, ``sample_weight`` and multi-threaded Numba kernels that never
    allocate an ``n_samples x n_components`` array while fitting.

    Each component ``k`` is stored through its natural parameters
    ``eta1 = mean / var`` and ``eta2 = -1 / (2 var)`` per feature. Internally
    every feature is standardised by its (weighted) mean and standard
    deviation and all parameters are mapped back, so features in very
    different units are handled alike; EM is exactly equivariant under this
    map, so results equal those of EM on the raw data.

    Parameters
    ----------
    n_components : int, default=1
        The number of mixture components.
    covariance_type : {"diag"}, default="diag"
        Accepted so that code written for ``GaussianMixture`` runs unchanged;
        only diagonal covariances are supported.
    tol : float, default=1e-3
        Convergence threshold. EM iterations stop when the mean
        log-likelihood changes by less than this threshold (in absolute
        value, as in scikit-learn).
    reg_covar : float, default=1e-6
        Non-negative regularisation added to every variance (user units).
        Above a tenth of a (non-constant) feature's variance it warns:
        clusters narrower than ``sqrt(reg_covar)`` there merge;
        :class:`StandardizedGMM` applies it in standardised units.
    max_iter : int, default=100
        The number of EM iterations to perform.
    n_init : int, default=1
        The number of initialisations; the best result is kept.
    init_params : {"kmeans", "k-means++", "random", "random_from_data", \
"bisect"}, default="kmeans"
        How weights, means and variances are initialised:

        - "kmeans": k-means clustering (as ``GaussianMixture``); each component
          takes the weight, mean and within-cluster variance of its cluster.
        - "k-means++": k-means++ seeds; every sample goes to its nearest seed
          and each component takes its cell's weight, mean and within-cell
          variance (``GaussianMixture`` starts each component at its seed
          alone, with variance ``reg_covar``: the same seeds, another start).
        - "random_from_data": seeds drawn at random from the data (with
          probability proportional to ``sample_weight``), then as
          "k-means++".
        - "random": random soft responsibilities (as ``GaussianMixture``).
        - "bisect": deterministic, no random numbers: starting from one cell,
          repeatedly split the cell of largest weighted scatter through its
          mean, across its top principal axis (principal direction divisive
          partitioning). Invariant to row order and to replacing repeated
          rows by integer sample weights.

        k-means runs on the data shifted and scaled by one common factor,
        which leaves its clustering unchanged and avoids overflow. Variances
        are set from the cells, never from the total data variance (but for
        a feature that none of a cell's rows observes, with missing
        entries: the data's mean and variance there), and floors and priors
        apply to the initial parameters too (floors also to
        ``precisions_init``). Rows with nothing observed take no part in
        the start.
    weights_init : array-like of shape (n_components,), default=None
        User-provided initial weights. None: from ``init_params`` (with
        ``annealing``, from the pooled solution).
    means_init : array-like of shape (n_components, n_features), default=None
        User-provided initial means. None as for ``weights_init``.
    precisions_init : array-like of shape (n_components, n_features), \
default=None
        User-provided initial precisions (inverse variances). None as for
        ``weights_init``.
    random_state : int, RandomState instance or None, default=None
        Controls the randomness of the initialisation, of the annealing
        offsets and row samples (``anneal_subsample``, split-and-merge
        trials), of the minibatch order, and of :meth:`sample` (whose draws
        are scikit-learn's). Pass an int for reproducible output: each
        ``fit`` then draws the same numbers, so warm refits of
        ``solver="minibatch"`` go over the rows in the same order each time
        (a RandomState instance continues its draws from fit to fit).
    warm_start : bool, default=False
        If True, each ``fit`` starts from the previous solution (of ``fit``
        or :meth:`partial_fit`) and ``n_init`` is ignored; ``n_components``
        must then be the fitted model's (a ValueError otherwise, where
        scikit-learn continues the old components silently).
    verbose : int, default=0
        Verbosity, like scikit-learn's: 1 prints each initialisation, every
        ``verbose_interval``-th iteration's lower bound, the convergence and
        the initialisation kept (and the annealing levels and split-and-merge
        moves), 2 also the times and the log-likelihood changes. The first
        verbose fit of a process says that the kernels load or compile (up
        to about a minute, once per machine, dtype and mode, counted in
        the first iterations' times). ``partial_fit`` prints its first step and
        every ``verbose_interval``-th (the batch's log-likelihood and the
        step size). With ``solver="minibatch"`` an iteration is a pass of
        online steps over the data.
    verbose_interval : int, default=10
        Number of iterations (``partial_fit`` steps) between two messages.
    min_variance : float or array-like of shape (n_features,), default=0.0
        Absolute floor on every variance, in the units of ``X``
        (research name ``lat_min_var`` when ``X`` is standardised).
    min_variance_relative : float, default=0.0
        Floor on each variance as a fraction of that feature's (weighted)
        data variance; the floor applied is the larger of the two. A value of
        0.01 is ``lat_min_var=0.01`` in standardised units. From 1 up (which
        warns) every component is at least as wide as the data.
    min_weight : float, default=0.0
        Minimum weight of every component (research name ``min_prob``, usually
        1e-5). Weights below it are raised to it and the others rescaled.
        ``n_components * min_weight`` must be below 1.
    lower_precision_reg : float, default=0.0
        ``a - 1`` of a Gamma(a, b) prior on each precision (research name
        ``lwr_prs_reg``): the penalty ``-(a - 1) log(precision)`` keeps the
        precision away from 0, i.e. bounds the variance from above, acting
        like ``2 (a - 1)`` pseudo-samples in the variance's denominator.
    upper_precision_reg : float, default=0.0
        ``b`` of the Gamma prior, in sample weight times the variance units
        of ``X`` (research name
        ``upr_prs_reg``): the penalty ``b * precision`` keeps the precision
        finite, i.e. bounds the variance from below. The MAP variance is
        ``(S + 2 b) / (N_k + 2 (a - 1))``, ``S`` being the weighted scatter
        and ``N_k`` the weight of the component. Both ``a - 1`` and ``b``
        count in sample weight (``b`` as a weighted scatter), so weights
        multiplied by ``c`` weaken the prior ``c``-fold. Alone (with
        ``lower_precision_reg=0``), it lets a component of little weight
        grow without bound: its variance is at least ``2 b / N_k``, which
        takes responsibility away from it and so lowers ``N_k`` further (8
        rows, two components, ``b = 1``: a weight of 7e-13 and a variance of
        3.6e11 when the fit converged). Pair it with ``lower_precision_reg``
        or ``min_weight``, which bound the variance from above.
    n_jobs : int, default=None
        Number of threads the Numba kernels share each pass out to (the
        calling thread and natgmm's pool). None or -1 uses every thread
        available (``NUMBA_NUM_THREADS``, by default the CPUs the process
        may run on), a negative value all but ``-n_jobs - 1``; a positive
        value uses at most ``NUMBA_NUM_THREADS`` threads. The setting
        lasts for the call only. Results do not depend on it. A pass with
        little work (below three million multiply-adds, rows times features
        times components) runs on one thread, which is faster there. Inside
        the workers of joblib's default
        (loky) backend, e.g. ``GridSearchCV(n_jobs=m)``, joblib sets
        ``NUMBA_NUM_THREADS`` to ``cores // m`` (or to the parent's
        ``NUMBA_NUM_THREADS``, or to ``inner_max_num_threads`` of
        ``joblib.parallel_config``), so the workers together use no more
        threads than there are cores. Joblib's threading and
        multiprocessing backends set no limit: pass ``n_jobs=1`` there.
    mixed_precision : bool, default=True
        Take E-steps in float32 (the log-density products and the soft-max;
        sums and log-likelihood stay float64) where ``X``'s precision is not
        needed and the pass is large enough to gain (rows x features x
        components of at least 2 million). For float64 ``X`` with
        ``solver="em"``: each EM run's steps until one's gain comes within
        float32's rounding of ``tol``; that step is taken again in float64,
        and so is every step after it and the ``max_iter``-th, so that the
        step that converges is float64's. Also the annealing levels' steps
        and the split-and-merge moves' trials. A default fit then ends after
        the same iterations, at the same log-likelihood to about ``1e-9``
        relative, in 0.7 to 0.9 of the time on 60 000 rows (the user guide's
        performance page, "Mixed precision"). False computes every step in
        ``X``'s precision: from the same start, scikit-learn's iterates to
        float64's rounding. float32 ``X`` is computed in float32 either way.
    annealing : {"floor", "fixed", "temperature"} or None, default=None
        Deterministic annealing, an outer loop over the levels of
        ``schedule``, from the pooled solution (every component at the data's
        mean and variance, equal weights; ``init_params`` is not used, while
        ``weights_init``, ``means_init`` and ``precisions_init`` replace
        their parts of it), with at most ``anneal_max_iter`` EM iterations
        per level, then the final EM (at most ``max_iter`` iterations,
        stopping on ``tol``) with the annealing released: only the user's
        own floors and prior remain. It moves the fit away from the
        symmetric saddle where all means coincide; means split as the
        levels fall below the critical values of the data's clusters
        (``split_levels_``):

        - "floor": each level is a variance floor, in multiples of each
          feature's data variance.
        - "fixed": each level is every component's variance (same multiples);
          only weights and means are fitted.
        - "temperature": each level is a temperature ``T >= 1`` and the
          E-step is tempered, ``r_ik`` proportional to
          ``(weight_k N(x_i | k)) ** (1 / T)`` (DAEM). With
          ``solver="em"`` every third E-step of a level starts from a
          point extrapolated along the two EM steps before it (SQUAREM;
          refused if it lowers the level's objective), which took a third
          fewer iterations on the benchmark's large sets, with the same
          wins. Once every mean has split, a level that settles in two
          iterations doubles the step along the schedule to the next level
          run (levels skipped: a sixth fewer iterations there, the same
          wins). A level that settles at once while two means coincide
          (and at least half are distinct) gives one of them to the lone
          component whose responsibility-weighted correlation matrix has
          the largest top eigenvalue, if that is over 1.5 times both the
          level and the pair's (it spans clusters the pair does not need),
          a split-and-merge move made at the level and kept if the level's
          objective rises (spare components: 37 to 46 % fewer iterations
          on the benchmark's separated synthetic set at K=20, no change
          elsewhere). With the default
          split-and-merge moves it beat five restarts in at least 4 of 5
          seeds (0-4) on every large and synthetic set of the benchmark in
          the user guide's annealing page, at K=20 and K=50 (``"floor"``: 3
          of 5 on one), and on seeds 5-9 in at least 4 of 5 on each of
          those sets, in 0.6 to 0.9 of the time of "floor" on its
          60 000-row sets.

        At every level the means get a tiny random offset
        (``1e-3 * sqrt(level)`` standard deviations, drawn from
        ``random_state``) so that means that coincided can split. With
        ``mixed_precision`` and passes large enough, the levels' E-steps
        compute in float32 (products and soft-max; sums in float64)
        whatever the dtype of X, as do the short trials of the
        split-and-merge moves, and the final EM takes float32 steps until
        it nears convergence (see ``mixed_precision``). With
        ``warm_start``, the schedule runs on the first fit only. None fits
        by plain EM from ``init_params``.
    schedule : Schedule, default=None
        The levels, e.g. :class:`GeometricSchedule` or
        :class:`ExplicitSchedule`; ``start="auto"`` starts at a multiple of
        the data's critical value (``critical_value_``). None means
        ``GeometricSchedule(start="auto", stop=0.01, n_levels=12)`` for
        "floor" and "fixed" and ``GeometricSchedule(start="auto", stop=1.0,
        n_levels=24)`` for "temperature". Ignored without ``annealing``.
    anneal_max_iter : int, default=15
        Largest number of EM iterations per annealing level (each E-step
        counts, the extrapolated ones of "temperature" included).
    anneal_tol : float or None, default=0.01
        Convergence threshold of each level, on the parameters rather than
        the likelihood (which is flat while means split): a level ends,
        after at least two iterations, when no mean moved by more than
        ``anneal_tol`` of its component's standard deviation (in any
        feature) in the last iteration, and by no more than in the one
        before. None means 0.01. 0 runs every level for
        ``anneal_max_iter`` iterations.
    split_merge : int or "auto", default="auto"
        Largest number of split-and-merge moves kept after the final EM, if it
        converged (Ueda et al., 2000): a move merges the two components whose
        responsibilities overlap most and splits one of the three components
        whose points the mixture fits worst along its leading direction. Each
        round tries 15 such moves by five iterations of partial EM (only the
        move's three components change), gives the 3 that gained most four
        iterations of EM (in float32 under ``mixed_precision``; ranking and
        trials on 16 000 rows drawn from ``random_state`` when X has more),
        runs the best to convergence on all rows and keeps it if the lower
        bound rose and none of the components it changed ended on fewer than
        five rows (half an equal share on data of fewer than ten rows per
        component) or at ``min_weight`` (such components' variances sit near
        ``reg_covar``) while the mixture gained such a component; the first
        move not kept, or kept with a gain below ``tol``, ends the rounds
        (``split_merge_moves_``); pairs that share almost no rows are not
        merged, so a fit at a well separated mixture's answer makes none. Two
        components on one Gaussian (a saddle annealing can leave), and with two
        components any pair that shares rows, are also tried split anew, merged
        and split along their leading direction; a fit that ends with two
        components on one Gaussian warns. It takes a fit out of local maxima
        that annealing alone leaves (the user guide's annealing page). "auto"
        is 6 after the annealing levels and 0 otherwise (plain EM, as
        scikit-learn, and a ``warm_start`` refit). Only with ``solver="em"``.
    anneal_subsample : int, default=None
        With ``annealing`` and more rows than this: the annealed fit (its
        levels, its final EM and its split-and-merge moves) runs on this many
        rows drawn uniformly without replacement from ``random_state`` (a
        Dask array's are computed to the client), and EM on all rows
        continues from its result (with moves only if ``split_merge`` is a
        number). Each level then costs that share of a pass over all rows.
        On 60 000 rows, 20 000 took annealed fits to 0.28 to 0.57 of their
        time; at K=20 the fits from a sample ended lower than those on all
        rows (the user guide's annealing page). None anneals on all rows.
        Not used by :meth:`partial_fit`.
    solver : {"em", "minibatch", "gradient"}, default="em"
        How each iteration gathers sufficient statistics and turns them into
        parameters:

        - "em": batch EM, one pass over the data and the closed-form M-step.
        - "minibatch": online EM; an iteration is one pass over shuffled
          batches of ``batch_size`` rows, each batch's statistics blended
          into running ones with step ``(t + learning_offset) **
          -learning_decay`` (t counts batches) before a closed-form M-step.
          It has batch EM's fixed points. :meth:`partial_fit` takes the same
          step on each batch it is given.
        - "gradient": generalised EM; after each batch E-step,
          ``gradient_steps`` steps of Adam (the AMSGrad variant, whose steps
          shrink with the gradient) ascend the expected log-likelihood per
          sample plus the precision prior, over weight logits, ``eta1`` and
          ``omega = log(precision)`` with ``eta2 = -exp(omega) / 2``, so
          ``eta2 < 0`` holds at every step whatever the learning rate. With
          enough steps the M-step reaches the closed form.

        Floors, ``min_weight``, the prior and annealing act on all three;
        with "minibatch", whose online steps are small, means that start
        together split slowly and may stay together through the levels
        (a fit with both warns): anneal with "em" and continue with
        :meth:`partial_fit`.
    batch_size : int, default=1024
        Rows per batch of ``solver="minibatch"``.
    learning_offset : float, default=10.0
        ``tau`` of online EM's step size ``(t + tau) ** -kappa``; larger
        values damp the first steps.
    learning_decay : float, default=0.7
        ``kappa`` in (0.5, 1] of online EM's step size.
    learning_rate : float, default=0.01
        Adam's learning rate for ``solver="gradient"`` (research name ``lr``).
    gradient_steps : int, default=100
        Adam steps per E-step (research name ``batch_steps``).
    gradient_clip : float, default=1.0
        Largest norm of the gradient, which is rescaled beyond it (research
        name ``grad_clip``).

    Attributes
    ----------
    weights_ : ndarray of shape (n_components,)
        The weight of each component.
    means_ : ndarray of shape (n_components, n_features)
        The mean of each component.
    covariances_ : ndarray of shape (n_components, n_features)
        The variances of each component.
    precisions_ : ndarray of shape (n_components, n_features)
        The precisions (inverse variances) of each component.
    precisions_cholesky_ : ndarray of shape (n_components, n_features)
        Square roots of the precisions.
    eta1_ : ndarray of shape (n_components, n_features)
        First natural parameter, ``means_ / covariances_``.
    eta2_ : ndarray of shape (n_components, n_features)
        Second natural parameter, ``-1 / (2 covariances_)``; always negative.
    converged_ : bool
        Whether the best fit converged. Not set by :meth:`partial_fit`, as
        ``lower_bounds_``, ``labels_``, ``history_``, ``split_levels_`` and
        ``split_merge_moves_``, which describe a whole fit.
    n_iter_ : int
        Number of EM iterations of the best fit (all annealing levels, the
        final EM and the split-and-merge trials' EM; passes over the data
        for ``solver="minibatch"``; after :meth:`partial_fit`, ``n_steps_``,
        the online steps so far, a minibatch fit's included).
    n_steps_ : int
        Online EM steps taken (``solver="minibatch"`` and
        :meth:`partial_fit`), 0 otherwise.
    lower_bound_ : float
        Mean log-likelihood of the training data under the parameters of the
        last iteration's E-step of the best fit. With ``solver="minibatch"``
        an iteration is a pass of online steps, each batch scored under the
        parameters of its own step: a running estimate, which ``n_init``
        compares; ``score(X)`` gives the likelihood of the final parameters.
    lower_bounds_ : list of float
        ``lower_bound_`` at every iteration on the path of the parameters
        kept: the annealing levels, the final EM and the EM of each kept
        split-and-merge move, so that the last is ``lower_bound_``, as in
        scikit-learn (but with ``max_iter=0``, whose ``lower_bound_`` is
        -inf as scikit-learn's, after annealing levels). ``history_`` has
        every iteration, the moves' trials, a move not kept and a refused
        extrapolation step of a "temperature" level included.
    labels_ : ndarray or dask.array.Array of shape (n_samples,)
        Component of each training sample, as ``predict``; a lazy Dask
        array after a fit on one.
    history_ : dict of ndarray
        One entry per EM iteration of the best fit, levels and final EM
        alike: "lower_bound" (mean log-likelihood, as ``lower_bounds_``; at
        a "temperature" level, the tempered objective that the level's EM
        steps increase, ``T`` times the mean of ``log sum_k (weight_k
        N(x | k)) ** (1 / T)``, which equals the log-likelihood at ``T = 1``
        and is above it for ``T > 1``),
        "level" (annealing level: floor, fixed variance or temperature; NaN
        without annealing and in the final EM), "n_active" (components whose weight is above
        ``min_weight`` and that received mass), "n_distinct" (number of
        means not within 0.01 standard deviations, in every feature, of an
        earlier one), "move" (0, or the split-and-merge round the
        iteration belongs to, counting from 1: see ``split_merge``) and
        "rows" (the rows the iteration went over: all of them,
        ``anneal_subsample``'s, or a split-and-merge round's sample) and
        "float32" (whether its E-step was set to compute in float32: float32
        ``X``, or a step of ``mixed_precision``).
    critical_value_ : float
        With ``annealing``: the largest eigenvalue of the data's weighted
        correlation matrix. With all variances above this many times their
        feature's variance, every mean sits at the data mean; below, the
        means split.
    split_levels_ : ndarray of shape (n_splits, 2)
        With ``annealing``: the annealing path of the best fit, one row per
        iteration on the path kept (as ``lower_bounds_``) at which the number
        of distinct means (as in ``history_["n_distinct"]``) grew: the level,
        and the number of
        distinct means reached. Splits bunched just below
        ``critical_value_`` mean the clusters appear at once; splits spread
        over several levels, nested structure.
    split_merge_moves_ : ndarray of shape (n_moves, 6)
        The split-and-merge moves of the best fit, in order: the two
        components merged, the one split (the first of the two for a pair
        split anew), the lower bound before and after
        the move's EM, and 1.0 if it was kept (0.0 for a move not kept,
        which ends its rounds; with ``anneal_subsample`` and an integer
        ``split_merge``, the rounds on the sample come first, their lower
        bounds of the sample's rows, then those on all rows). No rows
        without ``split_merge``.
    empty_components_ : ndarray of bool, shape (n_components,)
        Components that received no mass at the last M-step; they kept
        their previous mean and variance and their weight fell to
        ``min_weight``.
    n_features_in_ : int
        Number of features seen during fit.
    feature_names_in_ : ndarray of shape (`n_features_in_`,)
        Names of features seen during fit, when ``X`` has string column
        names.

    See Also
    --------
    sklearn.mixture.GaussianMixture : The reference implementation.

    Notes
    -----
    ``fit``, ``fit_predict``, ``partial_fit``, ``predict``, ``predict_proba``,
    ``score_samples``, ``score``, ``bic`` and ``aic`` also accept a
    ``dask.array.Array`` (``pip install natgmm[dask]``), and ``sample_weight``
    may be one too. Each pass over the data then runs the
    kernels on the blocks where they live and only per-component statistics
    reach the client, which runs the same M-step; from the same start the fit
    equals the in-memory one to about 1e-14 relative with
    ``mixed_precision=False``; float32 steps (``mixed_precision``, the
    default, and annealing's levels) round the rows as Dask's blocks group
    them, and the parameters then agree to about 1e-6. Predictions are lazy
    Dask arrays, and so is ``labels_``, which holds the graph of ``X``
    (compute or delete it before pickling the model). The initialisation
    runs on the client on at most 100 000 rows (all of them, or a uniform
    sample). ``solver="minibatch"`` needs the data in memory. See the user
    guide's page on Dask (:doc:`/dask`).

    NaN entries of ``X`` are missing values, everywhere ``X`` is accepted
    (``inf`` still raises): a row's density is that of its observed features,
    marginalised exactly, and each feature's statistics are summed over the
    rows that observe it (EM with missing data, exact for data missing at
    random). A row with nothing observed gets the weights as
    responsibilities; a feature observed in no row is an error. Data without
    NaN takes the same code as before. See the user guide's page on missing
    values (:doc:`/missing_values`).

    Examples
    --------
    >>> import numpy as np
    >>> from natgmm import NaturalDiagonalGMM
    >>> X = np.array([[1, 2], [1, 4], [1, 0], [10, 2], [10, 4], [10, 0]])
    >>> gm = NaturalDiagonalGMM(n_components=2, random_state=0).fit(X)
    >>> gm.means_
    array([[10.,  2.],
           [ 1.,  2.]])
    >>> gm.predict([[0, 0], [12, 3]])
    array([1, 0])
    """

    _parameter_constraints: dict = {
        "n_components": [Interval(Integral, 1, None, closed="left")],
        "covariance_type": [DiagonalOnly()],
        "tol": [Interval(Real, 0.0, None, closed="left")],
        "reg_covar": [Interval(Real, 0.0, None, closed="left")],
        "max_iter": [Interval(Integral, 0, None, closed="left")],
        "n_init": [Interval(Integral, 1, None, closed="left")],
        "init_params": [
            StrOptions({"kmeans", "k-means++", "random", "random_from_data", "bisect"})
        ],
        "weights_init": ["array-like", None],
        "means_init": ["array-like", None],
        "precisions_init": ["array-like", None],
        "random_state": ["random_state"],
        "warm_start": ["boolean"],
        "verbose": ["verbose"],
        "verbose_interval": [Interval(Integral, 1, None, closed="left")],
        "min_variance": [Interval(Real, 0.0, None, closed="left"), "array-like"],
        "min_variance_relative": [Interval(Real, 0.0, None, closed="left")],
        "min_weight": [Interval(Real, 0.0, 1.0, closed="left")],
        "lower_precision_reg": [Interval(Real, 0.0, None, closed="left")],
        "upper_precision_reg": [Interval(Real, 0.0, None, closed="left")],
        # joblib's convention: 0 threads has no meaning.
        "n_jobs": [
            Interval(Integral, None, -1, closed="right"),
            Interval(Integral, 1, None, closed="left"),
            None,
        ],
        "mixed_precision": ["boolean"],
        "annealing": [StrOptions({"floor", "fixed", "temperature"}), None],
        "schedule": [Schedule, None],
        "anneal_max_iter": [Interval(Integral, 1, None, closed="left")],
        "anneal_tol": [Interval(Real, 0.0, None, closed="left"), None],
        "split_merge": [Interval(Integral, 0, None, closed="left"), StrOptions({"auto"})],
        "anneal_subsample": [Interval(Integral, 1, None, closed="left"), None],
        "solver": [StrOptions({"em", "minibatch", "gradient"})],
        "batch_size": [Interval(Integral, 1, None, closed="left")],
        "learning_offset": [Interval(Real, 0.0, None, closed="left")],
        "learning_decay": [Interval(Real, 0.5, 1.0, closed="right")],
        "learning_rate": [Interval(Real, 0.0, None, closed="neither")],
        "gradient_steps": [Interval(Integral, 1, None, closed="left")],
        "gradient_clip": [Interval(Real, 0.0, None, closed="neither")],
    }

    def __init__(
        self,
        n_components=1,
        *,
        covariance_type="diag",
        tol=1e-3,
        reg_covar=1e-6,
        max_iter=100,
        n_init=1,
        init_params="kmeans",
        weights_init=None,
        means_init=None,
        precisions_init=None,
        random_state=None,
        warm_start=False,
        verbose=0,
        verbose_interval=10,
        min_variance=0.0,
        min_variance_relative=0.0,
        min_weight=0.0,
        lower_precision_reg=0.0,
        upper_precision_reg=0.0,
        n_jobs=None,
        mixed_precision=True,
        annealing=None,
        schedule=None,
        anneal_max_iter=15,
        anneal_tol=0.01,
        split_merge="auto",
        anneal_subsample=None,
        solver="em",
        batch_size=1024,
        learning_offset=10.0,
        learning_decay=0.7,
        learning_rate=0.01,
        gradient_steps=100,
        gradient_clip=1.0,
    ):
        self.n_components = n_components
        self.covariance_type = covariance_type
        self.tol = tol
        self.reg_covar = reg_covar
        self.max_iter = max_iter
        self.n_init = n_init
        self.init_params = init_params
        self.weights_init = weights_init
        self.means_init = means_init
        self.precisions_init = precisions_init
        self.random_state = random_state
        self.warm_start = warm_start
        self.verbose = verbose
        self.verbose_interval = verbose_interval
        self.min_variance = min_variance
        self.min_variance_relative = min_variance_relative
        self.min_weight = min_weight
        self.lower_precision_reg = lower_precision_reg
        self.upper_precision_reg = upper_precision_reg
        self.n_jobs = n_jobs
        self.mixed_precision = mixed_precision
        self.annealing = annealing
        self.schedule = schedule
        self.anneal_max_iter = anneal_max_iter
        self.anneal_tol = anneal_tol
        self.split_merge = split_merge
        self.anneal_subsample = anneal_subsample
        self.solver = solver
        self.batch_size = batch_size
        self.learning_offset = learning_offset
        self.learning_decay = learning_decay
        self.learning_rate = learning_rate
        self.gradient_steps = gradient_steps
        self.gradient_clip = gradient_clip

    # ------------------------------------------------------------------ fit

    def fit(self, X, y=None, sample_weight=None):
        """Estimate model parameters with the EM algorithm.

        The model is fitted ``n_init`` times and the parameters with the
        largest mean log-likelihood are kept. Each fit alternates E- and
        M-steps until the mean log-likelihood changes by less than ``tol`` or
        ``max_iter`` iterations have run, otherwise a ``ConvergenceWarning``
        is raised. With ``warm_start=True`` a single fit starts from the
        previous solution.

        Parameters
        ----------
        X : array-like or dask.array.Array of shape (n_samples, n_features)
            Training data, one row per sample. A C-ordered float32 or
            float64 NumPy array is read in place (a read-only memory map
            too); other layouts and dtypes are copied once (a Dask array is
            read chunk by chunk).
        y : Ignored
            Not used, present for API consistency by convention.
        sample_weight : array-like of shape (n_samples,), float or None, default=None
            Non-negative weight of each sample (a Dask array with Dask
            ``X``; a number weighs every row alike); an integer weight is
            equivalent to repeating the sample in every EM step and in the
            "bisect" start (random starts, k-means++ seeding included, draw
            differently from repeated rows). None means unit weights.

        Returns
        -------
        self : object
            The fitted mixture.
        """
        self.fit_predict(X, y, sample_weight=sample_weight)
        return self

    @_fit_context(prefer_skip_nested_validation=True)
    def fit_predict(self, X, y=None, sample_weight=None):
        """Estimate model parameters using X and predict the labels for X.

        See :meth:`fit`; the labels come from a final E-step, so they equal
        ``fit(X).predict(X)``.

        Parameters
        ----------
        X : array-like or dask.array.Array of shape (n_samples, n_features)
            Training data, one row per sample.
        y : Ignored
            Not used, present for API consistency by convention.
        sample_weight : array-like of shape (n_samples,), float or None, default=None
            Non-negative weight of each sample (a Dask array with Dask
            ``X``; a number weighs every row alike). None means unit weights.

        Returns
        -------
        labels : ndarray or dask.array.Array of shape (n_samples,)
            Component labels.
        """
        settings = Settings.from_estimator(self)
        resume = self.warm_start and hasattr(self, "_state")  # a fit or a stream
        if resume:  # from the attributes, which may have been set by hand
            self._check_continuable("A warm-start fit", np.size(self.weights_))
        with _threads_and_blas(self.n_jobs) as parallel:
            # A warm start continues the fitted model: X is checked against it
            # (features, names), as StandardizedGMM checks a warm refit.
            data, inputs = self._check_data(
                X, sample_weight, parallel, reset=not resume, ensure_min_samples=2
            )
            _check_fit_data(data, settings)
            init = check_init_arrays(self, data.shape[1])
            model = set_up(data, settings)
            levels = _fit_levels(settings, model, resume)
            how = "pooled" if levels.size else None
            random_state = check_random_state(self.random_state)
            params, lower_bound, converged, run = self._best_fit(
                settings, model.data, model, init, levels, random_state, resume, how
            )
            empty = np.zeros(settings.n_components, dtype=bool) if run.empty is None else run.empty
            if converged:  # (after split-and-merge, a pair its moves could not split)
                warn_if_identical(params, empty, settings, annealed=bool(levels.size))
            warn_if_empty(empty)  # (run.empty None: no M-step ran, max_iter=0)
            if not converged and settings.max_iter > 0:
                warnings.warn(
                    # scikit-learn's words, then what natgmm knows besides.
                    "Best performing initialization did not converge. "
                    "Try different init parameters, or increase max_iter, "
                    "tol, or check for degenerate data." + _not_converged(settings, run, levels),
                    ConvergenceWarning,
                    stacklevel=caller_level(),
                )
            standardiser = model.standardiser
            fitted = model_attributes(standardiser, params, data.dtype, settings.solver)
            # Final E-step, so that fit_predict(X) == fit(X).predict(X).
            labels = data.log_prob(standardiser, params, want_resp=False)[1]
        fitted.update(
            converged_=converged,
            n_iter_=len(run.history["lower_bound"]),
            lower_bound_=lower_bound,
            lower_bounds_=run.kept_lower_bounds(),
            history_={key: np.asarray(value) for key, value in run.history.items()},
            split_merge_moves_=np.array(run.moves, dtype=np.float64).reshape(-1, 6),
            n_steps_=run.online.n_steps if run.online else 0,
            labels_=labels,
        )
        if model.critical_value is not None:
            fitted["critical_value_"] = model.critical_value
            fitted["split_levels_"] = split_levels(fitted["history_"], run.kept())
        # A copy of the generator, so that the caller's (given as a
        # RandomState, or numpy's global one for None) does not change the
        # fitted model as it advances. One made from an int is the fit's own
        # (the copy took 0.4 ms, a tenth of a fit on iris).
        if not isinstance(self.random_state, Integral):
            random_state = copy.deepcopy(random_state)
        state = ModelState(standardiser, params, run.online, run.adam, random_state, np.empty(0))
        self._commit(fitted, state, run.empty, inputs)
        return labels

    def _best_fit(self, settings, data, model, init, levels, random_state, resume, how):
        """Fit from ``n_init`` initialisations and keep the largest lower bound.

        With ``resume`` (a warm start), one fit from the fitted parameters;
        ``how`` overrides ``init_params``. Returns its parameters, lower
        bound, convergence and :class:`Run`.
        """
        standardiser, reg = model.standardiser, model.reg
        progress = Progress(settings)
        best = None
        for trial in range(1 if resume else settings.n_init):
            progress.init_begin(trial)
            if resume:  # from what predictions read, as scikit-learn's warm start
                attributes = (getattr(self, name) for name in PREDICTIVE_ATTRIBUTES)
                weights, means, variances = mixture_of(tuple(attributes))
                params = Params(weights, *standardiser.to_internal(means, variances))
                lower_bound = self.lower_bound_
            else:
                params = initial_params(data, standardiser, reg, init, settings, random_state, how)
                lower_bound = -np.inf
            # The solver's state (online sums, Adam's moments) only with the
            # attributes the fit left: not with attributes set by hand.
            previous = self._state if resume and _as_fitted(self) else None
            run = start_run(settings, data, standardiser, random_state, params, reg, previous)
            params, lower_bound, converged = fit_run(
                settings, run, params, lower_bound, reg, levels, progress
            )
            if settings.max_iter == 0:  # as scikit-learn's: no iteration, no bound (warm too)
                lower_bound = -np.inf
            progress.init_end(lower_bound, converged, len(run.history["lower_bound"]))
            # As scikit-learn: with no lower bound yet (max_iter=0), the last start.
            if best is None or lower_bound > best[1] or best[1] == -np.inf:
                best, kept = (params, lower_bound, converged, run), trial
        if settings.n_init > 1 and not resume:
            progress.kept(kept, best[1])
        return best

    def partial_fit(self, X, y=None, sample_weight=None):
        """Update the model with one batch of data by an online EM step.

        The batch's sufficient statistics are blended into running ones with
        step ``(t + learning_offset) ** -learning_decay``, ``t`` counting the
        batches seen (continuing from ``n_steps_`` after :meth:`fit`), and the
        M-step (closed form, or Adam for ``solver="gradient"``) turns them
        into parameters; later calls continue these running statistics, not
        attributes set by hand (a warm-start :meth:`fit` continues those).
        The first call fits its batch as :meth:`fit` would (``init_params``,
        then EM with ``max_iter`` and ``tol``; ``max_iter=0`` keeps the start)
        before its step, and fixes the internal standardisation; a batch with
        fewer rows than components is seeded by "random_from_data" with
        repeated seeds, and an annealed stream starts pooled, its levels
        going batch by batch; floors relative to the data variance
        follow the variance of all data seen. With ``annealing``, each level
        lasts ``anneal_max_iter`` batches; online steps are small, so means
        that start together split slowly (four blobs, 200 batches of 200
        rows, "floor": the means still within 0.7 of each other at the end,
        a score of -8.43 against -5.64 without annealing). To anneal a
        stream, fit its first large batch with ``annealing`` and continue
        with ``partial_fit``.

        Parameters
        ----------
        X : array-like or dask.array.Array of shape (n_samples, n_features)
            One batch, one row per sample; a single row is allowed.
        y : Ignored
            Not used, present for API consistency by convention.
        sample_weight : array-like of shape (n_samples,), float or None, default=None
            Non-negative weight of each sample (a Dask array with Dask
            ``X``; a number weighs every row alike). None means unit weights. A
            batch's statistics are divided by the mean weight of a row of
            all data seen times its rows, so that a row counts by its
            weight whatever batch it comes in.

        Returns
        -------
        self : object
            The updated mixture; ``lower_bound_`` is the mean log-likelihood
            of the batch under the parameters before the update (at a
            "temperature" level, the tempered objective of ``history_``).
            The attributes that describe a whole fit (``converged_``,
            ``lower_bounds_``, ``history_``, ``labels_``, ``split_levels_``,
            ``split_merge_moves_``) are removed by a step after :meth:`fit`:
            they describe a model that is no longer this one.
        """
        first = not hasattr(self, "_state")
        # Every call: set_params between the batches may have changed them.
        self._validate_params()
        settings = Settings.from_estimator(self)
        progress = Progress(settings)
        with _threads_and_blas(self.n_jobs) as parallel:
            if first:
                data, inputs = self._check_data(X, sample_weight, parallel, reset=True)
                model = set_up(data, settings)
                data = model.data
                init = check_init_arrays(self, data.shape[1])
                random_state = check_random_state(self.random_state)
                state = start_stream(data, model, init, settings, random_state, progress)
            else:
                self._check_continuable("partial_fit", self._state.params.weights.shape[0])
                # Nothing of the stream's state is changed in place: the
                # model stays as it was if the batch is rejected or the
                # step fails.
                state = self._state
                data, inputs = self._check_data(
                    X, sample_weight, parallel, reset=False,
                    weight_scale=state.standardiser.weight_scale,
                )  # fmt: skip
                state.standardiser.check_batch(data)
                state = state._replace(standardiser=state.standardiser.updated(data))
                if state.levels.size:  # the annealing levels draw from it
                    state = state._replace(random_state=copy.deepcopy(state.random_state))
            standardiser = state.standardiser
            min_variance = check_min_variance(settings.min_variance, data.shape[1])
            reg = regularisation(standardiser, min_variance, settings)
            run = stream_run(settings, data, state, reg)
            params, loglik = stream_step(settings, run, state.params, reg, state.levels)
            fitted = model_attributes(standardiser, params, data.dtype, settings.solver)
        state = state._replace(params=params, online=run.online, adam=run.adam)
        if first and model.critical_value is not None:
            fitted["critical_value_"] = model.critical_value
        fitted["n_steps_"] = fitted["n_iter_"] = run.online.n_steps
        fitted["lower_bound_"] = loglik / data.total_weight + standardiser.log_jacobian
        index, _ = stream_position(settings, run.online.n_steps - 1)
        level = state.levels[index] if index < state.levels.size else np.nan
        progress.stream_step(
            run.online.n_steps, data.shape[0], fitted["lower_bound_"], run.online.rho, level
        )
        attributes, remove = inputs
        self._commit(fitted, state, run.empty, (attributes, (*remove, *_FIT_ONLY)))
        return self

    def set_params(self, **params):
        """Set the parameters; nested ones of a default ``schedule`` (None) create it.

        ``schedule__stop=0.1`` with ``schedule=None`` sets it on the schedule
        that None stands for with the ``annealing`` mode (so that a grid
        search can tune the default schedule): the mode of this call, else
        the one set before. A later change of ``annealing`` keeps the schedule
        so made, so set ``annealing`` first or in the same call.

        Parameters
        ----------
        **params : dict
            Parameters of the estimator and, as ``schedule__<name>``, of its
            schedule.

        Returns
        -------
        self : object
            The estimator.
        """
        annealing = params.get("annealing", self.annealing)
        params = nested_default(
            params, "schedule", self.schedule, lambda: default_schedule(annealing)
        )
        return super().set_params(**params)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.allow_nan = True  # NaN entries are missing values
        return tags

    def _check_continuable(self, how, fitted):
        """Raise a ValueError if ``n_components`` is not ``fitted`` (the continued model's)."""
        if self.n_components != fitted:
            raise ValueError(
                f"{how} continues the fitted model, which has {fitted} components, but "
                f"n_components={self.n_components}. Set n_components={fitted} again, or "
                "start a new model (warm_start=False, or a new estimator for partial_fit)."
            )

    def _commit(self, fitted, state, empty, inputs):
        """Set the fitted attributes and the private state of a successful fit, at once.

        ``inputs`` are the input attributes from :meth:`_check_data`
        (``n_features_in_``, ``feature_names_in_``) and those to delete.
        """
        attributes, remove = inputs
        if np.isnan(fitted["lower_bound_"]):  # never committed, as NaN statistics never are
            raise IllDefinedCovariance(ILL_DEFINED_COVARIANCE)
        # A copy: the attributes may be changed in place, and predictions follow them.
        published = tuple(fitted[name].copy() for name in PREDICTIVE_ATTRIBUTES)
        # The kernels' operands of the fit's parameters, made at the first prediction.
        private = {"_state": state, "_published": published, "_operands": Operands(state.params)}
        commit(self, {**fitted, **attributes, **private, "empty_components_": empty}, remove)

    def __getstate__(self):
        # Without the operands, made again on loading: pickles stay as they were.
        # (A new dict: object.__getstate__ returns the instance's own.)
        state = {k: v for k, v in super().__getstate__().items() if k != "_operands"}
        return stamped(state)

    def __setstate__(self, state):
        super().__setstate__(_upgraded_state(unstamped(state, type(self).__name__)))

    # ----------------------------------------------------------- inference

    def _check_data(
        self, X, sample_weight, parallel, reset, ensure_min_samples=1, weight_scale=None
    ):
        """Validate ``X`` and ``sample_weight``; return the source of their statistics.

        A Dask array is checked without computing it (see ``natgmm._dask``).
        With ``reset``, ``X`` is validated on a copy of the estimator, whose
        input attributes are returned for :meth:`_commit`: the estimator
        itself is not changed. ``weight_scale`` is that of the data source
        (None: from the weights).

        Returns
        -------
        data : ArrayData or DaskData
        inputs : (dict, tuple)
            Input attributes to set and to delete; empty without ``reset``.
        """
        validated = copy.copy(self) if reset else self
        if is_dask(X):
            from ._dask import DaskData, check_dask_array

            X = check_dask_array(X, ensure_min_samples, type(self).__name__)
            validate_data(validated, X, skip_check_array=True, reset=reset)
            data = DaskData(X, sample_weight, parallel, weight_scale)
        else:
            X = validate_rows(
                validated, X, order="C", reset=reset, ensure_min_samples=ensure_min_samples,
                ensure_all_finite="allow-nan",
            )  # fmt: skip
            if sample_weight is not None:
                sample_weight = check_sample_weight(sample_weight, X)
            data = ArrayData(X, sample_weight, parallel, weight_scale)
        return data, (input_attributes(validated) if reset else ({}, ()))

    def _infer(self, X, want_resp=False):
        with kernel_threads(self.n_jobs) as parallel:
            data, standardiser, params, operands = self._predictive(X, parallel)
            with _prediction_blas(data, params.means.shape[0]):
                return data.log_prob(standardiser, params, want_resp, operands)

    def _predictive(self, X, parallel):
        """Return the checked data source of ``X`` and the model predictions use.

        The model is :func:`_predictive_model`'s ``(standardiser, params,
        operands)``.
        """
        standardiser, params, operands = _predictive_model(self)
        data, _ = self._check_data(X, None, parallel, reset=False)
        if data.shape[1] != params.means.shape[1]:  # without n_features_in_
            raise ValueError(
                f"X has {data.shape[1]} features, but {type(self).__name__} is expecting "
                f"{params.means.shape[1]} features as input."
            )
        return data, standardiser, params, operands

    def _estimate_log_prob(self, X):
        """Return each sample's log-density under each component (scikit-learn's private method)."""
        X = np.asarray(X) if is_dask(X) else X
        with _threads_and_blas(self.n_jobs) as parallel:
            data, standardiser, params, _ = self._predictive(X, parallel)
            return component_log_prob(data.X, standardiser, params)

    def score_samples(self, X):
        """Compute the log-likelihood of each sample.

        Parameters
        ----------
        X : array-like or dask.array.Array of shape (n_samples, n_features)
            Samples, one per row.

        Returns
        -------
        log_prob : ndarray or dask.array.Array of shape (n_samples,)
            Log-density of each sample under the model.
        """
        return self._infer(X)[0]

    def score(self, X, y=None, sample_weight=None):
        """Compute the (weighted) mean log-likelihood of the samples.

        Parameters
        ----------
        X : array-like or dask.array.Array of shape (n_samples, n_features)
            Samples, one per row.
        y : Ignored
            Not used, present for API consistency by convention.
        sample_weight : array-like of shape (n_samples,), float or None, default=None
            Weights of the samples in the mean (a Dask array with Dask
            ``X``). None means unit weights.

        Returns
        -------
        log_likelihood : float
            Mean log-likelihood of ``X`` under the model.
        """
        log_prob = self.score_samples(X)
        if is_dask(log_prob):
            from ._dask import weighted_mean

            return weighted_mean(log_prob, sample_weight)
        return mean_log_prob(log_prob, sample_weight)

    def predict(self, X):
        """Predict the most probable component of each sample.

        Parameters
        ----------
        X : array-like or dask.array.Array of shape (n_samples, n_features)
            Samples, one per row.

        Returns
        -------
        labels : ndarray or dask.array.Array of shape (n_samples,)
            Component labels.
        """
        return self._infer(X)[1]

    def predict_proba(self, X):
        """Posterior probability of each component for each sample.

        Parameters
        ----------
        X : array-like or dask.array.Array of shape (n_samples, n_features)
            Samples, one per row.

        Returns
        -------
        resp : ndarray or dask.array.Array of shape (n_samples, n_components)
            Responsibilities; each row sums to one.
        """
        return self._infer(X, want_resp=True)[2]

    def sample(self, n_samples=1):
        """Generate random samples from the fitted mixture.

        As scikit-learn's, with the same draws: an int ``random_state``
        gives the same rows at every call (pass a ``RandomState`` for new
        ones), the rows come grouped by component (shuffle them if order
        matters), and they are float64 whatever the model's dtype.

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
        if n_samples < 1:
            raise ValueError(
                f"Invalid value for 'n_samples': {n_samples} . The sampling requires at "
                "least one sample."
            )
        rng = check_random_state(self.random_state)
        return _draw(self.weights_, self.means_, self.covariances_, n_samples, rng)

    def _n_parameters(self):
        # The fitted model's, whatever n_components says now.
        n_components, n_features = self.means_.shape
        return 2 * n_components * n_features + n_components - 1

    def bic(self, X, sample_weight=None):
        """Bayesian information criterion for the current model on X.

        Parameters
        ----------
        X : array-like or dask.array.Array of shape (n_samples, n_features)
            The input samples.
        sample_weight : array-like of shape (n_samples,), float or None, default=None
            Weights of the samples, counted as repetitions of their rows: the
            log-likelihood is the weighted sum and the number of samples the
            total weight (a Dask array with Dask ``X``). None means unit
            weights, scikit-learn's criterion.

        Returns
        -------
        bic : float
            The lower the better.
        """
        return criterion(self, "bic", X, sample_weight)

    def aic(self, X, sample_weight=None):
        """Akaike information criterion for the current model on X.

        Parameters
        ----------
        X : array-like or dask.array.Array of shape (n_samples, n_features)
            The input samples.
        sample_weight : array-like of shape (n_samples,), float or None, default=None
            Weights of the samples, counted as repetitions of their rows: the
            log-likelihood is the weighted sum and the number of samples the
            total weight (a Dask array with Dask ``X``). None means unit
            weights, scikit-learn's criterion.

        Returns
        -------
        aic : float
            The lower the better.
        """
        return criterion(self, "aic", X, sample_weight)


def _prediction_blas(data, n_components):
    """BLAS held at one thread for all of a prediction's passes, unless too small to thread.

    (:func:`~._blas.blas_hold`; a Dask array's passes are always held.)
    """
    array = isinstance(data, ArrayData)
    return blas_hold(log_prob_work(data.X, n_components) if array else math.inf)


def _predictive_model(estimator):
    """Return the model ``estimator``'s predictions use: ``(standardiser, params, operands)``.

    The map to internal units, the parameters in them and their
    :class:`Operands` (those kept with the fit while its attributes are
    unchanged, else None).
    """
    # As scikit-learn's, predictions follow weights_, means_ and
    # precisions_cholesky_, also when changed or set by hand. All read from
    # one __dict__: a fit on another thread replaces it in one assignment
    # (commit), and reads one by one could mix the old fit and the new.
    state = vars(estimator)
    if not _holds_attributes(estimator, state):
        check_is_fitted(estimator)
    attributes = tuple(
        state[name] if name in state else getattr(estimator, name) for name in PREDICTIVE_ATTRIBUTES
    )
    standardiser, params = predictive_model(
        attributes, state.get("_state"), state.get("_published")
    )
    operands = state.get("_operands")
    if operands is not None and operands.params is not params:  # attributes changed
        operands = None
    return standardiser, params, operands


def _holds_attributes(estimator, state):
    """Whether ``check_is_fitted(estimator)`` would pass, seen from its ``__dict__`` ``state``.

    It does when the instance holds the attributes predictions read (names
    ending in ``_``), unless its class says otherwise (``__sklearn_is_fitted__``):
    a cheap test that spares a prediction scikit-learn's walk over every
    attribute (6 us of a one-row ``predict``).
    """
    return not hasattr(estimator, "__sklearn_is_fitted__") and all(
        name in state for name in PREDICTIVE_ATTRIBUTES
    )


def _as_fitted(model):
    """Whether the model's ``weights_``, ``means_``, ``precisions_cholesky_`` are as fitted."""
    published = getattr(model, "_published", None)
    attributes = [getattr(model, name) for name in PREDICTIVE_ATTRIBUTES]
    if published is None:  # a model pickled before the copy was kept
        return np.shape(attributes[0]) == model._state.params.weights.shape
    return all(map(np.array_equal, attributes, published))


def criterion(model, name, X, sample_weight):
    """Return ``bic`` or ``aic`` (``name``) of X under ``model``.

    From its ``score`` and ``_n_parameters()`` (both estimators'); with
    ``sample_weight``, the weighted log-likelihood and the total weight as
    the number of samples.
    """
    score = model.score(X, sample_weight=sample_weight)  # checks the model, X, weights
    if sample_weight is None:
        n_samples = _num_samples(X)
    elif is_dask(X):
        from ._dask import weights_total

        n_samples = weights_total(sample_weight, X.chunks[0])
    else:
        n_samples = total_weight(check_sample_weight(sample_weight, X))
    return information_criterion(name, score, n_samples, model._n_parameters())
