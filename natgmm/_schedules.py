"""Annealing schedules: decreasing sequences of variances or temperatures.

A schedule is a small estimator-like object (``get_params``/``set_params``,
``clone``, nested ``schedule__start`` parameters in ``GridSearchCV``) whose
:meth:`~Schedule.values` turns the data's critical value into the levels of
the outer annealing loop of :class:`~natgmm.NaturalDiagonalGMM`.

Levels are in standardised units: for ``annealing="floor"`` and ``"fixed"``
a level ``v`` means a variance of ``v`` times each feature's data variance;
for ``annealing="temperature"`` it is the temperature ``T = 1 / beta``.
"""

from numbers import Integral, Real

import numpy as np
from sklearn.base import BaseEstimator
from sklearn.utils._param_validation import Interval, StrOptions


class Schedule(BaseEstimator):
    """Base class of annealing schedules.

    A subclass stores its parameters in ``__init__`` as any scikit-learn
    estimator does (with ``_parameter_constraints`` for them, if it has
    any) and implements ``_levels(critical_value)``, returning the
    positive, non-increasing levels that :meth:`values` validates.

    Examples
    --------
    >>> from natgmm import Schedule
    >>> class Halving(Schedule):
    ...     def __init__(self, n_levels=4):
    ...         self.n_levels = n_levels
    ...     def _levels(self, critical_value):
    ...         return [2.0 * critical_value / 2**i for i in range(self.n_levels)]
    >>> Halving().values(1.5)
    array([3.   , 1.5  , 0.75 , 0.375])
    """

    _parameter_constraints: dict = {}

    def _levels(self, critical_value):
        raise NotImplementedError(f"{type(self).__name__} does not implement _levels.")

    def values(self, critical_value):
        """Return the levels of the schedule, from first to last.

        Parameters
        ----------
        critical_value : float
            The data's critical value, the largest eigenvalue of its
            (weighted) correlation matrix: above it, with every variance at
            that many times the feature's variance, all component means
            coincide; below it they split.

        Returns
        -------
        levels : ndarray of shape (n_levels,)
            Positive levels, not increasing.
        """
        self._validate_params()
        levels = np.asarray(self._levels(float(critical_value)), dtype=np.float64)
        if levels.ndim != 1 or levels.size == 0 or not np.all((levels > 0) & np.isfinite(levels)):
            raise ValueError(
                "An annealing schedule needs a non-empty 1-D sequence of positive, finite "
                f"levels, got {levels.tolist()}."
            )
        if np.any(np.diff(levels) > 0):
            raise ValueError(
                "Annealing levels must not increase (a schedule goes from a high variance "
                f"or temperature to a low one), got {np.round(levels, 6).tolist()}"
                + (
                    f" (start='auto' is {self.auto_factor:g} times the critical value "
                    f"{critical_value:.6g})."
                    if getattr(self, "start", None) == "auto"
                    else "."
                )
            )
        return levels


class _RangeSchedule(Schedule):
    """Levels from ``start`` to ``stop``; subclasses choose the spacing."""

    _parameter_constraints: dict = {
        "start": [Interval(Real, 0, None, closed="neither"), StrOptions({"auto"})],
        "stop": [Interval(Real, 0, None, closed="neither")],
        "n_levels": [Interval(Integral, 1, None, closed="left")],
        "auto_factor": [Interval(Real, 0, None, closed="neither")],
    }

    def __init__(self, start="auto", stop=0.01, n_levels=12, auto_factor=1.2):
        self.start = start
        self.stop = stop
        self.n_levels = n_levels
        self.auto_factor = auto_factor

    def _levels(self, critical_value):
        start = self.auto_factor * critical_value if self.start == "auto" else self.start
        return self._space(float(start), self.stop, self.n_levels)


class GeometricSchedule(_RangeSchedule):
    """Levels spaced evenly on a log scale from ``start`` to ``stop``.

    Parameters
    ----------
    start : float or "auto", default="auto"
        First level. "auto" is ``auto_factor`` times the critical value.
    stop : float, default=0.01
        Last level.
    n_levels : int, default=12
        Number of levels (with 1, the only level is ``start``).
    auto_factor : float, default=1.2
        Multiple of the critical value used by ``start="auto"``.

    Examples
    --------
    >>> from natgmm import GeometricSchedule
    >>> GeometricSchedule(start=1.0, stop=0.01, n_levels=3).values(critical_value=2.0)
    array([1.  , 0.1 , 0.01])
    """

    _space = staticmethod(np.geomspace)


class LinearSchedule(_RangeSchedule):
    """Levels spaced evenly from ``start`` to ``stop``.

    Parameters
    ----------
    start : float or "auto", default="auto"
        First level. "auto" is ``auto_factor`` times the critical value.
    stop : float, default=0.01
        Last level.
    n_levels : int, default=12
        Number of levels (with 1, the only level is ``start``).
    auto_factor : float, default=1.2
        Multiple of the critical value used by ``start="auto"``.

    Examples
    --------
    >>> from natgmm import LinearSchedule
    >>> LinearSchedule(start="auto", stop=1.0, n_levels=3).values(critical_value=2.5)
    array([3., 2., 1.])
    """

    _space = staticmethod(np.linspace)


class ExplicitSchedule(Schedule):
    """Levels given one by one.

    Parameters
    ----------
    levels : array-like of shape (n_levels,)
        Positive levels, not increasing, used in the order given; the
        critical value is ignored.

    Examples
    --------
    >>> from natgmm import ExplicitSchedule
    >>> ExplicitSchedule([2.0, 0.5]).values(critical_value=1.0)
    array([2. , 0.5])
    """

    _parameter_constraints: dict = {"levels": ["array-like"]}

    def __init__(self, levels):
        self.levels = levels

    def _levels(self, critical_value):
        return self.levels
