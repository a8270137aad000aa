"""The documentation site builds, offline, with warnings as errors (what `make docs` runs): a broken
cross-reference, a function the API reference names that no longer exists, a docstring that is not
valid reStructuredText or a notebook missing from the toctree fails here.

The `dummy` builder reads, resolves and checks every page as the HTML one does, without writing
HTML; `make docs` writes the site.
"""

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_the_documentation_builds_without_warnings(tmp_path):
    pytest.importorskip("sphinx", reason="the docs extra is not installed (make installs it)")
    done = subprocess.run(
        [sys.executable, "-m", "sphinx", "-W", "--keep-going", "-q", "-E", "-b", "dummy"]
        + ["-d", str(tmp_path / "doctrees"), str(ROOT / "docs"), str(tmp_path / "out")],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-4000:]
