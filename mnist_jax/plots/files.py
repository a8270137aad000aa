"""Writing a figure to disk atomically."""

from __future__ import annotations

import os
from pathlib import Path

from matplotlib.figure import Figure

from mnist_jax.fileio import save

__all__ = ["save_figure"]


def save_figure(fig: Figure, path: str | os.PathLike[str], dpi: int = 150) -> Path:
    """Write `fig` to `path` atomically and return the path.

    Parent directories are created. The image is written through `mnist_jax.fileio.save`, so a
    reader never sees a half-written file, a failure leaves the old file intact, and a file that
    cannot be written (disk full, read-only folder) is an `OutputError` naming it. The format
    follows the suffix (PNG when there is none or it is ``.png``).
    """
    target = Path(path)
    fmt = target.suffix[1:].lower() or "png"
    return save(target, lambda handle: fig.savefig(handle, format=fmt, dpi=dpi))
