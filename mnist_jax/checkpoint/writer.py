"""The one checkpoint writer of runs and sweeps: a `run_sweep` callback (`Checkpointer`), and its
form for `fit`'s callbacks (`RunCheckpointer`).

A sweep keeps one store per program, `SWEEP/checkpoints/program-<i>/<epoch>/`: the stacked state
(every padded row) and an info item with the program's members and one history each. A run is a
sweep of one member that keeps the run directory's layout, `RUN/checkpoints/<epoch>/`: the
member's own state and history, as `restore_checkpoint` and `load_run` read them. Both infos hold
the configuration, the model (its name and static settings), the number of classes and the image
shape, so the template is rebuilt from the directory alone. Everything else (digests, fallback
past damage, retention, setting aside) is the store's.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import jax
import numpy as np

from mnist_jax.checkpoint.store import BEST_METRIC, CheckpointStore
from mnist_jax.config import TrainConfig
from mnist_jax.distributed import gather_to_host
from mnist_jax.epochs import diverged
from mnist_jax.errors import ConfigError
from mnist_jax.models import check_model
from mnist_jax.train import TrainSpec, TrainState

CHECKPOINTS_DIRNAME = "checkpoints"

__all__ = ["CHECKPOINTS_DIRNAME", "Checkpointer", "RunCheckpointer", "program_store"]


def program_store(sweep_dir: str | Path, index: int, **options) -> CheckpointStore:
    return CheckpointStore(Path(sweep_dir) / CHECKPOINTS_DIRNAME / f"program-{index}", **options)


def _mean_val_accuracy(histories: list[list[dict]]) -> float | None:
    values = [h[-1][BEST_METRIC] for h in histories if h and not diverged(h[-1])]
    return float(np.mean(values)) if values else None


class Checkpointer:
    """A `run_sweep` callback saving each program's state every `save_every` epochs and after the
    last, keeping the latest `keep_latest` and the best `keep_best` by validation accuracy (a
    program's: its members' mean). `specs(program)` is a program's spec. `run=True`: a run's
    layout, for a program of one member. With `async_save` the files are written while the next
    epoch trains (from a host copy). Leaving it as a context manager waits for the writes."""

    def __init__(
        self,
        directory: str | Path,
        config: TrainConfig,
        *,
        specs: Callable[[Any], TrainSpec] | None = None,
        num_classes: int = 10,
        save_every: int = 1,
        keep_latest: int = 3,
        keep_best: int = 0,
        async_save: bool = True,
        run: bool = False,
    ) -> None:
        for name, value, low in (
            ("save_every", save_every, 1),
            ("keep_latest", keep_latest, 1),
            ("keep_best", keep_best, 0),
        ):
            if not (isinstance(value, int) and not isinstance(value, bool) and value >= low):
                raise ConfigError(f"invalid {name}={value!r}: expected an integer >= {low}")
        self.directory, self.config, self.save_every = Path(directory), config, save_every
        self.num_classes, self.run = num_classes, run
        self.specs = specs or (lambda program: program.spec(config, num_classes))
        self._options = dict(keep_latest=keep_latest, keep_best=keep_best, async_save=async_save)
        self._program: int | None = None
        self._store: CheckpointStore | None = None
        self.saved: list[tuple[int, int]] = []  # (program, epoch) of each save
        if run:  # an unwritable folder is one line before anything trains
            self._open(0)

    def _open(self, program: int) -> CheckpointStore:
        if self._program != program or self._store is None:
            self.close()
            if self.run:
                self._store = CheckpointStore(self.directory / CHECKPOINTS_DIRNAME, **self._options)
            else:
                self._store = program_store(self.directory, program, **self._options)
            self._store.open_for_writing()
            self._program = program
        return self._store

    def _info(self, spec: TrainSpec, state: TrainState, epoch: int) -> dict:
        return {
            "epoch": epoch,
            "config": self.config.to_dict(),
            "model": spec.model.describe(),
            "tracks_best": True,
            "hyper": sorted(state.hyper),
            "num_classes": self.num_classes,
            "image_shape": list(spec.image_shape),
        }

    def _due(self, epoch: int) -> bool:
        return not epoch % self.save_every or epoch == self.config.epochs

    def __call__(self, program, state: TrainState, records: list, histories: list) -> None:
        epoch = max(len(h) for h in histories)
        if not self._due(epoch):
            return
        if self.run:  # the one member's own state, as a run's checkpoint holds it
            self.save_member(program, jax.tree.map(lambda x: x[0], state), histories[0])
            return
        info = {
            "kind": "sweep-program",
            **self._info(self.specs(program), state, epoch),
            "program": program.index,
            "num_padded": program.num_padded,
            "members": [m.to_dict() for m in program.members],
            "history": [[dict(r) for r in h] for h in histories],
        }
        # One process saves a host copy; several save the global arrays, each writing its shards.
        tree = gather_to_host(state) if jax.process_count() == 1 else state
        self._open(program.index).save(epoch, tree, info, metric=_mean_val_accuracy(histories))
        self.saved.append((program.index, epoch))

    def save_member(self, program, state: TrainState, history: list) -> None:
        """A run's checkpoint of its one member: `state` unstacked, its `history`."""
        epoch = int(history[-1]["epoch"])
        info = {
            **self._info(self.specs(program), state, epoch),
            "step": int(state.step),
            "history": [dict(r) for r in history],
        }
        metric = history[-1].get(BEST_METRIC)
        index = getattr(program, "index", 0)
        self._open(index).save(epoch, state, info, metric=None if metric is None else float(metric))
        self.saved.append((index, epoch))

    def close(self) -> None:
        if self._store is not None:
            self._store.close()
            self._program, self._store = None, None

    def __enter__(self) -> Checkpointer:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()


class RunCheckpointer(Checkpointer):
    """`Checkpointer` in a run's layout as a `fit` callback, `callback(state, record, history)`:
    `RUN/checkpoints/`, keeping the latest `keep_latest` and the best `keep_best`. The model is
    checked, and the folder opened, before anything trains."""

    def __init__(
        self,
        run_dir: str | Path,
        config: TrainConfig,
        *,
        spec: TrainSpec | None = None,
        num_classes: int = 10,
        save_every: int = 1,
        keep_latest: int = 3,
        keep_best: int = 1,
        async_save: bool = True,
    ) -> None:
        spec = spec or TrainSpec.from_config(config, num_classes)
        # Before the folder exists: a model `fit` would refuse leaves nothing behind.
        check_model(spec.model, spec.example_shape, num_classes)
        super().__init__(
            Path(run_dir).resolve(),
            config,
            specs=lambda _: spec,
            num_classes=num_classes,
            save_every=save_every,
            keep_latest=keep_latest,
            keep_best=keep_best,
            async_save=async_save,
            run=True,
        )

    def __call__(self, state: TrainState, record: dict, history: list) -> None:  # type: ignore[override]
        if self._due(int(record["epoch"])):
            self.save_member(None, state, history)
