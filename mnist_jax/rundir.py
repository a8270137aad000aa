"""Run directories: creating one without ever overwriting another run, atomic JSON, run metadata.

A run directory holds everything a run produced: `config.json` (resolved configuration, versions,
devices, dataset fingerprint), `metrics.json`, the plots, `report.md` and `checkpoints/`. Every file
is written to a temporary name and renamed into place, so an interrupted run never leaves a
half-written file, and an earlier run's files are never replaced by another run.
"""

from __future__ import annotations

import datetime
import fcntl
import importlib.metadata
import json
import os
import platform
from pathlib import Path
from typing import Any

import jax

from mnist_jax.config import TrainConfig
from mnist_jax.errors import ConfigError, DataError, MnistJaxError, OutputError, one_line

# Re-exported: the atomic writers live in `mnist_jax.fileio`; run code imports them from here.
from mnist_jax.fileio import write_json_atomic as write_json_atomic
from mnist_jax.fileio import write_text_atomic as write_text_atomic

CONFIG_FILE = "config.json"
METRICS_FILE = "metrics.json"
# Files whose presence means a folder already holds a run.
RUN_MARKERS = (CONFIG_FILE, METRICS_FILE, "checkpoints", "summary.json", "sweep.json")


def read_json(path: str | os.PathLike) -> Any:
    path = Path(path)
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise MnistJaxError(f"{path} does not exist: is {path.parent} a run directory?") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise MnistJaxError(f"{path} is not valid JSON ({error}); the file is damaged") from None
    except RecursionError:
        raise MnistJaxError(
            f"{path} is nested too deeply to be a record; the file is damaged"
        ) from None


LOCK_FILE = ".lock"
_held_locks: dict[Path, int] = {}  # folder -> descriptor, held until the process ends


def refuse_finished_without_checkpoints(
    folder: Path, results_file: str, has_checkpoints: bool, what: str = "run"
) -> None:
    """A resume's first guard, for runs and sweeps alike: a folder whose results are written but
    whose checkpoints are gone cannot be resumed, and training again would replace its files."""
    if (folder / results_file).exists() and not has_checkpoints:
        raise ConfigError(
            f"{folder} holds a finished {what}'s results but no checkpoints: nothing to resume "
            "from, and training again would replace its files"
        )


def read_kept(path: Path, intact: Any) -> Any:
    """A result file that a resumed, finished run or sweep keeps as it is, read back; where
    `intact(content)` is false it is damaged, and the user sets it aside (nothing is replaced)."""
    content = read_json(path)
    if not intact(content):
        raise MnistJaxError(f"{path} is damaged; move it away and resume again to rewrite it")
    return content


def holds_run(folder: Path) -> bool:
    return any((folder / marker).exists() for marker in RUN_MARKERS)


def lock_run_dir(folder: str | os.PathLike) -> Path:
    """Holds an exclusive lock on `folder` until this process ends (or `unlock_run_dir`).

    Two processes writing one run directory (two runs given the same --out, two resumes of one
    run) would silently mix their files: the second is refused at once. The kernel drops the lock
    when its process dies, SIGKILL included, so a killed run can be resumed straight away.
    """
    folder = Path(folder).resolve()
    if folder in _held_locks:
        return folder
    try:
        descriptor = os.open(folder / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as error:
        raise OutputError(f"cannot write to {folder}: {error.strerror}") from None
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.pread(descriptor, 32, 0).decode(errors="replace").strip() or "another"
        os.close(descriptor)
        raise ConfigError(
            f"{folder} is in use by process {holder}: one process at a time may write a run"
        ) from None
    os.ftruncate(descriptor, 0)
    os.pwrite(descriptor, f"{os.getpid()}\n".encode(), 0)
    _held_locks[folder] = descriptor
    return folder


def unlock_run_dir(folder: str | os.PathLike | None = None) -> None:
    """Releases the lock on `folder` (every lock this process holds when None)."""
    for held in list(_held_locks) if folder is None else [Path(folder).resolve()]:
        descriptor = _held_locks.pop(held, None)
        if descriptor is not None:
            os.close(descriptor)


def is_empty_folder(folder: str | os.PathLike) -> bool:
    """A folder with nothing in it but, perhaps, a run lock."""
    return Path(folder).is_dir() and all(e.name == LOCK_FILE for e in Path(folder).iterdir())


def create_run_dir(
    out: str | os.PathLike | None,
    *,
    root: str | os.PathLike,
    name: str,
    flag: str = "--out",
    resume_hint: bool = False,
) -> Path:
    """Creates and locks (`lock_run_dir`) the run directory `out`, or a new `root/name[-N]`.

    An existing `out` is accepted only if it is an empty folder: one that holds files (a run or
    anything else) is refused, so nothing already written is ever overwritten. Creating the folder
    and taking the lock are atomic, so of two commands given the same folder exactly one wins.
    `resume_hint`: the error for a folder holding a run suggests --resume (the commands that can).
    """
    if out is None:
        base = folder = Path(root) / name
        _make_folder(base.parent, flag, parents=True)
        suffix = 1
        while not _make_folder(folder, flag):
            suffix += 1
            folder = base.with_name(f"{base.name}-{suffix}")
    else:
        folder = Path(out)
        if folder.exists() and not folder.is_dir():
            raise ConfigError(f"{flag} {folder} is a file, not a folder")
        _make_folder(folder, flag, parents=True)
    # Checked before locking (a refused folder is left exactly as it was) and again after (the
    # lock decides between two commands that both found it empty).
    for check in ("before", "after"):
        if not is_empty_folder(folder):
            if check == "after":
                unlock_run_dir(folder)
            what = "another run" if holds_run(folder) else "other files"
            raise ConfigError(
                f"{flag} {folder} already holds {what}; choose a new folder"
                + (
                    f" (or continue that run with --resume {folder})"
                    if resume_hint and what == "another run"
                    else ""
                )
            )
        if check == "before":
            lock_run_dir(folder)
    return folder


def _make_folder(folder: Path, flag: str, parents: bool = False) -> bool:
    """mkdir; False if it already existed. Any other failure is one line naming the folder."""
    try:
        folder.mkdir(parents=parents, exist_ok=parents)
        return True
    except FileExistsError:
        return False
    except OSError as error:
        raise OutputError(f"cannot create {flag} {folder}: {error.strerror}") from None


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


def read_run_record(folder: str | os.PathLike, name: str = CONFIG_FILE) -> tuple[dict, TrainConfig]:
    """A run's (or sweep's) record and its configuration; a damaged record is one line."""
    path = Path(folder) / name
    record = read_json(path)
    try:
        return record, TrainConfig.from_dict(record["config"])
    except (KeyError, TypeError, ConfigError) as error:
        raise MnistJaxError(f"{path} is not a run record ({one_line(error)})") from None


def check_same_data(dataset, record: dict, folder: str | os.PathLike) -> None:
    """Refuses to continue or evaluate a run on other files than it was trained on."""
    recorded = record.get("dataset")
    if not isinstance(recorded, dict):
        raise DataError(
            f"the record of the dataset in {folder} is damaged ({type(recorded).__name__}, not an "
            "object), so the files cannot be checked against it"
        )
    if dataset.fingerprint != recorded.get("fingerprint"):
        raise DataError(
            f"the {dataset.name} files found ({dataset.source}) differ from those the run in "
            f"{folder} was trained on (fingerprint mismatch); pass --data-dir with the original "
            "files"
        )
    for split, images in (("train", dataset.train_images), ("test", dataset.test_images)):
        count = recorded.get(f"{split}_examples")
        if isinstance(count, int) and count != int(images.shape[0]):  # a subset of the files
            raise DataError(
                f"the run in {folder} was trained on {count} {split} examples of these files, "
                f"not their {int(images.shape[0])}: give it the same subset (from Python, "
                "resume_run(RUN, dataset=...))"
            )


def run_record(
    config: TrainConfig, dataset, *, model: dict | None = None, command: str | None = None
) -> dict[str, Any]:
    """The content of `config.json`: enough to re-create, re-evaluate and resume the run.
    `model` is `models.model_record` of the run's model (its name, settings, parameter count)."""
    return {
        "config": config.to_dict(),
        "model": model,
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
