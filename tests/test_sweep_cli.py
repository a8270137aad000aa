"""`python -m experiments.sweep`: a small real sweep end to end (2 seeds x 2 learning rates in 2
programs), its files and printed table checked against the members it wrote; every bad-input case
is one line and exit status 2."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import scipy.stats

from experiments import sweep, sweep_output
from experiments.cli import run_main

REPO = Path(__file__).resolve().parents[1]
SWEEP_ARGS = [
    "--seeds",
    "0-1",
    "--learning-rate",
    "1e-3,3e-3",
    "--epochs",
    "2",
    "--members-per-program",
    "2",
]
MEMBER_KEYS = {
    "seed",
    "learning_rate",
    "dropout_rate",
    "hidden_sizes",
    "model",
    "test_accuracy",
    "test_loss",
    "history",
    "diverged_epoch",
}


def run_cli(argv, capsys):
    with pytest.raises(SystemExit) as exit_info:
        run_main(sweep.main, sweep.PROG, argv)
    return exit_info.value.code, capsys.readouterr()


@pytest.fixture(scope="module")
def small_sweep(tmp_path_factory, mnist_dir):
    out = tmp_path_factory.mktemp("sweeps") / "sweep"
    env = dict(os.environ, MNIST_JAX_DATA=str(mnist_dir))
    proc = subprocess.run(
        [sys.executable, "-m", "experiments.sweep", *SWEEP_ARGS, "--out", str(out)],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr
    return proc, out


@pytest.mark.slow
def test_small_sweep_writes_every_file_and_prints_the_table(small_sweep):
    proc, out = small_sweep
    for name in ["sweep.json", "members.json", "summary.json", *sweep_output.PLOT_FILES]:
        assert (out / name).is_file(), name
    for name in sweep_output.PLOT_FILES:
        assert (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == ["program-0", "program-1"]
    assert "programs: 2" in proc.stdout
    assert "program 1 epoch   2/2:" in proc.stdout
    assert "test accuracy over seeds:" in proc.stdout and "ensemble" in proc.stdout
    record = json.loads((out / "sweep.json").read_text())
    assert record["devices"]["process_count"] == 1 and record["dataset"]["fingerprint"]
    assert len(record["members"]) == 4 and record["config"]["epochs"] == 2


@pytest.mark.slow
def test_summary_statistics_are_those_of_the_members_written(small_sweep):
    proc, out = small_sweep
    members = json.loads((out / "members.json").read_text())
    summary = json.loads((out / "summary.json").read_text())
    assert len(members) == 4 and all(set(m) >= MEMBER_KEYS for m in members)
    assert all(len(m["history"]) == 2 and m["diverged_epoch"] is None for m in members)
    assert {"wall_seconds", "compile_seconds", "examples_per_second_per_member"} <= set(
        summary["timing"]
    )
    rows = summary["configurations"]
    assert [r["learning_rate"] for r in rows] == [1e-3, 3e-3]
    for row in rows:
        values = np.array(
            [m["test_accuracy"] for m in members if m["learning_rate"] == row["learning_rate"]]
        )
        stats = row["test_accuracy"]
        half = scipy.stats.t.ppf(0.975, 1) * values.std(ddof=1) / np.sqrt(2)
        assert stats["n"] == 2
        np.testing.assert_allclose(
            [stats["mean"], stats["std"], stats["min"], stats["max"]],
            [values.mean(), values.std(ddof=1), values.min(), values.max()],
        )
        np.testing.assert_allclose(
            [stats["ci95_low"], stats["ci95_high"]], [values.mean() - half, values.mean() + half]
        )
        assert 0.9 < row["ensemble_accuracy"] <= 1 and row["ensemble_size"] == 2
        assert (
            f"{stats['mean']:.4f}" in proc.stdout
            and f"{row['ensemble_accuracy']:.4f}" in proc.stdout
        )


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--seeds", "3-1"], "goes down"),
        (["--seeds", "0,x"], "is not N or N-M"),
        (["--learning-rate", ""], "empty"),
        (["--dropout", "0.1,0.1"], "repeat"),
        (["--epochs", "-1"], "epochs"),
        (["--hidden", "128,0"], "positive"),
        (["--members-per-program", "0"], "--members-per-program"),
        (["--keep", "0"], "--keep"),
        (["--resume", "/nonexistent/sweep"], "does not exist"),
    ],
)
def test_bad_flags_are_one_line_and_exit_2(argv, message, capsys, tmp_path):
    code, captured = (
        run_cli([*argv, "--out", str(tmp_path / "out")], capsys)
        if "--resume" not in argv
        else run_cli(argv, capsys)
    )
    assert code == 2
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], captured.err
    assert not (tmp_path / "out").exists()


def test_resume_refuses_flags_that_would_change_the_sweep(capsys, tmp_path):
    code, captured = run_cli(["--resume", str(tmp_path), "--seeds", "0-3"], capsys)
    assert code == 2 and "drop --seeds" in captured.err
    assert len(captured.err.strip().splitlines()) == 1


def test_an_occupied_out_folder_is_refused_and_left_untouched(capsys, tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    code, captured = run_cli(["--seeds", "0", "--out", str(tmp_path)], capsys)
    assert code == 2 and "already holds other files" in captured.err
    assert len(captured.err.strip().splitlines()) == 1
    assert [p.name for p in tmp_path.iterdir()] == ["notes.txt"]
    assert (tmp_path / "notes.txt").read_text() == "mine"


def test_a_sweep_of_two_models_plans_two_programs_and_reports_a_row_per_model(tmp_path, capsys):
    from mnist_jax.data.fake import write_fake_dataset

    write_fake_dataset(tmp_path / "tiny", num_train=96, num_test=40, shape=(28, 28))
    argv = ["--dataset", "tiny", "--data-dir", str(tmp_path / "tiny"), "--model", "mlp,cnn"]
    argv += ["--seeds", "0-1", "--epochs", "1", "--batch-size", "32", "--no-tensorboard"]
    code, out = run_cli([*argv, "--out", str(tmp_path / "sweep")], capsys)
    assert code == 0, out.err
    assert "program 0: mlp hidden 128,128, 2 members" in out.out
    assert "program 1: cnn, 2 members" in out.out
    record = json.loads((tmp_path / "sweep" / "sweep.json").read_text())
    assert [p["model"] for p in record["programs"]] == ["mlp", "cnn"]
    assert record["models"]["cnn"]["parameters"] == 824_458
    rows = json.loads((tmp_path / "sweep" / "summary.json").read_text())["configurations"]
    assert [row["model"] for row in rows] == ["mlp", "cnn"]
    assert [m["model"] for m in json.loads((tmp_path / "sweep" / "members.json").read_text())] == [
        "mlp",
        "mlp",
        "cnn",
        "cnn",
    ]
