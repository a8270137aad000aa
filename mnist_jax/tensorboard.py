"""TensorBoard event files without TensorFlow, through tensorboardX.

A view of the run's epochs (the same numbers as metrics.jsonl): per-epoch scalars, the figures at
the end, the configuration as text, and for sweeps each member's hyper-parameters and final
metrics as an HParams session. A resumed run's writer purges the earlier event files and writes
again the epochs its metrics log keeps, so no step appears twice or goes missing. Without
tensorboardX installed, `open_writer` warns once and returns None: the metrics log has everything.

Events are written by `EventWriter`, synchronously, in the command's own thread: tensorboardX's
`SummaryWriter` writes from a background thread that dies on a full disk with a traceback, after
which its bounded queue blocks the next event, and its exit hook, forever. Here a failed write is
an `OutputError` where it happens, and closing never waits.
"""

from __future__ import annotations

import contextlib
import json
import math
import numbers
import time
import warnings
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from mnist_jax.errors import OutputError

# An epoch record's metric `<split>_<name>` (every one the compiled programs return: see
# `epochs.metric_keys`) is the scalar `<name>/<split's data>`, so a metric's curves on the training
# and validation data share one chart; the others logged are these, by their tags.
SPLIT_TAGS = {"train": "train", "val": "validation"}
OTHER_SCALARS = {
    "learning_rate": "learning_rate",
    "seconds": "epoch/seconds",
    "examples_per_second": "epoch/examples_per_second",
}


def scalar_tags(record: Mapping[str, Any]) -> dict[str, str]:
    """The record's keys that are scalars in TensorBoard -> their tags."""
    tags = {}
    for key in record:
        split, _, name = key.partition("_")
        if split in SPLIT_TAGS and name:
            tags[key] = f"{name}/{SPLIT_TAGS[split]}"
        elif key in OTHER_SCALARS:
            tags[key] = OTHER_SCALARS[key]
    return tags


class EventWriter:
    """An event file written synchronously (tensorboardX's record format and summaries, without
    its writer thread): each call writes through, `flush` and `close` return at once, and a write
    the system refuses (a full disk, a vanished folder) is an `OutputError` naming the file."""

    def __init__(self, logdir: str | Path, *, purge_step: int | None = None, suffix: str = ""):
        from tensorboardX.event_file_writer import EventsWriter
        from tensorboardX.proto.event_pb2 import Event, SessionLog

        self._event = Event
        self._path = Path(logdir)
        start = SessionLog(status=SessionLog.START)
        with self._writing():
            self._writer = EventsWriter(str(self._path / "events"), suffix)
            # TensorBoard's server takes a run's first session start for its beginning, and each
            # later one as a restart, dropping the events before it from its step on: a new run
            # writes its start, a resumed one two (its purge then holds even after a file of an
            # older version, which wrote none).
            for _ in range(1 if purge_step is None else 2):
                self._write(Event(step=purge_step or 1, session_log=start))
        self._path = Path(self._writer._file_name)

    @contextlib.contextmanager
    def _writing(self):
        try:
            yield
        except OSError as error:
            raise OutputError(
                f"cannot write TensorBoard events to {self._path}: {error.strerror or error}"
            ) from None

    def _write(self, event) -> None:
        event.wall_time = time.time()
        self._writer.write_event(event)

    def add(self, summary, step: int | None = None) -> None:
        """One summary (`tensorboardX.summary`'s scalar, text, image...) at `step`."""
        event = self._event(summary=summary)
        if step is not None:
            event.step = int(step)
        with self._writing():
            self._write(event)

    def flush(self) -> None:
        with self._writing():
            self._writer.flush()

    def close(self) -> None:
        with self._writing():
            self._writer.close()


def open_writer(logdir: str | Path, *, earlier: Iterable[Mapping[str, Any]] = ()):
    """An `EventWriter` on `logdir`, or None (with a warning) without tensorboardX.

    `earlier`: the epoch records a resumed run keeps (from its metrics log). The new writer then
    purges every earlier event and writes these again, so TensorBoard shows exactly the log: no
    step of an abandoned continuation, and none lost because a killed process had not flushed it.
    """
    try:
        import tensorboardX  # noqa: F401
    except ImportError:
        warnings.warn(
            "tensorboardX is not installed: no TensorBoard events, metrics.jsonl only", stacklevel=2
        )
        return None
    try:
        Path(logdir).mkdir(parents=True, exist_ok=True)
        resumed = any(Path(logdir).iterdir())
    except OSError as error:
        raise OutputError(
            f"cannot write TensorBoard events to {logdir}: {error.strerror}"
        ) from None
    # tensorboardX names a file by the second it was opened, and readers take files in name
    # order: a nanosecond suffix keeps a resume within the same second from overwriting the
    # earlier file, and sorts it after that file (so its purge applies).
    writer = EventWriter(logdir, purge_step=1 if resumed else None, suffix=f".{time.time_ns()}")
    for record in earlier:
        log_epoch(writer, record)
    return writer


def log_epoch(writer, record: Mapping[str, Any]) -> None:
    """The record's numbers as scalars at step = its epoch (non-finite values are skipped)."""
    from tensorboardX.summary import scalar

    for key, tag in scalar_tags(record).items():
        if _finite(record.get(key)):
            writer.add(scalar(tag, float(record[key])), int(record["epoch"]))
    writer.flush()


def _finite(value: Any) -> bool:
    return isinstance(value, numbers.Real) and math.isfinite(value)


def log_text(writer, tag: str, value: Any, step: int | None = None) -> None:
    """A value as pretty JSON text (TensorBoard renders it as Markdown code), at `step`: a resumed
    writer's purge drops an earlier file's events from step 1 on, so text meant to be replaced by
    a resume goes at a step of 1 or more."""
    from tensorboardX.summary import text

    writer.add(text(tag, "```\n" + json.dumps(value, indent=2, default=str) + "\n```"), step)


def log_images(writer, paths: Iterable[str | Path], step: int) -> None:
    """PNG files (the run's figures) as images tagged `figures/<file name>`."""
    import matplotlib.image
    from tensorboardX.summary import image

    for path in paths:
        pixels = matplotlib.image.imread(str(path))  # float HxWxC in [0, 1]
        # Tagged apart from the scalars: learning_rate.png beside the learning_rate scalar shared
        # one tag, which TensorBoard's readers take for one series.
        writer.add(image(f"figures/{Path(path).stem}", pixels, dataformats="HWC"), step)
    writer.flush()


def log_hparams(writer, hparams: Mapping[str, Any], metrics: Mapping[str, float | None]) -> None:
    """One HParams session in the writer's own run: `hparams` (numbers, strings or booleans; lists
    become strings) and the final `metrics` (None and non-finite values left out)."""
    from tensorboardX.summary import hparams as hparams_summaries
    from tensorboardX.summary import scalar

    clean = {
        k: v if isinstance(v, bool | int | float | str) else str(v) for k, v in hparams.items()
    }
    values = {f"hparams/{k}": float(v) for k, v in metrics.items() if _finite(v)}
    for summary in hparams_summaries(clean, values):
        writer.add(summary)
    for tag, value in values.items():
        writer.add(scalar(tag, value), 0)
    writer.flush()
