"""`python -m experiments.coverage`: measure how often each interval the project prints covers the
truth (seeded simulations, `mnist_jax.stats.coverage`), and print the table of docs/statistics.md.

    python -m experiments.coverage                       # print the table (about a minute)
    python -m experiments.coverage --update docs/statistics.md

`--update FILE` replaces the table between FILE's two marker lines (`<!-- coverage table -->` and
`<!-- end of coverage table -->`) with the one just measured.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

from experiments import cli
from mnist_jax.errors import ConfigError
from mnist_jax.fileio import write_text_atomic
from mnist_jax.stats.coverage import coverage_table, render_table

PROG = "python -m experiments.coverage"
BEGIN, END = "<!-- coverage table -->", "<!-- end of coverage table -->"


def build_parser() -> cli.Parser:
    parser = cli.Parser(prog=PROG, description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--replicates",
        type=cli.positive_int,
        default=2000,
        help="simulated sweeps per row (default 2000: Monte-Carlo error about 0.5 points)",
    )
    parser.add_argument("--seed", type=int, default=0, help="the simulations' seed (default 0)")
    parser.add_argument(
        "--update",
        type=cli.folder_path,
        metavar="FILE",
        help=f"write the table into FILE between its lines {BEGIN} and {END}",
    )
    return parser


def replace_table(text: str, table: str) -> str:
    """`text` with the lines between its markers replaced by `table`."""
    if text.count(BEGIN) != 1 or text.count(END) != 1 or text.index(BEGIN) > text.index(END):
        raise ConfigError(f"the file must hold one line {BEGIN} and, after it, one line {END}")
    head, rest = text.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    return f"{head}{BEGIN}\n{table}{END}{tail}"


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(list(sys.argv[1:] if argv is None else argv))
    target = Path(args.update) if args.update else None
    if target is not None:
        if not target.is_file():
            raise ConfigError(f"--update {target}: no such file")
        replace_table(target.read_text(), "")  # refuse a file without markers before measuring
    table = render_table(coverage_table(replicates=args.replicates, seed=args.seed))
    print(table, end="")
    if target is not None:
        write_text_atomic(target, replace_table(target.read_text(), table))
        print(f"wrote: {target}")
    return 0


if __name__ == "__main__":
    cli.run_main(main, PROG)
