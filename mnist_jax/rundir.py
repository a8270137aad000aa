"""Run directories: creating one without ever overwriting another run, atomic JSON, run metadata.

A run directory holds everything a run produced: `config.json` (resolved configuration, versions,
devices, dataset fingerprint), `metrics.json`, the plots, `report.md` and `checkpoints/`. Every file
is written to a temporary name and renamed into place, so an interrupted run never leaves a
half-written file, and an earlier run's files are never replaced by another run.
"""

from __future__ import annotations

import datetime
import importlib.metadata
import json
import os
import platform
from pathlib import Path
from typing import Any

import jax

from mnist_jax.config import TrainConfig
from mnist_jax.errors import ConfigError, MnistJaxError

# Re-exported: the atomic writers live in `mnist_jax.fileio`; run code imports them from here.
from mnist_jax.fileio import write_json_atomic as write_json_atomic
from mnist_jax.fileio import write_text_atomic as write_text_atomic

CONFIG_FILE = "config.json"
METRICS_FILE = "metrics.json"
# Files whose presence means a folder already holds a run.
RUN_MARKERS = (CONFIG_FILE, METRICS_FILE, "checkpoints", "summary.json")


def read_json(path: str | os.PathLike) -> Any:
    path = Path(path)
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise MnistJaxError(f"{path} does not exist: is {path.parent} a run directory?") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise MnistJaxError(f"{path} is not valid JSON ({error}); the file is damaged") from None


def holds_run(folder: Path) -> bool:
    return any((folder / marker).exists() for marker in RUN_MARKERS)


def create_run_dir(out: str | os.PathLike | None, *, root: str | os.PathLike, name: str) -> Path:
    """Create the run directory `out`, or a new `root/name[-N]` when `out` is None.

    An existing `out` is accepted only if it is an empty folder: one that holds files (a run or
    anything else) is refused, so nothing already written is ever overwritten.
    """
    if out is None:
        base = Path(root) / name
        folder, suffix = base, 1
        while folder.exists():
            suffix += 1
            folder = base.with_name(f"{base.name}-{suffix}")
    else:
        folder = Path(out)
        if folder.exists() and not folder.is_dir():
            raise ConfigError(f"--out {folder} is a file, not a folder")
        if folder.is_dir() and any(folder.iterdir()):
            what = "another run" if holds_run(folder) else "other files"
            raise ConfigError(
                f"--out {folder} already holds {what}; choose a new folder "
                f"(or continue that run with --resume {folder})"
            )
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise ConfigError(f"cannot create the run directory {folder}: {error.strerror}") from None
    return folder


def default_run_name(dataset: str, seed: int | str, now: datetime.datetime | None = None) -> str:
    now = now or datetime.datetime.now()
    return f"{dataset.replace(':', '-').replace('/', '-')}-{now:%Y%m%d-%H%M%S}-seed{seed}"


def library_versions() -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for package in ("mnist-jax", "jax", "jaxlib", "flax", "optax", "orbax-checkpoint", "numpy"):
        try:
            versions[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            versions[package] = "not installed"
    return versions


def device_summary() -> dict[str, Any]:
    devices = jax.devices()
    return {
        "platform": devices[0].platform,
        "kind": devices[0].device_kind,
        "count": len(devices),
        "process_count": jax.process_count(),
    }


def run_record(config: TrainConfig, dataset, *, command: str | None = None) -> dict[str, Any]:
    """The content of `config.json`: enough to re-create, re-evaluate and resume the run."""
    return {
        "config": config.to_dict(),
        "num_classes": dataset.num_classes,
        "dataset": {
            "name": dataset.name,
            "fingerprint": dataset.fingerprint,
            "source": dataset.source,
            "train_examples": int(dataset.train_images.shape[0]),
            "test_examples": int(dataset.test_images.shape[0]),
            "image_shape": list(dataset.image_shape),
            "class_names": list(dataset.class_names),
        },
        "versions": library_versions(),
        "devices": device_summary(),
        "created": datetime.datetime.now().isoformat(timespec="seconds"),
        "command": command,
    }
