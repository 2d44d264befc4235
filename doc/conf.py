"""Sphinx configuration for the natgmm documentation.

Build from the repository root, with warnings as errors::

    python -m sphinx -W --keep-going -b html doc doc/_build/html
"""

import os

# The gallery examples run while the site is built, often on small shared
# machines, where thread pools that busy-wait for a core held by another
# process make the examples' small fits ten times slower or more. BLAS and
# scikit-learn's OpenMP loops get one thread, and OpenMP threads sleep
# instead of spinning while they wait; the caller's environment takes
# precedence. This must precede the
# first import of numpy or numba.
for _variable, _value in [
    ("OMP_NUM_THREADS", "1"),
    ("OPENBLAS_NUM_THREADS", "1"),
    ("MKL_NUM_THREADS", "1"),
    ("OMP_WAIT_POLICY", "passive"),
]:
    os.environ.setdefault(_variable, _value)

import re  # noqa: E402
from pathlib import Path  # noqa: E402

from sphinx.util import logging  # noqa: E402

import natgmm  # noqa: E402

project = "natgmm"
author = "the natgmm developers"
copyright = "the natgmm developers"
version = release = natgmm.__version__

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.mathjax",
    # MathJax 3 is copied into the site (_static/mathjax) and loaded from
    # there, so that formulas render without a network.
    "sphinx-mathjax-offline",
    "numpydoc",
    "sphinx_gallery.gen_gallery",
]
templates_path = ["_templates"]
# README.md describes the build for developers; it is not a page of the site.
exclude_patterns = ["_build", "README.md"]
default_role = "literal"

# API reference: one page per object, from the numpydoc docstrings.
autosummary_generate = True
autodoc_default_options = {"members": True, "inherited-members": True}
autodoc_typehints = "none"
numpydoc_show_class_members = False

html_theme = "pydata_sphinx_theme"
html_title = f"natgmm {release}"
html_theme_options = {
    "navigation_with_keys": False,
    "show_toc_level": 2,
    # The gallery's figures are wide: on its pages the right-hand column
    # ("On this page") gives its width to the article. "*" matches no "/",
    # so the patterns do not overlap (the theme warns when they do).
    "secondary_sidebar_items": {
        "*": ["page-toc", "sourcelink"],
        "generated/*": ["page-toc", "sourcelink"],
        "auto_examples/*": [],
    },
}
html_sidebars = {"index": [], "quickstart": []}
# "fit_predict", not "NaturalDiagonalGMM.fit_predict": the API pages' "On
# this page" column cut the long entries off.
toc_object_entries_show_parents = "hide"
html_static_path = ["_static"]
html_css_files = ["custom.css"]

sphinx_gallery_conf = {
    "examples_dirs": "../examples",
    "gallery_dirs": "auto_examples",
    "filename_pattern": r"/plot_",
    "within_subsection_order": "FileNameSortKey",
    # Links from the examples' code to natgmm's API pages (local, no network).
    "doc_module": ("natgmm",),
    "reference_url": {"natgmm": None},
    "backreferences_dir": "gen_modules/backreferences",
    "show_memory": False,
    # Show what the examples print, not the reprs of their last expressions.
    "capture_repr": (),
    "min_reported_time": 1,
    # The timing summary page loads scripts and styles from CDNs.
    "write_computation_times": False,
}

_logger = logging.getLogger(__name__)


def _check_api_page(app):
    """Warn (an error under -W) if api.rst omits a name of ``natgmm.__all__``."""
    text = Path(app.srcdir, "api.rst").read_text(encoding="utf-8")
    listed = set(re.findall(r"^ {3}(\w+)\s*$", text, flags=re.MULTILINE))
    missing = sorted(set(natgmm.__all__) - listed)
    if missing:
        _logger.warning(
            "doc/api.rst does not list %s from natgmm.__all__: add each name to one of its "
            "autosummary blocks",
            ", ".join(missing),
        )


# scikit-learn's metadata-routing methods link into scikit-learn's user
# guide, which this site cannot resolve without fetching its inventory; the
# API page points to scikit-learn's documentation for them instead.
_METADATA_ROUTING = re.compile(r"get_metadata_routing|set_\w+_request")


def _skip_metadata_routing(app, what, name, obj, skip, options):
    """Leave scikit-learn's metadata-routing methods out of the API pages."""
    if _METADATA_ROUTING.fullmatch(name):
        return True
    return None


def setup(app):
    """Register the API page check and the member filter."""
    app.connect("builder-inited", _check_api_page)
    app.connect("autodoc-skip-member", _skip_metadata_routing)
