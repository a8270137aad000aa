"""The notebooks in notebooks/: committed without outputs (so a diff shows their code; the
documentation site executes them with their defaults), and executable top to bottom on the real
data.

Execution runs each notebook with nbclient in the venv's `python3` kernel, with small settings
injected after its "parameters" cell (papermill's convention, without the papermill dependency), and
checks that no cell fails and that the plots came out as PNG images.
"""

import ast
import base64
from pathlib import Path

import nbformat
import pytest

NOTEBOOKS_DIR = Path(__file__).resolve().parent.parent / "notebooks"
NOTEBOOKS = sorted(NOTEBOOKS_DIR.glob("*.ipynb"))

# Small settings for the tests (a short training each); only names a notebook's parameters cell
# defines are overridden. DATA_DIR is always set, to the real MNIST.
SMALL_SETTINGS = {"EPOCHS": 2, "SEEDS": 2}
# The sweep: 2 learning rates x 2 seeds (4 runs) for 1 epoch keeps its training short.
SMALL_SETTINGS_FOR = {
    "seed_sweep.ipynb": {"EPOCHS": 1, "DROPOUT_RATES": (0.25,)},
    # The CNN on the first 2,000 training and test images: the notebook's code runs the same; the
    # full sets took a minute of the suite.
    "models.ipynb": {
        "EPOCHS": 1,
        "TRAIN_EXAMPLES": 2000,
        "VALIDATION_SIZE": 500,
        "TEST_EXAMPLES": 2000,
    },
}
# Plots each notebook must show as image/png outputs (at least); unlisted notebooks need none.
MIN_IMAGES = {"mnist_walkthrough.ipynb": 5, "seed_sweep.ipynb": 2, "models.ipynb": 2}
# Text a notebook's outputs must show with the small settings: the conclusions are computed.
EXPECTED_TEXT = {
    "seed_sweep.ipynb": ["lr=0.003 vs lr=0.001: ", "too few seeds for a verdict"],
}


def read(path: Path) -> nbformat.NotebookNode:
    return nbformat.read(path, as_version=nbformat.NO_CONVERT)


def parameters_cell(nb: nbformat.NotebookNode) -> int:
    """Index of the code cell tagged "parameters"."""
    found = [
        i
        for i, cell in enumerate(nb.cells)
        if cell.cell_type == "code" and "parameters" in cell.metadata.get("tags", [])
    ]
    assert len(found) == 1, f"expected one code cell tagged 'parameters', found {len(found)}"
    return found[0]


def assigned_names(source: str) -> set[str]:
    return {
        target.id
        for node in ast.parse(source).body
        if isinstance(node, ast.Assign)
        for target in node.targets
        if isinstance(target, ast.Name)
    }


def inject_parameters(nb: nbformat.NotebookNode, values: dict) -> nbformat.NotebookNode:
    """Insert a cell tagged "injected-parameters" after the parameters cell, setting `values`.

    Only the names the parameters cell defines, so a typo cannot go unnoticed: DATA_DIR is required.
    """
    index = parameters_cell(nb)
    defined = assigned_names(nb.cells[index].source)
    assert "DATA_DIR" in defined, (
        "the parameters cell must define DATA_DIR so the tests can set the data"
    )
    lines = [f"{name} = {value!r}" for name, value in values.items() if name in defined]
    cell = nbformat.v4.new_code_cell("# injected by tests/test_notebooks.py\n" + "\n".join(lines))
    cell.metadata["tags"] = ["injected-parameters"]
    nb.cells.insert(index + 1, cell)
    return nb


def png_outputs(nb: nbformat.NotebookNode) -> list[bytes]:
    return [
        base64.b64decode(output["data"]["image/png"])
        for cell in nb.cells
        if cell.cell_type == "code"
        for output in cell.get("outputs", [])
        if output.output_type in ("display_data", "execute_result")
        and "image/png" in output.get("data", {})
    ]


def execute(path: Path, values: dict, timeout: int = 600) -> nbformat.NotebookNode:
    """Execute a copy of the notebook at `path` with `values` injected, in the notebook's folder."""
    from nbclient import NotebookClient

    nb = inject_parameters(read(path), values)
    NotebookClient(
        nb,
        kernel_name="python3",
        timeout=timeout,
        resources={"metadata": {"path": str(path.parent)}},
    ).execute()
    return nb


def text_outputs(nb: nbformat.NotebookNode) -> str:
    parts = []
    for cell in nb.cells:
        for output in cell.get("outputs", []) if cell.cell_type == "code" else []:
            if output.output_type == "stream":
                parts.append(output["text"])
            for kind in ("text/markdown", "text/plain"):
                parts.append(output.get("data", {}).get(kind, ""))
    return "\n".join(parts)


def test_there_are_notebooks():
    assert {p.name for p in NOTEBOOKS} >= set(MIN_IMAGES)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_is_committed_without_outputs(path):
    """No outputs or execution counts (strip them before committing: notebooks/README.md), a
    python3 kernel, one parameters cell and nothing injected."""
    nb = read(path)
    nbformat.validate(nb)
    assert nb.nbformat == 4
    assert nb.metadata.get("kernelspec", {}).get("name") == "python3"
    parameters_cell(nb)
    code = [cell for cell in nb.cells if cell.cell_type == "code"]
    assert not [c for c in code if "injected-parameters" in c.metadata.get("tags", [])]
    kept = [i for i, c in enumerate(code) if c.get("outputs") or c.get("execution_count")]
    assert not kept, f"code cells {kept} hold outputs: strip them (notebooks/README.md)"


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_runs_on_the_real_data(path, mnist_dir, tmp_path):
    values = {**SMALL_SETTINGS, **SMALL_SETTINGS_FOR.get(path.name, {}), "DATA_DIR": str(mnist_dir)}
    nb = execute(path, values)
    nbformat.write(nb, tmp_path / path.name)  # kept by pytest's tmp_path for a look after a failure
    images = png_outputs(nb)
    assert len(images) >= MIN_IMAGES.get(path.name, 0), f"{len(images)} PNG outputs"
    assert all(image.startswith(b"\x89PNG\r\n\x1a\n") and len(image) > 1000 for image in images)
    text = text_outputs(nb)
    for expected in EXPECTED_TEXT.get(path.name, []):
        assert expected in text, expected
