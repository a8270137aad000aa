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

RECORD_METRICS = ("train_loss", "train_accuracy", "val_loss", "val_accuracy")


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
    metrics to the host (`sweep.gather_to_host` with several processes).
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
        columns = [train["loss"], train["accuracy"], val["loss"], val["accuracy"]]
        columns = [np.reshape(np.asarray(c, np.float64), -1) for c in columns]
        rates = train.get("learning_rate")  # absent for an optimizer that keeps no rate
        rates = None if rates is None else np.reshape(np.asarray(rates, np.float64), -1)
        records: list[dict | None] = []
        for k, history in enumerate(histories):
            if stopped[k] or (history and diverged(history[-1])):
                records.append(None)
                continue
            record = {"epoch": epoch, **{m: float(c[k]) for m, c in zip(RECORD_METRICS, columns)}}
            for metric, n in examples.items():
                record[metric] = exact_accuracy(record[metric], n)
            if rates is not None:
                # The epoch's last step's rate, a float32 written as its shortest decimal.
                record["learning_rate"] = float(str(np.float32(rates[k])))
            record["seconds"] = seconds  # of the whole program: its members train together
            if diverged(record) and raise_on_divergence:
                raise TrainingError(
                    f"{name(k)} diverged at epoch {epoch}: train loss {record['train_loss']}, "
                    f"validation loss {record['val_loss']}; lower the learning rate"
                )
            history.append(record)
            records.append(record)
        stopped = np.reshape(np.asarray(val["stopped"]), -1).tolist()
        yield state, records


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
