"""A run's checkpoints: `RUN/checkpoints/<epoch>/`, a `CheckpointStore` of `TrainState`s.

A run says only what it saves: the state, and an info item with the configuration, the number of
classes and input size (so `load_run` rebuilds the template from the checkpoint alone) and the
history so far. Everything else (digests, fallback past damage, retention, setting aside) is the
store's.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

from mnist_jax.checkpoint.store import BEST_METRIC, CheckpointStore
from mnist_jax.config import TrainConfig
from mnist_jax.errors import CheckpointError, ConfigError
from mnist_jax.train import TrainSpec, TrainState, create_train_state

CHECKPOINTS_DIRNAME = "checkpoints"
CONFIG_FILENAME = "config.json"


def checkpoints_dir(run_dir: str | Path) -> Path:
    return Path(run_dir).resolve() / CHECKPOINTS_DIRNAME


def _check_hidden_sizes(config: TrainConfig | None):
    """A store `check` refusing a checkpoint made with other hidden sizes than `config`'s."""

    def check(info: dict, where: str) -> None:
        stored = (info.get("config") or {}).get("hidden_sizes")
        if config is not None and stored is not None and tuple(stored) != config.hidden_sizes:
            raise CheckpointError(
                f"{where} was made with hidden_sizes {tuple(stored)}, this run uses "
                f"{config.hidden_sizes}"
            )

    return check


class RunCheckpointer:
    """A `fit` callback saving the run's state every `save_every` epochs and after the last.

    Keeps the latest `keep_latest` checkpoints and the best `keep_best` by validation accuracy.
    With `async_save` the files are written while the next epoch trains (the state is copied to
    host memory first, so `fit` may donate its buffers). Use it as a context manager: leaving it
    waits for the pending saves.
    """

    def __init__(
        self,
        run_dir: str | Path,
        config: TrainConfig,
        *,
        num_classes: int = 10,
        input_size: int = 784,
        save_every: int = 1,
        keep_latest: int = 3,
        keep_best: int = 1,
        async_save: bool = True,
    ) -> None:
        for name, value, low in (
            ("save_every", save_every, 1),
            ("keep_latest", keep_latest, 1),
            ("keep_best", keep_best, 0),
        ):
            if not (isinstance(value, int) and value >= low):
                raise ConfigError(f"invalid {name}={value!r}: expected an integer >= {low}")
        self.run_dir = Path(run_dir).resolve()
        self.config, self.save_every = config, save_every
        self.num_classes, self.input_size = num_classes, input_size
        self.store = CheckpointStore(
            checkpoints_dir(run_dir),
            keep_latest=keep_latest,
            keep_best=keep_best,
            async_save=async_save,
        )
        self.store.open_for_writing()

    def __call__(self, state: TrainState, record: dict, history: list) -> None:
        epoch = int(record["epoch"])
        if epoch % self.save_every and epoch != self.config.epochs:
            return
        info = {
            "epoch": epoch,
            "step": int(state.step),
            "config": self.config.to_dict(),
            "num_classes": self.num_classes,
            "input_size": self.input_size,
            "history": [dict(r) for r in history],
        }
        metric = record.get(BEST_METRIC)
        self.store.save(epoch, state, info, metric=None if metric is None else float(metric))

    def close(self) -> None:
        self.store.close()

    def __enter__(self) -> RunCheckpointer:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()


def list_checkpoints(run_dir: str | Path) -> list[int]:
    """Epochs with a complete checkpoint, ascending; [] if none (not validated)."""
    return CheckpointStore(checkpoints_dir(run_dir)).steps()


def restore_checkpoint(
    run_dir: str | Path,
    template_state: TrainState,
    which: str | int = "latest",
    *,
    config: TrainConfig | None = None,
) -> tuple[TrainState, dict]:
    """Restores a checkpoint into `template_state`'s structure, bitwise; returns (state, info).

    `which`: "latest" (what resume uses), "best" (highest val_accuracy among the kept checkpoints)
    or an epoch. For "latest"/"best" a damaged checkpoint is skipped with a warning and the next one
    is tried; for an epoch it is a CheckpointError. Nothing on disk is modified. `config`, if given,
    refuses a checkpoint made with other hidden sizes before any array is read. `info` holds
    format_version, epoch, step, config (a dict), num_classes, input_size, history, val_accuracy.
    """
    store = CheckpointStore(checkpoints_dir(run_dir))
    return store.restore(which, template_state, check=_check_hidden_sizes(config))


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
        return TrainSpec.from_config(
            self.config, num_classes=int(self.info.get("num_classes") or 10)
        )


def _run_config(run_dir: Path) -> TrainConfig | None:
    """RUN/config.json's configuration (a run record with a "config" entry, or that dict itself)."""
    config_file = run_dir / CONFIG_FILENAME
    if not config_file.is_file():
        return None
    try:
        record = json.loads(config_file.read_text())
        return TrainConfig.from_dict(record.get("config", record))
    except (ConfigError, ValueError, TypeError, AttributeError) as error:
        raise CheckpointError(
            f"cannot read the run configuration from {config_file}: {error}"
        ) from None


def load_run(run_dir: str | Path, which: str | int = "best") -> LoadedRun:
    """A run's best (or latest, or given-epoch) checkpoint, with the template built from the run.

    The configuration is RUN/config.json's, else the checkpoint's own; the number of classes and
    the input size come from the checkpoint.
    """
    run_dir = Path(run_dir).resolve()
    known = _run_config(run_dir)
    configs: dict[str, TrainConfig] = {}

    def template(info: dict) -> TrainState:
        try:
            config = known or TrainConfig.from_dict(info["config"])
        except (ConfigError, TypeError) as error:
            raise CheckpointError(f"the checkpoint's configuration is invalid: {error}") from None
        configs["config"] = config
        spec = TrainSpec.from_config(config, num_classes=int(info.get("num_classes") or 10))
        return create_train_state(config, spec, input_size=int(info.get("input_size") or 784))

    store = CheckpointStore(checkpoints_dir(run_dir))
    state, info = store.restore(which, template, check=_check_hidden_sizes(known))
    return LoadedRun(
        run_dir=run_dir,
        config=configs["config"],
        params=state.params,
        state=state,
        history=list(info["history"]),
        epoch=int(info["epoch"]),
        info=info,
    )
