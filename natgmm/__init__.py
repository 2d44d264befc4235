"""natgmm: diagonal Gaussian mixtures in natural parameters, with Numba kernels."""

from ._estimator import NaturalDiagonalGMM

__all__ = ["NaturalDiagonalGMM"]
__version__ = "0.1.0"
