"""`python -m experiments.scaling_bench`: how a sweep's epoch scales with its number of members.

For each member count N (`--members 1,4,16`; on an accelerator try `1,4,16,64,256,1024`) it times,
on whatever device JAX finds, one training epoch of N members of the notebook's MLP three ways:
  - vmap:   the sweep's program training all of a device's members at once (`jax.vmap`);
  - map:    the same program training them one at a time (`lax.map`, the CPU default);
  - single: the single run's compiled epoch, called once per member.
Compilation is timed apart from the steady epoch (the best of `--repeats` epochs after a warm-up).
Prints a table of seconds per epoch and examples/s (all members and per member) and, with
`--out DIR`, writes it as scaling.md and scaling.json with a plot, scaling.png.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from pathlib import Path

import jax

from experiments import cli
from experiments.bench import timed
from experiments.console import device_text
from mnist_jax.config import TrainConfig
from mnist_jax.data import load_dataset
from mnist_jax.device_data import spec_for, to_device
from mnist_jax.errors import ConfigError
from mnist_jax.fileio import write_json_atomic, write_text_atomic
from mnist_jax.rundir import device_summary
from mnist_jax.sweep import expand_members, parse_int_ranges
from mnist_jax.sweep import program as prog
from mnist_jax.train import create_train_state, train_epoch_jit

MODES = ("vmap", "map", "single")


def time_members(config: TrainConfig, data, spec, n: int, mode: str, repeats: int) -> dict:
    """Compile and steady-epoch seconds of `n` members trained the `mode` way."""
    jax.clear_caches()  # each mode and count compiles from scratch: its compile time is its own
    if mode == "single":  # a state per member
        images, labels = data.train_images, data.train_labels
        states = [create_train_state(config.replace(seed=k), spec) for k in range(n)]
        lower = functools.partial(train_epoch_jit.lower, spec)
    else:  # one state of all members
        mesh = prog.member_mesh(jax.devices()[:1] if n % jax.device_count() else None)
        shared = prog.replicate_data(data, mesh)
        images, labels = shared.train_images, shared.train_labels
        states = [prog.init_members(spec, expand_members(range(n)), mesh=mesh, base=config)]
        lower = prog.epoch_program(spec, mesh, None if mode == "vmap" else 1).lower
    epoch, compile_seconds = timed(lambda: lower(states[0], images, labels).compile())

    def call():
        for k, state in enumerate(states):
            states[k], metrics = epoch(state, images, labels)
        return metrics

    timed(call)  # warm-up: threads and allocations
    steady = min(timed(call)[1] for _ in range(repeats))
    return {"compile_seconds": compile_seconds, "epoch_seconds": steady}


def plot(rows: list[dict], device: str):
    from matplotlib.figure import Figure

    fig = Figure(figsize=(10, 4), layout="constrained")
    seconds_ax, rate_ax = fig.subplots(1, 2)
    for mode in MODES:
        mine = [r for r in rows if r["mode"] == mode]
        counts = [r["members"] for r in mine]
        seconds_ax.plot(counts, [r["epoch_seconds"] for r in mine], marker="o", label=mode)
        rate_ax.plot(counts, [r["examples_per_second"] for r in mine], marker="o", label=mode)
    counts = sorted({r["members"] for r in rows})
    for ax, name in ((seconds_ax, "seconds per epoch (all members)"), (rate_ax, "examples/s")):
        ax.set_xscale("log", base=2)
        ax.set_xticks(counts, [str(c) for c in counts])
        ax.set_yscale("log")
        ax.set_xlabel("members")
        ax.set_ylabel(name)
        ax.grid(True, alpha=0.3)
        ax.legend()
    fig.suptitle(f"one epoch of N members of the notebook's MLP, {device}")
    return fig


def main(argv: Sequence[str] | None = None) -> int:
    parser = cli.Parser(
        prog="python -m experiments.scaling_bench", description=__doc__.split("\n\n")[0]
    )
    cli.add_data_flags(parser)
    parser.add_argument("--members", default="1,4,16", help="member counts (default 1,4,16)")
    parser.add_argument("--modes", default=",".join(MODES), help="vmap, map, single")
    parser.add_argument("--repeats", type=cli.positive_int, default=3)
    parser.add_argument("--batch-size", type=cli.positive_int, default=512)
    parser.add_argument("--out", type=cli.folder_path, default=None, help="write the table here")
    args = parser.parse_args(argv)
    counts = parse_int_ranges(args.members)
    modes = args.modes.split(",")
    if not counts or min(counts) < 1 or any(m not in MODES for m in modes):
        raise ConfigError(f"--members must be positive counts, --modes some of {MODES}")
    if args.out and Path(args.out).exists():
        raise ConfigError(f"--out {args.out} exists; choose a new folder")
    config = cli.config_from_args(args)
    dataset = load_dataset(config.dataset, config.data_dir)
    spec = spec_for(config, dataset)
    data = to_device(dataset, config, spec)
    examples = int(data.train_images.shape[0])
    device = device_text(device_summary())
    print(f"device: {device}; {examples:,} training examples per member and epoch")
    print(
        f"{'members':>7} {'mode':<6} {'compile s':>9} {'epoch s':>9} {'ex/s all':>12} "
        f"{'ex/s/member':>11}"
    )
    rows = []
    for n in counts:
        for mode in modes:
            row = {
                "members": n,
                "mode": mode,
                **time_members(config, data, spec, n, mode, args.repeats),
            }
            row["examples_per_second"] = n * examples / row["epoch_seconds"]
            rows.append(row)
            print(
                f"{n:>7} {mode:<6} {row['compile_seconds']:>9.2f} {row['epoch_seconds']:>9.3f} "
                f"{row['examples_per_second']:>12,.0f} {row['examples_per_second'] / n:>11,.0f}",
                flush=True,
            )
    if args.out:
        from mnist_jax.plots import save_figure

        out = Path(args.out)
        table = [
            "| members | mode | compile s | epoch s | examples/s | per member |",
            "|---:|---|---:|---:|---:|---:|",
        ]
        table += [
            f"| {r['members']} | {r['mode']} | {r['compile_seconds']:.2f} "
            f"| {r['epoch_seconds']:.3f} | {r['examples_per_second']:,.0f} "
            f"| {r['examples_per_second'] / r['members']:,.0f} |"
            for r in rows
        ]
        write_text_atomic(out / "scaling.md", f"Device: {device}.\n\n" + "\n".join(table) + "\n")
        write_json_atomic(out / "scaling.json", {"device": device, "rows": rows})
        save_figure(plot(rows, device), out / "scaling.png")
        print(f"wrote: {out / 'scaling.md'}, {out / 'scaling.json'}, {out / 'scaling.png'}")
    return 0


if __name__ == "__main__":
    cli.run_main(main, "python -m experiments.scaling_bench")
