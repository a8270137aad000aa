"""The model boundary: the built-in CNN, a user's own linen module and an NNX module train through
`fit`, `run_sweep`, checkpoints and `load_run`; models are checked before anything is compiled."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from helpers import assert_bitwise_equal, prototype_data

from mnist_jax.checkpoint import RunCheckpointer, load_run, restore_checkpoint
from mnist_jax.config import TrainConfig
from mnist_jax.errors import CheckpointError, ConfigError
from mnist_jax.fit import DeviceData, fit, spec_for
from mnist_jax.models import (
    CNN,
    LinenModel,
    NNXModel,
    check_model,
    cnn,
    count_params,
    mlp,
    model_from_config,
    parameter_count,
)
from mnist_jax.models.cnn import Conv, avg_pool_2x2
from mnist_jax.sweep import Member, expand_members, run_sweep
from mnist_jax.train import TrainSpec, create_train_state

CONFIG = TrainConfig(batch_size=32, epochs=2, eval_batch_size=64)


@pytest.fixture(scope="module")
def data() -> DeviceData:
    return prototype_data()


class SmallMLP(nn.Module):
    """A user's module written the documented linen way, with nn.Dropout and LayerNorm."""

    dropout_rate: float = 0.1

    @nn.compact
    def __call__(self, x, *, train: bool):
        x = nn.relu(nn.LayerNorm()(nn.Dense(32)(x)))
        x = nn.Dropout(self.dropout_rate, deterministic=not train)(x)
        return nn.Dense(10)(x)


class NNXNet(nnx.Module):
    def __init__(self, rngs: nnx.Rngs):
        self.hidden = nnx.Linear(784, 32, rngs=rngs)
        self.dropout = nnx.Dropout(0.2, rngs=rngs)
        self.out = nnx.Linear(32, 10, rngs=rngs)

    def __call__(self, x):
        return self.out(self.dropout(nnx.relu(self.hidden(x))))


def make_nnx_net(rngs):
    return NNXNet(rngs)


# The built-in CNN ----------------------------------------------------------------------------


@pytest.mark.slow
def test_the_cnn_has_the_flax_examples_layers_and_824458_parameters():
    params = cnn().init(jax.random.key(0), (28, 28, 1))
    assert jax.tree.map(jnp.shape, params) == {
        "Conv_0": {"kernel": (3, 3, 1, 32), "bias": (32,)},
        "Conv_1": {"kernel": (3, 3, 32, 64), "bias": (64,)},
        "Dense_0": {"kernel": (3136, 256), "bias": (256,)},
        "Dense_1": {"kernel": (256, 10), "bias": (10,)},
    }
    assert count_params(params) == parameter_count(cnn(), (28, 28, 1)) == 824_458
    assert all(np.all(np.asarray(layer["bias"]) == 0) for layer in params.values())
    limit = np.sqrt(6 / (9 * 32 + 9 * 64))  # Glorot-uniform over the receptive field
    assert np.abs(np.asarray(params["Conv_1"]["kernel"])).max() <= limit


@pytest.mark.slow
@pytest.mark.parametrize("kernel_size", [(3, 3), (5, 5), (2, 2)])
def test_the_slices_and_matmul_conv_equals_flax_conv(kernel_size):
    x = jax.random.uniform(jax.random.key(0), (2, 9, 9, 3))
    params = Conv(4, kernel_size).init(jax.random.key(1), x)
    ours = Conv(4, kernel_size).apply(params, x)
    theirs = nn.Conv(4, kernel_size, padding="SAME").apply(params, x)
    np.testing.assert_allclose(ours, theirs, rtol=1e-5, atol=1e-6)


@pytest.mark.slow
def test_average_pooling_equals_flax_avg_pool_on_odd_sizes_too():
    x = jax.random.uniform(jax.random.key(0), (2, 7, 6, 3))
    np.testing.assert_array_equal(avg_pool_2x2(x), nn.avg_pool(x, (2, 2), strides=(2, 2)))


def test_the_cnn_takes_images_and_the_spec_says_so():
    spec = TrainSpec.from_config(TrainConfig(model="cnn"))
    assert spec.example_shape == (28, 28, 1) and isinstance(spec.model.module, CNN)
    assert TrainSpec.from_config(TrainConfig()).example_shape == (784,)
    assert hash(model_from_config(TrainConfig(model="cnn"))) == hash(cnn())


def test_images_too_small_for_the_cnns_two_poolings_are_one_config_error_naming_the_size():
    # 1x1 and 3x3 images said "ZeroDivisionError: division by zero".
    for shape in ((1, 1, 1), (3, 3, 1), (28, 3, 1)):
        with pytest.raises(ConfigError, match=f"at least 4x4 pixels; these are {shape[0]}x"):
            check_model(cnn(), shape, 10)
    check_model(cnn(), (4, 4, 1), 10)  # 4 -> 2 -> 1: the smallest that pools twice


def test_the_cnn_refuses_hidden_sizes_it_does_not_have():
    with pytest.raises(ConfigError, match="hidden_sizes.*model='cnn'"):
        TrainConfig(model="cnn", hidden_sizes=(64,))


# A sweep over two models ---------------------------------------------------------------------


@pytest.mark.slow
def test_a_sweep_of_two_models_trains_two_programs_each_member_equal_to_its_single_run(data):
    members = expand_members([0, 1], [1e-3], [0.25], [(128, 128)], ["mlp", "cnn"])
    result = run_sweep(CONFIG, members, data, members_per_step=1)
    assert [(p.model, len(p.members)) for p in result.programs] == [("mlp", 2), ("cnn", 2)]
    assert {row["model"] for row in result.summary()} == {"mlp", "cnn"}
    for r in (r for r in result.members if r.member.seed == 1):  # each program's second row
        single = fit(r.member.config(CONFIG), data)
        assert_bitwise_equal(r.state, single.state)
        assert r.history == [
            {**record, "seconds": h["seconds"]} for record, h in zip(single.history, r.history)
        ]


# Checkpoints record their model ----------------------------------------------------------------


@pytest.mark.slow
def test_restoring_a_checkpoint_into_another_model_is_one_error_naming_both(data, tmp_path):
    with RunCheckpointer(tmp_path, CONFIG) as checkpoints:
        fit(CONFIG.replace(epochs=1), data, callbacks=[checkpoints])
    cnn_config = CONFIG.replace(model="cnn")
    spec = TrainSpec.from_config(cnn_config)
    with pytest.raises(CheckpointError) as error:
        restore_checkpoint(tmp_path, create_train_state(cnn_config, spec), model=spec.model)
    message = str(error.value)
    assert "holds model mlp(hidden_sizes=[128, 128], num_classes=10)" in message
    assert "this run's model is cnn(num_classes=10)" in message and "\n" not in message


@pytest.mark.slow
def test_a_cnn_run_is_rebuilt_from_its_directory_alone(data, tmp_path):
    config = CONFIG.replace(model="cnn", epochs=1)
    spec = spec_for(config, data)
    with RunCheckpointer(tmp_path, config, spec=spec) as checkpoints:
        result = fit(config, data, spec=spec, callbacks=[checkpoints])
    run = load_run(tmp_path, "latest")
    assert run.model == cnn() and run.config.model == "cnn"
    assert_bitwise_equal(run.state, result.state)


# A user's own linen module ---------------------------------------------------------------------


@pytest.mark.slow
def test_a_users_linen_module_trains_checkpoints_and_loads_back(data, tmp_path):
    model = LinenModel(SmallMLP())
    spec = spec_for(CONFIG, data, model)
    with RunCheckpointer(tmp_path, CONFIG, spec=spec) as checkpoints:
        result = fit(CONFIG, data, spec=spec, callbacks=[checkpoints])
    assert result.history[-1]["val_accuracy"] > result.history[0]["val_accuracy"] - 0.05
    assert result.history[-1]["train_loss"] < 2.0
    run = load_run(tmp_path, "latest", model=model)
    assert_bitwise_equal(run.state, result.state)
    # The module's class imports here, so the run rebuilds it from its record without `model=`.
    assert_bitwise_equal(load_run(tmp_path, "latest").state, result.state)
    with pytest.raises(CheckpointError, match="this run's model is mlp"):
        load_run(tmp_path, "latest", model=mlp())


@pytest.mark.slow
def test_a_users_module_sweeps_vmapped_with_traced_dropout_rates_equal_to_single_runs(data):
    model = LinenModel(SmallMLP())
    members = [Member(0, 1e-3, 0.0, (128, 128), "small"), Member(1, 3e-3, 0.5, (128, 128), "small")]
    result = run_sweep(CONFIG, members, data, models={"small": model}, members_per_step=1)
    for r in result.members:
        single = fit(r.member.config(CONFIG), data, model=model)
        assert_bitwise_equal(r.state, single.state)
    vmapped = run_sweep(CONFIG, members, data, models={"small": model}, members_per_step=None)
    for a, b in zip(vmapped.members, result.members):
        np.testing.assert_allclose(a.test_logits, b.test_logits, rtol=1e-3, atol=1e-3)


@pytest.mark.slow
def test_nn_dropout_given_a_traced_rate_equals_its_static_self():
    module, x, key = SmallMLP(dropout_rate=0.5), jnp.ones((4, 784)), jax.random.key(3)
    model = LinenModel(module)
    params = model.init(jax.random.key(0), (784,))
    static = jax.jit(lambda: module.apply({"params": params}, x, train=True, rngs={"dropout": key}))
    traced = jax.jit(lambda r: model.apply(params, x, dropout_rate=r, dropout_key=key))
    np.testing.assert_array_equal(static(), traced(jnp.float32(0.5)))
    assert not np.array_equal(traced(jnp.float32(0.5)), traced(jnp.float32(0.1)))


def test_a_sweep_naming_an_unknown_model_is_a_config_error(data):
    with pytest.raises(ConfigError, match="model 'mine'"):
        run_sweep(CONFIG, [Member(0, 1e-3, 0.25, (128, 128), "mine")], data)


# Models that cannot train here are refused before compiling --------------------------------------


class WrongWidth(nn.Module):
    @nn.compact
    def __call__(self, x, *, train: bool):
        return nn.Dense(3)(x)


class WithBatchNorm(nn.Module):
    @nn.compact
    def __call__(self, x, *, train: bool):
        return nn.Dense(10)(nn.BatchNorm(use_running_average=not train)(x))


class NoTrainArgument(nn.Module):
    @nn.compact
    def __call__(self, x):
        return nn.Dense(10)(x)


class IntegerLogits(nn.Module):  # the right width, but no gradient: fit raised a raw TypeError
    @nn.compact
    def __call__(self, x, *, train: bool):
        return nn.Dense(10)(x).astype(jnp.int32)


@pytest.mark.parametrize(
    "module, message",
    [
        (WrongWidth(), r"returns \(2, 3\) in train mode.*\(2, 10\)"),
        (WithBatchNorm(), "other than params \\(batch_stats\\)"),
        (NoTrainArgument(), "TypeError.*train"),
        (IntegerLogits(), "logits of dtype int32 in train mode; expected floating-point"),
    ],
)
def test_a_model_that_cannot_train_here_is_one_config_error(module, message):
    with pytest.raises(ConfigError, match=message) as error:
        check_model(LinenModel(module), (784,), 10)
    assert "\n" not in str(error.value)


@pytest.mark.parametrize("module", [WrongWidth(), WithBatchNorm(), IntegerLogits()])
def test_fit_and_the_run_checkpointer_refuse_such_a_model_before_anything_is_written(
    module, data, tmp_path, monkeypatch
):
    # fit trained a model of 12 logits to 89%, and RunCheckpointer created checkpoints/ first.
    import mnist_jax.fit

    def no_training(*args, **kwargs):
        raise AssertionError("training started")

    monkeypatch.setattr(mnist_jax.fit, "train_program", no_training)
    config = TrainConfig(epochs=1, batch_size=64)
    spec = spec_for(config, data, LinenModel(module))
    with pytest.raises(ConfigError):
        RunCheckpointer(tmp_path / "run", config, spec=spec)
    assert not (tmp_path / "run").exists()
    with pytest.raises(ConfigError):
        fit(config, data, spec=spec)


def test_fit_reshapes_data_to_the_models_layout(data):
    images = data.in_layout((28, 28, 1)).train_images
    assert images.shape == (256, 28, 28, 1)
    np.testing.assert_array_equal(images.reshape(256, 784), data.train_images)
    assert data.in_layout((784,)) is data


# NNX, through the adapter ----------------------------------------------------------------------


@pytest.mark.slow
def test_an_nnx_module_trains_checkpoints_sweeps_and_loads_back(data, tmp_path):
    model = NNXModel(make_nnx_net)
    spec = spec_for(CONFIG, data, model)
    params = create_train_state(CONFIG, spec).params
    assert jax.tree.map(jnp.shape, params) == {
        "hidden": {"kernel": (784, 32), "bias": (32,)},
        "out": {"kernel": (32, 10), "bias": (10,)},
    }
    with RunCheckpointer(tmp_path, CONFIG, spec=spec) as checkpoints:
        result = fit(CONFIG, data, spec=spec, callbacks=[checkpoints])
    assert result.history[-1]["train_loss"] < result.history[0]["train_loss"]
    assert_bitwise_equal(load_run(tmp_path, "latest", model=model).state, result.state)
    sweep = run_sweep(CONFIG, expand_members([0, 1], models=["net"]), data, models={"net": model})
    assert_bitwise_equal(sweep.members[0].state, fit(CONFIG, data, model=model).state)
    # The adapter does not pass a traced dropout rate: sweeping dropout rates is refused.
    assert not model.takes_dropout_rate
    with pytest.raises(ConfigError, match="keeps its own dropout rate"):
        run_sweep(
            CONFIG,
            expand_members([0], dropout_rates=[0.1, 0.5], models=["net"]),
            data,
            models={"net": model},
        )


class WithActivation(nn.Module):
    act: object = nn.relu
    widths: tuple = (8,)

    @nn.compact
    def __call__(self, x, *, train: bool):
        return nn.Dense(10)(self.act(nn.Dense(self.widths[0])(x)))


def test_a_modules_description_is_the_same_in_every_process():
    # A checkpoint compares the recorded description with the model given back in a later
    # process: a function setting must not be described by its memory address.
    settings = LinenModel(WithActivation()).describe()["settings"]
    assert settings == {"act": "jax._src.nn.functions.relu", "widths": [8]}
    assert "0x" not in str(LinenModel(WithActivation(act=lambda x: x)).describe())


def test_a_module_that_cannot_be_hashed_is_one_config_error():
    with pytest.raises(ConfigError, match="cannot be hashed.*tuples rather than lists"):
        check_model(LinenModel(WithActivation(widths=[8])), (784,), 10)


class SmallConv(nn.Module):
    @nn.compact
    def __call__(self, x, *, train: bool):
        x = nn.Conv(4, (3, 3))(x)
        return nn.Dense(10)(x.reshape(x.shape[0], -1))


def test_a_conv_module_given_flat_examples_is_told_to_take_images():
    # It said only "operands could not be broadcast together with shapes (0,) (2,)".
    with pytest.raises(ConfigError, match="input_layout='image'"):
        check_model(LinenModel(SmallConv()), (784,), 10)
    check_model(LinenModel(SmallConv(), input_layout="image"), (28, 28, 1), 10)
