"""The job of ``python -m natgmm``: its three sections, their helpers and the verdict.

``natgmm/__main__.py`` holds the command line (its ``--help`` says what each
section measures and what its columns mean) and imports this module only
after the arguments are parsed and checked: ``--help`` and a usage error
answer without this module's imports (scikit-learn's data sets, models and
metrics, scipy, threadpoolctl).

Importing this module runs nothing; :func:`run` does.
"""

import math
import os
import sys
import textwrap
import threading
import time
import warnings
from contextlib import contextmanager
from pathlib import Path

import numba
import numpy as np
import scipy
import sklearn
from scipy.special import log_softmax, logsumexp, softmax
from sklearn.datasets import load_digits
from sklearn.decomposition import FactorAnalysis
from sklearn.exceptions import ConvergenceWarning
from sklearn.metrics import normalized_mutual_info_score
from sklearn.mixture import GaussianMixture
from threadpoolctl import threadpool_limits

import natgmm
from natgmm import NaturalDiagonalGMM
from natgmm._solver import rows_for_every_path
from natgmm._threading import n_threads, usable_cores

# Time ratios within 5 % of one read as the same speed (run-to-run spread).
_SAME_SPEED = 1.05


class _Reporter:
    """Prints the job's lines; ``step`` shows a task's progress and its time."""

    def __init__(self, stream=None, tick=2.0, slow_tick=10.0):
        self.stream = stream or sys.stdout
        self.tick, self.slow_tick = tick, slow_tick

    def line(self, text=""):
        print(text, file=self.stream, flush=True)

    @contextmanager
    def step(self, label):
        """Print ``label ...``, then dots while it runs, then the time it took.

        A dot every ``tick`` seconds for ten dots, then every ``slow_tick``.
        """
        print(f"  {label} ...", end="", file=self.stream, flush=True)
        done = threading.Event()

        def dots():
            n_dots = 0
            while not done.wait(self.tick if n_dots < 10 else self.slow_tick):
                print(".", end="", file=self.stream, flush=True)
                n_dots += 1

        ticker = threading.Thread(target=dots, daemon=True)
        ticker.start()
        start = time.perf_counter()
        try:
            yield
        finally:
            done.set()
            ticker.join()
            print(f" {time.perf_counter() - start:.1f} s", file=self.stream, flush=True)


@contextmanager
def _no_convergence_warnings():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        yield


def _timed_fit(model, X):
    """Fit ``model`` on ``X``; return the wall time in seconds."""
    with _no_convergence_warnings():
        start = time.perf_counter()
        model.fit(X)
        return time.perf_counter() - start


def _kernel_cache_state():
    """Whether numba's disk cache holds natgmm's kernels: True, False or None.

    Looks for numba's index files next to natgmm's modules (numba's default
    cache location), newer than their module; None when another location is
    in use, so that the caller falls back to a message that covers both
    cases. A kernel that was never run (and so never cached) is not seen.
    """
    if os.environ.get("NUMBA_CACHE_DIR"):
        return None
    package = Path(natgmm.__file__).parent
    cache = package / "__pycache__"
    if not os.access(package, os.W_OK):
        return None  # numba then caches in the user's cache directory
    index = list(cache.glob("*.nbi"))
    if not index:
        return False
    for stem in {path.name.split(".")[0] for path in index}:
        source = package / f"{stem}.py"
        newest = max(p.stat().st_mtime for p in cache.glob(f"{stem}.*.nbi"))
        if source.exists() and source.stat().st_mtime > newest:
            return False  # the module changed since: numba compiles again
    return True


def _prepare_kernels(report, annealing, n_jobs=None, speed_shape=None):
    """Compile or load every kernel the job uses, on a small fit of each kind.

    ``speed_shape``, ``(n_samples, n_features, n_components)`` of the speed
    section (None: the section does not run), adds a short default fit that
    takes the paths its fit takes: those of passes large enough for float32
    steps (``mixed_precision``) and threads, and of k-means with groups of
    centres, on the section's features and components and
    :func:`~natgmm._solver.rows_for_every_path` rows.
    """
    state = _kernel_cache_state()
    if state is True:
        label = "loading natgmm's compiled kernels from numba's disk cache"
    elif state is False:
        label = "compiling natgmm's kernels (first run only, up to a minute; numba caches them)"
    else:
        label = "loading or compiling natgmm's kernels (the first run compiles for up to a minute)"
    X = np.random.default_rng(0).normal(size=(256, 3))
    with report.step(label), _no_convergence_warnings():
        # Three components: the annealed fit then tries split-and-merge moves.
        for options in ({}, {"annealing": annealing}, {"solver": "gradient"}):
            model = NaturalDiagonalGMM(3, max_iter=2, n_jobs=n_jobs, random_state=0, **options)
            model.fit(X)
            model.score(X)
            model.predict(X)
        if speed_shape is not None:
            n_samples, n_features, n_components = speed_shape
            n_rows = rows_for_every_path(n_samples, n_features, n_components)
            X, _ = mixture_data(n_rows, n_features, n_components)
            model = NaturalDiagonalGMM(n_components, max_iter=2, n_jobs=n_jobs, random_state=0)
            model.fit(X).score(X)
    if state is not True:  # (what this job compiled is not all a user's fits need)
        report.line(
            "  (the kernels this job uses; float32 data, missing values and other modes compile "
            "their\n  own in their first fit, once per machine, silently unless verbose=1)"
        )


def mixture_data(n_samples, n_features, n_components, seed=0):
    """Make a mixture of heavy-tailed clusters: ``X, y``.

    Centres are uniform in ``[-10, 10]``, spreads ``3 * lognormal(0, 0.5)``
    per component and feature, weights from ``Dirichlet(2)``, and the noise
    Student's t with 3 degrees of freedom: clusters with heavier tails than a
    Gaussian, as latents of real data tend to have, so that EM has work to do
    after the k-means start.

    Parameters
    ----------
    n_samples, n_features, n_components : int
        Shape of the data and number of clusters.
    seed : int, default=0
        Seed of ``numpy.random.default_rng``; the data are a pure function
        of the arguments.

    Returns
    -------
    X : ndarray of shape (n_samples, n_features)
        The data, float64.
    y : ndarray of shape (n_samples,)
        The cluster of each row.
    """
    rng = np.random.default_rng(seed)
    centres = rng.uniform(-10.0, 10.0, (n_components, n_features))
    spreads = 3.0 * rng.lognormal(0.0, 0.5, (n_components, n_features))
    weights = rng.dirichlet(np.full(n_components, 2.0))
    y = rng.choice(n_components, n_samples, p=weights)
    X = rng.standard_t(3.0, (n_samples, n_features))
    X *= spreads[y]
    X += centres[y]
    return X, y


def digits_latents(n_factors, seed=0):
    """FactorAnalysis latents of scikit-learn's digits: ``Z, y``.

    BLAS runs on one thread and the SVD is randomised: a threaded BLAS on a
    busy machine slows this small fit badly.

    Parameters
    ----------
    n_factors : int
        Number of latents.
    seed : int, default=0
        ``random_state`` of the factor analysis.

    Returns
    -------
    Z : ndarray of shape (1797, n_factors)
        The latents.
    y : ndarray of shape (1797,)
        The digit of each image.
    """
    X, y = load_digits(return_X_y=True)
    with threadpool_limits(limits=1):
        Z = FactorAnalysis(n_factors, svd_method="randomized", random_state=seed).fit_transform(X)
    return Z, y


def naive_gradient_fit(X, n_components, n_steps, learning_rate=1e-3, clip=1.0, seed=0):
    """Adam on the natural parameters of a diagonal mixture, with no safeguard.

    The parameters are the weight logits, ``eta1 = mean / var`` and
    ``eta2 = -1 / (2 var)``, in the units of ``X``; each step follows the
    gradient of the mean log-likelihood, clipped to norm ``clip``, as
    gradient-trained latent models do. Nothing keeps ``eta2`` negative.

    Parameters
    ----------
    X : ndarray of shape (n_samples, n_features)
        The data.
    n_components : int
        Number of components.
    n_steps : int
        Largest number of Adam steps.
    learning_rate : float, default=1e-3
        Adam's step size.
    clip : float, default=1.0
        Largest norm of the gradient.
    seed : int, default=0
        Seed of the start: means at random rows, every variance the data's.

    Returns
    -------
    n_steps : int
        Steps taken: up to the first non-finite log-likelihood, or all.
    mean_log_likelihood : float
        Of the last step; NaN if the fit broke down.
    """
    rng = np.random.default_rng(seed)
    n_samples = X.shape[0]
    variance = np.tile(X.var(axis=0), (n_components, 1))
    eta1 = X[rng.choice(n_samples, n_components, replace=False)] / variance
    params = [np.zeros(n_components), eta1, -0.5 / variance]
    first = [np.zeros_like(p) for p in params]
    second = [np.zeros_like(p) for p in params]
    X2 = X**2
    with np.errstate(all="ignore"):
        for step in range(1, n_steps + 1):
            logits, eta1, eta2 = params
            log_norm = (eta1**2 / (4 * eta2) + 0.5 * np.log(-eta2 / np.pi)).sum(axis=1)
            log_joint = X @ eta1.T + X2 @ eta2.T + log_norm + log_softmax(logits)
            log_lik = logsumexp(log_joint, axis=1)
            if not np.isfinite(log_lik.mean()):
                return step, float("nan")
            resp = np.exp(log_joint - log_lik[:, None])
            mass = resp.mean(axis=0)
            mean, square = -eta1 / (2 * eta2), eta1**2 / (4 * eta2**2) - 0.5 / eta2
            grads = [
                mass - softmax(logits),
                resp.T @ X / n_samples - mass[:, None] * mean,
                resp.T @ X2 / n_samples - mass[:, None] * square,
            ]
            norm = math.sqrt(sum(float((g**2).sum()) for g in grads))
            if norm > clip:
                grads = [g * (clip / norm) for g in grads]
            for p, g, m, v in zip(params, grads, first, second, strict=True):
                m += 0.1 * (g - m)
                v += 0.001 * (g * g - v)
                p += learning_rate * (m / (1 - 0.9**step)) / (np.sqrt(v / (1 - 0.999**step)) + 1e-8)
    return n_steps, float(log_lik.mean())


def _table(report, header, rows):
    """Print aligned columns: the first left-aligned, the others right-aligned."""
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    for row in [header, *rows]:
        cells = [str(row[0]).ljust(widths[0])]
        cells += [str(c).rjust(w) for c, w in zip(row[1:], widths[1:], strict=True)]
        report.line("  " + "  ".join(cells).rstrip())


def _ratio(slow, fast):
    """``slow / fast``, NaN unless both are positive numbers."""
    return slow / fast if slow > 0 and fast > 0 else float("nan")


def _per_iteration(report, fitted, X, n_timed, seed, n_jobs):
    """Seconds per EM iteration of both libraries, from natgmm's ``fitted`` parameters.

    Both run EM with ``tol=0``: the time of ``1 + n_timed`` iterations minus
    that of 1, over ``n_timed``, leaves out validation, initialisation and
    the final labelling pass. NaN where noise made the difference zero or
    negative. natgmm's steps are float64's (``mixed_precision=False``), as
    scikit-learn's; the default fits of :func:`speed` take the steps before
    convergence in float32.
    """
    K = fitted.n_components
    # scikit-learn runs its initialisation even when all three *_init arrays
    # are given; "random_from_data" keeps it from running k-means there.
    start = dict(
        weights_init=fitted.weights_,
        means_init=fitted.means_,
        precisions_init=fitted.precisions_,
        tol=0.0,
        random_state=seed,
    )
    make = {
        "sklearn": lambda n: GaussianMixture(
            K, covariance_type="diag", init_params="random_from_data", max_iter=n, **start
        ),
        "natgmm": lambda n: NaturalDiagonalGMM(
            K, max_iter=n, n_jobs=n_jobs, mixed_precision=False, **start
        ),
    }
    # Short fits are repeated and the best time counts: three times for
    # natgmm, and for scikit-learn too when its fits take under a second.
    # Interleaving puts a change of the machine's load on both.
    times = {(name, n): [] for name in make for n in (1, 1 + n_timed)}
    with report.step(f"per EM iteration: 1 and {1 + n_timed} iterations from one start, both"):
        for repeat in range(3):
            for name in make:
                if name == "sklearn" and repeat and min(times[name, 1 + n_timed]) > 1.0:
                    continue
                for n in (1, 1 + n_timed):
                    times[name, n].append(_timed_fit(make[name](n), X))
    # A difference that noise made zero or negative is not a measurement.
    per_iter = {}
    for name in make:
        difference = min(times[name, 1 + n_timed]) - min(times[name, 1])
        per_iter[name] = difference / n_timed if difference > 0 else float("nan")
    return per_iter


def speed(report, n_samples, n_features, n_components, n_timed=5, seed=0, n_jobs=None):
    """Section 1: default fits and EM iterations of both libraries on one data set.

    Parameters
    ----------
    report : _Reporter
        Where the lines go.
    n_samples, n_features, n_components : int
        Size of the synthetic mixture and of the fitted models.
    n_timed : int, default=5
        EM iterations in the per-iteration timing.
    seed : int, default=0
        Seed of the data and ``random_state`` of both fits.
    n_jobs : int, default=None
        natgmm's threads.

    Returns
    -------
    dict
        ``fit_seconds``, ``n_iter``, ``seconds_per_iter`` and ``score`` per
        library (``"sklearn"``, ``"natgmm"``) and the shape; the caller may add
        ``busy`` (the machine was loaded and threads were not limited), which
        :func:`verdict` reports.
    """
    K = n_components
    report.line(f"1. Speed: the same default fit, {n_samples} x {n_features} data, K={K}")
    with report.step(f"making {n_samples} x {n_features} data, {K} heavy-tailed clusters"):
        X, _ = mixture_data(n_samples, n_features, K, seed)
    models = {
        "sklearn": GaussianMixture(K, covariance_type="diag", random_state=seed),
        "natgmm": NaturalDiagonalGMM(K, n_jobs=n_jobs, random_state=seed),
    }
    labels = {
        "sklearn": "sklearn GaussianMixture(covariance_type='diag')",
        "natgmm": "natgmm NaturalDiagonalGMM",
    }
    fit_seconds = {}
    for name, model in models.items():
        with report.step(f"{labels[name]}.fit(X), defaults"):
            fit_seconds[name] = _timed_fit(model, X)

    per_iter = _per_iteration(report, models["natgmm"], X, n_timed, seed, n_jobs)
    score = {name: model.score(X) for name, model in models.items()}
    n_iter = {name: model.n_iter_ for name, model in models.items()}

    report.line()
    rows = [
        [labels[name], f"{fit_seconds[name]:.2f}", n_iter[name], f"{per_iter[name]:.4f}",
         f"{score[name]:.6f}"]
        for name in models
    ]  # fmt: skip
    fit_ratio = _ratio(fit_seconds["sklearn"], fit_seconds["natgmm"])
    iter_ratio = _ratio(per_iter["sklearn"], per_iter["natgmm"])
    rows.append(["sklearn time / natgmm time", f"{fit_ratio:.1f}x", "", f"{iter_ratio:.1f}x", ""])
    _table(report, ["", "fit s", "iters", "s/iter", "mean log-lik"], rows)
    report.line(
        "  fit s: whole fit(X), k-means start included; iters: EM iterations (n_iter_); "
        "s/iter: one float64 EM\n  iteration, timed apart (natgmm's default fit takes its "
        "steps before convergence in float32,\n  mixed_precision); mean log-lik: score(X), "
        "higher is better. Above 1x natgmm is faster."
    )
    return dict(
        shape=X.shape,
        n_components=K,
        fit_seconds=fit_seconds,
        n_iter=n_iter,
        seconds_per_iter=per_iter,
        score=score,
    )


def quality(report, Z, y, n_components, annealing, seeds=(0,), n_jobs=None):
    """Section 2: one annealed natgmm fit against ``GaussianMixture(n_init=5)``, per seed.

    Parameters
    ----------
    report : _Reporter
        Where the lines go.
    Z : ndarray of shape (n_samples, n_features)
        The latents.
    y : ndarray of shape (n_samples,)
        True classes, for the NMI only.
    n_components : int
        Components of both fits.
    annealing : {"floor", "fixed", "temperature"}
        natgmm's annealing mode, with its default schedule.
    seeds : sequence of int, default=(0,)
        ``random_state`` of both fits, one pair of fits per seed: which of
        two nearby optima a fit reaches depends on its seed, so one seed
        alone says little.
    n_jobs : int, default=None
        natgmm's threads.

    Returns
    -------
    dict
        ``seconds``, ``n_iter``, ``score`` and ``nmi`` per library (lists,
        one entry per seed), the seeds and the settings.
    """
    K, seeds = n_components, list(seeds)
    report.line(
        f"2. Quality: one annealed fit against the best of five starts, "
        f"{Z.shape[0]} x {Z.shape[1]} digits latents, K={K}, random_state "
        + (f"{seeds[0]}" if len(seeds) == 1 else f"{seeds[0]} to {seeds[-1]}")
    )
    labels = {
        "sklearn": "sklearn GaussianMixture, n_init=5",
        "natgmm": f"natgmm annealing={annealing!r}, 1 fit",
    }
    results = {key: {name: [] for name in labels} for key in ("seconds", "n_iter", "score", "nmi")}
    for seed in seeds:
        models = {
            "sklearn": GaussianMixture(K, covariance_type="diag", n_init=5, random_state=seed),
            "natgmm": NaturalDiagonalGMM(K, annealing=annealing, n_jobs=n_jobs, random_state=seed),
        }
        for name, model in models.items():
            with report.step(f"{labels[name]}, random_state={seed}"):
                results["seconds"][name].append(_timed_fit(model, Z))
            results["score"][name].append(model.score(Z))
            results["nmi"][name].append(normalized_mutual_info_score(y, model.predict(Z)))
            results["n_iter"][name].append(model.n_iter_)
    report.line()
    rows = [
        [labels[name], f"{np.median(results['seconds'][name]):.2f}",
         f"{np.median(results['n_iter'][name]):.0f}", f"{np.mean(results['score'][name]):.4f}",
         f"{np.mean(results['nmi'][name]):.3f}"]
        for name in labels
    ]  # fmt: skip
    _table(report, ["", "fit s", "iters", "mean log-lik", "NMI"], rows)
    gaps = np.subtract(results["score"]["natgmm"], results["score"]["sklearn"])
    report.line(
        f"  natgmm - sklearn, mean log-lik per seed: {_signed(gaps)}.\n"
        "  fit s, iters: medians over the seeds; mean log-lik, NMI: means. NMI: agreement of "
        "the clusters\n  with the true digits, 0 (none) to 1 (the same partition); no fit sees "
        "the labels. iters: EM\n  iterations of the kept fit (natgmm: all levels, the "
        "final EM and the split-and-merge trials)."
    )
    return dict(n_components=K, annealing=annealing, seeds=seeds, **results)


def _signed(values):
    """``values`` as signed numbers with three decimals, comma-separated."""
    return ", ".join(f"{v:+.3f}" for v in values)


def robustness(report, Z, n_components, n_steps, seed=0, n_jobs=None):
    """Section 3: raw-scale latents, a naive natural-parameter fit and natgmm.

    Parameters
    ----------
    report : _Reporter
        Where the lines go.
    Z : ndarray of shape (n_samples, n_features)
        Latents of order one; each is multiplied by a factor from [40, 80].
    n_components : int
        Components of every fit.
    n_steps : int
        Largest number of the naive fit's Adam steps.
    seed : int, default=0
        Seed of the factors, of the naive start and ``random_state``.
    n_jobs : int, default=None
        natgmm's threads.

    Returns
    -------
    dict
        Per fit (``"naive raw"``, ``"naive standardised"``, ``"natgmm em"``,
        ``"natgmm gradient"``): ``steps``, ``finite`` and ``score`` (mean
        log-likelihood of the raw latents).
    """
    K = n_components
    Z_raw = Z * np.random.default_rng(seed).uniform(40.0, 80.0, Z.shape[1])
    std = Z_raw.std(axis=0)
    eta2 = -0.5 / std**2
    report.line(
        f"3. Robustness: raw-scale latents, per-dimension std {std.min():.0f} to "
        f"{std.max():.0f}, K={K}"
    )
    report.line(
        f"  a component as wide as the data has eta2 = -1/(2 var) from {eta2.min():.1e} "
        f"to {eta2.max():.1e}"
    )
    results = {}
    with report.step(f"naive Adam on (eta1, eta2), raw units, at most {n_steps} steps"):
        steps, score = naive_gradient_fit(Z_raw, K, n_steps, seed=seed)
    results["naive raw"] = dict(steps=steps, finite=bool(np.isfinite(score)), score=score)
    # The same code on standardised latents; the log-likelihood is mapped
    # back to raw units by the log-Jacobian of the standardisation.
    mean = Z_raw.mean(axis=0)
    with report.step("the same naive fit on the latents standardised"):
        steps, score = naive_gradient_fit((Z_raw - mean) / std, K, n_steps, seed=seed)
    results["naive standardised"] = dict(
        steps=steps, finite=bool(np.isfinite(score)), score=score - np.log(std).sum()
    )
    natgmm_fits = {
        "natgmm em": NaturalDiagonalGMM(K, n_jobs=n_jobs, random_state=seed),
        "natgmm gradient": NaturalDiagonalGMM(
            K, solver="gradient", n_jobs=n_jobs, random_state=seed
        ),
    }
    for name, model in natgmm_fits.items():
        with report.step(f"natgmm, solver={model.solver!r}, raw units"):
            _timed_fit(model, Z_raw)
        score = model.score(Z_raw)
        finite = all(
            np.isfinite(a).all() for a in (model.weights_, model.eta1_, model.eta2_, score)
        )
        results[name] = dict(steps=model.n_iter_, finite=bool(finite), score=score)

    labels = {
        "naive raw": "naive Adam on eta1, eta2, raw units",
        "naive standardised": "naive Adam on eta1, eta2, standardised",
        "natgmm em": "natgmm NaturalDiagonalGMM (EM)",
        "natgmm gradient": "natgmm solver='gradient' (Adam)",
    }
    report.line()
    rows = [
        [labels[name], r["steps"], "yes" if r["finite"] else "NO", f"{r['score']:.4f}"]
        for name, r in results.items()
    ]
    _table(report, ["", "steps/iters", "finite", "mean log-lik"], rows)
    report.line(
        "  steps/iters: Adam steps (up to the first NaN) or EM iterations; finite: every "
        "parameter and the\n  log-likelihood are numbers. Log-likelihoods are of the raw "
        "latents. natgmm's gradient solver steps on\n  log(precision), so eta2 < 0 always; "
        "its EM works on internally standardised data."
    )
    return results


def _seconds(t):
    """``t`` seconds in two significant figures (a short fit reads 0.046 s, not 0.0 s)."""
    return f"{t:.2g} s" if t < 10 else f"{t:.0f} s"


def _compare(ratio):
    """Words for a time ratio ``theirs / ours``."""
    if not np.isfinite(ratio):
        return "not measurable"
    if ratio >= _SAME_SPEED:
        return f"{ratio:.1f}x faster"
    if ratio <= 1 / _SAME_SPEED:
        return f"{1 / ratio:.1f}x SLOWER, a loss for natgmm"
    return "about as fast"


def verdict(results):
    """Say in words what each section showed, losses included.

    Parameters
    ----------
    results : dict
        The dictionaries returned by :func:`speed`, :func:`quality` and
        :func:`robustness` under ``"speed"``, ``"quality"`` and
        ``"robustness"``; a missing key skips its section.

    Returns
    -------
    list of str
        One paragraph per section, each opening with natgmm's outcome:
        "natgmm wins", "natgmm loses", "mixed", "a tie" or "not measured".
    """
    sections = (
        ("speed", _speed_verdict),
        ("quality", _quality_verdict),
        ("robustness", _robustness_verdict),
    )
    return [say(results[name]) for name, say in sections if results.get(name)]


def _speed_verdict(s):
    """Return the verdict's paragraph on the results ``s`` of :func:`speed`."""
    fit, it = s["fit_seconds"], s["seconds_per_iter"]
    fit_ratio, iter_ratio = (
        _ratio(fit["sklearn"], fit["natgmm"]),
        _ratio(it["sklearn"], it["natgmm"]),
    )
    wins = [r >= _SAME_SPEED for r in (fit_ratio, iter_ratio) if np.isfinite(r)]
    if not wins:
        outcome = "not measured"
    else:
        outcome = "natgmm wins" if all(wins) else "natgmm loses" if not any(wins) else "mixed"
    n_samples, n_features = s["shape"]
    text = (
        f"Speed, {outcome} ({n_samples} x {n_features}, K={s['n_components']}): the default "
        f"fit took {_seconds(fit['natgmm'])} against {_seconds(fit['sklearn'])} for scikit-learn "
        f"({_compare(fit_ratio)}), one EM iteration {it['natgmm']:.3g} s against "
        f"{it['sklearn']:.3g} s ({_compare(iter_ratio)}). "
    )
    gap = s["score"]["natgmm"] - s["score"]["sklearn"]
    if abs(gap) <= 1e-6 * max(1.0, abs(s["score"]["sklearn"])):
        text += "Both reached the same log-likelihood: the same EM from the same k-means start."
    else:
        text += (
            f"The log-likelihoods differ by {abs(gap):.2g} "
            f"({'natgmm' if gap > 0 else 'scikit-learn'} higher)."
        )
    if s.get("busy"):
        text += (
            " The machine was busy, which slows scikit-learn's spinning BLAS threads more "
            "than natgmm's: these ratios overstate natgmm's lead (--threads 1, or a quiet "
            "machine, for a fair one)."
        )
    outside = fit["natgmm"] - s["n_iter"]["natgmm"] * it["natgmm"]
    if fit["natgmm"] > 0 and outside / fit["natgmm"] > 0.5:
        text += (
            f" About {outside / fit['natgmm']:.0%} of natgmm's fit is outside its EM "
            "iterations, mostly its k-means start."
        )
    return text


def _quality_verdict(q):
    """Return the verdict's paragraph on the results ``q`` of :func:`quality`.

    A seed is won (lost) when natgmm's mean log-likelihood is more than 0.001
    above (below) scikit-learn's; natgmm wins the section when it won more
    seeds than it lost.
    """
    score, nmi, seconds = q["score"], q["nmi"], q["seconds"]
    gaps = np.subtract(score["natgmm"], score["sklearn"])
    won, lost, n_seeds = int(np.sum(gaps > 1e-3)), int(np.sum(gaps < -1e-3)), len(gaps)
    outcome = "natgmm wins" if won > lost else "natgmm loses" if lost > won else "a tie"
    ties = n_seeds - won - lost
    tally = f"above in {won} of {n_seeds} seeds, below in {lost}" + (
        f", within 0.001 in {ties}" if ties else ""
    )
    mean_nmi = {name: float(np.mean(v)) for name, v in nmi.items()}
    nmi_gap = mean_nmi["natgmm"] - mean_nmi["sklearn"]
    nmi_words = "higher" if nmi_gap > 0.005 else "lower" if nmi_gap < -0.005 else "the same"
    median = {name: float(np.median(v)) for name, v in seconds.items()}
    return (
        f"Quality, {outcome} (digits, K={q['n_components']}): one annealed fit "
        f"(annealing={q['annealing']!r}) against scikit-learn's best of five starts, "
        f"mean log-likelihood {tally} ({_signed(gaps)}; means {np.mean(score['natgmm']):.3f} "
        f"and {np.mean(score['sklearn']):.3f}); NMI {mean_nmi['natgmm']:.3f} against "
        f"{mean_nmi['sklearn']:.3f} ({nmi_words}); a median {_seconds(median['natgmm'])} against "
        f"{_seconds(median['sklearn'])} per fit "
        f"({_compare(_ratio(median['sklearn'], median['natgmm']))})."
    )


def _robustness_verdict(r):
    """Return the verdict's paragraph on the results ``r`` of :func:`robustness`."""
    naive = r["naive raw"]
    failed = [name for name in ("natgmm em", "natgmm gradient") if not r[name]["finite"]]
    # Against a naive gradient fit, not scikit-learn: EM (scikit-learn's
    # too) takes no steps on the natural parameters.
    if failed:
        outcome = "natgmm fails"
    elif naive["finite"]:
        outcome = "nothing to avoid this time"
    else:
        outcome = "natgmm holds"
    if naive["finite"]:
        text = (
            f"Robustness, {outcome}: the naive gradient fit stayed finite on the raw-scale "
            f"latents this time ({naive['steps']} steps). "
        )
    else:
        text = (
            f"Robustness, {outcome}: the naive gradient fit in natural parameters turned NaN "
            f"after {naive['steps']} Adam steps on raw-scale latents"
            + (
                ", and stayed finite on the same latents standardised. "
                if r["naive standardised"]["finite"]
                else ". "
            )
        )
    if failed:
        text += f"natgmm failed too: {', '.join(failed)} gave non-finite numbers."
    else:
        text += (
            "natgmm fitted them in raw units, by EM and by gradient steps, all finite. "
            "(EM, scikit-learn's as natgmm's, takes no gradient steps: this question is about "
            "gradient fits, not a contest with scikit-learn.)"
        )
    return text


def _run(report, args):
    """Prepare the kernels and run the chosen sections; return their results."""
    quick = args.quick
    n_samples = args.n_samples or (20_000 if quick else 100_000)
    n_features = args.n_features or (20 if quick else 50)
    n_components = args.n_components or (20 if quick else 50)
    n_steps = 100 if quick else 500
    sections = set(args.sections)
    speed_shape = (n_samples, n_features, n_components) if "1" in sections else None
    _prepare_kernels(report, args.annealing, args.threads, speed_shape)
    report.line()
    results = {}
    if "1" in sections:
        results["speed"] = speed(
            report, n_samples, n_features, n_components, seed=args.seed, n_jobs=args.threads
        )
        report.line()
    if sections & {"2", "3"}:
        with report.step(f"digits -> FactorAnalysis({args.n_factors} latents)"):
            Z, y = digits_latents(args.n_factors, args.seed)
        report.line()
    if "2" in sections:
        seeds = range(args.seed, args.seed + args.quality_seeds)
        results["quality"] = quality(
            report, Z, y, args.quality_components, args.annealing, seeds, args.threads
        )
        report.line()
    if "3" in sections:
        results["robustness"] = robustness(
            report, Z, args.quality_components, n_steps, args.seed, args.threads
        )
        report.line()
    return results


def _header(report, args):
    """Print what runs and on what machine; return whether the machine is busy."""
    report.line(
        f"natgmm {natgmm.__version__}: diagonal Gaussian mixtures for scikit-learn, fitted in "
        "natural parameters by Numba kernels."
    )
    report.line(
        "This run compares it with sklearn.mixture.GaussianMixture(covariance_type='diag') "
        "on this machine. Options: --help."
    )
    cores = usable_cores()
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    kernel_threads = n_threads(None)
    report.line(
        f"Machine: {cores} usable core{'s' if cores != 1 else ''}, {kernel_threads} kernel "
        f"thread{'s' if kernel_threads != 1 else ''}, load {load:.1f}; "
        f"numpy {np.__version__}, scipy {scipy.__version__}, scikit-learn {sklearn.__version__}, "
        f"numba {numba.__version__}."
    )
    threads = "all cores" if args.threads is None else f"{args.threads} (--threads)"
    report.line(f"Threads for both libraries: {threads}.")
    if load > cores:
        report.line(
            textwrap.fill(
                "The machine is busy (load above its cores): other processes share the cores, "
                "every wall time below is longer and noisier than on a quiet machine, and thread "
                "pools that wait for each other slow down, scikit-learn's BLAS most; "
                "--threads 1 gives a fairer comparison.",
                100,
                initial_indent="  ",
                subsequent_indent="  ",
            )
        )
    report.line()
    return load > cores


def run(args):
    """Run the comparison and print it.

    Parameters
    ----------
    args : argparse.Namespace
        The parsed and checked options of ``python -m natgmm``
        (``natgmm.__main__``).
    """
    report = _Reporter()
    job_start = time.perf_counter()
    busy = _header(report, args)
    with threadpool_limits(limits=args.threads):
        results = _run(report, args)
    if "speed" in results:
        results["speed"]["busy"] = busy and args.threads != 1
    report.line("Verdict")
    for paragraph in verdict(results):
        report.line(textwrap.fill(paragraph, 100, initial_indent="- ", subsequent_indent="  "))
    report.line(
        textwrap.fill(
            "Read more: in natgmm's source repository (the directory that holds "
            "pyproject.toml), README.md and the user guide in doc/ (build it with python -m "
            "sphinx -b html doc doc/_build/html; performance.rst is about speed, annealing.rst "
            "about annealing, collapse.rst about robustness); for larger runs, "
            "benchmarks/bench_em.py, bench_annealing.py and bench_stability.py (--help).",
            100,
        )
    )
    report.line(f"Total {time.perf_counter() - job_start:.1f} s after Python's imports.")
