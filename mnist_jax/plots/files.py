"""Writing a figure to disk atomically."""

from __future__ import annotations

import os
import uuid
from pathlib import Path

from matplotlib.figure import Figure

__all__ = ["save_figure"]


def save_figure(fig: Figure, path: str | os.PathLike[str], dpi: int = 150) -> Path:
    """Write `fig` to `path` atomically and return the path.

    Parent directories are created. The image goes to a hidden temporary file in the
    same directory, which then replaces `path` with `os.replace`, so a reader never
    sees a half-written file and a crash leaves the old file intact. The format follows
    the suffix (PNG when there is none or it is ``.png``).
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fmt = target.suffix[1:].lower() or "png"
    temporary = target.with_name(f".{target.name}.{uuid.uuid4().hex}.tmp")
    try:
        with open(
            temporary, "xb"
        ) as handle:  # a normal open, so the file gets the usual umask permissions
            fig.savefig(handle, format=fmt, dpi=dpi)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, target)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    return target
