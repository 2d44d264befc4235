"""The documentation builds with warnings as errors, gallery included.

Each build runs ``python -m sphinx`` in a subprocess on a copy of ``doc/`` and
``examples/``, so that nothing is written into the source tree and
``doc/conf.py`` sets its thread environment before numpy is imported.
"""

import importlib.util
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import natgmm

ROOT = Path(__file__).resolve().parents[1]
_DOCS_MODULES = ["sphinx", "numpydoc", "sphinx_gallery", "matplotlib", "pydata_sphinx_theme"]
_MISSING = [name for name in _DOCS_MODULES if importlib.util.find_spec(name) is None]

pytestmark = pytest.mark.skipif(
    bool(_MISSING),
    reason=f"the docs extra is not installed (missing {', '.join(_MISSING)}): "
    "pip install -e '.[docs]'",
)

# Build outputs that a local build may have left in doc/.
_GENERATED = shutil.ignore_patterns("_build", "generated", "auto_examples", "gen_modules")


def _build(source_root, out_dir):
    """Run the documented build command on a copy of the docs; return it."""
    return subprocess.run(
        # --no-color: sphinx colours its messages when it sees a terminal
        # (or FORCE_COLOR), which puts escape codes inside the file names.
        [sys.executable, "-m", "sphinx", "-W", "--keep-going", "--no-color", "-b", "html"]
        + [str(source_root / "doc"), str(out_dir)],
        capture_output=True,
        text=True,
    )


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """Build the whole site once from a clean copy of doc/ and examples/."""
    root = tmp_path_factory.mktemp("docs")
    shutil.copytree(ROOT / "doc", root / "doc", ignore=_GENERATED)
    shutil.copytree(ROOT / "examples", root / "examples")
    out = root / "html"
    result = _build(root, out)
    return root, out, result


def test_docs_build_without_warnings(built):
    _, _, result = built
    assert result.returncode == 0, result.stdout[-5000:] + result.stderr[-20000:]


def test_every_example_produces_a_figure(built):
    root, _, result = built
    assert result.returncode == 0, result.stderr[-5000:]
    examples = sorted(p.stem for p in (ROOT / "examples").glob("plot_*.py"))
    assert examples
    images = root / "doc" / "auto_examples" / "images"
    missing = [name for name in examples if not (images / f"sphx_glr_{name}_001.png").exists()]
    assert not missing, f"examples without a figure: {missing}"


def test_every_public_name_has_an_api_page(built):
    _, out, result = built
    assert result.returncode == 0, result.stderr[-5000:]
    missing = [
        name for name in natgmm.__all__ if not (out / "generated" / f"natgmm.{name}.html").exists()
    ]
    assert not missing, f"no API page for {missing}; list them in doc/api.rst"


def test_a_failing_example_fails_the_build(tmp_path):
    # Only the broken example: the pages' links to the others then fail too,
    # so the check is on sphinx-gallery's own report of the failure.
    shutil.copytree(ROOT / "doc", tmp_path / "doc", ignore=_GENERATED)
    (tmp_path / "examples").mkdir()
    shutil.copy(ROOT / "examples" / "README.rst", tmp_path / "examples")
    (tmp_path / "examples" / "plot_broken.py").write_text(
        '"""\nBroken\n======\n\nFails on purpose.\n"""\n\nraise RuntimeError("broken example")\n'
    )
    result = _build(tmp_path, tmp_path / "html")
    assert result.returncode != 0
    output = result.stdout + result.stderr
    assert re.search(r"plot_broken\.py failed", output)
    assert "RuntimeError: broken example" in output


def test_pages_load_nothing_from_the_network(built):
    # Math must render for a reader without a network: MathJax is copied
    # into the site, and no page loads a script or a style sheet from a URL.
    _, out, result = built
    assert result.returncode == 0, result.stderr[-5000:]
    assert (out / "_static" / "mathjax" / "tex-chtml.js").is_file()
    remote = re.compile(r"<(?:script|link)\b[^>]*\b(?:src|href)=\"(?:https?:)?//", re.IGNORECASE)
    pages = list(out.rglob("*.html"))
    assert pages
    offenders = [str(page.relative_to(out)) for page in pages if remote.search(page.read_text())]
    assert not offenders, f"pages loading remote scripts or styles: {offenders[:5]}"
    collapse = (out / "collapse.html").read_text()
    assert "_static/mathjax/tex-chtml.js" in collapse
