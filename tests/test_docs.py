"""The documentation site builds, offline, with warnings as errors (what `make docs` runs): a broken
cross-reference, a function the API reference names that no longer exists, a docstring that is not
valid reStructuredText or a notebook missing from the toctree fails here.

The `dummy` builder reads, resolves and checks every page as the HTML one does, without writing
HTML; `make docs` writes the site. Sphinx runs in the test's process, which has imported jax and
the library already (a subprocess spent 1.5-2 s more CPU importing them again).
"""

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
# Sphinx's own warnings go through its logging (-W makes them fail the build); Python warnings here
# are the extensions' deprecation notices about Sphinx's next major version.
@pytest.mark.filterwarnings("ignore")
def test_the_documentation_builds_without_warnings(tmp_path, capsys):
    pytest.importorskip("sphinx", reason="the docs extra is not installed (make installs it)")
    from sphinx.cmd.build import build_main

    status = build_main(
        ["-W", "--keep-going", "-q", "-E", "-b", "dummy", "-d", str(tmp_path / "doctrees")]
        + ["-D", "nb_execution_mode=off"]  # the notebooks' runs are test_notebooks.py's
        + [str(ROOT / "docs"), str(tmp_path / "out")]
    )
    assert status == 0, capsys.readouterr().err[-4000:]
