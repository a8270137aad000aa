"""`run_sweep`: the host loop of a sweep, the counterpart of `fit` for many members at once.

For each group (equal hidden sizes) and each chunk of it (the memory bound): pad the members to a
multiple of the device count, create the stacked state sharded over the member mesh, then per epoch
call the compiled vmapped epoch and the vmapped validation, read back 4 numbers per member, record each
member's history (the records of `fit`) and call the callbacks. At the end: per-member test metrics
and each configuration's ensemble (mean of its members' softmax probabilities).

Divergence: a member whose training or validation loss is not finite is *marked* (its
`diverged_epoch`), not fatal: one too-large learning rate must not throw away the other members of a
sweep. Its history ends with the non-finite record, it gets no test metrics, and it is left out of the
statistics and ensembles. With `raise_on_divergence=True` it is a TrainingError naming the member, as
in `fit`. Callbacks see `None` as the record of a member that diverged in an earlier epoch; a
checkpointing callback should check `record["train_loss"]` is finite before saving a member.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Any, Callable, Sequence

import jax
import numpy as np

from mnist_jax.config import TrainConfig
from mnist_jax.errors import ConfigError, TrainingError
from mnist_jax.fit import DeviceData
from mnist_jax.metrics import classification_report
from mnist_jax.sweep import program as prog
from mnist_jax.sweep.distributed import gather_to_host
from mnist_jax.sweep.members import ConfigKey, Member, chunk_sizes, group_members, padded_size
from mnist_jax.train import TrainSpec, TrainState


@dataclasses.dataclass(frozen=True)
class SweepProgram:
    """One call of a compiled program: a chunk of one group's members, padded for the device count.

    `members` are the real members, in the order of the stacked state's leading axis; rows
    `len(members)` to `num_padded - 1` are dummies (copies of `members[0]`) whose results are dropped.
    """

    hidden_sizes: tuple[int, ...]
    index: int                   # position of this chunk in the sweep (0, 1, ...)
    members: tuple[Member, ...]
    num_padded: int


@dataclasses.dataclass
class MemberResult:
    member: Member
    history: list[dict]
    diverged_epoch: int | None = None
    test: dict | None = None                 # `metrics.classification_report` of the final params
    test_logits: np.ndarray | None = None    # (N_test, C) float32, for ensembles and further analysis
    state: TrainState | None = None          # final state (numpy leaves), when `keep_states`
    program: int = 0                         # SweepProgram.index that trained it

    def metrics(self) -> dict[str, float | None]:
        """Final numbers: test loss/accuracy and the last epoch's validation loss/accuracy."""
        last = self.history[-1] if self.history else {}
        return {"test_accuracy": (self.test or {}).get("test_accuracy"),
                "test_loss": (self.test or {}).get("test_loss"),
                "final_val_accuracy": last.get("val_accuracy"),
                "final_val_loss": last.get("val_loss")}


@dataclasses.dataclass
class SweepResult:
    members: list[MemberResult]
    ensembles: dict[ConfigKey, dict]    # config key -> {"ensemble_accuracy", "ensemble_loss", "ensemble_size"}
    programs: list[SweepProgram]
    compile_seconds: float
    num_devices: int

    def summary(self) -> list[dict]:
        """`summarize_by_config` of the members, with the ensembles."""
        from mnist_jax.sweep.stats import summarize_by_config
        return summarize_by_config(self.members, self.ensembles)


SweepCallback = Callable[[SweepProgram, TrainState, list, list], None]


def plan_programs(members: Sequence[Member], members_per_program: int, num_devices: int
                  ) -> list[SweepProgram]:
    """The program calls of a sweep: groups by hidden sizes, cut into chunks, padded for the devices."""
    programs = []
    for hidden_sizes, group in group_members(members).items():
        start = 0
        for size in chunk_sizes(len(group), members_per_program, num_devices):
            chunk = tuple(group[start:start + size])
            programs.append(SweepProgram(hidden_sizes, len(programs), chunk,
                                         padded_size(size, num_devices)))
            start += size
    return programs


def run_sweep(config: TrainConfig, members: Sequence[Member], data: DeviceData, *,
              members_per_program: int | None = None, callbacks: Sequence[SweepCallback] = (),
              mesh: jax.sharding.Mesh | None = None, keep_states: bool = True,
              raise_on_divergence: bool = False) -> SweepResult:
    """Train every member for `config.epochs` epochs; return per-member histories, test metrics and states.

    `config` gives what members share (batch size, epochs, Adam epsilon, eval chunk size); each member
    gives its seed, learning rate, dropout rate and hidden sizes. Member k trains exactly as
    `fit(member.config(config), data)` does (same init, keys, data order, maths), vmapped.
    `members_per_program` bounds the members of one program call (default: `members_per_program()`'s
    memory estimate). `mesh` defaults to all devices of all processes. After each epoch of each program,
    `callback(program, stacked_state, records, histories)` runs (records/histories per real member of
    `program.members`; padded rows are in the state, beyond them).
    Multi-process: call it on every process with the same arguments; results are on every process.
    """
    members = list(members)
    if not members:
        raise ConfigError("a sweep needs at least one member")
    if len(set(members)) != len(members):
        raise ConfigError("the sweep lists a member twice")
    mesh = mesh or prog.member_mesh()
    num_devices = mesh.size
    input_size = int(data.train_images.shape[1])
    num_train = int(data.train_images.shape[0])
    eval_examples = max(int(data.val_images.shape[0]), int(data.test_images.shape[0]))
    if members_per_program is None:
        largest = max(group_members(members), key=lambda h: sum(h))
        members_per_program = prog.members_per_program(
            TrainSpec.from_config(config.replace(hidden_sizes=largest), data.num_classes), num_train,
            num_devices=num_devices, input_size=input_size, eval_examples=eval_examples,
            eval_chunk_size=config.eval_batch_size)
    programs = plan_programs(members, members_per_program, num_devices)
    shared = prog.replicate_data(data, mesh)
    test_labels = np.asarray(gather_to_host(shared.test_labels))

    results: dict[Member, MemberResult] = {}
    compile_seconds = 0.0
    for program in programs:
        outcome, seconds = _run_program(config, program, shared, mesh, input_size, callbacks,
                                        keep_states, raise_on_divergence, test_labels)
        compile_seconds += seconds
        results.update({r.member: r for r in outcome})
    ordered = [results[m] for m in members]
    return SweepResult(ordered, ensembles(ordered, test_labels), programs, compile_seconds, num_devices)


def _run_program(config: TrainConfig, program: SweepProgram, data: DeviceData, mesh, input_size: int,
                 callbacks, keep_states: bool, raise_on_divergence: bool, test_labels: np.ndarray
                 ) -> tuple[list[MemberResult], float]:
    spec = TrainSpec.from_config(config.replace(hidden_sizes=program.hidden_sizes), data.num_classes)
    real = len(program.members)
    padded = program.members + (program.members[0],) * (program.num_padded - real)
    state = prog.init_members(spec, padded, mesh=mesh, input_size=input_size)

    start = time.perf_counter()
    epoch_call = prog.epoch_program(spec, mesh).lower(
        state, data.train_images, data.train_labels).compile()
    validate = prog.validate_program(spec, mesh, config.eval_batch_size).lower(
        state.params, data.val_images, data.val_labels).compile()
    compile_seconds = time.perf_counter() - start

    results = [MemberResult(m, [], program=program.index) for m in program.members]
    for epoch in range(1, config.epochs + 1):
        start = time.perf_counter()
        state, train_metrics = epoch_call(state, data.train_images, data.train_labels)
        val_metrics = validate(state.params, data.val_images, data.val_labels)
        train_metrics, val_metrics = gather_to_host((train_metrics, val_metrics))
        seconds = time.perf_counter() - start
        records = []
        for k, result in enumerate(results):
            if result.diverged_epoch is not None:
                records.append(None)
                continue
            record = {"epoch": epoch,
                      "train_loss": float(train_metrics["loss"][k]),
                      "train_accuracy": float(train_metrics["accuracy"][k]),
                      "val_loss": float(val_metrics["loss"][k]),
                      "val_accuracy": float(val_metrics["accuracy"][k]),
                      "seconds": seconds}   # the whole program's epoch: members train together
            result.history.append(record)
            records.append(record)
            if not (np.isfinite(record["train_loss"]) and np.isfinite(record["val_loss"])):
                result.diverged_epoch = epoch
                if raise_on_divergence:
                    raise TrainingError(
                        f"sweep member {result.member} diverged at epoch {epoch}: train loss "
                        f"{record['train_loss']}, validation loss {record['val_loss']}; lower its "
                        f"learning rate")
        histories = [r.history for r in results]
        for callback in callbacks:
            callback(program, state, records, histories)
        if all(r.diverged_epoch is not None for r in results):
            break

    logits = prog.logits_program(spec, mesh, config.eval_batch_size)(state.params, data.test_images)
    logits = np.asarray(gather_to_host(logits))[:real]
    host_state = gather_to_host(state) if keep_states else None
    for k, result in enumerate(results):
        if keep_states:
            result.state = jax.tree_util.tree_map(lambda x: np.asarray(x[k]), host_state)
        if result.diverged_epoch is None:
            result.test_logits = logits[k]
            result.test = classification_report(logits[k], test_labels, data.num_classes)
    return results, compile_seconds


def ensembles(results: Sequence[MemberResult], test_labels: np.ndarray) -> dict[ConfigKey, dict]:
    """Per configuration: accuracy and loss of the mean of its (non-diverged) members' softmax
    probabilities on the test set, and how many members it averaged."""
    by_config: dict[ConfigKey, list[np.ndarray]] = {}
    for r in results:
        if r.test_logits is not None:
            by_config.setdefault(r.member.config_key, []).append(r.test_logits)
    out = {}
    for key, logits in by_config.items():
        probabilities = np.mean([_softmax(x) for x in logits], axis=0)
        picked = probabilities[np.arange(len(test_labels)), test_labels]
        out[key] = {"ensemble_accuracy": float(np.mean(np.argmax(probabilities, -1) == test_labels)),
                    "ensemble_loss": float(-np.mean(np.log(np.maximum(picked, 1e-12)))),
                    "ensemble_size": len(logits)}
    return out


def _softmax(logits: np.ndarray) -> np.ndarray:
    x = np.asarray(logits, np.float64)
    x = np.exp(x - np.max(x, axis=-1, keepdims=True))
    return x / np.sum(x, axis=-1, keepdims=True)
