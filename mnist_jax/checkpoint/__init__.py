"""Checkpoints: one store keyed by directory (`store`), the one writer of runs and sweeps
(`writer`), and a run's restores (`run`).

Layout of a run: `RUN/checkpoints/<epoch>/` holds the `TrainState` (every array) and a JSON info
item (format version, config, model, num_classes, image_shape, history, val_accuracy, the arrays'
SHA-256).
A sweep keeps one store per program (`writer`; its restores: `mnist_jax.sweep.checkpoint`).
"""

from mnist_jax.checkpoint.run import (
    LoadedRun,
    checkpoints_dir,
    list_checkpoints,
    load_run,
    restore_checkpoint,
)
from mnist_jax.checkpoint.store import FORMAT_VERSION, CheckpointStore, state_digest
from mnist_jax.checkpoint.writer import CHECKPOINTS_DIRNAME, Checkpointer, RunCheckpointer

__all__ = [
    "CHECKPOINTS_DIRNAME",
    "FORMAT_VERSION",
    "CheckpointStore",
    "Checkpointer",
    "LoadedRun",
    "RunCheckpointer",
    "checkpoints_dir",
    "list_checkpoints",
    "load_run",
    "restore_checkpoint",
    "state_digest",
]
