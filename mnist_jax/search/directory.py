"""A search directory end to end, as `mnist_jax.sweep.directory` is for a sweep: what `python -m
experiments.search` calls between parsing its flags and printing. `complete_search` runs the first
worker (waiting for joined ones), confirms and writes; `join_search` runs one more worker, in
SEARCH/worker-<k>/, until nothing is left to ask.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from mnist_jax.device_data import check_fits, to_device
from mnist_jax.errors import ConfigError
from mnist_jax.fileio import write_json_atomic, write_text_atomic
from mnist_jax.rundir import create_run_dir, lock_run_dir, read_kept
from mnist_jax.search import confirm, engine, studies, workers
from mnist_jax.search.space import space_text
from mnist_jax.sweep.program import default_members_per_step, member_mesh

SEARCH_FILE = "search.json"  # the search's configuration and settings, as it started
RESULTS_FILE = "results.json"
REPORT_FILE = "report.md"
# A search's settings, as search.json keeps them (with its `study_name` and `dataset` fingerprint).
SETTINGS = (
    "space",
    "trials",
    "population",
    "seeds_per_trial",
    "sampler",
    "sampler_seed",
    "pruner",
    "reduction_factor",
    "storage",
    "confirm_top",
    "confirm_seeds",
    "random_arm",
)


@dataclasses.dataclass
class SearchOutcome:
    """What `complete_search` confirmed and wrote."""

    keys: list  # the configurations confirmed, best first
    seeds: list[int]  # the confirmation's fresh seeds
    summary: dict  # the confirmation sweep's summary
    results: dict  # results.json
    written: list[Path]
    finished_before: bool  # resumed after its results were written: only what was missing


_COUNTS = ("trials", "population", "seeds_per_trial", "confirm_top", "reduction_factor")


def new_settings(config, space, values: Mapping[str, Any], *, trials_given: bool = True) -> dict:
    """A new search's settings, checked before anything is created: `values` holds `SETTINGS`
    but the space, given parsed as `space` (kept as text); a study name is added. Where
    `trials_given` is False, `trials` is a default, cut to the grid's size with the grid sampler."""
    if config.validation != "holdout":  # trials are chosen, and pruned, by validation accuracy
        raise ConfigError("a search chooses on its validation images: keep --validation holdout")
    for name, least in (*((name, 1) for name in _COUNTS), ("random_arm", 0), ("confirm_seeds", 1)):
        value = values[name]
        if not (isinstance(value, int) and not isinstance(value, bool) and value >= least):
            raise ConfigError(
                f"--{name.replace('_', '-')} {value!r}: expected an integer >= {least}"
            )
    if values["confirm_seeds"] < 2:  # one seed: no interval over seeds, no paired verdict
        raise ConfigError("--confirm-seeds 1: the confirmation's intervals are over seeds; give 2+")
    if values["storage"] is not None:
        studies.check_storage_url(values["storage"])
    studies.population_samplers(values["sampler"], values["sampler_seed"], space)(0)
    studies.make_pruner(values["pruner"], config.epochs, values["reduction_factor"])
    settings = {name: values[name] for name in SETTINGS if name != "space"}
    points = studies.grid_size(space)
    if settings["sampler"] == "grid" and settings["trials"] > points:
        if trials_given:
            raise ConfigError(f"--trials {settings['trials']}: the grid has only {points} points")
        settings["trials"] = points  # default: the whole grid, each point once
    if settings["random_arm"] > settings["population"]:  # a baseline beside each population
        raise ConfigError(
            f"--random-arm {settings['random_arm']}: at most --population "
            f"({settings['population']}) random trials per population"
        )
    settings["space"] = space_text(space)
    name = f"{config.dataset}-{time.strftime('%Y%m%d-%H%M%S')}-{values['sampler']}"
    settings["study_name"] = f"search-{name}"
    return {name: settings[name] for name in (*SETTINGS, "study_name")}


@dataclasses.dataclass
class OpenSearch:
    """A search directory ready to work in (`open_search`)."""

    search_dir: Path
    study_in: Callable[[Path], Any]  # opens (a new search: creates) the study in a folder
    study: Any  # the study, where opening it came first (a storage URL), else None


def open_search(
    config,
    space,
    settings: dict,
    dataset,
    search_dir: Path,
    *,
    mode: str,
    record: dict,
    out: str | None = None,
) -> OpenSearch:
    """The search directory and its study, after the checks: `mode` "new" creates the folder `out`
    (default: `search_dir`'s name under searches/, made unique) with search.json (`record` and the
    settings), "resume" takes the folder's lock and recovers the journal a killed process left,
    "join" leaves both to `join_search`."""
    if mode not in ("new", "resume", "join"):
        raise ValueError(f"mode {mode!r}: expected new, resume or join")
    if settings.setdefault("dataset", dataset.fingerprint) != dataset.fingerprint:  # resumed
        raise ConfigError(
            f"the {dataset.name} files found ({dataset.source}) are not those "
            f"{search_dir} searched on: pass --data-dir with those"
        )
    check_fits(config, dataset)
    sampler = studies.make_sampler(settings["sampler"], settings["sampler_seed"], space)
    pruner = studies.make_pruner(
        settings["pruner"], config.epochs, settings.get("reduction_factor", 3)
    )

    def study_in(folder: Path):
        return studies.open_study(
            settings["storage"],
            folder,
            settings["study_name"],
            sampler,
            pruner,
            create=mode == "new",
        )

    if mode == "join":
        return OpenSearch(search_dir, study_in, None)
    # A storage URL is reached (and the study created) before the search directory is.
    study = study_in(search_dir) if settings["storage"] else None
    if mode == "resume":
        lock_run_dir(search_dir)
        if not workers.others_working(search_dir, 0)():  # a joined worker may be writing it
            studies.recover_journal(search_dir)
    else:
        search_dir = create_run_dir(out, root="searches", name=search_dir.name)
        write_json_atomic(search_dir / SEARCH_FILE, {**record, "settings": settings})
    return OpenSearch(search_dir, study_in, study)


def search_settings(settings: dict) -> engine.SearchSettings:
    """The engine's settings from search.json's."""
    return engine.SearchSettings(
        settings["trials"],
        settings["population"],
        settings["seeds_per_trial"],
        settings.get("random_arm", 0),
    )


def complete_search(
    config,
    space,
    settings: dict,
    dataset,
    search_dir: Path,
    study,
    *,
    callbacks: Sequence[Callable] = (),
    info: Callable[[str], None] = lambda line: None,
    compare: tuple | None = None,
) -> SearchOutcome:
    """Asks, trains and tells populations until the study holds `--trials` of the search's arm,
    then confirms the best configurations over fresh seeds and writes results.json and report.md
    (a finished search: only what is missing). `info` is told each population and the seeds;
    `compare`, another search's compute curve (`confirm.compute_curve_of`), goes in the report."""
    finished = (search_dir / RESULTS_FILE).is_file()
    data = to_device(dataset, config)
    mesh = member_mesh()
    per_step = default_members_per_step(mesh)
    timing: dict[int, dict] = {}

    def on_population(index, trials, programs):
        confirm.close_timing(timing)
        timing[index] = {"start": time.perf_counter(), "programs": len(programs)}
        info(
            f"population {index}: trials {trials[0].number}-{trials[-1].number}, "
            f"{len(programs)} program(s)"
        )

    settings_ = search_settings(settings)
    while True:  # beside joined workers: until their trials are told, and none is missing
        engine.run_search(
            config,
            space,
            data,
            study,
            settings_,
            search_dir,
            mesh=mesh,
            members_per_step=per_step,
            callbacks=callbacks,
            on_population=on_population,
            sampler=studies.population_samplers(
                settings["sampler"], settings["sampler_seed"], space
            ),
            random_seed=settings["sampler_seed"],
            others_working=workers.others_working(search_dir, 0),
        )
        confirm.close_timing(timing)
        workers.wait_for_workers(study, search_dir, on_wait=info)
        if engine.claimed(study.get_trials(deepcopy=False)) >= settings_.trials:
            break
    keys = engine.best_configurations(study, settings["confirm_top"], config, space)
    if not keys:
        raise ConfigError("no trial was trained to the end: nothing to confirm")
    # Fresh seeds: past every trial's, joined workers' and failed trials' numbers included.
    numbers = [t.number for t in study.get_trials(deepcopy=False)]
    asked = max(engine.trials_asked(settings_), max(numbers, default=-1) + 1)
    first_seed = asked * settings["seeds_per_trial"] + 1000
    seeds = list(range(first_seed, first_seed + settings["confirm_seeds"]))
    info(f"confirmation: {len(keys)} configuration(s) x seeds {seeds[0]}-{seeds[-1]}")
    summary, written = confirm.confirm(
        config,
        keys,
        seeds,
        dataset,
        data,
        search_dir / confirm.CONFIRMATION_DIR,
        mesh=mesh,
        members_per_step=per_step,
        callbacks=callbacks,
    )
    if finished:  # kept as the process that trained wrote it (its timings)
        results = read_kept(search_dir / RESULTS_FILE, lambda r: isinstance(r, dict))
    else:
        trials = study.get_trials(deepcopy=False)
        results = confirm.search_results(trials, timing, data, seeds, summary)
        written.append(write_json_atomic(search_dir / RESULTS_FILE, results))
    if not (search_dir / REPORT_FILE).exists():
        report = confirm.render_report(settings, results, compare)
        written.append(write_text_atomic(search_dir / REPORT_FILE, report))
    return SearchOutcome(keys, seeds, summary, results, written, finished)


def join_search(
    config,
    space,
    settings: dict,
    dataset,
    search_dir: Path,
    study_in: Callable[[Path], Any],
    *,
    callbacks: Sequence[Callable] = (),
    info: Callable[[str], None] = lambda line: None,
) -> tuple[int, Path, list[int]] | None:
    """One more worker on the search in `search_dir` (`study_in(search_dir)` opens its study):
    (its number, its folder, the populations it trained); None for a finished search."""
    if (search_dir / RESULTS_FILE).is_file():
        return None
    if settings["storage"] is None and not (search_dir / studies.JOURNAL_FILE).is_file():
        raise ConfigError(f"{search_dir} holds no {studies.JOURNAL_FILE}: is its search started?")
    study = study_in(search_dir)
    worker, folder = workers.claim_worker(search_dir)
    info(f"search directory: {search_dir}; this process is worker {worker}: {folder}")
    data = to_device(dataset, config)
    mesh = member_mesh()
    trained: list[int] = []

    def on_population(index, trials, programs):
        trained.append(index)
        numbers = ", ".join(str(t.number) for t in trials)
        info(f"worker {worker}, population {index}: trials {numbers}, {len(programs)} program(s)")

    engine.run_search(
        config,
        space,
        data,
        study,
        search_settings(settings),
        folder,
        mesh=mesh,
        members_per_step=default_members_per_step(mesh),
        callbacks=callbacks,
        on_population=on_population,
        sampler=studies.population_samplers(
            settings["sampler"], settings["sampler_seed"], space, worker
        ),
        random_seed=settings["sampler_seed"],
        worker=worker,
        others_working=workers.others_working(search_dir, worker),
    )
    return worker, folder, trained
