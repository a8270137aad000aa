"""Flags shared by every command, generated from `TrainConfig`'s fields and their metadata.

A field's flag is its name (`--dropout-rate`, older spellings such as `--dropout` kept as aliases),
its help text sits next to the field, and `experiments.sweep` takes lists of the fields marked
`sweep` (`multi=True`). Values are validated by `TrainConfig`, in one place; this module only parses
text. Abbreviated flags are refused (argparse would otherwise take `--lear` for
`--learning-rate`, and slip past the flags a resume refuses). Every user error ends as one line on
stderr and exit status 2 (`run_main`).
"""

from __future__ import annotations

import argparse
import dataclasses
import gc
import os
import signal
import subprocess
import sys
import time
import traceback
from collections.abc import Callable, Iterable, Sequence
from typing import Any, NoReturn

from mnist_jax.config import FIELDS, TrainConfig
from mnist_jax.config import applies as config_applies
from mnist_jax.errors import ConfigError, MnistJaxError
from mnist_jax.rundir import unlock_run_dir
from mnist_jax.runtime import configure_xla_cpu

DEFAULTS = TrainConfig()


class Parser(argparse.ArgumentParser):
    """argparse with one-line errors (argparse prints the whole usage block first) and without
    prefix matching of long flags."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, allow_abbrev=False, **kwargs)

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def folder_path(text: str) -> str:
    """An argparse type: a non-empty path (an empty one would silently mean "not given") in
    UTF-8 (the checkpoint library cannot write under other bytes: it failed after training)."""
    if not text.strip():
        raise argparse.ArgumentTypeError("expected a folder, not an empty path")
    try:
        text.encode()
    except UnicodeEncodeError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not valid UTF-8; choose a folder name in UTF-8"
        ) from None
    return text


def positive_int(text: str) -> int:
    """An argparse type: an integer >= 1."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"invalid value {text!r}: expected a positive integer")
    return value


def positive_int_list(text: str) -> list[int]:
    """An argparse type: comma-separated integers >= 1 (e.g. member counts)."""
    return _list_of(positive_int)(text)


def _list_of(parse: Callable, separator: str = ","):
    def parse_list(text: str):
        parts = text.split(separator)
        if not all(part.strip() for part in parts):
            raise argparse.ArgumentTypeError(f"invalid list {text!r}: an empty item")
        return [parse(part) for part in parts]

    return parse_list


def _parser_of(field: dataclasses.Field) -> Callable[[str], Any]:
    """The field's own `parse` (its ValueError as argparse's message), else the default's type."""
    parse = field.metadata.get("parse")
    if parse is None:
        return str if field.default is None else type(field.default)

    def parse_flag(text: str):
        try:
            return parse(text)
        except ValueError as error:
            raise argparse.ArgumentTypeError(str(error)) from None

    return parse_flag


def _choice_of(parse: Callable[[str], Any], choices: Sequence[str] | None):
    """`parse`, refusing values outside `choices` (argparse's own check sees the whole list)."""
    if not choices:
        return parse

    def parse_choice(text: str):
        value = parse(text)
        if value not in choices:
            raise argparse.ArgumentTypeError(
                f"invalid choice {text!r} (choose from {', '.join(choices)})"
            )
        return value

    return parse_choice


def flag_names(field: dataclasses.Field) -> tuple[str, ...]:
    """A field's flag (`--learning-rate` for `learning_rate`) and its older spellings."""
    return ("--" + field.name.replace("_", "-"), *field.metadata.get("aliases", ()))


def add_config_flags(
    parser: argparse.ArgumentParser,
    *,
    groups: Sequence[str] = ("data", "training"),
    multi: bool = False,
    skip: Sequence[str] = (),
    defaults: dict[str, Any] | None = None,
) -> None:
    """One flag per `TrainConfig` field of `groups` (but `skip`), from the field's metadata.

    With `multi`, fields marked `sweep` take lists (comma-separated; hidden sizes ':'-separated)
    and default to a one-element list. `defaults` replaces fields' defaults for this command
    (the sweep validates on held-out data, the baseline on the test set as the notebook did).
    """
    defaults = defaults or {}
    sections = {name: parser.add_argument_group(name) for name in groups}
    for field in dataclasses.fields(TrainConfig):
        group = field.metadata.get("group")
        if group not in sections or field.name in skip:
            continue
        if field.metadata.get("parse") == "flag":  # a switch: present or not, never a list
            sections[group].add_argument(
                *flag_names(field),
                dest=field.name,
                action="store_true",
                help=field.metadata["help"],
            )
            continue
        parse, default = _parser_of(field), defaults.get(field.name, field.default)
        listed = multi and field.metadata.get("sweep")
        choices = field.metadata.get("choices")
        if listed:
            parse = _list_of(_choice_of(parse, choices), field.metadata["list_separator"])
            default, choices = [default], None
        shown = defaults.get(field.name, field.default)
        shown = ",".join(map(str, shown)) if isinstance(shown, tuple) else shown
        text = field.metadata["help"] + ("" if shown is None else f" (default {shown})")
        if listed:
            text += "; a list sweeps over it"
        sections[group].add_argument(
            *flag_names(field),
            dest=field.name,
            type=parse,
            default=default,
            help=text,
            choices=choices,
        )


def add_data_flags(parser: argparse.ArgumentParser) -> None:
    add_config_flags(parser, groups=("data",))


def add_output_flags(parser: argparse.ArgumentParser, default_root: str) -> None:
    group = parser.add_argument_group("output")
    group.add_argument(
        "--out",
        type=folder_path,
        default=None,
        help=f"the run directory to create (default: a new folder under {default_root}/ "
        "named by dataset, time and seed); an existing run is never overwritten",
    )
    group.add_argument(
        "--quiet", action="store_true", help="print only the final results and errors"
    )


def add_logging_flags(parser: argparse.ArgumentParser) -> None:
    """--no-tensorboard (metrics.jsonl is always written)."""
    parser.add_argument(
        "--no-tensorboard",
        action="store_true",
        help="write no TensorBoard events (the metrics.jsonl log is always written)",
    )


def add_checkpoint_flags(
    parser: argparse.ArgumentParser, *, resume_metavar: str, resume_help: str
) -> None:
    """--save-every, --keep and --resume (whose text names what the command resumes)."""
    group = parser.add_argument_group("checkpoints")
    group.add_argument(
        "--resume", metavar=resume_metavar, type=folder_path, default=None, help=resume_help
    )
    group.add_argument(
        "--save-every",
        type=positive_int,
        default=1,
        help="save a checkpoint every N epochs, and always after the last (default 1)",
    )
    group.add_argument(
        "--keep",
        type=positive_int,
        default=3,
        help="keep the latest N checkpoints (default 3); a run also keeps its best "
        "by validation accuracy",
    )


# Flags that decide what a run computes: a resumed run takes them from its config.json instead.
RUN_DEFINING_FLAGS = (
    *(
        name
        for field in dataclasses.fields(TrainConfig)
        if field.metadata["defines_run"]
        for name in flag_names(field)
    ),
    "--out",
)


def refuse_flags_with_resume(argv: Sequence[str], record: str = "config.json") -> None:
    """A resumed run or sweep takes what defines it from its `record` file: a flag that would
    change it is one line naming the flags to drop."""
    given = sorted(
        {
            flag
            for arg in argv
            for flag in RUN_DEFINING_FLAGS
            if arg == flag or arg.startswith(flag + "=")
        }
    )
    if given:
        raise ConfigError(
            f"--resume continues a run with the configuration in its {record}; "
            f"drop {', '.join(given)}"
        )


def refuse_flags_that_do_nothing(argv: Sequence[str], configs: Iterable[TrainConfig]) -> None:
    """A flag given for a field that applies to none of `configs` (`--momentum` with adam alone)
    is one line, even at its default value, which `TrainConfig`'s own check cannot tell from a
    value left unset."""
    given = {
        field.name: flag
        for field in dataclasses.fields(TrainConfig)
        for flag in flag_names(field)
        if any(arg == flag or arg.startswith(flag + "=") for arg in argv)
    }
    if not given:
        return
    values = [dataclasses.asdict(config) for config in configs]
    for name, flag in given.items():
        if values and not any(config_applies(name, v) for v in values):
            why = FIELDS[name].metadata["applies"][1].format(**values[0])
            raise ConfigError(f"{flag} does nothing here ({why}): drop it")


def config_from_args(args: argparse.Namespace, **overrides) -> TrainConfig:
    """The validated TrainConfig of parsed flags (fields without a flag keep their defaults)."""
    values = {
        f.name: getattr(args, f.name)
        for f in dataclasses.fields(TrainConfig)
        if hasattr(args, f.name)
    }
    return TrainConfig(**{**values, **overrides})


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
        # JAX's shutdown would wait for the lost process and then abort with a stack trace.
        sys.stdout.flush()
        sys.stderr.flush()
        if _process_index() == 0:
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


def _process_index() -> int:
    import jax

    return jax.process_index()


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


__all__ = [
    "Parser",
    "add_config_flags",
    "add_data_flags",
    "add_output_flags",
    "config_from_args",
    "refuse_flags_that_do_nothing",
    "run_main",
    "ConfigError",
]
