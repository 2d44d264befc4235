"""Run prototype configurations on the study's data sets; append results to a JSON-lines file.

    python benchmarks/study/run_study.py DATASETS KS SEEDS CONFIG_EXPR [OUT]

CONFIG_EXPR is a Python expression giving a list of anneal_proto.Config
(``C`` is Config, ``G`` GrowConfig), e.g. ``"[C(mode='floor'), C(mode='fixed')]"``.
DATASETS, KS and SEEDS are comma-separated (``digits_fa,breast_cancer 20,50
0,1,2``); a set runs only at its own K values (``datasets.py``). Each line
compares with scikit-learn's cached fit when ``sk_baselines.py`` has made it.
"""

import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))
import datasets  # noqa: E402
from anneal_proto import Config, GrowConfig, fit, fit_grow, predict, score, split_levels  # noqa: E402
from cli import check_grid, grid_arguments, parser  # noqa: E402
from sklearn.metrics import normalized_mutual_info_score  # noqa: E402
from threadpoolctl import threadpool_limits  # noqa: E402

SK = datasets.CACHE / "sklearn.json"


def main(argv=None):
    parser_ = parser(__doc__)
    grid_arguments(parser_, tuple(datasets.SPLITS))
    parser_.add_argument("config", help="a Python expression: a list of C(...) or G(...)")
    parser_.add_argument(
        "out", nargs="?", default="/tmp/study.jsonl", help="JSON-lines file, appended to"
    )
    args = parser_.parse_args(argv)
    check_grid(parser_, args)
    names, ks, seeds = args.datasets, args.ks, args.seeds
    configs = eval(args.config, {"C": Config, "G": GrowConfig})  # noqa: S307
    out = Path(args.out)
    with threadpool_limits(1, user_api="blas"):
        fit(datasets.split("breast_cancer").X_train, 2, 0, Config())  # compile
        for name in names:
            s = datasets.split(name)
            skipped = [k for k in ks if k not in s.ks]
            if skipped:
                print(f"K={skipped} skipped: {name} is studied at {list(s.ks)}", flush=True)
            for k in ks:
                if k not in s.ks:
                    continue
                for cfg in configs:
                    for seed in seeds:
                        t = time.perf_counter()
                        r = (fit_grow if isinstance(cfg, GrowConfig) else fit)(
                            s.X_train, k, seed, cfg
                        )
                        row = dict(
                            data=name,
                            k=k,
                            seed=seed,
                            config=cfg.name(),
                            train=r.train,
                            test=score(r, s.X_test),
                            n_iter=r.n_iter,
                            time=r.seconds,
                            n_anneal=int(sum(1 for x in r.history["level"] if x == x)),
                            crit=r.critical_value,
                            splits=split_levels(r.history),
                        )
                        if s.y_train is not None:
                            row["nmi"] = normalized_mutual_info_score(
                                s.y_train, predict(r, s.X_train)
                            )
                        sk = json.loads(SK.read_text()) if SK.exists() else {}
                        ref = sk.get(f"{name}|{k}|{seed}|5")
                        if ref:
                            row["sk_train"], row["sk_time"] = ref["train"], ref["time"]
                        with open(out, "a") as f:
                            f.write(json.dumps(row) + "\n")
                        d = row.get("sk_train", float("nan"))
                        print(
                            f"{name:22s} K={k:2d} s={seed} {cfg.name():50s} train {r.train:9.3f} "
                            f"(sk {d:9.3f}, {r.train - d:+7.3f}) test {row['test']:9.2f} "
                            f"it {r.n_iter:4d} t {r.seconds:6.2f}s "
                            f"(sk {row.get('sk_time', 0):6.2f})"
                            f" [{time.perf_counter() - t:.1f}]",
                            flush=True,
                        )


if __name__ == "__main__":
    main()
