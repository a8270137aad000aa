"""Two ways orbax 0.12.8 and tensorstore misbehave on failures, handled in one place: reports
into closed event loops (`silence_reports_into_closed_loops`), and a failed write's reason buried
in their messages (`write_failure_reason`)."""

from __future__ import annotations

import os
import re
import sys
import warnings

from mnist_jax.errors import one_line


def silence_reports_into_closed_loops() -> None:
    """Drops the "Event loop is closed" errors of reads and writes that outlive a failed one.

    When one array of a step cannot be read, orbax stops waiting and closes its event loop while
    tensorstore still reads the step's other arrays; each of those reads then reports back into
    the closed loop, and Python prints every failed report as an unraisable traceback (hundreds of
    lines for one skipped checkpoint); a failed background save does the same. Nothing is lost:
    the store reports the damaged step, or the failed save in one line.
    The reads orbax abandoned also end as unraisable errors when their coroutines are collected,
    and as "never awaited" warnings. Installed once, when a store first reads or writes, in front
    of the hook that was there.
    """
    warnings.filterwarnings(
        "ignore", message=r"coroutine '_read_array\w*' was never awaited", category=RuntimeWarning
    )
    previous = sys.unraisablehook
    if getattr(previous, "_drops_closed_loop_reports", False):
        return

    def hook(unraisable) -> None:
        error, source = unraisable.exc_value, getattr(unraisable.object, "__name__", "")
        closed_loop = isinstance(error, RuntimeError) and str(error) == "Event loop is closed"
        if not (closed_loop or str(source).startswith("_read_array")):
            previous(unraisable)

    hook._drops_closed_loop_reports = True
    sys.unraisablehook = hook


def write_failure_reason(error: BaseException) -> str:
    """The operating system's reason for a failed write, wherever orbax or tensorstore put it."""
    cause: BaseException | None = error
    while cause is not None:
        if isinstance(cause, OSError) and cause.strerror:
            return cause.strerror
        code = re.search(r"os_error_code='(\d+)'", str(cause))
        if code:
            return os.strerror(int(code.group(1)))
        cause = cause.__cause__ or cause.__context__
    return one_line(error)
