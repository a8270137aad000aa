"""Reading checkpoints without side effects: listing them, and restoring the latest, best or a given one.

"latest" and "best" skip a damaged checkpoint with a warning and try the next; an epoch number does not.
"""

from __future__ import annotations

import contextlib
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import orbax.checkpoint as ocp

from mnist_jax.checkpoint.layout import BEST_METRIC, INFO_ITEM, STATE_ITEM, checkpoints_dir
from mnist_jax.checkpoint.steps import _Damaged, _load_step, _read_info
from mnist_jax.config import TrainConfig
from mnist_jax.errors import CheckpointError
from mnist_jax.train import TrainState

__all__ = [
    "latest_intact_epoch",
    "list_checkpoints",
    "list_checkpoints_in",
    "restore_checkpoint",
    "restore_checkpoint_in",
]


def _reader(run_dir: str | Path) -> ocp.CheckpointManager:
    return _reader_at(_existing_checkpoints_dir(run_dir))


def _existing_checkpoints_dir(run_dir: str | Path) -> Path:
    directory = checkpoints_dir(run_dir)
    if not directory.is_dir():
        raise CheckpointError(f"no checkpoints in {Path(run_dir)}: {directory} does not exist")
    return directory


def _reader_at(directory: Path) -> ocp.CheckpointManager:
    if not directory.is_dir():
        raise CheckpointError(f"no checkpoints: {directory} does not exist")
    # read_only: no saves, deletions, tmp-dir cleanup or root metadata; lightweight: no per-step
    # reads at construction, so one damaged step cannot make the whole directory unreadable.
    options = ocp.CheckpointManagerOptions(
        read_only=True, create=False, lightweight_initialize=True, enable_async_checkpointing=False
    )
    return ocp.CheckpointManager(
        directory,
        options=options,
        item_handlers={
            STATE_ITEM: ocp.StandardCheckpointHandler(),
            INFO_ITEM: ocp.JsonCheckpointHandler(),
        },
    )


def list_checkpoints(run_dir: str | Path) -> list[int]:
    """Epochs with a complete (committed) checkpoint directory, ascending; [] if none. Not validated."""
    if not checkpoints_dir(run_dir).is_dir():
        return []
    with contextlib.closing(_reader(run_dir)) as manager:
        return sorted(manager.all_steps())


def _candidates(
    manager: ocp.CheckpointManager, which: str | int, where: str, skipped: list[str]
) -> list[int]:
    steps = sorted(manager.all_steps())
    if not steps:
        raise CheckpointError(f"no checkpoints in {where}")
    if which == "latest":
        return steps[::-1]
    if which == "best":
        scored = []
        for step in steps:
            try:
                info = _read_info(manager, step)
            except _Damaged as damage:
                _warn_damaged(where, step, damage, skipped)
                continue
            value = info.get(BEST_METRIC)
            scored.append((float("-inf") if value is None else float(value), step))
        return [step for _, step in sorted(scored, reverse=True)]  # ties: the later epoch
    if isinstance(which, (int, np.integer)) and not isinstance(which, bool):
        if int(which) not in steps:
            raise CheckpointError(
                f"no checkpoint of epoch {int(which)} in {where}; available: {steps}"
            )
        return [int(which)]
    raise CheckpointError(
        f"invalid checkpoint choice {which!r}: expected 'latest', 'best' or an epoch"
    )


def _warn_damaged(where: str, step: int, damage: _Damaged, skipped: list[str]) -> None:
    skipped.append(f"epoch {step}: {damage}")
    warnings.warn(f"skipping damaged checkpoint of epoch {step} in {where}: {damage}", stacklevel=4)


def _find(
    run_dir: str | Path, which: str | int, template: TrainState | None, config: TrainConfig | None
) -> tuple[Any, dict]:
    return _find_in(_existing_checkpoints_dir(run_dir), which, template, config)


def _find_in(
    directory: Path, which: str | int, template: Any, config: TrainConfig | None
) -> tuple[Any, dict]:
    where = str(directory)
    skipped: list[str] = []
    with contextlib.closing(_reader_at(directory)) as manager:
        for step in _candidates(manager, which, where, skipped):
            label = f"checkpoint epoch {step} in {where}"
            try:
                return _load_step(manager, step, template, config, label)
            except _Damaged as damage:
                if not isinstance(which, str):
                    raise CheckpointError(f"{label} is damaged: {damage}") from damage
                _warn_damaged(where, step, damage, skipped)
    raise CheckpointError(f"no intact checkpoint in {where}: " + "; ".join(skipped))


def restore_checkpoint(
    run_dir: str | Path,
    template_state: TrainState,
    which: str | int = "latest",
    *,
    config: TrainConfig | None = None,
) -> tuple[TrainState, dict]:
    """Restores a checkpoint into `template_state`'s structure, bitwise; returns (state, info).

    `which`: "latest" (what resume uses), "best" (highest val_accuracy among the kept checkpoints) or
    an epoch number. For "latest"/"best" a damaged checkpoint is skipped with a warning and the next
    one is tried; for an epoch number it is a CheckpointError. Nothing on disk is modified.

    `template_state` (e.g. `create_train_state(config, spec)`) gives the structure, shapes, dtypes
    and devices; its values are not used. `config`, if given, is the run's expected configuration:
    a checkpoint made with other hidden sizes is refused before any array is read. `info` is the
    checkpoint's JSON item: format_version, epoch, step, config (a dict), num_classes, history,
    val_accuracy.
    """
    state, info = _find(run_dir, which, template_state, config)
    return state, info


def restore_checkpoint_in(
    directory: str | Path,
    template_state: Any,
    which: str | int = "latest",
    *,
    config: TrainConfig | None = None,
) -> tuple[Any, dict]:
    """`restore_checkpoint` for a checkpoint folder other than RUN/checkpoints (e.g. a sweep
    program's): the same damaged-checkpoint fallback, digest check and compatibility errors.

    `template_state` may be any pytree of arrays or `jax.ShapeDtypeStruct`s (with shardings, to
    restore sharded arrays). `info` must have the format version, epoch, config and history.
    """
    return _find_in(Path(directory).resolve(), which, template_state, config)


def list_checkpoints_in(directory: str | Path) -> list[int]:
    """Steps with a complete checkpoint in a checkpoint folder, ascending; [] if there is none."""
    directory = Path(directory).resolve()
    if not directory.is_dir():
        return []
    with contextlib.closing(_reader_at(directory)) as manager:
        return sorted(manager.all_steps())


def latest_intact_epoch(
    run_dir: str | Path,
    template_state: TrainState | None = None,
    *,
    config: TrainConfig | None = None,
) -> int | None:
    """The epoch of the newest checkpoint that reads back intact (warning about newer damaged ones).

    None if the run has no checkpoints at all (a fresh run); CheckpointError if there are some but none
    is intact or they are incompatible. With a template, shapes are checked as by `restore_checkpoint`.
    """
    if not list_checkpoints(run_dir):
        return None
    _, info = _find(run_dir, "latest", template_state, config)
    return int(info["epoch"])
