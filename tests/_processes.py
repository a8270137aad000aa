"""Starting the commands as real subprocesses, and killing them mid-run (for the resume tests);
running one in this process where only its output and status matter."""

import importlib
import logging
import signal
import subprocess
import sys
import time
import warnings
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def kill_when(args: list[str], env: dict, trigger: str, delay: float) -> None:
    """Run `python -m ARGS`; SIGKILL it `delay` seconds after a stdout line containing `trigger`."""
    proc = subprocess.Popen(
        [sys.executable, "-m", *args],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.monotonic() + 300
        for line in proc.stdout:
            if trigger in line:
                break
            assert time.monotonic() < deadline, "trigger line never came"
        else:
            pytest.fail(f"{args[0]} ended before printing {trigger!r}")
        time.sleep(delay)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait(timeout=60)


def run_in_process(args, mnist_dir, monkeypatch, capsys) -> subprocess.CompletedProcess:
    """`python -m ARGS` run in this process, for a refusal that comes before anything heavy: its
    exit status and output as the subprocess would give them (stdout and stderr from capsys)."""
    from experiments.cli import run_main

    module, *argv = map(str, args)
    monkeypatch.setenv("MNIST_JAX_DATA", str(mnist_dir))
    # run_main prints warnings in one line and quiets absl's log: both undone after the command.
    monkeypatch.setattr(warnings, "showwarning", warnings.showwarning)
    absl_level = logging.getLogger("absl").level
    capsys.readouterr()  # what the test printed before is not the command's
    try:
        with pytest.raises(SystemExit) as exit_info:
            run_main(importlib.import_module(module).main, f"python -m {module}", argv)
    finally:
        logging.getLogger("absl").setLevel(absl_level)
    out, err = capsys.readouterr()
    return subprocess.CompletedProcess(args, exit_info.value.code, out, err)
