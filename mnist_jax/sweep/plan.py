"""Planning a sweep: its members grouped into compiled programs (`plan_sweep`), each program's
spec, the checks that run before anything trains, and the plan as sweep.json records it.

Members of one model, hidden sizes, optimizer and schedule form a group (one compiled program);
a group larger than the memory bound is cut into chunks, each padded to a multiple of the device
count. The command line records this plan and a resumed sweep must find the same one.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence

from mnist_jax.config import COMPILED_SWEEP_FIELDS, FIELDS, MODELS, TrainConfig, is_model_name
from mnist_jax.device_data import DeviceData, check_trains
from mnist_jax.errors import ConfigError
from mnist_jax.models import Model
from mnist_jax.sweep import program as prog
from mnist_jax.sweep.members import Member, chunk_sizes, group_members, json_value, padded_size
from mnist_jax.train import TrainSpec


@dataclasses.dataclass(frozen=True)
class SweepProgram:
    """One call of a compiled program: a chunk of one group's members, padded for the device count.

    `members` are the real members, in the order of the stacked state's leading axis; rows
    `len(members)` to `num_padded - 1` are dummies (copies of `members[0]`), their results dropped.
    """

    index: int  # position of this chunk in the sweep (0, 1, ...)
    members: tuple[Member, ...]
    num_padded: int

    @property
    def padded_members(self) -> tuple[Member, ...]:
        """The members of the stacked state's rows: the real ones, then copies of the first."""
        return self.members + (self.members[0],) * (self.num_padded - len(self.members))

    @property
    def group(self) -> dict:
        """The compiled fields its members share (`config.COMPILED_SWEEP_FIELDS`), by name; each
        is also an attribute (`program.model`)."""
        return dict(zip(COMPILED_SWEEP_FIELDS, self.members[0].group_key))

    def __getattr__(self, name: str):
        if name in COMPILED_SWEEP_FIELDS and "members" in self.__dict__:
            return getattr(self.members[0], name)
        raise AttributeError(f"SweepProgram has no attribute {name!r}")

    def spec(
        self,
        config: TrainConfig,
        num_classes: int = 10,
        image_shape: tuple[int, ...] = (28, 28),
        models: Mapping[str, Model] | None = None,
    ) -> TrainSpec:
        """The program's spec: the members' model (a built-in, or `models[name]`), their hidden
        sizes, the data's classes and image shape."""
        model = (models or {}).get(self.model)  # None: the configuration's built-in
        if model is None and not is_model_name(self.model):
            raise ConfigError(
                f"the sweep names model {self.model!r}, which is neither built in "
                f"({', '.join(MODELS)}) nor given in models= ({', '.join(models or ()) or 'none'})"
            )
        config = self.members[0].config(config)
        return TrainSpec.from_config(config, num_classes, tuple(image_shape), model=model)


def plan_programs(
    members: Sequence[Member],
    members_per_program: int,
    num_devices: int,
    members_per_step: int | None = None,
) -> list[SweepProgram]:
    """A sweep's program calls: groups by model, hidden sizes, optimizer and schedule, cut into
    chunks, padded for the devices (`padded_size`: less with one member per step)."""
    programs = []
    for group in group_members(members).values():
        start = 0
        for size in chunk_sizes(len(group), members_per_program, num_devices):
            chunk = tuple(group[start : start + size])
            padded = padded_size(size, num_devices, members_per_step)
            programs.append(SweepProgram(len(programs), chunk, padded))
            start += size
    return programs


def resolve_members_per_program(
    config: TrainConfig,
    members: Sequence[Member],
    data: DeviceData,
    num_devices: int,
    models: Mapping[str, Model] | None = None,
    members_per_step: int | None = None,
) -> int:
    """The default program size: what the memory estimate allows for the largest group of
    `members` (the smallest of the groups' sizes), trained `members_per_step` at a time."""
    programs = plan_programs(members, len(members), num_devices)  # one per group
    return min(
        prog.members_per_program(
            program.spec(config, data.num_classes, data.image_shape, models),
            int(data.train_images.shape[0]),
            num_devices=num_devices,
            num_classes=data.num_classes,
            eval_examples=max(int(data.val_images.shape[0]), int(data.test_images.shape[0])),
            eval_chunk_size=config.eval_batch_size,
            members_per_step=members_per_step,
        )
        for program in programs
    )


def plan_sweep(
    config: TrainConfig,
    members: Sequence[Member],
    data: DeviceData,
    num_devices: int,
    members_per_program: int | None = None,
    models: Mapping[str, Model] | None = None,
    members_per_step: int | None = None,
) -> list[SweepProgram]:
    """The sweep's program calls (`plan_programs`), by default as large as the memory estimate
    for the largest group allows, padded for `members_per_step` (see `run_sweep`; the default pads
    as vmapped members need). Planned once: the command line records this plan and trains it."""
    members = list(members)
    if not members:
        raise ConfigError("a sweep needs at least one member")
    if len(set(members)) != len(members):
        raise ConfigError("the sweep lists a member twice")
    # each configuration's values with the sweep's (the warm-up vs its epochs); seeds change nothing
    for member in {m.config_key: m for m in members}.values():
        member.config(config)
    # Each group can train on the data (`device_data.check_trains`: batch size, model, precision,
    # memory), and its members do not differ in a dropout rate the model does not take.
    for program in plan_programs(members, len(members), num_devices):  # one per group
        spec = program.spec(config, data.num_classes, data.image_shape, models)
        check_trains(program.members[0].config(config), data, spec)
        rates = sorted({m.dropout_rate for m in program.members})
        if len(rates) > 1 and not spec.model.takes_dropout_rate:
            raise ConfigError(
                f"model {spec.model.name} keeps its own dropout rate; the sweep's dropout rates "
                f"{rates} would all train the same"
            )
    if members_per_program is None:
        members_per_program = resolve_members_per_program(
            config, members, data, num_devices, models, members_per_step
        )
    return plan_programs(members, members_per_program, num_devices, members_per_step)


def plan_record(programs: Sequence[SweepProgram]) -> list[dict]:
    """The plan as sweep.json records it; a resumed sweep compares it with its own plan."""
    return [
        {
            "index": p.index,
            **{name: json_value(v) for name, v in p.group.items()},
            "num_padded": p.num_padded,
            "members": [m.to_dict() for m in p.members],
        }
        for p in programs
    ]


def recorded_plan(plan: list) -> list:
    """sweep.json's plan as `plan_record` writes it now: plans recorded before a field existed
    take its default (sweeps from before models were recorded trained the MLP with Adam)."""
    if not all(isinstance(p, dict) and isinstance(p.get("members"), list) for p in plan):
        return plan
    try:
        return [
            {
                "index": p.get("index"),
                **{
                    name: p.get(name, json_value(FIELDS[name].default))
                    for name in COMPILED_SWEEP_FIELDS
                },
                **({"num_padded": p["num_padded"]} if "num_padded" in p else {}),
                "members": [Member(**m).to_dict() for m in p["members"]],
            }
            for p in plan
        ]
    except (TypeError, ConfigError):
        return plan  # damaged: it then differs from any plan
