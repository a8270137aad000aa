"""One run end to end, from Python or from `python -m experiments.baseline`: a run directory.

`train_run(config)` trains and writes everything a run leaves: config.json (with the model's
record), metrics.jsonl and TensorBoard events per epoch, orbax checkpoints, then metrics.json,
predictions.npz, the figures and report.md. `resume_run(RUN)` continues a killed run from its
newest intact checkpoint (bitwise where the uninterrupted run would have ended), or writes what a
finished run lacks; `evaluate_run(RUN)` re-evaluates a checkpoint into a folder of its own. The
commands are these calls with flags and printing around them; a run of a user's model (`model=`)
is the same directory, which `--resume`, `experiments.evaluate` and `experiments.compare` read (a
model they cannot import by name is passed again).

Each call is two steps, for callers that print between them: `start_run` or `reopen_run` (checks,
the folder, config.json, the restored state), then `complete_run` (training and outputs).
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import jax
import numpy as np

from mnist_jax.checkpoint import Checkpointer, list_checkpoints, load_run, restore_checkpoint
from mnist_jax.config import TrainConfig, is_model_name
from mnist_jax.data import Dataset, load_dataset
from mnist_jax.epochs import time_to_target
from mnist_jax.errors import ConfigError
from mnist_jax.fit import (
    EpochCallback,
    check_fits,
    check_trains,
    device_of,
    for_member,
    member_of,
    spec_for,
    to_device,
)
from mnist_jax.logs import (
    METRICS_LOG,
    EpochLog,
    ProfileSteadyEpoch,
    history_from_log,
    tensorboard_incomplete,
)
from mnist_jax.models import Model, check_model, describe_text, model_record, resolve_dropout
from mnist_jax.models.imported import model_from_record, warn_if_code_changed
from mnist_jax.report import PLOT_FILES, evaluate_test_set, test_report, write_run_outputs
from mnist_jax.rundir import (
    CONFIG_FILE,
    METRICS_FILE,
    check_same_data,
    create_run_dir,
    default_run_name,
    is_empty_folder,
    lock_run_dir,
    read_kept,
    read_run_record,
    refuse_finished_without_checkpoints,
    run_record,
    write_json_atomic,
)
from mnist_jax.runtime import compilation_cache_by_default
from mnist_jax.sweep import program as prog
from mnist_jax.sweep.plan import SweepProgram
from mnist_jax.sweep.run import run_sweep
from mnist_jax.train import TrainSpec, TrainState, create_train_state

RUNS_ROOT = "runs"
PROFILE_DIR = "profile"


@dataclasses.dataclass
class OpenRun:
    """A run directory ready to train: its configuration, data, spec, and where it stands."""

    run_dir: Path
    config: TrainConfig
    dataset: Dataset
    spec: TrainSpec
    record: dict[str, Any]
    resumed: bool
    state: TrainState | None = None  # restored from the newest intact checkpoint
    history: list[dict] = dataclasses.field(default_factory=list)

    @property
    def finished(self) -> bool:
        return len(self.history) >= self.config.epochs


@dataclasses.dataclass
class RunResult:
    """What `complete_run` trained and wrote: the final state, every epoch's record, the test
    metrics (metrics.json's content) and the files written now."""

    run_dir: Path
    state: TrainState
    history: list[dict]
    metrics: dict[str, Any]
    written: list[Path]
    trained_epochs: int
    train_seconds: float
    compile_seconds: float
    profile_summary: str | None = None  # what `profile=True` traced, and where


def start_run(
    config: TrainConfig,
    dataset: Dataset | None = None,
    *,
    out: str | os.PathLike | None = None,
    model: Model | None = None,
    root: str | os.PathLike = RUNS_ROOT,
    command: str | None = None,
) -> OpenRun:
    """Checks that the run can train, then creates its folder (`out`, else a new one under
    `root`) and config.json. `dataset` defaults to `config.dataset` from `config.data_dir`;
    `model` to the configuration's (a built-in one, or one named `package.module:factory`)."""
    compilation_cache_by_default()
    dataset = dataset if dataset is not None else load_dataset(config.dataset, config.data_dir)
    spec = spec_for(config, dataset, model)
    config = resolve_dropout(config, spec.model)  # config.json says the rate that trains
    if config.sets_dropout_rate and not spec.model.takes_dropout_rate:
        raise ConfigError(
            f"model {spec.model.name} keeps its own dropout, so dropout_rate="
            f"{config.dropout_rate} would do nothing; leave it unset"
        )
    check_model(spec.model, spec.example_shape, dataset.num_classes)
    check_fits(config, dataset, spec)
    name = default_run_name(config.dataset, config.seed)
    run_dir = create_run_dir(out, root=root, name=name, resume_hint=True)
    record = run_record(
        config, dataset, model=model_record(spec.model, spec.example_shape), command=command
    )
    write_json_atomic(run_dir / CONFIG_FILE, record)
    return OpenRun(run_dir, config, dataset, spec, record, resumed=False)


def reopen_run(
    run_dir: str | os.PathLike,
    *,
    model: Model | None = None,
    data_dir: str | None = None,
    dataset: Dataset | None = None,
) -> OpenRun:
    """A run directory to continue: its config.json's configuration, the same data (from
    `data_dir`, else the recorded folder, or `dataset`; checked by fingerprint and example
    counts), and the newest intact
    checkpoint's state and history. `model`: the run's own, where config.json cannot rebuild it
    (a model object given to `train_run`); it is checked against the recorded one."""
    compilation_cache_by_default()
    run_dir = Path(run_dir)
    record, config = read_run_record(run_dir)
    lock_run_dir(run_dir)
    if dataset is None:  # a run given its data in Python (a subset) is given them again
        dataset = load_dataset(config.dataset, data_dir or config.data_dir)
    check_same_data(dataset, record, run_dir)
    recorded = record.get("model")  # None in runs older than model records: a built-in model
    if model is None and isinstance(recorded, dict) and not is_model_name(recorded.get("name")):
        model = model_from_record(recorded)  # a Python run's module class, if it imports here
        if model is None:
            raise ConfigError(
                f"the run in {run_dir} trained the user model {describe_text(recorded)}, which "
                "does not import here: resume it from Python with resume_run(RUN, model=...)"
            )
    spec = spec_for(config, dataset, model)
    warn_if_code_changed(recorded, spec.model, str(run_dir))
    run = OpenRun(run_dir, config, dataset, spec, record, resumed=True)
    checkpoints = list_checkpoints(run_dir)
    refuse_finished_without_checkpoints(run_dir, METRICS_FILE, bool(checkpoints))
    if checkpoints:
        template = create_train_state(config, spec)
        run.state, info = restore_checkpoint(
            run_dir, template, "latest", model=spec.model, config=config
        )
        run.history = list(info["history"])
    return run


def complete_run(
    run: OpenRun,
    *,
    callbacks: Sequence[EpochCallback] = (),
    save_every: int = 1,
    keep_latest: int = 3,
    tensorboard: bool = True,
    profile: bool = False,
) -> RunResult:
    """Trains `run` to its configured epochs as a sweep of one member (`run_sweep`: logging and
    checkpointing each epoch, the final and best-epoch parameters evaluated on the test set), then
    writes a run's own outputs (a finished run: only those missing). `callbacks`, as `fit` takes
    them, run after each epoch's log line, before its checkpoint."""
    config, dataset, spec, run_dir = run.config, run.dataset, run.spec, run.run_dir
    data = to_device(dataset, config, spec)
    check_trains(config, data, spec)  # a resumed run too: on another machine, or without bf16
    history = run.history
    examples = int(data.train_labels.shape[0])
    member = member_of(config)
    mesh = prog.member_mesh([device_of(data)])
    start = None
    if run.state is not None:
        stacked = jax.tree.map(lambda x: np.asarray(x)[None], run.state)
        start = lambda program: (stacked, [history])
    checkpointer = Checkpointer(
        run_dir,
        config,
        specs=lambda _: spec,
        num_classes=dataset.num_classes,
        save_every=save_every,
        keep_latest=keep_latest,
        keep_best=1,
        run=True,
    )
    log = EpochLog(run_dir, [member], train_examples=examples, tensorboard=tensorboard, run=True)
    profiler = ProfileSteadyEpoch(run_dir / PROFILE_DIR) if profile else None
    began = time.perf_counter()
    trained_until = [began]  # the end of the last epoch's callbacks: training, not evaluation

    def clock(*_) -> None:
        trained_until[0] = time.perf_counter()

    with (
        checkpointer,
        contextlib.closing(profiler) if profiler else contextlib.nullcontext(),
        log.closed_on_error(),
    ):
        # The log line of an epoch is on disk before its checkpoint is: a resume never lacks one.
        sweep = run_sweep(
            config,
            [member],
            data,
            programs=[SweepProgram(0, (member,), 1)],
            mesh=mesh,
            models={member.model: spec.model},
            callbacks=[
                log,
                *([for_member(callbacks)] if callbacks else []),
                checkpointer,
                *([for_member([profiler])] if profiler else []),  # the trace starts after all else
                clock,
            ],
            start=start,
            raise_on_divergence=True,
            name=lambda _: f"training (learning rate {config.learning_rate})",
            members_per_step=1,  # as `fit` trains it, on every backend
        )
    train_seconds = trained_until[0] - began
    result = sweep.members[0]
    metrics, probabilities = test_report(result.test_logits, sweep.test_labels, dataset.num_classes)
    trained_now = result.history[len(history) :]
    finished_before = run.resumed and not trained_now
    steady = trained_now[1:] or trained_now  # the first epoch still warms caches and threads
    if finished_before and (run_dir / METRICS_FILE).is_file():
        metrics = read_kept(  # keeps the timings of the run that trained
            run_dir / METRICS_FILE,
            lambda m: isinstance(m, dict) and {"test_loss", "test_accuracy"} <= set(m),
        )
    else:
        metrics.update(
            history=result.history,
            train_seconds=None if finished_before else train_seconds,
            compile_seconds=None if finished_before else sweep.compile_seconds,
            examples_per_second=examples * len(steady) / sum(r["seconds"] for r in steady)
            if steady
            else None,
            seed=config.seed,
            epochs=len(result.history),
            dataset=dataset.name,
            model=model_record(spec.model, spec.example_shape),
            **result.best,
            time_to_target=None
            if config.target_accuracy is None
            else {
                "target": config.target_accuracy,
                **time_to_target(result.history, config.target_accuracy),
            },
            validation=config.validation,
            resumed_from_epoch=len(history) if run.resumed else None,
        )
    written = write_run_outputs(
        run_dir, dataset, result.history, metrics, probabilities, only_missing=finished_before
    )
    if trained_now or (tensorboard and tensorboard_incomplete(run_dir)):
        figures = [run_dir / name for name in PLOT_FILES.values() if (run_dir / name).is_file()]
        log.finish([result], run_record=run.record, figures=figures, epoch=len(result.history))
    else:  # a finished run has nothing to log, unless its TensorBoard events were cut short
        log.close()
    if not run.resumed:
        written = [run_dir / CONFIG_FILE, *written]
    if trained_now:
        written.append(run_dir / "checkpoints")
    return RunResult(
        run_dir,
        result.state,
        result.history,
        metrics,
        written,
        len(trained_now),
        train_seconds,
        sweep.compile_seconds,
        profiler.summary() if profiler else None,
    )


def train_run(
    config: TrainConfig,
    dataset: Dataset | None = None,
    *,
    out: str | os.PathLike | None = None,
    model: Model | None = None,
    **options: Any,
) -> RunResult:
    """A new run directory (`start_run`), trained and written (`complete_run`; `options` are
    its keywords: callbacks, save_every, keep_latest, tensorboard, profile)."""
    return complete_run(start_run(config, dataset, out=out, model=model), **options)


def resume_run(
    run_dir: str | os.PathLike,
    *,
    model: Model | None = None,
    data_dir: str | None = None,
    dataset: Dataset | None = None,
    **options: Any,
) -> RunResult:
    """Continues the run in `run_dir` (`reopen_run`) and writes what it lacks (`complete_run`).
    `dataset`: the data a run started from Python was given, where it is not what
    `config.dataset` loads (a subset; checked against the record)."""
    opened = reopen_run(run_dir, model=model, data_dir=data_dir, dataset=dataset)
    return complete_run(opened, **options)


@dataclasses.dataclass(frozen=True)
class Evaluation:
    """A run re-evaluated from its directory: the checkpoint's epoch, the test metrics (as
    metrics.json has them) and the files written."""

    epoch: int
    metrics: dict[str, Any]
    written: list[Path]


def evaluate_run(
    run_dir: str | os.PathLike,
    which: str | int = "latest",
    *,
    data_dir: str | None = None,
    out: str | os.PathLike | None = None,
    model: Model | None = None,
) -> Evaluation:
    """Restores `run_dir`'s checkpoint `which` (latest, best or an epoch), evaluates it on the
    test set and writes its metrics, plots and report into `out` (a new or empty folder; default
    RUN/evaluation/WHICH, or WHICH-2...): the run's own files stay as they are."""
    run_dir = Path(run_dir)
    if out is not None and Path(out).exists() and not is_empty_folder(out):
        raise ConfigError(f"--out {out} already holds files; choose a new folder")
    record, _ = read_run_record(run_dir)
    run = load_run(run_dir, which, model=model)
    warn_if_code_changed(record.get("model"), run.spec.model, str(run_dir))
    dataset = load_dataset(run.config.dataset, data_dir or run.config.data_dir)
    check_same_data(dataset, record, run_dir)
    data = to_device(dataset, run.config, run.spec)
    metrics, probabilities = evaluate_test_set(
        run.spec.model,
        run.params,
        data.test_images,
        data.test_labels,
        num_classes=dataset.num_classes,
        chunk_size=run.config.eval_batch_size,
    )
    # The run's log is the canonical record of its epochs; the checkpoint's copy serves without it.
    history = history_from_log(run_dir / METRICS_LOG, run.epoch) or run.history
    metrics.update(
        history=history,
        seed=run.config.seed,
        epochs=run.epoch,
        dataset=dataset.name,
        model=model_record(run.spec.model, run.spec.example_shape),
        checkpoint=str(which),
        checkpoint_epoch=run.epoch,
        validation=run.config.validation,
    )
    folder = create_run_dir(out, root=run_dir / "evaluation", name=str(which))
    written = write_run_outputs(folder, dataset, history, metrics, probabilities)
    return Evaluation(run.epoch, metrics, written)
