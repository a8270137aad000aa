"""Checkpoints of a sweep: each program's stacked state, through the run checkpoints' orbax layer.

Layout: `SWEEP/checkpoints/program-<i>/<epoch>/` is one orbax step of program i (`plan_programs`'
index) with the same two items as a run's checkpoint: `state` (the stacked `TrainState`, all
`num_padded` rows) and `info` (format version, epoch, the program's config, its members, one history
per member under `history`, the mean validation accuracy and the state's SHA-256 digest).

Everything else is `mnist_jax.checkpoint`'s: `RunCheckpointer` writes (save policy, latest-K
retention, setting aside the checkpoints of epochs a resumed program re-trains, owned host copies
before the sweep donates the state), and `restore_checkpoint_in` reads (digest check, a damaged
newest checkpoint skipped with a warning for the previous one, incompatible ones refused).

Single process only: with several processes the CLI does not checkpoint (see experiments/sweep.py).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jax
import numpy as np

from mnist_jax.checkpoint import (
    CHECKPOINT_FORMAT_VERSION,
    CHECKPOINTS_DIRNAME,
    RunCheckpointer,
    host_copy,
    list_checkpoints_in,
    restore_checkpoint_in,
    state_digest,
)
from mnist_jax.config import TrainConfig
from mnist_jax.errors import CheckpointError
from mnist_jax.sweep import program as prog
from mnist_jax.sweep.distributed import gather_to_host
from mnist_jax.sweep.run import SweepProgram
from mnist_jax.train import TrainSpec, TrainState

__all__ = ["SweepCheckpointer", "program_checkpoint_dir", "restore_program", "sweep_start"]


def program_checkpoint_dir(sweep_dir: str | Path, index: int) -> Path:
    return Path(sweep_dir).resolve() / CHECKPOINTS_DIRNAME / f"program-{index}"


def program_config(config: TrainConfig, program: SweepProgram) -> TrainConfig:
    """The shared configuration with the program's hidden sizes (what its checkpoints must match)."""
    return config.replace(
        hidden_sizes=program.hidden_sizes,
        seed=program.members[0].seed,
        learning_rate=program.members[0].learning_rate,
        dropout_rate=program.members[0].dropout_rate,
    )


def _mean_val_accuracy(histories: list[list[dict]]) -> float | None:
    values = [
        h[-1]["val_accuracy"]
        for h in histories
        if h and np.isfinite(h[-1]["val_accuracy"]) and np.isfinite(h[-1]["val_loss"])
    ]
    return float(np.mean(values)) if values else None


class _ProgramCheckpointer(RunCheckpointer):
    """A `RunCheckpointer` on one program's folder whose state is the program's stacked state."""

    def __init__(
        self,
        sweep_dir: Path,
        config: TrainConfig,
        program: SweepProgram,
        *,
        num_classes: int,
        input_size: int,
        save_every: int,
        keep: int,
        async_save: bool,
    ):
        super().__init__(
            sweep_dir,
            program_config(config, program),
            num_classes=num_classes,
            save_every=save_every,
            keep_latest=keep,
            keep_best=0,
            async_save=async_save,
            directory=program_checkpoint_dir(sweep_dir, program.index),
        )
        self.program = program
        self.input_size = input_size

    def save_program(self, host_state: TrainState, histories: list[list[dict]], epoch: int) -> bool:
        val_accuracy = _mean_val_accuracy(histories)
        info = {
            "format_version": CHECKPOINT_FORMAT_VERSION,
            "kind": "sweep-program",
            "epoch": epoch,
            "config": self.config.to_dict(),
            "num_classes": self.num_classes,
            "input_size": self.input_size,
            "program": self.program.index,
            "num_padded": self.program.num_padded,
            "members": [m.to_dict() for m in self.program.members],
            "history": [[dict(r) for r in h] for h in histories],  # one history per member
            "val_accuracy": val_accuracy,
            "state_sha256": state_digest(host_state),
        }
        return self._write(epoch, host_state, info, val_accuracy)


class SweepCheckpointer:
    """A `run_sweep` callback saving each program's stacked state every `save_every` epochs and after
    the last, keeping the latest `keep` per program. Use it as a context manager (`close` waits for
    the background writes)."""

    def __init__(
        self,
        sweep_dir: str | Path,
        config: TrainConfig,
        *,
        num_classes: int,
        input_size: int = 784,
        save_every: int = 1,
        keep: int = 3,
        async_save: bool = True,
    ):
        if jax.process_count() > 1:
            raise CheckpointError(
                "sweep checkpoints are written by a single process; run without "
                "checkpoints when using several processes"
            )
        self.sweep_dir = Path(sweep_dir).resolve()
        self._make = functools.partial(
            _ProgramCheckpointer,
            self.sweep_dir,
            config,
            num_classes=num_classes,
            input_size=input_size,
            save_every=save_every,
            keep=keep,
            async_save=async_save,
        )
        self._current: _ProgramCheckpointer | None = None
        self.saved: list[tuple[int, int]] = []  # (program, epoch) of each save

    def __call__(
        self, program: SweepProgram, state: TrainState, records: list, histories: list
    ) -> None:
        if self._current is None or self._current.program != program:
            self._close_current()
            self._current = self._make(program)
        epoch = max(len(h) for h in histories)
        if not self._current.should_save(epoch):
            return
        # Owned host copies now: run_sweep donates the state's buffers to the next epoch.
        host_state = host_copy(gather_to_host(state))
        if self._current.save_program(host_state, histories, epoch):
            self.saved.append((program.index, epoch))

    def _close_current(self) -> None:
        if self._current is not None:
            self._current.close()
            self._current = None

    def close(self) -> None:
        self._close_current()

    def __enter__(self) -> SweepCheckpointer:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()


def _abstract_state(
    spec: TrainSpec, program: SweepProgram, input_size: int, mesh: jax.sharding.Mesh
) -> Any:
    """Shapes, dtypes and member sharding of the program's stacked state, computing nothing."""
    padded = program.members + (program.members[0],) * (program.num_padded - len(program.members))
    shapes = jax.eval_shape(
        functools.partial(prog.init_members, spec, padded, input_size=input_size)
    )
    sharding = prog.member_sharding(mesh)
    return jax.tree_util.tree_map(
        lambda s: jax.ShapeDtypeStruct(s.shape, s.dtype, sharding=sharding), shapes
    )


def restore_program(
    sweep_dir: str | Path,
    config: TrainConfig,
    program: SweepProgram,
    *,
    num_classes: int,
    input_size: int,
    mesh: jax.sharding.Mesh,
) -> tuple[TrainState, list[list[dict]], dict] | None:
    """The newest intact checkpoint of `program`: (stacked state sharded over `mesh`, histories,
    info), or None when the program has no checkpoint. A damaged newest checkpoint falls back to the
    previous one with a warning; a checkpoint of other members or shapes is a CheckpointError."""
    directory = program_checkpoint_dir(sweep_dir, program.index)
    if not list_checkpoints_in(directory):
        return None
    expected = program_config(config, program)
    spec = TrainSpec.from_config(expected, num_classes)
    state, info = restore_checkpoint_in(
        directory, _abstract_state(spec, program, input_size, mesh), "latest", config=expected
    )
    members = [m.to_dict() for m in program.members]
    if info.get("members") != members or info.get("num_padded") != program.num_padded:
        raise CheckpointError(
            f"{directory} holds the checkpoint of other members (or another device "
            f"count): {len(info.get('members') or [])} members padded to "
            f"{info.get('num_padded')}, this program has {len(members)} padded to "
            f"{program.num_padded}"
        )
    histories = info["history"]
    if max(len(h) for h in histories) != int(info["epoch"]):
        raise CheckpointError(
            f"{directory}: checkpoint of epoch {info['epoch']} has histories of "
            f"{max(len(h) for h in histories)} epochs"
        )
    return state, histories, info


def sweep_start(
    sweep_dir: str | Path,
    config: TrainConfig,
    *,
    num_classes: int,
    input_size: int,
    mesh: jax.sharding.Mesh,
    on_restore: Callable[[SweepProgram, dict], None] | None = None,
):
    """A `run_sweep(start=...)` callable that resumes every program from its newest intact checkpoint
    (a program without one starts fresh). `on_restore(program, info)` is told of each restore."""

    def start(program: SweepProgram):
        restored = restore_program(
            sweep_dir, config, program, num_classes=num_classes, input_size=input_size, mesh=mesh
        )
        if restored is None:
            return None
        state, histories, info = restored
        if on_restore is not None:
            on_restore(program, info)
        return state, histories

    return start
