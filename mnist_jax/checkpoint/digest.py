"""Owned host copies and content digests of a state, with paths that do not depend on its structure."""

from __future__ import annotations

import hashlib
from typing import Any

import jax
import numpy as np

__all__ = ["host_copy", "state_digest"]


def host_copy(tree: Any) -> Any:
    """Owned numpy copies of every array (safe to keep while the device buffers are donated)."""
    return jax.tree.map(lambda x: np.array(x, copy=True), tree)


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
