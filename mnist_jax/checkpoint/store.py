"""One folder of checkpoints, keyed by its directory: save a step, list steps, restore one.

A step is one orbax `CheckpointManager` step with two items: `state` (a pytree of arrays) and
`info` (JSON, with the format version and the arrays' SHA-256). Orbax writes a step into a
temporary folder and renames it when complete, so a crash mid-save never touches an earlier step.

What the store guarantees, for runs and sweeps alike:
- `save` copies the arrays to owned host memory before returning (one process; several save
  synchronously), so the caller may donate the device buffers while orbax writes in the background
  (on CPU orbax's own copy is a view of them);
- "latest" and "best" skip a damaged step (unreadable info, metadata or arrays, a digest mismatch)
  with one warning and try the next; a named step does not; an incompatible step (format version,
  array shapes, the caller's `check`) is a CheckpointError, since falling back would restore
  another run;
- reading changes nothing on disk, and writing deletes nothing but what retention drops (the latest
  `keep_latest` and best `keep_best` by `val_accuracy` stay): the steps a resumed run redoes, and
  steps whose orbax metrics file is unreadable (orbax cannot open such a folder), are moved to
  `<directory>_set_aside/`;
- an unwritable folder fails before anything trains, and a failed background save is one line.

Several processes (`jax.distributed`): every process calls `save` and `restore` with the global,
member-sharded arrays; orbax writes each process's own shards (no process gathers the others'),
process 0 writes the info item and moves folders, and the others wait for it. The digest is then
one per process, over the shards it holds, and is checked when the step is restored on the same
layout (on another, it is skipped: the shards differ). Saves are synchronous: every process has its
shards on disk before training goes on. The folder must be one file system shared by every process.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import jax
import numpy as np
import orbax.checkpoint as ocp
from orbax.checkpoint import checkpoint_managers as policies

from mnist_jax.checkpoint.orbax_quirks import (
    silence_reports_into_closed_loops,
    write_failure_reason,
)
from mnist_jax.distributed import (
    all_agree,
    all_digests,
    barrier,
    flat,
    layout,
    local_digest,
    several,
)
from mnist_jax.errors import CheckpointError, OutputError, one_line

FORMAT_VERSION = 1
STATE_ITEM, INFO_ITEM = "state", "info"  # orbax reserves "metrics" for its own item
BEST_METRIC = "val_accuracy"
SAVE_TIMEOUT_SECONDS = 300  # a background save still running then is an error, not a hang


class Damaged(Exception):
    """A step that cannot be read back intact."""


def state_digest(tree: Any) -> str:
    """SHA-256 over every array's path, dtype, shape and bytes: equal iff bitwise equal."""
    digest = hashlib.sha256()
    for path, leaf in sorted(flat(tree).items()):
        array = np.asarray(jax.device_get(leaf))  # not ascontiguousarray: it makes scalars (1,)
        digest.update(f"{path}|{array.dtype.str}|{array.shape}|".encode())
        digest.update(np.ascontiguousarray(array).tobytes())
    return digest.hexdigest()


class CheckpointStore:
    """The checkpoints in `directory`. As a context manager, leaving it waits for pending saves.

    Reading opens the folder read-only for each call; `keep_latest`, `keep_best` and
    `async_save` matter only for saving.
    """

    def __init__(
        self,
        directory: str | Path,
        *,
        keep_latest: int = 3,
        keep_best: int = 0,
        async_save: bool = True,
    ) -> None:
        self.directory = Path(directory).resolve()
        self.set_aside_root = self.directory.with_name(self.directory.name + "_set_aside")
        self.keep_latest, self.keep_best, self.async_save = keep_latest, keep_best, async_save
        self._writer: ocp.CheckpointManager | None = None

    @contextlib.contextmanager
    def _reader(self) -> Iterator[ocp.CheckpointManager]:
        silence_reports_into_closed_loops()
        if not self.directory.is_dir():
            raise CheckpointError(f"no checkpoints: {self.directory} does not exist")
        handlers = {
            STATE_ITEM: ocp.StandardCheckpointHandler(),
            INFO_ITEM: ocp.JsonCheckpointHandler(),
        }
        # Lightweight: no per-step reads when opening, so one damaged step cannot block the rest.
        with _absl_quiet():  # orbax warns, each time, that a read-only manager saves nothing
            options = ocp.CheckpointManagerOptions(
                read_only=True,
                create=False,
                lightweight_initialize=True,
                enable_async_checkpointing=False,
            )
            manager = ocp.CheckpointManager(self.directory, options=options, item_handlers=handlers)
        with contextlib.closing(manager):
            yield manager

    def steps(self) -> list[int]:
        """Steps with a complete checkpoint, ascending; [] if there is none."""
        if not self.directory.is_dir():
            return []
        with self._reader() as manager:
            return sorted(manager.all_steps())

    def restore(
        self,
        which: str | int = "latest",
        template: Any = None,
        *,
        check: Callable[[dict, str], None] | None = None,
    ) -> tuple[Any, dict]:
        """(arrays, info) of step "latest", "best" (highest `val_accuracy`) or a number.

        `template` (arrays or `jax.ShapeDtypeStruct`s, with shardings for sharded arrays) gives
        structure, shapes and dtypes; a callable builds it from the step's info; None restores
        nested dicts. `check(info, where)` may refuse a step before any array is read.
        """
        # Warned of once a fallback succeeds, else named in the error.
        skipped: list[tuple[int, Damaged]] = []
        with self._reader() as manager:
            for step in self._candidates(manager, which, skipped):
                where = f"checkpoint epoch {step} in {self.directory}"
                try:
                    restored = self._load(manager, step, template, check, where)
                except Damaged as damage:
                    if not isinstance(which, str):
                        raise CheckpointError(f"{where} is damaged: {damage}") from None
                    skipped.append((step, damage))
                    continue
                _same_step_everywhere(step, where)
                for damaged, damage in skipped:
                    warnings.warn(
                        f"skipping damaged checkpoint of epoch {damaged} in {self.directory}: "
                        f"{damage}",
                        stacklevel=2,
                    )
                return restored
        found = "; ".join(f"epoch {damaged}: {damage}" for damaged, damage in skipped)
        raise CheckpointError(f"no intact checkpoint in {self.directory}: {found}")

    def _candidates(self, manager, which: str | int, skipped: list) -> list[int]:
        steps = sorted(manager.all_steps())
        # A step's folder replaced by a file: orbax lists only folders, so it would vanish unsaid.
        for entry in self.directory.iterdir():
            if entry.name.isdigit() and not entry.is_dir() and int(entry.name) not in steps:
                skipped.append((int(entry.name), Damaged("it is a file, not a checkpoint folder")))
        if not steps:
            raise CheckpointError(f"no checkpoints in {self.directory}")
        if which == "latest":
            return steps[::-1]
        if which == "best":
            scored = []
            for step in steps:
                try:
                    value = _read_info(manager, step).get(BEST_METRIC)
                except Damaged as damage:
                    skipped.append((step, damage))
                    continue
                scored.append((float("-inf") if value is None else float(value), step))
            return [step for _, step in sorted(scored, reverse=True)]  # ties: the later step
        if isinstance(which, int | np.integer) and not isinstance(which, bool):
            if int(which) not in steps:
                raise CheckpointError(
                    f"no checkpoint of epoch {which} in {self.directory}; available: {steps}"
                )
            return [int(which)]
        raise CheckpointError(f"invalid checkpoint {which!r}: expected latest, best or an epoch")

    def _load(self, manager, step: int, template, check, where: str) -> tuple[Any, dict]:
        info = _read_info(manager, step)
        if info.get("format_version") != FORMAT_VERSION:
            raise CheckpointError(
                f"{where}: checkpoint format version {info.get('format_version')} is not "
                f"supported (this mnist-jax reads version {FORMAT_VERSION})"
            )
        missing = [key for key in ("epoch", "config", "history") if key not in info]
        if missing:
            raise CheckpointError(f"{where}: checkpoint info has no {missing[0]!r} entry")
        if check is not None:
            check(info, where)
        template = template(info) if callable(template) else template
        abstract = None
        if template is not None:
            _check_shapes(manager, step, template, info, where)
            abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, template)
        failure = None
        try:
            restore = ocp.args.Composite(**{STATE_ITEM: ocp.args.StandardRestore(abstract)})
            tree = manager.restore(step, args=restore)[STATE_ITEM]
        except Exception as error:  # orbax and tensorstore raise many types for damaged files
            failure = Damaged(f"its arrays cannot be read ({one_line(error)})")
        else:
            if not _digest_matches(tree, info):
                failure = Damaged("its arrays do not match the digest written with them")
        if not all_agree(failure is None):  # every process falls back, or none does
            raise failure or Damaged("another process could not read its part of the arrays")
        return tree, info

    def save(self, step: int, tree: Any, info: dict, *, metric: float | None = None) -> None:
        """Saves `tree` (copied to host memory before returning) and `info` as `step`, first
        setting aside the checkpoints of `step` and later (an abandoned continuation). `metric`
        ranks the step for `keep_best` and "best". With several processes every process calls it
        with the same global arrays and info; it returns once every process's shards are saved."""
        info = {**info, "format_version": FORMAT_VERSION, BEST_METRIC: metric}
        if several():
            info.update(shard_sha256=all_digests(tree), layout=layout())
        else:
            tree = jax.tree.map(lambda x: np.array(x, copy=True), tree)  # owned by the host
            info["state_sha256"] = state_digest(tree)
        writer = self.open_for_writing()
        later = [s for s in writer.all_steps() if s >= step]
        if later:
            self.wait()
            moved = self._move_aside(later)
            writer.reload()
            warnings.warn(
                f"{self.directory} continues from before epoch(s) {later}; their "
                f"checkpoints were moved to {moved}",
                stacklevel=2,
            )
        items = {STATE_ITEM: ocp.args.StandardSave(tree), INFO_ITEM: ocp.args.JsonSave(info)}
        metrics = None if metric is None else {BEST_METRIC: metric}
        with self._write_errors():
            writer.save(step, args=ocp.args.Composite(**items), metrics=metrics, force=True)
        if several():
            self.wait()

    def open_for_writing(self) -> ocp.CheckpointManager:
        """Opens the folder for saving now (`save` would): an unwritable folder fails here, in one
        line, where orbax's background thread would fail and leave its caller waiting."""
        if self._writer is not None:
            return self._writer
        silence_reports_into_closed_loops()
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            probe = self.directory / f".write-probe-{jax.process_index()}"
            probe.write_bytes(b"")
            probe.unlink()
        except OSError as error:
            raise OutputError(
                f"cannot write checkpoints to {self.directory}: {error.strerror}"
            ) from None
        self._set_aside_unreadable_metrics()

        def metric_of(metrics: dict) -> float:
            return float(metrics[BEST_METRIC])

        keep = [policies.LatestN(n=self.keep_latest)]
        if self.keep_best:
            keep.append(
                policies.BestN(
                    get_metric_fn=metric_of,
                    reverse=False,
                    n=self.keep_best,
                    keep_checkpoints_without_metrics=False,
                )
            )
        options = ocp.CheckpointManagerOptions(
            preservation_policy=policies.AnyPreservationPolicy(keep),
            best_fn=metric_of,
            best_mode="max",  # without best_fn orbax keeps metrics in memory
            enable_async_checkpointing=self.async_save and not several(),
            async_options=ocp.AsyncOptions(timeout_secs=SAVE_TIMEOUT_SECONDS),
            create=True,
        )
        try:
            self._writer = ocp.CheckpointManager(
                self.directory, options=options, item_names=(STATE_ITEM, INFO_ITEM)
            )
        except Exception as error:  # orbax reads every step's metrics here
            raise CheckpointError(
                f"cannot open {self.directory} for writing: {one_line(error)}"
            ) from None
        return self._writer

    def _set_aside_unreadable_metrics(self) -> None:
        unreadable = []
        for step_dir in self.directory.iterdir():
            metrics_file = step_dir / "metrics" / "metrics"
            if step_dir.name.isdigit() and metrics_file.is_file():
                try:
                    float(json.loads(metrics_file.read_text())[BEST_METRIC])
                except (ValueError, KeyError, TypeError):
                    unreadable.append(int(step_dir.name))
        if unreadable:
            moved = self._move_aside(unreadable)
            warnings.warn(
                f"checkpoint(s) of epoch(s) {sorted(unreadable)} in {self.directory} "
                f"have an unreadable metrics file; moved to {moved}",
                stacklevel=4,
            )

    def _move_aside(self, steps: list[int]) -> str:
        """Moves steps to the set-aside folder: process 0 moves, every process (each finding the
        same steps in the shared folder) waits for it here."""
        moved = []
        if jax.process_index() == 0:
            self.set_aside_root.mkdir(exist_ok=True)
            for step in sorted(steps):
                target, n = self.set_aside_root / str(step), 1
                while target.exists():
                    target, n = self.set_aside_root / f"{step}-{n}", n + 1
                (self.directory / str(step)).rename(target)
                moved.append(f"{step} -> {target.name}")
        barrier("moved aside")
        return f"{self.set_aside_root} ({', '.join(moved) or 'moved by process 0'})"

    @contextlib.contextmanager
    def _write_errors(self) -> Iterator[None]:
        """A failed write (disk full, folder gone or read-only) as one line naming the folder; the
        earlier checkpoints are intact, so the run resumes once the cause is fixed."""
        try:
            yield
        except Exception as error:
            raise OutputError(
                f"cannot write a checkpoint to {self.directory}: {write_failure_reason(error)}"
            ) from error

    def wait(self) -> None:
        """Blocks until pending saves are on disk (at most `SAVE_TIMEOUT_SECONDS`)."""
        if self._writer is not None:
            with self._write_errors():
                self._writer.wait_until_finished()

    def close(self) -> None:
        if self._writer is not None:
            try:
                self.wait()
            finally:
                self._writer.close()
                self._writer = None

    def __enter__(self) -> CheckpointStore:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()


def _same_step_everywhere(step: int, where: str) -> None:
    """With several processes: every process restored this step (processes that saw a step
    differently would otherwise continue from a state mixed of two epochs)."""
    if not several():
        return
    from jax.experimental import multihost_utils

    steps = np.asarray(multihost_utils.process_allgather(np.asarray([step], np.int64))).ravel()
    if len(set(steps.tolist())) > 1:
        raise CheckpointError(
            f"{where}: the processes restored different epochs {sorted(set(steps.tolist()))}; "
            "is the checkpoint folder the same file system on every host?"
        )


def _digest_matches(tree: Any, info: dict) -> bool:
    """The arrays against the digest saved with them: the whole state's (one process), or this
    process's shards' when the step was saved on this layout (on another, the shards differ)."""
    if "shard_sha256" in info:
        if info.get("layout") != layout():
            return True
        return info["shard_sha256"][jax.process_index()] == local_digest(tree)
    if not all(getattr(x, "is_fully_addressable", True) for x in jax.tree.leaves(tree)):
        return True  # a one-process step restored across processes: its digest is of the whole
    return info.get("state_sha256") in (None, state_digest(tree))


def _read_info(manager, step: int) -> dict:
    try:
        args = ocp.args.Composite(**{INFO_ITEM: ocp.args.JsonRestore()})
        info = manager.restore(step, args=args)[INFO_ITEM]
    except Exception as error:  # orbax, tensorstore and json raise many types for a damaged item
        raise Damaged(f"its {INFO_ITEM} item cannot be read ({one_line(error)})") from error
    if not isinstance(info, dict):
        raise Damaged(f"its {INFO_ITEM} item is not a JSON object")
    return info


def _check_shapes(manager, step: int, template: Any, info: dict, where: str) -> None:
    """Stored shapes and dtypes against the template's, before any array is read. Missing or
    unreadable metadata is damage; a different structure or shape is an incompatible run."""
    try:
        metadata = manager.item_metadata(step)[STATE_ITEM]
        stored = {p: (tuple(m.shape), np.dtype(m.dtype)) for p, m in flat(metadata).items()}
    except Exception as error:
        raise Damaged(f"its array metadata cannot be read ({one_line(error)})") from error
    if not stored:
        raise Damaged("its array metadata is missing")
    expected = {p: (tuple(np.shape(x)), np.dtype(x.dtype)) for p, x in flat(template).items()}
    model = info.get("model") if isinstance(info.get("model"), dict) else None
    if model is not None:
        where += f" (made with model {model.get('name')} {model.get('settings') or {}})"
    missing, extra = sorted(set(expected) - set(stored)), sorted(set(stored) - set(expected))
    if missing or extra:
        raise CheckpointError(
            f"{where} does not match the template's structure: missing "
            f"{missing[:3]}, unexpected {extra[:3]}"
        )
    for path in sorted(expected, key=lambda p: (not p.startswith("params/"), p)):
        if stored[path] != expected[path]:
            (s_shape, s_dtype), (t_shape, t_dtype) = stored[path], expected[path]
            raise CheckpointError(
                f"{where} has {path} of shape {s_shape} {s_dtype}, the template "
                f"has {t_shape} {t_dtype}"
            )


@contextlib.contextmanager
def _absl_quiet():
    """absl's (orbax's) routine warnings left out for the block; errors still come through."""
    logger = logging.getLogger("absl")
    level = logger.level
    logger.setLevel(max(level, logging.ERROR))
    try:
        yield
    finally:
        logger.setLevel(level)
