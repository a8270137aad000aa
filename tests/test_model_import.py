"""A user's model by import name (`--model PACKAGE.MODULE:FACTORY`): each kind of factory becomes
the model it names, a name that does not import is one line, and the commands train, resume,
evaluate and sweep it from config.json alone."""

import json
import textwrap

import pytest

from experiments import baseline, evaluate, sweep
from mnist_jax.config import TrainConfig
from mnist_jax.errors import ConfigError
from mnist_jax.models import LinenModel, NNXModel, model_from_config
from tests.test_commands import TINY, command

USER_MODELS = """
import flax.linen as nn
from flax import nnx
from mnist_jax.models import LinenModel

class ResMLP(nn.Module):
    num_classes: int = 10
    width: int = 16
    dropout_rate: float = 0.1

    @nn.compact
    def __call__(self, x, train=False):
        h = nn.relu(nn.Dense(self.width)(x))
        h = nn.Dropout(self.dropout_rate, deterministic=not train)(h)
        return nn.Dense(self.num_classes)(h + nn.relu(nn.Dense(self.width)(h)))

class ConvNet(nn.Module):
    input_layout = "image"

    @nn.compact
    def __call__(self, x, train=False):
        x = nn.relu(nn.Conv(4, (3, 3))(x))
        return nn.Dense(10)(x.reshape((x.shape[0], -1)))

class NNXNet(nnx.Module):
    def __init__(self, rngs, num_classes=10):
        self.hidden = nnx.Linear(784, 8, rngs=rngs)
        self.out = nnx.Linear(8, num_classes, rngs=rngs)

    def __call__(self, x):
        return self.out(nnx.relu(self.hidden(x)))

def wide(num_classes):
    return LinenModel(ResMLP(num_classes, width=32), label="wide")

def broken(num_classes):
    raise RuntimeError("no GPU here")

class Sideways(nn.Module):
    input_layout = "sideways"

    @nn.compact
    def __call__(self, x, train=False):
        return nn.Dense(10)(x)

class FirstTwo(nn.Module):  # logits for the first two examples of any batch
    @nn.compact
    def __call__(self, x, train=False):
        return nn.Dense(10)(x[:2])

NOT_A_MODEL = 3
"""


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> list[str]:
    from mnist_jax.data.fake import write_fake_dataset

    folder = tmp_path_factory.mktemp("tiny")
    write_fake_dataset(folder, num_train=256, num_test=64, shape=(28, 28))
    return ["--dataset", "tiny", "--data-dir", str(folder)]


@pytest.fixture()
def user_models(tmp_path, monkeypatch):
    name = f"user_models_{tmp_path.name}"  # a module name no other test imports
    (tmp_path / f"{name}.py").write_text(textwrap.dedent(USER_MODELS))
    monkeypatch.syspath_prepend(str(tmp_path))
    return name


def test_each_kind_of_factory_becomes_the_model_it_names(user_models):
    def model(factory, num_classes=10):
        return model_from_config(TrainConfig(model=f"{user_models}:{factory}"), num_classes)

    res = model("ResMLP", 7)
    assert isinstance(res, LinenModel) and res.module.num_classes == 7
    assert res.input_layout == "flat" and res.name == f"{user_models}:ResMLP"
    assert model("ResMLP", 7) is res  # one object per name: jit's cache keys on it
    assert model("ConvNet").input_layout == "image"
    nnx_model = model("NNXNet", 5)
    assert isinstance(nnx_model, NNXModel)
    assert nnx_model.make.keywords == {"num_classes": 5}
    assert model("wide", 3).module.width == 32 and model("wide", 3).module.num_classes == 3


def test_a_modules_own_dropout_rate_trains_unless_the_configuration_sets_one(user_models):
    from mnist_jax.sweep import expand_members

    name = f"{user_models}:ResMLP"
    assert [m.dropout_rate for m in expand_members([0, 1], models=[name, "mlp"])] == [
        0.1, 0.1, 0.25, 0.25
    ]  # fmt: skip
    explicit = TrainConfig(dropout_rate=0.25)  # the default's value, given: it is used
    assert expand_members([0], models=[name], base=explicit)[0].dropout_rate == 0.25
    assert expand_members([0], dropout_rates=[0.3], models=[name])[0].dropout_rate == 0.3
    # A model keeping its own dropout (nnx) takes no rate: one given does nothing, so is refused.
    with pytest.raises(ConfigError, match="NNXNet keeps its own dropout, so dropout_rate=0.3"):
        expand_members([0], dropout_rates=[0.3], models=[f"{user_models}:NNXNet"])
    assert expand_members([0], models=[f"{user_models}:NNXNet"])[0].dropout_rate == 0.25


@pytest.mark.parametrize(
    ("factory", "message"),
    [
        ("Missing", "does not import (AttributeError"),
        ("NOT_A_MODEL", "is a int, not a flax.linen module class"),
        ("broken", "failed to build: RuntimeError: no GPU here"),
        ("Sideways", "failed to build: ValueError: unknown input layout 'sideways'"),
    ],
)
def test_a_name_that_does_not_give_a_model_is_one_line(user_models, factory, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(")) as error:
        model_from_config(TrainConfig(model=f"{user_models}:{factory}"))
    assert "\n" not in str(error.value)


def test_a_model_whose_logits_do_not_follow_the_batch_is_refused_before_training(user_models):
    from mnist_jax.models import check_model

    model = model_from_config(TrainConfig(model=f"{user_models}:FirstTwo"))
    with pytest.raises(ConfigError, match=r"returns \(2, 10\) in eval mode for a batch of 3"):
        check_model(model, (784,), 10)  # it passed at a batch of 2, then failed in training


def test_what_is_not_a_model_factory_is_refused_not_called(tmp_path, monkeypatch):
    # Found by a hostile pass: these ended the process (silently, or with abort's status 134).
    for name in ("os:abort", "sys:exit", "experiments.baseline:main"):
        with pytest.raises(ConfigError, match=f"model {name} is a"):
            model_from_config(TrainConfig(model=name))
    (tmp_path / "exits_on_import.py").write_text("raise SystemExit(3)\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(ConfigError, match="does not import \\(SystemExit: 3\\)"):
        model_from_config(TrainConfig(model="exits_on_import:Net"))


def test_a_module_that_does_not_import_is_one_line_and_a_malformed_name_is_refused():
    with pytest.raises(ConfigError, match="no_such_package_xyz:Net does not import"):
        model_from_config(TrainConfig(model="no_such_package_xyz:Net"))
    for bad in ("mymodels", "my models:Net", "pkg:", "mlpx"):
        with pytest.raises(ConfigError, match="PACKAGE.MODULE:FACTORY"):
            TrainConfig(model=bad)


@pytest.mark.slow
def test_the_commands_train_resume_evaluate_and_sweep_a_model_by_name(
    user_models,
    tiny,
    tmp_path,
):
    run = tmp_path / "run"
    status, _, err = command(
        baseline, [*tiny, *TINY, "--model", f"{user_models}:ResMLP", "--out", run, "--quiet"]
    )
    assert status == 0, err
    record = json.loads((run / "config.json").read_text())
    assert record["config"]["model"] == record["model"]["name"] == f"{user_models}:ResMLP"
    assert "hidden_sizes" not in record["model"]["settings"]
    assert record["config"]["dropout_rate"] == 0.1  # the module's own: what trained
    status, out, err = command(baseline, ["--resume", run])  # rebuilt from config.json alone
    assert status == 0 and "every output was there" in out, err
    status, out, err = command(evaluate, [run])
    accuracy = json.loads((run / "metrics.json").read_text())["test_accuracy"]
    assert status == 0 and f"test accuracy {accuracy:.4f}" in out, err

    models = f"mlp,{user_models}:ResMLP"
    argv = [*tiny, *TINY, "--model", models, "--seeds", "0", "--validation", "test"]
    status, out, err = command(sweep, [*argv, "--out", tmp_path / "sweep", "--quiet"])
    assert status == 0, err
    members = json.loads((tmp_path / "sweep" / "members.json").read_text())
    assert [m["model"] for m in members] == ["mlp", f"{user_models}:ResMLP"]


def test_a_sweep_started_from_python_records_the_dropout_that_trains(user_models, tiny, tmp_path):
    # Found by a review: start_sweep recorded 0.25 while run_sweep trained the module's own 0.1.
    from mnist_jax.sweep import Member
    from mnist_jax.sweep.directory import start_sweep

    config = TrainConfig(dataset="tiny", data_dir=tiny[-1], epochs=1, batch_size=64)
    member = Member(0, model=f"{user_models}:ResMLP")
    sweep = start_sweep(config, [member], reference=member, out=tmp_path / "sweep", name="x")
    assert [m.dropout_rate for m in sweep.members] == [0.1] == [sweep.reference.dropout_rate]
