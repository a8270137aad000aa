"""`run_sweep`: many members at once; `train_program`, the one path that trains, for it and `fit`.

Members are planned once into programs (`sweep.plan.plan_sweep`). Each program creates its stacked
state sharded over the member mesh, compiles init, its epoch and validation, and runs the epoch loop
(`train_program`, all that `fit` does for its program of one member); then come per-member test
metrics and each configuration's ensemble.

Divergence: a member whose loss is not finite is *marked* (`diverged_epoch`), not fatal: one
too-large learning rate must not throw away the other members. Its history ends with the
non-finite record, it gets no test metrics and is left out of the statistics and ensembles; with
`raise_on_divergence=True` it is a TrainingError naming the member, as in `fit`. Callbacks see
`None` as the record of a member that diverged in an earlier epoch.

Resuming: `start(program)` may return a program's saved `(stacked_state, histories)`; training
continues after the epochs in the histories with the same compiled programs and loop, so the
result is bitwise the uninterrupted sweep's. A complete program is only evaluated.
"""

from __future__ import annotations

import dataclasses
import functools
import time
import warnings
from collections.abc import Callable, Mapping, Sequence

import jax
import numpy as np

from mnist_jax.config import FIELDS, TrainConfig
from mnist_jax.device_data import DeviceData
from mnist_jax.distributed import gather_to_host
from mnist_jax.epochs import (
    compile_all,
    diverged,
    exact_accuracy,
    run_epochs,
    time_to_target,
)
from mnist_jax.errors import ConfigError
from mnist_jax.metrics import classification_report
from mnist_jax.models import Model
from mnist_jax.predictions import Predictions
from mnist_jax.runtime import compilation_cache_by_default
from mnist_jax.stats import softmax
from mnist_jax.sweep import program as prog
from mnist_jax.sweep.members import CONFIG_KEY_FIELDS, ConfigKey, Member, with_own_dropout
from mnist_jax.sweep.plan import SweepProgram, plan_sweep
from mnist_jax.train import TrainSpec, TrainState


@dataclasses.dataclass
class MemberResult:
    member: Member
    history: list[dict]
    diverged_epoch: int | None = None
    test: dict | None = None  # `metrics.classification_report` of the final params
    test_logits: np.ndarray | None = None  # (N_test, C) float32, for ensembles and further analysis
    state: TrainState | None = None  # final state (numpy leaves), when `keep_states`
    program: int = 0  # SweepProgram.index that trained it
    # The best epoch by validation accuracy (`train.track_best`) and its parameters' test numbers:
    # best_epoch, best_val_accuracy, best_test_accuracy, best_test_loss; and stopped_early
    # (`--patience`).
    best: dict | None = None

    def metrics(self) -> dict[str, float | None]:
        """Final numbers: test loss/accuracy and the last epoch's validation loss/accuracy; and
        those of the best epoch by validation accuracy."""
        last = self.history[-1] if self.history else {}
        best = self.best or {}
        return {
            "test_accuracy": (self.test or {}).get("test_accuracy"),
            "test_loss": (self.test or {}).get("test_loss"),
            "final_val_accuracy": last.get("val_accuracy"),
            "final_val_loss": last.get("val_loss"),
            "best_epoch": best.get("best_epoch"),
            "best_val_accuracy": best.get("best_val_accuracy"),
            "best_test_accuracy": best.get("best_test_accuracy"),
        }


@dataclasses.dataclass
class SweepResult:
    members: list[MemberResult]
    ensembles: dict[ConfigKey, dict]  # {"ensemble_accuracy", "ensemble_loss", "ensemble_size"}
    programs: list[SweepProgram]
    compile_seconds: float
    num_devices: int
    test_labels: np.ndarray | None = None  # (N_test,), the labels of every member's test_logits
    _predictions: Predictions | None = dataclasses.field(default=None, repr=False, compare=False)

    def predictions(self) -> Predictions:
        """Each member's test predictions (class and its probability), in member order; rows of
        diverged members are marked invalid. What a sweep directory keeps in predictions.npz."""
        if self._predictions is None:
            self._predictions = Predictions.from_probabilities(
                [None if r.test_logits is None else softmax(r.test_logits) for r in self.members],
                self.test_labels,
            )
        return self._predictions

    def summary(self) -> list[dict]:
        """`summarize_by_config` of the members, with the ensembles."""
        from mnist_jax.sweep.stats import summarize_by_config

        return summarize_by_config(self.members, self.ensembles)


def _warn_config_values_no_member_takes(config: TrainConfig, members: Sequence[Member]) -> None:
    """A configuration value of a member's field that no member has was silently unused (each
    member sets its own: `TrainConfig(learning_rate=3e-3)` with `expand_members(range(4))` trains
    at 1e-3): a warning naming it and the way to pass it on."""
    for name in CONFIG_KEY_FIELDS:
        value = getattr(config, name)
        if value != FIELDS[name].default and all(getattr(m, name) != value for m in members):
            warnings.warn(
                f"the configuration's {name}={value!r} trains no member: each member sets its "
                f"own (expand_members(..., base=config) gives the members the configuration's "
                "values)",
                stacklevel=3,
            )


SweepCallback = Callable[[SweepProgram, TrainState, list, list], None]
# program -> (stacked state with `program.num_padded` rows, one history per real member) or None.
SweepStart = Callable[[SweepProgram], "tuple[TrainState, list[list[dict]]] | None"]
# (program, records, histories) -> one flag per real member: stop it now (or None: stop none).
SweepStop = Callable[[SweepProgram, list, list], "Sequence[bool] | None"]


def run_sweep(
    config: TrainConfig,
    members: Sequence[Member],
    data: DeviceData,
    *,
    members_per_program: int | None = None,
    callbacks: Sequence[SweepCallback] = (),
    mesh: jax.sharding.Mesh | None = None,
    keep_states: bool = True,
    raise_on_divergence: bool = False,
    start: SweepStart | None = None,
    members_per_step: int | None | str = "auto",
    programs: Sequence[SweepProgram] | None = None,
    models: Mapping[str, Model] | None = None,
    stop: SweepStop | None = None,
    name: Callable[[int], str] | None = None,
) -> SweepResult:
    """Trains every member for `config.epochs` epochs: per-member histories, test metrics, states.

    `config` gives what members share (batch size, epochs, eval chunk size...), each member its own
    values: member k trains exactly as `fit(member.config(config), data)` does (same init, keys,
    data order, maths). A member's model is a built-in one by name, or `models[name]` (as
    `fit(..., model=models[name])` would train it).

    - `members_per_program` bounds a program call's members (default: the memory estimate);
      `programs`, a plan from `plan_sweep` for this mesh, is trained instead of planning here.
    - `members_per_step`: how many of a device's members one step trains at once
      (`epoch_program`): "auto" is `default_members_per_step` (all on accelerators, one at a time
      on CPUs), None all. `mesh` defaults to all devices of all processes.
    - `callback(program, stacked_state, records, histories)` runs after each epoch of each program
      (records and histories per real member; padded rows are in the state, beyond them).
    - `start(program)`: None trains from the initial state; `(stacked_state, histories)` continues
      after `len(history)` epochs (the state numpy or jax arrays with `program.num_padded` rows, as
      a callback saw it; one history per real member, a diverged one ending at its non-finite
      record).
    - `stop(program, records, histories)`, a host-side rule, may flag members to stop after an
      epoch, before the callbacks see its state (`epochs.run_epochs`).
    - `name(k)` names a program's member k in a divergence's error (default: the member).

    Multi-process: call it on every process with the same arguments; results are on every process.
    """
    compilation_cache_by_default()
    members = with_own_dropout(members, models)
    _warn_config_values_no_member_takes(config, members)
    mesh = mesh or prog.member_mesh()
    num_devices = mesh.size
    if members_per_step == "auto":
        members_per_step = prog.default_members_per_step(mesh)
    if programs is None:
        programs = plan_sweep(
            config, members, data, num_devices, members_per_program, models, members_per_step
        )
    elif sorted(map(repr, (m for p in programs for m in p.members))) != sorted(map(repr, members)):
        raise ConfigError("the planned programs do not hold exactly the sweep's members")
    shared = prog.replicate_data(data, mesh)
    test_labels = np.asarray(gather_to_host(shared.test_labels))

    results: dict[Member, MemberResult] = {}
    compile_seconds = 0.0
    in_layout = functools.cache(shared.in_layout)  # the data in each model's layout, once
    for program in programs:
        spec = program.spec(config, data.num_classes, data.image_shape, models)
        started = start(program) if start is not None else None
        state, histories = _started_state(program, started, mesh)
        args = (config, program, spec, in_layout(spec.example_shape), mesh)
        state, histories, seconds = train_program(
            *args,
            state=state,
            histories=histories,
            callbacks=callbacks,
            members_per_step=members_per_step,
            raise_on_divergence=raise_on_divergence,
            stop=stop,
            name=name,
        )
        compile_seconds += seconds
        outcome = _evaluate(*args, state, histories, keep_states, test_labels, members_per_step)
        results.update({r.member: r for r in outcome})
    ordered = [results[m] for m in members]
    return SweepResult(
        ordered,
        ensembles(ordered, test_labels),
        programs,
        compile_seconds,
        num_devices,
        test_labels=test_labels,
    )


def _diverged_epoch(history: Sequence[dict]) -> int | None:
    """The epoch of a history's non-finite record (always its last), else None."""
    return int(history[-1]["epoch"]) if history and diverged(history[-1]) else None


def _started_state(program: SweepProgram, started, mesh) -> tuple[TrainState, list[list[dict]]]:
    """Check a `start` answer against the program and place its state sharded over the mesh."""
    if started is None:
        return None, None
    state, histories = started
    histories = [list(h) for h in histories]
    if len(histories) != len(program.members):
        raise ConfigError(
            f"program {program.index}: start gave {len(histories)} histories for "
            f"{len(program.members)} members"
        )
    sharding = prog.member_sharding(mesh)
    rows = {int(np.shape(x)[0]) for x in jax.tree_util.tree_leaves(state)}
    if rows != {program.num_padded}:
        raise ConfigError(
            f"program {program.index}: start gave a state with {sorted(rows)} rows, the "
            f"program has {program.num_padded}"
        )

    def place(x):
        if isinstance(x, jax.Array) and x.sharding == sharding:
            return x
        return prog._global_array(x, sharding)

    return jax.tree_util.tree_map(place, state), histories


def _finished(config: TrainConfig, histories: Sequence[list[dict]]) -> bool:
    """Whether every member has reached the target (`config.stop_at_target`) or diverged."""
    return config.stop_at_target and all(
        _diverged_epoch(h) is not None or time_to_target(h, config.target_accuracy)["reached"]
        for h in histories
    )


def train_program(
    config: TrainConfig,
    program: SweepProgram,
    spec: TrainSpec,
    data: DeviceData,
    mesh,
    *,
    state: TrainState | None = None,
    histories: list[list[dict]] | None = None,
    callbacks: Sequence[SweepCallback] = (),
    members_per_step: int | None = 1,
    raise_on_divergence: bool = False,
    name: Callable[[int], str] | None = None,
    gather: Callable = gather_to_host,
    first_epoch: int | None = None,
    stop: SweepStop | None = None,
) -> tuple[TrainState, list[list[dict]], float]:
    """Trains a program's members to `config.epochs` (all `fit` does, for its one member):
    from `state` (stacked, member-sharded) and `histories` (one per real member), else from the
    members' initial state; init, the epoch and validation compiled ahead of time side by side, then
    `epochs.run_epochs` from `first_epoch` (default: after the longest history), the callbacks after
    each epoch, until every member has reached the target (`config.stop_at_target`) or diverged.
    `data`: replicated on the mesh, in the spec's layout. Returns the stacked state, the histories
    and the compile seconds."""
    histories = [[] for _ in program.members] if histories is None else histories
    if first_epoch is None:
        first_epoch = 1 + max(len(h) for h in histories)
    epochs = range(first_epoch, config.epochs + 1)
    if _finished(config, histories):
        epochs = range(0)  # a resumed program that had stopped at its target
    start = time.perf_counter()  # tracing and lowering count as compilation
    lowered, init_args = [], None
    if state is None:
        init, init_args = prog.init_call(
            spec,
            program.padded_members,
            mesh=mesh,
            base=config,
            train_examples=int(data.train_images.shape[0]),
        )
        lowered.append(init.lower(*init_args))
        abstract = jax.eval_shape(init, *init_args)
    else:
        abstract = state
    if epochs:
        lowered += [
            prog.epoch_program(spec, mesh, members_per_step).lower(
                abstract, data.train_images, data.train_labels
            ),
            prog.validate_program(spec, mesh, config.eval_batch_size, members_per_step).lower(
                abstract, data.val_images, data.val_labels
            ),
        ]
    compiled = compile_all(lowered)
    compile_seconds = time.perf_counter() - start
    if state is None:
        state = compiled.pop(0)(*init_args)
    if not epochs:
        return state, histories, compile_seconds
    loop = run_epochs(
        *compiled,
        state,
        data,
        epochs,
        histories,
        raise_on_divergence=raise_on_divergence,
        name=name or (lambda k: f"sweep member {program.members[k]}"),
        gather=gather,
        stop=None if stop is None else lambda records: stop(program, records, histories),
    )
    for state, records in loop:
        for callback in callbacks:
            callback(program, state, records, histories)
        if _finished(config, histories):
            break
    return state, histories, compile_seconds


def _evaluate(
    config, program, spec, data, mesh, state, histories, keep_states, test_labels, members_per_step
) -> list[MemberResult]:
    """The trained program's members: test metrics of their final and best parameters, states."""
    real = len(program.members)
    results = [
        MemberResult(m, h, diverged_epoch=_diverged_epoch(h), program=program.index)
        for m, h in zip(program.members, histories)
    ]
    predict = prog.logits_program(spec, mesh, config.eval_batch_size, members_per_step)
    logits = np.asarray(gather_to_host(predict(state.params, data.test_images)))[:real]
    best_logits = np.asarray(gather_to_host(predict(state.best_params, data.test_images)))[:real]
    best = gather_to_host(
        {"epoch": state.best_epoch, "accuracy": state.best_accuracy, "stopped": state.stopped}
    )
    host_state = gather_to_host(state) if keep_states else None
    for k, result in enumerate(results):
        if keep_states:
            result.state = jax.tree.map(lambda x, k=k: np.asarray(x[k]), host_state)
        if result.diverged_epoch is None:
            result.test_logits = logits[k]
            result.test = classification_report(logits[k], test_labels, data.num_classes)
            report = classification_report(best_logits[k], test_labels, data.num_classes)
            result.best = {
                "best_epoch": int(best["epoch"][k]),
                "best_val_accuracy": exact_accuracy(
                    float(best["accuracy"][k]), data.val_labels.shape[0]
                ),
                "best_test_accuracy": report["test_accuracy"],
                "best_test_loss": report["test_loss"],
                "stopped_early": bool(best["stopped"][k]),
            }
    return results


def ensembles(results: Sequence[MemberResult], test_labels: np.ndarray) -> dict[ConfigKey, dict]:
    """Per configuration: accuracy and loss of the mean of its (non-diverged) members' softmax
    probabilities on the test set, and how many members it averaged."""
    by_config: dict[ConfigKey, list[np.ndarray]] = {}
    for r in results:
        if r.test_logits is not None:
            by_config.setdefault(r.member.config_key, []).append(r.test_logits)
    out = {}
    for key, logits in by_config.items():
        probabilities = np.mean([softmax(x) for x in logits], axis=0)
        picked = probabilities[np.arange(len(test_labels)), test_labels]
        out[key] = {
            "ensemble_accuracy": float(np.mean(np.argmax(probabilities, -1) == test_labels)),
            "ensemble_loss": float(-np.mean(np.log(np.maximum(picked, 1e-12)))),
            "ensemble_size": len(logits),
        }
    return out
