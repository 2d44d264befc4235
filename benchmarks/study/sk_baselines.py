"""Cache sklearn GaussianMixture(diag, n_init, max_iter=500) results for the annealing study.

    python benchmarks/study/sk_baselines.py DATASETS KS SEEDS [N_INIT]

DATASETS, KS and SEEDS are comma-separated (``digits_fa 20,50 0,1,2,3,4 5``);
a set runs only at its own K values (``datasets.py``). The fits go to
``sklearn.json`` in the benchmarks' cache (``benchmarks/.cache``, or
``NATGMM_BENCH_CACHE``), which ``sweep.py``, ``run_study.py`` and
``summarise.py`` read; a fit already cached is not run again.
"""

import json
import sys
import time
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import datasets  # noqa: E402
from cli import check, check_grid, grid_arguments, parser  # noqa: E402
from sklearn.exceptions import ConvergenceWarning  # noqa: E402
from sklearn.metrics import normalized_mutual_info_score  # noqa: E402
from sklearn.mixture import GaussianMixture  # noqa: E402
from threadpoolctl import threadpool_limits  # noqa: E402

OUT = datasets.CACHE / "sklearn.json"


def main(argv=None):
    parser_ = parser(__doc__)
    grid_arguments(parser_, tuple(datasets.SPLITS))
    parser_.add_argument("n_init", nargs="?", type=int, default=5, help="GaussianMixture's n_init")
    args = parser_.parse_args(argv)
    check_grid(parser_, args)
    check(parser_, args.n_init, "N_INIT", at_least=1)
    names, ks, seeds, n_init = args.datasets, args.ks, args.seeds, args.n_init
    results = json.loads(OUT.read_text()) if OUT.exists() else {}
    for name in names:
        s = datasets.split(name)
        skipped = [k for k in ks if k not in s.ks]
        if skipped:
            print(f"K={skipped} skipped: {name} is studied at {list(s.ks)}", flush=True)
        for k in ks:
            if k not in s.ks:
                continue
            for seed in seeds:
                key = f"{name}|{k}|{seed}|{n_init}"
                if key in results:
                    continue
                gm = GaussianMixture(
                    k, covariance_type="diag", n_init=n_init, max_iter=500, random_state=seed
                )
                with warnings.catch_warnings(), threadpool_limits(1):
                    warnings.simplefilter("ignore", ConvergenceWarning)
                    t = time.perf_counter()
                    gm.fit(s.X_train)
                    sec = time.perf_counter() - t
                r = dict(
                    train=gm.score(s.X_train),
                    test=gm.score(s.X_test),
                    time=sec,
                    n_iter=int(gm.n_iter_),
                )
                if s.y_train is not None:
                    r["nmi"] = normalized_mutual_info_score(s.y_train, gm.predict(s.X_train))
                results = json.loads(OUT.read_text()) if OUT.exists() else {}
                results[key] = r
                OUT.parent.mkdir(parents=True, exist_ok=True)
                OUT.write_text(json.dumps(results, indent=1))
                print(key, r, flush=True)


if __name__ == "__main__":
    main()
