"""What the commands print: information lines, a progress bar over epochs, one line per epoch.

Quiet mode prints only results. The progress bar goes to stderr and only when stderr is a terminal,
so logs and pipes get plain lines.
"""

from __future__ import annotations

import contextlib
import dataclasses
import sys
from collections.abc import Iterator

from tqdm import tqdm

from mnist_jax.epochs import metric_keys, metric_words


def device_text(devices: dict) -> str:
    """`rundir.device_summary()`'s devices as the commands print them: `8 x cpu (cpu)`."""
    return f"{devices['count']} x {devices['kind']} ({devices['platform']})"


class Console:
    def __init__(self, quiet: bool = False):
        self.quiet = quiet

    def info(self, line: str) -> None:
        if not self.quiet:
            tqdm.write(line, file=sys.stdout)

    def result(self, line: str) -> None:
        tqdm.write(line, file=sys.stdout)

    @staticmethod
    def describe(config) -> str:
        return ", ".join(
            f"{field.name}={getattr(config, field.name)}" for field in dataclasses.fields(config)
        )

    @contextlib.contextmanager
    def epoch_progress(self, epochs: int, first_epoch: int = 1) -> Iterator[EpochPrinter]:
        show_bar = not self.quiet and sys.stderr.isatty()
        with tqdm(
            total=epochs,
            initial=first_epoch - 1,
            unit="epoch",
            disable=not show_bar,
            file=sys.stderr,
            leave=False,
            dynamic_ncols=True,
        ) as bar:
            yield EpochPrinter(self, bar)


class EpochPrinter:
    """A `fit` callback: advances the bar and prints the epoch's line."""

    def __init__(self, console: Console, bar: tqdm):
        self.console, self.bar = console, bar

    def __call__(self, state, record: dict, history: list) -> None:
        self.bar.update(1)
        self.bar.set_postfix(val_acc=f"{record['val_accuracy']:.4f}")
        parts: dict[str, list[str]] = {}  # per split: "loss 0.1234", "acc 0.9612", ...
        for key in metric_keys(record):
            split, name = metric_words(key)
            parts.setdefault(split, []).append(f"{name} {record[key]:.4f}")
        metrics = " | ".join(f"{split} {' '.join(words)}" for split, words in parts.items())
        self.console.info(f"epoch {record['epoch']:>3}: {metrics} | {record['seconds']:.2f} s")
