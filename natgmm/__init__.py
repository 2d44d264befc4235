"""natgmm: diagonal Gaussian mixtures in natural parameters, with Numba kernels."""

# First, before numba or scikit-learn load an OpenMP runtime: OpenMP threads
# sleep rather than spin while they wait (unless the user chose otherwise),
# so that fits next to other busy threads do not crawl. See _threading.py.
from ._threading import configure_wait_policy

configure_wait_policy()

from ._estimator import NaturalDiagonalGMM  # noqa: E402
from ._schedules import ExplicitSchedule, GeometricSchedule, LinearSchedule, Schedule  # noqa: E402
from ._version import __version__  # noqa: E402, F401  (natgmm.__version__)
from ._wrapper import StandardizedGMM  # noqa: E402

__all__ = [
    "ExplicitSchedule",
    "GeometricSchedule",
    "LinearSchedule",
    "NaturalDiagonalGMM",
    "Schedule",
    "StandardizedGMM",
]
