"""Reading one checkpoint step: its info, compatibility checks, and its arrays against their digest.

A step that cannot be read back intact raises `_Damaged` (the readers skip it or turn it into a
`CheckpointError`); an incompatible one raises `CheckpointError` directly.
"""

from __future__ import annotations

from typing import Any

import jax
import numpy as np
import orbax.checkpoint as ocp

from mnist_jax.checkpoint.digest import _flat, state_digest
from mnist_jax.checkpoint.layout import CHECKPOINT_FORMAT_VERSION, INFO_ITEM, STATE_ITEM, _short
from mnist_jax.config import TrainConfig
from mnist_jax.errors import CheckpointError
from mnist_jax.train import TrainState


class _Damaged(Exception):
    """A checkpoint that cannot be read back intact (internal; becomes a warning or CheckpointError)."""


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
        raise CheckpointError(
            f"{where}: checkpoint format version {version} is not supported (this "
            f"mnist-jax reads version {CHECKPOINT_FORMAT_VERSION})"
        )
    for key in ("epoch", "config", "history"):
        if key not in info:
            raise CheckpointError(
                f"{where}: checkpoint info has no {key!r} entry (format version "
                f"{version} requires it)"
            )


def _stored_hidden_sizes(info: dict) -> tuple[int, ...] | None:
    sizes = (info.get("config") or {}).get("hidden_sizes")
    return tuple(sizes) if sizes is not None else None


def _check_config(info: dict, config: TrainConfig | None, where: str) -> None:
    if config is None:
        return
    stored = _stored_hidden_sizes(info)
    if stored is not None and stored != tuple(config.hidden_sizes):
        raise CheckpointError(
            f"{where} was made with hidden_sizes {stored}, this run uses "
            f"{tuple(config.hidden_sizes)}"
        )


def _check_shapes(
    manager: ocp.CheckpointManager, step: int, template: TrainState, info: dict, where: str
) -> None:
    """Compares stored array shapes/dtypes with the template's before any array is read."""
    try:
        metadata = manager.item_metadata(step)[STATE_ITEM]
        stored = {path: (tuple(m.shape), np.dtype(m.dtype)) for path, m in _flat(metadata).items()}
    except Exception as error:
        raise _Damaged(f"its item metadata cannot be read ({_short(error)})") from error
    expected = {
        path: (tuple(np.shape(x)), np.dtype(x.dtype)) for path, x in _flat(template).items()
    }
    made_with = (
        f" (made with hidden_sizes {_stored_hidden_sizes(info)}, "
        f"num_classes {info.get('num_classes')})"
    )
    missing, extra = sorted(set(expected) - set(stored)), sorted(set(stored) - set(expected))
    if missing or extra:
        raise CheckpointError(
            f"{where}{made_with} does not match the template's structure: "
            f"missing {missing[:3]}, unexpected {extra[:3]}"
        )
    for path in sorted(expected, key=lambda p: (not p.startswith("params/"), p)):
        if stored[path] != expected[path]:
            (s_shape, s_dtype), (t_shape, t_dtype) = stored[path], expected[path]
            raise CheckpointError(
                f"{where}{made_with} has {path} of shape {s_shape} {s_dtype}, the "
                f"template has {t_shape} {t_dtype}"
            )


def _restore_state(
    manager: ocp.CheckpointManager, step: int, template: TrainState | None, info: dict
) -> Any:
    abstract = None if template is None else jax.tree.map(ocp.utils.to_shape_dtype_struct, template)
    try:
        restored = manager.restore(
            step, args=ocp.args.Composite(**{STATE_ITEM: ocp.args.StandardRestore(abstract)})
        )
        state = restored[STATE_ITEM]
        digest = state_digest(state)
    except Exception as error:
        raise _Damaged(f"its arrays cannot be read ({_short(error)})") from error
    if info.get("state_sha256") not in (None, digest):
        raise _Damaged("its arrays do not match the digest written with them")
    return state


def _load_step(
    manager, step: int, template: TrainState | None, config: TrainConfig | None, where: str
) -> tuple[Any, dict]:
    info = _read_info(manager, step)
    _check_format(info, where)
    _check_config(info, config, where)
    if template is not None:
        _check_shapes(manager, step, template, info, where)
    return _restore_state(manager, step, template, info), info
