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
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import warnings
from pathlib import Path
from typing import Any, Iterable

import jax
import numpy as np
import orbax.checkpoint as ocp
from orbax.checkpoint import checkpoint_managers as ocp_policies

from mnist_jax.config import TrainConfig
from mnist_jax.errors import CheckpointError, ConfigError
from mnist_jax.train import TrainSpec, TrainState, create_train_state

CHECKPOINT_FORMAT_VERSION = 1
CHECKPOINTS_DIRNAME = "checkpoints"
# Where a writer moves checkpoints it must not keep in the managed directory (never deleted): those of
# epochs a resumed run is about to redo, and those whose orbax metrics file is unreadable.
SET_ASIDE_DIRNAME = "checkpoints_set_aside"
CONFIG_FILENAME = "config.json"
STATE_ITEM, INFO_ITEM = "state", "info"  # orbax reserves "metrics" for its own item
BEST_METRIC = "val_accuracy"

__all__ = [
    "CHECKPOINT_FORMAT_VERSION", "LoadedRun", "RunCheckpointer", "checkpoints_dir",
    "latest_intact_epoch", "list_checkpoints", "load_run", "restore_checkpoint",
    "restore_checkpoint_in", "state_digest",
]


def checkpoints_dir(run_dir: str | Path) -> Path:
    return Path(run_dir).resolve() / CHECKPOINTS_DIRNAME


# ----------------------------------------------------------------------------------------- writing


class RunCheckpointer:
    """Saves a run's checkpoints; use it as a `fit` callback, and as a context manager.

    `checkpointer(state, record, history)` saves epoch `record["epoch"]` when it is a multiple of
    `save_every` or the final epoch (`config.epochs`). With `async_save` the files are written in the
    background while the next epoch trains; the state has been copied to host memory before the call
    returns, so donating its buffers afterwards is safe. `wait()` blocks until pending saves are on
    disk (and raises their errors); `close()` (and leaving the `with` block) waits, then releases
    the manager.

    A run resumed from epoch E (after falling back past a damaged checkpoint, or on request)
    re-trains epochs after E; their old checkpoints belong to the abandoned continuation, so the first
    save of an epoch at or before them moves them into `RUN/checkpoints_set_aside/` (with a warning)
    rather than deleting them. So does opening a run where a checkpoint's orbax metrics file is
    unreadable (orbax 0.12.8 cannot open such a directory for writing at all).

    `directory` puts the checkpoints somewhere other than RUN/checkpoints (a sweep keeps one folder
    per program); set-aside checkpoints then go to `<directory>_set_aside` next to it. Subclasses
    that store another kind of state build their own info and call `_write`.
    """

    def __init__(self, run_dir: str | Path, config: TrainConfig, *, num_classes: int | None = None,
                 save_every: int = 1, keep_latest: int = 3, keep_best: int = 1,
                 async_save: bool = True, directory: str | Path | None = None) -> None:
        if not (isinstance(save_every, int) and save_every >= 1):
            raise ConfigError(f"invalid save_every={save_every!r}: expected a positive integer")
        if not (isinstance(keep_latest, int) and keep_latest >= 1):
            raise ConfigError(f"invalid keep_latest={keep_latest!r}: expected a positive integer "
                              "(resuming needs the latest checkpoint)")
        if not (isinstance(keep_best, int) and keep_best >= 0):
            raise ConfigError(f"invalid keep_best={keep_best!r}: expected a non-negative integer")
        self.run_dir = Path(run_dir).resolve()
        self.directory = checkpoints_dir(self.run_dir) if directory is None \
            else Path(directory).resolve()
        # RUN/checkpoints_set_aside for the default directory.
        self.set_aside_root = self.directory.with_name(self.directory.name + "_set_aside")
        self.config = config
        self.num_classes = num_classes
        self.save_every = save_every
        metric = _metric_of
        options = ocp.CheckpointManagerOptions(
            save_decision_policy=ocp_policies.AnySavePolicy([
                ocp_policies.FixedIntervalPolicy(save_every),
                ocp_policies.SpecificStepsPolicy((config.epochs,)),
            ]),
            preservation_policy=ocp_policies.AnyPreservationPolicy([
                ocp_policies.LatestN(n=keep_latest),
                ocp_policies.BestN(get_metric_fn=metric, reverse=False, n=keep_best,
                                   keep_checkpoints_without_metrics=False),
            ]),
            # Not a retention option here (preservation_policy decides): without best_fn orbax 0.12.8
            # keeps the metrics in memory only, and a resumed run would not know the best epoch.
            best_fn=metric,
            best_mode="max",
            enable_async_checkpointing=async_save,
            create=True,
        )
        self._set_aside_steps_with_unreadable_metrics()
        try:
            self._manager = ocp.CheckpointManager(self.directory, options=options,
                                                  item_names=(STATE_ITEM, INFO_ITEM))
        except Exception as error:  # orbax reads every step's metrics here
            raise CheckpointError(f"cannot open {self.directory} for writing: {_short(error)}") \
                from error
        self._closed = False

    # A fit callback.
    def __call__(self, state: TrainState, record: dict, history: list) -> None:
        self.save(state, history, epoch=int(record["epoch"]))

    def should_save(self, epoch: int) -> bool:
        return epoch % self.save_every == 0 or epoch == self.config.epochs

    def save(self, state: TrainState, history: Iterable[dict], *, epoch: int | None = None,
             force: bool = False) -> bool:
        """Saves `state` as the checkpoint of `epoch` (default: `state.epoch`); False if not due."""
        if self._closed:
            raise CheckpointError(f"checkpointer of {self.run_dir} is closed; make a new one to save")
        history = [dict(r) for r in history]
        epoch = int(state.epoch) if epoch is None else int(epoch)
        if not (force or self.should_save(epoch)):
            return False
        # Owned host copies, made now: the caller donates the device buffers when we return.
        host_state = host_copy(state)
        val_accuracy = float(history[-1][BEST_METRIC]) if history and BEST_METRIC in history[-1] \
            else None
        info = {
            "format_version": CHECKPOINT_FORMAT_VERSION,
            "epoch": epoch,
            "step": int(host_state.step),
            "config": self.config.to_dict(),
            "num_classes": self.num_classes or _num_classes_of(host_state),
            "input_size": _input_size_of(host_state),
            "history": history,
            BEST_METRIC: val_accuracy,
            "state_sha256": state_digest(host_state),
        }
        return self._write(epoch, host_state, info, val_accuracy)

    def _write(self, epoch: int, host_state: Any, info: dict, val_accuracy: float | None) -> bool:
        """Saves owned host arrays `host_state` and the JSON `info` as step `epoch` (always)."""
        self._set_aside_steps_from(epoch)
        metrics = None if val_accuracy is None else {BEST_METRIC: val_accuracy}
        return self._manager.save(
            epoch, args=ocp.args.Composite(**{STATE_ITEM: ocp.args.StandardSave(host_state),
                                              INFO_ITEM: ocp.args.JsonSave(info)}),
            metrics=metrics, force=True)

    def _set_aside_steps_from(self, epoch: int) -> None:
        later = [s for s in self._manager.all_steps() if s >= epoch]
        if not later:
            return
        self._manager.wait_until_finished()
        moved = self._move_aside(later)
        self._manager.reload()
        warnings.warn(f"run {self.run_dir} continues from before epoch(s) {sorted(later)}; their "
                      f"checkpoints were moved to {moved}", stacklevel=4)

    def _set_aside_steps_with_unreadable_metrics(self) -> None:
        if not self.directory.is_dir():
            return
        unreadable = []
        for step_dir in self.directory.iterdir():
            metrics_file = step_dir / "metrics" / "metrics"
            if step_dir.name.isdigit() and metrics_file.is_file():
                try:
                    _metric_of(json.loads(metrics_file.read_text()))
                except (ValueError, KeyError, TypeError):
                    unreadable.append(int(step_dir.name))
        if unreadable:
            moved = self._move_aside(unreadable)
            warnings.warn(f"checkpoint(s) of epoch(s) {sorted(unreadable)} in {self.directory} have "
                          f"an unreadable metrics file; moved to {moved}", stacklevel=3)

    def _move_aside(self, steps: Iterable[int]) -> str:
        target_root = self.set_aside_root
        target_root.mkdir(exist_ok=True)
        moved = []
        for step in sorted(steps):
            target, n = target_root / str(step), 1
            while target.exists():
                target, n = target_root / f"{step}-{n}", n + 1
            (self.directory / str(step)).rename(target)
            moved.append(f"{step} -> {target.name}")
        return f"{target_root} ({', '.join(moved)})"

    @property
    def manager(self) -> ocp.CheckpointManager:
        return self._manager

    def wait(self) -> None:
        """Blocks until every pending save is complete on disk; re-raises a failed save's error."""
        self._manager.wait_until_finished()

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._manager.wait_until_finished()
            self._manager.close()

    def __enter__(self) -> "RunCheckpointer":
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()


def host_copy(tree: Any) -> Any:
    """Owned numpy copies of every array (safe to keep while the device buffers are donated)."""
    return jax.tree.map(lambda x: np.array(x, copy=True), tree)


def _metric_of(metrics: dict) -> float:
    return float(metrics[BEST_METRIC])


def _num_classes_of(state: TrainState) -> int | None:
    """Width of the output layer (the last Dense bias), for a template without the dataset at hand."""
    try:
        last = max((k for k in state.params if k.startswith("Dense_")), key=lambda k: int(k[6:]))
        return int(np.shape(state.params[last]["bias"])[0])
    except (AttributeError, KeyError, TypeError, ValueError):
        return None


def _input_size_of(state: TrainState) -> int | None:
    try:
        return int(np.shape(state.params["Dense_0"]["kernel"])[0])
    except (AttributeError, KeyError, TypeError, IndexError):
        return None


# --------------------------------------------------------------------------- digests and tree paths


def _path_str(path) -> str:
    parts = []
    for key in path:
        for attr in ("key", "name", "idx"):
            if hasattr(key, attr):
                parts.append(str(getattr(key, attr)))
                break
        else:
            parts.append(str(key))
    return "/".join(parts)


def _flat(tree) -> dict[str, Any]:
    return {_path_str(p): leaf for p, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]}


def state_digest(state: Any) -> str:
    """SHA-256 over every array's path, dtype, shape and bytes; equal iff bitwise equal (structure-free).

    Paths are normalised (attribute, dict key and index all become strings) so that a `TrainState`
    and the plain nested dicts orbax restores without a target give the same digest.
    """
    digest = hashlib.sha256()
    for path, leaf in sorted(_flat(state).items()):
        array = np.asarray(jax.device_get(leaf))
        digest.update(f"{path}|{array.dtype.str}|{array.shape}|".encode())
        digest.update(np.ascontiguousarray(array).tobytes())
    return digest.hexdigest()


# ----------------------------------------------------------------------------------------- reading


class _Damaged(Exception):
    """A checkpoint that cannot be read back intact (internal; becomes a warning or CheckpointError)."""


def _reader(run_dir: str | Path) -> ocp.CheckpointManager:
    return _reader_at(_existing_checkpoints_dir(run_dir))


def _existing_checkpoints_dir(run_dir: str | Path) -> Path:
    directory = checkpoints_dir(run_dir)
    if not directory.is_dir():
        raise CheckpointError(f"no checkpoints in {Path(run_dir)}: {directory} does not exist")
    return directory


def _reader_at(directory: Path) -> ocp.CheckpointManager:
    if not directory.is_dir():
        raise CheckpointError(f"no checkpoints: {directory} does not exist")
    # read_only: no saves, deletions, tmp-dir cleanup or root metadata; lightweight: no per-step
    # reads at construction, so one damaged step cannot make the whole directory unreadable.
    options = ocp.CheckpointManagerOptions(read_only=True, create=False, lightweight_initialize=True,
                                           enable_async_checkpointing=False)
    return ocp.CheckpointManager(
        directory, options=options,
        item_handlers={STATE_ITEM: ocp.StandardCheckpointHandler(),
                       INFO_ITEM: ocp.JsonCheckpointHandler()})


def list_checkpoints(run_dir: str | Path) -> list[int]:
    """Epochs with a complete (committed) checkpoint directory, ascending; [] if none. Not validated."""
    if not checkpoints_dir(run_dir).is_dir():
        return []
    with contextlib.closing(_reader(run_dir)) as manager:
        return sorted(manager.all_steps())


def _read_info(manager: ocp.CheckpointManager, step: int) -> dict:
    try:
        info = manager.restore(step, args=ocp.args.Composite(**{INFO_ITEM: ocp.args.JsonRestore()}))
        info = info[INFO_ITEM]
    except Exception as error:  # orbax/tensorstore/json raise many types for a damaged item
        raise _Damaged(f"its {INFO_ITEM} item cannot be read ({_short(error)})") from error
    if not isinstance(info, dict):
        raise _Damaged(f"its {INFO_ITEM} item is not a JSON object")
    return info


def _check_format(info: dict, where: str) -> None:
    version = info.get("format_version")
    if version != CHECKPOINT_FORMAT_VERSION:
        raise CheckpointError(f"{where}: checkpoint format version {version} is not supported (this "
                              f"mnist-jax reads version {CHECKPOINT_FORMAT_VERSION})")
    for key in ("epoch", "config", "history"):
        if key not in info:
            raise CheckpointError(f"{where}: checkpoint info has no {key!r} entry (format version "
                                  f"{version} requires it)")


def _stored_hidden_sizes(info: dict) -> tuple[int, ...] | None:
    sizes = (info.get("config") or {}).get("hidden_sizes")
    return tuple(sizes) if sizes is not None else None


def _check_config(info: dict, config: TrainConfig | None, where: str) -> None:
    if config is None:
        return
    stored = _stored_hidden_sizes(info)
    if stored is not None and stored != tuple(config.hidden_sizes):
        raise CheckpointError(f"{where} was made with hidden_sizes {stored}, this run uses "
                              f"{tuple(config.hidden_sizes)}")


def _check_shapes(manager: ocp.CheckpointManager, step: int, template: TrainState, info: dict,
                  where: str) -> None:
    """Compares stored array shapes/dtypes with the template's before any array is read."""
    try:
        metadata = manager.item_metadata(step)[STATE_ITEM]
        stored = {path: (tuple(m.shape), np.dtype(m.dtype)) for path, m in _flat(metadata).items()}
    except Exception as error:
        raise _Damaged(f"its item metadata cannot be read ({_short(error)})") from error
    expected = {path: (tuple(np.shape(x)), np.dtype(x.dtype)) for path, x in _flat(template).items()}
    made_with = (f" (made with hidden_sizes {_stored_hidden_sizes(info)}, "
                 f"num_classes {info.get('num_classes')})")
    missing, extra = sorted(set(expected) - set(stored)), sorted(set(stored) - set(expected))
    if missing or extra:
        raise CheckpointError(f"{where}{made_with} does not match the template's structure: "
                              f"missing {missing[:3]}, unexpected {extra[:3]}")
    for path in sorted(expected, key=lambda p: (not p.startswith("params/"), p)):
        if stored[path] != expected[path]:
            (s_shape, s_dtype), (t_shape, t_dtype) = stored[path], expected[path]
            raise CheckpointError(f"{where}{made_with} has {path} of shape {s_shape} {s_dtype}, the "
                                  f"template has {t_shape} {t_dtype}")


def _restore_state(manager: ocp.CheckpointManager, step: int, template: TrainState | None,
                   info: dict) -> Any:
    abstract = None if template is None else jax.tree.map(ocp.utils.to_shape_dtype_struct, template)
    try:
        restored = manager.restore(
            step, args=ocp.args.Composite(**{STATE_ITEM: ocp.args.StandardRestore(abstract)}))
        state = restored[STATE_ITEM]
        digest = state_digest(state)
    except Exception as error:
        raise _Damaged(f"its arrays cannot be read ({_short(error)})") from error
    if info.get("state_sha256") not in (None, digest):
        raise _Damaged("its arrays do not match the digest written with them")
    return state


def _load_step(manager, step: int, template: TrainState | None, config: TrainConfig | None,
               where: str) -> tuple[Any, dict]:
    info = _read_info(manager, step)
    _check_format(info, where)
    _check_config(info, config, where)
    if template is not None:
        _check_shapes(manager, step, template, info, where)
    return _restore_state(manager, step, template, info), info


def _short(error: BaseException) -> str:
    text = f"{type(error).__name__}: {error}".splitlines()[0] if str(error) else type(error).__name__
    return text if len(text) <= 200 else text[:197] + "..."


def _candidates(manager: ocp.CheckpointManager, which: str | int, where: str,
                skipped: list[str]) -> list[int]:
    steps = sorted(manager.all_steps())
    if not steps:
        raise CheckpointError(f"no checkpoints in {where}")
    if which == "latest":
        return steps[::-1]
    if which == "best":
        scored = []
        for step in steps:
            try:
                info = _read_info(manager, step)
            except _Damaged as damage:
                _warn_damaged(where, step, damage, skipped)
                continue
            value = info.get(BEST_METRIC)
            scored.append((float("-inf") if value is None else float(value), step))
        return [step for _, step in sorted(scored, reverse=True)]  # ties: the later epoch
    if isinstance(which, (int, np.integer)) and not isinstance(which, bool):
        if int(which) not in steps:
            raise CheckpointError(f"no checkpoint of epoch {int(which)} in {where}; available: {steps}")
        return [int(which)]
    raise CheckpointError(f"invalid checkpoint choice {which!r}: expected 'latest', 'best' or an epoch")


def _warn_damaged(where: str, step: int, damage: _Damaged, skipped: list[str]) -> None:
    skipped.append(f"epoch {step}: {damage}")
    warnings.warn(f"skipping damaged checkpoint of epoch {step} in {where}: {damage}", stacklevel=4)


def _find(run_dir: str | Path, which: str | int, template: TrainState | None,
          config: TrainConfig | None) -> tuple[Any, dict]:
    return _find_in(_existing_checkpoints_dir(run_dir), which, template, config)


def _find_in(directory: Path, which: str | int, template: Any, config: TrainConfig | None
             ) -> tuple[Any, dict]:
    where = str(directory)
    skipped: list[str] = []
    with contextlib.closing(_reader_at(directory)) as manager:
        for step in _candidates(manager, which, where, skipped):
            label = f"checkpoint epoch {step} in {where}"
            try:
                return _load_step(manager, step, template, config, label)
            except _Damaged as damage:
                if not isinstance(which, str):
                    raise CheckpointError(f"{label} is damaged: {damage}") from damage
                _warn_damaged(where, step, damage, skipped)
    raise CheckpointError(f"no intact checkpoint in {where}: " + "; ".join(skipped))


def restore_checkpoint(run_dir: str | Path, template_state: TrainState, which: str | int = "latest",
                       *, config: TrainConfig | None = None) -> tuple[TrainState, dict]:
    """Restores a checkpoint into `template_state`'s structure, bitwise; returns (state, info).

    `which`: "latest" (what resume uses), "best" (highest val_accuracy among the kept checkpoints) or
    an epoch number. For "latest"/"best" a damaged checkpoint is skipped with a warning and the next
    one is tried; for an epoch number it is a CheckpointError. Nothing on disk is modified.

    `template_state` (e.g. `create_train_state(config, spec)`) gives the structure, shapes, dtypes
    and devices; its values are not used. `config`, if given, is the run's expected configuration:
    a checkpoint made with other hidden sizes is refused before any array is read. `info` is the
    checkpoint's JSON item: format_version, epoch, step, config (a dict), num_classes, history,
    val_accuracy.
    """
    state, info = _find(run_dir, which, template_state, config)
    return state, info


def restore_checkpoint_in(directory: str | Path, template_state: Any, which: str | int = "latest",
                          *, config: TrainConfig | None = None) -> tuple[Any, dict]:
    """`restore_checkpoint` for a checkpoint folder other than RUN/checkpoints (e.g. a sweep
    program's): the same damaged-checkpoint fallback, digest check and compatibility errors.

    `template_state` may be any pytree of arrays or `jax.ShapeDtypeStruct`s (with shardings, to
    restore sharded arrays). `info` must have the format version, epoch, config and history.
    """
    return _find_in(Path(directory).resolve(), which, template_state, config)


def list_checkpoints_in(directory: str | Path) -> list[int]:
    """Steps with a complete checkpoint in a checkpoint folder, ascending; [] if there is none."""
    directory = Path(directory).resolve()
    if not directory.is_dir():
        return []
    with contextlib.closing(_reader_at(directory)) as manager:
        return sorted(manager.all_steps())


def latest_intact_epoch(run_dir: str | Path, template_state: TrainState | None = None,
                        *, config: TrainConfig | None = None) -> int | None:
    """The epoch of the newest checkpoint that reads back intact (warning about newer damaged ones).

    None if the run has no checkpoints at all (a fresh run); CheckpointError if there are some but none
    is intact or they are incompatible. With a template, shapes are checked as by `restore_checkpoint`.
    """
    if not list_checkpoints(run_dir):
        return None
    _, info = _find(run_dir, "latest", template_state, config)
    return int(info["epoch"])


@dataclasses.dataclass
class LoadedRun:
    """A trained run for notebooks: its configuration, parameters, full state, history and epoch."""

    run_dir: Path
    config: TrainConfig
    params: Any
    state: TrainState
    history: list[dict]
    epoch: int
    info: dict

    @property
    def spec(self) -> TrainSpec:
        return TrainSpec.from_config(self.config, num_classes=int(self.info.get("num_classes") or 10))


def load_run(run_dir: str | Path, which: str | int = "best") -> LoadedRun:
    """Loads a run's best (or latest, or given-epoch) checkpoint, building the template itself.

    The configuration is RUN/config.json if present (a run record whose "config" entry is a
    `TrainConfig.to_dict()`, or that dict itself), else the one stored
    in the checkpoint; num_classes and input size come from the checkpoint.
    """
    run_dir = Path(run_dir).resolve()
    where = str(checkpoints_dir(run_dir))
    with contextlib.closing(_reader(run_dir)) as manager:
        info, skipped = None, []
        for step in _candidates(manager, which, where, skipped):
            try:
                info = _read_info(manager, step)
                _check_format(info, f"checkpoint epoch {step} in {where}")
                break
            except _Damaged as damage:
                _warn_damaged(where, step, damage, skipped)
    if info is None:
        raise CheckpointError(f"no readable checkpoint in {where}: " + "; ".join(skipped))
    config_file = run_dir / CONFIG_FILENAME
    try:
        if config_file.is_file():
            record = json.loads(config_file.read_text())
            # The experiments write a run record with the configuration under "config".
            config = TrainConfig.from_dict(record["config"] if "config" in record else record)
        else:
            config = TrainConfig.from_dict(info["config"])
    except (ConfigError, ValueError, TypeError, KeyError) as error:
        source = config_file if config_file.is_file() else f"the checkpoint info in {where}"
        raise CheckpointError(f"cannot read the run configuration from {source}: {error}") from error
    spec = TrainSpec.from_config(config, num_classes=int(info.get("num_classes") or 10))
    template = create_train_state(config, spec, input_size=int(info.get("input_size") or 784))
    state, info = restore_checkpoint(run_dir, template, which, config=config)
    return LoadedRun(run_dir=run_dir, config=config, params=state.params, state=state,
                     history=list(info["history"]), epoch=int(info["epoch"]), info=info)
