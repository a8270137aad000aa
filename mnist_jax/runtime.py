"""Process-level JAX settings the commands share (the library itself changes no global state)."""

from __future__ import annotations

import os
from pathlib import Path

import jax

CACHE_ENV = "MNIST_JAX_COMPILATION_CACHE"


def enable_compilation_cache(path: str | os.PathLike | None = None) -> Path | None:
    """Keep compiled programs on disk so the next run of the same shapes skips XLA compilation.

    Compilation is a large share of a short CPU run; the persistent cache turns it into a file
    read. Location: `path`, else $MNIST_JAX_COMPILATION_CACHE, else ~/.cache/mnist_jax/jax; set the
    variable to `off` to disable. The cache changes no result: it stores the same executables.
    """
    setting = str(path) if path is not None else os.environ.get(CACHE_ENV)
    if setting is not None and setting.lower() in ("off", "0", "none", ""):
        return None
    if setting is None:
        root = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
        setting = str(root / "mnist_jax" / "jax")
    jax.config.update("jax_compilation_cache_dir", setting)
    # Some of our programs compile faster than the default threshold (1 s) and would not be cached.
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.1)
    return Path(setting)
