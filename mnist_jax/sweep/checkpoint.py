"""Checkpoints of a sweep: one `CheckpointStore` per program, holding its stacked state.

Layout: `SWEEP/checkpoints/program-<i>/<epoch>/`, with the stacked `TrainState` (all `num_padded`
rows) and an info item: the sweep's config, the program's members and padding, one history per
member, and the members' mean validation accuracy. With several processes every process saves and
restores its own members' shards (`CheckpointStore`).
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jax
import numpy as np

from mnist_jax.checkpoint import CHECKPOINTS_DIRNAME, CheckpointStore
from mnist_jax.checkpoint.run import model_check, restore_state
from mnist_jax.config import TrainConfig
from mnist_jax.distributed import gather_to_host
from mnist_jax.epochs import diverged
from mnist_jax.errors import CheckpointError, ConfigError
from mnist_jax.sweep import program as prog
from mnist_jax.sweep.members import Member
from mnist_jax.sweep.plan import SweepProgram
from mnist_jax.train import TrainSpec, TrainState

__all__ = ["SweepCheckpointer", "program_store", "sweep_start"]


def program_store(sweep_dir: str | Path, index: int, **options) -> CheckpointStore:
    return CheckpointStore(Path(sweep_dir) / CHECKPOINTS_DIRNAME / f"program-{index}", **options)


def _mean_val_accuracy(histories: list[list[dict]]) -> float | None:
    values = [h[-1]["val_accuracy"] for h in histories if h and not diverged(h[-1])]
    return float(np.mean(values)) if values else None


class SweepCheckpointer:
    """A `run_sweep` callback saving each program's stacked state every `save_every` epochs and
    after the last, keeping the latest `keep` per program. Use it as a context manager (leaving it
    waits for the background writes)."""

    def __init__(
        self,
        sweep_dir: str | Path,
        config: TrainConfig,
        *,
        num_classes: int = 10,
        specs: Callable[[SweepProgram], TrainSpec] | None = None,
        save_every: int = 1,
        keep: int = 3,
        async_save: bool = True,
    ):
        self.sweep_dir, self.config, self.save_every = Path(sweep_dir), config, save_every
        self.num_classes = num_classes
        self.specs = specs or (lambda program: program.spec(config, num_classes))
        self._options = {"keep_latest": keep, "async_save": async_save}
        self._program: SweepProgram | None = None
        self._store: CheckpointStore | None = None
        self.saved: list[tuple[int, int]] = []  # (program, epoch) of each save

    def __call__(
        self, program: SweepProgram, state: TrainState, records: list, histories: list
    ) -> None:
        if self._program != program:
            self.close()
            self._program = program
            self._store = program_store(self.sweep_dir, program.index, **self._options)
            self._store.open_for_writing()
        epoch = max(len(h) for h in histories)
        if epoch % self.save_every and epoch != self.config.epochs:
            return
        info = {
            "kind": "sweep-program",
            "epoch": epoch,
            "config": self.config.to_dict(),
            "num_classes": self.num_classes,
            "model": self.specs(program).model.describe(),
            "tracks_best": True,
            "hyper": sorted(state.hyper),
            "image_shape": list(self.specs(program).image_shape),
            "program": program.index,
            "num_padded": program.num_padded,
            "members": [m.to_dict() for m in program.members],
            "history": [[dict(r) for r in h] for h in histories],
        }
        # One process saves a host copy; several save the global arrays, each writing its shards.
        tree = gather_to_host(state) if jax.process_count() == 1 else state
        self._store.save(epoch, tree, info, metric=_mean_val_accuracy(histories))
        self.saved.append((program.index, epoch))

    def close(self) -> None:
        if self._store is not None:
            self._store.close()
            self._program, self._store = None, None

    def __enter__(self) -> SweepCheckpointer:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()


def _abstract_state(
    spec: TrainSpec, program: SweepProgram, mesh: jax.sharding.Mesh, config: TrainConfig
) -> Any:
    """Shapes, dtypes and member sharding of the program's stacked state, computing nothing."""
    init = functools.partial(prog.init_members, spec, program.padded_members, base=config)
    sharding = prog.member_sharding(mesh)
    return jax.tree.map(
        lambda s: jax.ShapeDtypeStruct(s.shape, s.dtype, sharding=sharding), jax.eval_shape(init)
    )


def sweep_start(
    sweep_dir: str | Path,
    config: TrainConfig,
    *,
    mesh: jax.sharding.Mesh,
    num_classes: int = 10,
    specs: Callable[[SweepProgram], TrainSpec] | None = None,
    on_restore: Callable[[SweepProgram, dict], None] | None = None,
):
    """A `run_sweep(start=...)` callable resuming every program from its newest intact checkpoint,
    its stacked state sharded over `mesh` (a program without one starts fresh); `specs(program)` is
    the program's spec (default: `SweepProgram.spec` with `num_classes` and 28x28 images). A
    damaged newest checkpoint falls back to the
    previous one with a warning; one of another model, other members, padding or epochs is a
    CheckpointError. `on_restore(program, info)` is told of each restore."""

    def start(program: SweepProgram) -> tuple[TrainState, list[list[dict]]] | None:
        store = program_store(sweep_dir, program.index)
        if not store.steps():
            return None
        members = [m.to_dict() for m in program.members]

        spec = specs(program) if specs else program.spec(config, num_classes)

        def check(info: dict, where: str) -> None:
            if "model" in info:  # sweeps from before models were recorded: all MLPs
                model_check(spec.model)(info, where)
            stored = info.get("members")
            # Members recorded before a field existed take its default; what is not a member
            # stays as it is, and the comparison below refuses it.
            with contextlib.suppress(TypeError, ConfigError):
                stored = [Member(**m).to_dict() for m in stored]
            if stored != members or info.get("num_padded") != program.num_padded:
                raise CheckpointError(
                    f"{where} holds the checkpoint of other members (or another device count): "
                    f"{len(info.get('members') or [])} members padded to "
                    f"{info.get('num_padded')}, this program has {len(members)} padded to "
                    f"{program.num_padded}"
                )
            if max(len(h) for h in info["history"]) != int(info["epoch"]):
                raise CheckpointError(f"{where}: its histories do not end at epoch {info['epoch']}")

        template = _abstract_state(spec, program, mesh, config)

        def hyper_values() -> dict:  # the members' own (padded rows copy the first member)
            return prog.member_arrays(program.padded_members, config)[4]

        state, info = restore_state(store, "latest", template, check, hyper_values)
        if on_restore is not None:
            on_restore(program, info)
        return state, info["history"]

    return start
