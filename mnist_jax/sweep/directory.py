"""A sweep directory end to end, as `mnist_jax.run` is for one run: what `python -m
experiments.sweep` calls between parsing its flags and printing.

`start_sweep` checks a new sweep and creates its folder (process 0; every process of a
multi-process job calls it), `reopen_sweep` reads a killed or finished one back (sweep.json, the
same data), and `complete_sweep` plans, records, trains with logs and per-program checkpoints, and
writes members.json, summary.json, predictions.npz, the figures and report.md (a finished sweep:
only what is missing).
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import jax

from mnist_jax.checkpoint import CHECKPOINTS_DIRNAME
from mnist_jax.config import TrainConfig
from mnist_jax.data import Dataset, load_dataset
from mnist_jax.device_data import check_fits, check_results_fit, to_device
from mnist_jax.distributed import barrier, check_shared_folder, is_main_process, path_of_process_0
from mnist_jax.errors import ConfigError, MnistJaxError
from mnist_jax.logs import EpochLog
from mnist_jax.models import model_record
from mnist_jax.rundir import (
    check_same_data,
    create_run_dir,
    device_summary,
    holds_run,
    is_empty_folder,
    lock_run_dir,
    read_kept,
    read_run_record,
    refuse_finished_without_checkpoints,
    run_record,
    write_json_atomic,
)
from mnist_jax.sweep.checkpoint import Checkpointer, sweep_start
from mnist_jax.sweep.members import CONFIG_KEY_FIELDS, Member, with_own_dropout
from mnist_jax.sweep.outputs import (
    MEMBERS_FILE,
    PER_MEMBER_FIELDS,
    SUMMARY_FILE,
    analyse,
    data_sources,
    member_entries,
    throughput,
    write_sweep_files,
)
from mnist_jax.sweep.plan import (
    SweepProgram,
    plan_record,
    plan_sweep,
    recorded_plan,
    resolve_members_per_program,
)
from mnist_jax.sweep.program import default_members_per_step, member_mesh
from mnist_jax.sweep.run import SweepResult, run_sweep

SWEEPS_ROOT = "sweeps"
SWEEP_FILE = "sweep.json"


@dataclasses.dataclass
class OpenSweep:
    """A sweep directory ready to train: its configuration, data, members and how to plan them."""

    sweep_dir: Path
    config: TrainConfig
    dataset: Dataset
    members: list[Member]
    reference: Member  # the configuration the others are compared with
    members_per_program: int | None
    members_per_step: int | str | None
    record: dict | None = None  # sweep.json, for a resumed sweep

    @property
    def resumed(self) -> bool:
        return self.record is not None


@dataclasses.dataclass
class SweepOutcome:
    """What `complete_sweep` trained and wrote (None on processes other than process 0)."""

    result: SweepResult
    rows: list[dict]  # one per configuration: the statistics table
    timing: dict[str, Any]
    written: list[Path]


class EpochTimes:
    """A `run_sweep` callback keeping each program's epoch times and trained members (the
    throughput's basis)."""

    def __init__(self) -> None:
        self.seconds: dict[int, list[float]] = {}
        self.members: dict[int, list[int]] = {}

    def __call__(self, program, state, records, histories) -> None:
        first = next(r for r in records if r is not None)
        self.seconds.setdefault(program.index, []).append(first["seconds"])
        self.members.setdefault(program.index, []).append(sum(r is not None for r in records))


def start_sweep(
    config: TrainConfig,
    members: Sequence[Member],
    *,
    reference: Member,
    out: str | os.PathLike | None,
    name: str,
    members_per_program: int | None = None,
    members_per_step: int | str | None = "auto",
    root: str | os.PathLike = SWEEPS_ROOT,
) -> OpenSweep:
    """Checks a new sweep (every program's shapes against the data, the results' memory) and
    creates its folder, `out` or `root/name`. Every process of a multi-process job calls it: process
    0 creates the folder, and the others take its path."""
    several = jax.process_count() > 1
    # What trains is what is planned and recorded: a module's own dropout rate where none is set.
    members = with_own_dropout(members, refuse_unused=True)
    reference = with_own_dropout([reference])[0]
    if out and Path(out).exists() and not is_empty_folder(out):
        what = "another run" if holds_run(Path(out)) else "other files"
        raise ConfigError(
            f"--out {out} already holds {what}; choose a new folder (or continue that sweep "
            f"with --resume {out})"
        )
    dataset = load_dataset(config.dataset, config.data_dir)
    for member in {m.group_key: m for m in members}.values():  # one per program's shapes
        check_fits(member.config(config), dataset)
    check_results_fit(len(members), dataset)
    if several:  # every process has checked --out before process 0 creates it
        from jax.experimental import multihost_utils

        multihost_utils.sync_global_devices("mnist_jax sweep: --out checked")
    sweep_dir, failure = None, None
    if is_main_process():
        try:
            sweep_dir = create_run_dir(out, root=root, name=name, resume_hint=True)
        except MnistJaxError as error:
            failure = error
    if several:  # every process writes its checkpoint shards into the same folder
        sweep_dir = path_of_process_0(sweep_dir)
    if failure is not None:
        raise failure
    if sweep_dir is None:
        raise ConfigError("process 0 could not create the sweep directory (see its output)")
    return OpenSweep(
        Path(sweep_dir),
        config,
        dataset,
        list(members),
        reference,
        members_per_program,
        members_per_step,
    )


def reopen_sweep(sweep_dir: str | os.PathLike, *, data_dir: str | None = None) -> OpenSweep:
    """A sweep directory to continue: sweep.json's configuration, members and plan settings, and
    the same data (checked by fingerprint)."""
    sweep_dir = Path(sweep_dir)
    record, config = read_run_record(sweep_dir, SWEEP_FILE)
    try:
        members = [Member(**m) for m in record["members"]]
        members_per_program = int(record["members_per_program"])
        members_per_step = record.get("members_per_step")
        reference = Member(**{**record["members"][0], **record.get("reference", {})})
        valid_step = members_per_step is None or (
            type(members_per_step) is int and members_per_step >= 1
        )
        if not isinstance(record["programs"], list) or not valid_step:
            raise ValueError("programs or members_per_step")
    except (KeyError, TypeError, ValueError) as error:
        raise ConfigError(f"{sweep_dir / SWEEP_FILE} is damaged ({error!r})") from None
    if is_main_process():
        lock_run_dir(sweep_dir)
    checkpoints = (sweep_dir / CHECKPOINTS_DIRNAME).is_dir()
    refuse_finished_without_checkpoints(sweep_dir, SUMMARY_FILE, checkpoints, "sweep")
    dataset = load_dataset(config.dataset, data_dir or config.data_dir)
    check_same_data(dataset, record, sweep_dir)
    return OpenSweep(
        sweep_dir,
        config,
        dataset,
        members,
        reference,
        members_per_program,
        members_per_step,
        record,
    )


def complete_sweep(
    sweep: OpenSweep,
    *,
    command: str | None = None,
    callbacks: Sequence[Callable] = (),
    save_every: int = 1,
    keep: int = 3,
    tensorboard: bool = True,
    on_plan: Callable[[list[SweepProgram], int, int | None, dict], None] | None = None,
    on_restore: Callable[[SweepProgram, dict], None] | None = None,
) -> SweepOutcome | None:
    """Plans `sweep` (a resumed one: its recorded plan), records sweep.json (a new one), trains
    every program with metrics.jsonl, TensorBoard and per-program checkpoints, then writes the
    sweep's files. `on_plan(programs, members_per_program, members_per_step, devices)` is called
    once planned, `on_restore(program, info)` for each program a resume restores; `callbacks` run
    after each epoch of each program, before its log line and checkpoint."""
    config, dataset, members = sweep.config, sweep.dataset, sweep.members
    sweep_dir = sweep.sweep_dir
    main_process = is_main_process()
    if jax.process_count() > 1:
        check_shared_folder(sweep_dir)
    wall_start = time.perf_counter()
    data = to_device(dataset, config)
    mesh = member_mesh()
    members_per_step = sweep.members_per_step
    if members_per_step == "auto":
        members_per_step = default_members_per_step(mesh)
    members_per_program = sweep.members_per_program
    if members_per_program is None:
        members_per_program = resolve_members_per_program(
            config, members, data, mesh.size, members_per_step=members_per_step
        )
    programs = plan_sweep(
        config, members, data, mesh.size, members_per_program, members_per_step=members_per_step
    )
    if sweep.resumed:
        programs = _recorded_programs(sweep, programs, data, mesh.size, members_per_program)
    devices = device_summary()

    def specs(program):
        return program.spec(config, data.num_classes, data.image_shape)

    if main_process and not sweep.resumed:
        record = run_record(config, dataset, command=command)
        record.update(
            models={  # one program per model: a record is traced from shapes, in milliseconds
                model: model_record(specs(p).model, specs(p).example_shape)
                for model, p in {p.model: p for p in reversed(programs)}.items()
            },
            per_member_fields=list(PER_MEMBER_FIELDS),
            seeds=sorted({m.seed for m in members}),
            members=[m.to_dict() for m in members],
            members_per_program=members_per_program,
            members_per_step=members_per_step,
            programs=plan_record(programs),
            reference={name: sweep.reference.to_dict()[name] for name in CONFIG_KEY_FIELDS},
            checkpoints={"save_every": save_every, "keep": keep},
        )
        write_json_atomic(sweep_dir / SWEEP_FILE, record)
    if on_plan is not None:
        on_plan(programs, members_per_program, members_per_step, devices)

    start, complete = None, set()  # complete: programs restored after their last epoch
    if sweep.resumed:

        def restored(program, info):
            if info["epoch"] >= config.epochs:
                complete.add(program.index)
            if on_restore is not None:
                on_restore(program, info)

        start = sweep_start(sweep_dir, config, specs=specs, mesh=mesh, on_restore=restored)
    times = EpochTimes()
    examples = int(data.train_images.shape[0])
    every_epoch = [times, *callbacks]
    if main_process:  # the log line of an epoch is on disk before its checkpoint is
        # closed by `finish`, once the final metrics are known
        sweep_log = EpochLog(sweep_dir, members, train_examples=examples, tensorboard=tensorboard)
        every_epoch.append(sweep_log)
    # Every process saves its own members' shards (process 0 the info and folders).
    checkpointer = Checkpointer(
        sweep_dir,
        config,
        num_classes=dataset.num_classes,
        specs=specs,
        save_every=save_every,
        keep_latest=keep,
    )
    with checkpointer, sweep_log.closed_on_error() if main_process else contextlib.nullcontext():
        result = run_sweep(
            config,
            members,
            data,
            programs=programs,
            callbacks=[*every_epoch, checkpointer],
            mesh=mesh,
            keep_states=False,
            start=start,
            members_per_step=members_per_step,
        )
    wall_seconds = time.perf_counter() - wall_start
    if not main_process:
        barrier("sweep outputs written")  # JAX's shutdown must not end process 0 while it writes
        return None

    analysis = analyse(
        result, config, sweep.reference.config_key, data_sources(dataset, data, config)
    )
    timing = {
        "wall_seconds": wall_seconds,
        "compile_seconds": result.compile_seconds,
        **throughput(programs, times.seconds, examples, times.members),
        "epochs_trained_now": {str(k): len(v) for k, v in times.seconds.items()},
        "resumed": sweep.resumed,
    }
    # A sweep that was complete already writes only the outputs it lacks: its members.json and
    # summary.json (with the timings of the process that trained) stay as they are.
    finished_before = sweep.resumed and len(complete) == len(programs)
    if finished_before:  # what is kept must be intact: a damaged file is set aside by the user
        for name, kind in ((MEMBERS_FILE, list), (SUMMARY_FILE, dict)):
            if (sweep_dir / name).is_file():
                read_kept(sweep_dir / name, lambda content, kind=kind: isinstance(content, kind))
    written = [] if sweep.resumed else [sweep_dir / SWEEP_FILE]
    written += write_sweep_files(
        sweep_dir,
        result,
        {
            **analysis,
            "timing": timing,
            "num_members": len(members),
            "num_programs": len(programs),
            "epochs": config.epochs,
            "devices": devices,
        },
        member_entries(result, config.target_accuracy),
        only_missing=finished_before,
    )
    if finished_before:
        sweep_log.close()
    else:
        sweep_log.finish(result.members)
        written.append(sweep_dir / CHECKPOINTS_DIRNAME)
    barrier("sweep outputs written")
    return SweepOutcome(result, analysis["configurations"], timing, written)


def _recorded_programs(
    sweep: OpenSweep, programs: list[SweepProgram], data, num_devices: int, members_per_program
) -> list[SweepProgram]:
    """The plan a resumed sweep recorded, which this machine must make again."""
    recorded = recorded_plan(sweep.record["programs"])
    if plan_record(programs) != recorded:
        # Sweeps from before members trained one per step went unpadded kept their padding: its
        # rows are dummies, each member computes the same.
        programs = plan_sweep(sweep.config, sweep.members, data, num_devices, members_per_program)
    if plan_record(programs) != recorded:
        if sweep.record["devices"]["count"] == num_devices:  # same layout: not this plan
            raise ConfigError(
                f"the plan in {sweep.sweep_dir / SWEEP_FILE} is not the one its members make "
                "here (was the file edited?); the sweep cannot be continued from it"
            )
        raise ConfigError(
            f"the sweep in {sweep.sweep_dir} was planned for {sweep.record['devices']['count']} "
            f"device(s) as {len(sweep.record['programs'])} program(s); here there are "
            f"{num_devices} device(s): resume it on the machine layout it started on"
        )
    return programs
