"""`python -m experiments.compare` on two 1-epoch runs on a small cut of the real MNIST, and its
refusals."""

import contextlib
import io

import numpy as np
import pytest
import scipy.stats

from experiments import baseline, compare
from experiments.cli import run_main
from mnist_jax.predictions import Predictions


def run_cli(argv, capsys):
    with pytest.raises(SystemExit) as exit_info:
        run_main(compare.main, compare.PROG, argv)
    return exit_info.value.code, capsys.readouterr()


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory, small_mnist):
    """Two runs of `experiments.baseline`, trained in this process (what compare reads is their
    run directories, not how they were started)."""
    root = tmp_path_factory.mktemp("runs")
    for name, extra in (("a", []), ("b", ["--seed", "1", "--learning-rate", "3e-3"])):
        argv = ["--epochs", "1", "--quiet", "--no-tensorboard", *small_mnist]
        printed = io.StringIO()
        with (
            contextlib.redirect_stdout(printed),
            contextlib.redirect_stderr(printed),
            pytest.raises(SystemExit) as exit_info,
        ):
            run_main(
                baseline.main,
                "python -m experiments.baseline",
                [*argv, "--out", str(root / name), *extra],
            )
        assert exit_info.value.code == 0, printed.getvalue()
    return root / "a", root / "b"


@pytest.mark.slow
def test_compare_two_runs_is_mcnemars_test_on_their_predictions(two_runs, tmp_path, capsys):
    a, b = two_runs
    out = tmp_path / "comparison.md"
    code, printed = run_cli([str(a), str(b), "--out", str(out)], capsys)
    assert code == 0, printed.err
    correct_a = Predictions.load(a / "predictions.npz").correct[0]
    correct_b = Predictions.load(b / "predictions.npz").correct[0]
    only_a, only_b = int(np.sum(correct_a & ~correct_b)), int(np.sum(~correct_a & correct_b))
    p = scipy.stats.binomtest(only_a, only_a + only_b, 0.5).pvalue
    text = out.read_text()
    assert f"only A {only_a:,}, only B {only_b:,}" in text
    assert f"McNemar's exact p = {p:.3g}" in text
    assert "a (mlp lr=0.001 seed 0)" in text and "b (mlp lr=0.003 seed 1)" in text
    difference = 100 * (correct_b.mean() - correct_a.mean())
    assert f"Difference {difference:+.2f} points" in text
    conclusion = next(line for line in text.splitlines() if line.startswith("**"))
    if p < 0.05:
        better = "b (mlp lr=0.003 seed 1)" if only_b > only_a else "a (mlp lr=0.001 seed 0)"
        assert f"{better} is more accurate" in conclusion
    else:
        assert "No difference shown" in conclusion
    # The caveat follows the conclusion whatever it is.
    assert text.split(conclusion, 1)[1].strip().startswith("One seed each")
    assert conclusion.strip("*") in printed.out and "One seed each" in printed.out


def _configurations(differ: bool):
    """Two configurations of 6 seeds on 400 images: B is right on 8 more images per seed (or on
    as many, other ones)."""
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 10, 400)
    a, b = [], []
    for _ in range(6):
        right = rng.random(400) < 0.9
        other = right.copy()
        wrong = np.flatnonzero(~right)[:8]
        other[wrong] = True
        if not differ:
            other[np.flatnonzero(right)[:8]] = False
        for runs, correct in ((a, right), (b, other)):
            probabilities = np.full((400, 10), 0.01)
            probabilities[np.arange(400), np.where(correct, labels, (labels + 1) % 10)] = 0.91
            runs.append(probabilities)
    return (
        Predictions.from_probabilities(a, labels),
        Predictions.from_probabilities(b, labels),
    )


@pytest.mark.parametrize("differ", [True, False])
def test_configuration_comparison_names_the_verdicts_test_and_its_caveat_whatever_it_finds(differ):
    from mnist_jax.comparison import SEEDS_CAVEAT, compare_configurations, render_comparison

    a, b = _configurations(differ)
    result = compare_configurations(a, range(6), b, range(6))
    assert result["outcome"] == ("better" if differ else "no difference shown")
    text = render_comparison(result, "A", "B", ["sweep"])
    conclusion = next(line for line in text.splitlines() if line.startswith("**"))
    assert "paired t-test over 6 seeds" in conclusion
    assert SEEDS_CAVEAT in text.split(conclusion, 1)[1]
    assert "The verdict rests on the paired t-test" in SEEDS_CAVEAT
    # P(beats) with its exact interval, ties counted as the text says
    assert "(ties count one half), exact 95% interval [" in text
    assert "95% interval over seeds and test images [" in text


def test_compare_refuses_bad_input_with_one_line(tmp_path, capsys):
    empty = tmp_path / "empty"
    empty.mkdir()
    (tmp_path / "taken.md").write_text("mine")
    cases = [
        ([str(empty)], "give two run directories"),
        ([str(empty), str(empty)], "holds no predictions.npz"),
        ([str(tmp_path / "missing"), str(empty)], "is not a folder"),
        ([str(empty), "--a", "lr=0.1", "--b", "lr=0.2"], "not a finished sweep directory"),
        ([str(empty), str(empty), "--out", str(tmp_path / "taken.md")], "exists"),
    ]
    for argv, message in cases:
        argv = argv if "--out" in argv else [*argv, "--out", str(tmp_path / "c.md")]
        code, printed = run_cli(argv, capsys)
        lines = printed.err.strip().splitlines()
        assert code == 2 and len(lines) == 1 and message in lines[0], (argv, printed.err)
    assert (tmp_path / "taken.md").read_text() == "mine" and not (tmp_path / "c.md").exists()


def test_compare_refuses_predictions_of_different_test_sets(tmp_path, capsys):
    for name, labels in (("a", [0, 1, 2]), ("b", [0, 1, 1])):
        (tmp_path / name).mkdir()
        Predictions.from_probabilities([np.eye(3)], np.array(labels)).save(
            tmp_path / name / "predictions.npz"
        )
    argv = [str(tmp_path / "a"), str(tmp_path / "b"), "--out", str(tmp_path / "c.md")]
    code, printed = run_cli(argv, capsys)
    assert code == 2 and "different test labels" in printed.err


def _edited_copy(run, tmp_path, edit):
    import json
    import shutil

    copy = tmp_path / "edited"
    shutil.copytree(run, copy)
    if edit == "dataset":  # another dataset with the same labels (inverted images, say)
        config = json.loads((copy / "config.json").read_text())
        config["dataset"]["fingerprint"] = "0" * 64
        (copy / "config.json").write_text(json.dumps(config))
    else:
        arrays = dict(np.load(copy / "predictions.npz"))
        if edit == "class 200":
            arrays["predicted"] = arrays["predicted"].astype(np.uint8)
            arrays["predicted"][0, 0] = 200
        elif edit == "all right":
            arrays["predicted"] = arrays["labels"][None, :].copy()
        elif edit == "valid 7":
            arrays["valid"] = np.array([7])
        np.savez(copy / "predictions.npz", **arrays)
    return copy


@pytest.mark.slow
@pytest.mark.parametrize(
    "edit, message",
    [
        ("dataset", "tested on different datasets"),
        ("class 200", "names class 200, but the run has 10 classes"),
        ("all right", "right answers where metrics.json says"),
        ("valid 7", "valid must be true or false"),
    ],
)
def test_compare_refuses_runs_whose_files_do_not_describe_one_test_set(
    two_runs, tmp_path, capsys, edit, message
):
    # Each was compared with confident p-values, exit 0.
    edited = _edited_copy(two_runs[1], tmp_path, edit)
    code, printed = run_cli(
        [str(two_runs[0]), str(edited), "--out", str(tmp_path / "c.md")], capsys
    )
    assert code == 2 and len(printed.err.splitlines()) == 1, printed.err
    assert message in printed.err
    assert not (tmp_path / "c.md").exists()


def _fake_sweep(folder, seeds, learning_rates, probabilities, labels):
    """A sweep directory as experiments.sweep writes it, as far as compare reads it."""
    import json

    folder.mkdir()
    members = [
        {"seed": s, "learning_rate": lr, "dropout_rate": 0.25, "hidden_sizes": [128, 128]}
        for s, lr in zip(seeds, learning_rates)
    ]
    predictions = Predictions.from_probabilities(probabilities, labels)
    for member, right in zip(members, predictions.correct.sum(axis=1)):
        member.update(diverged_epoch=None, test_correct=int(right))
    (folder / "sweep.json").write_text("{}")
    (folder / "members.json").write_text(json.dumps(members))
    predictions.save(folder / "predictions.npz")
    return members


def lr_a_b(tmp_path):
    """The two learning rates of `_fake_sweep`'s sweep in tmp_path/s, compared into c.md."""
    return [
        str(tmp_path / "s"),
        "--a",
        "lr=1e-3",
        "--b",
        "lr=3e-3",
        "--out",
        str(tmp_path / "c.md"),
    ]


def test_compare_refuses_a_configuration_with_repeated_seeds(tmp_path, capsys):
    rng = np.random.default_rng(0)
    probabilities = list(rng.dirichlet(np.ones(3), size=(4, 20)))
    _fake_sweep(
        tmp_path / "s", [0, 0, 0, 1], [1e-3, 1e-3, 3e-3, 3e-3], probabilities, np.zeros(20, int)
    )
    code, printed = run_cli(lr_a_b(tmp_path), capsys)
    assert code == 2 and "several members with seed(s) [0]" in printed.err
    assert len(printed.err.strip().splitlines()) == 1 and not (tmp_path / "c.md").exists()


def test_compare_refuses_predictions_of_another_sweep(tmp_path, capsys):
    import json

    rng = np.random.default_rng(0)
    probabilities = list(rng.dirichlet(np.ones(3), size=(4, 20)))
    members = _fake_sweep(
        tmp_path / "s", [0, 1, 0, 1], [1e-3, 1e-3, 3e-3, 3e-3], probabilities, np.zeros(20, int)
    )
    members[2]["test_correct"] += 1  # members.json says otherwise than the predictions
    (tmp_path / "s" / "members.json").write_text(json.dumps(members))
    code, printed = run_cli(lr_a_b(tmp_path), capsys)
    assert code == 2 and "disagree about member 2" in printed.err


def test_the_library_reads_run_folders_and_a_sweep_as_the_command_does(tmp_path):
    """What the command prints comes from these; a notebook calls them the same way."""
    import json

    from mnist_jax.comparison import compare_configurations
    from mnist_jax.comparison_folders import (
        compare_run_dirs,
        compare_sweep_dir,
        load_run_predictions,
        load_sweep_predictions,
    )
    from mnist_jax.errors import ConfigError

    labels = np.array([0, 1, 2, 1])
    for side, predicted, lr in (("a", [0, 1, 2, 2], 1e-3), ("b", [0, 1, 2, 1], 3e-3)):
        folder = tmp_path / side / "run"
        folder.mkdir(parents=True)
        Predictions.from_probabilities([np.eye(3)[predicted]], labels).save(
            folder / "predictions.npz"
        )
        config = {"num_classes": 3, "model": {"name": "mlp"}, "learning_rate": lr, "seed": 0}
        (folder / "config.json").write_text(json.dumps({**config, "dataset": {"fingerprint": "f"}}))
    predictions, fingerprint, details = load_run_predictions(tmp_path / "a" / "run")
    assert (predictions.num_models, fingerprint, details) == (1, "f", "mlp lr=0.001 seed 0")
    # Two folders of one name are shown by their paths.
    result, name_a, name_b = compare_run_dirs(tmp_path / "a" / "run", str(tmp_path / "b" / "run"))
    assert name_a == f"{tmp_path / 'a' / 'run'} (mlp lr=0.001 seed 0)"
    assert name_b == f"{tmp_path / 'b' / 'run'} (mlp lr=0.003 seed 0)"
    assert result["kind"] == "runs" and result["mcnemar"]["b_only"] == 1
    with pytest.raises(ConfigError, match="is not a folder"):
        load_run_predictions(tmp_path / "missing")

    rng = np.random.default_rng(0)
    probabilities = list(rng.dirichlet(np.ones(3), size=(4, 20)))
    _fake_sweep(
        tmp_path / "s", [0, 1, 0, 1], [1e-3, 1e-3, 3e-3, 3e-3], probabilities, np.zeros(20, int)
    )
    members, predictions = load_sweep_predictions(tmp_path / "s")
    assert [m.seed for m in members] == [0, 1, 0, 1] and predictions.num_models == 4
    result, label_a, label_b = compare_sweep_dir(tmp_path / "s", ["lr=3e-3"], ["lr=1e-3"])
    expected = compare_configurations(
        predictions.rows([2, 3]), [0, 1], predictions.rows([0, 1]), [0, 1]
    )
    assert result["per_seed"] == expected["per_seed"] and "0.003" in label_a and "0.001" in label_b
    with pytest.raises(ConfigError, match="--a and --b name the same configuration"):
        compare_sweep_dir(tmp_path / "s", ["lr=1e-3"], ["lr=1e-3"])
