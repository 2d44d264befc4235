"""Fits under load: next to a process keeping one core busy, and inside a Pipeline.

A user's machine is rarely quiet. This times the demo's fit (scikit-learn's
digits, FactorAnalysis(20) latents, K=10, ``n_init=5``, k-means
initialisation for both libraries) for natgmm and scikit-learn's
``GaussianMixture(covariance_type="diag")``, in four cases:

- ``fit``: the mixture alone, on a quiet machine;
- ``fit, busy core``: the same while another process keeps one core busy
  (``python -c "while True: pass"``, pinned to a core with ``--pin``);
- ``pipeline``: ``Pipeline([FactorAnalysis(20), mixture]).fit`` on the
  pixels, whose first step leaves OpenBLAS threads behind: the two calls
  it makes (``fit_transform`` of the first step, ``fit`` of the mixture on
  its output), timed separately, and the mixture's step reported;
- ``pipeline, busy core``: both.

With ``--data latents`` the fits are instead default fits (``n_init=1``,
K=20) of 60 000 x 50 digits-like latents, whose passes are large enough to
be shared out between natgmm's threads; only the two ``fit`` cases run
(there are no pixels for a pipeline).

Each case runs in a fresh process (the threading layer and OpenMP runtimes
are process-wide), the two libraries' fits interleaved, best and median of
``--reps``. The table gives ``sk/nat``, scikit-learn's time over natgmm's
(above 1: natgmm is faster), and ``nat/quiet``, natgmm's time over its quiet
time in the same run (``fit`` for the fits, ``pipeline`` for the pipelines;
1: the load cost nothing). The lost core alone would make a 2-thread fit at
most twice as slow on a 2-core machine.

Run from the repository root (``--reps 1`` took 20 s on one core)::

    python benchmarks/bench_threads.py
    python benchmarks/bench_threads.py --reps 3 --pin --env OMP_WAIT_POLICY=active
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import cli  # noqa: E402

CASES = ("fit", "fit, busy core", "pipeline", "pipeline, busy core")


def _child(case, reps, data):
    """Time both libraries for one case in this process; print JSON."""
    import warnings

    from sklearn.decomposition import FactorAnalysis
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.mixture import GaussianMixture
    from sklearn.pipeline import Pipeline

    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import datasets
    from warm import warm_up

    import natgmm

    warnings.simplefilter("ignore", ConvergenceWarning)
    if data == "latents":
        Z, _ = datasets.digits_like_latents(60_000)
        k, n_init = 20, 1
    else:
        X, _ = datasets.digits()
        Z = FactorAnalysis(20, random_state=0).fit_transform(X)
        k, n_init = 10, 5
    models = {
        "natgmm": lambda: natgmm.NaturalDiagonalGMM(k, n_init=n_init, random_state=0),
        "sklearn": lambda: GaussianMixture(
            k, covariance_type="diag", n_init=n_init, random_state=0
        ),
    }
    for make in models.values():  # compile or load the kernels, wake BLAS and OpenMP
        warm_up(make().set_params(n_init=1, max_iter=2).fit, Z)
    times = {name: [] for name in models}
    steps = {name: [] for name in models}  # FactorAnalysis before the mixture
    for _ in range(reps):
        for name, make in models.items():
            if case.startswith("pipeline"):
                # What Pipeline([("fa", ...), ("gmm", ...)]).fit(X) does, step by step.
                pipe = Pipeline([("fa", FactorAnalysis(20, random_state=0)), ("gmm", make())])
                start = time.perf_counter()
                latents = pipe[0].fit_transform(X)
                before = time.perf_counter()
                pipe[1].fit(latents)
                times[name].append(time.perf_counter() - before)
                steps[name].append(before - start)
            else:
                start = time.perf_counter()
                make().fit(Z)
                times[name].append(time.perf_counter() - start)
    from natgmm._threading import n_threads

    print(json.dumps({"times": times, "fa": steps, "threads": n_threads(None)}))


def _run_case(case, reps, env, pin, data):
    busy = None
    if "busy" in case:
        busy = subprocess.Popen([sys.executable, "-c", "while True: pass"])
        if pin is not None:
            os.sched_setaffinity(busy.pid, {pin})
    try:
        result = subprocess.run(
            [sys.executable, __file__, "--child", case, "--reps", str(reps), "--data", data],
            env={**os.environ, **env},
            capture_output=True,
            text=True,
            check=True,
        )
    finally:
        if busy is not None:
            busy.kill()
            busy.wait()
    return json.loads(result.stdout.strip().splitlines()[-1])


def main(argv=None):
    """Run every case in its own process and print the table."""
    parser = cli.parser(__doc__)
    parser.add_argument(
        "--reps", type=int, default=5, help="fits of each library per case; best and median"
    )
    parser.add_argument(
        "--pin", type=int, nargs="?", const=0, default=None, metavar="CORE",
        help="pin the busy process to this core (0 if none is given; unpinned without --pin)",
    )  # fmt: skip
    parser.add_argument("--env", action="append", default=[], metavar="VAR=VALUE",
                        help="environment of the measured processes (repeatable)")  # fmt: skip
    parser.add_argument("--json", metavar="FILE", help="also write the times to this file")
    parser.add_argument("--data", choices=("digits", "latents"), default="digits",
                        help="the demo's digits fit, or 60 000 x 50 latents at K=20")  # fmt: skip
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        _child(args.child, args.reps, args.data)
        return 0
    cli.check(parser, args.reps, "--reps", at_least=1)
    cli.check(parser, args.pin, "--pin", at_least=0)
    if args.pin is not None and args.pin >= os.cpu_count():
        parser.error(f"--pin {args.pin}: this machine has cores 0 to {os.cpu_count() - 1}")
    for item in args.env:
        if "=" not in item or not item.split("=", 1)[0]:
            parser.error(f"--env {item!r}: expected VAR=VALUE")
    env = dict(item.split("=", 1) for item in args.env)
    cases = CASES if args.data == "digits" else CASES[:2]
    rows = {}
    for case in cases:  # a fresh process each: say which one runs
        print(f"running {case!r} ({args.reps} reps)...", flush=True)
        rows[case] = _run_case(case, args.reps, env, args.pin, args.data)
    cores = cli.usable_cores()
    print(
        f"{cores} usable core{'s' if cores > 1 else ''} of {os.cpu_count()}, "
        f"{rows['fit']['threads']} kernel threads, env {env or 'as is'}"
    )
    print("mixture's fit, seconds (best, median); FactorAnalysis first in the pipelines")
    print("sk/nat: sklearn's best over natgmm's (> 1: natgmm faster); nat/quiet: natgmm's best")
    print("over its best without the busy core (1: the load cost nothing)")
    print(f"{'case':22s} {'natgmm s':>17s} {'sklearn s':>17s} {'sk/nat':>7s} {'nat/quiet':>9s}")
    for case, row in rows.items():
        nat, sk = row["times"]["natgmm"], row["times"]["sklearn"]
        quiet = min(rows["pipeline" if case.startswith("pipeline") else "fit"]["times"]["natgmm"])
        print(
            f"{case:22s} {min(nat):7.3f} (med {statistics.median(nat):5.2f}) "
            f"{min(sk):7.3f} (med {statistics.median(sk):5.2f}) "
            f"{min(sk) / min(nat):7.2f} {min(nat) / quiet:9.2f}"
        )
        if row["fa"]["natgmm"]:  # under the row it belongs to
            fa = row["fa"]["natgmm"] + row["fa"]["sklearn"]
            print(f"  (its FactorAnalysis steps: {min(fa):.3f} to {max(fa):.3f} s)")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"env": env, "rows": rows}, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
