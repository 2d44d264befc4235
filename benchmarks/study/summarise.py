"""Markdown table of study results (JSON lines from run_study.py) against the sklearn cache.

    python benchmarks/study/summarise.py /tmp/s*.jsonl

The scikit-learn fits come from ``sklearn.json`` in the benchmarks' cache
(``benchmarks/.cache``, or the directory ``NATGMM_BENCH_CACHE`` names), which
``sk_baselines.py`` writes: run it first.

Columns: ``sk5`` and ``sk20`` are ``GaussianMixture(covariance_type="diag",
n_init=5 or 20, max_iter=500)`` from the same seed; ``train`` and ``test``
the mean log-likelihood per row of the training and held-out rows; ``s`` the
fit's wall seconds; ``method`` the study configuration (``run_study.py``);
``iters`` its EM iterations, levels included; ``>= sk5`` whether its train
log-likelihood reaches ``sk5``'s.
"""

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import datasets  # noqa: E402
from cli import check, parser  # noqa: E402

SK = datasets.CACHE / "sklearn.json"


def main(argv=None):

    parser_ = parser(__doc__)
    parser_.add_argument("files", nargs="+", help="JSON-lines files written by run_study.py")
    args = parser_.parse_args(argv)
    check(parser_, args.files, "FILES", file=True)
    if not SK.exists():
        sys.exit(f"no {SK}: run benchmarks/study/sk_baselines.py first (see its --help)")
    sk = json.loads(SK.read_text())
    rows = [json.loads(line) for p in args.files for line in open(p)]
    print(
        "| data | K | seed | sk5 train | sk5 test | sk5 s | sk20 train | method | train | "
        "test | s | iters | >= sk5 |"
    )
    print("|" + " --- |" * 13)
    seen = set()
    for r in sorted(rows, key=lambda r: (r["data"], r["k"], r["config"], r["seed"])):
        key = (r["data"], r["k"], r["seed"], r["config"])
        if key in seen:
            continue
        seen.add(key)
        ref = sk.get(f"{r['data']}|{r['k']}|{r['seed']}|5", {})
        ref20 = sk.get(f"{r['data']}|{r['k']}|{r['seed']}|20", {})
        win = "" if not ref else ("yes" if r["train"] >= ref["train"] else "no")
        print(
            f"| {r['data']} | {r['k']} | {r['seed']} | {ref.get('train', float('nan')):.4f} | "
            f"{ref.get('test', float('nan')):.3f} | {ref.get('time', float('nan')):.1f} | "
            f"{ref20.get('train', float('nan')):.4f} | {r['config']} | {r['train']:.4f} | "
            f"{r['test']:.3f} | {r['time']:.1f} | {r['n_iter']} | {win} |"
        )


if __name__ == "__main__":
    main()
