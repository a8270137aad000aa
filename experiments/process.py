"""How a command runs as a process: a user error is one line on stderr and exit status 2, Ctrl-C
ends it within seconds, libraries' logs stay quiet, and a multi-process job's processes end
together. Every command's `__main__` is `run_main(main, PROG)`.
"""

from __future__ import annotations

import gc
import os
import signal
import subprocess
import sys
import time
import traceback
from collections.abc import Callable, Sequence
from typing import NoReturn

from mnist_jax.errors import MnistJaxError
from mnist_jax.rundir import unlock_run_dir
from mnist_jax.runtime import configure_xla_cpu


def run_main(
    main: Callable[[Sequence[str] | None], int], prog: str, argv: Sequence[str] | None = None
) -> NoReturn:
    """Run a command's `main`; a user error becomes one line on stderr and exit status 2."""
    from mnist_jax.distributed import peer_failure

    quiet_library_logs()
    try:
        configure_xla_cpu()  # before anything starts jax's backend: XLA reads its flags once
    except MnistJaxError as error:
        print(f"{prog}: error: {_one_line(error)}", file=sys.stderr)
        sys.exit(2)
    watcher = stop_promptly_on_interrupt()
    # The imported modules' objects (jax, flax, orbax, matplotlib: about a million) live as long as
    # the process: frozen out of the garbage collector, they are not traversed again by each full
    # collection, nor at exit, where that traversal took a third of a second of every command.
    gc.freeze()
    try:
        status = main(argv)
    except Exception as error:
        reason, status = peer_failure(error), 2
        if reason is not None:
            print(
                f"{prog}: error: another process of this run stopped or cannot be reached "
                f"({reason}); this process stops too: continue with --resume once every process "
                "can run",
                file=sys.stderr,
            )
        elif isinstance(error, MnistJaxError):
            print(f"{prog}: error: {_one_line(error)}", file=sys.stderr)
        elif isinstance(error, OSError):  # a path the system refuses (too long, not a folder)
            where = f": {error.filename}" if error.filename else ""
            print(f"{prog}: error: {error.strerror or error}{where}", file=sys.stderr)
        elif _several_processes():  # a bug: the others must not wait for this process
            traceback.print_exc()
            status = 1
        else:
            raise
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        status = 130
    finally:
        unlock_run_dir()
        signal.set_wakeup_fd(-1)
        os.close(watcher)  # the watcher reads the end of file and exits
    if status and _several_processes():
        import jax

        # JAX's shutdown would wait for the lost process and then abort with a stack trace.
        sys.stdout.flush()
        sys.stderr.flush()
        if jax.process_index() == 0:
            # Process 0 hosts the coordination service: leaving at once would abort the others
            # before they print their own line.
            time.sleep(PROCESS_0_GRACE_SECONDS)
        os._exit(status)
    gc.freeze()  # what the command imported and kept, as above
    sys.exit(status)


PROCESS_0_GRACE_SECONDS = 3.0


def _one_line(error: BaseException) -> str:
    """An error's text on one line: a path holding a newline is shown escaped, as repr would."""
    try:
        text = str(error)
    except Exception:  # an exception whose own text fails
        text = type(error).__name__
    return text.replace("\r", "\\r").replace("\n", "\\n")


def _several_processes() -> bool:
    import jax

    # Not `jax.process_count()`: on an early error it would start the backend just to answer.
    return jax.distributed.is_initialized() and jax.process_count() > 1


INTERRUPT_GRACE_SECONDS = 2.0


# The watcher: a separate process, so that it runs even while the command's threads cannot (a
# compiled program or XLA's compiler may hold the interpreter for minutes). It reads the signal
# numbers the command's wakeup descriptor receives; end of file means the command has ended.
_WATCHER = """
import os, signal, sys, time
pid, grace = int(sys.argv[1]), float(sys.argv[2])
while True:
    received = os.read(0, 64)
    if not received:
        sys.exit(0)
    if signal.SIGINT in received:
        break
time.sleep(grace)
try:
    os.kill(pid, 0)
except ProcessLookupError:
    sys.exit(0)
print("interrupted: stopped without waiting for the running epoch; the newest checkpoint is kept "
      "(continue with --resume)", file=sys.stderr, flush=True)
os.kill(pid, signal.SIGKILL)
"""


def stop_promptly_on_interrupt(grace: float = INTERRUPT_GRACE_SECONDS) -> int:
    """Makes Ctrl-C end the command within `grace` seconds, even inside a compiled epoch.

    Python runs its SIGINT handler only when the main thread returns to the interpreter, which a
    compiled epoch can delay for minutes. The signal reaches the wakeup file descriptor at once,
    though; a watcher process gives the command `grace` seconds to stop the normal way, then ends
    it. What is on disk stays consistent (files are renamed into place, checkpoints are committed
    whole), so the run continues from its newest checkpoint with --resume. Returns the descriptor
    to close when the command is over.
    """
    read_end, write_end = os.pipe()
    os.set_blocking(write_end, False)
    signal.set_wakeup_fd(write_end, warn_on_full_buffer=False)
    # A session of its own: a Ctrl-C at the terminal reaches the command, not the watcher.
    subprocess.Popen(
        [sys.executable, "-c", _WATCHER, str(os.getpid()), str(grace)],
        stdin=read_end,
        start_new_session=True,
    )
    os.close(read_end)
    return write_end


def quiet_library_logs() -> None:
    """Orbax logs routine events (e.g. opening checkpoints read-only) as absl warnings; the commands
    report what matters themselves."""
    import logging
    import warnings

    # Orbax also logs its failures (with tracebacks) before raising them; the commands report the
    # raised error in one line, so its log stays quiet but for critical messages.
    logging.getLogger("absl").setLevel(logging.CRITICAL)
    # Our warnings (e.g. a damaged checkpoint skipped on resume) as one line each, without source.
    warnings.showwarning = lambda message, *_, **__: print(f"warning: {message}", file=sys.stderr)
