"""Every command once, end to end, on a tiny dataset, in this process: the smoke tier of
`make test-fast`. Each command's behaviour is tested in depth in its own file; this one makes sure
none of them is broken by an edit, in seconds."""

import contextlib
import io
import json

import pytest

from experiments import baseline, bench, compare, evaluate, scaling_bench, sweep, sweep_bench
from experiments.cli import run_main

TINY = ["--epochs", "2", "--batch-size", "64"]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> list[str]:
    from mnist_jax.data.fake import write_fake_dataset

    folder = tmp_path_factory.mktemp("tiny")
    write_fake_dataset(folder, num_train=256, num_test=64, shape=(28, 28))
    return ["--dataset", "tiny", "--data-dir", str(folder)]


def command(module, argv) -> tuple[int, str, str]:
    """Run `python -m experiments.MODULE ARGV` in this process: (exit status, stdout, stderr)."""
    out, err = io.StringIO(), io.StringIO()
    with (
        contextlib.redirect_stdout(out),
        contextlib.redirect_stderr(err),
        pytest.raises(SystemExit) as exit_info,
    ):
        run_main(module.main, f"python -m {module.__name__}", [str(a) for a in argv])
    return exit_info.value.code, out.getvalue(), err.getvalue()


@pytest.fixture(scope="module")
def runs(tiny, tmp_path_factory):
    """Two baseline runs of different seeds."""
    root = tmp_path_factory.mktemp("runs")
    for seed in (0, 1):
        argv = [*tiny, *TINY, "--seed", seed, "--out", root / f"seed{seed}", "--quiet"]
        status, _, err = command(baseline, argv)
        assert status == 0, err
    return root / "seed0", root / "seed1"


def test_baseline_trains_and_writes_its_run_directory(runs):
    for name in ("config.json", "metrics.json", "predictions.npz", "report.md", "checkpoints"):
        assert (runs[0] / name).exists(), name
    assert len(json.loads((runs[0] / "metrics.json").read_text())["history"]) == 2


def test_evaluate_reproduces_the_runs_test_accuracy(runs):
    status, out, err = command(evaluate, [runs[0]])
    assert status == 0, err
    accuracy = json.loads((runs[0] / "metrics.json").read_text())["test_accuracy"]
    assert f"test accuracy {accuracy:.4f}" in out


def test_compare_writes_its_comparison(runs, tmp_path):
    out = tmp_path / "comparison.md"
    status, printed, err = command(compare, [*runs, "--out", out])
    assert status == 0, err
    assert "McNemar" in out.read_text()


def test_sweep_trains_its_members_and_writes_their_summary(tiny, tmp_path):
    out = tmp_path / "sweep"
    argv = [*tiny, *TINY, "--seeds", "0-1", "--validation", "test", "--quiet", "--out", out]
    status, printed, err = command(sweep, argv)
    assert status == 0, err
    members = json.loads((out / "members.json").read_text())
    assert [m["seed"] for m in members] == [0, 1]


def test_bench_prints_its_figures(tiny, tmp_path):
    out = tmp_path / "figures.json"
    status, printed, err = command(bench, [*tiny, *TINY, "--json", out])
    assert status == 0, err
    assert json.loads(out.read_text())["steady_epoch_seconds"] > 0


def test_scaling_bench_writes_its_table(tiny, tmp_path):
    out = tmp_path / "scaling"
    argv = [*tiny, "--validation", "test", "--members", "1", "--repeats", "1", "--out", out]
    status, printed, err = command(scaling_bench, [*argv, "--batch-size", "64"])
    assert status == 0, err
    assert (out / "scaling.md").is_file()


def test_sweep_bench_checks_its_counts():
    # Its run starts a sweep and baseline processes (tests/test_bench.py, slow tier); here its
    # flags, which every run passes through.
    status, printed, err = command(sweep_bench, ["--members", "0"])
    assert status == 2 and len(err.splitlines()) == 1, err
