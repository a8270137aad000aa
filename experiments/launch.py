"""Several local processes of one command, to try multi-process runs on one machine.

`python -m experiments.sweep --processes 2 ...` starts two copies of the command with the
MNIST_JAX_* variables of a local coordinator (each with its own host devices: XLA_FLAGS, e.g.
`--xla_force_host_platform_device_count=2`, is passed on), prefixes each line they print with
their process number, and ends with the status of the first process that failed. SIGTERM, SIGHUP
and Ctrl-C stop every process. It is for trying multi-process runs on CPU host devices; on a
cluster, start one process per host with the scheduler instead (see the README).
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Sequence

from mnist_jax.distributed import (
    ENV_COORDINATOR,
    ENV_NUM_PROCESSES,
    ENV_PROCESS_ID,
    ENV_START_TIMEOUT,
    PEER_TIMEOUT_SECONDS,
)
from mnist_jax.errors import ConfigError

# How long stopped processes get to end on their own before they are killed (each ends within
# its INTERRUPT_GRACE_SECONDS, 2 s, once it has started).
STOP_GRACE_SECONDS = 5
# Once a process has failed, how long the others get to notice and stop on their own.
SIBLING_GRACE_SECONDS = PEER_TIMEOUT_SECONDS + 15
# Lines of the JAX runtime's own C++ logging (absl: "E1125 14:38:01.448 123 file.cc:80] ..."), its
# stack traces, and gloo's connection chatter: the processes' own lines say what happened.
_RUNTIME_NOISE = re.compile(
    r"^([FEWI]\d{4} \d\d:\d\d:\d\d\.\d+ +\d+ \S+:\d+\]|\*\*\* |\s+@\s+0x|\[Gloo\])"
)


# Each process starts through this, which makes Linux kill it when the launcher ends
# (PR_SET_PDEATHSIG), even by SIGKILL, when the launcher cannot stop it: an orphan would train on,
# holding the sweep's lock. Set in the child before it becomes the command (exec keeps it); where
# prctl does not exist (not Linux) the child starts all the same.
_DIE_WITH_LAUNCHER = """
import ctypes, os, signal, sys
launcher = int(sys.argv[1])
try:
    ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
except (OSError, AttributeError):
    pass
if os.getppid() != launcher:  # the launcher ended before the prctl took effect
    sys.exit(128 + signal.SIGKILL)
os.execv(sys.executable, [sys.executable, "-m", *sys.argv[2:]])
"""


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


def max_local_processes() -> int:
    """Four per CPU this process may use, at least 2 (a two-process try runs anywhere), at most 64:
    each process is a whole JAX runtime (its compiler, host devices, hundreds of MB), so past a few
    per CPU they only compete, and thousands would exhaust memory before the first line."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not Linux
        cpus = os.cpu_count() or 1
    return min(64, max(2, 4 * cpus))


# The signals that stop the launcher and its processes, as Ctrl-C does (SIGINT: KeyboardInterrupt).
STOP_SIGNALS = tuple(
    getattr(signal, name) for name in ("SIGTERM", "SIGHUP") if hasattr(signal, name)
)


def launch_local(module: str, argv: Sequence[str], processes: int) -> int:
    """Run `python -m module *argv` as `processes` local processes of one JAX job; return the
    first non-zero exit status (0 when all succeed). Error lines that every process prints alike
    (a bad value) are printed once.

    SIGTERM or SIGHUP to the launcher stops every process (`_stop`) and returns 128 + the signal's
    number, as Ctrl-C gives 130; Ctrl-C (KeyboardInterrupt) stops them too and is raised again."""
    limit = max_local_processes()
    if processes > limit:
        raise ConfigError(
            f"--processes {processes}: at most {limit} local processes on this machine (4 per "
            "CPU, at most 64); on a cluster, start one process per host instead"
        )
    port = _free_port()
    children: list[subprocess.Popen] = []
    threads: list[threading.Thread] = []
    printed_errors: set[str] = set()
    lock = threading.Lock()
    received: list[int] = []  # the stop signals received

    def forward(index: int, child: subprocess.Popen) -> None:
        for line in child.stdout:
            if _RUNTIME_NOISE.match(line):
                continue
            with lock:
                if ": error: " not in line:
                    print(f"[process {index}] {line}", end="", flush=True)
                elif line not in printed_errors:
                    printed_errors.add(line)
                    print(f"[process {index}] {line}", end="", file=sys.stderr, flush=True)

    # Before the first process starts, so that a signal during the start stops those started. The
    # handlers stay until every process has ended: a second signal must not end the launcher alone.
    previous = {
        signum: signal.signal(signum, lambda number, frame: received.append(number))
        for signum in STOP_SIGNALS
    }
    # Ctrl-C reaches this loop at once, as KeyboardInterrupt: without the watcher of
    # `process.stop_promptly_on_interrupt`, which would kill the launcher (status 137) while it
    # waits for its processes to stop (their own watchers end them), and leave them unreaped.
    wakeup_fd = signal.set_wakeup_fd(-1)
    try:
        try:
            for index in range(processes):
                if received:
                    break
                env = {
                    ENV_START_TIMEOUT: "60",  # unless set: local processes start within seconds
                    **os.environ,
                    ENV_COORDINATOR: f"127.0.0.1:{port}",
                    ENV_NUM_PROCESSES: str(processes),
                    ENV_PROCESS_ID: str(index),
                    "PYTHONUNBUFFERED": "1",
                }
                child = subprocess.Popen(
                    [sys.executable, "-c", _DIE_WITH_LAUNCHER, str(os.getpid()), module, *argv],
                    env=env,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.STDOUT,
                    text=True,
                    errors="replace",
                )
                children.append(child)
                threads.append(threading.Thread(target=forward, args=(index, child), daemon=True))
                threads[-1].start()
            failed = _wait(children, received)
        except BaseException:  # Ctrl-C (KeyboardInterrupt), or a process that cannot start
            _stop(children, ())
            raise
        if received:
            _stop(children, received[:1])
            failed = 128 + received[0]
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        signal.set_wakeup_fd(wakeup_fd, warn_on_full_buffer=False)
    deadline = time.monotonic() + 5
    for thread in threads:  # the last lines of each process
        thread.join(timeout=max(0.0, deadline - time.monotonic()))
    if received:
        print(f"stopped by {signal.Signals(received[0]).name}", file=sys.stderr, flush=True)
    return failed


def _stop(children: list[subprocess.Popen], signals: Sequence[int]) -> None:
    """Stop the running `children`: send them `signals`, then SIGINT (as Ctrl-C: each process stops
    within its INTERRUPT_GRACE_SECONDS, even inside a compiled epoch), and kill those still running
    after `STOP_GRACE_SECONDS`. SIGINT is needed: once `jax.distributed` has started, JAX's
    preemption notifier takes SIGTERM for itself, and the process goes on. The forwarded signal
    comes first, so that a process still starting ends at once rather than print a traceback."""
    for signum in (*signals, signal.SIGINT):
        for child in children:
            if child.poll() is None:
                child.send_signal(signum)  # none if it has ended meanwhile
    deadline = time.monotonic() + STOP_GRACE_SECONDS
    for child in children:
        try:
            child.wait(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            child.kill()
    for child in children:
        with contextlib.suppress(subprocess.TimeoutExpired):  # stuck in the kernel: not waited for
            child.wait(timeout=5)


def _wait(children: list[subprocess.Popen], received: Sequence[int] = ()) -> int:
    """Wait for every child, or until `received` holds a signal; the shell's status of the first
    that failed (killed by signal N: 128 + N; 0 if none failed). Once one has failed, the others
    get `SIBLING_GRACE_SECONDS` to stop on their own, then are killed."""
    failure, deadline = 0, None
    while True:
        codes = [child.poll() for child in children]
        if not failure:
            failure = next((128 - c if c < 0 else c for c in codes if c), 0)
            deadline = time.monotonic() + SIBLING_GRACE_SECONDS if failure else None
        if None not in codes or received:
            return failure
        if deadline is not None and time.monotonic() > deadline:
            for child in children:
                if child.poll() is None:
                    child.kill()
        time.sleep(0.1)
