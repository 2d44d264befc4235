"""One annealed fit against GaussianMixture(diag, n_init=5 and 20): the bar of issue #15.

For every data set of ``datasets.SPLITS`` (digits, raw-scale digits, breast
cancer, two synthetic mixtures with known parameters, 60 000 deformed
digits, 60 000 deformed MNIST digits and 60 000 image patches through
FactorAnalysis(50)), or of your own (``--datasets my_latents.npz``: see
``datasets.file_split``), every K of the set among ``--k`` (a built-in set
is benchmarked only at its own K values, listed in ``datasets.py``; a file
of your own at every ``--k``) and every seed, fit

- ``sk5``, ``sk20``: ``GaussianMixture(covariance_type="diag", n_init=5 or
  20, max_iter=500)``;
- ``floor``, ``fixed``, ``temperature``: ``NaturalDiagonalGMM(annealing=mode,
  max_iter=500)`` with the estimator's own defaults for everything else
  (one fit, with the default split-and-merge moves after the annealing);
- ``floor-nosm``, ``fixed-nosm``, ``temperature-nosm``: the same without
  the moves (``split_merge=0``), to see what they add;
- ``floor-sample``, ``fixed-sample``, ``temperature-sample``: the same
  annealed on a sample of ``SAMPLE_ROWS`` rows (``anneal_subsample``), then
  EM on all rows;
- ``proto``: the recommended algorithm of the study run by the prototype
  driver ``benchmarks/study/anneal_proto.py`` (``RECOMMENDED`` there), which
  stands in for the defaults until the estimator implements them;

and print, per data set, K and method: the mean train and test
log-likelihood per sample (nats; higher is better) over the seeds, the NMI with the labels where the
set has them, the wall time, the iterations (for scikit-learn
``n_iter_``, the best initialisation's only; for natgmm all levels and
the final EM), and against ``sk5`` of the same
seed: in how many seeds the train log-likelihood is at least sk5's and the
median ratio of wall times. The bar: ``wins >= 4/5`` and time ratio
``<= 0.2`` at K = 20 and 50 on every data set. A per-seed table follows;
both go to ``--out`` (markdown, default ``benchmarks/results/annealing.md``).
Its ``splits`` column lists, for the annealed fits, the first eight levels
at which the number of distinct means grew, as ``level:before>after``
(``0.777:1>15``: at level 0.777, 1 distinct mean became 15; a level is a
variance floor or fixed variance in units of each feature's variance, or
a temperature). A mean over seeds can hide one poor seed: the
summary names every seed whose test log-likelihood is more than
``OUTLIER_NATS`` below its method's median.

Timing: every fit of one (data set, K, seed) runs in turn in one process
(``--repeats N``: each N times in a row, keeping the shortest time),
so that the ratios are measured in the same conditions, each after a pause
of a quarter of a second in which the previous fit's idle BLAS and OpenMP
threads (OpenBLAS spins for about 0.1 s after a call) go to sleep. Both
libraries run with their default threads, as a user runs them: all cores
for scikit-learn's BLAS and k-means, all kernel threads for natgmm's kernels
(``--n-jobs``, default all) with single-threaded BLAS inside them. On a busy
machine multi-threaded OpenBLAS/OpenMP in scikit-learn and FactorAnalysis
was 10 times slower than one thread: ``--blas-threads 1`` limits BLAS and
OpenMP to one thread for every fit (until 2026-12-04 that was the default,
so earlier time ratios compare natgmm's two threads with scikit-learn's
one).

Run from the repository root::

    python benchmarks/bench_annealing.py --quick  # about 1 minute (1 core, 2026-12-06)
    python benchmarks/bench_annealing.py --datasets digits_fa,image_patches_fa --k 20 50
    python benchmarks/bench_annealing.py --datasets my_latents.npz --methods sk5,temperature
    python benchmarks/bench_annealing.py  # everything: hours on 2 cores
"""

import functools
import sys
import warnings
from pathlib import Path

import numpy as np
from sklearn.exceptions import ConvergenceWarning
from sklearn.metrics import normalized_mutual_info_score
from sklearn.mixture import GaussianMixture
from threadpoolctl import threadpool_limits

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE / "study"))
import anneal_proto  # noqa: E402
import datasets  # noqa: E402
from cli import check, comma_list  # noqa: E402
from cli import parser as cli_parser  # noqa: E402
from warm import timed_after_pause, warm_up, warm_up_rows  # noqa: E402

from natgmm import NaturalDiagonalGMM  # noqa: E402

BAR_KS = (20, 50)
BAR_WINS = 4 / 5
BAR_TIME = 0.2
# A seed this many nats per sample below its method's median test ll is named.
OUTLIER_NATS = 10.0
METHODS = (
    "sk5", "sk20",
    *(f"{mode}{suffix}" for suffix in ("", "-nosm", "-sample")
      for mode in ("floor", "fixed", "temperature")),
    "proto",
)  # fmt: skip


class _Proto:
    """The prototype driver behind a fit/score/predict interface."""

    def __init__(self, n_components, random_state, config):
        self.k, self.seed, self.config = n_components, random_state, config

    def fit(self, X):
        self.result_ = anneal_proto.run(X, self.k, self.seed, self.config)
        self.n_iter_ = self.result_.n_iter
        self.history_ = self.result_.history
        return self

    def score(self, X):
        return anneal_proto.score(self.result_, X)

    def predict(self, X):
        return anneal_proto.predict(self.result_, X)


# Rows of the "-sample" methods' annealed fits.
SAMPLE_ROWS = 20_000


def methods(args):
    """Name -> factory(k, seed) of every method to run."""
    common = dict(max_iter=500, n_jobs=args.n_jobs)
    out = {
        "sk5": lambda k, s: GaussianMixture(
            k, covariance_type="diag", n_init=5, max_iter=500, random_state=s
        ),
        "sk20": lambda k, s: GaussianMixture(
            k, covariance_type="diag", n_init=20, max_iter=500, random_state=s
        ),
    }
    for mode in ("floor", "fixed", "temperature"):
        out[mode] = lambda k, s, mode=mode: NaturalDiagonalGMM(
            k, annealing=mode, random_state=s, **common
        )
        out[f"{mode}-nosm"] = lambda k, s, mode=mode: NaturalDiagonalGMM(
            k, annealing=mode, random_state=s, split_merge=0, **common
        )
        out[f"{mode}-sample"] = lambda k, s, mode=mode: NaturalDiagonalGMM(
            k, annealing=mode, random_state=s, anneal_subsample=SAMPLE_ROWS, **common
        )
    out["proto"] = lambda k, s: _Proto(k, s, anneal_proto.RECOMMENDED)
    return {name: out[name] for name in args.methods}


def split_levels(history):
    """(level, distinct means before, after) wherever the count grows."""
    level = np.asarray(history["level"], dtype=float)
    nd = np.asarray(history["n_distinct"])
    grow = np.flatnonzero((nd[1:] > nd[:-1]) & np.isfinite(level[1:])) + 1
    return [(float(level[i]), int(nd[i - 1]), int(nd[i])) for i in grow]


def run_one(name, make_model, data, repeats=1):
    """Fit ``make_model()`` ``repeats`` times: the last fit's results, the shortest time."""
    seconds = np.inf
    for _ in range(repeats):
        model = make_model()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            # The previous fit's idle threads go to sleep first.
            seconds = min(seconds, timed_after_pause(model.fit, data.X_train)[1])
    row = dict(
        method=name,
        train=float(model.score(data.X_train)),
        test=float(model.score(data.X_test)) if len(data.X_test) else float("nan"),
        time=seconds,
        n_iter=int(np.sum(getattr(model, "n_iter_", 0))),
        nmi=float("nan"),
        splits=split_levels(model.history_) if hasattr(model, "history_") else [],
    )
    if data.y_train is not None:
        row["nmi"] = normalized_mutual_info_score(data.y_train, model.predict(data.X_train))
    return row


def summarise(rows, method_names, seeds):
    """Markdown lines of the summary table and of the per-seed table."""
    by = {}
    for r in rows:
        by.setdefault((r["data"], r["k"]), {}).setdefault(r["method"], {})[r["seed"]] = r
    head = (
        "| data | K | method | train ll | test ll | NMI | time s | iters | "
        "train >= sk5 | time / sk5 |"
    )
    lines = [head, "|" + " --- |" * 10]
    misses, judged = [], 0
    for (data, k), per in by.items():
        ref = per.get("sk5", {})
        for m in method_names:
            if m not in per:
                continue
            rs = [per[m][s] for s in seeds if s in per[m]]
            wins = sum(1 for r in rs if r["seed"] in ref and r["train"] >= ref[r["seed"]]["train"])
            ratio = [r["time"] / ref[r["seed"]]["time"] for r in rs if r["seed"] in ref]
            n_ref = sum(1 for r in rs if r["seed"] in ref)
            ratio_s = f"{np.median(ratio):.3f}" if ratio and m != "sk5" else ""
            wins_s = f"{wins}/{n_ref}" if n_ref and m != "sk5" else ""
            lines.append(
                f"| {data} | {k} | {m} | {np.mean([r['train'] for r in rs]):.4f} | "
                f"{np.mean([r['test'] for r in rs]):.4f} | "
                f"{np.mean([r['nmi'] for r in rs]):.3f} | "
                f"{np.median([r['time'] for r in rs]):.2f} | "
                f"{np.median([r['n_iter'] for r in rs]):.0f} | {wins_s} | {ratio_s} |"
            )
            if m in ("sk5", "sk20") or k not in BAR_KS or not n_ref:
                continue  # nothing to judge against
            judged += 1
            if wins < BAR_WINS * n_ref or np.median(ratio) > BAR_TIME:
                misses.append(f"{m} misses the bar on {data}, K={k}")
    seed_head = "| data | K | seed | method | train ll | test ll | NMI | time s | iters | splits |"
    seed_lines = [seed_head, "|" + " --- |" * 10]
    for r in rows:
        splits = " ".join(f"{lv:.3g}:{a}>{b}" for lv, a, b in r["splits"][:8])
        seed_lines.append(
            f"| {r['data']} | {r['k']} | {r['seed']} | {r['method']} | {r['train']:.4f} | "
            f"{r['test']:.4f} | {r['nmi']:.3f} | {r['time']:.2f} | {r['n_iter']} | {splits} |"
        )
    lines += [
        "",
        "train ll, test ll: mean log-likelihood per sample in nats over the seeds (higher is "
        "better); time s, iters: medians; train >= sk5: seeds whose train ll is at least sk5's "
        "of the same seed; time / sk5: median of time over sk5's time (< 1: faster than sk5).",
    ]
    outliers = []
    for (data, k), per in by.items():
        for m, per_seed in per.items():
            median = np.median([r["test"] for r in per_seed.values()])
            outliers += [
                f"{data} K={k} {m} seed {r['seed']} ({r['test']:.1f})"
                for r in per_seed.values()
                if r["test"] < median - OUTLIER_NATS
            ]
    if outliers:
        lines.append(
            f"Seeds whose test ll is more than {OUTLIER_NATS:g} below their method's median "
            "(they pull its mean down): " + "; ".join(outliers) + "."
        )
    if not judged:
        verdict = ["not judged: this run has no sk5 fit at K=20 or K=50 to compare with"]
    else:
        verdict = misses or [f"every method met it ({judged} rows judged)"]
    return lines, seed_lines, verdict


def _is_file(name):
    """Whether a --datasets entry is a file of your own (as ``datasets.split`` decides)."""
    return Path(name).suffix in (".npz", ".npy")


def main(argv=None):
    parser = cli_parser(__doc__)
    parser.add_argument(
        "--datasets",
        type=comma_list(),
        default=",".join(datasets.SPLITS),
        help="comma-separated names from datasets.SPLITS, or paths of .npz / .npy files of "
        "your own (X_train or X; X_test, y_train or y, y_test if you have them)",
    )
    parser.add_argument(
        "--k",
        type=int,
        nargs="+",
        default=[10, 20, 50],
        help="numbers of components, space-separated (--k 20 50); a built-in set runs only "
        "those among its own K values, a file of yours every one",
    )
    parser.add_argument(
        "--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4],
        help="random_state of every fit, space-separated (--seeds 0 1)",
    )  # fmt: skip
    parser.add_argument(
        "--methods",
        type=comma_list(choices=METHODS),
        default="sk5,sk20,floor,fixed,temperature,proto",
        help="comma-separated, from sk5,sk20,floor,fixed,temperature, the same three "
        "with -nosm (no split-and-merge moves) or -sample (anneal_subsample), proto",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="digits_fa and synthetic_separated, K=20, seeds 0 1, no sk20",
    )
    parser.add_argument(
        "--blas-threads",
        type=int,
        default=None,
        help="limit BLAS and OpenMP to this many threads for every fit (None: no limit)",
    )
    parser.add_argument(
        "--n-jobs", type=int, default=None,
        help="natgmm's kernel threads (n_jobs of every natgmm fit; None: all)",
    )  # fmt: skip
    parser.add_argument(
        "--repeats",
        type=int,
        default=1,
        help="fit each model this many times and keep the shortest time (the fits are "
        "deterministic): scikit-learn's time for the same fit varied by 1.7x between runs",
    )
    parser.add_argument(
        "--out",
        default=str(HERE / "results" / "annealing.md"),
        help="markdown file of the tables (overwritten)",
    )
    args = parser.parse_args(argv)
    for name in args.datasets:
        if _is_file(name):
            check(parser, name, "--datasets", file=True)
        elif name not in datasets.SPLITS:
            parser.error(
                f"--datasets: unknown {name!r}; choose from {', '.join(datasets.SPLITS)} "
                "or give an .npz / .npy file"
            )
    check(parser, args.k, "--k", at_least=1)
    check(parser, args.seeds, "--seeds", at_least=0)
    check(parser, args.repeats, "--repeats", at_least=1)
    check(parser, args.blas_threads, "--blas-threads", at_least=1)
    if args.quick:
        args.datasets, args.k, args.seeds = ("digits_fa", "synthetic_separated"), [20], [0, 1]
    args.methods = [m for m in args.methods if not (args.quick and m == "sk20")]
    names = args.datasets
    factories = methods(args)

    rows = []
    with threadpool_limits(args.blas_threads):
        warm = np.random.default_rng(0).random((200, 3))  # compile or load the kernels
        warm_up(NaturalDiagonalGMM(2, max_iter=2, annealing="floor").fit, warm)
        # The defaults' kernels too: tempered levels, and a split-and-merge
        # round (it needs three components), whose kernels no fit above runs.
        warm_up(NaturalDiagonalGMM(4, annealing="temperature", random_state=0).fit, warm)
        warm_up(_Proto(2, 0, anneal_proto.RECOMMENDED).fit, warm)
        for name in names:
            data = datasets.split(name)
            # A file's description starts with its name.
            head = data.description if _is_file(name) else f"{name}: {data.description}"
            print(f"# {head}", flush=True)
            # A built-in set runs at its own K values only; a file at every --k.
            ks = args.k if _is_file(name) else [k for k in args.k if k in data.ks]
            skipped = [k for k in args.k if k not in ks]
            if skipped:
                print(
                    f"K={', '.join(map(str, skipped))} skipped: {name} is benchmarked at "
                    f"{', '.join(map(str, data.ks))}",
                    flush=True,
                )
            for k in ks:
                # Every method once on the first rows, outside the timing: a fit
                # of this size takes float32 steps and threads, whose kernels
                # the tiny fits above do not load (on an empty cache, seconds
                # of compilation in the first timed fit).
                for factory in factories.values():
                    warm_up(factory(k, 0).fit, warm_up_rows(data.X_train, k))
                for seed in args.seeds:
                    for method, factory in factories.items():
                        make = functools.partial(factory, k, seed)
                        row = run_one(method, make, data, args.repeats)
                        row.update(data=name, k=k, seed=seed)
                        rows.append(row)
                        print(
                            f"{name:22s} K={k:2d} seed={seed} {method:12s} "
                            f"train {row['train']:10.4f} test {row['test']:10.4f} "
                            f"nmi {row['nmi']:.3f} {row['time']:7.2f} s {row['n_iter']:5d} it",
                            flush=True,
                        )
    lines, seed_lines, verdict = summarise(rows, args.methods, args.seeds)
    text = "\n".join(
        ["# Annealing against restarts", "", " ".join(sys.argv), "", *lines, "",
         "Bar (K in {20, 50}: train >= sk5 in 4/5 seeds, time <= 0.2 x sk5):", "",
         *(f"- {m}" for m in verdict), "", "## Per seed", "",
         *seed_lines, ""]
    )  # fmt: skip
    print("\n" + text)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)
    print(f"written to {out}")


if __name__ == "__main__":
    main()
