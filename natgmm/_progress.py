"""Progress messages of a fit (``verbose``), in scikit-learn's style."""

from time import time

import numpy as np


class Progress:
    """Prints what ``verbose`` asks for as a fit goes on.

    ``verbose=1`` prints each initialisation's start and end, each annealing
    level and empty components; ``verbose=2`` also every
    ``verbose_interval`` iterations with times and the change of the mean
    log-likelihood.
    """

    def __init__(self, settings):
        self.verbose = settings.verbose
        self.interval = settings.verbose_interval
        self.annealing = settings.annealing
        self._init_time = self._iter_time = time()

    def init_begin(self, trial):
        """Announce initialisation ``trial``."""
        if self.verbose >= 1:
            print(f"Initialization {trial}")
            self._init_time = self._iter_time = time()

    def iteration(self, n_iter, change, empty):
        """Report iteration ``n_iter``: its ``change`` of the bound, its ``empty`` components."""
        if self.verbose >= 1 and empty.any():
            print(f"  Iteration {n_iter}: components {np.flatnonzero(empty).tolist()} empty")
        if n_iter % self.interval == 0:
            if self.verbose == 1:
                print(f"  Iteration {n_iter}")
            elif self.verbose >= 2:
                now = time()
                print(
                    f"  Iteration {n_iter}\t time lapse {now - self._iter_time:.5f}s\t "
                    f"ll change {change:.5f}"
                )
                self._iter_time = now

    def level_end(self, history):
        """Report the end of an annealing level from the fit's trace ``history``."""
        if self.verbose >= 1:
            h = history
            print(
                f"  Level {h['level'][-1]:.4g} ({self.annealing}): iterations "
                f"{len(h['lower_bound'])}, lower bound {h['lower_bound'][-1]:.5f}, "
                f"active {h['n_active'][-1]}, distinct means {h['n_distinct'][-1]}"
            )

    def init_end(self, lower_bound, converged):
        """Report the end of an initialisation."""
        message = "converged" if converged else "did not converge"
        if self.verbose == 1:
            print(f"Initialization {message}.")
        elif self.verbose >= 2:
            print(
                f"Initialization {message}. time lapse {time() - self._init_time:.5f}s\t "
                f"lower bound {lower_bound:.5f}."
            )
