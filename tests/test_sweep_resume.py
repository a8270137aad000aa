"""Killed sweeps resume bitwise: `run_sweep(start=...)` from saved program states, and
`experiments.sweep` killed with SIGKILL at several points then `--resume`d, end with the members,
histories and final stacked states of the uninterrupted sweep; a damaged newest checkpoint falls
back to the previous one with a one-line warning. The commands train on a small cut of the real
MNIST."""

import contextlib
import io
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import _processes
import jax
import numpy as np
import pytest
from test_sweep import synthetic_data

from experiments import sweep
from experiments.cli import run_main
from mnist_jax.config import TrainConfig
from mnist_jax.sweep import expand_members, member_mesh, run_sweep
from mnist_jax.sweep.checkpoint import Checkpointer, program_store, sweep_start

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
    "--validation-size",  # held out from the small cut's 2,000 training images
    "500",
]


class rounded:
    """Equal to any structure of the same shape, keys, integers and strings whose real numbers are
    within float32 rounding (1e-6 relative) of these."""

    def __init__(self, value):
        self.value = value

    def __eq__(self, other) -> bool:
        return _close(self.value, other)

    def __repr__(self) -> str:
        return repr(self.value)


def _close(a, b) -> bool:
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(_close(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return isinstance(b, list) and len(a) == len(b) and all(map(_close, a, b))
    if isinstance(a, float) and isinstance(b, float):
        return b == pytest.approx(a, rel=1e-6)
    return a == b and type(a) is type(b)


def without_seconds(history):
    return [{k: v for k, v in record.items() if k != "seconds"} for record in history]


# Library: run_sweep(start=...) --------------------------------------------------------------------


@pytest.mark.slow
def test_run_sweep_started_from_checkpoints_equals_the_uninterrupted_sweep(tmp_path):
    data = synthetic_data()
    config = TrainConfig(hidden_sizes=(32,), batch_size=64, epochs=3, eval_batch_size=250)
    members = expand_members([0, 1, 2], [1e-3, 3e-3], [0.25], [(32,)])
    with Checkpointer(tmp_path / "a", config, num_classes=10, keep_latest=2) as checkpointer:
        reference = run_sweep(
            config, members, data, members_per_program=4, callbacks=[checkpointer]
        )
    assert checkpointer.saved == [(0, 1), (0, 2), (0, 3), (1, 1), (1, 2), (1, 3)]
    kept = program_store(tmp_path / "a", 0).directory.iterdir()
    assert sorted(p.name for p in kept) == ["2", "3"]

    shutil.copytree(tmp_path / "a", tmp_path / "b")
    shutil.rmtree(
        program_store(tmp_path / "b", 1).directory / "3"
    )  # program 1 stopped after epoch 2
    restored = []
    mesh = member_mesh()
    start = sweep_start(
        tmp_path / "b",
        config,
        num_classes=10,
        mesh=mesh,
        on_restore=lambda program, info: restored.append((program.index, info["epoch"])),
    )
    with Checkpointer(tmp_path / "b", config, num_classes=10, keep_latest=2) as checkpointer:
        resumed = run_sweep(
            config,
            members,
            data,
            members_per_program=4,
            callbacks=[checkpointer],
            start=start,
            mesh=mesh,
        )
    assert restored == [(0, 3), (1, 2)]
    assert checkpointer.saved == [(1, 3)]  # program 0 was complete: restored, not retrained
    for a, b in zip(reference.members, resumed.members):
        assert a.member == b.member and without_seconds(a.history) == without_seconds(b.history)
        for x, y in zip(jax.tree_util.tree_leaves(a.state), jax.tree_util.tree_leaves(b.state)):
            np.testing.assert_array_equal(x, y)
        np.testing.assert_array_equal(a.test_logits, b.test_logits)


# CLI: SIGKILL and --resume ------------------------------------------------------------------------


def environment():
    return dict(os.environ, PYTHONUNBUFFERED="1")


def run(args):
    proc = subprocess.run(
        [sys.executable, "-m", "experiments.sweep", *args],
        cwd=REPO,
        env=environment(),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr
    return proc


def kill_when(out: Path, trigger: str, delay: float, small_mnist) -> None:
    """Start the sweep and SIGKILL it `delay` seconds after a stdout line containing `trigger`."""
    _processes.kill_when(
        ["experiments.sweep", *SWEEP_ARGS, *small_mnist, "--out", str(out)],
        environment(),
        trigger,
        delay,
    )


def final_states(sweep_dir: Path) -> list[tuple[str, list]]:
    out = []
    for index in range(2):
        state, info = program_store(sweep_dir, index).restore("latest")
        assert info["epoch"] == 2
        out.append(
            (info["state_sha256"], [np.asarray(x) for x in jax.tree_util.tree_leaves(state)])
        )
    return out


def assert_same_sweep(a: Path, b: Path) -> None:
    members_a = json.loads((a / "members.json").read_text())
    members_b = json.loads((b / "members.json").read_text())
    assert len(members_a) == len(members_b) == 4
    for x, y in zip(members_a, members_b):
        x, y = dict(x), dict(y)
        assert without_seconds(x.pop("history")) == without_seconds(y.pop("history"))
        assert x == y
    for (digest_a, leaves_a), (digest_b, leaves_b) in zip(final_states(a), final_states(b)):
        assert digest_a == digest_b
        for x, y in zip(leaves_a, leaves_b):
            np.testing.assert_array_equal(x, y)
    summary_a = json.loads((a / "summary.json").read_text())["configurations"]
    summary_b = json.loads((b / "summary.json").read_text())["configurations"]
    assert summary_a == summary_b


@pytest.fixture(scope="module")
def reference(tmp_path_factory, small_mnist):
    """The uninterrupted sweep, run in this process (the killed ones and the resumes are separate
    processes)."""
    out = tmp_path_factory.mktemp("reference") / "sweep"
    printed = io.StringIO()
    with (
        contextlib.redirect_stdout(printed),
        contextlib.redirect_stderr(printed),
        pytest.raises(SystemExit) as exit_info,
    ):
        run_main(sweep.main, sweep.PROG, [*SWEEP_ARGS, *small_mnist, "--out", str(out)])
    assert exit_info.value.code == 0, printed.getvalue()
    return out


@pytest.mark.slow
@pytest.mark.parametrize(
    "trigger, delay",
    [
        ("program 0 epoch   1/2:", 0.0),  # program 0's first save just starting
        # Program 0 complete; program 1 after its first save, in its last epoch or its save. On
        # the small cut an epoch takes some 0.05 s and a save some 0.1 s: 0.3 s (the delay on the
        # full MNIST) would land after the training.
        ("program 1 epoch   1/2:", 0.15),
    ],
)
def test_a_sweep_killed_at_any_point_resumes_to_the_uninterrupted_result(
    trigger, delay, reference, tmp_path, small_mnist
):
    out = tmp_path / "sweep"
    kill_when(out, trigger, delay, small_mnist)
    assert (out / "sweep.json").is_file() and not (out / "members.json").exists()
    proc = run(["--resume", str(out)])
    assert "resuming" in proc.stdout or "restored" in proc.stdout or "epoch   1/2" in proc.stdout
    assert_same_sweep(reference, out)


@pytest.mark.slow
def test_resume_falls_back_past_a_damaged_newest_checkpoint(reference, tmp_path):
    out = tmp_path / "sweep"
    shutil.copytree(reference, out)
    for name in ("members.json", "summary.json"):
        (out / name).unlink()
    state_dir = program_store(out, 1).directory / "2" / "state"
    damaged = max((p for p in state_dir.rglob("*") if p.is_file()), key=lambda p: p.stat().st_size)
    damaged.write_bytes(damaged.read_bytes()[: damaged.stat().st_size // 2])
    proc = run(["--resume", str(out)])
    warnings = [line for line in proc.stderr.splitlines() if line.startswith("warning:")]
    assert any("epoch 2" in line and "program-1" in line for line in warnings), proc.stderr
    assert "program 0: complete, restored after epoch 2" in proc.stdout
    assert "program 1: resuming after epoch 1" in proc.stdout
    assert "program 0 epoch" not in proc.stdout and "program 1 epoch   2/2:" in proc.stdout
    assert_same_sweep(reference, out)


@pytest.mark.slow
def test_a_sweep_written_by_the_code_before_the_schema_resumes_to_its_result(tmp_path, capsys):
    # tests/data/legacy/sweep: a 3-epoch sweep (2 seeds x 2 learning rates, sgd with momentum
    # 0.8) made by the code before members were read off the configuration's schema (commit
    # dd6eb02), with its epoch-1 and epoch-3 checkpoints and its results removed, as if killed
    # after epoch 3's log line; sweep-expected.json holds what the uninterrupted sweep wrote.
    legacy = Path(__file__).parent / "data" / "legacy"
    shutil.copytree(legacy / "sweep", tmp_path / "sweep")
    sweep_dir, data = tmp_path / "sweep", legacy / "tiny"
    runs = sorted(p.name for p in (sweep_dir / "tensorboard").iterdir())
    argv = ["--resume", str(sweep_dir), "--data-dir", str(data), "--quiet"]
    with pytest.raises(SystemExit) as exit_info:
        run_main(sweep.main, "sweep", argv)
    assert exit_info.value.code == 0, capsys.readouterr().err
    expected = json.loads((legacy / "sweep-expected.json").read_text())
    members = json.loads((sweep_dir / "members.json").read_text())
    # The code that made it recorded neither norm: the epoch trained here adds both.
    new_metrics = ("train_grad_norm", "train_param_norm")
    histories = [
        [{k: v for k, v in r.items() if k not in new_metrics} for r in m["history"]]
        for m in members
    ]
    # Epochs 1-2 come back from the log and checkpoint as they were; epoch 3 is trained here, and
    # matmul rounding differs between CPUs (on an AMD EPYC its losses differed in the last bit
    # from those of the machine that wrote the file), so real numbers agree to float32 rounding.
    assert [
        {**{k: m[k] for k in expected[0]}, "history": without_seconds(h)}
        for m, h in zip(members, histories)
    ] == rounded(expected)
    assert "train_grad_norm" in members[0]["history"][-1]
    # The members' TensorBoard runs are named by their labels: the resumed sweep wrote into the
    # runs it had, and made no others.
    assert sorted(p.name for p in (sweep_dir / "tensorboard").iterdir()) == runs
    assert "| lr=0.003 |" in (sweep_dir / "report.md").read_text()
