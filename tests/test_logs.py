"""Live metrics: metrics.jsonl as runs train (crash-safe, continued on resume), TensorBoard event
files read back through a real TensorBoard server, and the profiler trace. The commands train on a
small cut of the real MNIST."""

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

from experiments import baseline, sweep
from experiments.cli import run_main
from mnist_jax.logs import METRICS_LOG, EpochLog, MetricsLog, ProfileSteadyEpoch, read_metrics_log
from mnist_jax.sweep.members import Member
from mnist_jax.sweep.plan import SweepProgram

REPO = Path(__file__).resolve().parents[1]


def record(epoch):
    return {
        "epoch": epoch,
        "train_loss": 1.0 / epoch,
        "train_accuracy": 0.5,
        "val_loss": 0.5,
        "val_accuracy": 0.9,
        "seconds": 0.5,
    }


MEMBER = Member(0, learning_rate=1e-3)
ONE = SweepProgram(0, (MEMBER,), 1)


def run_log(directory, *, train_examples=100, tensorboard=True):
    """A run's log: `EpochLog` in the run layout, for the one member of `ONE`."""
    return EpochLog(
        directory, [MEMBER], train_examples=train_examples, tensorboard=tensorboard, run=True
    )


def log_epoch(log, line, earlier=()):
    """`line` as the record of its epoch, after the `earlier` records a resumed run starts from
    (default: `record` of each earlier epoch)."""
    earlier = list(earlier) or [record(e) for e in range(1, line["epoch"])]
    log(ONE, None, [line], [[*earlier, line]])


def test_each_epoch_is_one_whole_line_on_disk_when_the_callback_returns(tmp_path):
    with run_log(tmp_path, tensorboard=False) as log:
        for epoch in (1, 2):
            log_epoch(log, record(epoch))
            lines = (tmp_path / METRICS_LOG).read_text().splitlines()
            assert json.loads(lines[-1])["epoch"] == epoch and len(lines) == epoch
    assert read_metrics_log(tmp_path / METRICS_LOG)[1] == {
        **record(2),
        "learning_rate": 1e-3,
        "examples_per_second": 200.0,
    }


def test_a_resumed_log_drops_later_epochs_and_repairs_a_half_line(tmp_path):
    path = tmp_path / METRICS_LOG
    path.write_text("".join(json.dumps(record(e)) + "\n" for e in (1, 2, 3)) + '{"epoch": 4, "tr')
    with run_log(tmp_path, tensorboard=False) as log:
        log_epoch(log, record(3))
    assert [line["epoch"] for line in read_metrics_log(path)] == [1, 2, 3]
    assert path.read_text().endswith("}\n")


def test_a_resumed_log_writes_its_earlier_epochs_again_from_the_checkpoints_history(tmp_path):
    # The hostile pass cut epoch 2's line, deleted epoch 1's or repeated it before a resume: the
    # log kept the damage beside the epochs trained after it.
    path = tmp_path / METRICS_LOG
    damaged = [record(2), record(1), {"epoch": 1, "edited": True}]
    path.write_text("".join(json.dumps(line) + "\n" for line in damaged) + '{"epoch": 3, "tr')
    with run_log(tmp_path, tensorboard=False) as log:
        log_epoch(log, record(3))
    expected = [
        {**record(e), "learning_rate": 1e-3, "examples_per_second": 200.0} for e in (1, 2, 3)
    ]
    assert read_metrics_log(path) == expected


def test_non_finite_values_are_written_as_null(tmp_path):
    with MetricsLog(tmp_path / METRICS_LOG) as log:
        log.append([{**record(1), "train_loss": float("nan")}])
    assert read_metrics_log(tmp_path / METRICS_LOG)[0]["train_loss"] is None


# Held out from the small cut's 2,000 training images by a sweep (the default, 10,000, is more than
# it has).
SWEEP_VALIDATION = ["--validation-size", "500"]


def environment():
    return dict(os.environ, PYTHONUNBUFFERED="1")


def run(args, **kwargs):
    return subprocess.run(
        [sys.executable, "-m", *map(str, args)],
        cwd=REPO,
        env=environment(),
        capture_output=True,
        text=True,
        timeout=600,
        **kwargs,
    )


def wait_for_checkpoint(proc: subprocess.Popen, checkpoint: Path) -> None:
    """Wait until the running `proc` has saved `checkpoint` (orbax renames a finished save into
    place). On the small cut an epoch is shorter than a save: the line of epoch 2 comes before
    epoch 1's checkpoint is on disk, where on the full MNIST it came after."""
    deadline = time.monotonic() + 120  # guards against a hang; the save takes well under 1 s
    while not checkpoint.is_dir():
        assert proc.poll() is None, f"the command ended before saving {checkpoint}"
        assert time.monotonic() < deadline, f"{checkpoint} was not saved within 120 s"
        time.sleep(0.005)


def run_in_process(main, prog, argv, capsys):
    """Run a command in this process; what it printed."""
    with pytest.raises(SystemExit) as exit_info:
        run_main(main, prog, list(map(str, argv)))
    printed = capsys.readouterr()
    assert exit_info.value.code == 0, printed.err
    return printed


@pytest.mark.slow
def test_a_run_killed_mid_training_then_resumed_logs_each_epoch_exactly_once(tmp_path, small_mnist):
    out = tmp_path / "run"
    command = [sys.executable, "-m", "experiments.baseline", "--epochs", "3", *small_mnist]
    command += ["--out", str(out)]
    proc = subprocess.Popen(command, cwd=REPO, env=environment(), stdout=subprocess.PIPE, text=True)
    for line in proc.stdout:
        if line.startswith("epoch   2:"):  # epoch 2 logged; its checkpoint may or may not be
            wait_for_checkpoint(proc, out / "checkpoints" / "1")
            proc.send_signal(signal.SIGKILL)
            break
    proc.wait(timeout=60)
    assert run(["experiments.baseline", "--resume", out, "--quiet"]).returncode == 0
    lines = read_metrics_log(out / METRICS_LOG)
    assert [line["epoch"] for line in lines] == [1, 2, 3]
    history = json.loads((out / "metrics.json").read_text())["history"]
    assert [line["val_loss"] for line in lines] == [r["val_loss"] for r in history]
    assert tensorboard_steps(out / "tensorboard", "loss/train") == [1, 2, 3]


def tensorboard_steps(logdir: Path, tag: str) -> list[int]:
    """The steps TensorBoard shows for `tag`, read as its server reads them (the plugin
    accumulator: it takes a run's first session start for its beginning, not a restart)."""
    from tensorboard.backend.event_processing.plugin_event_accumulator import EventAccumulator

    events = EventAccumulator(str(logdir), size_guidance={"tensors": 0}).Reload()
    return [event.step for event in events.Tensors(tag)]


@pytest.mark.slow
def test_a_sweep_killed_then_resumed_logs_each_member_epoch_exactly_once(tmp_path, small_mnist):
    out = tmp_path / "sweep"
    command = [
        sys.executable,
        "-m",
        "experiments.sweep",
        "--seeds",
        "0-1",
        "--epochs",
        "3",
        *small_mnist,
        *SWEEP_VALIDATION,
        "--out",
        str(out),
    ]
    proc = subprocess.Popen(command, cwd=REPO, env=environment(), stdout=subprocess.PIPE, text=True)
    for line in proc.stdout:
        if "epoch   2/" in line:
            wait_for_checkpoint(proc, out / "checkpoints" / "program-0" / "1")
            proc.send_signal(signal.SIGKILL)
            break
    proc.wait(timeout=60)
    assert run(["experiments.sweep", "--resume", out, "--quiet"]).returncode == 0
    lines = read_metrics_log(out / METRICS_LOG)
    assert sorted((line["member"], line["epoch"]) for line in lines) == [
        (m, e) for m in (0, 1) for e in (1, 2, 3)
    ]
    for run_dir in (out / "tensorboard").iterdir():
        assert tensorboard_steps(run_dir, "loss/train") == [1, 2, 3]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class TensorBoard:
    """A real TensorBoard server on 127.0.0.1 over `logdir`, read through its HTTP API."""

    def __init__(self, logdir: Path):
        self.url = f"http://127.0.0.1:{free_port()}"
        binary = Path(sys.executable).with_name("tensorboard")
        self.proc = subprocess.Popen(
            [
                str(binary),
                "--logdir",
                str(logdir),
                "--host",
                "127.0.0.1",
                "--port",
                self.url.rsplit(":", 1)[1],
                "--reload_interval",
                "1",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        # Guards against a server that never answers; it answers within some 1.5 s (2 busy cores).
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            try:
                if self.get("/data/plugin/scalars/tags"):
                    return
            except OSError:
                pass
            time.sleep(0.5)
        self.close()
        pytest.fail("TensorBoard did not answer within 90 s")

    def get(self, path: str, body: dict | None = None):
        data = None if body is None else json.dumps(body).encode()
        headers = {"Content-Type": "application/json"}
        with urllib.request.urlopen(
            urllib.request.Request(self.url + path, data, headers), timeout=10
        ) as response:
            return json.loads(response.read())

    def scalars(self, run: str, tag: str) -> list[tuple[int, float]]:
        query = urllib.parse.urlencode({"run": run, "tag": tag})
        return [
            (step, value) for _, step, value in self.get(f"/data/plugin/scalars/scalars?{query}")
        ]

    def close(self):
        self.proc.terminate()
        self.proc.wait(timeout=30)


@pytest.mark.slow
def test_tensorboard_serves_a_runs_scalars_equal_to_its_metrics_and_a_sweeps_hparams(
    tmp_path, small_mnist, capsys
):
    run_dir, sweep_dir = tmp_path / "runs" / "run", tmp_path / "runs" / "sweep"
    # The run and the sweep are trained in this process: the test reads what they wrote.
    run_in_process(
        baseline.main,
        "python -m experiments.baseline",
        ["--epochs", 2, *small_mnist, "--out", run_dir],
        capsys,
    )
    argv = ["--seeds", "0-1", "--epochs", 1, *small_mnist, *SWEEP_VALIDATION, "--out", sweep_dir]
    run_in_process(sweep.main, sweep.PROG, argv, capsys)
    board = TensorBoard(tmp_path / "runs")
    try:
        history = json.loads((run_dir / "metrics.json").read_text())["history"]
        for key, tag in (("train_loss", "loss/train"), ("val_accuracy", "accuracy/validation")):
            expected = [(r["epoch"], pytest.approx(r[key], rel=1e-6)) for r in history]
            assert board.scalars("run/tensorboard", tag) == expected
        images = board.get("/data/plugin/images/tags")["run/tensorboard"]
        figures = {"confusion_matrix", "top_errors", "training_curves", "learning_rate"}
        assert {f"figures/{name}" for name in figures} <= set(images)
        assert len(board.scalars("run/tensorboard", "learning_rate")) == len(history)
        groups = board.get(
            "/data/plugin/hparams/session_groups",
            {
                "startIndex": 0,
                "sliceSize": 100,
                "colParams": [],
                "allowedStatuses": ["STATUS_UNKNOWN", "STATUS_SUCCESS", "STATUS_FAILURE"],
            },
        )["sessionGroups"]
        members = json.loads((sweep_dir / "members.json").read_text())
        sessions = {g["hparams"]["seed"]: g for g in groups}
        assert sorted(sessions) == [0, 1]
        for member in members:
            values = {
                m["name"]["tag"]: m["value"] for m in sessions[member["seed"]]["metricValues"]
            }
            assert values["hparams/test_accuracy"] == pytest.approx(member["test_accuracy"])
    finally:
        board.close()


@pytest.mark.slow
def test_profile_writes_a_trace_and_no_tensorboard_writes_no_events(tmp_path, small_mnist):
    # A process of its own: the profiler is process-wide.
    out = tmp_path / "run"
    args = ["experiments.baseline", "--epochs", 2, *small_mnist, "--out", out]
    result = run([*args, "--profile", "--no-tensorboard"])
    assert result.returncode == 0, result.stderr
    assert (
        list((out / "profile").rglob("*.xplane.pb"))
        and "profile of a steady epoch" in result.stdout
    )
    assert not (out / "tensorboard").exists() and (out / METRICS_LOG).is_file()
    shutil.rmtree(out)


def test_the_profile_line_says_what_the_trace_holds(tmp_path):
    # After one epoch the trace of what followed it is kept; the line said "no profile".
    profiler = ProfileSteadyEpoch(tmp_path)
    assert profiler.summary() == "no profile: no epoch was trained"
    profiler.seen = 1
    assert profiler.summary().startswith("profile of what followed the first epoch")
    profiler.seen, profiler.traced = 2, True
    assert profiler.summary() == f"profile of a steady epoch: {tmp_path}"


def test_without_tensorboardx_a_run_logs_jsonl_only_with_one_warning(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorboardX", None)  # import fails as if not installed
    with pytest.warns(UserWarning, match="tensorboardX is not installed"), run_log(tmp_path) as log:
        log_epoch(log, record(1))
    assert len(read_metrics_log(tmp_path / METRICS_LOG)) == 1
    assert not (tmp_path / "tensorboard").exists()


def test_a_resumed_writer_purges_the_abandoned_continuations_events(tmp_path):
    # The first writer logged epochs 1-3; the run resumed from its epoch-1 checkpoint.
    first = [{**record(epoch), "train_loss": 1.0} for epoch in (1, 2, 3)]
    with run_log(tmp_path, train_examples=1) as log:
        for k, line in enumerate(first):
            log_epoch(log, line, first[:k])
    resumed = [first[0]]  # the epoch-1 checkpoint's history
    with run_log(tmp_path, train_examples=1) as log:
        for epoch in (2, 3):
            line = {**record(epoch), "train_loss": 2.0}
            log_epoch(log, line, resumed)
            resumed.append(line)
    logdir = tmp_path / "tensorboard"
    assert tensorboard_steps(logdir, "loss/train") == [1, 2, 3]
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    values = [e.value for e in EventAccumulator(str(logdir)).Reload().Scalars("loss/train")]
    assert values == [1.0, 2.0, 2.0]  # epoch 1 as the log kept it, 2 and 3 from the resumed run
