"""`--precision bf16`: the model computes in bfloat16 on float32 parameters, trains every model
kind, is deterministic, and is refused with one line where the device has no bfloat16 hardware."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import assert_bitwise_equal, prototype_data

from experiments import baseline
from experiments.cli import run_main
from mnist_jax import device_data
from mnist_jax.config import TrainConfig
from mnist_jax.errors import ConfigError
from mnist_jax.fit import DeviceData, check_precision, fit, spec_for
from mnist_jax.models import LinenModel
from mnist_jax.models.precision import BFloat16Model, bf16_unsupported, cpu_features

CONFIG = TrainConfig(batch_size=32, epochs=3, eval_batch_size=64, precision="bf16")


@pytest.fixture(scope="module")
def data() -> DeviceData:
    return prototype_data()


@pytest.fixture
def emulated_bf16(monkeypatch):
    """bf16 allowed where the CPU has no bfloat16 instructions (XLA emulates them): these tests
    check what bf16 computes, not its speed, which is why the commands refuse it there."""
    monkeypatch.setattr(device_data, "bf16_unsupported", lambda device=None: None)


class UsersMLP(nn.Module):
    dropout_rate: float = 0.1

    @nn.compact
    def __call__(self, x, *, train: bool):
        x = nn.relu(nn.Dense(32)(x))
        x = nn.Dropout(self.dropout_rate, deterministic=not train)(x)
        return nn.Dense(10)(x)


def dot_input_dtypes(model, params, x, **kwargs):
    jaxpr = jax.make_jaxpr(lambda p, x: model.apply(p, x, **kwargs))(params, x)
    return {
        str(v.aval.dtype)
        for eqn in jaxpr.eqns
        if eqn.primitive.name == "dot_general"
        for v in eqn.invars
    }


@pytest.mark.slow
@pytest.mark.parametrize("model_name", ["mlp", "cnn"])
def test_the_spec_wraps_the_model_and_its_matmuls_take_bfloat16(model_name, data):
    config = CONFIG.replace(model=model_name)
    spec = spec_for(config, data)
    assert isinstance(spec.model, BFloat16Model)
    assert spec.model.describe()["precision"] == "bf16"
    params = spec.model.init(jax.random.key(0), spec.example_shape)
    assert {leaf.dtype for leaf in jax.tree.leaves(params)} == {np.dtype(np.float32)}
    x = jnp.zeros((4, *spec.example_shape), jnp.float32)
    key = jax.random.key(1)
    assert dot_input_dtypes(spec.model, params, x, dropout_rate=0.25, dropout_key=key) == {
        "bfloat16"
    }
    assert spec.model.apply(params, x).dtype == jnp.float32
    # The float32 spec of the same configuration computes in float32.
    f32 = spec_for(config.replace(precision="f32"), data).model
    assert dot_input_dtypes(f32, params, x) == {"float32"}


@pytest.mark.slow
@pytest.mark.parametrize(
    "model_name, model, epochs",
    [("mlp", None, 3), ("cnn", None, 6), ("linen", LinenModel(UsersMLP()), 3)],
)
def test_bf16_trains_with_float32_state_and_close_to_float32(
    model_name, model, epochs, data, emulated_bf16
):
    config = CONFIG.replace(model="cnn" if model_name == "cnn" else "mlp", epochs=epochs)
    result = fit(config, data, model=model)
    history = result.history
    assert history[-1]["train_loss"] < history[0]["train_loss"]
    assert history[-1]["val_accuracy"] > 0.5  # chance is 0.1
    state_dtypes = {leaf.dtype for leaf in jax.tree.leaves((result.state.params,))}
    assert state_dtypes == {np.dtype(np.float32)}
    adam = jax.tree.leaves(result.state.opt_state)
    assert {leaf.dtype for leaf in adam if leaf.ndim} == {np.dtype(np.float32)}
    f32 = fit(config.replace(precision="f32"), data, model=model).history
    assert abs(history[-1]["val_accuracy"] - f32[-1]["val_accuracy"]) < 0.15


@pytest.mark.slow
def test_bf16_is_deterministic_per_seed(data, emulated_bf16):
    a, b = (fit(CONFIG, data) for _ in range(2))
    assert_bitwise_equal(a.state.params, b.state.params)
    assert a.history[-1]["train_loss"] == b.history[-1]["train_loss"]


def test_invalid_precision_is_a_config_error():
    with pytest.raises(ConfigError, match="precision"):
        TrainConfig(precision="fp16")


def test_cpu_support_comes_from_its_bfloat16_instructions():
    cpu = jax.local_devices(backend="cpu")[0]
    assert bf16_unsupported(cpu, "flags\t: fpu avx2 avx512f avx512_bf16\n") is None
    assert bf16_unsupported(cpu, "Features\t: fp asimd bf16 i8mm\n") is None  # Arm
    reason = bf16_unsupported(cpu, "flags\t: fpu sse4_2 avx2 fma\n")
    assert "no bfloat16 matmul instructions" in reason
    assert cpu_features("flags : a b\nflags : b c\n") == {"a", "b", "c"}
    with pytest.raises(ConfigError, match="--precision bf16 is not supported here"):
        check_precision("bf16", _UnsupportedDevice())
    check_precision("f32", _UnsupportedDevice())  # float32 runs everywhere


class _UnsupportedDevice:
    platform = "gpu"
    device_kind = "Tesla V100"
    compute_capability = "7.0"


def test_baseline_refuses_bf16_without_hardware_support_in_one_line(
    tmp_path, mnist_dir, monkeypatch, capsys
):
    monkeypatch.setattr(device_data, "bf16_unsupported", lambda device=None: "no bf16 here")
    out = tmp_path / "run"
    with pytest.raises(SystemExit) as exit_info:
        run_main(
            baseline.main,
            "python -m experiments.baseline",
            ["--precision", "bf16", "--data-dir", str(mnist_dir), "--out", str(out)],
        )
    err = capsys.readouterr().err
    assert exit_info.value.code == 2
    assert err.strip().splitlines() == [
        "python -m experiments.baseline: error: --precision bf16 is not supported here: "
        "no bf16 here"
    ]
    assert not out.exists()
