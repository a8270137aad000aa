"""The Optuna study of a search: where it is stored (a journal file in the search directory, or
`--storage URL`), and the samplers and pruners the search's flags name. `mnist_jax.search.engine`
asks and tells through them."""

from __future__ import annotations

import importlib.util
import math
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from mnist_jax.errors import ConfigError
from mnist_jax.search.space import optuna_distributions

SAMPLERS = ("tpe", "random", "cmaes", "grid")
PRUNERS = ("none", "successive-halving", "hyperband")
JOURNAL_FILE = "study.journal"


def check_storage_url(url: str) -> None:
    """ConfigError (one line) for a storage URL SQLAlchemy cannot read or has no driver for:
    checked before anything is created."""
    from sqlalchemy.engine import make_url

    try:
        dialect = make_url(url).get_dialect()
    except Exception as error:  # SQLAlchemy's errors for a bad URL vary
        raise ConfigError(f"invalid --storage {url!r}: {str(error).splitlines()[0]}") from None
    try:  # the driver (psycopg2 for postgresql://, ...), which SQLAlchemy imports on connecting
        dialect.import_dbapi()
    except ImportError as error:
        raise ConfigError(f"--storage {url!r} needs a database driver: {error}") from None


def open_study(storage: str | None, search_dir: Path, name: str, sampler, pruner, *, create: bool):
    """The search's study `name`: in `storage` (an Optuna storage URL) or the journal file in
    `search_dir`; created (refused if it exists) or loaded (refused if it does not)."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    if storage is None:
        from optuna.storages import JournalStorage
        from optuna.storages.journal import JournalFileBackend

        storage = JournalStorage(JournalFileBackend(str(search_dir / JOURNAL_FILE)))
    elif not create:  # connecting to a missing SQLite file creates an empty database there
        from sqlalchemy.engine import make_url

        url = make_url(storage)
        sqlite_file = url.get_backend_name() == "sqlite" and "uri" not in url.query
        path = url.database if sqlite_file else None
        if path not in (None, "", ":memory:") and not Path(path).is_file():
            raise ConfigError(f"--storage {storage}: no such database file {path}")
    try:
        if create:
            return optuna.create_study(
                storage=storage,
                study_name=name,
                sampler=sampler,
                pruner=pruner,
                direction="maximize",
            )
        return optuna.load_study(storage=storage, study_name=name, sampler=sampler, pruner=pruner)
    except (optuna.exceptions.DuplicatedStudyError, KeyError) as error:
        raise ConfigError(f"study {name!r} in the storage: {error}") from None
    except Exception as error:  # the database cannot be reached or read: SQLAlchemy's errors
        if type(error).__module__.startswith("sqlalchemy") or isinstance(error, ImportError):
            raise ConfigError(f"--storage {storage}: {str(error).splitlines()[0]}") from None
        raise


def population_seed(seed: int, index: int, worker: int = 0) -> int:
    """The sampler's seed for population `index` of a search seeded `seed` (and of `worker`, the
    first worker's as a search without others)."""
    if not (isinstance(seed, int) and seed >= 0):
        raise ConfigError(f"invalid --sampler-seed {seed!r}: expected an integer >= 0")
    entropy = [seed, index] + ([2, worker] if worker else [])
    return int(np.random.SeedSequence(entropy).generate_state(1)[0])


def population_samplers(name: str, seed: int, space: Mapping[str, tuple], worker: int = 0):
    """`run_search`'s `sampler`: population -> `make_sampler(name, population_seed(seed, p))`.

    A sampler's random state is in memory, not in the storage: seeded once, a resumed search
    would restart that stream and ask again what it tried. Seeded per population, each is asked
    from the stored trials and a state a resume re-creates: resumed = uninterrupted."""
    return lambda index: make_sampler(name, population_seed(seed, index, worker), space)


def grid_size(space: Mapping[str, tuple]) -> int:
    """The number of points of the grid sampler's grid (choice and int items)."""
    return math.prod(
        values[1] - values[0] + 1 if kind == "int" else len(values)
        for kind, values in space.values()
    )


def recover_journal(search_dir: Path) -> None:
    """A search killed while it wrote SEARCH/study.journal, resumed under the directory's lock:
    Optuna's lock file (the next writer would wait 30 s for it) goes, and so does a last line cut
    short (the next would be joined to it, and the journal no longer read)."""
    path = search_dir / JOURNAL_FILE
    Path(f"{path}.lock").unlink(missing_ok=True)  # a symbolic link (JournalFileSymlinkLock)
    content = path.read_bytes() if path.is_file() else b""
    if content and not content.endswith(b"\n"):
        with open(path, "r+b") as file:
            file.truncate(content.rfind(b"\n") + 1)


def make_sampler(name: str, seed: int, space: Mapping[str, tuple]):
    """Optuna's sampler by name, seeded. TPE lies about running trials (`constant_liar`), so that
    a population asked at once spreads out; grid takes choice and int items only."""
    import optuna

    if name == "tpe":
        return optuna.samplers.TPESampler(seed=seed, constant_liar=True)
    if name == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    if name == "cmaes":
        if importlib.util.find_spec("cmaes") is None:
            raise ConfigError("--sampler cmaes needs the cmaes package: pip install cmaes")
        return optuna.samplers.CmaEsSampler(seed=seed)
    ranges = [f for f, (kind, _) in space.items() if kind in ("uniform", "loguniform")]
    if ranges:
        raise ConfigError(f"--sampler grid needs choice() or int() items; {ranges[0]} is a range")
    if grid_size(space) > 100_000:
        raise ConfigError(f"--sampler grid: a grid of {grid_size(space):,} points is too large")
    grid = {
        f: list(range(v[0], v[1] + 1))
        if kind == "int"
        else list(optuna_distributions({f: (kind, v)})[f].choices)
        for f, (kind, v) in space.items()
    }

    class Grid(optuna.samplers.GridSampler):
        def after_trial(self, study, trial, state, values) -> None:
            """No `study.stop()` once the grid is done: outside `study.optimize` it raises, before
            the trial's state is told. The search stops by its trial count."""

    return Grid(grid, seed=seed)


def make_pruner(name: str, epochs: int, reduction_factor: int = 4):
    """Successive halving and Hyperband from epoch 1, 1/`reduction_factor` of the trials kept at
    each rung (epochs 1, 4, 16 with 4). The default is 4: on MNIST (10 epochs, TPE, 64 trials,
    6 sampler seeds) it spent 151-193 member-epochs where 3 spent 159-249, both confirming
    97.9-98.1% test accuracy (docs/search.md)."""
    import optuna

    if reduction_factor < 2:
        raise ConfigError(f"invalid --reduction-factor {reduction_factor}: expected 2 or more")
    rungs = {"min_resource": 1, "reduction_factor": reduction_factor}
    if name == "successive-halving":
        return optuna.pruners.SuccessiveHalvingPruner(**rungs)
    if name == "hyperband":
        return optuna.pruners.HyperbandPruner(max_resource=epochs, **rungs)
    return optuna.pruners.NopPruner()
