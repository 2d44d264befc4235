"""Cache sklearn GaussianMixture(diag, n_init, max_iter=500) results for the annealing study."""

import json
import sys
import time
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import datasets  # noqa: E402
from sklearn.exceptions import ConvergenceWarning  # noqa: E402
from sklearn.metrics import normalized_mutual_info_score  # noqa: E402
from sklearn.mixture import GaussianMixture  # noqa: E402
from threadpoolctl import threadpool_limits  # noqa: E402

OUT = Path(__file__).resolve().parents[1] / ".cache" / "sklearn.json"


def main():
    names = sys.argv[1].split(",")
    ks = [int(k) for k in sys.argv[2].split(",")]
    seeds = [int(s) for s in sys.argv[3].split(",")]
    n_init = int(sys.argv[4]) if len(sys.argv) > 4 else 5
    results = json.loads(OUT.read_text()) if OUT.exists() else {}
    for name in names:
        s = datasets.split(name)
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
                OUT.write_text(json.dumps(results, indent=1))
                print(key, r, flush=True)


if __name__ == "__main__":
    main()
