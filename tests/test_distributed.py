"""Multi-process settings, read from the environment and checked before JAX's distributed
runtime starts (no process is started here: tests/test_sweep_processes.py runs real ones)."""

import pytest

from mnist_jax.errors import ConfigError
from mnist_jax.sweep import initialize_distributed_from_env


def test_distributed_is_not_initialized_without_the_coordinator_variable():
    assert initialize_distributed_from_env({}) is False


@pytest.mark.parametrize(
    "env, message",
    [
        ({"MNIST_JAX_COORDINATOR": "localhost"}, "host:port"),
        (
            {"MNIST_JAX_COORDINATOR": "localhost:1234", "MNIST_JAX_NUM_PROCESSES": "2"},
            "MNIST_JAX_PROCESS_ID",
        ),
        (
            {
                "MNIST_JAX_COORDINATOR": "localhost:1234",
                "MNIST_JAX_NUM_PROCESSES": "two",
                "MNIST_JAX_PROCESS_ID": "0",
            },
            "expected an integer",
        ),
        (
            {
                "MNIST_JAX_COORDINATOR": "localhost:1234",
                "MNIST_JAX_NUM_PROCESSES": "2",
                "MNIST_JAX_PROCESS_ID": "2",
            },
            "expected below",
        ),
        # Each process of the intended job trained the whole sweep alone, exit 0.
        (
            {
                "MNIST_JAX_COORDINATOR": "",
                "MNIST_JAX_NUM_PROCESSES": "2",
                "MNIST_JAX_PROCESS_ID": "1",
            },
            "MNIST_JAX_NUM_PROCESSES and MNIST_JAX_PROCESS_ID set without MNIST_JAX_COORDINATOR",
        ),
        ({"MNIST_JAX_PROCESS_ID": "0"}, "MNIST_JAX_PROCESS_ID set without"),
    ],
)
def test_distributed_settings_are_checked_before_jax_is_touched(env, message):
    with pytest.raises(ConfigError, match=message):
        initialize_distributed_from_env(env)


SLURM_TWO_TASKS = {
    "SLURM_JOB_ID": "1234",
    "SLURM_STEP_NODELIST": "node[001-002]",
    "SLURM_NTASKS": "2",
    "SLURM_PROCID": "1",
    "SLURM_LOCALID": "0",
}


@pytest.mark.parametrize("tasks, starts", [("2", True), ("1", False)])
def test_a_cluster_jax_detects_starts_the_processes_without_variables(monkeypatch, tasks, starts):
    from mnist_jax import distributed

    calls = []
    monkeypatch.setattr(distributed, "_initialized", False)
    monkeypatch.setattr(distributed.jax.distributed, "initialize", lambda **kw: calls.append(kw))
    monkeypatch.setattr(distributed.jax.config, "update", lambda *args: None)
    for name, value in {**SLURM_TWO_TASKS, "SLURM_NTASKS": tasks}.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("MNIST_JAX_COORDINATOR", raising=False)
    assert distributed.detected_cluster() == ("SlurmCluster" if starts else None)
    assert initialize_distributed_from_env() is starts
    # JAX's own detection fills in the coordinator, process count and id; we set the timeouts.
    expected = [{"initialization_timeout": 300, "heartbeat_timeout_seconds": 60}] if starts else []
    assert calls == expected


def test_cluster_detection_can_be_turned_off(monkeypatch):
    from mnist_jax import distributed

    for name, value in SLURM_TWO_TASKS.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("MNIST_JAX_DISTRIBUTED", "off")
    assert distributed.detected_cluster() is None


def test_a_lost_process_is_recognised_in_any_error_type_and_only_with_several(monkeypatch):
    from mnist_jax import distributed

    lost = ValueError("Gloo AllGather failed: [pair.cc:547] Connection closed by peer [1.2.3.4]:5")
    wrapped = RuntimeError("cannot write a checkpoint")
    wrapped.__cause__ = lost
    assert distributed.peer_failure(lost) is None  # one process: never another's fault
    monkeypatch.setattr(distributed.jax.distributed, "is_initialized", lambda: True)
    monkeypatch.setattr(distributed.jax, "process_count", lambda: 2)
    assert "Connection closed by peer" in distributed.peer_failure(wrapped)
    assert distributed.peer_failure(ValueError("CUDA device busy or unavailable")) is None


@pytest.fixture
def no_jax_start(monkeypatch):
    """`jax.distributed.initialize` recorded instead of started: a bad value must be refused before
    (JAX's runtime crashes on some, and waits its whole start-up timeout on others)."""
    from mnist_jax import distributed

    calls = []
    monkeypatch.setattr(distributed, "_initialized", False)
    monkeypatch.setattr(distributed.jax.config, "update", lambda *args: None)
    monkeypatch.setattr(distributed.jax.distributed, "initialize", lambda **kw: calls.append(kw))
    return calls


@pytest.mark.parametrize(
    "coordinator",
    [
        "127.0.0.1:notaport",
        ":1234x",
        ":1234",
        "127.0.0.1:",
        "127.0.0.1:0",
        "127.0.0.1:65536",
        "127.0.0.1:99999999999999999999",
        "127.0.0.1:-1",
        "127.0.0.1:+80",
        "127.0.0.1:١٢٣",  # digits, but not ASCII ones
        "::1:1234",  # IPv6 without brackets: which colon ends the host?
        "[::1:1234",
        "[]:1234",
    ],
)
def test_a_bad_coordinator_address_is_refused_before_jax_starts(no_jax_start, coordinator):
    env = {
        "MNIST_JAX_COORDINATOR": coordinator,
        "MNIST_JAX_NUM_PROCESSES": "2",
        "MNIST_JAX_PROCESS_ID": "0",
    }
    with pytest.raises(ConfigError, match="MNIST_JAX_COORDINATOR") as error:
        initialize_distributed_from_env(env)
    assert "\n" not in str(error.value)
    assert no_jax_start == []


@pytest.mark.parametrize(
    "coordinator", ["127.0.0.1:1", "host0:4321", "localhost:65535", "[::1]:1234", " host0:80 "]
)
def test_a_good_coordinator_address_reaches_jax_as_given(no_jax_start, coordinator):
    from mnist_jax.distributed import coordinator_address

    env = {
        "MNIST_JAX_COORDINATOR": coordinator,
        "MNIST_JAX_NUM_PROCESSES": "2",
        "MNIST_JAX_PROCESS_ID": "1",
    }
    assert initialize_distributed_from_env(env) is True
    assert [call["coordinator_address"] for call in no_jax_start] == [coordinator.strip()]
    host, port = coordinator_address(coordinator.strip())
    assert f"{host}:{port}" == coordinator.strip()


@pytest.mark.parametrize("value", ["0", "-5", "soon", "1.5"])
def test_a_bad_start_timeout_is_one_line(no_jax_start, value):
    env = {
        "MNIST_JAX_COORDINATOR": "127.0.0.1:1234",
        "MNIST_JAX_NUM_PROCESSES": "2",
        "MNIST_JAX_PROCESS_ID": "0",
        "MNIST_JAX_START_TIMEOUT": value,
    }
    with pytest.raises(ConfigError, match="MNIST_JAX_START_TIMEOUT") as error:
        initialize_distributed_from_env(env)
    assert "\n" not in str(error.value) and no_jax_start == []


@pytest.mark.parametrize("command", ["baseline", "evaluate"])
def test_a_one_process_command_refuses_a_multi_process_setting(command, monkeypatch, capsys):
    import importlib

    from experiments.cli import run_main

    # Found by a hostile pass: each process of the intended job trained the whole run alone.
    monkeypatch.setenv("MNIST_JAX_PROCESS_ID", "1")
    module = importlib.import_module(f"experiments.{command}")
    argv = ["RUN"] if command == "evaluate" else ["--epochs", "1"]
    with pytest.raises(SystemExit) as exit_info:
        run_main(module.main, f"python -m experiments.{command}", argv)
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and "MNIST_JAX_PROCESS_ID is set, but" in err
    assert len(err.strip().splitlines()) == 1


def test_a_bad_start_timeout_is_refused_without_a_coordinator_too(no_jax_start):
    # Found by a hostile pass: MNIST_JAX_START_TIMEOUT=abc was accepted when nothing used it.
    with pytest.raises(ConfigError, match="MNIST_JAX_START_TIMEOUT"):
        initialize_distributed_from_env({"MNIST_JAX_START_TIMEOUT": "abc"})
