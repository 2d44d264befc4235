"""What a fit tells its user: progress messages (``verbose``) and where warnings point."""

import os
import sys
from time import time

import joblib
import numpy as np
import sklearn

# Warnings point at the first frame outside these: the user's call (joblib's
# too: under cross_val_score or GridSearchCV the fits run inside its Parallel).
_LIBRARY_DIRS = tuple(
    os.path.dirname(m.__file__) + os.sep for m in (sklearn, joblib, sys.modules[__package__])
)


def caller_level():
    """``stacklevel`` of the first frame outside natgmm, scikit-learn and joblib: the user's."""
    frame, level = sys._getframe(2), 2
    while frame is not None and frame.f_code.co_filename.startswith(_LIBRARY_DIRS):
        frame, level = frame.f_back, level + 1
    return level


# Whether this process has begun a fit with verbose output yet (the first
# one hears that the kernels load or compile).
_FIRST = {"fit": True}


class Progress:
    """Prints what ``verbose`` asks for as a fit goes on.

    ``verbose=1`` prints each initialisation's start and end (and which was
    kept), the annealing levels to come, one line per level, the start of
    the final EM, the split-and-merge moves, the empty components (when they
    change), and the
    lower bound of every ``verbose_interval``-th iteration; ``verbose=2``
    adds times and the change of the mean log-likelihood. Iterations are
    counted over all levels and the final EM, as ``n_iter_``; those of a
    split-and-merge round say so (their bounds are its moves' trials', on
    the round's rows, not the fit's).
    """

    def __init__(self, settings):
        self.verbose = settings.verbose
        self.interval = settings.verbose_interval
        self.annealing = settings.annealing
        # With online EM an iteration is a pass of steps over the data.
        self.unit = "; a pass of online steps" if settings.solver == "minibatch" else ""
        self._init_time = self._iter_time = time()
        self._empty = []  # the empty components last reported
        self._round = ""  # what the iterations of a split-and-merge round are
        self._round_number = 0

    def init_begin(self, trial):
        """Announce initialisation ``trial``."""
        if self.verbose >= 1:
            if _FIRST.pop("fit", False):
                print(
                    "(First fit in this process: natgmm's kernels load from numba's disk "
                    "cache, or compile on a new machine, for a new dtype or mode: up to "
                    "about a minute, counted in the first iterations' time.)"
                )
            print(f"Initialization {trial}")
            self._init_time = self._iter_time = time()
        self._empty = []

    def iteration(self, n_iter, lower_bound, change, empty, tempered=False):
        """Report iteration ``n_iter`` (counted over all levels) and its ``empty`` components.

        ``tempered``: ``lower_bound`` is a temperature level's objective.
        """
        name = "tempered objective" if tempered else "lower bound"
        if self.verbose >= 1:
            # When the empty components change: a fit can run hundreds of
            # iterations with the same ones.
            now_empty = np.flatnonzero(empty).tolist()
            if now_empty != self._empty:
                listed = f"components {now_empty} empty" if now_empty else "no component empty"
                where = f" ({self._round})" if self._round else ""
                print(f"  Iteration {n_iter}{where}: {listed}")
            self._empty = now_empty
        if n_iter % self.interval == 0:
            counted = f"total{self.unit}" + (f"; {self._round}" if self._round else "")
            if self.verbose == 1:
                print(f"  Iteration {n_iter} ({counted}): {name} {lower_bound:.5f}")
            elif self.verbose >= 2:
                now = time()
                print(
                    f"  Iteration {n_iter} ({counted})\t time lapse "
                    f"{now - self._iter_time:.5f}s\t "
                    f"ll change {change:.5f}\t {name} {lower_bound:.5f}"
                )
                self._iter_time = now

    def level_end(
        self, index, n_levels, history, first, following, lower_bound, n_distinct, n_active
    ):  # fmt: skip
        """Report the end of level ``index`` of ``n_levels``, run from iteration ``first``.

        ``following`` is the index of the next level run (``n_levels`` for
        none): the levels between were skipped. ``lower_bound``,
        ``n_distinct`` and ``n_active`` are those of the parameters the level
        ended with (not of a refused move's or extrapolation step's last
        iteration, which ``history`` may end with).
        """
        if self.verbose >= 1:
            h = history
            total = len(h["lower_bound"])
            skipped = following - index - 1
            note = ""
            if skipped:
                note = f"; settled at once, {skipped} level{'s' if skipped > 1 else ''} skipped"
            # At a temperature level the bound is the tempered objective (history_).
            bound = "tempered objective" if self.annealing == "temperature" else "lower bound"
            print(
                f"  Level {index + 1}/{n_levels} ({self.annealing} {h['level'][-1]:.4g}): "
                f"{total - first} iterations, {total} in total, {bound} "
                f"{lower_bound:.5f}, {n_active} active components, "
                f"{n_distinct} distinct means{note}"
            )

    def levels_begin(self, levels):
        """Announce the annealing ``levels``."""
        if self.verbose >= 1 and levels.size:
            print(
                f"  Annealing ({self.annealing}): {levels.size} levels, from {levels[0]:.4g} "
                f"to {levels[-1]:.4g}"
            )

    def final_em(self, n_iter):
        """Announce the final EM, after ``n_iter`` iterations of annealing levels."""
        if self.verbose >= 1:
            print(f"  Final EM, the annealing released, from iteration {n_iter + 1}")

    def sample_end(self, n_rows, n_samples, n_iter):
        """Report the end of an annealed fit on ``n_rows`` of the ``n_samples`` rows."""
        if self.verbose >= 1:
            print(
                f"  Annealed on a sample of {n_rows} of {n_samples} rows ({n_iter} iterations); "
                "EM on all rows follows"
            )

    def round_trials(self, round_, n_rows, n_samples):
        """Name the iterations that follow: split-and-merge round ``round_``'s trials of its moves.

        On ``n_rows`` of the fit's ``n_samples`` rows.
        """
        rows = "all rows" if n_rows >= n_samples else f"{n_rows} of {n_samples} rows"
        self._round_number = round_
        self._round = f"split-and-merge round {round_}, its moves tried on {rows}"

    def round_best(self):
        """Name the iterations that follow: the round's best move, run on all rows."""
        self._round = f"split-and-merge round {self._round_number}, its best move run on all rows"

    def _round_end(self):
        """Name the iterations that follow as no split-and-merge round's (a round has ended)."""
        self._round = ""

    def move(self, move, before, after, end=None):
        """Report a split-and-merge ``move`` ``(i, j, k)`` and the lower bounds it went between.

        ``end``: why the rounds end after it (its verdict first), None if
        it was kept and they go on.
        """
        self._round_end()
        if self.verbose >= 1:
            i, j, k = move
            verdict = "kept" if end is None else f"{end}: the rounds end"
            what = f"split {i} and {j} anew" if k == i else f"merged {i} and {j}, split {k}"
            print(f"  Split-and-merge: {what}: lower bound {before:.5f} -> {after:.5f}, {verdict}")

    def reallocation(self, move, before, after, kept):
        """Report a spare component moved at an annealing level: ``move`` ``(i, j, k)``."""
        if self.verbose >= 1:
            i, j, k = move
            print(
                f"  Spare component {j} (its mean was {i}'s) split {k}: level objective "
                f"{before:.5f} -> {after:.5f}, {'kept' if kept else 'not kept'}"
            )

    def no_move(self):
        """Report a split-and-merge round that found no move to try."""
        self._round_end()
        if self.verbose >= 1:
            print(
                "  Split-and-merge: no move to try (a move merges two components that "
                "share rows and splits a third, or splits anew a pair on one mean): the "
                "rounds end"
            )

    def screened_out(self):
        """Report a screened split-and-merge round whose moves gained nothing at first."""
        self._round_end()
        if self.verbose >= 1:
            print(
                "  Split-and-merge: no pair of components shares enough rows; the moves of those "
                "that share any gained nothing in their first iterations: the rounds end"
            )

    def first_batch(self, n_rows):
        """Announce the EM on a stream's first batch, before its first step."""
        if self.verbose >= 1:
            print(
                f"partial_fit: EM on the first batch ({n_rows} rows), as fit would, then its step"
            )

    def first_batch_end(self, n_iter, lower_bound, converged):
        """Report the end of the first batch's EM after ``n_iter`` iterations."""
        if self.verbose >= 1:
            ended = "converged" if converged else "stopped at max_iter"
            print(f"partial_fit: the first batch's EM {ended} after {n_iter} iterations, "
                  f"lower bound {lower_bound:.5f}")  # fmt: skip

    def stream_step(self, n_steps, n_rows, lower_bound, step, level):
        """Report ``partial_fit``'s online step ``n_steps`` (every ``verbose_interval``-th).

        ``lower_bound`` is the batch's mean log-likelihood before the step,
        ``step`` the weight the batch's statistics were blended in with,
        ``level`` the annealing level of the step (NaN after the levels).
        """
        if self.verbose < 1 or (n_steps % self.interval and n_steps != 1):
            return
        at = "" if np.isnan(level) else f" at {self.annealing} level {level:.4g}"
        print(
            f"partial_fit step {n_steps}{at}: a batch of {n_rows} rows, its mean "
            f"log-likelihood before the step {lower_bound:.5f}, blended in with step {step:.4g}"
        )

    def kept(self, trial, lower_bound):
        """Say which of several initialisations was kept."""
        if self.verbose >= 1:
            print(f"Kept initialization {trial} (lower bound {lower_bound:.5f}).")

    def init_end(self, lower_bound, converged, n_iter):
        """Report the end of an initialisation after ``n_iter`` iterations in total."""
        message = "converged" if converged else "did not converge"
        message = f"Initialization {message} after {n_iter} iterations in total"
        if self.verbose == 1:
            print(f"{message}, lower bound {lower_bound:.5f}.")
        elif self.verbose >= 2:
            print(
                f"{message}. time lapse {time() - self._init_time:.5f}s\t "
                f"lower bound {lower_bound:.5f}."
            )
