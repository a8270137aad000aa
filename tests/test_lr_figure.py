"""The learning rate per epoch, a run figure added by one entry in `report.RUN_FIGURES` and its
function in `plots.training`: a run writes it with its other figures, report.md shows it, and
TensorBoard holds it among the run's images."""

import numpy as np
import pytest

from mnist_jax.plots.training import plot_learning_rate


def test_the_figure_draws_each_records_rate_against_its_epoch():
    history = [{"epoch": e, "learning_rate": r} for e, r in [(1, 8e-4), (2, 3e-4), (3, 5e-6)]]
    (line,) = plot_learning_rate(history).axes[0].get_lines()
    np.testing.assert_array_equal(line.get_xdata(), [1, 2, 3])
    np.testing.assert_array_equal(line.get_ydata(), [8e-4, 3e-4, 5e-6])


def test_records_without_a_rate_are_left_out_and_none_at_all_is_said():
    history = [{"epoch": 1}, {"epoch": 2, "learning_rate": 1e-3}]
    (line,) = plot_learning_rate(history).axes[0].get_lines()
    np.testing.assert_array_equal(line.get_xdata(), [2])
    ax = plot_learning_rate([{"epoch": 1, "train_loss": 2.3}]).axes[0]
    assert ax.get_lines() == [] and [t.get_text() for t in ax.texts] == [
        "no learning rate recorded"
    ]
    with pytest.raises(ValueError, match="empty"):
        plot_learning_rate([])


@pytest.mark.slow
def test_a_run_writes_it_reports_it_and_logs_it_to_tensorboard(tmp_path, capsys):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from experiments import baseline
    from experiments.cli import run_main
    from mnist_jax.data.fake import write_fake_dataset

    write_fake_dataset(tmp_path / "tiny", num_train=256, num_test=64, shape=(28, 28))
    run = tmp_path / "run"
    argv = ["--dataset", "tiny", "--data-dir", str(tmp_path / "tiny"), "--batch-size", "32"]
    argv += ["--epochs", "3", "--hidden", "16", "--schedule", "cosine", "--out", str(run)]
    with pytest.raises(SystemExit) as exit_info:
        run_main(baseline.main, "python -m experiments.baseline", [*argv, "--quiet"])
    assert exit_info.value.code == 0, capsys.readouterr().err
    assert (run / "learning_rate.png").read_bytes()[:4] == b"\x89PNG"
    assert "![Learning rate per epoch](learning_rate.png)" in (run / "report.md").read_text()
    events = EventAccumulator(str(run / "tensorboard"))
    events.Reload()
    assert "figures/learning_rate" in events.Tags()["images"]
