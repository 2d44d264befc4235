"""The settings of one fit, built once from the estimator's parameters.

Every step of a fit (standardisation, initialisation, annealing, the EM loop,
progress messages) reads its options from one :class:`Settings`, never from
the estimator, so the steps are plain functions and the estimator is not
written to until the fit has succeeded.
"""

import functools
from typing import NamedTuple

import numpy as np
from sklearn.base import BaseEstimator
from sklearn.utils._param_validation import StrOptions

from ._gradient import GradientMStep
from ._schedules import GeometricSchedule


class ParamNamesOnce:
    """scikit-learn's ``_get_param_names``, read from ``__init__``'s signature once per class.

    scikit-learn inspects the signature at every ``get_params`` (54 us for
    natgmm's 34 parameters), which every fit, ``partial_fit`` batch and
    ``clone`` calls: a fifth of a 10-row ``partial_fit``.
    """

    @classmethod
    def _get_param_names(cls):
        return list(_param_names(cls))


@functools.cache
def _param_names(cls):
    return tuple(BaseEstimator._get_param_names.__func__(cls))


class DiagonalOnly(StrOptions):
    """``covariance_type``'s constraint, whose error says where the other types are."""

    def __init__(self):
        super().__init__({"diag"})

    def __str__(self):
        return (
            f"{super().__str__()} (natgmm fits diagonal covariances only; "
            "sklearn.mixture.GaussianMixture fits 'full', 'tied' and 'spherical' ones)"
        )


# The schedule of each annealing mode when ``schedule=None``, chosen by
# benchmarks/study/sweep.py (doc/annealing.rst, "Does it beat restarts?"):
# temperatures gained from 24 levels over 12, variance floors lost.
DEFAULT_SCHEDULES = {
    "floor": dict(stop=0.01, n_levels=12),
    "fixed": dict(stop=0.01, n_levels=12),
    "temperature": dict(stop=1.0, n_levels=24),
}


def nested_default(params, name, current, make):
    """``params``, with ``name`` set to ``make()`` if nested ``name__`` ones meet None.

    For ``set_params`` of a parameter whose None stands for a default
    object: ``name__x=...`` then sets ``x`` on that object, made explicit
    (``current`` is the parameter's value before the call).
    """
    nested = any(key.startswith(f"{name}__") for key in params)
    if nested and params.get(name, current) is None:
        return {**params, name: make()}
    return params


def default_schedule(annealing):
    """Return the schedule that ``schedule=None`` stands for (that of "floor" without annealing)."""
    return GeometricSchedule(**DEFAULT_SCHEDULES[annealing or "floor"])


# Split-and-merge moves after a fit that ran the annealing levels, when
# ``split_merge="auto"`` (benchmarks/study/sweep.py). Rounds also end at a
# gain below ``tol``, so most fits stop before the cap.
DEFAULT_SPLIT_MERGE = 6


class Settings(NamedTuple):
    """The estimator's parameters as one fit uses them (defaults resolved)."""

    n_components: int
    tol: float
    reg_covar: float
    max_iter: int
    n_init: int
    init_params: str
    verbose: int
    verbose_interval: int
    min_variance: np.ndarray  # float or (n_features,), checked against the data later
    min_variance_relative: float
    min_weight: float
    lower_precision_reg: float
    upper_precision_reg: float
    annealing: str | None
    schedule: object  # a Schedule, or None without annealing
    anneal_max_iter: int
    anneal_tol: float
    split_merge: int | None  # moves kept at most; None: "auto" (n_moves)
    anneal_subsample: int | None  # rows the annealed fit runs on; None: all
    solver: str
    batch_size: int
    learning_offset: float
    learning_decay: float
    gradient: GradientMStep | None  # the Adam M-step of solver="gradient"
    mixed_precision: bool

    @classmethod
    def from_estimator(cls, estimator):
        """Read and resolve the (validated) parameters of ``estimator``."""
        e = estimator
        if e.n_components * e.min_weight >= 1.0:
            raise ValueError(
                f"n_components * min_weight must be below 1, got {e.n_components} * {e.min_weight}."
            )
        if e.split_merge not in ("auto", 0) and e.solver != "em":
            # Online EM's running statistics and Adam's moments belong to
            # the parameters before a move, and would pull the fit back.
            raise ValueError(
                f"split_merge needs solver='em', got solver={e.solver!r}; "
                "use split_merge='auto' or 0."
            )
        if e.anneal_subsample is not None and e.anneal_subsample < e.n_components:
            raise ValueError(
                f"anneal_subsample={e.anneal_subsample} must be at least "
                f"n_components={e.n_components}."
            )
        schedule = e.schedule
        if e.annealing is not None and schedule is None:
            schedule = default_schedule(e.annealing)
        gradient = None
        if e.solver == "gradient":
            gradient = GradientMStep(e.gradient_steps, e.learning_rate, e.gradient_clip)
        return cls(
            n_components=e.n_components,
            tol=e.tol,
            reg_covar=e.reg_covar,
            max_iter=e.max_iter,
            n_init=e.n_init,
            init_params=e.init_params,
            verbose=e.verbose,
            verbose_interval=e.verbose_interval,
            min_variance=np.asarray(e.min_variance, dtype=np.float64),
            min_variance_relative=e.min_variance_relative,
            min_weight=float(e.min_weight),
            lower_precision_reg=float(e.lower_precision_reg),
            upper_precision_reg=e.upper_precision_reg,
            annealing=e.annealing,
            schedule=schedule,
            anneal_max_iter=e.anneal_max_iter,
            anneal_tol=0.01 if e.anneal_tol is None else e.anneal_tol,
            split_merge=None if e.split_merge == "auto" else e.split_merge,
            anneal_subsample=e.anneal_subsample,
            solver=e.solver,
            batch_size=e.batch_size,
            learning_offset=e.learning_offset,
            learning_decay=e.learning_decay,
            gradient=gradient,
            mixed_precision=bool(e.mixed_precision),
        )

    def n_moves(self, annealed):
        """Largest number of split-and-merge moves kept after a fit (``annealed``: levels ran)."""
        if self.split_merge is None:
            return DEFAULT_SPLIT_MERGE if annealed and self.solver == "em" else 0
        return self.split_merge
