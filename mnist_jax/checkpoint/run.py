"""Loading a saved run for notebooks and evaluation: `load_run` builds the template from what was saved."""

from __future__ import annotations

import contextlib
import dataclasses
import json
from pathlib import Path
from typing import Any

from mnist_jax.checkpoint.layout import CONFIG_FILENAME, checkpoints_dir
from mnist_jax.checkpoint.reader import _candidates, _reader, _warn_damaged, restore_checkpoint
from mnist_jax.checkpoint.steps import _check_format, _Damaged, _read_info
from mnist_jax.config import TrainConfig
from mnist_jax.errors import CheckpointError, ConfigError
from mnist_jax.train import TrainSpec, TrainState, create_train_state

__all__ = ["LoadedRun", "load_run"]


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
        raise CheckpointError(
            f"cannot read the run configuration from {source}: {error}"
        ) from error
    spec = TrainSpec.from_config(config, num_classes=int(info.get("num_classes") or 10))
    template = create_train_state(config, spec, input_size=int(info.get("input_size") or 784))
    state, info = restore_checkpoint(run_dir, template, which, config=config)
    return LoadedRun(
        run_dir=run_dir,
        config=config,
        params=state.params,
        state=state,
        history=list(info["history"]),
        epoch=int(info["epoch"]),
        info=info,
    )
