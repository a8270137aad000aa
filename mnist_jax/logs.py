"""`metrics.jsonl`: the canonical, crash-safe log of a run's or a sweep's epochs.

One JSON object per line, appended as training goes, each line flushed and fsynced before the next
epoch starts: a killed process leaves whole lines, at most a half-written last one. Reading skips
such a half line; a resumed run or sweep writes its earlier epochs again from its restored
checkpoint's histories (`EpochLog`), dropping the half line and the lines of epochs it is about to
train again, so every epoch appears exactly once. report.md, the plots and TensorBoard are views
of what this file holds.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import jax

from mnist_jax import tensorboard as tb
from mnist_jax.errors import OutputError
from mnist_jax.fileio import write_text_atomic
from mnist_jax.labels import config_label

METRICS_LOG = "metrics.jsonl"


def json_safe(value: Any) -> Any:
    """Non-finite floats (a diverged epoch) as null: JSON has no NaN."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(v) for v in value]
    return value


def read_metrics_log(path: str | os.PathLike) -> list[dict]:
    """The whole lines of a metrics log ([] if it does not exist); a damaged line is skipped."""
    path = Path(path)
    if not path.is_file():
        return []
    lines = []
    for text in path.read_text(encoding="utf-8", errors="replace").splitlines():
        try:
            line = json.loads(text)
        except (json.JSONDecodeError, RecursionError):
            continue  # a line cut short by a crash, or not one the log writes
        if isinstance(line, dict):
            lines.append(line)
    return lines


def _as_text(lines: Iterable[dict]) -> str:
    return "".join(json.dumps(json_safe(line), allow_nan=False) + "\n" for line in lines)


class MetricsLog:
    """Appends epoch lines to a metrics log, each one on disk before `append` returns."""

    def __init__(self, path: str | os.PathLike, lines: Iterable[dict] | None = None):
        """Opens `path` for appending. With `lines`, the file first becomes exactly those lines,
        atomically (a resumed run's earlier epochs; a file that holds them already is left as it
        is); without, a fresh log is expected."""
        self.path = Path(path)
        if lines is not None:
            text = _as_text(lines)
            old = self.path.read_text(errors="replace") if self.path.exists() else ""
            if text != old:
                write_text_atomic(self.path, text)
        try:
            self._file = open(self.path, "a", encoding="utf-8")  # noqa: SIM115 - held open
        except OSError as error:
            raise OutputError(f"cannot write {self.path}: {error.strerror}") from None

    def append(self, lines: Iterable[dict]) -> None:
        text = _as_text(lines)
        try:
            self._file.write(text)
            self._file.flush()
            os.fsync(self._file.fileno())
        except OSError as error:
            raise OutputError(f"cannot write {self.path}: {error.strerror}") from None

    def close(self) -> None:
        self._file.close()

    def __enter__(self) -> MetricsLog:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()


# Written once a run's TensorBoard events are whole (the run record and the figures included): a
# resume of a finished run whose events were cut short (a full disk) writes them again.
TENSORBOARD_COMPLETE = Path("tensorboard") / "complete"


def tensorboard_incomplete(run_dir: str | os.PathLike) -> bool:
    """Whether the run wrote TensorBoard events that did not finish (see `TENSORBOARD_COMPLETE`)."""
    run_dir = Path(run_dir)
    return (run_dir / "tensorboard").is_dir() and not (run_dir / TENSORBOARD_COMPLETE).exists()


class ProfileSteadyEpoch:
    """A `fit` callback recording a `jax.profiler` trace of the second epoch it sees (the first
    still compiles and warms caches) into `directory`; `traced` says whether it got one."""

    def __init__(self, directory: str | os.PathLike) -> None:
        self.directory, self.seen, self.traced = Path(directory), 0, False

    def __call__(self, state: Any, record: dict, history: list) -> None:
        self.seen += 1
        if self.seen == 1:
            jax.profiler.start_trace(str(self.directory))
        elif self.seen == 2:
            jax.profiler.stop_trace()
            self.traced = True

    def close(self) -> None:
        if self.seen == 1:  # the run ended after one epoch: keep what was recorded
            jax.profiler.stop_trace()

    def summary(self) -> str:
        """What the directory holds, in a line for the console."""
        if self.traced:
            return f"profile of a steady epoch: {self.directory}"
        if self.seen == 1:  # close() kept the trace of what followed the only epoch
            return (
                f"profile of what followed the first epoch (the evaluation and outputs; one epoch "
                f"was trained, so no steady epoch): {self.directory}"
            )
        return "no profile: no epoch was trained"


def history_from_log(path: str | os.PathLike, last_epoch: int) -> list[dict] | None:
    """A run's history of epochs 1..`last_epoch` as its metrics log holds it (the log's lines are
    the epoch records), or None when the log lacks any of those epochs, or a line is not an epoch
    record as `MetricsLog` writes them (numbers, null for a diverged epoch's non-finite values):
    an edited or foreign line, where the checkpoint's own copy serves."""
    by_epoch = {line.get("epoch"): line for line in read_metrics_log(path) if "member" not in line}
    history = [by_epoch.get(epoch) for epoch in range(1, last_epoch + 1)]
    if not all(
        line is not None and all(map(_is_number_or_null, line.values())) for line in history
    ):
        return None
    return history


def _is_number_or_null(value: Any) -> bool:
    return value is None or (isinstance(value, int | float) and not isinstance(value, bool))


class EpochLog:
    """A `run_sweep` callback: each member's epoch records, with its learning rate and examples per
    second, to DIR/metrics.jsonl and (unless `tensorboard` is False) TensorBoard; `finish` adds
    each member's hyper-parameters and final metrics as an HParams session.

    A sweep's lines name their member (its index, program, seed and hyper-parameters beside the
    record) and each member has its own TensorBoard run, DIR/tensorboard/<configuration>-seed<k>/.
    A run is a sweep of one member that keeps the run directory's layout (`run=True`): bare
    records, events in DIR/tensorboard/, and `finish` adds the run record and its figures.

    A resumed run or sweep continues both: when a program trains its first epoch here, its
    members' earlier lines are written again from the histories it resumed with, so lines of an
    abandoned continuation, and lines edited or cut short since, do not stay; their TensorBoard
    events are rewritten from the log. A run's `finish` marks its events complete
    (`tensorboard_incomplete`).
    """

    def __init__(
        self,
        directory: str | os.PathLike,
        members: list,
        *,
        train_examples: int,
        tensorboard: bool = True,
        run: bool = False,
    ) -> None:
        self.directory, self.train_examples = Path(directory), train_examples
        self.tensorboard, self.run = tensorboard, run
        self.index = {member: k for k, member in enumerate(members)}
        self.path = self.directory / METRICS_LOG
        self.log: MetricsLog | None = None  # opened by the first epoch trained here
        self.writers: dict[Any, Any] = {}
        self._started: set[int] = set()

    def _writer(self, member):
        """The member's writer, opened on first use with its epochs already in the log."""
        if self.tensorboard and member not in self.writers:
            logdir = self.directory / "tensorboard"
            if not self.run:
                logdir /= f"{config_label(member.config_key)}-seed{member.seed}".replace(" ", "_")
            (self.directory / TENSORBOARD_COMPLETE).unlink(missing_ok=True)
            earlier = [
                line
                for line in read_metrics_log(self.path)
                if self.run or line.get("member") == self.index[member]
            ]
            self.writers[member] = tb.open_writer(logdir, earlier=earlier)
        return self.writers.get(member)

    def _line(self, program, member, record: dict) -> dict:
        about = (
            {}
            if self.run
            else {"member": self.index[member], "program": program.index, **member.to_dict()}
        )
        line = {**about, **record}
        if isinstance(record.get("seconds"), int | float):
            line["examples_per_second"] = self.train_examples / max(record["seconds"], 1e-9)
        line.setdefault("learning_rate", member.learning_rate)
        return line

    def _restart(self, program, histories: list, epoch: int) -> None:
        """Before the first epoch a program trains here: its members' lines of earlier epochs are
        written again from the histories it starts from (a checkpoint's own copy), so that a log
        edited, cut short or continued past the checkpoint (an abandoned continuation) holds
        each epoch once, as trained; the other programs' lines stay."""
        by_epoch = [{r.get("epoch"): r for r in h} for h in histories]
        lines = (
            []
            if self.run
            else [
                line for line in read_metrics_log(self.path) if line.get("program") != program.index
            ]
        )
        lines += [
            self._line(program, member, records[e])
            for e in range(1, epoch)
            for member, records in zip(program.members, by_epoch)
            if e in records
        ]
        if self.log is not None:
            self.log.close()
        self.log = MetricsLog(self.path, lines)

    def __call__(self, program, state: Any, records: list, histories: list) -> None:
        epoch = max(len(h) for h in histories)
        if program.index not in self._started:  # the first epoch this program trains here
            self._started.add(program.index)
            self._restart(program, histories, epoch)
        lines = []
        for member, record in zip(program.members, records):
            if record is None:
                continue
            line = self._line(program, member, record)
            lines.append(line)
            writer = self._writer(member)
            if writer is not None:
                tb.log_epoch(writer, line)
        self.log.append(lines)

    def finish(
        self,
        results: list,
        *,
        run_record: dict | None = None,
        figures: Iterable[os.PathLike] = (),
        epoch: int = 1,
    ) -> None:
        """Each member's hyper-parameters and final metrics as an HParams session; a run's
        `run_record` (as text) and PNG `figures` at step `epoch`. Closes (a run's events are then
        marked complete)."""
        figures = list(figures)
        for result in results:
            writer = self._writer(result.member)
            if writer is None:
                continue
            hparams = {
                k: v if not isinstance(v, list) else ",".join(map(str, v))
                for k, v in result.member.to_dict().items()
            }
            tb.log_hparams(writer, hparams, result.metrics())
            if run_record is not None:
                tb.log_text(writer, "run", run_record, epoch)
            if figures:
                tb.log_images(writer, figures, epoch)
        complete = self.run and bool(self.writers) and None not in self.writers.values()
        self.close()
        if complete:
            write_text_atomic(self.directory / TENSORBOARD_COMPLETE, "")

    def close(self) -> None:
        if self.log is not None:
            self.log.close()
        for writer in self.writers.values():
            if writer is not None:
                writer.close()
        self.writers = {}

    @contextlib.contextmanager
    def closed_on_error(self) -> Iterator[EpochLog]:
        """Closes the log where training raises (a divergence, an interrupt); otherwise `finish`
        closes it, once the outputs are written."""
        try:
            yield self
        except BaseException:
            self.close()
            raise

    def __enter__(self) -> EpochLog:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()
