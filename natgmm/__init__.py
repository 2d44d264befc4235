"""natgmm: diagonal Gaussian mixtures in natural parameters, with Numba kernels."""

from ._estimator import NaturalDiagonalGMM
from ._schedules import ExplicitSchedule, GeometricSchedule, LinearSchedule, Schedule
from ._wrapper import StandardizedGMM

__all__ = [
    "ExplicitSchedule",
    "GeometricSchedule",
    "LinearSchedule",
    "NaturalDiagonalGMM",
    "Schedule",
    "StandardizedGMM",
]
__version__ = "0.1.0"
