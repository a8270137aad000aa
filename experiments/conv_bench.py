"""`python -m experiments.conv_bench`: a user's own convolutional module on a CPU, before and after
`conv_matmul`: a LeNet written with `nn.Conv` layers trained by `LinenModel` with lax's
convolutions (`cpu_conv_as_matmul=False`) and as slices and a matmul (the default), epochs timed
alternately in one process (other processes on the machine slow both alike), against the model's
forward and backward floor as `experiments.bench` measures it for the built-in CNN.
"""

from __future__ import annotations

from collections.abc import Sequence

import flax.linen as nn
import jax

from experiments import cli
from experiments.bench import timed
from mnist_jax.config import TrainConfig
from mnist_jax.data import load_dataset
from mnist_jax.fit import spec_for, to_device
from mnist_jax.floors import cpu_description, measure_model_floor
from mnist_jax.models import LinenModel
from mnist_jax.train import create_train_state, train_epoch_jit


class LeNet(nn.Module):
    """LeNet-5 with ReLU and average pooling, as a user writes it (`python -m experiments.bench
    --model experiments.conv_bench:LeNet` times it alone)."""

    input_layout = "image"  # what `--model PACKAGE.MODULE:FACTORY` reads

    @nn.compact
    def __call__(self, x, *, train: bool):
        x = nn.avg_pool(nn.relu(nn.Conv(6, (5, 5), padding="SAME")(x)), (2, 2), (2, 2))
        x = nn.avg_pool(nn.relu(nn.Conv(16, (5, 5), padding="VALID")(x)), (2, 2), (2, 2))
        x = x.reshape(*x.shape[:-3], -1)
        x = nn.relu(nn.Dense(84)(nn.relu(nn.Dense(120)(x))))
        return nn.Dense(10)(x)


def lenet_lax_conv() -> LinenModel:
    """The LeNet with lax's convolutions, as before `conv_matmul` (`--model` of bench)."""
    return LinenModel(LeNet(), "image", cpu_conv_as_matmul=False)


def lenet_trainer(config: TrainConfig, dataset, as_matmul: bool):
    """The LeNet's spec and data, and a function that trains it one more epoch per call and returns
    its state (a warm-up epoch done: threads, pages)."""
    spec = spec_for(config, dataset, LinenModel(LeNet(), "image", cpu_conv_as_matmul=as_matmul))
    data = to_device(dataset, config, spec)
    state = create_train_state(config, spec)
    epoch = train_epoch_jit.lower(spec, state, data.train_images, data.train_labels).compile()

    def train():
        nonlocal state
        state, _ = epoch(state, data.train_images, data.train_labels)
        return state

    jax.block_until_ready(train())
    return spec, data, train


def main(argv: Sequence[str] | None = None) -> int:
    parser = cli.Parser(prog="python -m experiments.conv_bench", description=__doc__)
    cli.add_data_flags(parser)
    parser.add_argument("--epochs", type=int, default=2, help="timed epochs of each (default 2)")
    parser.add_argument("--batch-size", type=int, default=512)
    args = parser.parse_args(argv)
    config = cli.config_from_args(args, epochs=1)
    dataset = load_dataset(config.dataset, config.data_dir)
    runs = {
        "lax_conv": lenet_trainer(config, dataset, as_matmul=False),
        "conv_as_matmul": lenet_trainer(config, dataset, as_matmul=True),
    }
    spec, data, _ = runs["conv_as_matmul"]
    steps = -(-int(data.train_labels.shape[0]) // config.batch_size)
    times = {name: [] for name in (*runs, "floor")}
    for _ in range(args.epochs):  # in turn, so that the machine's other load falls on all three
        for name, (_, _, train) in runs.items():
            state, seconds = timed(train)  # the matmul run's state, timed last, for the floor
            times[name].append(seconds)
        _, floor = measure_model_floor(spec, state.params, config.batch_size, steps, 1)
        times["floor"].append(floor)
    # The fastest of each: other processes on the machine only ever slow a run down.
    floor = min(times["floor"])
    print(f"cpu: {cpu_description()}, jax {jax.__version__}")
    for name, seconds in times.items():
        rounded = [round(t, 2) for t in seconds]
        print(f"  {name:<15} {min(seconds):7.2f} s, {min(seconds) / floor:5.2f} x floor  {rounded}")
    return 0


if __name__ == "__main__":
    cli.run_main(main, "python -m experiments.conv_bench")
