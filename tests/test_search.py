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
        "--trials", "2", "--population", "2", "--sampler-seed", "0",
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


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--space", "lr=uniform(1,0)"], "invalid search space item"),
        (["--space", "lr=uniform(1e-3,1e-2)", "--storage", "nosuch://x"], "invalid --storage"),
        (["--space", "wd=loguniform(1e-6,1e-2)"], "invalid search space item"),
        (["--space", "lr=uniform(1e-3,1e-2)", "--validation", "test"], "--validation holdout"),
    ],
)
def test_bad_spaces_and_storages_are_one_line_before_anything_is_created(
    flags, message, tmp_path, monkeypatch, capsys
):
    out = tmp_path / "search"
    done = _processes.run_in_process(
        ["experiments.search", *flags, "--out", str(out)], tmp_path, monkeypatch, capsys
    )
    assert done.returncode == 2 and message in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1 and not out.exists()


def test_without_optuna_the_command_says_how_to_get_it(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "optuna", None)
    done = _processes.run_in_process(
        ["experiments.search", "--space", "lr=uniform(0,1)"], tmp_path, monkeypatch, capsys
    )
    assert done.returncode == 2 and "pip install -e '.[search]'" in done.stderr
