"""The README's library examples run as written (on the real data, from $MNIST_JAX_DATA)."""

import re
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"


def python_blocks(section: str) -> list[str]:
    text = README.read_text()
    start = text.index(f"## {section}")
    end = text.find("\n## ", start + 1)
    return re.findall(r"```python\n(.*?)```", text[start : end if end != -1 else None], re.S)


def test_the_library_guide_has_examples():
    assert len(python_blocks("Using the library")) >= 2


@pytest.mark.slow
def test_the_library_guide_examples_run_as_written(mnist_dir, monkeypatch, capsys):
    monkeypatch.setenv("MNIST_JAX_DATA", str(mnist_dir))
    namespace: dict = {}
    for block in python_blocks("Using the library"):
        exec(compile(block, str(README), "exec"), namespace)
    accuracy = float(capsys.readouterr().out.split("test accuracy ")[1].split()[0])
    assert accuracy > 0.95
    assert namespace["epoch_metrics"]["accuracy"].shape == (4,)


@pytest.mark.slow
def test_the_models_example_trains_a_users_module_as_written(
    mnist_dir, monkeypatch, capsys, tmp_path
):
    monkeypatch.setenv("MNIST_JAX_DATA", str(mnist_dir))
    monkeypatch.chdir(tmp_path)
    (block,) = python_blocks("Models")
    namespace: dict = {"__name__": "readme_models"}
    exec(compile(block, str(README), "exec"), namespace)
    out = capsys.readouterr().out
    assert float(out.split("validation accuracy ")[1].split()[0]) > 0.95
    assert len(namespace["sweep"].members) == 4
    assert (tmp_path / "runs" / "small-mlp" / "checkpoints" / "2").is_dir()
