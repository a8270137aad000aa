"""Writing a run's checkpoints: `RunCheckpointer` (save policy, retention, setting checkpoints aside)."""

from __future__ import annotations

import json
import warnings
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import orbax.checkpoint as ocp
from orbax.checkpoint import checkpoint_managers as ocp_policies

from mnist_jax.checkpoint.digest import host_copy, state_digest
from mnist_jax.checkpoint.layout import (
    BEST_METRIC,
    CHECKPOINT_FORMAT_VERSION,
    INFO_ITEM,
    STATE_ITEM,
    _metric_of,
    _short,
    checkpoints_dir,
)
from mnist_jax.config import TrainConfig
from mnist_jax.errors import CheckpointError, ConfigError
from mnist_jax.train import TrainState

__all__ = ["RunCheckpointer"]


class RunCheckpointer:
    """Saves a run's checkpoints; use it as a `fit` callback, and as a context manager.

    `checkpointer(state, record, history)` saves epoch `record["epoch"]` when it is a multiple of
    `save_every` or the final epoch (`config.epochs`). With `async_save` the files are written in the
    background while the next epoch trains; the state has been copied to host memory before the call
    returns, so donating its buffers afterwards is safe. `wait()` blocks until pending saves are on
    disk (and raises their errors); `close()` (and leaving the `with` block) waits, then releases
    the manager.

    A run resumed from epoch E (after falling back past a damaged checkpoint, or on request)
    re-trains epochs after E; their old checkpoints belong to the abandoned continuation, so the first
    save of an epoch at or before them moves them into `RUN/checkpoints_set_aside/` (with a warning)
    rather than deleting them. So does opening a run where a checkpoint's orbax metrics file is
    unreadable (orbax 0.12.8 cannot open such a directory for writing at all).

    `directory` puts the checkpoints somewhere other than RUN/checkpoints (a sweep keeps one folder
    per program); set-aside checkpoints then go to `<directory>_set_aside` next to it. Subclasses
    that store another kind of state build their own info and call `_write`.
    """

    def __init__(
        self,
        run_dir: str | Path,
        config: TrainConfig,
        *,
        num_classes: int | None = None,
        save_every: int = 1,
        keep_latest: int = 3,
        keep_best: int = 1,
        async_save: bool = True,
        directory: str | Path | None = None,
    ) -> None:
        if not (isinstance(save_every, int) and save_every >= 1):
            raise ConfigError(f"invalid save_every={save_every!r}: expected a positive integer")
        if not (isinstance(keep_latest, int) and keep_latest >= 1):
            raise ConfigError(
                f"invalid keep_latest={keep_latest!r}: expected a positive integer "
                "(resuming needs the latest checkpoint)"
            )
        if not (isinstance(keep_best, int) and keep_best >= 0):
            raise ConfigError(f"invalid keep_best={keep_best!r}: expected a non-negative integer")
        self.run_dir = Path(run_dir).resolve()
        self.directory = (
            checkpoints_dir(self.run_dir) if directory is None else Path(directory).resolve()
        )
        # RUN/checkpoints_set_aside for the default directory.
        self.set_aside_root = self.directory.with_name(self.directory.name + "_set_aside")
        self.config = config
        self.num_classes = num_classes
        self.save_every = save_every
        metric = _metric_of
        options = ocp.CheckpointManagerOptions(
            save_decision_policy=ocp_policies.AnySavePolicy(
                [
                    ocp_policies.FixedIntervalPolicy(save_every),
                    ocp_policies.SpecificStepsPolicy((config.epochs,)),
                ]
            ),
            preservation_policy=ocp_policies.AnyPreservationPolicy(
                [
                    ocp_policies.LatestN(n=keep_latest),
                    ocp_policies.BestN(
                        get_metric_fn=metric,
                        reverse=False,
                        n=keep_best,
                        keep_checkpoints_without_metrics=False,
                    ),
                ]
            ),
            # Not a retention option here (preservation_policy decides): without best_fn orbax 0.12.8
            # keeps the metrics in memory only, and a resumed run would not know the best epoch.
            best_fn=metric,
            best_mode="max",
            enable_async_checkpointing=async_save,
            create=True,
        )
        self._set_aside_steps_with_unreadable_metrics()
        try:
            self._manager = ocp.CheckpointManager(
                self.directory, options=options, item_names=(STATE_ITEM, INFO_ITEM)
            )
        except Exception as error:  # orbax reads every step's metrics here
            raise CheckpointError(
                f"cannot open {self.directory} for writing: {_short(error)}"
            ) from error
        self._closed = False

    # A fit callback.
    def __call__(self, state: TrainState, record: dict, history: list) -> None:
        self.save(state, history, epoch=int(record["epoch"]))

    def should_save(self, epoch: int) -> bool:
        return epoch % self.save_every == 0 or epoch == self.config.epochs

    def save(
        self,
        state: TrainState,
        history: Iterable[dict],
        *,
        epoch: int | None = None,
        force: bool = False,
    ) -> bool:
        """Saves `state` as the checkpoint of `epoch` (default: `state.epoch`); False if not due."""
        if self._closed:
            raise CheckpointError(
                f"checkpointer of {self.run_dir} is closed; make a new one to save"
            )
        history = [dict(r) for r in history]
        epoch = int(state.epoch) if epoch is None else int(epoch)
        if not (force or self.should_save(epoch)):
            return False
        # Owned host copies, made now: the caller donates the device buffers when we return.
        host_state = host_copy(state)
        val_accuracy = (
            float(history[-1][BEST_METRIC]) if history and BEST_METRIC in history[-1] else None
        )
        info = {
            "format_version": CHECKPOINT_FORMAT_VERSION,
            "epoch": epoch,
            "step": int(host_state.step),
            "config": self.config.to_dict(),
            "num_classes": self.num_classes or _num_classes_of(host_state),
            "input_size": _input_size_of(host_state),
            "history": history,
            BEST_METRIC: val_accuracy,
            "state_sha256": state_digest(host_state),
        }
        return self._write(epoch, host_state, info, val_accuracy)

    def _write(self, epoch: int, host_state: Any, info: dict, val_accuracy: float | None) -> bool:
        """Saves owned host arrays `host_state` and the JSON `info` as step `epoch` (always)."""
        self._set_aside_steps_from(epoch)
        metrics = None if val_accuracy is None else {BEST_METRIC: val_accuracy}
        return self._manager.save(
            epoch,
            args=ocp.args.Composite(
                **{
                    STATE_ITEM: ocp.args.StandardSave(host_state),
                    INFO_ITEM: ocp.args.JsonSave(info),
                }
            ),
            metrics=metrics,
            force=True,
        )

    def _set_aside_steps_from(self, epoch: int) -> None:
        later = [s for s in self._manager.all_steps() if s >= epoch]
        if not later:
            return
        self._manager.wait_until_finished()
        moved = self._move_aside(later)
        self._manager.reload()
        warnings.warn(
            f"run {self.run_dir} continues from before epoch(s) {sorted(later)}; their "
            f"checkpoints were moved to {moved}",
            stacklevel=4,
        )

    def _set_aside_steps_with_unreadable_metrics(self) -> None:
        if not self.directory.is_dir():
            return
        unreadable = []
        for step_dir in self.directory.iterdir():
            metrics_file = step_dir / "metrics" / "metrics"
            if step_dir.name.isdigit() and metrics_file.is_file():
                try:
                    _metric_of(json.loads(metrics_file.read_text()))
                except (ValueError, KeyError, TypeError):
                    unreadable.append(int(step_dir.name))
        if unreadable:
            moved = self._move_aside(unreadable)
            warnings.warn(
                f"checkpoint(s) of epoch(s) {sorted(unreadable)} in {self.directory} have "
                f"an unreadable metrics file; moved to {moved}",
                stacklevel=3,
            )

    def _move_aside(self, steps: Iterable[int]) -> str:
        target_root = self.set_aside_root
        target_root.mkdir(exist_ok=True)
        moved = []
        for step in sorted(steps):
            target, n = target_root / str(step), 1
            while target.exists():
                target, n = target_root / f"{step}-{n}", n + 1
            (self.directory / str(step)).rename(target)
            moved.append(f"{step} -> {target.name}")
        return f"{target_root} ({', '.join(moved)})"

    @property
    def manager(self) -> ocp.CheckpointManager:
        return self._manager

    def wait(self) -> None:
        """Blocks until every pending save is complete on disk; re-raises a failed save's error."""
        self._manager.wait_until_finished()

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._manager.wait_until_finished()
            self._manager.close()

    def __enter__(self) -> RunCheckpointer:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()


def _num_classes_of(state: TrainState) -> int | None:
    """Width of the output layer (the last Dense bias), for a template without the dataset at hand."""
    try:
        last = max((k for k in state.params if k.startswith("Dense_")), key=lambda k: int(k[6:]))
        return int(np.shape(state.params[last]["bias"])[0])
    except (AttributeError, KeyError, TypeError, ValueError):
        return None


def _input_size_of(state: TrainState) -> int | None:
    try:
        return int(np.shape(state.params["Dense_0"]["kernel"])[0])
    except (AttributeError, KeyError, TypeError, IndexError):
        return None
