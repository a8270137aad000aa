"""`python -m experiments.baseline`: a short real run end to end, and every bad-input case."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from experiments import baseline
from experiments.cli import run_main

REPO = Path(__file__).resolve().parents[1]
METRIC_KEYS = {
    "test_loss",
    "test_accuracy",
    "per_class_accuracy",
    "history",
    "confusion_matrix",
    "top_errors",
    "train_seconds",
    "compile_seconds",
    "examples_per_second",
    "seed",
}
PLOTS = [
    "samples_per_class.png",
    "training_curves.png",
    "learning_rate.png",
    "confusion_matrix.png",
    "top_errors.png",
    "sample_prediction.png",
]


def run_cli(argv, capsys):
    with pytest.raises(SystemExit) as exit_info:
        run_main(baseline.main, "python -m experiments.baseline", argv)
    return exit_info.value.code, capsys.readouterr()


@pytest.fixture(scope="module")
def short_run(tmp_path_factory, mnist_dir):
    out = tmp_path_factory.mktemp("runs") / "run"
    env = dict(os.environ, MNIST_JAX_DATA=str(mnist_dir))
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "experiments.baseline",
            "--epochs",
            "2",
            "--target-accuracy",
            "0.5",  # reached at epoch 1: its time to target is reported
            "--out",
            str(out),
        ],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    return proc, out


@pytest.mark.slow
def test_short_real_run_exits_cleanly_and_reports_test_accuracy(short_run):
    proc, _ = short_run
    assert proc.returncode == 0, proc.stderr
    assert "test loss" in proc.stdout and "test accuracy" in proc.stdout
    assert "epoch   2:" in proc.stdout


@pytest.mark.slow
def test_short_real_run_writes_every_file_of_the_run_directory(short_run):
    _, out = short_run
    for name in ["config.json", "metrics.json", "report.md", "predictions.npz", *PLOTS]:
        assert (out / name).is_file(), name
    for name in PLOTS:
        assert (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not list(out.glob(".*.tmp"))


@pytest.mark.slow
def test_short_real_run_metrics_have_the_stable_keys_and_sensible_values(short_run):
    _, out = short_run
    metrics = json.loads((out / "metrics.json").read_text())
    assert set(metrics) >= METRIC_KEYS
    assert metrics["test_accuracy"] > 0.95 and len(metrics["history"]) == 2
    assert sum(map(sum, metrics["confusion_matrix"])) == 10_000
    assert len(metrics["top_errors"]) == 5 and len(metrics["per_class_accuracy"]) == 10
    assert metrics["seed"] == 0


@pytest.mark.slow
def test_short_real_run_keeps_its_predictions_and_the_wilson_interval(short_run):
    from mnist_jax.predictions import Predictions
    from mnist_jax.stats import wilson_interval

    _, out = short_run
    metrics = json.loads((out / "metrics.json").read_text())
    predictions = Predictions.load(out / "predictions.npz")
    correct = int(predictions.correct.sum())
    assert predictions.num_models == 1 and predictions.labels.shape == (10_000,)
    assert correct == metrics["test_correct"] == round(metrics["test_accuracy"] * 10_000)
    assert metrics["test_accuracy_wilson95"] == pytest.approx(wilson_interval(correct, 10_000))
    low, high = metrics["test_accuracy_wilson95"]
    report = (out / "report.md").read_text()
    assert f"[{low:.4f}, {high:.4f}]" in report and "(Wilson)" in report
    assert "validation on the test set" in report  # the notebook's choice, named


@pytest.mark.slow
def test_short_real_run_reports_its_time_to_target_where_it_prints_its_accuracy(short_run):
    proc, out = short_run
    record = json.loads((out / "metrics.json").read_text())["time_to_target"]
    assert record["reached"] and record["epoch"] == 1
    assert record["seconds"] == pytest.approx(
        json.loads((out / "metrics.json").read_text())["history"][0]["seconds"]
    )
    line = f"reached the target 0.5000 at epoch 1, after {record['seconds']:.2f} s of training"
    assert line in proc.stdout
    assert line in (out / "report.md").read_text()


@pytest.mark.slow
def test_short_real_run_config_records_versions_devices_and_data_fingerprint(short_run):
    _, out = short_run
    record = json.loads((out / "config.json").read_text())
    assert record["config"]["epochs"] == 2 and record["config"]["hidden_sizes"] == [128, 128]
    assert record["dataset"]["fingerprint"] and record["versions"]["jax"]
    assert record["devices"]["count"] >= 1


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--epochs", "-1"], "epochs"),
        (["--batch-size", "0"], "batch_size"),
        (["--hidden", "128,-5"], "hidden sizes"),
        (["--hidden", "abc"], "hidden sizes"),
        (["--dropout", "1.0"], "dropout_rate"),
        (["--learning-rate", "nan"], "learning_rate"),
        (["--validation", "train"], "--validation"),
        (["--no-such-flag"], "unrecognized"),
    ],
)
def test_bad_flags_end_with_one_line_and_status_2(argv, message, capsys):
    code, out = run_cli(argv, capsys)
    assert code == 2
    assert message in out.err and len(out.err.strip().splitlines()) == 1


def test_unknown_dataset_ends_with_one_line_and_status_2(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("MNIST_JAX_DATA", str(tmp_path))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    code, out = run_cli(["--dataset", "no_such_set", "--out", str(tmp_path / "run")], capsys)
    assert code == 2 and "no_such_set" in out.err and len(out.err.strip().splitlines()) == 1
    assert not (tmp_path / "run").exists()


def test_missing_data_dir_ends_with_one_line_and_status_2(tmp_path, capsys):
    code, out = run_cli(
        ["--data-dir", str(tmp_path / "nowhere"), "--out", str(tmp_path / "run")], capsys
    )
    assert code == 2 and "nowhere" in out.err and len(out.err.strip().splitlines()) == 1


def test_an_output_folder_holding_another_run_is_refused_and_left_untouched(
    tmp_path, small_mnist, capsys
):
    earlier = tmp_path / "earlier"
    earlier.mkdir()
    (earlier / "config.json").write_text('{"earlier": true}')
    (earlier / "metrics.json").write_text('{"test_accuracy": 0.5}')
    code, out = run_cli([*small_mnist, "--out", str(earlier)], capsys)
    assert code == 2 and "another run" in out.err
    assert (earlier / "config.json").read_text() == '{"earlier": true}'
    assert sorted(p.name for p in earlier.iterdir()) == ["config.json", "metrics.json"]


def test_help_lists_the_shared_flag_names(capsys):
    code, out = run_cli(["--help"], capsys)
    assert code == 0
    for flag in [
        "--epochs",
        "--batch-size",
        "--learning-rate",
        "--dropout",
        "--hidden",
        "--seed",
        "--dataset",
        "--data-dir",
        "--validation",
        "--out",
        "--quiet",
    ]:
        assert flag in out.out
