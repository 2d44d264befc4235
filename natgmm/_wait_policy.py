"""OpenMP's wait policy, set by ``import natgmm`` before numba or scikit-learn load.

scikit-learn's k-means (and other OpenMP code in a pipeline) runs on GNU
libgomp, whose workers by default spin for a while after each parallel
region. Next to a process that keeps a core busy, or to
natgmm's own threads, those spinning workers take the cores the working
threads need (doc/performance.rst, "Threads under load"). With
``OMP_WAIT_POLICY=passive`` they sleep at once. libgomp reads the variable
once, when it is loaded, so :func:`configure_wait_policy` must run before
the first parallel region of each OpenMP runtime: ``natgmm/__init__.py``
calls it first thing. A value set by the user is kept.

This module imports neither numba nor numpy, so that ``import natgmm``
stays cheap.
"""

import os

# The environment natgmm sets unless the user has: sleep rather than spin
# while waiting for work, in every OpenMP runtime loaded after this.
WAIT_POLICY = {"OMP_WAIT_POLICY": "passive"}


def configure_wait_policy(environ=None):
    """Set ``OMP_WAIT_POLICY=passive`` in the environment unless it is set.

    Parameters
    ----------
    environ : mapping, default=None
        The environment to change; ``os.environ`` when None.

    Returns
    -------
    applied : dict
        The variables this call set (empty when the user had set them).

    Notes
    -----
    OpenMP runtimes read the variable when they are loaded: this acts on
    those loaded afterwards (numba's, at its first parallel launch, and
    scikit-learn's if its k-means was not imported yet), not on one already
    running.
    """
    environ = os.environ if environ is None else environ
    applied = {}
    for name, value in WAIT_POLICY.items():
        if name not in environ:
            environ[name] = value
            applied[name] = value
    return applied
