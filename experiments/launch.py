"""Several local processes of one command, to try multi-process runs on one machine.

`python -m experiments.sweep --processes 2 ...` starts two copies of the command with the
MNIST_JAX_* variables of a local coordinator (each with its own host devices: XLA_FLAGS, e.g.
`--xla_force_host_platform_device_count=2`, is passed on), prefixes each line they print with
their process number, and ends with the first failing status. On a cluster, start one process per
host with the scheduler instead (see the README).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Sequence

from mnist_jax.sweep.distributed import ENV_COORDINATOR, ENV_NUM_PROCESSES, ENV_PROCESS_ID

STOP_GRACE_SECONDS = 10


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def without_flag(argv: Sequence[str], flag: str) -> list[str]:
    """`argv` without `flag VALUE` or `flag=VALUE`."""
    out, skip = [], False
    for arg in argv:
        if skip:
            skip = False
        elif arg == flag:
            skip = True
        elif not arg.startswith(flag + "="):
            out.append(arg)
    return out


def launch_local(module: str, argv: Sequence[str], processes: int) -> int:
    """Run `python -m module *argv` as `processes` local processes of one JAX job; return the
    first non-zero exit status (0 when all succeed). Error lines that every process prints alike
    (a bad value) are printed once."""
    port = _free_port()
    children = []
    for index in range(processes):
        env = {
            **os.environ,
            ENV_COORDINATOR: f"127.0.0.1:{port}",
            ENV_NUM_PROCESSES: str(processes),
            ENV_PROCESS_ID: str(index),
            "PYTHONUNBUFFERED": "1",
        }
        children.append(
            subprocess.Popen(
                [sys.executable, "-m", module, *argv],
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
                errors="replace",
            )
        )
    printed_errors: set[str] = set()
    lock = threading.Lock()

    def forward(index: int, child: subprocess.Popen) -> None:
        for line in child.stdout:
            if line.startswith("[Gloo]"):  # gloo's connection chatter, on every start
                continue
            with lock:
                if ": error: " in line:
                    if line in printed_errors:
                        continue
                    printed_errors.add(line)
                    print(f"[process {index}] {line}", end="", file=sys.stderr, flush=True)
                else:
                    print(f"[process {index}] {line}", end="", flush=True)

    threads = [
        threading.Thread(target=forward, args=(k, child), daemon=True)
        for k, child in enumerate(children)
    ]
    for thread in threads:
        thread.start()
    try:
        statuses = [child.wait() for child in children]
    except KeyboardInterrupt:
        for child in children:
            child.send_signal(signal.SIGINT)
        for child in children:
            try:
                child.wait(timeout=STOP_GRACE_SECONDS)
            except subprocess.TimeoutExpired:
                child.kill()
        raise
    for thread in threads:
        thread.join(timeout=5)
    return next((status for status in statuses if status), 0)
