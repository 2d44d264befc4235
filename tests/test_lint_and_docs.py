"""Static checks: ruff is clean and every public docstring passes numpydoc."""

import inspect
import shutil
import subprocess
from pathlib import Path

import pytest

import natgmm

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.skipif(shutil.which("ruff") is None, reason="ruff is not installed")
@pytest.mark.parametrize("command", [["ruff", "check", "."], ["ruff", "format", "--check", "."]])
def test_ruff(command):
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def _public_objects():
    for name in natgmm.__all__:
        obj = getattr(natgmm, name)
        yield f"natgmm.{name}"
        if inspect.isclass(obj):
            for attr, member in vars(obj).items():
                if not attr.startswith("_") and callable(member):
                    yield f"natgmm.{name}.{attr}"


# Checks that do not apply: extended summaries and "See Also"/"Examples" on
# every method would repeat the class's; returned values are named, as in
# scikit-learn ("labels : ndarray of shape ..."), which RT02 forbids.
_IGNORED = {"ES01", "SA01", "EX01", "RT02"}


@pytest.mark.parametrize("name", list(_public_objects()))
def test_numpydoc(name):
    from numpydoc.validate import validate

    errors = [(code, msg) for code, msg in validate(name)["errors"] if code not in _IGNORED]
    assert not errors, errors


def test_minimum_versions_are_the_declared_floors():
    """``.ci/minimum-versions.txt`` pins each dependency at its floor in pyproject.toml.

    The runtime dependencies and those of the dask extra (``dask[array]``
    pinned as ``dask``).

    So that the documented check of the oldest supported versions tests what
    pyproject.toml promises (a floor may name a release series, the pin its
    latest patch: ``numpy>=1.24`` and ``numpy==1.24.4``).
    """
    tomllib = pytest.importorskip("tomllib")
    with open(ROOT / "pyproject.toml", "rb") as f:
        project = tomllib.load(f)["project"]
    dependencies = project["dependencies"] + project["optional-dependencies"]["dask"]
    floors = dict(dependency.split(">=") for dependency in dependencies)
    floors["dask"] = floors.pop("dask[array]")
    lines = (ROOT / ".ci" / "minimum-versions.txt").read_text().splitlines()
    pins = dict(line.split("==") for line in lines if line and not line.startswith("#"))
    assert set(pins) == set(floors)
    for name, floor in floors.items():
        assert pins[name] == floor or pins[name].startswith(floor + "."), (name, floor)
