"""natgmm: diagonal Gaussian mixtures in natural parameters, with Numba kernels."""

from ._estimator import NaturalDiagonalGMM
from ._schedules import ExplicitSchedule, GeometricSchedule, LinearSchedule, Schedule

__all__ = [
    "ExplicitSchedule",
    "GeometricSchedule",
    "LinearSchedule",
    "NaturalDiagonalGMM",
    "Schedule",
]
__version__ = "0.1.0"
