"""Checkpoints of a run: orbax-managed, one per saved epoch, restorable bitwise, read without side effects.

Layout: `RUN/checkpoints/<epoch>/` is one orbax `CheckpointManager` step (step number = epoch) with two
items, `state` (the `TrainState`, every array, via `StandardSave`) and `info` (JSON: format version,
config, num_classes, epoch, history, val_accuracy and a SHA-256 digest of the state's bytes). Orbax
writes each step into a temporary directory and renames it when complete, so a crash mid-save never
touches an earlier checkpoint, and an unfinished step is never listed.

Retention is orbax's `preservation_policy`: `AnyPreservationPolicy([LatestN(keep_latest),
BestN(val_accuracy, keep_best)])`, i.e. the latest K and the best by validation accuracy survive;
nothing else deletes checkpoints. `best_fn` is set as well, because only then does orbax 0.12.8 write
the metrics to disk (`_track_best`), so that a resumed process still knows which epoch is best.

Donation: `fit` donates the state's buffers to the next epoch as soon as the callback returns, so
`RunCheckpointer` copies the state to host memory (owned numpy copies) before handing it to orbax;
orbax then writes those copies in the background. (Orbax 0.12.8 would also copy synchronously, but on
CPU it keeps zero-copy numpy views of the device buffers, which silently turns donation into a copy;
an explicit copy is cheap for this model and does not depend on orbax internals.)

Reading (`restore_checkpoint`, `load_run`, `list_checkpoints`, `latest_intact_epoch`) opens the
manager read-only and never deletes, moves or writes anything. A damaged checkpoint (missing or
truncated file, missing item, digest mismatch, orbax raising while reading) is skipped with a warning
when looking for the latest or best one; an incompatible one (unknown format version, another
architecture) raises `CheckpointError`, since falling back would silently restore the wrong run.

Modules: `layout` (names, format version), `writer` (`RunCheckpointer`), `reader` (listing and
restoring), `steps` (reading and checking one checkpoint), `digest` (`state_digest`, `host_copy`) and
`run` (`load_run`); everything public is importable from here.
"""

from mnist_jax.checkpoint.digest import host_copy, state_digest
from mnist_jax.checkpoint.layout import (
    BEST_METRIC,
    CHECKPOINT_FORMAT_VERSION,
    CHECKPOINTS_DIRNAME,
    CONFIG_FILENAME,
    INFO_ITEM,
    SET_ASIDE_DIRNAME,
    STATE_ITEM,
    checkpoints_dir,
)
from mnist_jax.checkpoint.reader import (
    latest_intact_epoch,
    list_checkpoints,
    list_checkpoints_in,
    restore_checkpoint,
    restore_checkpoint_in,
)
from mnist_jax.checkpoint.run import LoadedRun, load_run
from mnist_jax.checkpoint.writer import RunCheckpointer

__all__ = [
    "CHECKPOINT_FORMAT_VERSION",
    "CHECKPOINTS_DIRNAME",
    "LoadedRun",
    "RunCheckpointer",
    "checkpoints_dir",
    "host_copy",
    "latest_intact_epoch",
    "list_checkpoints",
    "list_checkpoints_in",
    "load_run",
    "restore_checkpoint",
    "restore_checkpoint_in",
    "state_digest",
]
