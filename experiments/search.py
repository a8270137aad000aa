"""`python -m experiments.search`: a hyper-parameter search, each population trained as a sweep.

Optuna asks a population of trials at once (`--population`), the sweep trains them as compiled
programs, each epoch's validation accuracy is reported per trial, and the pruner's decisions stop
members inside the running program (`mnist_jax.search`). The search ends with a confirmation: the
best `--confirm-top` configurations trained again over fresh seeds as a sweep, with its intervals
and paired verdicts (SEARCH/confirmation/report.md); the test set is met only there. The study is
kept in SEARCH/study.journal or `--storage URL`; `--resume SEARCH_DIR` continues a killed search,
and `--join SEARCH_DIR` adds a worker process on the same study (SEARCH/worker-<k>/).
Needs the search extra: pip install -e '.[search]'.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

from experiments import cli
from experiments.console import Console
from experiments.sweep_output import ProgressPrinter
from mnist_jax.config import FIELDS
from mnist_jax.data import load_dataset
from mnist_jax.distributed import refuse_multi_process_settings
from mnist_jax.errors import ConfigError
from mnist_jax.rundir import is_empty_folder, read_run_record
from mnist_jax.runtime import enable_compilation_cache
from mnist_jax.search.space import check_space, parse_space
from mnist_jax.sweep.members import CONFIG_KEY_FIELDS

PROG = "python -m experiments.search"


def build_parser() -> cli.Parser:
    from mnist_jax.search.studies import PRUNERS, SAMPLERS

    parser = cli.Parser(prog=PROG, description=__doc__.split("\n\n")[0])
    cli.add_config_flags(parser, skip=("seed",), defaults={"validation": "holdout"})
    group = parser.add_argument_group("search")
    group.add_argument(
        "--space",
        nargs="+",
        default=None,
        metavar="ITEM|FILE",
        help="the search space: NAME=loguniform(LOW,HIGH), uniform(LOW,HIGH), "
        "int(LOW,HIGH) or choice(A|B), NAME a sweep field (lr, dropout, wd, "
        "schedule, optimizer, model...), or a file of such items",
    )
    group.add_argument(
        "--trials",
        type=cli.positive_int,
        default=64,
        help="trials trained (default 64; with --sampler grid: the grid's points)",
    )
    group.add_argument(
        "--population",
        type=cli.positive_int,
        default=16,
        help="trials asked at once and trained together (default 16)",
    )
    group.add_argument("--seeds-per-trial", type=cli.positive_int, default=1)
    group.add_argument("--sampler", choices=SAMPLERS, default="tpe")
    group.add_argument("--sampler-seed", type=int, default=0)
    group.add_argument("--pruner", choices=PRUNERS, default="successive-halving")
    group.add_argument(
        "--reduction-factor",
        type=cli.positive_int,
        default=4,
        metavar="ETA",
        help="the pruner keeps 1/ETA of the trials at each rung (default 4)",
    )
    group.add_argument(
        "--storage",
        default=None,
        metavar="URL",
        help="an Optuna storage URL (default: SEARCH/study.journal)",
    )
    group.add_argument(
        "--confirm-top",
        type=cli.positive_int,
        default=2,
        metavar="K",
        help="best configurations trained again over fresh seeds (default 2)",
    )
    group.add_argument(
        "--confirm-seeds",
        type=cli.positive_int,
        default=4,
        metavar="N",
        help="the fresh seeds, 2 or more: intervals are over seeds (default 4)",
    )
    group.add_argument(
        "--random-arm",
        type=cli.non_negative_int,
        default=0,
        metavar="K",
        help="K more trials in each population asked by random search, never "
        "pruned, unseen by the sampler and pruner: the report's baseline from the "
        "same study; at most --population (default 0)",
    )
    group.add_argument(
        "--compare",
        type=cli.folder_path,
        default=None,
        metavar="SEARCH_DIR",
        help="another finished search (e.g. --sampler random --pruner none): the "
        "report shows its best validation accuracy at equal member-epochs",
    )
    cli.add_output_flags(parser, "searches")
    parser.add_argument(
        "--resume",
        type=cli.folder_path,
        default=None,
        metavar="SEARCH_DIR",
        help="continue the search in SEARCH_DIR with its search.json",
    )
    parser.add_argument(
        "--join",
        type=cli.folder_path,
        default=None,
        metavar="SEARCH_DIR",
        help="work on the search in SEARCH_DIR beside its first process (the "
        "study's storage shared): train populations in SEARCH_DIR/worker-<k>/; "
        "the first process confirms",
    )
    return parser


_RESUMABLE = ("--resume", "--join", "--quiet", "--data-dir", "--compare")


def _settings(args, argv: Sequence[str]) -> tuple[dict, object, Path]:
    """The search's settings and configuration, checked before anything is created, or read back
    from SEARCH_DIR/search.json with --resume; and the search directory (not yet created)."""
    from mnist_jax.search import directory

    if args.resume and args.join:
        raise ConfigError("--join works beside a search; --resume continues one: give one")
    if args.join and args.compare:
        raise ConfigError("--compare is for the report, which --join does not write")
    if args.resume or args.join:
        flag, folder = ("--resume", args.resume) if args.resume else ("--join", args.join)
        given = [a for a in argv if a.startswith("--") and a.split("=")[0] not in _RESUMABLE]
        if given:
            raise ConfigError(
                f"{flag} takes the search from its {directory.SEARCH_FILE}; drop {given[0]}"
            )
        if not (Path(folder) / directory.SEARCH_FILE).is_file():
            raise ConfigError(
                f"{folder} holds no {directory.SEARCH_FILE}: is it a search directory?"
            )
        record, config = read_run_record(folder, directory.SEARCH_FILE)
        return record["settings"], config, Path(folder)
    if not args.space:
        raise ConfigError("give the search space: --space 'lr=loguniform(1e-4,1e-2)' ...")
    config = cli.config_from_args(args)
    space = parse_space(args.space, {n: getattr(config, n) for n in CONFIG_KEY_FIELDS})
    for field in space:  # the space sets it in every trial: the flag's value trains nothing
        for flag in cli.given_flags(argv, cli.flag_names(FIELDS[field])):
            raise ConfigError(f"{flag} does nothing: the space sets {field} in every trial")
    trials_given = bool(cli.given_flags(argv, ["--trials"]))
    settings = directory.new_settings(config, space, vars(args), trials_given=trials_given)
    if args.out and Path(args.out).exists() and not is_empty_folder(args.out):
        raise ConfigError(f"--out {args.out} already holds files; choose a new folder")
    name = settings["study_name"].removeprefix("search-")
    return settings, config, Path(args.out or Path("searches") / name)


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    refuse_multi_process_settings(PROG)  # each worker (--join) is one JAX process
    try:
        import optuna  # noqa: F401
    except ImportError:
        raise ConfigError("the search needs Optuna: pip install -e '.[search]'") from None
    from mnist_jax.search import confirm, directory
    from mnist_jax.search.directory import REPORT_FILE, RESULTS_FILE

    args = build_parser().parse_args(argv)
    other = confirm.compute_curve_of(args.compare, RESULTS_FILE) if args.compare else None
    settings, config, search_dir = _settings(args, argv)
    space = parse_space([settings["space"]], {n: getattr(config, n) for n in CONFIG_KEY_FIELDS})
    console = Console(quiet=args.quiet)
    enable_compilation_cache()
    dataset = load_dataset(config.dataset, args.data_dir or config.data_dir)
    if not (args.resume or args.join):  # every model, field and value of the space, first
        cli.refuse_flags_that_do_nothing(argv, check_space(config, space, dataset))
    mode = "resume" if args.resume else "join" if args.join else "new"
    record = {"config": config.to_dict(), "command": " ".join([PROG, *argv])}
    opened = directory.open_search(
        config, space, settings, dataset, search_dir, mode=mode, record=record, out=args.out
    )
    search_dir, study_in = opened.search_dir, opened.study_in
    progress = ProgressPrinter(console, config.epochs)
    if args.join:  # one more worker on the search's study, in SEARCH_DIR/worker-<k>/
        joined = directory.join_search(
            config,
            space,
            settings,
            dataset,
            search_dir,
            study_in,
            callbacks=[progress],
            info=console.info,
        )
        if joined is None:
            console.result(f"{search_dir} is finished: nothing to join")
            return 0
        worker, folder, trained = joined
        console.result(
            f"worker {worker}: {len(trained)} population(s) trained in {folder}; nothing left to "
            f"ask. The first process (or --resume {search_dir}) confirms and reports."
        )
        return 0
    finished = (search_dir / RESULTS_FILE).is_file()  # resumed: write only what is missing
    console.info(f"search directory: {search_dir}" + (" (finished)" if finished else ""))
    outcome = directory.complete_search(
        config,
        space,
        settings,
        dataset,
        search_dir,
        opened.study or study_in(search_dir),
        callbacks=[progress],
        info=console.info,
        compare=other,
    )
    if outcome.finished_before:
        what = ", ".join(map(str, outcome.written)) or "nothing, every output was there"
        console.info(f"the search was finished; wrote: {what}")
    summary, keys = outcome.summary, outcome.keys
    best = summary["selected"] or {"label": keys[0], "test": summary["configurations"][0]}
    console.result(
        f"selected by validation over {len(outcome.seeds)} fresh seeds: {best['label']}: test "
        f"accuracy {best['test']:.4%}; search {outcome.results['member_epochs']} member-epochs, "
        f"confirmation {summary['member_epochs']}; {search_dir / REPORT_FILE}"
    )
    return 0


if __name__ == "__main__":
    cli.run_main(main, PROG)
