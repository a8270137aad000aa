"""Every code block of the README and of docs/*.md runs as written (on the real data, from
$MNIST_JAX_DATA), unless it says why not.

A page's ```python blocks run in order in one namespace, its ```sh blocks with bash (the venv's
`python` first on PATH), all in a fresh folder. A block whose first line is
`# not run by the tests: REASON` is shown, not run: commands that train for minutes, start servers
or need a cluster. ```text blocks are output and listings; MyST directives (```{toctree}) are the
site's structure. Any other fence is an error, so that no example escapes the tests unnoticed.
"""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
PAGES = [README, *sorted((ROOT / "docs").glob("*.md"))]
RUNNABLE = {"python", "sh"}
LISTINGS = {"text"}
NOT_RUN = "# not run by the tests:"
FENCE = re.compile(r"^```([^\n`]*)\n(.*?)^```[ \t]*$", re.S | re.M)


def fenced_blocks(path: Path) -> list[tuple[str, str, int]]:
    """(language, code, line of the opening fence) of each fenced block of `path`."""
    text = path.read_text()
    return [
        (match.group(1).strip(), match.group(2), text.count("\n", 0, match.start()) + 1)
        for match in FENCE.finditer(text)
    ]


def runnable_blocks(path: Path) -> list[tuple[str, str, int]]:
    return [
        (language, code, line)
        for language, code, line in fenced_blocks(path)
        if language in RUNNABLE and not code.startswith(NOT_RUN)
    ]


def name(path: Path) -> str:
    return str(path.relative_to(ROOT))


@pytest.mark.parametrize("path", PAGES, ids=name)
def test_every_block_runs_or_says_why_not(path):
    text = path.read_text()
    assert not re.search(r"^[ \t]+```", text, re.M), "an indented fence would escape the tests"
    for language, code, line in fenced_blocks(path):
        where = f"{name(path)}:{line}"
        if language.startswith("{"):  # a MyST directive: toctree, eval-rst
            continue
        assert language in RUNNABLE | LISTINGS, f"{where}: fence {language!r}: use one of " + (
            ", ".join(sorted(RUNNABLE | LISTINGS))
        )
        if code.startswith(NOT_RUN):
            reason = code.splitlines()[0][len(NOT_RUN) :].strip()
            assert reason, f"{where}: say why the block is not run"


def test_the_readme_and_the_guides_have_examples_that_run():
    for page in (README, ROOT / "docs" / "library.md", ROOT / "docs" / "models.md"):
        assert any(lang == "python" for lang, _, _ in runnable_blocks(page)), name(page)


# What each page's examples must have produced, beyond running without an error.
def _readme(namespace, out, folder):
    assert len(namespace["sweep"].members) == 6
    assert "lr=0.003 vs lr=0.001: " in out


def _library(namespace, out, folder):
    assert float(out.split("test accuracy ")[1].split()[0]) > 0.95
    assert namespace["epoch_metrics"]["accuracy"].shape == (4,)


def _models(namespace, out, folder):
    # 1 epoch of MNIST through train_run: the run directory the command writes
    assert float(out.split("test accuracy ")[1].split()[0]) > 0.9
    assert namespace["run"].epoch == 1
    run = folder / "runs" / "small-mlp"
    for name in ("config.json", "metrics.json", "predictions.npz", "report.md", "checkpoints"):
        assert (run / name).exists(), name
    assert json.loads((run / "config.json").read_text())["config"]["dropout_rate"] == 0.1


CHECKS = {
    "README.md": _readme,
    "docs/library.md": _library,
    "docs/models.md": _models,
}
PAGES_THAT_RUN = [page for page in PAGES if runnable_blocks(page)]


def test_the_pages_with_checks_have_examples():
    assert set(CHECKS) <= {name(page) for page in PAGES_THAT_RUN}


@pytest.mark.slow
@pytest.mark.parametrize("path", PAGES_THAT_RUN, ids=name)
def test_the_examples_run_as_written(path, mnist_dir, monkeypatch, capsys, tmp_path):
    monkeypatch.setenv("MNIST_JAX_DATA", str(mnist_dir))
    monkeypatch.chdir(tmp_path)
    environment = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}"}
    environment["PATH"] += os.environ.get("PATH", "")
    namespace: dict = {"__name__": "docs_example"}
    for language, code, line in runnable_blocks(path):
        where = f"{name(path)}:{line}"
        if language == "python":
            exec(compile(code, where, "exec"), namespace)
        else:
            done = subprocess.run(
                ["bash", "-euo", "pipefail", "-c", code],
                env=environment,
                capture_output=True,
                text=True,
                timeout=300,
            )
            print(done.stdout, end="")
            assert done.returncode == 0, f"{where}: exit status {done.returncode}\n{done.stderr}"
    check = CHECKS.get(name(path))
    if check is not None:
        check(namespace, capsys.readouterr().out, tmp_path)
