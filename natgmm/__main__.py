"""``python -m natgmm``: what natgmm is for, measured on this machine.

natgmm fits diagonal Gaussian mixtures, as scikit-learn's
``GaussianMixture(covariance_type="diag")`` does, with the same parameters and
results. This job compares the two on three questions, each measured now, on
this machine, in one run:

1. Speed: the same default fit on a large data set, whole ``fit`` and per EM
   iteration, with the log-likelihood both reach.
2. Quality: one annealed natgmm fit against scikit-learn's best of five
   k-means starts, on factor-analysis latents of the digits, for five seeds.
3. Robustness: latents in raw units (each dimension multiplied by 40 to 80),
   where a naive gradient fit in natural parameters turns NaN (natgmm's fits
   against that naive fit: EM, scikit-learn's too, takes no gradient steps).

It closes with a verdict that says where natgmm wins and where it loses.

Importing this module runs nothing; ``main`` does.
"""

import argparse

# The annealing mode of the quality section, the one the user guide's
# annealing page recommends (its benchmark table is of this mode).
ANNEALING = "temperature"

_EPILOG = """\
sections and columns:
  1. Speed. K clusters with unequal weights, per-feature spreads and
     heavy tails (Student's t, 3 degrees of freedom), made from --seed in a
     second. Both libraries fit them with their defaults (k-means start,
     tol=1e-3).
       fit s         wall time of fit(X), the k-means start included
       iters         EM iterations until the gain in mean log-likelihood
                     fell below tol (n_iter_)
       s/iter        seconds per EM iteration, measured apart from the
                     fit: both start from the same parameters and run 1 and
                     1 + m iterations; s/iter is the difference over m
       mean log-lik  score(X): mean log-density of the training rows,
                     higher is better; the same EM from the same start
                     gives the same value
  2. Quality. FactorAnalysis latents of scikit-learn's digits (1797
     images of 10 digits). One annealed natgmm fit against
     GaussianMixture(n_init=5), the best of five k-means starts, for each
     of --quality-seeds random states: on a set this small the two often
     end within a tenth of a nat of each other, and which is ahead
     depends on the seed.
       fit s, iters  medians over the seeds; mean log-lik and NMI are
                     means, and the line under the table gives natgmm's
                     mean log-lik minus scikit-learn's for each seed
       NMI           normalised mutual information between the clusters
                     and the true digits: 0 = unrelated, 1 = the same
                     partition; no fit sees the labels
       iters         EM iterations of the kept fit (scikit-learn: of the
                     best of its five; natgmm: every annealing level, the
                     final EM and the split-and-merge trials)
  3. Robustness. The same latents, each multiplied by a factor from
     [40, 80], as raw latents of a neural model often are. A naive fit
     takes Adam steps on (eta1, eta2) = (mean / var, -1 / (2 var)), the
     natural parameters, in raw units, where eta2 is about -1e-4 and a
     step or two makes it positive: the variance is then negative and the
     log-likelihood NaN.
       steps/iters   Adam steps taken (until the first NaN) or EM
                     iterations
       finite        every parameter and the log-likelihood are numbers

Wall times depend on the machine and its load; the job prints both. On a
busy machine, thread pools that wait for each other slow both libraries
down, unevenly: --threads 1 runs both on one thread.

examples:
  python -m natgmm                  # the full run
  python -m natgmm --quick          # small data
  python -m natgmm --n-samples 1000000 --n-components 100   # bigger
  python -m natgmm --threads 1      # on a busy machine
"""


def _parser():
    parser = argparse.ArgumentParser(
        prog="python -m natgmm",
        description="\n\n".join(__doc__.split("\n\n")[1:-1]).replace("``", ""),
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="small data everywhere (20000 x 20, K=20; fewer steps)",
    )
    parser.add_argument(
        "--n-samples", type=int, help="rows of the speed data (default 100000, --quick 20000)"
    )
    parser.add_argument(
        "--n-features", type=int, help="columns of the speed data (default 50, --quick 20)"
    )
    parser.add_argument(
        "--n-components", type=int, help="K of the speed section (default 50, --quick 20)"
    )
    parser.add_argument(
        "--quality-components", type=int, default=10, help="K of sections 2 and 3 (default 10)"
    )
    parser.add_argument(
        "--quality-seeds",
        type=int,
        default=5,
        help="pairs of fits in section 2, random_state --seed onwards (default 5)",
    )
    parser.add_argument(
        "--n-factors", type=int, default=20, help="FactorAnalysis latents (default 20)"
    )
    parser.add_argument(
        "--annealing",
        choices=["floor", "fixed", "temperature"],
        default=ANNEALING,
        help=f"natgmm's annealing mode in section 2 (default {ANNEALING!r})",
    )
    parser.add_argument(
        "--sections",
        default="123",
        help="which sections to run, e.g. 13 (default 123)",
    )
    parser.add_argument(
        "--threads",
        type=int,
        help="threads for both libraries: BLAS and OpenMP pools and natgmm's n_jobs "
        "(default: all cores); 1 gives a fairer comparison on a busy machine",
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of data and fits (default 0)")
    return parser


def main(argv=None):
    """Run the comparison and print it; ``python -m natgmm --help`` explains.

    Parameters
    ----------
    argv : list of str, default=None
        Command-line arguments; None reads ``sys.argv``.
    """
    parser = _parser()
    args = parser.parse_args(argv)
    if not args.sections or set(args.sections) - set("123"):
        parser.error(f"--sections takes digits from 1 to 3, got {args.sections!r}")
    if args.threads is not None and args.threads < 1:
        parser.error(f"--threads must be at least 1, got {args.threads}")
    if args.quality_seeds < 1:
        parser.error(f"--quality-seeds must be at least 1, got {args.quality_seeds}")
    # The job's imports (scikit-learn's data sets, models and metrics, scipy)
    # come only now: --help and a usage error answer without them.
    from ._demo import run

    run(args)


if __name__ == "__main__":
    main()
