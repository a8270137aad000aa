"""A run's checkpoints read back: `RUN/checkpoints/<epoch>/`, as `writer.Checkpointer` writes
them (the state, and an info item with the configuration, the model, the number of classes, the
image shape and the history), restored for a resume (`restore_checkpoint`) or a notebook
(`load_run`, which rebuilds the template from the run directory alone).
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jax
import numpy as np

from mnist_jax.checkpoint.store import CheckpointStore
from mnist_jax.checkpoint.writer import CHECKPOINTS_DIRNAME
from mnist_jax.config import FIELDS, TrainConfig, is_model_name
from mnist_jax.errors import CheckpointError, ConfigError
from mnist_jax.models import Model, describe_text, mlp
from mnist_jax.models.imported import model_from_record
from mnist_jax.rundir import CONFIG_FILE
from mnist_jax.train import LEGACY_FIELDS, TrainSpec, TrainState, create_train_state, from_legacy


def checkpoints_dir(run_dir: str | Path) -> Path:
    return Path(run_dir).resolve() / CHECKPOINTS_DIRNAME


def recorded_model(info: dict) -> dict:
    """The model description a checkpoint's info records; checkpoints from before models were
    recorded hold the notebook's MLP with their configuration's hidden sizes."""
    if isinstance(info.get("model"), dict):
        return info["model"]
    config = info.get("config") or {}
    sizes = config.get("hidden_sizes") or (128, 128)
    return mlp(tuple(sizes), int(info.get("num_classes") or 10)).describe()


def model_check(model: Model | None):
    """A store `check` refusing a checkpoint of another model (by name and static settings)."""

    def check(info: dict, where: str) -> None:
        if model is None:
            return
        stored, expected = recorded_model(info), model.describe()
        if stored != expected:
            raise CheckpointError(
                f"{where} holds model {describe_text(stored)}; this run's model is "
                f"{describe_text(expected)}"
            )

    return check


def _refuse_other_config(config: TrainConfig, info: dict, where: str) -> None:
    """Refuses a checkpoint trained with another configuration than `config` (the run's
    config.json) in any field that defines the run (seed, learning rate, dataset, epochs...): a
    config.json or a checkpoint copied from another run would otherwise resume or evaluate one run
    under the other's name."""
    try:
        saved = TrainConfig.from_dict(info["config"])
    except (KeyError, ConfigError, TypeError, ValueError, AttributeError) as error:
        raise CheckpointError(f"{where}: its configuration is invalid: {error}") from None
    differ = [
        name
        for name, field in FIELDS.items()
        if field.metadata["defines_run"] and getattr(saved, name) != getattr(config, name)
    ]
    if differ:

        def values(c: TrainConfig) -> str:
            return ", ".join(f"{name}={getattr(c, name)!r}" for name in differ)

        raise CheckpointError(
            f"{where} was trained with {values(saved)}, but the run's config.json says "
            f"{values(config)}: they come from different runs"
        )


def restore_state(
    store: CheckpointStore,
    which: str | int,
    template: Any,
    check: Any = None,
    hyper_values: Callable[[], dict] | None = None,
) -> tuple[TrainState, dict]:
    """`store.restore` of a train state (stacked or not) into `template` (or `template(info)`).

    A checkpoint from before best-epoch tracking (its info lacks "tracks_best") is read with its
    own fields and upgraded (`train.from_legacy`): its parameters become the best ones, with its
    last validation accuracy, so a run or sweep saved then resumes here. Of `TrainState.hyper` a
    checkpoint holds the names its info's "hyper" lists (none before `hyper` existed); the others
    take their values from `hyper_values()` (default: the template's, which must then be arrays):
    the run's configuration's, the default the run trained with.
    """
    chosen: list[TrainState] = []  # the template of each step tried; the last one is restored

    def pick(info: dict) -> Any:
        chosen.append(template(info) if callable(template) else template)
        fields = {f.name: getattr(chosen[-1], f.name) for f in dataclasses.fields(TrainState)}
        if not info.get("tracks_best"):
            return {name: fields[name] for name in LEGACY_FIELDS}
        stored = set(info.get("hyper") or [])
        if stored == set(chosen[-1].hyper):
            return chosen[-1]
        held = {k: v for k, v in chosen[-1].hyper.items() if k in stored}
        del fields["hyper"]
        return {**fields, "hyper": held} if held else fields

    state, info = store.restore(which, pick, check=check)
    if not info.get("tracks_best"):
        histories = info["history"]
        if histories and isinstance(histories[0], list):  # a sweep program: one per member
            rows = int(np.shape(state["epoch"])[0])
            last = [h[-1]["val_accuracy"] if h else -1.0 for h in histories]
            accuracy = (last + [last[0]] * rows)[:rows]  # padded rows copy the first member
            state = from_legacy(state, accuracy)  # host arrays: `run_sweep` places them
        else:
            accuracy = histories[-1]["val_accuracy"] if histories else -1.0
            state = jax.device_put(from_legacy(state, accuracy))
    elif isinstance(state, dict):  # a template left out the hyper-parameters the step lacks
        state = TrainState(**{"hyper": {}, **state})
    if set(state.hyper) != set(chosen[-1].hyper):  # names the checkpoint predates
        values = hyper_values() if hyper_values is not None else chosen[-1].hyper
        state = state.replace(hyper={**values, **state.hyper})
    return state, info


def list_checkpoints(run_dir: str | Path) -> list[int]:
    """Epochs with a complete checkpoint, ascending; [] if none (not validated)."""
    return CheckpointStore(checkpoints_dir(run_dir)).steps()


def restore_checkpoint(
    run_dir: str | Path,
    template_state: TrainState,
    which: str | int = "latest",
    *,
    model: Model | None = None,
    config: TrainConfig | None = None,
) -> tuple[TrainState, dict]:
    """Restores a checkpoint into `template_state`'s structure, bitwise; returns (state, info).

    `which`: "latest" (what resume uses), "best" (highest val_accuracy among the kept checkpoints)
    or an epoch. For "latest"/"best" a damaged checkpoint is skipped with a warning and the next one
    is tried; for an epoch it is a CheckpointError. Nothing on disk is modified. `model`, if given,
    refuses a checkpoint of another model before any array is read, and `config` one trained with
    another configuration (in a field that defines the run). `info` holds format_version,
    epoch, step, config (a dict), model, num_classes, image_shape, history, val_accuracy.
    """

    def check(info: dict, where: str) -> None:
        model_check(model)(info, where)
        if config is not None:
            _refuse_other_config(config, info, where)

    return restore_state(CheckpointStore(checkpoints_dir(run_dir)), which, template_state, check)


@dataclasses.dataclass
class LoadedRun:
    """A trained run for notebooks: its configuration, spec (model included), parameters, full
    state, history and epoch."""

    run_dir: Path
    config: TrainConfig
    spec: TrainSpec
    params: Any
    state: TrainState
    history: list[dict]
    epoch: int
    info: dict

    @property
    def model(self) -> Model:
        return self.spec.model


def _run_config(run_dir: Path) -> TrainConfig | None:
    """RUN/config.json's configuration (a run record with a "config" entry, or that dict itself)."""
    config_file = run_dir / CONFIG_FILE
    if not config_file.is_file():
        return None
    try:
        record = json.loads(config_file.read_text())
        return TrainConfig.from_dict(record.get("config", record))
    except (ConfigError, ValueError, TypeError, AttributeError) as error:
        raise CheckpointError(
            f"cannot read the run configuration from {config_file}: {error}"
        ) from None


def spec_of_checkpoint(
    info: dict, config: TrainConfig, model: Model | None = None, where: str = "the checkpoint"
) -> TrainSpec:
    """The spec a checkpoint was trained with: its model rebuilt from the configuration (built in,
    or named `package.module:factory`) or from its record (a user's module class that imports),
    or `model` (a user's, which the checkpoint must record), checked against the record."""
    stored = recorded_model(info)
    num_classes = int(info.get("num_classes") or 10)
    image_shape = tuple(info.get("image_shape") or (28, 28))
    named = stored.get("name")
    if model is None and is_model_name(named):
        if named != config.model:  # before config.json's name is imported or built
            raise CheckpointError(
                f"{where}: its configuration names model {config.model!r}, its checkpoint "
                f"{named!r}; the configuration was edited"
            )
    elif model is None:
        model = model_from_record(stored)  # a module class that imports, rebuilt from its record
        if model is None:
            raise CheckpointError(
                f"{where} holds the user model {describe_text(stored)}, which does not import "
                "here: pass that model (model=..., e.g. resume_run(RUN, model=...)) to rebuild it"
            )
    try:
        spec = TrainSpec.from_config(config, num_classes, image_shape, model=model)
    except ConfigError as error:  # the configuration's model does not build here
        raise CheckpointError(f"{where}: {error}") from None
    model_check(spec.model)(info, where)
    return spec


def load_run(run_dir: str | Path, which: str | int = "best", *, model: Model | None = None):
    """A run's best (or latest, or given-epoch) checkpoint, with the template built from the run.

    The configuration is RUN/config.json's, else the checkpoint's own; the model, the number of
    classes and the image shape come from the checkpoint. A run of a user's model needs `model`,
    the same model (checked by name and settings). Returns a `LoadedRun`.
    """
    run_dir = Path(run_dir).resolve()
    known = _run_config(run_dir)
    specs: dict[str, Any] = {}

    def template(info: dict) -> TrainState:
        try:
            config = known or TrainConfig.from_dict(info["config"])
        except (ConfigError, TypeError) as error:
            raise CheckpointError(f"the checkpoint's configuration is invalid: {error}") from None
        spec = spec_of_checkpoint(info, config, model, f"{run_dir}")
        # After the model's check, whose message names the architecture that differs.
        if known is not None:
            _refuse_other_config(
                known, info, f"the checkpoint of epoch {info.get('epoch')} in {run_dir}"
            )
        specs.update(config=config, spec=spec)
        return create_train_state(config, spec)

    store = CheckpointStore(checkpoints_dir(run_dir))
    state, info = restore_state(store, which, template)
    return LoadedRun(
        run_dir=run_dir,
        config=specs["config"],
        spec=specs["spec"],
        params=state.params,
        state=state,
        history=list(info["history"]),
        epoch=int(info["epoch"]),
        info=info,
    )
