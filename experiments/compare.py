"""`python -m experiments.compare`: two runs, or two configurations of one sweep, compared on their
saved test predictions (predictions.npz).

    python -m experiments.compare RUN_A RUN_B
    python -m experiments.compare SWEEP --a lr=0.001 --b lr=0.003

Prints the comparison and writes it as Markdown (`--out`, default comparison.md in the current
folder; an existing file is never replaced). A run directory, or the folder `experiments.evaluate`
writes, holds predictions.npz; a sweep directory holds one row per member of members.json.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

from experiments import cli
from experiments.console import Console
from mnist_jax.comparison import render_comparison
from mnist_jax.comparison_folders import compare_run_dirs, compare_sweep_dir
from mnist_jax.errors import ConfigError
from mnist_jax.fileio import write_text_atomic

PROG = "python -m experiments.compare"
DEFAULT_OUT = "comparison.md"


def build_parser() -> cli.Parser:
    parser = cli.Parser(prog=PROG, description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "dirs",
        nargs="+",
        metavar="DIR",
        help="two run directories (or evaluation folders), or one sweep directory with --a/--b",
    )
    parser.add_argument(
        "--a",
        action="append",
        metavar="NAME=VALUE",
        help="with a sweep directory: configuration A, e.g. 'lr=0.001' (repeatable)",
    )
    parser.add_argument(
        "--b", action="append", metavar="NAME=VALUE", help="with a sweep directory: configuration B"
    )
    parser.add_argument(
        "--out",
        type=cli.folder_path,
        default=DEFAULT_OUT,
        help=f"the Markdown file to write (default {DEFAULT_OUT}); an existing file is refused",
    )
    parser.add_argument("--quiet", action="store_true", help="print only the conclusion")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    console = Console(quiet=args.quiet)
    out = Path(args.out)
    if out.exists():
        raise ConfigError(f"--out {out} exists; choose another file (nothing is replaced)")
    folders = [Path(d) for d in args.dirs]
    if len(folders) == 2 and not (args.a or args.b):
        result, name_a, name_b = compare_run_dirs(*folders)
    elif len(folders) == 1 and args.a and args.b:
        result, name_a, name_b = compare_sweep_dir(folders[0], args.a, args.b)
    else:
        raise ConfigError(
            "give two run directories, or one sweep directory with --a and --b naming two of "
            "its configurations"
        )
    text = render_comparison(result, name_a, name_b, [str(f) for f in folders])
    for line in text.splitlines():
        if line.startswith("**"):
            console.result(line.strip("*"))
        elif line and not line.startswith("# "):
            console.info(line)
    console.info(f"wrote: {write_text_atomic(out, text)}")
    return 0


if __name__ == "__main__":
    cli.run_main(main, PROG)
