"""TensorBoard event files without TensorFlow, through tensorboardX.

A view of the run's epochs (the same numbers as metrics.jsonl): per-epoch scalars, the figures at
the end, the configuration as text, and for sweeps each member's hyper-parameters and final
metrics as an HParams session. A resumed run's writer purges the earlier event files and writes
again the epochs its metrics log keeps, so no step appears twice or goes missing. Without
tensorboardX installed, `open_writer` warns once and returns None: the metrics log has everything.
"""

from __future__ import annotations

import json
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


def open_writer(logdir: str | Path, *, earlier: Iterable[Mapping[str, Any]] = ()):
    """A tensorboardX `SummaryWriter` on `logdir`, or None (with a warning) without tensorboardX.

    `earlier`: the epoch records a resumed run keeps (from its metrics log). The new writer then
    purges every earlier event and writes these again, so TensorBoard shows exactly the log: no
    step of an abandoned continuation, and none lost because a killed process had not flushed it.
    """
    try:
        from tensorboardX import SummaryWriter
    except ImportError:
        warnings.warn(
            "tensorboardX is not installed: no TensorBoard events, metrics.jsonl only", stacklevel=2
        )
        return None
    try:
        Path(logdir).mkdir(parents=True, exist_ok=True)
        # tensorboardX names a file by the second it was opened, and readers take files in name
        # order: a nanosecond suffix keeps a resume within the same second from overwriting the
        # earlier file, and sorts it after that file (so its purge applies).
        writer = SummaryWriter(
            str(logdir),
            purge_step=1 if any(Path(logdir).iterdir()) else None,
            flush_secs=10,
            filename_suffix=f".{time.time_ns()}",
        )
    except OSError as error:
        raise OutputError(
            f"cannot write TensorBoard events to {logdir}: {error.strerror}"
        ) from None
    for record in earlier:
        log_epoch(writer, record)
    return writer


def log_epoch(writer, record: Mapping[str, Any]) -> None:
    """The record's numbers as scalars at step = its epoch (non-finite values are skipped)."""
    for key, tag in scalar_tags(record).items():
        value = record.get(key)
        if isinstance(value, int | float) and value == value and abs(value) != float("inf"):
            writer.add_scalar(tag, value, int(record["epoch"]))
    writer.flush()


def log_text(writer, tag: str, value: Any) -> None:
    """A value as pretty JSON text (TensorBoard renders it as Markdown code)."""
    writer.add_text(tag, "```\n" + json.dumps(value, indent=2, default=str) + "\n```")


def log_images(writer, paths: Iterable[str | Path], step: int) -> None:
    """PNG files (the run's figures) as images named by their file names."""
    import matplotlib.image

    for path in paths:
        pixels = matplotlib.image.imread(str(path))  # float HxWxC in [0, 1]
        writer.add_image(Path(path).stem, pixels, step, dataformats="HWC")
    writer.flush()


def log_hparams(writer, hparams: Mapping[str, Any], metrics: Mapping[str, float | None]) -> None:
    """One HParams session in the writer's own run: `hparams` (numbers, strings or booleans; lists
    become strings) and the final `metrics` (None and non-finite values left out)."""
    from tensorboardX.summary import hparams as hparams_summaries

    clean = {
        k: v if isinstance(v, bool | int | float | str) else str(v) for k, v in hparams.items()
    }
    values = {
        f"hparams/{k}": float(v)
        for k, v in metrics.items()
        if v is not None and v == v and abs(v) != float("inf")
    }
    for summary in hparams_summaries(clean, values):
        writer.file_writer.add_summary(summary)
    for tag, value in values.items():
        writer.add_scalar(tag, value, 0)
    writer.flush()
