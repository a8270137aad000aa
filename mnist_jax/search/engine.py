"""A search on the member axis: Optuna asks a population of trials at once, the sweep trains them.

Each population is asked together, planned into programs as any sweep's members, and trained by
`run_sweep` with program checkpoints in `SEARCH/population-<p>/`. After each epoch every live trial
reports its seeds' mean validation accuracy and is asked `should_prune`; a pruned trial's members
stop inside the running program (`run_sweep(stop=...)`; on CPU their epochs are not computed). At
the population's end its trials are told COMPLETE (the mean final validation accuracy) or PRUNED.
The pruner is asked only while half the epochs remain: later, pruning saves little and leaves
fewer finished trials (MNIST, 10 epochs: successive halving asked up to epoch 9 finished 4 of 64
trials, to save 8 member-epochs).

Killed and resumed, the storage says what is done: a population with RUNNING trials is retrained
whole from its checkpoints (bitwise); a pruning decision is kept in the trial (`pruned_at`), so
an epoch trained again decides the same; a trial asked but never given a population is told FAIL
and replaced. No trial is told twice.
"""

from __future__ import annotations

import dataclasses
import functools
import warnings
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import numpy as np

from mnist_jax.config import TrainConfig
from mnist_jax.errors import ConfigError
from mnist_jax.search.space import member_values, optuna_distributions
from mnist_jax.sweep.checkpoint import Checkpointer, program_store, sweep_start
from mnist_jax.sweep.members import CONFIG_KEY_FIELDS, Member, with_own_dropout
from mnist_jax.sweep.plan import plan_sweep
from mnist_jax.sweep.run import run_sweep

SEARCH_ARM, RANDOM_ARM = "search", "random"  # a trial's "arm" user attribute


@dataclasses.dataclass(frozen=True)
class SearchSettings:
    """`trials` of the search's own arm, asked `population` at a time, each with `seeds_per_trial`
    members; `random_arm` more trials per population asked by random search (`RANDOM_ARM`)."""

    trials: int
    population: int
    seeds_per_trial: int = 1
    random_arm: int = 0


def worker_of(trial) -> int:
    """The worker process that asked a trial (`run_search(worker=...)`; 0: the first)."""
    return int(trial.user_attrs.get("worker", 0))


def _of_population(trial, worker: int, index: int | None = None) -> bool:
    """Whether `worker` gave the trial a population (`index`, where one is named)."""
    population = trial.user_attrs.get("population")
    return population is not None and worker_of(trial) == worker and index in (None, population)


def claimed(trials) -> int:
    """The search arm's trials that count against `--trials`: finished (FAIL aside) or RUNNING,
    whichever worker asked them; a RUNNING one not yet tagged counts (it may be the search's)."""
    from optuna.trial import TrialState

    return sum(t.state != TrialState.FAIL and arm(t) == SEARCH_ARM for t in trials)


def arm(trial) -> str:
    """A trial's arm: `SEARCH_ARM` (the search's sampler and pruner) or `RANDOM_ARM`."""
    return trial.user_attrs.get("arm", SEARCH_ARM)


def trials_asked(settings: SearchSettings) -> int:
    """The trials a finished search has trained in both arms (failed ones aside): its members'
    seeds are below `trials_asked * seeds_per_trial`, unless some trials failed."""
    populations = -(-settings.trials // settings.population)  # only the last one short
    return settings.trials + settings.random_arm * populations


def random_arm_sampler(seed: int, index: int, worker: int = 0):
    """The random arm's sampler of population `index` (of `worker`), on a seed stream apart from
    the search's (`population_seed`): the same arm whatever sampler the search uses."""
    import optuna

    entropy = [seed, index, 1] + ([worker] if worker else [])
    stream = int(np.random.SeedSequence(entropy).generate_state(1)[0])
    return optuna.samplers.RandomSampler(seed=stream)


def without_random_arm(sampler):
    """`sampler` asking from the study's trials outside the random arm only, so that each arm's
    curve is what it would reach alone. (The pruner never sees them either: Optuna's pruners
    compare a trial only with trials they were asked `should_prune` about.)"""
    import optuna

    class View(optuna.study.Study):
        """The study, its trials without the random arm's (as Hyperband's `_BracketStudy`)."""

        def __init__(self, study) -> None:
            super().__init__(
                study_name=study.study_name,
                storage=study._storage,
                sampler=sampler,
                pruner=study.pruner,
            )

        def get_trials(self, deepcopy=True, states=None):
            return [t for t in super().get_trials(deepcopy, states) if arm(t) != RANDOM_ARM]

        def _get_trials(self, deepcopy=True, states=None, use_cache=False):
            # Never the view's cache: the study's `ask` and `tell` clear the study's own only.
            trials = super()._get_trials(deepcopy, states, use_cache=False)
            return [t for t in trials if arm(t) != RANDOM_ARM]

    view = functools.cache(View)  # one view of each study

    class SearchArm(optuna.samplers.BaseSampler):
        inner = sampler

        def infer_relative_search_space(self, study, trial):
            return sampler.infer_relative_search_space(view(study), trial)

        def sample_relative(self, study, trial, search_space):
            return sampler.sample_relative(view(study), trial, search_space)

        def sample_independent(self, study, trial, param_name, param_distribution):
            return sampler.sample_independent(view(study), trial, param_name, param_distribution)

        def before_trial(self, study, trial):
            sampler.before_trial(view(study), trial)

        def after_trial(self, study, trial, state, values):
            sampler.after_trial(view(study), trial, state, values)

        def reseed_rng(self):
            sampler.reseed_rng()

    return SearchArm()


def trial_members(config: TrainConfig, space, number: int, params: Mapping, seeds: int):
    """A trial's members: the configuration's values, the trial's, and seeds number*seeds+j."""
    base = {name: getattr(config, name) for name in CONFIG_KEY_FIELDS}
    values = {**base, **member_values(space, params)}
    # A user's model's own dropout rate, as run_sweep would set it: the plan holds what trains.
    return with_own_dropout([Member(number * seeds + j, **values) for j in range(seeds)])


def run_search(
    config: TrainConfig,
    space: Mapping[str, tuple],
    data,
    study,
    settings: SearchSettings,
    search_dir: Path,
    *,
    mesh,
    members_per_program: int | None = None,
    members_per_step: int | None = 1,
    callbacks: Sequence = (),
    on_population: Callable[[int, list, list], None] | None = None,
    sampler: Callable[[int], object] | None = None,
    random_seed: int = 0,
    worker: int = 0,
    others_working: Callable[[], bool] = lambda: False,
) -> None:
    """Asks, trains and tells populations until `settings.trials` trials of the search's arm are
    COMPLETE or PRUNED (resuming the RUNNING population first). `on_population(index, trials,
    programs)` is told of each before it trains. `sampler(index)` (`population_samplers`) asks
    population `index` (default: the study's sampler asks every one).

    With `settings.random_arm` = K, each population also asks K trials by random search
    (`random_arm_sampler`), tagged `arm: random`, trained in the same programs, never pruned, and
    unseen by the search's sampler (`without_random_arm`) and pruner: each arm reaches what it
    would alone.

    Several workers may run it on one study, each with its own `worker` number and `search_dir`:
    each asks, trains, tells and resumes its own populations (tagged `worker`), and stops when
    `settings.trials` of the search's arm are finished or in training by any worker. Only while
    `others_working()` may a RUNNING trial without attributes be another's, not left by a kill."""
    from optuna.trial import Trial, TrialState

    distributions = optuna_distributions(space)
    while True:
        frozen = study.get_trials(deepcopy=False)
        running = [t for t in frozen if t.state == TrialState.RUNNING]
        for t in running:  # asked, never given a population: killed while asking
            if "population" not in t.user_attrs and (
                worker_of(t) == worker if "worker" in t.user_attrs else not others_working()
            ):  # an untagged one may be another worker's, being asked now
                study.tell(t.number, state=TrialState.FAIL, skip_if_finished=True)
        running = [t for t in running if "population" in t.user_attrs and worker_of(t) == worker]
        populations = [t.user_attrs["population"] for t in frozen if _of_population(t, worker)]
        if running:  # the whole population, as planned: some of it may have been told
            index = running[0].user_attrs["population"]
            ours = [t for t in frozen if _of_population(t, worker, index)]
            trials = [Trial(study, t._trial_id) for t in ours]
        else:
            size = min(settings.population, settings.trials - claimed(frozen))
            if size <= 0:
                return
            index = max(populations, default=-1) + 1
            if sampler is not None:
                study.sampler = sampler(index)
            if settings.random_arm:
                study.sampler = without_random_arm(study.sampler)
            trials = []
            for _ in range(size):
                trial = study.ask(distributions)
                trial.set_user_attr("worker", worker)
                # Past --trials if as many were asked before it, by number (the storage's order,
                # other workers' included): two workers that counted the same trials before
                # asking cannot both train the last one.
                before = [t for t in study.get_trials(deepcopy=False) if t.number < trial.number]
                if claimed(before) >= settings.trials:
                    trial.set_user_attr("error", "over --trials: other workers asked them first")
                    study.tell(trial, state=TrialState.FAIL)
                    break
                trial.set_user_attr("arm", SEARCH_ARM)
                trials.append(trial)
            if not trials:
                continue
            if settings.random_arm:
                search_sampler = study.sampler
                study.sampler = random_arm_sampler(random_seed, index, worker)
                for _ in range(settings.random_arm):
                    trial = study.ask(distributions)
                    trial.set_user_attr("worker", worker)
                    trial.set_user_attr("arm", RANDOM_ARM)
                    trials.append(trial)
                study.sampler = search_sampler
            # Tagged once both arms are asked: a kill while asking leaves trials without a
            # population, which a resume fails and asks again, never a population short of its
            # random arm that it would take for whole.
            for trial in trials:
                trial.set_user_attr("population", index)
        _train_population(
            config,
            space,
            data,
            study,
            settings,
            search_dir,
            index,
            trials,
            mesh=mesh,
            members_per_program=members_per_program,
            members_per_step=members_per_step,
            callbacks=callbacks,
            on_population=on_population,
        )


def _train_population(
    config,
    space,
    data,
    study,
    settings,
    search_dir,
    index,
    trials,
    *,
    mesh,
    members_per_program,
    members_per_step,
    callbacks,
    on_population,
) -> None:
    from optuna.trial import TrialState

    population_dir = search_dir / f"population-{index}"
    by_trial, trial_of, failed = {}, {}, []
    for trial in trials:
        try:
            members = trial_members(
                config, space, trial.number, trial.params, settings.seeds_per_trial
            )
        except ConfigError as error:  # a combination no run may take (e.g. wd with adam)
            trial.set_user_attr("error", str(error))
            failed.append(trial)
            continue
        by_trial[trial.number] = (trial, members)
        trial_of.update({m: trial for m in members})
    for trial in failed:
        study.tell(trial, state=TrialState.FAIL, skip_if_finished=True)
    members = [m for _, ms in by_trial.values() for m in ms]
    if not members:
        return
    programs = plan_sweep(
        config, members, data, mesh.size, members_per_program, members_per_step=members_per_step
    )
    told = {t.number for t in study.get_trials(deepcopy=False) if t.state.is_finished()}
    for program in programs:
        for member in program.members:
            trial = trial_of[member]
            if trial.number in told:  # before a kill: its attributes are set
                continue
            store = program_store(population_dir, program.index).directory
            trial.set_user_attr("program", program.index)
            trial.set_user_attr("seeds", [m.seed for m in by_trial[trial.number][1]])
            trial.set_user_attr("checkpoints", str(store))
    if on_population is not None:
        on_population(index, [t for t, _ in by_trial.values()], programs)

    def stop(program, records, histories) -> list[bool]:
        current = {t.number: t for t in study.get_trials(deepcopy=False)}
        values: dict[int, list[float]] = {}
        epoch = None
        for member, record in zip(program.members, records):
            if record is not None:
                epoch = record["epoch"]
                value = record["val_accuracy"]
                values.setdefault(trial_of[member].number, []).append(
                    value if np.isfinite(value) else 0.0
                )
        pruned = set()
        for number, accuracies in values.items():
            trial, frozen = by_trial[number][0], current[number]
            at = frozen.user_attrs.get("pruned_at")
            if at is not None and at <= epoch:  # decided before a kill: decided again the same
                pruned.add(number)
                continue
            if frozen.state.is_finished():
                continue
            with warnings.catch_warnings():  # a step reported before a kill is reported again
                warnings.simplefilter("ignore")
                trial.report(float(np.mean(accuracies)), int(epoch))
            if 2 * epoch <= config.epochs and arm(frozen) == SEARCH_ARM and trial.should_prune():
                trial.set_user_attr("pruned_at", int(epoch))
                pruned.add(number)
        return [trial_of[m].number in pruned for m in program.members]

    specs = lambda p: p.spec(config, data.num_classes, data.image_shape)
    start = sweep_start(
        population_dir, config, mesh=mesh, num_classes=data.num_classes, specs=specs
    )
    with Checkpointer(population_dir, config, num_classes=data.num_classes, specs=specs) as saver:
        result = run_sweep(
            config,
            members,
            data,
            programs=programs,
            callbacks=[*callbacks, saver],
            mesh=mesh,
            keep_states=False,
            start=start,
            members_per_step=members_per_step,
            stop=stop,
        )
    histories = {r.member: r.history for r in result.members}
    current = {t.number: t for t in study.get_trials(deepcopy=False)}
    for number, (trial, members) in by_trial.items():
        if current[number].state.is_finished():
            continue
        trial.set_user_attr("member_epochs", sum(len(histories[m]) for m in members))
        if "pruned_at" in current[number].user_attrs:
            study.tell(trial, state=TrialState.PRUNED)
            continue
        finals = [histories[m][-1]["val_accuracy"] if histories[m] else 0.0 for m in members]
        study.tell(trial, float(np.mean(np.nan_to_num(finals, nan=0.0))))


def best_configurations(study, k: int, config: TrainConfig, space) -> list[tuple]:
    """The configuration keys of the `k` best COMPLETE trials of the search's arm (distinct), best
    first: the random arm is the baseline, not a source of the search's result."""
    from optuna.trial import TrialState

    done = [
        t
        for t in study.get_trials(deepcopy=False)
        if t.state == TrialState.COMPLETE and arm(t) == SEARCH_ARM
    ]
    keys: list[tuple] = []
    for trial in sorted(done, key=lambda t: (-t.value, t.number)):
        key = trial_members(config, space, 0, trial.params, 1)[0].config_key
        if key not in keys:
            keys.append(key)
    return keys[:k]
