"""What a checkpoint store does differently when several processes (`jax.distributed`) share it:
barriers, the layout a step was saved on, and digests of the shards each process holds; and `flat`,
the array paths both digests name."""

from __future__ import annotations

import hashlib
from typing import Any

import jax
import numpy as np


def several() -> bool:
    return jax.process_count() > 1


def barrier(name: str) -> None:
    """Every process waits here for the others (process 0's file moves, a finished save)."""
    if several():
        from jax.experimental import multihost_utils

        multihost_utils.sync_global_devices(f"mnist_jax checkpoint: {name}")


def layout() -> dict:
    """The processes and how many devices each has: shard digests compare only on an equal one."""
    per_process = [0] * jax.process_count()
    for device in jax.devices():
        per_process[device.process_index] += 1
    return {"processes": jax.process_count(), "devices": per_process}


def local_digest(tree: Any) -> str:
    """SHA-256 over the shards of every array that this process holds (path, shard index,
    dtype, bytes): with several processes, each checks its own part."""
    digest = hashlib.sha256()
    for path, leaf in sorted(flat(tree).items()):
        shards = getattr(leaf, "addressable_shards", None)
        if shards is None:
            parts = [((), np.asarray(leaf))]
        else:
            unique = {str(shard.index): shard for shard in shards if shard.replica_id == 0}
            parts = [(index, np.asarray(unique[index].data)) for index in sorted(unique)]
        for index, array in parts:
            digest.update(f"{path}|{index}|{array.dtype.str}|{array.shape}|".encode())
            digest.update(np.ascontiguousarray(array).tobytes())
    return digest.hexdigest()


def all_digests(tree: Any) -> list[str]:
    """Every process's `local_digest`, in process order, on every process (a small collective)."""
    from jax.experimental import multihost_utils

    mine = np.frombuffer(bytes.fromhex(local_digest(tree)), np.uint8)
    gathered = np.asarray(multihost_utils.process_allgather(mine))
    return [bytes(row).hex() for row in gathered.reshape(jax.process_count(), -1)]


def all_agree(ok: bool) -> bool:
    """True when `ok` holds on every process, so that every process takes the same branch."""
    if not several():
        return ok
    from jax.experimental import multihost_utils

    return bool(np.all(multihost_utils.process_allgather(np.asarray([ok], np.uint8))))


def flat(tree: Any) -> dict[str, Any]:
    """Leaves by a path that does not depend on container types (a dataclass or orbax's dicts)."""

    def name(key) -> str:
        return str(next((getattr(key, a) for a in ("key", "name", "idx") if hasattr(key, a)), key))

    leaves = jax.tree_util.tree_flatten_with_path(tree)[0]
    return {"/".join(name(k) for k in path): leaf for path, leaf in leaves}
