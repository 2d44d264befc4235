"""natgmm's version, and the stamp it leaves in pickled estimators.

scikit-learn warns when a pickle of one of its own estimators was written by
another scikit-learn version (``InconsistentVersionWarning``); it stores no
version for other packages' estimators. natgmm's estimators record natgmm's
version the same way and warn when a pickle comes from another one.
"""

import warnings

__version__ = "0.1.0"

_KEY = "_natgmm_version"


def stamped(state):
    """Return a pickled estimator's ``state`` with natgmm's version in it."""
    return {**state, _KEY: __version__}


def unstamped(state, name):
    """Return ``state`` without the version; warn if another natgmm version wrote it.

    Pickles written before versions were recorded have none and load
    silently (``tests/test_compat.py`` loads some).
    """
    state = dict(state)
    version = state.pop(_KEY, None)
    if version is not None and version != __version__:
        warnings.warn(
            f"Trying to unpickle estimator {name} from natgmm version {version} when using "
            f"version {__version__}. This might lead to breaking code or invalid results. "
            "Use at your own risk: refit the model with this version if you can.",
            UserWarning,
            stacklevel=3,
        )
    return state
