"""natgmm: diagonal Gaussian mixtures in natural parameters, with Numba kernels."""

# First, before numba or scikit-learn load an OpenMP runtime: OpenMP threads
# sleep rather than spin while they wait (unless the user chose otherwise),
# so that fits next to other busy threads do not crawl. See _wait_policy.py.
from ._wait_policy import configure_wait_policy

configure_wait_policy()

import importlib  # noqa: E402
from typing import TYPE_CHECKING  # noqa: E402

from ._version import __version__  # noqa: E402, F401  (natgmm.__version__)

__all__ = [
    "ExplicitSchedule",
    "GeometricSchedule",
    "LinearSchedule",
    "NaturalDiagonalGMM",
    "Schedule",
    "StandardizedGMM",
]

# The public classes load on first use (PEP 562): ``import natgmm`` alone,
# as ``python -m natgmm --help`` does, then costs no scikit-learn import.
_WHERE = {
    "ExplicitSchedule": "._schedules",
    "GeometricSchedule": "._schedules",
    "LinearSchedule": "._schedules",
    "NaturalDiagonalGMM": "._estimator",
    "Schedule": "._schedules",
    "StandardizedGMM": "._wrapper",
}

if TYPE_CHECKING:
    from ._estimator import NaturalDiagonalGMM
    from ._schedules import ExplicitSchedule, GeometricSchedule, LinearSchedule, Schedule
    from ._wrapper import StandardizedGMM


def __getattr__(name):
    """Import a public class on its first use and keep it as an attribute."""
    if name not in _WHERE:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(_WHERE[name], __name__), name)
    globals()[name] = value
    return value


def __dir__():
    """List the module's names with the public classes not yet imported."""
    return sorted(set(globals()) | set(__all__))
