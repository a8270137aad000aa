"""A run from Python (`mnist_jax.run`): a user's model gets the run directory the command writes,
resumes bitwise in one call, and the commands read it (evaluate, --resume, compare)."""

import json
import textwrap

import numpy as np
import pytest

from experiments import baseline, evaluate
from mnist_jax.config import TrainConfig
from mnist_jax.errors import ConfigError
from mnist_jax.models import LinenModel
from mnist_jax.run import resume_run, train_run
from tests.helpers import assert_bitwise_equal
from tests.test_commands import command

MODULE = """
from typing import Callable

import flax.linen as nn
import jax.numpy as jnp

class TwoLayer(nn.Module):
    width: int = 16
    sizes: tuple = (3, 4)
    dropout_rate: float = 0.1

    @nn.compact
    def __call__(self, x, train=False):
        h = nn.relu(nn.Dense(self.width)(x))
        return nn.Dense(10)(nn.Dropout(self.dropout_rate, deterministic=not train)(h))


class WithObjects(nn.Module):  # fields the record can only name: a function, a dtype
    act: Callable = nn.relu
    dtype: jnp.dtype = jnp.float32
    width: int = 8

    @nn.compact
    def __call__(self, x, train=False):
        return nn.Dense(10, dtype=self.dtype)(self.act(nn.Dense(self.width)(x)))


class RateWithoutDefault(nn.Module):
    dropout_rate: float
    width: int = 8

    @nn.compact
    def __call__(self, x, train=False):
        h = nn.Dropout(self.dropout_rate, deterministic=not train)(nn.Dense(self.width)(x))
        return nn.Dense(10)(h)
"""


class Interrupted(Exception):
    pass


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    import importlib
    import sys

    from mnist_jax.data.fake import write_fake_dataset

    folder = tmp_path_factory.mktemp("python-run")
    write_fake_dataset(folder / "tiny", num_train=256, num_test=64, shape=(28, 28))
    (folder / "python_run_models.py").write_text(textwrap.dedent(MODULE))
    sys.path.insert(0, str(folder))
    model = LinenModel(importlib.import_module("python_run_models").TwoLayer(width=24))
    config = TrainConfig(dataset="tiny", data_dir=str(folder / "tiny"), epochs=2, batch_size=64)
    whole = train_run(config, out=folder / "whole", model=model)
    yield folder, config, model, whole
    sys.path.remove(str(folder))


def test_a_python_run_of_a_users_model_writes_what_the_command_writes(setup):
    folder, _, _, whole = setup
    run = folder / "whole"
    for name in (
        "config.json", "metrics.json", "metrics.jsonl", "predictions.npz", "report.md",
        "training_curves.png", "confusion_matrix.png", "tensorboard", "checkpoints",
    ):  # fmt: skip
        assert (run / name).exists(), name
    record = json.loads((run / "config.json").read_text())
    assert record["model"]["module"] == "python_run_models.TwoLayer"
    assert record["model"]["settings"] == {"width": 24, "sizes": [3, 4]}
    assert len(whole.history) == 2 and whole.metrics["test_accuracy"] > 0
    # The module's own dropout rate trained (the configuration set none), and is what is recorded.
    assert record["config"]["dropout_rate"] == 0.1 and whole.state.dropout_rate == np.float32(0.1)


def test_a_killed_python_run_resumes_bitwise_in_one_call(setup):
    folder, config, model, whole = setup

    def stop_at_epoch_2(state, record, history):
        if record["epoch"] == 2:
            raise Interrupted

    with pytest.raises(Interrupted):
        train_run(config, out=folder / "killed", model=model, callbacks=[stop_at_epoch_2])
    resumed = resume_run(folder / "killed", model=model)
    assert resumed.trained_epochs == 1
    assert_bitwise_equal(resumed.state.params, whole.state.params)
    assert resumed.metrics["test_accuracy"] == whole.metrics["test_accuracy"]


def test_the_commands_rebuild_an_importable_module_from_the_runs_record(setup):
    folder, *_ = setup
    run = folder / "whole"
    status, out, err = command(evaluate, [run])
    accuracy = json.loads((run / "metrics.json").read_text())["test_accuracy"]
    assert status == 0 and f"test accuracy {accuracy:.4f}" in out, err
    status, out, err = command(baseline, ["--resume", run])
    assert status == 0 and "every output was there" in out, err


def test_a_module_that_does_not_import_asks_for_the_model_in_one_line(setup, tmp_path):
    folder, config, model, _ = setup
    record = json.loads((folder / "whole" / "config.json").read_text())
    record["model"]["module"] = "__main__.TwoLayer"  # as a notebook's class records itself
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.json").write_text(json.dumps(record))
    with pytest.raises(ConfigError, match=r"resume_run\(RUN, model=\.\.\.\)"):
        resume_run(run)


def test_a_rate_set_for_a_model_with_its_own_dropout_is_one_line_before_the_folder(setup, tmp_path):
    import flax.linen as nn

    class NoRateField(nn.Module):
        @nn.compact
        def __call__(self, x, train=False):
            return nn.Dense(10)(x)

    _, config, _, _ = setup
    with pytest.raises(ConfigError, match="keeps its own dropout, so dropout_rate=0.3"):
        train_run(
            config.replace(dropout_rate=0.3), out=tmp_path / "run", model=LinenModel(NoRateField())
        )
    assert not (tmp_path / "run").exists()


def test_fit_and_run_sweep_make_the_commands_checks_before_compiling():
    from mnist_jax.fit import fit
    from mnist_jax.sweep import expand_members, run_sweep
    from tests.helpers import teacher_data

    data = teacher_data(num_train=160, num_test=64)
    too_large = TrainConfig(batch_size=512, epochs=1)  # the commands refuse it: so do these
    for train in (
        lambda: fit(too_large, data),
        lambda: run_sweep(too_large, expand_members([0]), data),
    ):
        with pytest.raises(ConfigError, match="larger than the 160 training examples"):
            train()


def test_resuming_after_the_models_code_changed_says_so(setup):
    folder, *_ = setup
    source = folder / "python_run_models.py"
    original = source.read_text()
    try:  # found by a hostile pass: evaluate gave other numbers in silence
        source.write_text(original.replace("nn.relu", "nn.tanh"))
        with pytest.warns(UserWarning, match="the code of model .*TwoLayer changed since"):
            resume_run(folder / "whole")
    finally:
        source.write_text(original)


def test_a_record_rebuilds_modules_with_object_fields_and_rates_without_defaults(setup):
    # Found by a review: a function or dtype field was passed back as its name (a traceback on
    # resume), and a rate field without a default made the module look unimportable.
    import importlib

    from mnist_jax.models import model_record
    from mnist_jax.models.imported import model_from_record

    models = importlib.import_module("python_run_models")
    for module in (models.WithObjects(width=12), models.RateWithoutDefault(0.2, width=12)):
        record = model_record(LinenModel(module), (784,))
        rebuilt = model_from_record(record)
        assert rebuilt is not None and rebuilt.describe() == LinenModel(module).describe()
    changed = model_record(LinenModel(models.WithObjects(act=models.nn.tanh)), (784,))
    assert model_from_record(changed) is None  # a function other than the default: not rebuilt


def test_a_run_given_a_subset_resumes_only_on_that_subset(setup, tmp_path):
    # Found by a review: the resume reloaded all the files (their fingerprint) and trained on.
    import dataclasses

    from mnist_jax.data import load_dataset
    from mnist_jax.errors import DataError

    folder, config, model, _ = setup
    full = load_dataset("tiny", folder / "tiny")
    subset = dataclasses.replace(
        full, train_images=full.train_images[:128], train_labels=full.train_labels[:128]
    )
    train_run(config.replace(epochs=1), subset, out=tmp_path / "run", model=model)
    with pytest.raises(
        DataError, match="trained on 128 train examples of these files, not their 256"
    ):
        resume_run(tmp_path / "run", model=model)
    assert resume_run(tmp_path / "run", model=model, dataset=subset).trained_epochs == 0
