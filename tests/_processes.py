"""Starting the commands as real subprocesses, and killing them mid-run (for the resume tests)."""

import signal
import subprocess
import sys
import time
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
