"""Everything about several processes (`jax.distributed`): start-up from environment variables,
gathering results, barriers, and what a checkpoint store checks across processes.

Every process runs the same code and the member mesh spans all their devices; `gather_to_host` (a
collective) brings every member's numbers to every process, so that process 0 can write the files.
With one process every function here is a cheap local no-op or copy.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import os
import re
import sys
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import jax
import numpy as np
from jax.experimental import multihost_utils

from mnist_jax.errors import ConfigError
from mnist_jax.fileio import write_text_atomic

ENV_COORDINATOR = "MNIST_JAX_COORDINATOR"  # host:port of process 0's coordinator service
ENV_NUM_PROCESSES = "MNIST_JAX_NUM_PROCESSES"
ENV_PROCESS_ID = "MNIST_JAX_PROCESS_ID"
# Seconds without a heartbeat after which JAX's coordination service takes a process for dead and
# fails every barrier or collective waiting for it (JAX's default is 100 s).
PEER_TIMEOUT_SECONDS = 60
# Seconds a process waits at start-up for the whole job to reach the coordinator (JAX's default,
# fit for a cluster that starts its processes one by one); then it exits in one line, status 2,
# where JAX's runtime would abort with a C++ stack trace.
ENV_START_TIMEOUT = "MNIST_JAX_START_TIMEOUT"
START_TIMEOUT_SECONDS = 300
# What JAX's runtime says, in any exception type, when another process died or cannot be reached.
_PEER_FAILURE_SIGNS = (
    "connection closed by peer",
    "heartbeat timeout",
    "barrier failed",
    "task is set to error",
    *(f"gloo {collective} failed" for collective in ("allgather", "allreduce", "broadcast")),
)
ENV_DISTRIBUTED = "MNIST_JAX_DISTRIBUTED"  # "off": no cluster detection (independent processes)

_initialized = False


def detected_cluster() -> str | None:
    """The cluster JAX detects itself (SLURM, Open MPI, Cloud TPU, GKE, Kubernetes), when it runs
    more than one process of this job; else None."""
    if os.environ.get(ENV_DISTRIBUTED, "").strip().lower() in ("off", "0", "false", "no"):
        return None
    try:  # JAX's detection is internal; if it moves, clusters need the MNIST_JAX_* variables
        from jax._src.clusters.cluster import ClusterEnv

        for cluster in ClusterEnv._cluster_types:
            if cluster.__name__ == "K8sCluster" and importlib.util.find_spec("kubernetes") is None:
                continue  # JAX's Kubernetes detection needs the package and warns without it
            if not cluster.opt_in_only_method and cluster.is_env_present():
                return cluster.__name__ if cluster.get_process_count() > 1 else None
    except Exception:
        return None
    return None


def initialize_distributed_from_env(
    environ: Mapping[str, str] | None = None, *, timeout_s: int = START_TIMEOUT_SECONDS
) -> bool:
    """Call `jax.distributed.initialize` when MNIST_JAX_COORDINATOR is set (then
    MNIST_JAX_NUM_PROCESSES and MNIST_JAX_PROCESS_ID are required), or when `detected_cluster`
    finds one; return whether it did. Must run before anything touches JAX devices; ConfigError
    for missing or invalid values; again after success, nothing. CPU collectives use gloo, XLA's
    CPU backend's only cross-process implementation (harmless on GPU)."""
    global _initialized
    env = os.environ if environ is None else environ
    coordinator = env.get(ENV_COORDINATOR, "").strip()
    if _initialized:
        return True
    if env.get(ENV_START_TIMEOUT, "").strip():  # checked wherever it is set, used or not
        timeout_s = _env_int(env, ENV_START_TIMEOUT, minimum=1)
    if not coordinator:
        given = [name for name in (ENV_NUM_PROCESSES, ENV_PROCESS_ID) if env.get(name, "").strip()]
        if given:  # each process would train the whole job alone, as if it were the only one
            raise ConfigError(
                f"{' and '.join(given)} set without {ENV_COORDINATOR}: set it to host:port of "
                f"process 0's coordinator (e.g. {ENV_COORDINATOR}=host0:4321), or unset them"
            )
        if environ is not None or detected_cluster() is None:
            return False
        jax.config.update("jax_cpu_collectives_implementation", "gloo")
        jax.distributed.initialize(
            initialization_timeout=timeout_s, heartbeat_timeout_seconds=PEER_TIMEOUT_SECONDS
        )
        _initialized = True
        return True
    coordinator_address(coordinator)
    num_processes = _env_int(env, ENV_NUM_PROCESSES, minimum=1)
    process_id = _env_int(env, ENV_PROCESS_ID, minimum=0)
    if process_id >= num_processes:
        raise ConfigError(
            f"invalid {ENV_PROCESS_ID}={process_id}: expected below "
            f"{ENV_NUM_PROCESSES}={num_processes}"
        )
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    message = (
        f"error: the job's {num_processes} processes did not all reach the coordinator at "
        f"{coordinator} within {timeout_s} s (this is process {process_id}); start every process, "
        f"{ENV_PROCESS_ID} 0 to {num_processes - 1}, with the same {ENV_COORDINATOR}, or give "
        f"them longer with {ENV_START_TIMEOUT}=seconds"
    )
    with _exit_with_one_line_after(timeout_s, message):
        jax.distributed.initialize(
            coordinator_address=coordinator,
            num_processes=num_processes,
            process_id=process_id,
            # JAX's own deadline comes later: at it, the runtime aborts with a stack trace.
            initialization_timeout=timeout_s + 30,
            heartbeat_timeout_seconds=PEER_TIMEOUT_SECONDS,
        )
    _initialized = True
    return True


@contextlib.contextmanager
def _exit_with_one_line_after(seconds: float, message: str):
    """Print `message` and exit with status 2 if the block still runs after `seconds`: for a call
    into JAX's runtime that only a process exit can interrupt."""

    def expire():
        spec = getattr(sys.modules.get("__main__"), "__spec__", None)  # python -m NAME
        prog = f"python -m {spec.name}" if spec else Path(sys.argv[0]).name or "python"
        print(f"{prog}: {message}", file=sys.stderr, flush=True)
        os._exit(2)

    timer = threading.Timer(seconds, expire)
    timer.daemon = True
    timer.start()
    try:
        yield
    finally:
        timer.cancel()


def coordinator_address(text: str) -> tuple[str, int]:
    """The host and port of MNIST_JAX_COORDINATOR's `text` (`host:port`, `[ipv6]:port`), checked:
    JAX's runtime takes a bad address for a reachable one and crashes, or times out and aborts."""
    invalid = f"invalid {ENV_COORDINATOR}={text!r}"
    host, colon, port = text.rpartition(":")
    if host.startswith("["):  # an IPv6 address: [::1]:4321
        bad_host = not host.endswith("]") or len(host) == 2 or any(c in host[1:-1] for c in "[]")
    else:
        bad_host = not host or ":" in host or any(c in host for c in "[] /\t")
    if not colon or bad_host:
        unbracketed = ":" in host and not host.startswith("[")
        raise ConfigError(
            f"{invalid}: expected host:port of process 0's coordinator, e.g. "
            f"{ENV_COORDINATOR}=host0:4321"
            + (" (an IPv6 address in brackets: [::1]:4321)" if unbracketed else "")
        )
    if not re.fullmatch(r"[0-9]{1,5}", port) or not 1 <= int(port) <= 65535:
        raise ConfigError(f"{invalid}: the port must be an integer from 1 to 65535")
    return host, int(port)


def _env_int(env: Mapping[str, str], name: str, minimum: int) -> int:
    text = env.get(name)
    if text is None:
        raise ConfigError(
            f"{ENV_COORDINATOR} is set but {name} is not; set both "
            f"{ENV_NUM_PROCESSES} and {ENV_PROCESS_ID}"
        )
    try:
        value = int(text)
    except ValueError:
        raise ConfigError(f"invalid {name}={text!r}: expected an integer") from None
    if value < minimum:
        raise ConfigError(f"invalid {name}={value}: expected >= {minimum}")
    return value


def peer_failure(error: BaseException) -> str | None:
    """With several processes: a short reason if `error` (or what caused it) is JAX's runtime
    reporting that another process stopped or cannot be reached, else None."""
    if not jax.distributed.is_initialized() or jax.process_count() == 1:
        return None
    seen, found = set(), None
    while error is not None and id(error) not in seen:  # the innermost telling error is clearest
        seen.add(id(error))
        if any(sign in str(error).lower() for sign in _PEER_FAILURE_SIGNS):
            found = str(error).strip().splitlines()[0]
        error = error.__cause__ or error.__context__
    if found is None:
        return None
    return found if len(found) <= 160 else found[:157] + "..."


def gather_to_host(tree: Any) -> Any:
    """The global value of every array in `tree`, as numpy, on every process (a collective)."""
    if jax.process_count() == 1:
        return jax.device_get(tree)
    return jax.tree_util.tree_map(np.asarray, multihost_utils.process_allgather(tree, tiled=True))


def is_main_process() -> bool:
    """True on the process that writes files (process 0)."""
    return jax.process_index() == 0


def check_shared_folder(folder: Path) -> None:
    """ConfigError unless every process sees `folder` as the same folder (checkpoints need a
    shared file system): each must read the token process 0 writes there."""
    probe = folder / ".shared-folder-check"
    if jax.process_index() == 0:
        write_text_atomic(probe, f"{os.getpid()}-{time.time_ns()}")
    barrier("shared folder token written")
    try:
        seen = probe.read_bytes()
    except OSError:
        seen = b""
    digest = np.frombuffer(hashlib.sha256(seen).digest(), np.uint8)
    everyone = np.asarray(multihost_utils.process_allgather(digest)).reshape(-1, digest.size)
    barrier("shared folder token read")
    if jax.process_index() == 0:
        probe.unlink(missing_ok=True)
    if not seen or not (everyone == everyone[0]).all():
        raise ConfigError(
            f"{folder} is not one folder shared by every process (a process cannot read what "
            "process 0 wrote there): put the sweep directory on a shared file system"
        )


def path_of_process_0(path: Path | None) -> Path | None:
    """Process 0's `path` on every process (None when process 0 has none): a collective."""
    encoded = np.zeros(4096, np.uint8)
    if path is not None:
        text = os.fsencode(os.path.abspath(path))
        if len(text) > encoded.size:
            raise ConfigError(f"the sweep directory's path is longer than {encoded.size} bytes")
        encoded[: len(text)] = np.frombuffer(text, np.uint8)
    shared = np.asarray(multihost_utils.broadcast_one_to_all(encoded))
    text = bytes(shared[shared != 0])
    return Path(os.fsdecode(text)) if text else None


def several() -> bool:
    return jax.process_count() > 1


def barrier(name: str) -> None:
    """Every process waits here for the others (process 0's file moves, a finished save)."""
    if several():
        multihost_utils.sync_global_devices(f"mnist_jax: {name}")


def layout() -> dict:
    """The processes and how many devices each has: shard digests compare only on an equal one."""
    per_process = [0] * jax.process_count()
    for device in jax.devices():
        per_process[device.process_index] += 1
    return {"processes": jax.process_count(), "devices": per_process}


def local_digest(tree: Any) -> str:
    """SHA-256 over the shards of every array this process holds (path, index, dtype, bytes)."""
    digest = hashlib.sha256()
    for path, leaf in sorted(flat(tree).items()):
        shards = getattr(leaf, "addressable_shards", None)
        parts = [((), leaf)]
        if shards is not None:
            unique = {str(shard.index): shard.data for shard in shards if shard.replica_id == 0}
            parts = sorted(unique.items())
        for index, array in parts:
            array = np.asarray(array)
            digest.update(f"{path}|{index}|{array.dtype.str}|{array.shape}|".encode())
            digest.update(np.ascontiguousarray(array).tobytes())
    return digest.hexdigest()


def all_digests(tree: Any) -> list[str]:
    """Every process's `local_digest`, in process order, on every process (a small collective)."""
    mine = np.frombuffer(bytes.fromhex(local_digest(tree)), np.uint8)
    gathered = np.asarray(multihost_utils.process_allgather(mine))
    return [bytes(row).hex() for row in gathered.reshape(jax.process_count(), -1)]


def all_agree(ok: bool) -> bool:
    """True when `ok` holds on every process, so that every process takes the same branch."""
    if not several():
        return ok
    return bool(np.all(multihost_utils.process_allgather(np.asarray([ok], np.uint8))))


def flat(tree: Any) -> dict[str, Any]:
    """Leaves by a path that does not depend on container types (a dataclass or orbax's dicts)."""

    def name(key) -> str:
        return str(next((getattr(key, a) for a in ("key", "name", "idx") if hasattr(key, a)), key))

    leaves = jax.tree_util.tree_flatten_with_path(tree)[0]
    return {"/".join(name(k) for k in path): leaf for path, leaf in leaves}


def refuse_multi_process_settings(command: str) -> None:
    """ConfigError where a one-process command sees a multi-process setting: each process of the
    intended job would do the whole work alone."""
    for name in (ENV_COORDINATOR, ENV_NUM_PROCESSES, ENV_PROCESS_ID):
        if os.environ.get(name):
            raise ConfigError(
                f"{name} is set, but {command} runs in one process (experiments.sweep runs "
                f"across processes): unset {name}"
            )
