"""Several local processes of one command, to try multi-process runs on one machine.

`python -m experiments.sweep --processes 2 ...` starts two copies of the command with the
MNIST_JAX_* variables of a local coordinator (each with its own host devices: XLA_FLAGS, e.g.
`--xla_force_host_platform_device_count=2`, is passed on), prefixes each line they print with
their process number, and ends with the status of the first process that failed. It is for trying
multi-process runs on CPU host devices; on a cluster, start one process per host with the scheduler
instead (see the README).
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Sequence

from mnist_jax.sweep.distributed import (
    ENV_COORDINATOR,
    ENV_NUM_PROCESSES,
    ENV_PROCESS_ID,
    PEER_TIMEOUT_SECONDS,
)

STOP_GRACE_SECONDS = 10
# Once a process has failed, how long the others get to notice and stop on their own.
SIBLING_GRACE_SECONDS = PEER_TIMEOUT_SECONDS + 15
# Lines of the JAX runtime's own C++ logging (absl: "E1125 14:38:01.448 123 file.cc:80] ..."), its
# stack traces, and gloo's connection chatter: the processes' own lines say what happened.
_RUNTIME_NOISE = re.compile(
    r"^([FEWI]\d{4} \d\d:\d\d:\d\d\.\d+ +\d+ \S+:\d+\]|\*\*\* |\s+@\s+0x|\[Gloo\])"
)


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
            if _RUNTIME_NOISE.match(line):
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

    def stop(signum, frame) -> None:  # a scheduler's SIGTERM reaches the processes too
        for child in children:
            if child.poll() is None:
                child.send_signal(signum)

    previous = signal.signal(signal.SIGTERM, stop)
    try:
        failed = _wait(children)
    except KeyboardInterrupt:
        stop(signal.SIGINT, None)
        for child in children:
            try:
                child.wait(timeout=STOP_GRACE_SECONDS)
            except subprocess.TimeoutExpired:
                child.kill()
        raise
    finally:
        signal.signal(signal.SIGTERM, previous)
    for thread in threads:
        thread.join(timeout=5)
    return failed


def _status(returncode: int) -> int:
    """A shell's exit status for a child's return code (killed by signal N: 128 + N)."""
    return 128 - returncode if returncode < 0 else returncode


def _wait(children: list[subprocess.Popen]) -> int:
    """Wait for every child; the status of the first that failed (0 if none did). Once one has
    failed, the others get `SIBLING_GRACE_SECONDS` to stop on their own, then are killed."""
    first_failure, deadline = 0, None
    while any(child.poll() is None for child in children):
        for child in children:
            if child.returncode and not first_failure:
                first_failure = _status(child.returncode)
                deadline = time.monotonic() + SIBLING_GRACE_SECONDS
        if deadline is not None and time.monotonic() > deadline:
            for child in children:
                if child.poll() is None:
                    child.kill()
        time.sleep(0.1)
    for child in children:
        if child.returncode and not first_failure:
            first_failure = _status(child.returncode)
    return first_failure
