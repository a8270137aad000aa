"""Process-level JAX settings: the persistent compilation cache and the XLA:CPU flags.

The commands set both before anything starts. A Python user's first `fit`, `train_run` or
`run_sweep` turns the cache on too (`compilation_cache_by_default`), unless jax already has a cache
folder or $MNIST_JAX_COMPILATION_CACHE is `off`; the XLA:CPU flags stay the command's choice."""

from __future__ import annotations

import os
from pathlib import Path

import jax

from mnist_jax.errors import ConfigError

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
    chosen = setting is not None
    if setting is None:
        root = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
        setting = str(root / "mnist_jax" / "jax")
    try:  # made here: jax would only warn at every compilation that it cannot write there
        setting.encode()  # jax passes it to C++ as UTF-8: a UnicodeEncodeError is a ValueError
        Path(setting).mkdir(parents=True, exist_ok=True)
        if not os.access(setting, os.W_OK | os.X_OK):
            raise PermissionError("not writable")
    except (OSError, ValueError) as error:
        if not chosen:  # the default place: the cache only saves time, so run without it
            return None
        reason = getattr(error, "strerror", None) or error
        raise ConfigError(
            f"{'compilation cache' if path is not None else CACHE_ENV}={setting!r} cannot be "
            f"used as the compilation cache's folder ({reason}); give a writable folder, or off"
        ) from None
    jax.config.update("jax_compilation_cache_dir", setting)
    # Some of our programs compile faster than the default threshold (1 s) and would not be cached.
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.1)
    return Path(setting)


def compilation_cache_by_default() -> Path | None:
    """`enable_compilation_cache()` where jax has no cache folder yet; the folder in use, if any.

    A notebook's first compilations (its data's reshapes) have already asked jax whether a cache
    is in use, and jax keeps that answer: it is reset (jax's public `reset_cache`) so the next
    compilation opens the folder. A folder the user chose (`jax_compilation_cache_dir`) is kept.
    """
    chosen = jax.config.jax_compilation_cache_dir
    if chosen:
        return Path(chosen)
    try:
        folder = enable_compilation_cache()
    except ConfigError:  # a bad $MNIST_JAX_COMPILATION_CACHE: the commands refuse it; a library
        return None  # call trains without the cache rather than fail over a speed-up
    if folder is not None:
        from jax.experimental.compilation_cache import compilation_cache

        compilation_cache.reset_cache()
    return folder


# XLA:CPU flags the commands set, each measured to help this project's programs. YNNPACK taking
# only the matmuls (with their bias; by default it also takes the reductions) makes the MLP's
# steady epoch about 4% faster on a 2-core AVX-512 CPU. It changes the rounding of the bias
# gradients and softmax sums (XLA reduces them instead), within the spread the golden test allows
# for different CPUs; results stay deterministic per seed.
CPU_FLAGS = ("--xla_cpu_experimental_ynn_fusion_type=DOT",)
CPU_FLAGS_ENV = "MNIST_JAX_CPU_FLAGS"


def accelerator_plugins() -> list[str]:
    """The PJRT plugins jax would load (CUDA, ROCm, TPU...), found without loading them."""
    import importlib.metadata
    import importlib.util
    import pkgutil

    found = {entry.value for entry in importlib.metadata.entry_points(group="jax_plugins")}
    try:
        import jax_plugins  # the namespace package plugins install into

        found |= {name for _, name, _ in pkgutil.iter_modules(jax_plugins.__path__)}
    except ImportError:
        pass
    if importlib.util.find_spec("libtpu") is not None:
        found.add("libtpu")
    return sorted(found)


def runs_on_cpu() -> bool:
    """Whether jax's default backend will be the CPU: `JAX_PLATFORMS` (jax_platforms) names cpu
    first, or it is unset and no accelerator plugin is installed."""
    platforms = jax.config.jax_platforms
    if platforms:
        return platforms.split(",")[0].strip().lower() == "cpu"
    return not accelerator_plugins()


def configure_xla_cpu(flags: tuple[str, ...] = CPU_FLAGS) -> list[str]:
    """Add `flags` to XLA_FLAGS when training will run on the CPU; returns the flags added.

    XLA reads XLA_FLAGS once, when jax starts its backend, so this must run first (the commands
    call it before anything else; a notebook calls it before its first array). It adds nothing
    when the backend has already started, when the default backend is an accelerator, when
    $MNIST_JAX_CPU_FLAGS is `off`, or for a flag XLA_FLAGS already sets (the user's value wins).
    """
    from jax._src import xla_bridge  # no public way to ask whether the backend has started

    setting = os.environ.get(CPU_FLAGS_ENV, "on").lower()
    if setting not in ("on", "1", "off", "0", "none", ""):  # a typo must not mean "on"
        raise ConfigError(f"{CPU_FLAGS_ENV}={setting!r}: expected on or off")
    if setting in ("off", "0", "none", "") or xla_bridge.backends_are_initialized():
        return []
    if not runs_on_cpu():
        return []
    existing = os.environ.get("XLA_FLAGS", "")
    present = {word.split("=")[0] for word in existing.split()}
    added = [flag for flag in flags if flag.split("=")[0] not in present]
    if added:
        os.environ["XLA_FLAGS"] = " ".join([*existing.split(), *added])
    return added
