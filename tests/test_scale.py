"""Read-only installs and read-only memmapped input."""

import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
from numpy.testing import assert_allclose, assert_array_equal
from sklearn.datasets import make_blobs

import natgmm
from natgmm import NaturalDiagonalGMM, _kernels, _kmeans


def test_read_only_install_compiles_without_cache(tmp_path):
    """With no writable cache location anywhere, the kernels still compile.

    Permissions do not stop root, so every location numba tries is made
    impossible instead: ``__pycache__`` beside the sources is a file, and
    ``NUMBA_CACHE_DIR`` and the home cache lie under a file.
    """
    package = tmp_path / "site" / "natgmm"
    shutil.copytree(Path(natgmm.__file__).parent, package, ignore=shutil.ignore_patterns("*.pyc"))
    shutil.rmtree(package / "__pycache__", ignore_errors=True)
    (package / "__pycache__").write_text("")
    blocker = tmp_path / "blocker"
    blocker.write_text("")
    for path in sorted(package.rglob("*"), reverse=True) + [package]:
        path.chmod(path.stat().st_mode & ~0o222)
    code = textwrap.dedent(
        f"""
        import numpy as np
        import natgmm
        from natgmm import NaturalDiagonalGMM, _kernels
        assert natgmm.__file__.startswith({str(package)!r}), natgmm.__file__
        X = np.random.default_rng(0).normal(size=(200, 2))
        # n_jobs=1: the fit's calls on the calling thread show the same fallback.
        model = NaturalDiagonalGMM(2, random_state=0, n_jobs=1).fit(X)
        assert np.isfinite(model.score(X))
        print(type(_kernels._em_stats_kernel.kernel._cache).__name__)
        """
    )
    env = {
        **os.environ,
        "PYTHONPATH": str(package.parent),
        "NUMBA_CACHE_DIR": str(blocker / "numba"),
        "HOME": str(blocker),
        "XDG_CACHE_HOME": str(blocker),
    }
    result = subprocess.run(
        [sys.executable, "-c", code],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split()[-1] == "NullCache"  # the fallback, not a cache


def test_read_only_memmap_is_not_copied(tmp_path, monkeypatch):
    """A read-only float32 memmap reaches the kernels as is, not as a copy."""
    X, _ = make_blobs(n_samples=3000, n_features=4, centers=3, random_state=0)
    path = tmp_path / "X.npy"
    np.save(path, X.astype(np.float32))
    mapped = np.load(path, mmap_mode="r")
    assert not mapped.flags.writeable
    seen = []  # (function, whether its rows were the memmap's)
    spied = [(_kernels, "em_stats"), (_kernels, "label_stats"), (_kernels, "log_prob")]
    spied += [(_kernels, "log_prob_prepared"), (_kmeans, "kmeans")]
    for module, name in spied:
        original = getattr(module, name)

        def spy(data, *args, _original=original, _name=name, **kwargs):
            seen.append((_name, np.shares_memory(data, mapped)))
            return _original(data, *args, **kwargs)

        monkeypatch.setattr(module, name, spy)
    model = NaturalDiagonalGMM(3, random_state=0).fit(mapped)
    fitted = set(seen)
    seen.clear()
    labels = model.predict(mapped)
    # The k-means start, the statistics of EM and of the start's labels, the
    # final labels; then predict's log-densities: each on the memmap itself.
    expected = ("kmeans", "label_stats", "em_stats", "log_prob_prepared")
    assert fitted == {(name, True) for name in expected}
    assert set(seen) == {("log_prob_prepared", True)}
    in_memory = NaturalDiagonalGMM(3, random_state=0).fit(np.array(mapped))
    assert_allclose(model.means_, in_memory.means_)
    assert_array_equal(labels, in_memory.predict(np.array(mapped)))
