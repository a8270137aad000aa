"""The host side of training, shared by `fit` (one member) and `run_sweep` (many): epoch records,
the divergence guard, and the one place the compiled programs are called.

Each epoch is two compiled calls (the epoch and the validation), run under
`jax.transfer_guard("disallow")`: every array they touch is already on the device, so an implicit
host round trip inside an epoch is an error, not a slowdown. Then one explicit transfer brings four
numbers per member to the host.
"""

from __future__ import annotations

import concurrent.futures
import math
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import jax
import numpy as np

from mnist_jax.errors import TrainingError

# An epoch record holds every metric the compiled epoch and validation return, prefixed by the
# split it was measured on (`train_loss`, `val_accuracy`, ...), then the learning rate in effect
# (where the optimizer keeps one) and the epoch's seconds. Logs, TensorBoard, the console line and
# the report's table loop over `metric_keys(record)`: a new metric is one edit, in `train.py`.
SPLITS = ("train", "val")  # the record's prefix: the data a metric was measured on
UNPREFIXED = ("learning_rate",)  # what the epoch program returns that is not a training metric
# Compiled programs return their metrics by name (jax orders a dict's keys); records put these
# first, then the others by name.
FIRST_METRICS = ("loss", "accuracy")


def _ordered(metrics: dict) -> list[str]:
    return sorted(metrics, key=lambda m: ((*FIRST_METRICS, m).index(m), m))


RECORD_METRICS = ("train_loss", "train_accuracy", "val_loss", "val_accuracy")  # always there


def metric_keys(record: dict) -> list[str]:
    """The per-epoch metrics of a record, in its order: every `train_*` and `val_*` number."""
    return [k for k in record if k.partition("_")[0] in SPLITS and k.partition("_")[2]]


def metric_words(key: str) -> tuple[str, str]:
    """`"val_accuracy"` -> ("val", "acc"): a metric's split and its short name for tables."""
    split, _, name = key.partition("_")
    return split, name.replace("accuracy", "acc").replace("_", " ")


def exact_accuracy(accuracy: float, examples: int) -> float:
    """A compiled program's float32 accuracy k/n as k/n itself (a Python float).

    float32 keeps 24 bits, so below 2**23 examples k is `round(accuracy * n)` exactly. The records
    then hold the ratio, not its float32 rounding, which can fall below it: 9550/10000 in float32
    is 0.95499998, under a target of 0.955 that the run did reach. Larger counts and non-finite
    values are returned as they are."""
    if not math.isfinite(accuracy) or not 0 < examples < 2**23:
        return accuracy
    return round(accuracy * examples) / examples


def diverged(record: dict | None) -> bool:
    """Whether an epoch record's training or validation loss is not finite (None counts as not)."""
    return record is not None and not (
        math.isfinite(record["train_loss"]) and math.isfinite(record["val_loss"])
    )


def compile_all(lowered: Sequence[Any]) -> list[Any]:
    """`lowered[i].compile()` for each (None stays None), in parallel threads: XLA compilation
    releases the GIL, so the programs of a run compile side by side."""
    with concurrent.futures.ThreadPoolExecutor(max(1, len(lowered))) as pool:
        return list(pool.map(lambda low: None if low is None else low.compile(), lowered))


def run_epochs(
    epoch_program: Callable,
    validate_program: Callable,
    state: Any,
    data: Any,
    epochs: range,
    histories: Sequence[list[dict]],
    *,
    raise_on_divergence: bool,
    name: Callable[[int], str] = lambda k: "training",
    gather: Callable[[Any], Any] = jax.device_get,
    stop: Callable[[list[dict | None]], Sequence[bool] | None] | None = None,
) -> Iterator[tuple[Any, list[dict | None]]]:
    """Trains `epochs`, yielding `(state, records)` after each: one record per member (None for a
    member that diverged or stopped early in an earlier epoch), already appended to that member's
    history. `validate_program(state, images, labels)` returns the state (best-epoch tracking)
    and metrics with each member's `stopped` flag; the loop ends when every member has stopped
    or diverged.

    `histories` has one list per member (one for a single run, whose metrics are scalars). A member
    whose loss is not finite raises TrainingError (`raise_on_divergence`, naming it by `name(k)`),
    or is marked: its history ends with the non-finite record and it is not trained further (its
    rows still compute, unused). Stops early when every member has diverged. `gather` brings the
    metrics to the host (`sweep.gather_to_host` with several processes). `stop(records)`, a
    host-side stop rule (a search's pruner), may name members to stop after an epoch, one flag per
    member: they are marked stopped in the state it yields, as patience marks them, and train no
    further.
    """
    # Members stopped early (restored with a resumed state) train no further.
    stopped = np.reshape(np.asarray(gather(state.stopped)), -1).tolist()
    # Accuracies are recorded as exact ratios of these counts (`exact_accuracy`).
    examples = {
        "train_accuracy": data.train_labels.shape[0],
        "val_accuracy": data.val_labels.shape[0],
    }
    for epoch in epochs:
        if all(
            stop or (history and diverged(history[-1])) for stop, history in zip(stopped, histories)
        ):
            return
        start = time.perf_counter()
        with jax.transfer_guard("disallow"):
            state, train = epoch_program(state, data.train_images, data.train_labels)
            state, val = validate_program(state, data.val_images, data.val_labels)
        train, val = gather((train, val))
        seconds = time.perf_counter() - start
        columns = {
            **{f"train_{k}": train[k] for k in _ordered(train) if k not in UNPREFIXED},
            **{f"val_{k}": val[k] for k in _ordered(val) if k != "stopped"},
            **{k: train[k] for k in UNPREFIXED if k in train},
        }
        columns = {m: np.reshape(np.asarray(c, np.float64), -1) for m, c in columns.items()}
        records: list[dict | None] = []
        for k, history in enumerate(histories):
            if stopped[k] or (history and diverged(history[-1])):
                records.append(None)
                continue
            record = {"epoch": epoch, **{m: float(c[k]) for m, c in columns.items()}}
            for metric, n in examples.items():
                record[metric] = exact_accuracy(record[metric], n)
            if "learning_rate" in record:
                # The epoch's last step's rate, a float32 written as its shortest decimal.
                record["learning_rate"] = float(str(np.float32(record["learning_rate"])))
            record["seconds"] = seconds  # of the whole program: its members train together
            if diverged(record) and raise_on_divergence:
                raise TrainingError(
                    f"{name(k)} diverged at epoch {epoch}: train loss {record['train_loss']}, "
                    f"validation loss {record['val_loss']}; lower the learning rate"
                )
            history.append(record)
            records.append(record)
        stopped = np.reshape(np.asarray(val["stopped"]), -1).tolist()
        more = stop(records) if stop is not None else None
        if more is not None and any(m and not s for m, s in zip(more, stopped)):
            stopped = [bool(m) or s for m, s in zip(more, stopped)] + stopped[len(more) :]
            state = state.replace(stopped=_placed(stopped, state.stopped))
        yield state, records


def _placed(values: list[bool], like: jax.Array) -> jax.Array:
    """`values` as an array of `like`'s shape and sharding (each process fills its own shards)."""
    host = np.reshape(np.asarray(values, bool), np.shape(like))
    return jax.make_array_from_callback(host.shape, like.sharding, lambda index: host[index])


def time_to_target(history: Sequence[dict], target: float) -> dict:
    """When a history first reached validation accuracy `target`: `{"reached", "epoch",
    "seconds"}`, the seconds being the training time of the epochs up to it (each record's
    `seconds`: the compiled epoch and validation, measured on the host at epoch boundaries,
    compilation excluded). A history that never reached it has reached False, epoch and seconds
    None: reported, not dropped."""
    seconds = 0.0
    for record in history:
        seconds += float(record["seconds"])
        if not diverged(record) and record["val_accuracy"] >= target:
            return {"reached": True, "epoch": int(record["epoch"]), "seconds": seconds}
    return {"reached": False, "epoch": None, "seconds": None}
