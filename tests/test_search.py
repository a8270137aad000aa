"""The search on the member axis (`mnist_jax.search`, `python -m experiments.search`): spaces are
checked before anything is created; a pruned trial's member stops inside the running program; a
search interrupted mid-population resumes from its program checkpoints to the uninterrupted study,
no trial lost or told twice; the command writes its study, report and confirmation."""

import json
import sys

import _processes
import pytest

from mnist_jax.errors import ConfigError
from mnist_jax.search.space import parse_space

optuna = pytest.importorskip("optuna")


def test_a_space_is_parsed_and_every_value_it_can_give_is_checked(tmp_path):
    space = parse_space(
        ["lr=loguniform(1e-4,1e-2) dropout=uniform(0,0.5)", "hidden=choice(64|32,32)"]
    )
    assert space == {
        "learning_rate": ("loguniform", (1e-4, 1e-2)),
        "dropout_rate": ("uniform", (0.0, 0.5)),
        "hidden_sizes": ("choice", ((64,), (32, 32))),
    }
    (tmp_path / "space.txt").write_text("# a file\nschedule=choice(constant|cosine)\n")
    assert parse_space([str(tmp_path / "space.txt")]) == {
        "schedule": ("choice", ("constant", "cosine"))
    }
    for bad in ("lr=loguniform(0,1e-2)", "lr=uniform(2,1)", "dropout=uniform(0,1.5)",
                "lr=normal(0,1)", "nope=uniform(0,1)", "wd=loguniform(1e-6,1e-2)",
                "schedule=choice(constant|warp)", "hidden=int(1,3)"):  # fmt: skip
        with pytest.raises(ConfigError, match="search space"):
            parse_space([bad])  # wd: adam, the default optimizer, takes none
    assert parse_space(["wd=loguniform(1e-6,1e-2)"], {"optimizer": "adamw"})


ARGS = ["--validation-size", "500", "--epochs", "3", "--space", "lr=loguniform(1e-3,3e-2)",
        "--trials", "2", "--population", "2", "--sampler-seed", "6",
        "--confirm-top", "1", "--confirm-seeds", "2"]  # fmt: skip


def _command(args, small_mnist, monkeypatch, capsys, interrupt_after=None):
    """The search command in this process; `interrupt_after=N` interrupts it after N epochs, before
    the Nth epoch's checkpoint is saved (as a kill would)."""
    from experiments import search

    class Interrupting(search.ProgressPrinter):
        calls = 0

        def __call__(self, *args):
            super().__call__(*args)
            Interrupting.calls += 1
            if Interrupting.calls == interrupt_after:
                raise KeyboardInterrupt

    monkeypatch.setattr(search, "ProgressPrinter", Interrupting)
    return _processes.run_in_process(
        ["experiments.search", *args], small_mnist[-1], monkeypatch, capsys
    )


@pytest.fixture(scope="module")
def reference(tmp_path_factory, small_mnist):
    out = tmp_path_factory.mktemp("reference") / "search"
    with pytest.MonkeyPatch.context() as monkeypatch:
        capsys = _Capture()
        done = _command([*small_mnist, *ARGS, "--out", str(out)], small_mnist, monkeypatch, capsys)
    assert done.returncode == 0, done.stderr
    return out, done


class _Capture:  # capsys for a module fixture: the command's output is returned, not printed
    def readouterr(self):
        return "", ""


def _trials(folder):
    trials = json.loads((folder / "results.json").read_text())["trials"]
    return [{k: v for k, v in t.items() if k != "checkpoints"} for t in trials]


def test_the_command_searches_prunes_confirms_and_reports(reference):
    out, done = reference
    results = json.loads((out / "results.json").read_text())
    trials = results["trials"]
    # Trial 1 was pruned after epoch 1 (successive halving: worse than trial 0) and trained no
    # further inside the running program; trial 0 trained to the end.
    assert [t["state"] for t in trials] == ["COMPLETE", "PRUNED"]
    assert [t["member_epochs"] for t in trials] == [3, 1] and trials[1]["pruned_at"] == 1
    assert {"program", "seeds", "checkpoints"} <= set(trials[0])
    assert results["member_epochs"] == 4 and results["confirmation"]["member_epochs"] == 6
    assert (out / "confirmation" / "report.md").is_file() and (out / "report.md").is_file()


def test_optuna_dashboard_opens_the_study_with_each_trials_program_seed_and_checkpoint(reference):
    """The dashboard's WSGI app on the search's default storage, its JSON API called in-process
    (no server, no socket): the study, its trials, their reports and user attributes."""
    from wsgiref.util import setup_testing_defaults

    dashboard = pytest.importorskip("optuna_dashboard")
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    out, _ = reference
    storage = JournalStorage(JournalFileBackend(str(out / "study.journal")))
    app = dashboard.wsgi(storage)

    def get(path):
        environ, status = {}, []
        setup_testing_defaults(environ)
        environ["PATH_INFO"] = path
        body = b"".join(app(environ, lambda code, headers, info=None: status.append(code)))
        assert status == ["200 OK"], (path, status, body[:200])
        return json.loads(body)

    (study,) = get("/api/studies")["study_summaries"]
    name = json.loads((out / "search.json").read_text())["settings"]["study_name"]
    assert study["study_name"] == name and study["directions"] == ["maximize"]
    detail = get(f"/api/studies/{study['study_id']}")
    trials = detail["trials"]
    assert [t["state"] for t in trials] == ["Complete", "Pruned"]
    assert [len(t["intermediate_values"]) for t in trials] == [3, 1]
    attrs = {a["key"]: a["value"] for a in trials[0]["user_attrs"]}
    assert attrs["program"] == "0" and attrs["seeds"] == "[0]"
    assert attrs["checkpoints"] == str(out / "population-0" / "checkpoints" / "program-0")
    assert {"program", "seeds", "checkpoints"} <= {a["key"] for a in detail["union_user_attrs"]}


def test_an_interrupted_search_resumes_to_the_uninterrupted_one(
    reference, tmp_path, small_mnist, monkeypatch, capsys
):
    out = tmp_path / "search"
    args = [*small_mnist, *ARGS, "--out", str(out)]
    # After epoch 2 of the population, its checkpoint of epoch 1 saved, that of epoch 2 not.
    assert _command(args, small_mnist, monkeypatch, capsys, interrupt_after=2).returncode == 130
    assert not (out / "results.json").exists()
    done = _command(["--resume", str(out)], small_mnist, monkeypatch, capsys)
    assert done.returncode == 0, done.stderr
    assert _trials(out) == _trials(reference[0])  # no trial lost, none told twice, same numbers
    confirmed = json.loads((out / "results.json").read_text())["confirmation"]
    assert confirmed == json.loads((reference[0] / "results.json").read_text())["confirmation"]
    # Finished, resumed again: it says so and writes only what is missing (report.md).
    (out / "report.md").unlink()
    kept = {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file() and p.name != ".lock"}
    done = _command(["--resume", str(out)], small_mnist, monkeypatch, capsys)
    assert done.returncode == 0 and f"was finished; wrote: {out / 'report.md'}\n" in done.stdout
    assert kept == {p: p.stat().st_mtime_ns for p in kept}


@pytest.mark.slow  # three searches: about a minute
def test_a_random_arm_trains_in_the_same_program_unpruned_is_reported_and_resumes(
    tmp_path, small_mnist, monkeypatch, capsys
):
    """`--random-arm 1`: each population has one more trial, asked by random search, trained to the
    end in the same program, and the report draws its curve from the same study. Interrupted
    mid-population and resumed, the study equals the uninterrupted one's."""
    args = [*small_mnist, *ARGS, "--random-arm", "1"]
    whole, cut = tmp_path / "whole", tmp_path / "cut"
    done = _command([*args, "--out", str(whole)], small_mnist, monkeypatch, capsys)
    assert done.returncode == 0, done.stderr
    results = json.loads((whole / "results.json").read_text())
    trials = results["trials"]
    assert [(t["arm"], t["program"]) for t in trials] == [("search", 0)] * 2 + [("random", 0)]
    assert trials[2]["state"] == "COMPLETE" and trials[2]["member_epochs"] == 3
    assert results["random_arm"]["member_epochs"] == 3
    assert results["member_epochs"] == sum(t["member_epochs"] for t in trials[:2])
    assert results["confirmation"]["seeds"] == [1003, 1004]  # past every trial's seed
    report = (whole / "report.md").read_text()
    assert "random search (this study's random arm) at as many member-epochs" in report
    assert "Random arm (random sampler, no pruner): 1 complete" in report
    done = _command([*args, "--out", str(cut)], small_mnist, monkeypatch, capsys, 2)
    assert done.returncode == 130
    assert _command(["--resume", str(cut)], small_mnist, monkeypatch, capsys).returncode == 0
    assert _trials(cut) == _trials(whole)


# The first worker, its population 1 held back until the joined worker has started one, so that
# both work on the study whatever their start-up times (no clock in the test).
_GATED_FIRST_WORKER = """
import pathlib, sys, time
from mnist_jax.search import engine, studies
train = engine._train_population
def gated(config, space, data, study, settings, search_dir, index, trials, **options):
    while index == 1 and not (pathlib.Path(search_dir) / "worker-1" / "population-0").exists():
        time.sleep(0.2)
    return train(config, space, data, study, settings, search_dir, index, trials, **options)
engine._train_population = gated
from experiments import cli, search
cli.run_main(search.main, search.PROG, sys.argv[1:])
"""


@pytest.mark.slow
def test_a_second_process_joins_the_study_and_trains_its_own_populations(tmp_path, small_mnist):
    """`--join SEARCH`: a second process on the same journal asks and trains its own populations
    in SEARCH/worker-1/; no trial is trained twice or lost, and only the first confirms."""
    import os
    import subprocess

    out = tmp_path / "search"
    args = [*small_mnist, "--validation-size", "500", "--epochs", "2", "--space",
            "lr=loguniform(1e-3,3e-2)", "--trials", "4", "--population", "1",
            "--confirm-top", "1", "--confirm-seeds", "2", "--out", str(out)]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(_processes.REPO)}
    first = subprocess.Popen(
        [sys.executable, "-c", _GATED_FIRST_WORKER, *args], cwd=_processes.REPO, env=env,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    try:
        while not (out / "study.journal").is_file():
            assert first.poll() is None, first.stdout.read()
        joined = subprocess.run(
            [sys.executable, "-m", "experiments.search", "--join", str(out)], cwd=_processes.REPO,
            env=env, capture_output=True, text=True, timeout=600,
        )  # fmt: skip
        output = first.communicate(timeout=600)[0]
    finally:
        first.kill()
    assert first.returncode == 0 and joined.returncode == 0, output + joined.stdout + joined.stderr
    assert "this process is worker 1" in joined.stdout and "confirmation" not in joined.stdout
    assert output.count("confirmation: 1 configuration(s)") == 1
    trials = json.loads((out / "results.json").read_text())["trials"]
    assert [t["number"] for t in trials] == [0, 1, 2, 3]
    assert {t["state"] for t in trials} <= {"COMPLETE", "PRUNED"}
    assert {t["worker"] for t in trials} == {0, 1}
    for trial in trials:  # each trained once, by the worker that asked it, in its own folder
        home = out if trial["worker"] == 0 else out / "worker-1"
        assert trial["checkpoints"].startswith(str(home / f"population-{trial['population']}"))
    assert len({t["seeds"][0] for t in trials}) == 4
    assert not (out / "worker-1" / "confirmation").exists()


def _told_by_params(config, space, data, study, settings, search_dir, index, trials, **_):
    """`_train_population` without training: each trial told a value of its parameters."""
    for trial in trials:
        study.tell(trial, sum(v if isinstance(v, float) else 0.0 for v in trial.params.values()))


def test_a_search_resumed_between_populations_asks_what_the_uninterrupted_one_asked(
    tmp_path, monkeypatch
):
    """A sampler's random state is in memory: seeded once, a resumed process restarted it and asked
    trial 4 what trial 0 had been asked. It is seeded per population (`population_samplers`).
    A journal a kill cut mid-line, with Optuna's lock left behind, is recovered."""
    from mnist_jax.config import TrainConfig
    from mnist_jax.search import engine, studies

    monkeypatch.setattr(engine, "_train_population", _told_by_params)
    space = parse_space(
        ["lr=loguniform(1e-4,1e-2) dropout=uniform(0,0.5) schedule=choice(constant|cosine)"]
    )

    def search(folder, trials, create=True):
        samplers = studies.population_samplers("tpe", 3, space)
        study = studies.open_study(None, folder, "s", samplers(0), None, create=create)
        settings = engine.SearchSettings(trials, population=4)
        engine.run_search(TrainConfig(), space, None, study, settings, folder, mesh=None,
                          sampler=samplers)  # fmt: skip
        return [t.params for t in study.get_trials()]

    (tmp_path / "a").mkdir(), (tmp_path / "b").mkdir()
    uninterrupted = search(tmp_path / "a", 16)  # 4 populations; TPE's own after 10 trials
    assert search(tmp_path / "b", 8) == uninterrupted[:8]  # killed after population 1
    with open(tmp_path / "b" / studies.JOURNAL_FILE, "ab") as journal:
        journal.write(b'{"op_code": 4, "worker_id": "x", "tri')  # a line a kill cut short
    (tmp_path / "b" / f"{studies.JOURNAL_FILE}.lock").symlink_to(tmp_path / "gone")
    studies.recover_journal(tmp_path / "b")
    assert search(tmp_path / "b", 16, create=False) == uninterrupted
    assert len({tuple(p.values()) for p in uninterrupted}) == 16


def test_a_random_arm_shares_the_study_unseen_by_the_search_and_resumes_as_it_was(
    tmp_path, monkeypatch
):
    """`random_arm=K`: K random-search trials per population, tagged `arm: random`, in the same
    study. The search's sampler does not see them: its arm asks what a search without them asks.
    Resumed between populations, both arms ask what the uninterrupted search asked."""
    from mnist_jax.config import TrainConfig
    from mnist_jax.search import engine, studies

    monkeypatch.setattr(engine, "_train_population", _told_by_params)
    space = parse_space(["lr=loguniform(1e-4,1e-2) dropout=uniform(0,0.5)"])

    def search(folder, trials, random_arm, create=True):
        samplers = studies.population_samplers("tpe", 3, space)
        study = studies.open_study(None, folder, "s", samplers(0), None, create=create)
        settings = engine.SearchSettings(trials, population=4, random_arm=random_arm)
        engine.run_search(TrainConfig(), space, None, study, settings, folder, mesh=None,
                          sampler=samplers, random_seed=3)  # fmt: skip
        return study.get_trials()

    for name in "abc":
        (tmp_path / name).mkdir()
    alone = search(tmp_path / "a", 16, 0)
    both = search(tmp_path / "b", 16, 2)  # 4 populations of 4 + 2
    arms = [(t.user_attrs["population"], t.user_attrs["arm"]) for t in both]
    assert arms == [(p, a) for p in range(4) for a in ["search"] * 4 + ["random"] * 2]
    searched = [t.params for t in both if t.user_attrs["arm"] == "search"]
    assert searched == [t.params for t in alone]  # TPE's own after 10 trials: it saw none of them
    randoms = [t.params for t in both if t.user_attrs["arm"] == "random"]
    assert len({tuple(p.values()) for p in randoms}) == 8
    search(tmp_path / "c", 8, 2)  # killed after population 1
    resumed = search(tmp_path / "c", 16, 2, create=False)
    assert [(t.params, t.user_attrs) for t in resumed] == [(t.params, t.user_attrs) for t in both]


def test_a_grid_search_trains_each_point_once_and_ends(tmp_path, monkeypatch):
    """Optuna's grid sampler calls `study.stop()` when its grid is done, which raises outside
    `study.optimize`: the search's grid sampler does not, and the search stops by its trials."""
    from mnist_jax.config import TrainConfig
    from mnist_jax.search import engine, studies

    monkeypatch.setattr(engine, "_train_population", _told_by_params)
    space = parse_space(["lr=choice(1e-3|3e-3|1e-2) schedule=choice(constant|cosine)"])
    assert studies.grid_size(space) == 6
    samplers = studies.population_samplers("grid", 0, space)
    study = studies.open_study(None, tmp_path, "g", samplers(0), None, create=True)
    engine.run_search(TrainConfig(), space, None, study, engine.SearchSettings(6, 4), tmp_path,
                      mesh=None, sampler=samplers)  # fmt: skip
    points = {tuple(t.params.values()) for t in study.get_trials() if t.state.name == "COMPLETE"}
    assert len(points) == 6


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--space", "lr=uniform(1,0)"], "invalid search space item"),
        (["--space", "lr=uniform(1e-3,1e-2)", "--learning-rate", "0.5"], "--learning-rate does"),
        (["--space", "lr=uniform(1e-3,1e-2)", "--confirm-seeds", "1"], "give 2+"),
        (["--space", "lr=choice(1e-3|3e-3)", "--sampler", "grid", "--trials", "3"], "2 points"),
        # A range is no grid, whether --trials is given or not (it was counted as two points).
        (["--space", "lr=loguniform(1e-4,1e-2)", "--sampler", "grid", "--trials", "8"], "a range"),
        (["--space", "lr=loguniform(1e-4,1e-2)", "--sampler", "grid"], "a range"),
        (["--space", "lr=uniform(1e-3,1e-2)", "--sampler-seed", "-1"], "--sampler-seed"),
        (["--space", "BINARY"], "cannot be read as a text file"),
        (["--resume", "."], "is it a search directory?"),
        (["--join", "."], "is it a search directory?"),
        (["--join", "a", "--resume", "b"], "give one"),
        (["--space", "lr=uniform(1e-3,1e-2)", "--storage", "nosuch://x"], "invalid --storage"),
        (["--space", "wd=loguniform(1e-6,1e-2)"], "invalid search space item"),
        (["--space", "lr=uniform(1e-3,1e-2)", "--validation", "test"], "--validation holdout"),
        (["--space", "lr=uniform(1e-3,1e-2)", "--random-arm", "-1"], "an integer >= 0"),
        # It asked trials without end (the hostile pass: a 22 MB journal in 5 minutes).
        (["--space", "lr=uniform(1e-3,1e-2)", "--random-arm", "9" * 20], "at most --population"),
    ],
)
def test_bad_spaces_and_storages_are_one_line_before_anything_is_created(
    flags, message, tmp_path, monkeypatch, capsys
):
    out = tmp_path / "search"
    (tmp_path / "space.bin").write_bytes(b"\x95\xff" * 100)
    flags = [str(tmp_path / "space.bin") if f == "BINARY" else f for f in flags]
    out_flags = [] if {"--resume", "--join"} & set(flags) else ["--out", str(out)]
    monkeypatch.chdir(tmp_path)
    done = _processes.run_in_process(
        ["experiments.search", *flags, *out_flags], tmp_path, monkeypatch, capsys
    )
    assert done.returncode == 2 and message in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1 and not out.exists()


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--space", "model=choice(mlp|nope_mod:Net)"], "does not import"),
        (["--space", "dropout=uniform(0.1,0.5)", "--model", "search_models:Plain"], "own dropout"),
        (["--space", "lr=uniform(1e-3,1e-2)", "--storage", "sqlite:////nonexistent/x.db"], "open"),
        (["--space", "lr=uniform(1e-3,1e-2)", "ENV"], "MNIST_JAX_NUM_PROCESSES is set"),
    ],
)
def test_models_values_storage_and_settings_that_cannot_serve_are_refused_before_the_folder(
    flags, message, tmp_path, small_mnist, monkeypatch, capsys
):
    """What is found only with the data (each model of the space built and checked, a rate given to
    a model that keeps its own dropout, a storage opened) still comes before any folder."""
    (tmp_path / "search_models.py").write_text(
        "import flax.linen as nn\n\n\nclass Plain(nn.Module):\n    num_classes: int = 10\n\n"
        "    @nn.compact\n    def __call__(self, x, train=False):\n"
        "        return nn.Dense(self.num_classes)(x)\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    if "ENV" in flags:
        monkeypatch.setenv("MNIST_JAX_NUM_PROCESSES", "2")
    out = tmp_path / "search"
    args = [*small_mnist, "--validation-size", "500", *(f for f in flags if f != "ENV")]
    done = _processes.run_in_process(
        ["experiments.search", *args, "--out", str(out)], small_mnist[-1], monkeypatch, capsys
    )
    assert done.returncode == 2 and message in done.stderr, done.stderr
    assert len(done.stderr.strip().splitlines()) == 1 and not out.exists()


def test_without_optuna_the_command_says_how_to_get_it(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "optuna", None)
    done = _processes.run_in_process(
        ["experiments.search", "--space", "lr=uniform(0,1)"], tmp_path, monkeypatch, capsys
    )
    assert done.returncode == 2 and "pip install -e '.[search]'" in done.stderr


def test_joining_a_search_whose_sqlite_study_is_gone_refuses_and_creates_no_database(
    tmp_path, small_mnist, monkeypatch, capsys
):
    """Opening a missing SQLite file made an empty database before the study was found missing."""
    from mnist_jax.config import TrainConfig

    search_dir, database = tmp_path / "search", tmp_path / "study.db"
    search_dir.mkdir()
    settings = {"space": "lr=uniform(0.001,0.01)", "trials": 2, "population": 1,
                "seeds_per_trial": 1, "sampler": "random", "sampler_seed": 0, "pruner": "none",
                "reduction_factor": 4, "storage": f"sqlite:///{database}", "confirm_top": 1,
                "confirm_seeds": 2, "random_arm": 0, "study_name": "search-gone"}  # fmt: skip
    config = TrainConfig(dataset="small-mnist", validation="holdout", validation_size=500)
    record = {"config": config.to_dict(), "settings": settings}
    (search_dir / "search.json").write_text(json.dumps(record))
    for flag in ("--join", "--resume"):
        done = _processes.run_in_process(
            ["experiments.search", flag, search_dir, *small_mnist[2:]], small_mnist[-1],
            monkeypatch, capsys,
        )  # fmt: skip
        assert done.returncode == 2 and str(database) in done.stderr, done.stderr
        assert len(done.stderr.strip().splitlines()) == 1
        assert not database.exists() and [p.name for p in search_dir.iterdir()] == ["search.json"]


def test_new_settings_from_python_refuses_what_the_flags_would():
    """`new_settings` is the library's check, not argparse's: a zero population or a range on the
    grid is a ConfigError from Python too, and a default trial count is cut to the grid's size."""
    from mnist_jax.config import TrainConfig
    from mnist_jax.errors import ConfigError
    from mnist_jax.search import directory
    from mnist_jax.search.space import parse_space

    config = TrainConfig(validation="holdout")
    values = {
        "trials": 8,
        "population": 4,
        "seeds_per_trial": 1,
        "sampler": "grid",
        "sampler_seed": 0,
        "pruner": "none",
        "reduction_factor": 4,
        "storage": None,
        "confirm_top": 2,
        "confirm_seeds": 4,
        "random_arm": 0,
    }
    grid = parse_space(["lr=choice(1e-3|3e-3)"])
    settings = directory.new_settings(config, grid, values, trials_given=False)
    assert settings["trials"] == 2 and parse_space([settings["space"]]) == grid
    with pytest.raises(ConfigError, match="the grid has only 2 points"):
        directory.new_settings(config, grid, values)
    with pytest.raises(ConfigError, match="--population 0: expected an integer >= 1"):
        directory.new_settings(config, grid, {**values, "population": 0})
    with pytest.raises(ConfigError, match="is a range"):
        directory.new_settings(config, parse_space(["lr=uniform(1e-3,1e-2)"]), values)
