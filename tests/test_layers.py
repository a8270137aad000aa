"""The layers import one way: each module imports only from its own layer or those below it.

From the bottom: the foundation (errors, files, the configuration, processes); data, models,
statistics and plots, which do not import one another; training; the runner and its outputs; the
commands. An import inside a function counts (it runs when the function does), and so does a
module named in a string (`importlib.import_module`, a lazy package's table of names), and every
package whose `__init__` an import executes, with what that `__init__` imports at its top level.
Every module must be listed in a layer: a new one is placed on purpose.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

# Bottom to top; a module belongs to the layer of its longest prefix here.
LAYERS = (
    (
        "foundation",
        (
            "mnist_jax.errors",
            "mnist_jax.fileio",
            "mnist_jax.random_bits",
            "mnist_jax.recipe",
            "mnist_jax.config",
            "mnist_jax.labels",
            "mnist_jax.runtime",
            "mnist_jax.distributed",
        ),
    ),
    (
        "data, models, statistics, plots",
        (
            "mnist_jax.data",
            "mnist_jax.models",
            "mnist_jax.stats",
            "mnist_jax.plots",
            "mnist_jax.metrics",
            "mnist_jax.predictions",
            "mnist_jax.tensorboard",
        ),
    ),
    (
        "training",
        (
            "mnist_jax.evaluate",
            "mnist_jax.train",
            "mnist_jax.epochs",
            "mnist_jax.device_data",
            "mnist_jax.memory",
            "mnist_jax.floors",
            "mnist_jax.sweep.members",
            "mnist_jax.sweep.program",
            "mnist_jax.sweep.plan",
        ),
    ),
    (
        "the runner and its outputs",
        (
            "mnist_jax.fit",
            "mnist_jax.checkpoint",
            "mnist_jax.logs",
            "mnist_jax.report",
            "mnist_jax.rundir",
            "mnist_jax.run",
            "mnist_jax.comparison",
            "mnist_jax.comparison_folders",
            "mnist_jax.sweep",
            "mnist_jax.search",
        ),
    ),
    ("the commands", ("experiments",)),
)
SIBLINGS = 1  # the layer whose packages do not import one another


def module_files() -> dict[str, Path]:
    files = {}
    for package in ("mnist_jax", "experiments"):
        for path in sorted((REPO / package).rglob("*.py")):
            parts = path.relative_to(REPO).with_suffix("").parts
            files[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return files


FILES = module_files()


def imported(module: str, *, top_level_only: bool = False) -> set[str]:
    """The project's modules that `module`'s import statements name (`from a import b` names a.b
    where that is a module, else a)."""
    path = FILES[module]
    tree = ast.parse(path.read_text())
    nodes = tree.body if top_level_only else ast.walk(tree)
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found = set()
    for node in nodes:
        if not top_level_only and isinstance(node, ast.Constant) and node.value in FILES:
            found.add(node.value)  # loaded by name, e.g. a lazy package's table
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            for alias in node.names:
                found.add(f"{base}.{alias.name}" if f"{base}.{alias.name}" in FILES else base)
    return {name for name in found if name in FILES and name != module}


def with_packages(modules: set[str]) -> set[str]:
    """`modules` and what the `__init__` of each package above them imports at its top level."""
    out = set(modules)
    for name in modules:
        parts = name.split(".")
        for k in range(1, len(parts)):
            if ".".join(parts[:k]) in FILES:  # a namespace package runs no code
                out |= imported(".".join(parts[:k]), top_level_only=True)
    return out


def layer(module: str) -> int:
    matches = [
        (len(prefix), k)
        for k, (_, prefixes) in enumerate(LAYERS)
        for prefix in prefixes
        if module == prefix or module.startswith(prefix + ".")
    ]
    if not matches:
        raise AssertionError(f"{module} is in no layer: add it to LAYERS in tests/test_layers.py")
    return max(matches)[1]


def sibling(module: str) -> str:
    """The package or module of `mnist_jax` that `module` is part of (`mnist_jax.data`, ...)."""
    return ".".join(module.split(".")[:2])


@pytest.mark.parametrize("module", sorted(FILES))
def test_a_module_imports_only_its_own_layer_or_those_below(module):
    mine = layer(module)
    upward = sorted(
        f"{name} ({LAYERS[layer(name)][0]})"
        for name in with_packages(imported(module) | {module}) - {module}
        if layer(name) > mine
    )
    assert not upward, f"{module} ({LAYERS[mine][0]}) imports from a layer above it: {upward}"
    if mine == SIBLINGS:
        across = sorted(
            name
            for name in imported(module)
            if layer(name) == SIBLINGS and sibling(name) != sibling(module)
        )
        assert not across, f"{module} imports another package of its layer: {across}"


@pytest.mark.parametrize("module", sorted(FILES))
def test_every_module_is_placed_in_a_layer(module):
    layer(module)


def test_the_scan_sees_imports_in_functions_by_name_and_relative():
    assert {"mnist_jax.train", "mnist_jax.sweep.run"} <= imported("mnist_jax.fit")
    assert "mnist_jax.sweep.stats" in imported("mnist_jax.sweep.run")  # inside a method
    assert "mnist_jax.sweep.run" in imported("mnist_jax.sweep")  # the lazy table, by name
    assert imported("mnist_jax.sweep", top_level_only=True) == set()  # nothing loaded eagerly
    assert layer("mnist_jax.sweep.members") == 2 and layer("mnist_jax.sweep.run") == 3
    with pytest.raises(AssertionError, match="in no layer"):
        layer("mnist_jax.unplaced")
