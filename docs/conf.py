"""Sphinx configuration of the documentation site (`make docs`; tests/test_docs.py builds it).

Offline by design: no intersphinx, notebooks rendered from their stored outputs (never executed
here: tests/test_notebooks.py executes them), no downloaded fonts or scripts.
"""

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

project = "mnist-jax"
author = "the mnist-jax authors"
copyright = "2026, the mnist-jax authors"

extensions = [
    "myst_nb",  # Markdown pages (MyST) and notebooks
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.napoleon",  # the docstrings' "Attributes:" sections (Google style)
]

# Sources: the pages in docs/, the notebooks through the docs/notebooks link to ../notebooks.
exclude_patterns = ["_build", "notebooks/README.md", "**/.ipynb_checkpoints"]
source_suffix = {".md": "myst-nb", ".ipynb": "myst-nb"}
master_doc = "index"

# Notebooks: committed without outputs, executed with their defaults when the site is built, the
# results cached in _build/.jupyter_cache (a notebook runs again only after it changed); a failing
# cell fails the build. The suite's build passes -D nb_execution_mode=off: it checks the pages.
nb_execution_mode = "cache"
nb_execution_cache_path = str(Path(__file__).parent / "_build" / ".jupyter_cache")
nb_execution_timeout = 1800
nb_execution_raise_on_error = True
nb_merge_streams = True
myst_enable_extensions = ["colon_fence", "dollarmath"]
myst_heading_anchors = 3

# API reference: signatures and docstrings, in source order, with type hints in the signature.
autodoc_default_options = {"members": True, "member-order": "bysource"}
autodoc_typehints = "signature"
autodoc_preserve_defaults = True
autosummary_generate = False
napoleon_google_docstring = True
napoleon_numpy_docstring = False
# Every reference to this project's Python objects must resolve (a renamed function named on a page
# fails the build); other libraries' objects are not documented here (no intersphinx: offline).
nitpicky = True
nitpick_ignore_regex = [(r"py:.*", r"(?!mnist_jax\.).*")]
# Docstrings quote names in single backticks (Markdown habit): show them as code.
default_role = "code"

html_theme = "sphinx_book_theme"
html_title = "mnist-jax"
html_theme_options = {
    "show_toc_level": 2,
    "navigation_with_keys": False,
}
html_static_path: list[str] = []

# Pages other work adds: listed in a toctree (index.md: search; models.md: models_speed) and left
# out of it while the file does not exist, so the site builds either way.
OPTIONAL_PAGES = ("search", "models_speed")


def _drop_missing_optional_pages(app, docname, source):
    here = Path(app.srcdir)
    missing = {name for name in OPTIONAL_PAGES if not (here / f"{name}.md").exists()}
    if missing:
        lines = source[0].split("\n")
        source[0] = "\n".join(line for line in lines if line.strip() not in missing)


def setup(app):
    app.connect("source-read", _drop_missing_optional_pages)
