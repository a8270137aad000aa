"""Killed runs resume bitwise: `experiments.baseline` killed with SIGKILL at several points, then
`--resume`, ends with the parameters and history of the uninterrupted run; `experiments.evaluate`
re-computes what the run wrote.

The runs train on the real MNIST: the kill points are timed against its epochs (about half a second
each), and one of them lands inside an epoch's training, which on the small cut lasts a few
milliseconds. Refusals that come before any training run in this process
(`_processes.run_in_process`).
"""

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import _processes
import jax
import numpy as np
import pytest

from mnist_jax.checkpoint import list_checkpoints, load_run

REPO = Path(__file__).resolve().parents[1]
EPOCHS = "3"
pytestmark = pytest.mark.slow


def command(*args):
    return [sys.executable, "-m", *args]


def environment(mnist_dir):
    return dict(os.environ, MNIST_JAX_DATA=str(mnist_dir), PYTHONUNBUFFERED="1")


def attempt(args, mnist_dir, timeout=600):
    """`python -m *args`, its output captured, whatever its exit status."""
    return subprocess.run(
        command(*args),
        cwd=REPO,
        env=environment(mnist_dir),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def run(args, mnist_dir):
    proc = attempt(args, mnist_dir)
    assert proc.returncode == 0, proc.stderr
    return proc


def kill_when(out: Path, trigger: str, delay: float, mnist_dir) -> None:
    """Start a training run; SIGKILL it `delay` seconds after a stdout line containing `trigger`."""
    _processes.kill_when(
        ["experiments.baseline", "--epochs", EPOCHS, "--out", str(out)],
        environment(mnist_dir),
        trigger,
        delay,
    )


def kill_after_checkpoint(out: Path, epoch: int, mnist_dir) -> None:
    """Start a training run; SIGKILL it as soon as its checkpoint of `epoch` is committed."""
    committed = (out / "checkpoints" / str(epoch)).is_dir
    proc = subprocess.Popen(
        command("experiments.baseline", "--epochs", EPOCHS, "--out", str(out)),
        cwd=REPO,
        env=environment(mnist_dir),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 300
        while not committed():
            if proc.poll() is not None and not committed():
                pytest.fail(f"the run ended (status {proc.returncode}) without checkpoint {epoch}")
            assert time.monotonic() < deadline, f"checkpoint {epoch} never came"
            time.sleep(0.01)
    finally:
        proc.kill()
        proc.wait(timeout=60)


def without_seconds(history):
    return [{k: v for k, v in record.items() if k != "seconds"} for record in history]


def assert_same_run(a: Path, b: Path) -> None:
    run_a, run_b = load_run(a, "latest"), load_run(b, "latest")
    assert run_a.epoch == run_b.epoch == int(EPOCHS)
    for x, y in zip(
        jax.tree_util.tree_leaves(jax.device_get(run_a.state)),
        jax.tree_util.tree_leaves(jax.device_get(run_b.state)),
    ):
        assert np.array_equal(x, y)
    metrics_a = json.loads((a / "metrics.json").read_text())
    metrics_b = json.loads((b / "metrics.json").read_text())
    assert without_seconds(metrics_a["history"]) == without_seconds(metrics_b["history"])
    for key in ("test_loss", "test_accuracy", "confusion_matrix", "top_errors"):
        assert metrics_a[key] == metrics_b[key], key


@pytest.fixture(scope="module")
def reference(tmp_path_factory, mnist_dir):
    out = tmp_path_factory.mktemp("reference") / "run"
    run(["experiments.baseline", "--epochs", EPOCHS, "--out", str(out)], mnist_dir)
    return out


@pytest.mark.parametrize(
    "trigger, delay",
    [
        ("run directory:", 0.0),  # before the first checkpoint: resume starts from scratch
        ("epoch   1:", 0.0),  # right after epoch 1's line: its save is just starting
        ("epoch   1:", 0.25),  # during epoch 2's training, epoch 1 saved in the background
        ("epoch   2:", 0.05),  # during the save of epoch 2
    ],
)
def test_a_run_killed_at_any_point_resumes_to_the_uninterrupted_result(
    trigger, delay, reference, tmp_path, mnist_dir
):
    out = tmp_path / "run"
    kill_when(out, trigger, delay, mnist_dir)
    assert (out / "config.json").is_file()
    assert not (out / "metrics.json").exists()
    run(["experiments.baseline", "--resume", str(out)], mnist_dir)
    assert_same_run(reference, out)


def test_resume_falls_back_past_a_damaged_newest_checkpoint(reference, tmp_path, mnist_dir):
    out = tmp_path / "run"
    kill_after_checkpoint(out, 3, mnist_dir)  # let epoch 3's checkpoint land before the kill
    assert list_checkpoints(out)[-1] == 3
    damaged = max(
        (p for p in (out / "checkpoints" / "3" / "state").rglob("*") if p.is_file()),
        key=lambda p: p.stat().st_size,
    )
    damaged.write_bytes(damaged.read_bytes()[: damaged.stat().st_size // 2])
    proc = run(["experiments.baseline", "--resume", str(out)], mnist_dir)
    assert "warning:" in proc.stderr and "epoch 3" in proc.stderr
    assert_same_run(reference, out)


def test_evaluate_reproduces_the_metrics_the_run_wrote(reference, mnist_dir):
    proc = run(["experiments.evaluate", str(reference), "--checkpoint", "latest"], mnist_dir)
    written = json.loads((reference / "metrics.json").read_text())
    assert f"test loss {written['test_loss']:.4f}" in proc.stdout
    assert f"test accuracy {written['test_accuracy']:.4f}" in proc.stdout
    evaluated = json.loads((reference / "evaluation" / "latest" / "metrics.json").read_text())
    for key in (
        "test_loss",
        "test_accuracy",
        "per_class_accuracy",
        "confusion_matrix",
        "top_errors",
    ):
        assert evaluated[key] == written[key], key
    assert (reference / "evaluation" / "latest" / "confusion_matrix.png").is_file()


def test_evaluate_run_from_python_gives_the_best_checkpoints_numbers(
    reference, tmp_path, mnist_dir
):
    """The library call the command makes: the best checkpoint's test accuracy is the one the run
    recorded for its best epoch, written into the folder asked for."""
    from mnist_jax.run import evaluate_run

    evaluation = evaluate_run(reference, "best", data_dir=mnist_dir, out=tmp_path / "best")
    written = json.loads((reference / "metrics.json").read_text())
    assert evaluation.epoch == written["best_epoch"]
    assert evaluation.metrics["test_accuracy"] == written["best_test_accuracy"]
    assert (tmp_path / "best" / "metrics.json").is_file() and evaluation.written


def test_resume_refuses_flags_that_would_change_the_run(reference, mnist_dir, monkeypatch, capsys):
    args = ["experiments.baseline", "--resume", reference, "--epochs", "5"]
    proc = _processes.run_in_process(args, mnist_dir, monkeypatch, capsys)
    assert proc.returncode == 2 and "drop --epochs" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1


def test_evaluate_names_an_architecture_mismatch_in_one_line_and_keeps_the_files(
    reference, tmp_path, mnist_dir, monkeypatch, capsys
):
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(reference, copy)
    record = json.loads((copy / "config.json").read_text())
    record["config"]["hidden_sizes"] = [64, 64]
    (copy / "config.json").write_text(json.dumps(record))
    before = sorted(str(p.relative_to(copy)) for p in copy.rglob("*"))
    proc = _processes.run_in_process(["experiments.evaluate", copy], mnist_dir, monkeypatch, capsys)
    assert proc.returncode == 2
    assert "hidden_sizes=[128, 128]" in proc.stderr and "hidden_sizes=[64, 64]" in proc.stderr
    assert len([line for line in proc.stderr.splitlines() if "error" in line]) == 1
    assert sorted(str(p.relative_to(copy)) for p in copy.rglob("*")) == before


@pytest.mark.parametrize(
    "tool, field, value",
    [
        ("experiments.evaluate", "seed", 7),
        ("experiments.baseline", "learning_rate", 0.5),  # --resume
        ("experiments.baseline", "dropout_rate", 0.5),
    ],
)
def test_a_config_json_that_differs_from_the_checkpoints_is_refused_and_the_files_kept(
    reference, tmp_path, mnist_dir, monkeypatch, capsys, tool, field, value
):
    """config.json edited, or copied from another run: the checkpoints record the configuration
    they were trained with, so resuming or evaluating does not pass one run off as the other."""
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(reference, copy)
    record = json.loads((copy / "config.json").read_text())
    saved = record["config"][field]
    record["config"][field] = value
    (copy / "config.json").write_text(json.dumps(record))
    files = lambda: {
        p: p.read_bytes() for p in copy.rglob("*") if p.is_file() and p.name != ".lock"
    }
    before = files()
    args = [str(copy), "--out", str(tmp_path / "eval")] if "evaluate" in tool else []
    args = args or ["--resume", str(copy)]
    proc = _processes.run_in_process([tool, *args], mnist_dir, monkeypatch, capsys)
    assert proc.returncode == 2, proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert f"{field}={saved!r}" in proc.stderr and f"{field}={value!r}" in proc.stderr
    assert files() == before  # (.lock names the process that last held the folder)


def test_a_config_json_whose_dataset_record_is_not_an_object_is_one_line(
    reference, tmp_path, mnist_dir, monkeypatch, capsys
):
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(reference, copy)
    record = json.loads((copy / "config.json").read_text())
    record["dataset"] = "x"
    (copy / "config.json").write_text(json.dumps(record))
    for args in (
        ["experiments.evaluate", str(copy)],
        ["experiments.baseline", "--resume", str(copy)],
    ):
        proc = _processes.run_in_process(args, mnist_dir, monkeypatch, capsys)
        assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
        assert len(proc.stderr.strip().splitlines()) == 1 and "damaged" in proc.stderr
