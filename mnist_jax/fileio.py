"""Writing files atomically: the one place where this project puts bytes on disk.

Every writer (run directories, metrics, reports, plots, IDX files, downloads) goes through `save`:
the content goes to a hidden temporary file in the target's folder, is flushed and fsync'ed, and
then `os.replace` renames it over the target. A reader therefore sees the old file or the complete
new one, never half a file, and a failed or interrupted write removes its temporary file and
leaves an existing target untouched. The temporary file is in the same folder because a rename is
only atomic within one file system.

An `OSError` while writing (disk full, read-only file system, no permission, a parent that is a
file) becomes an `OutputError` naming the path and the system's reason, which the commands print
as one line before exiting with status 2. Other exceptions (a bug in a writer, Ctrl-C) pass
through unchanged.
"""

from __future__ import annotations

import contextlib
import json
import os
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO

from mnist_jax.errors import OutputError

__all__ = [
    "make_folder",
    "output_error",
    "save",
    "write_bytes_atomic",
    "write_json_atomic",
    "write_text_atomic",
]


def output_error(path: str | os.PathLike, error: OSError) -> OutputError:
    """The `OutputError` for `error` raised while writing `path`: "cannot write PATH: REASON"."""
    reason = error.strerror or str(error) or type(error).__name__
    return OutputError(f"cannot write {path}: {reason}", path=os.fspath(path), errno=error.errno)


def make_folder(path: str | os.PathLike) -> Path:
    """Create the folder `path` and its parents if missing; `OutputError` if that is impossible."""
    path = Path(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except FileExistsError:  # mkdir's own reason, "File exists", would hide what is wrong
        raise OutputError(
            f"cannot write {path}: it is a file, not a folder", path=os.fspath(path)
        ) from None
    except OSError as error:
        raise output_error(path, error) from error
    return path


def save(path: str | os.PathLike, write: Callable[[BinaryIO], object]) -> Path:
    """Create or replace `path` atomically with what `write(file)` writes; return the path.

    `write` gets a binary file object open for writing (e.g. `lambda f: fig.savefig(f)`).
    Missing parent folders are created. The file gets the permissions of any new file (0o666 less
    the umask), not the 0o600 of `tempfile.mkstemp`.
    """
    path = Path(path)
    make_folder(path.parent)
    temporary = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    try:
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        try:
            with os.fdopen(fd, "wb") as file:
                write(file)
                file.flush()
                os.fsync(file.fileno())
            os.replace(temporary, path)
        except BaseException:
            with contextlib.suppress(OSError):  # the original error is the one to report
                temporary.unlink(missing_ok=True)
            raise
    except OSError as error:
        raise output_error(path, error) from error
    return path


def write_bytes_atomic(path: str | os.PathLike, data: bytes) -> Path:
    """Create or replace `path` atomically with `data`; see `save`."""
    return save(path, lambda file: file.write(data))


def write_text_atomic(path: str | os.PathLike, text: str) -> Path:
    """Create or replace `path` atomically with `text` encoded as UTF-8; see `save`."""
    return write_bytes_atomic(path, text.encode("utf-8"))


def write_json_atomic(path: str | os.PathLike, value: Any) -> Path:
    """Create or replace `path` atomically with `value` as indented JSON and a final newline.

    NaN and infinities are refused (ValueError) rather than written as the non-standard `NaN`
    that other JSON readers reject; the value is encoded before anything is written.
    """
    return write_text_atomic(path, json.dumps(value, indent=2, allow_nan=False) + "\n")
