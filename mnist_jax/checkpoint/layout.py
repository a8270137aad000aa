"""Where and how checkpoints are stored: folder and item names, the format version, the ranking metric.

Shared by the writer and the readers, as is `_short` (one line of an exception for error messages).
"""

from __future__ import annotations

from pathlib import Path

__all__ = [
    "BEST_METRIC",
    "CHECKPOINT_FORMAT_VERSION",
    "CHECKPOINTS_DIRNAME",
    "CONFIG_FILENAME",
    "INFO_ITEM",
    "SET_ASIDE_DIRNAME",
    "STATE_ITEM",
    "checkpoints_dir",
]

CHECKPOINT_FORMAT_VERSION = 1
CHECKPOINTS_DIRNAME = "checkpoints"
# Where a writer moves checkpoints it must not keep in the managed directory (never deleted): those of
# epochs a resumed run is about to redo, and those whose orbax metrics file is unreadable.
SET_ASIDE_DIRNAME = "checkpoints_set_aside"
CONFIG_FILENAME = "config.json"
STATE_ITEM, INFO_ITEM = "state", "info"  # orbax reserves "metrics" for its own item
BEST_METRIC = "val_accuracy"


def checkpoints_dir(run_dir: str | Path) -> Path:
    return Path(run_dir).resolve() / CHECKPOINTS_DIRNAME


def _metric_of(metrics: dict) -> float:
    return float(metrics[BEST_METRIC])


def _short(error: BaseException) -> str:
    text = (
        f"{type(error).__name__}: {error}".splitlines()[0] if str(error) else type(error).__name__
    )
    return text if len(text) <= 200 else text[:197] + "..."
