"""`python -m experiments.sweep` as several processes (two local processes x two host devices):
checkpoints written shard by shard, a sweep killed after its first checkpoint and resumed by the
local launcher, one process killed alone, the local launcher stopped by a signal. The reference is
one process with the same four devices. Also the checks that refuse bad multi-process settings
before JAX starts."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from _processes import REPO

TIMEOUT_S = 300
SWEEP = ["--seeds", "0-3", "--epochs", "3", "--batch-size", "64", "--validation-size", "100"]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    from mnist_jax.data.fake import write_fake_dataset

    folder = tmp_path_factory.mktemp("data") / "tiny"
    write_fake_dataset(folder, num_train=600, num_test=200, shape=(28, 28))
    return ["--dataset", "tiny", "--data-dir", str(folder), "--no-tensorboard"]


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(argv, log: Path, devices: int, process_id: int | None = None, port: int = 0):
    # The multi-process settings are each test's own; the session's compilation cache is kept.
    keep = ("MNIST_JAX_COMPILATION_CACHE",)
    env = {k: v for k, v in os.environ.items() if not k.startswith("MNIST_JAX_") or k in keep}
    env["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={devices}"
    if process_id is not None:
        env.update(
            MNIST_JAX_COORDINATOR=f"127.0.0.1:{port}",
            MNIST_JAX_NUM_PROCESSES="2",
            MNIST_JAX_PROCESS_ID=str(process_id),
        )
    with open(log, "w") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "experiments.sweep", *argv],
            cwd=REPO,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )


def start_two(argv, tmp_path: Path, name: str):
    port = free_port()
    return [start(argv, tmp_path / f"{name}{k}.log", 2, k, port) for k in range(2)]


def wait_for(log: Path, text: str, procs) -> None:
    deadline = time.monotonic() + TIMEOUT_S
    while text not in log.read_text():
        assert time.monotonic() < deadline, f"{text!r} never came: {log.read_text()[-2000:]}"
        assert all(p.poll() is None for p in procs), log.read_text()[-2000:]
        time.sleep(0.05)


def finish(procs, logs) -> None:
    for proc, log in zip(procs, logs):
        assert proc.wait(timeout=TIMEOUT_S) == 0, log.read_text()[-3000:]


def results(sweep_dir: Path) -> list[tuple]:
    members = json.loads((sweep_dir / "members.json").read_text())
    return [
        (m["seed"], m["test_accuracy"], m["test_loss"], [h["val_loss"] for h in m["history"]])
        for m in members
    ]


@pytest.fixture(scope="module")
def one(tiny, tmp_path_factory):
    """The sweep as one process with four host devices."""
    folder = tmp_path_factory.mktemp("one")
    proc = start([*tiny, *SWEEP, "--out", str(folder / "s")], folder / "log", devices=4)
    finish([proc], [folder / "log"])
    return results(folder / "s")


@pytest.mark.slow
def test_a_two_process_sweep_killed_and_resumed_equals_one_process(tiny, one, tmp_path):
    two = tmp_path / "two"
    procs = start_two([*tiny, *SWEEP, "--out", str(two)], tmp_path, "run")
    # The checkpoint of epoch 1 is complete on every process before epoch 2 is printed.
    wait_for(tmp_path / "run0.log", "epoch   2/3", procs)
    for p in procs:
        p.send_signal(signal.SIGKILL)
        p.wait(timeout=60)
    steps = sorted(p.name for p in (two / "checkpoints" / "program-0").iterdir())
    assert "1" in steps and "3" not in steps, steps
    assert {"ocdbt.process_0", "ocdbt.process_1"} <= {
        p.name for p in (two / "checkpoints" / "program-0" / "1" / "state").iterdir()
    }  # each process wrote its own shards

    shutil.copytree(two, tmp_path / "two-as-one")  # resumed by one process below
    shutil.copytree(two, tmp_path / "damaged")  # its only step damaged, resumed by two
    (tmp_path / "damaged" / "checkpoints" / "program-0" / "1" / "metrics" / "metrics").write_text(
        "{not json"
    )
    # Resumed by the local launcher's two processes (`--processes 2`, two host devices each).
    argv = ["--processes", "2", "--resume", str(two), "--no-tensorboard"]
    finish([start(argv, tmp_path / "resume.log", devices=2)], [tmp_path / "resume.log"])
    log = (tmp_path / "resume.log").read_text()
    assert "[process 0] devices: 4 x cpu (cpu), 2 process(es)" in log
    assert "program 0: resuming after epoch 1 of 3" in log or "after epoch 2 of 3" in log
    assert results(two) == one  # bitwise: the same four devices' partitioned program
    # Every process finds the only step damaged, and says so: none waits for the others.
    procs = start_two(["--resume", str(tmp_path / "damaged"), "--no-tensorboard"], tmp_path, "dmg")
    assert [p.wait(timeout=TIMEOUT_S) for p in procs] == [2, 2]
    for k in range(2):
        lines = (tmp_path / f"dmg{k}.log").read_text().splitlines()
        errors = [line for line in lines if ": error: " in line]
        assert len(errors) == 1 and "no intact checkpoint" in errors[0], lines[-5:]
    # The same checkpoints resumed by one process with the four devices: re-sharded on restore.
    argv = ["--resume", str(tmp_path / "two-as-one"), "--no-tensorboard"]
    finish([start(argv, tmp_path / "as-one.log", devices=4)], [tmp_path / "as-one.log"])
    assert "resuming after epoch" in (tmp_path / "as-one.log").read_text()
    assert results(tmp_path / "two-as-one") == one


@pytest.mark.slow
def test_one_process_killed_ends_the_other_with_one_line(tiny, tmp_path):
    # Killed while training: the other notices at its next collective. (Killed inside a
    # checkpoint save, orbax's barriers wait up to the 60 s heartbeat timeout: not timed here.)
    argv = [*tiny, *SWEEP[:2], "--epochs", "400", *SWEEP[4:], "--out", str(tmp_path / "s")]
    argv += ["--save-every", "1000"]
    procs = start_two(argv, tmp_path, "run")
    wait_for(tmp_path / "run0.log", "epoch   3/400", procs)
    procs[1].send_signal(signal.SIGKILL)
    killed = time.monotonic()
    status = procs[0].wait(timeout=120)
    waited = time.monotonic() - killed
    errors = [
        line
        for line in (tmp_path / "run0.log").read_text().splitlines()
        if "error" in line.lower() and not line.startswith("[Gloo]")
    ]
    assert status == 2, errors
    # At its next collective, and process 0's 3 s grace (seconds); the bound is below the 60 s
    # heartbeat timeout that a process which missed the failure would wait out.
    assert waited < 45
    assert len(errors) == 1 and "another process of this run stopped" in errors[0], errors


@pytest.mark.slow
def test_the_local_launchers_processes_refuse_a_bad_setting_with_one_line(tiny, tmp_path):
    # (The launcher running a sweep to its end is the resume above, and the signals below.)
    proc = start(["--processes", "2", *tiny, "--out", str(tmp_path / "t")], tmp_path / "bad", 2)
    assert proc.wait(timeout=TIMEOUT_S) == 2
    errors = [line for line in (tmp_path / "bad").read_text().splitlines() if "error" in line]
    assert len(errors) == 1 and "invalid validation_size=10000" in errors[0], errors


# Refused before anything starts ---------------------------------------------------------------


def one_process_error(tiny, tmp_path, **settings) -> str:
    """Process 0 of a 2-process sweep started alone with `settings`: its one line on stderr, with
    exit status 2."""
    # The multi-process settings are each test's own; the session's compilation cache is kept.
    keep = ("MNIST_JAX_COMPILATION_CACHE",)
    env = {k: v for k, v in os.environ.items() if not k.startswith("MNIST_JAX_") or k in keep}
    env.update(MNIST_JAX_NUM_PROCESSES="2", MNIST_JAX_PROCESS_ID="0", **settings)
    done = subprocess.run(
        [sys.executable, "-m", "experiments.sweep", *tiny, *SWEEP, "--out", str(tmp_path / "s")],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2, done.stderr[-2000:]
    assert done.stderr.count("\n") == 1, done.stderr[-2000:]
    return done.stderr


@pytest.mark.slow
def test_an_empty_coordinator_port_ends_the_command_with_one_line(tiny, tmp_path):
    # JAX's runtime waited its whole start-up timeout (300 s), then aborted with a C++ stack.
    error = one_process_error(tiny, tmp_path, MNIST_JAX_COORDINATOR="127.0.0.1:")
    assert "MNIST_JAX_COORDINATOR" in error


@pytest.mark.slow
def test_a_coordinator_whose_peers_never_come_ends_with_one_line(tiny, tmp_path):
    # JAX's runtime waited its 300 s start-up, then aborted with a C++ stack trace.
    coordinator = f"127.0.0.1:{free_port()}"
    error = one_process_error(
        tiny, tmp_path, MNIST_JAX_COORDINATOR=coordinator, MNIST_JAX_START_TIMEOUT="3"
    )
    assert error.startswith("python -m experiments.sweep: error: the job's 2 processes")
    assert "within 3 s" in error and "MNIST_JAX_START_TIMEOUT" in error


def test_the_local_launcher_refuses_more_processes_than_the_machine_runs(monkeypatch):
    import experiments.launch
    from experiments import sweep
    from mnist_jax.errors import ConfigError

    def no_start(*args, **kwargs):
        raise AssertionError("a process started")

    monkeypatch.setattr(experiments.launch.subprocess, "Popen", no_start)
    monkeypatch.delenv("MNIST_JAX_COORDINATOR", raising=False)
    with pytest.raises(ConfigError, match="at most \\d+ local processes") as error:
        sweep.main(["--processes", "99999", "--seeds", "0-3"])
    assert "\n" not in str(error.value)


# The local launcher stopped by a signal -------------------------------------------------------


def descendants(pid: int) -> set[int]:
    """The processes below `pid` (from /proc)."""
    parents = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except (OSError, ValueError):
            continue
        parents[int(entry.name)] = int(stat.rpartition(")")[2].split()[1])
    found, todo = set(), [pid]
    while todo:
        parent = todo.pop()
        children = [child for child, its_parent in parents.items() if its_parent == parent]
        found.update(children)
        todo.extend(children)
    return found


def running(pid: int) -> bool:
    """Whether `pid` exists and is not a zombie (one whose parent has ended, waiting for init)."""
    try:
        return (Path("/proc") / str(pid) / "stat").read_text().rpartition(")")[2].split()[0] != "Z"
    except (OSError, IndexError):
        return False


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="lists processes from /proc")
@pytest.mark.parametrize(
    "signum, status", [(signal.SIGTERM, 143), (signal.SIGHUP, 129), (signal.SIGKILL, -9)]
)
def test_a_signal_to_the_local_launcher_stops_every_process(tiny, tmp_path, signum, status):
    # A scheduler's SIGTERM: JAX takes SIGTERM for its preemption notice once a process has
    # started jax.distributed, so forwarding it stopped nothing and the sweep ran to its end.
    # SIGKILL cannot be handled: the processes die with the launcher (PR_SET_PDEATHSIG), where they
    # trained on, orphaned, holding the sweep's lock, so that --resume was refused.
    argv = ["--processes", "2", *tiny, *SWEEP[:2], "--epochs", "400", *SWEEP[4:]]
    argv += ["--out", str(tmp_path / "s")]
    launcher = start(argv, tmp_path / "log", devices=2)
    below: set[int] = set()
    try:
        wait_for(tmp_path / "log", "epoch   2/400", [launcher])
        below = descendants(launcher.pid)
        assert len(below) >= 2, below  # the two processes (and their watchers)
        launcher.send_signal(signum)
        # Each process stops within 2 s, or the launcher kills it after 5 s; the timeout is a bound
        # against a launcher that waits for a sweep of 400 epochs.
        assert launcher.wait(timeout=60) == status, (tmp_path / "log").read_text()[-2000:]
        deadline = time.monotonic() + 10  # the watchers end once their process has
        while any(running(pid) for pid in below) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not [pid for pid in below if running(pid)]
        log = (tmp_path / "log").read_text()
        if signum != signal.SIGKILL:  # the launcher's own last words
            assert f"stopped by {signal.Signals(signum).name}" in log, log[-2000:]
        assert "Traceback" not in log, log[-2000:]
    finally:  # nothing left running, whatever failed
        if launcher.poll() is None:
            below |= descendants(launcher.pid)
        for pid in below | {launcher.pid}:
            if running(pid):
                os.kill(pid, signal.SIGKILL)
        launcher.wait(timeout=30)
