"""A sweep's programs restored from their checkpoints, as `checkpoint.Checkpointer` writes them.

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

import jax

from mnist_jax.checkpoint.run import model_check, restore_state
from mnist_jax.checkpoint.writer import Checkpointer, program_store
from mnist_jax.config import TrainConfig
from mnist_jax.errors import CheckpointError, ConfigError
from mnist_jax.sweep import program as prog
from mnist_jax.sweep.members import Member
from mnist_jax.sweep.plan import SweepProgram
from mnist_jax.train import TrainSpec, TrainState

# The writer, re-exported beside its restores.
__all__ = ["Checkpointer", "program_store", "sweep_start"]


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
    damaged newest checkpoint falls back to the previous one with a warning; one of another model,
    other members, padding or epochs is a CheckpointError. `on_restore(program, info)` is told of
    each restore."""

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

        # Shapes, dtypes and member sharding of the stacked state, computing nothing.
        init = functools.partial(prog.init_members, spec, program.padded_members, base=config)
        sharding = prog.member_sharding(mesh)
        template = jax.tree.map(
            lambda s: jax.ShapeDtypeStruct(s.shape, s.dtype, sharding=sharding),
            jax.eval_shape(init),
        )
        # The members' own hyper-parameters (padded rows copy the first member's).
        hyper_values = lambda: prog.member_arrays(program.padded_members, config)[4]
        state, info = restore_state(store, "latest", template, check, hyper_values)
        if on_restore is not None:
            on_restore(program, info)
        return state, info["history"]

    return start
