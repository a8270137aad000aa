"""A user's `nn.Conv`/`nnx.Conv` layers compute on CPUs as slices and a matmul (`conv_matmul`),
without changing the module: the same values and gradients as lax's convolution for each setting
it takes, lax's own convolution for the others, and a user's LeNet trains through `fit`."""

import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from helpers import prototype_data

from mnist_jax.config import TrainConfig
from mnist_jax.fit import fit
from mnist_jax.models import LinenModel, NNXModel
from mnist_jax.models.conv_matmul import intercept_linen_conv

X2 = jax.random.normal(jax.random.key(1), (2, 9, 8, 3))
TAKEN = [  # (layer, input): the settings computed as slices and a matmul
    (nn.Conv(4, (3, 3)), X2),  # flax's defaults: SAME, stride 1
    (nn.Conv(4, (2, 3), strides=2), X2),  # SAME padding uneven on both sides
    (nn.Conv(4, (3, 2), (2, 1), "VALID", kernel_dilation=2, use_bias=False), X2[:, None]),
    (nn.Conv(4, (2, 2), padding=((1, 0), (2, 1)), mask=jnp.tril(jnp.ones((2, 2, 3, 4)))), X2),
    (nn.Conv(4, (2, 2), strides=3, padding=1, kernel_dilation=(1, 3)), X2),
    (nn.Conv(4, (2, 2), padding="CIRCULAR"), X2),  # flax pads it, then a VALID convolution
    (nn.Conv(4, (3,), padding="CAUSAL", kernel_dilation=2), X2[:, 0]),  # 1-D
    (nn.Conv(2, (2, 2, 2), strides=(1, 2, 1)), X2[..., None]),  # 3-D
]
NOT_TAKEN = [  # lax's own convolution: flax's code runs as it is
    nn.Conv(3, (3, 3), feature_group_count=3),
    nn.Conv(3, (3, 3), padding=1, input_dilation=2),
    nn.Conv(4, (3, 3), conv_general_dilated=jax.lax.conv_general_dilated),  # the user's own
    nn.ConvLocal(4, (3, 3)),
    nn.ConvTranspose(4, (3, 3)),
]


def _losses(layers, params, inputs):
    values = [jnp.sum(jnp.sin(conv.apply(p, x))) for conv, p, x in zip(layers, params, inputs)]
    return sum(values), values


def _intercepted(fun):
    def intercepted(*args):  # inside the traced function: jit's cache does not see interceptors
        with nn.intercept_methods(intercept_linen_conv):
            return fun(*args)

    return intercepted


def test_taken_settings_equal_lax_convolutions_in_values_and_gradients():
    layers, inputs = zip(*TAKEN)
    shapes = jax.eval_shape(lambda: [c.init(jax.random.key(0), x) for c, x in TAKEN])
    rng = np.random.default_rng(0)
    params = jax.tree.map(lambda s: rng.normal(size=s.shape).astype(np.float32), shapes)
    grad = jax.grad(functools.partial(_losses, layers), (0, 1), has_aux=True)
    fast = {"xla_backend_optimization_level": 0}  # compiles in half the time; the same maths
    grads, values = jax.jit(_intercepted(grad), compiler_options=fast)(params, inputs)
    expected_grads, expected = jax.jit(grad, compiler_options=fast)(params, inputs)
    for conv, p, x in zip(layers, params, inputs):  # each layer was taken: no convolution left
        assert "conv_general_dilated" not in str(jax.make_jaxpr(_intercepted(conv.apply))(p, x))
    np.testing.assert_allclose(values, expected, rtol=1e-5, atol=1e-5)
    for got, want in zip(jax.tree.leaves(grads), jax.tree.leaves(expected_grads)):
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("conv", NOT_TAKEN, ids=lambda c: type(c).__name__)
def test_other_settings_run_flaxs_own_code(conv):
    params = jax.eval_shape(conv.init, jax.random.key(0), X2)
    ours = str(jax.make_jaxpr(_intercepted(conv.apply))(params, X2))
    assert ours == str(jax.make_jaxpr(conv.apply)(params, X2))


class LeNet(nn.Module):
    """A small LeNet (3x3 kernels: compiling 5x5 ones takes seconds longer)."""

    @nn.compact
    def __call__(self, x, *, train: bool):
        x = nn.avg_pool(nn.relu(nn.Conv(4, (3, 3))(x)), (2, 2), (2, 2))
        x = nn.avg_pool(nn.relu(nn.Conv(8, (3, 3), padding="VALID")(x)), (2, 2), (2, 2))
        return nn.Dense(10)(x.reshape(*x.shape[:-3], -1))


@pytest.mark.slow  # fit compiles three programs: about 6 s on 2 cores, mostly fixed costs
def test_a_users_lenet_trains_through_fit_with_its_convolutions_as_matmuls():
    model = LinenModel(LeNet(), input_layout="image")
    off = LinenModel(LeNet(), input_layout="image", cpu_conv_as_matmul=False)
    params = jax.eval_shape(lambda k: model.init(k, (28, 28, 1)), jax.random.key(0))
    x = jax.ShapeDtypeStruct((2, 28, 28, 1), jnp.float32)
    assert "conv_general_dilated" not in str(jax.make_jaxpr(model.apply)(params, x))
    assert "conv_general_dilated" in str(jax.make_jaxpr(off.apply)(params, x))
    config = TrainConfig(batch_size=32, epochs=2, eval_batch_size=64, learning_rate=1e-2)
    history = fit(config, prototype_data(), model=model).history
    assert history[-1]["train_loss"] < history[0]["train_loss"] - 0.05


class NNXConvNet(nnx.Module):
    def __init__(self, rngs: nnx.Rngs):
        self.conv = nnx.Conv(1, 3, (3, 3), strides=2, rngs=rngs)
        self.out = nnx.Linear(14 * 14 * 3, 10, rngs=rngs)

    def __call__(self, x):
        return self.out(nnx.relu(self.conv(x)).reshape(x.shape[0], -1))


def make_nnx_conv_net(rngs):
    return NNXConvNet(rngs)


def test_nnx_conv_layers_compute_as_matmuls_with_the_same_values():
    on = NNXModel(make_nnx_conv_net, input_layout="image")
    off = NNXModel(make_nnx_conv_net, input_layout="image", cpu_conv_as_matmul=False)
    shapes = jax.eval_shape(
        lambda k: on.init(k, (28, 28, 1)), jax.random.key(0)
    )  # eager nnx init is slow
    rng = np.random.default_rng(0)
    params = jax.tree.map(lambda s: rng.normal(size=s.shape).astype(np.float32), shapes)
    x = rng.uniform(size=(2, 28, 28, 1)).astype(np.float32)
    assert "conv_general_dilated" not in str(jax.make_jaxpr(on.apply)(params, x))
    both = jax.jit(lambda p, x: (on.apply(p, x), off.apply(p, x)))(params, x)
    np.testing.assert_allclose(*both, rtol=1e-5, atol=1e-5)
