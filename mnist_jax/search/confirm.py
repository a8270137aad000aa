"""The search's honest end: its best configurations trained again over fresh seeds as a sweep, with
the sweep's intervals and paired verdicts (`sweep.outputs`), and the search's compute curve: best
validation accuracy against member-epochs spent."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from mnist_jax.sweep.checkpoint import SweepCheckpointer, sweep_start
from mnist_jax.sweep.members import Member
from mnist_jax.sweep.outputs import analyse, data_sources, member_entries, write_sweep_files
from mnist_jax.sweep.run import run_sweep

CONFIRMATION_DIR = "confirmation"


def compute_curve(trials: Sequence) -> list[dict]:
    """Per finished trial, in trial order: the member-epochs spent so far (every trial's, pruned
    ones' included) and the best validation accuracy of a trial trained to the end so far."""
    curve, spent, best = [], 0, None
    for trial in sorted(trials, key=lambda t: t.number):
        if not trial.state.is_finished() or "member_epochs" not in trial.user_attrs:
            continue
        spent += int(trial.user_attrs["member_epochs"])
        if trial.state.name == "COMPLETE" and (best is None or trial.value > best):
            best = float(trial.value)
        curve.append({"trial": trial.number, "member_epochs": spent, "best_val_accuracy": best})
    return curve


def confirm(
    config, keys: Sequence[tuple], seeds: Sequence[int], dataset, data, out_dir: Path, *,
    mesh, members_per_step=1, callbacks: Sequence = (),
) -> dict:  # fmt: skip
    """Trains configurations `keys` (best first) over `seeds` as one sweep in `out_dir` (resumed
    from its checkpoints when there are some) and writes the sweep's members.json, summary.json,
    figures and report.md, comparing each with the best. Returns summary.json's content."""
    members = [Member.from_key(seed, key) for key in keys for seed in seeds]
    out_dir.mkdir(exist_ok=True)
    specs = lambda p: p.spec(config, data.num_classes, data.image_shape)
    start = sweep_start(out_dir, config, mesh=mesh, num_classes=data.num_classes, specs=specs)
    with SweepCheckpointer(out_dir, config, num_classes=data.num_classes, specs=specs) as saver:
        result = run_sweep(
            config, members, data, callbacks=[*callbacks, saver], mesh=mesh, keep_states=False,
            start=start, members_per_step=members_per_step,
        )  # fmt: skip
    summary = {
        **analyse(result, config, keys[0], data_sources(dataset, data, config)),
        "num_members": len(members),
        "num_programs": len(result.programs),
        "epochs": config.epochs,
        "member_epochs": sum(len(r.history) for r in result.members),
    }
    entries = member_entries(result, config.target_accuracy)
    write_sweep_files(out_dir, result, summary, entries, only_missing=False)
    return summary
