"""Flags shared by every command, generated from `TrainConfig`'s fields and their metadata.

A field's flag is its name (`--dropout-rate`, older spellings such as `--dropout` kept as aliases),
its help text sits next to the field, and `experiments.sweep` takes lists of the fields marked
`sweep` (`multi=True`). Values are validated by `TrainConfig`, in one place; this module only parses
text. Abbreviated flags are refused (argparse would otherwise take `--lear` for
`--learning-rate`, and slip past the flags a resume refuses). Every user error ends as one line on
stderr and exit status 2 (`experiments.process.run_main`).
"""

from __future__ import annotations

import argparse
import dataclasses
from collections.abc import Callable, Iterable, Sequence
from typing import Any, NoReturn

from experiments.process import run_main  # noqa: F401 (every command's entry, re-exported)
from mnist_jax.config import FIELDS, TrainConfig
from mnist_jax.config import applies as config_applies
from mnist_jax.errors import ConfigError


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


def _int_at_least(minimum: int, expected: str) -> Callable[[str], int]:
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            value = minimum - 1
        if value < minimum:
            raise argparse.ArgumentTypeError(f"invalid value {text!r}: expected {expected}")
        return value

    return parse


# argparse types: an integer >= 1; >= 0.
positive_int = _int_at_least(1, "a positive integer")
non_negative_int = _int_at_least(0, "an integer >= 0")


def _list_of(parse: Callable, separator: str = ","):
    def parse_list(text: str):
        parts = text.split(separator)
        if not all(part.strip() for part in parts):
            raise argparse.ArgumentTypeError(f"invalid list {text!r}: an empty item")
        values = []
        for part in parts:
            try:
                values.append(parse(part))
            except (TypeError, ValueError):  # float("abc"): argparse would name this function
                raise argparse.ArgumentTypeError(
                    f"invalid value {part.strip()!r} in {text!r}"
                ) from None
        return values

    return parse_list


def positive_int_list(text: str) -> list[int]:
    """An argparse type: comma-separated integers >= 1 (e.g. member counts)."""
    return _list_of(positive_int)(text)


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


def given_flags(argv: Sequence[str], flags: Iterable[str]) -> list[str]:
    """Those of `flags` that `argv` gives (as `--flag VALUE` or `--flag=VALUE`), sorted."""
    return sorted({f for f in flags for arg in argv if arg == f or arg.startswith(f + "=")})


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
    for field in FIELDS.values():
        group = field.metadata.get("group")
        if group not in sections or field.name in skip:
            continue
        flags, text = flag_names(field), field.metadata["help"]
        if field.metadata.get("parse") == "flag":  # a switch: present or not, never a list
            sections[group].add_argument(*flags, dest=field.name, action="store_true", help=text)
            continue
        default = defaults.get(field.name, field.default)
        shown = ",".join(map(str, default)) if isinstance(default, tuple) else default
        text += "" if shown is None else f" (default {shown})"
        parse, choices = _parser_of(field), field.metadata.get("choices")
        if multi and field.metadata.get("sweep"):
            parse = _list_of(_choice_of(parse, choices), field.metadata["list_separator"])
            default, choices, text = [default], None, text + "; a list sweeps over it"
        sections[group].add_argument(
            *flags, dest=field.name, type=parse, default=default, help=text, choices=choices
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
    parser.add_argument(
        "--no-tensorboard",
        action="store_true",
        help="write no TensorBoard events (the metrics.jsonl log is always written)",
    )


def add_checkpoint_flags(
    parser: argparse.ArgumentParser, *, resume_metavar: str, resume_help: str
) -> None:
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
    *(flag for f in FIELDS.values() if f.metadata["defines_run"] for flag in flag_names(f)),
    "--out",
)


def refuse_flags_with_resume(argv: Sequence[str], record: str = "config.json") -> None:
    """A resumed run or sweep takes what defines it from its `record` file: a flag that would
    change it is one line naming the flags to drop."""
    given = given_flags(argv, RUN_DEFINING_FLAGS)
    if given:
        raise ConfigError(
            f"--resume continues a run with the configuration in its {record}; "
            f"drop {', '.join(given)}"
        )


def refuse_flags_that_do_nothing(argv: Sequence[str], configs: Iterable[TrainConfig]) -> None:
    """A flag given for a field that applies to none of `configs` (`--momentum` with adam alone)
    is one line, even at its default value, which `TrainConfig`'s own check cannot tell from a
    value left unset."""
    values = [dataclasses.asdict(config) for config in configs]
    for name, field in FIELDS.items():
        for flag in given_flags(argv, flag_names(field)):
            if values and not any(config_applies(name, v) for v in values):
                why = field.metadata["applies"][1].format(**values[0])
                raise ConfigError(f"{flag} does nothing here ({why}): drop it")


def config_from_args(args: argparse.Namespace, **overrides) -> TrainConfig:
    """The validated TrainConfig of parsed flags (fields without a flag keep their defaults)."""
    values = {name: getattr(args, name) for name in FIELDS if hasattr(args, name)}
    return TrainConfig(**{**values, **overrides})
