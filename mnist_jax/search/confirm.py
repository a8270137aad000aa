"""The search's honest end: its best configurations trained again over fresh seeds as a sweep, with
the sweep's intervals and paired verdicts (`sweep.outputs`), and the search's compute curve: best
validation accuracy against member-epochs spent."""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from pathlib import Path

from mnist_jax.errors import ConfigError
from mnist_jax.search.engine import RANDOM_ARM, SEARCH_ARM, arm
from mnist_jax.sweep.checkpoint import Checkpointer, sweep_start
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
    config,
    keys: Sequence[tuple],
    seeds: Sequence[int],
    dataset,
    data,
    out_dir: Path,
    *,
    mesh,
    members_per_step=1,
    callbacks: Sequence = (),
) -> tuple[dict, list]:
    """Trains configurations `keys` (best first) over `seeds` as one sweep in `out_dir` (resumed
    from its checkpoints when there are some) and writes the sweep's members.json, summary.json,
    figures and report.md that `out_dir` lacks, comparing each with the best. Returns
    summary.json's content and the paths written."""
    members = [Member.from_key(seed, key) for key in keys for seed in seeds]
    out_dir.mkdir(exist_ok=True)
    specs = lambda p: p.spec(config, data.num_classes, data.image_shape)
    start = sweep_start(out_dir, config, mesh=mesh, num_classes=data.num_classes, specs=specs)
    with Checkpointer(out_dir, config, num_classes=data.num_classes, specs=specs) as saver:
        result = run_sweep(
            config,
            members,
            data,
            callbacks=[*callbacks, saver],
            mesh=mesh,
            keep_states=False,
            start=start,
            members_per_step=members_per_step,
        )
    summary = {
        **analyse(result, config, keys[0], data_sources(dataset, data, config)),
        "num_members": len(members),
        "num_programs": len(result.programs),
        "epochs": config.epochs,
        "member_epochs": sum(len(r.history) for r in result.members),
    }
    entries = member_entries(result, config.target_accuracy)
    # What a killed search wrote is of these same numbers; a finished one's files stay as they are.
    return summary, write_sweep_files(out_dir, result, summary, entries, only_missing=True)


def close_timing(timing: dict) -> None:
    """The wall seconds of the last population started, if not yet closed."""
    if timing and "seconds" not in timing[max(timing)]:
        timing[max(timing)]["seconds"] = time.perf_counter() - timing[max(timing)]["start"]


def search_results(trials: Sequence, timing: dict, data, seeds: Sequence[int], summary) -> dict:
    """results.json: every trial, the compute curve of the search's arm (`member_epochs`: its
    total), the random arm's (`random_arm`, where the search has one), each population's wall
    seconds (`timing`, this process's: the first worker's) and examples per second (both arms),
    and the confirmation."""
    curve = compute_curve([t for t in trials if arm(t) == SEARCH_ARM])
    random = compute_curve([t for t in trials if arm(t) == RANDOM_ARM])
    for index, times in timing.items():  # wall seconds, overheads included, per population
        times["member_epochs"] = sum(
            t.user_attrs.get("member_epochs", 0)
            for t in trials
            if t.user_attrs.get("population") == index and t.user_attrs.get("worker", 0) == 0
        )
        examples = times["member_epochs"] * data.train_images.shape[0]
        times["examples_per_second"] = examples / times["seconds"]
    results = {
        "trials": [trial_entry(t) for t in trials],
        "compute_curve": curve,
        "member_epochs": curve[-1]["member_epochs"] if curve else 0,
        **(
            {"random_arm": {"compute_curve": random, "member_epochs": random[-1]["member_epochs"]}}
            if random
            else {}
        ),
        "populations": {str(k): {n: t[n] for n in t if n != "start"} for k, t in timing.items()},
        "confirmation": {
            "seeds": list(seeds),
            "member_epochs": summary["member_epochs"],
            "selected": summary["selected"],
            "configurations": list(map(confirmed, summary["configurations"])),
        },
    }
    return json.loads(json.dumps(results, default=str))


def trial_entry(trial) -> dict:
    """results.json's entry of a trial: its number, state, value, params, user attrs, reports."""
    return {
        "number": trial.number,
        "state": trial.state.name,
        "value": trial.value,
        "params": trial.params,
        **trial.user_attrs,
        "intermediate": {str(k): v for k, v in trial.intermediate_values.items()},
    }


def confirmed(row: dict) -> dict:
    """A confirmed configuration (a summary.json row): mean test accuracy, interval, verdict."""
    both = row["test_intervals"]["over_seeds_and_examples"]
    return {
        "label": row["label"],
        "test_accuracy": row["test_accuracy"]["mean"],
        "interval": [both["low"], both["high"]],
        "verdict": (row.get("comparison") or {}).get("verdict"),
    }


def compute_curve_of(search_dir: str, results_file: str) -> tuple[str, list]:
    """`--compare SEARCH_DIR`: its name and compute curve, read before anything is created."""
    try:
        results = json.loads((Path(search_dir) / results_file).read_text(encoding="utf-8"))
        return Path(search_dir).name, list(results["compute_curve"])
    except (OSError, ValueError, KeyError, TypeError, RecursionError) as error:
        raise ConfigError(f"--compare {search_dir}: no finished search ({error})") from None


def _best_within(curve: list, budget: int) -> str:
    values = [p["best_val_accuracy"] for p in curve if p["member_epochs"] <= budget]
    values = [v for v in values if v is not None]
    return f"{values[-1]:.2%}" if values else "-"


def render_report(settings: dict, results: dict, other: tuple | None = None) -> str:
    """SEARCH/report.md from search.json's settings and results.json; the random arm's curve
    (from the same study) and `other`'s, (name, compute curve) of another search, shown at equal
    member-epochs."""
    random = results.get("random_arm")
    arms = [("search", settings["sampler"], settings["pruner"])]
    if random:
        arms.append(("random", "random", "none"))
    head = (
        f"# Search: {settings['sampler']} sampler, {settings['pruner']} pruner, "
        f"{settings['trials']} trials in populations of {settings['population']}"
    )
    if random:
        head += f" (+ {settings['random_arm']} random search trials in each)"
    lines = [head, "", f"Space: `{settings['space']}`", ""]
    for name, sampler, pruner in arms:
        states = [t["state"] for t in results["trials"] if t.get("arm", "search") == name]
        spent = random["member_epochs"] if name == "random" else results["member_epochs"]
        pruned_by = "no pruner" if pruner == "none" else f"{pruner} pruner"
        title = f"{name.capitalize()} arm ({sampler} sampler, {pruned_by})" if random else ""
        lines += [
            f"{title or 'Trials'}: {states.count('COMPLETE')} complete, "
            f"{states.count('PRUNED')} pruned, {states.count('FAIL')} failed; "
            f"{spent} member-epochs.",
            "",
        ]
    columns = [
        *(["random search (this study's random arm)"] if random else []),
        *([other[0]] if other else []),
    ]
    lines += [
        "## Best validation accuracy against compute",
        "",
        "| trials | member-epochs | best validation accuracy (complete trials) |"
        + "".join(f" {c} at as many member-epochs |" for c in columns),
        "|---:|---:|---:|" + "---:|" * len(columns),
    ]
    curves = [*([random["compute_curve"]] if random else []), *([other[1]] if other else [])]
    curve = results["compute_curve"]
    shown = {len(curve) * k // 8 - 1 for k in range(1, 9)} | {len(curve) - 1}
    for i, point in enumerate(curve):
        if i in shown and point["best_val_accuracy"] is not None:
            lines.append(
                f"| {i + 1} | {point['member_epochs']} | {point['best_val_accuracy']:.2%} |"
                + "".join(f" {_best_within(c, point['member_epochs'])} |" for c in curves)
            )
    if random and random["compute_curve"]:
        last = random["compute_curve"][-1]
        best = last["best_val_accuracy"]
        lines += [
            "",
            f"The random arm, all of it: {len(random['compute_curve'])} trials, "
            f"{last['member_epochs']} member-epochs, best validation accuracy "
            + (f"{best:.2%}." if best is not None else "none complete."),
        ]
    lines += [
        "",
        "## Confirmation over fresh seeds (test set, met once)",
        "",
        f"Member-epochs: {results['confirmation']['member_epochs']}; the sweep's report: "
        "[confirmation/report.md](confirmation/report.md). Each configuration's mean test "
        "accuracy, its 95% interval over seeds and test images, and its paired comparison "
        "with the search's best:",
        "",
    ]
    for row in results["confirmation"]["configurations"]:
        low, high = row["interval"]
        lines.append(
            f"- {row['label']}: {row['test_accuracy']:.2%}"
            + (f" [{low:.2%}, {high:.2%}]" if low is not None else "")
            + (f"; {row['verdict']}" if row["verdict"] else "")
        )
    selected = results["confirmation"]["selected"]
    if selected:
        lines += [
            "",
            f"**Selected by the fresh seeds' validation accuracy: {selected['label']}**, "
            f"test accuracy {selected['test']:.2%}.",
        ]
    return "\n".join(lines) + "\n"
