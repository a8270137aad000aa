"""The compiled sweep programs and their sharding.

A sweep is `train_epoch` (the single run's epoch, unchanged) applied over a leading member axis of
the train state, with the data shared: `jax.vmap` over all members (the accelerator default), or,
with `members_per_step`, each device's members a few at a time under `shard_map` + `lax.map` (the
CPU default, see `over_members`). The member axis is sharded over a one-axis mesh ("members") of all
devices, of all processes; the data is replicated. Members are independent, so the program needs no
communication between devices: each device trains its members.

Shardings are stated where arrays are made: the stacked state by `init_members` (out_shardings), the
data by `replicate_data`, and every program states in and out shardings, so nothing relies on
propagation.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from mnist_jax.config import TrainConfig
from mnist_jax.device_data import DeviceData
from mnist_jax.evaluate import predict_logits
from mnist_jax.memory import default_budget_bytes, member_bytes_parts
from mnist_jax.sweep.members import MIN_MEMBERS_PER_DEVICE, Member
from mnist_jax.train import (
    TrainSpec,
    TrainState,
    init_train_state,
    run_hyperparams,
    train_epoch,
    validate_epoch,
)

MEMBER_AXIS = "members"


def member_mesh(devices: Sequence[jax.Device] | None = None) -> Mesh:
    """A one-axis mesh named "members" over `devices` (default: all devices of all processes)."""
    devices = jax.devices() if devices is None else list(devices)
    return Mesh(np.asarray(devices), (MEMBER_AXIS,))


def member_sharding(mesh: Mesh) -> NamedSharding:
    """Leading (member) axis split over the mesh, other axes whole: each leaf of a stacked state."""
    return NamedSharding(mesh, P(MEMBER_AXIS))


def replicated(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, P())


def _global_array(value, sharding: NamedSharding) -> jax.Array:
    """`value` (the same on every process) as a global array with `sharding`.

    One process: `device_put`. Several: each process fills its own devices' shards from its host
    copy (`make_array_from_callback`), since no process can address the others' devices.
    """
    if jax.process_count() == 1:
        return jax.device_put(value, sharding)
    host = np.asarray(value)
    return jax.make_array_from_callback(host.shape, sharding, lambda index: host[index])


def replicate_data(data: DeviceData, mesh: Mesh) -> DeviceData:
    """Every split replicated on every device of the mesh (each process must hold the same data)."""
    sharding = replicated(mesh)
    arrays = [_global_array(x, sharding) for x in data.arrays]
    return data._replace(**dict(zip(data._fields, arrays)))


def member_arrays(
    members: Sequence[Member], base: TrainConfig | None = None, train_examples: int = 60_000
) -> tuple:
    """The traced arguments of `init_train_state` for every member, stacked: seeds (uint32),
    learning and dropout rates (float32) and the recipe's numbers, each exactly what
    `fit(member.config(base), data)` passes (`train.run_hyperparams`), `train_examples` per
    epoch."""
    base = base or TrainConfig()
    runs = [run_hyperparams(m.config(base), train_examples) for m in members]
    return jax.tree.map(lambda *values: np.asarray(values), *runs)


@functools.cache
def _init_program(spec: TrainSpec, sharding: NamedSharding | None):
    init = jax.vmap(functools.partial(init_train_state, spec))
    if sharding is None:
        return jax.jit(init)
    return jax.jit(init, in_shardings=sharding, out_shardings=sharding)


def init_members(
    spec: TrainSpec,
    members: Sequence[Member],
    *,
    mesh: Mesh | None = None,
    base: TrainConfig | None = None,
    train_examples: int = 60_000,
) -> TrainState:
    """The stacked initial train state of `members` (leading axis = member).

    `jax.vmap(init_train_state)` over the members' seeds and hyper-parameters (`member_arrays` of
    `base`, the sweep's configuration): member k's state is bitwise the single run's initial
    state, so it has its parameters, root key and optimizer numbers, hence its data order, dropout
    masks and learning-rate curve. With a `mesh`, the state is created sharded over it (the member
    count must then be a multiple of the mesh size; `run_sweep` pads).
    """
    program, arrays = init_call(spec, members, mesh=mesh, base=base, train_examples=train_examples)
    return program(*arrays)


def init_call(
    spec: TrainSpec,
    members: Sequence[Member],
    *,
    mesh: Mesh | None = None,
    base: TrainConfig | None = None,
    train_examples: int = 60_000,
) -> tuple:
    """`init_members`'s jitted program and its arguments placed on the mesh, to call or lower."""
    sharding = None if mesh is None else member_sharding(mesh)
    arrays = member_arrays(members, base, train_examples)
    if sharding is not None:
        if len(members) % mesh.size:
            raise ValueError(
                f"{len(members)} members do not divide over {mesh.size} devices; pad them"
            )
        arrays = jax.tree.map(lambda a: _global_array(a, sharding), arrays)
    return _init_program(spec, sharding), arrays


def default_members_per_step(mesh: Mesh) -> int | None:
    """How many members each device trains at once: all of them (None, a plain vmap) on
    accelerators, one at a time on CPUs.

    On a CPU the vmapped (batched-matmul) epoch costs more per member than the single run's epoch,
    while members taken one by one inside the same compiled program cost what a single run costs. A
    CPU is compute-bound already; vmap's win is on GPUs and TPUs.
    """
    return 1 if mesh.devices.flat[0].platform == "cpu" else None


def over_members(fn, mesh: Mesh, members_per_step: int | None):
    """`fn(member_tree, *shared)` applied to every member of a stacked first argument.

    None: `jax.vmap` over all members at once. k: each device takes its own members (`shard_map`)
    k at a time under `lax.map`; a group of one calls `fn` unbatched, exactly as a single run does
    (so results equal the single run's bitwise), a larger group vmaps it.
    """

    def vmapped(stacked, *shared):
        return jax.vmap(fn, in_axes=(0,) + (None,) * len(shared))(stacked, *shared)

    if members_per_step is None:
        return vmapped

    def local(stacked, *shared):
        count = jax.tree_util.tree_leaves(stacked)[0].shape[0]
        width = math.gcd(count, members_per_step)
        return jax.lax.map(
            lambda one: fn(one, *shared), stacked, batch_size=width if width > 1 else None
        )

    def program(stacked, *shared):
        return jax.shard_map(
            local,
            mesh=mesh,
            in_specs=(P(MEMBER_AXIS),) + (P(),) * len(shared),
            out_specs=P(MEMBER_AXIS),
        )(stacked, *shared)

    return program


def _member_program(fn, mesh: Mesh, members_per_step: int | None, num_shared: int, **jit_options):
    """`fn` over the members (`over_members`), jitted with every sharding stated: the stacked first
    argument and every output member-sharded, the `num_shared` other arguments replicated."""
    return jax.jit(
        over_members(fn, mesh, members_per_step),
        in_shardings=(member_sharding(mesh),) + (replicated(mesh),) * num_shared,
        out_shardings=member_sharding(mesh),
        **jit_options,
    )


@functools.cache
def epoch_program(spec: TrainSpec, mesh: Mesh, members_per_step: int | None = None):
    """`jit(vmap(train_epoch))`: stacked states (donated, member-sharded), shared replicated data.

    `members_per_step` (per device): None trains all of a device's members at once (vmap); k trains
    them k at a time (`over_members`), still one compiled program with the same `train_epoch`, which
    on CPUs is faster per member (see `default_members_per_step`).
    Returns (new stacked state, {"loss": (M,), "accuracy": (M,)}).
    """
    epoch = functools.partial(train_epoch, spec)
    return _member_program(epoch, mesh, members_per_step, 2, donate_argnums=0)


def validate_unless_stopped(
    spec: TrainSpec, state: TrainState, images: jax.Array, labels: jax.Array, chunk_size: int
) -> tuple[TrainState, dict]:
    """`train.validate_epoch`, except for a member stopped before it (by patience or by a host
    rule such as a search's pruner): that one is returned as it is, its loss and accuracy NaN.

    Validation leaves a stopped state unchanged anyway (`track_best` skips it), and `run_epochs`
    records nothing for a member stopped before the epoch, so only the forward pass over the
    validation images is saved. As `train_epoch`'s, the branch is real only for a member taken
    alone (`over_members` with one per step); under vmap it is a select of both branches."""

    def validate(state: TrainState) -> tuple[TrainState, dict]:
        return validate_epoch(spec, state, images, labels, chunk_size)

    def keep(state: TrainState) -> tuple[TrainState, dict]:
        # NaN as `full_like` of a state leaf: inside shard_map a constant would not vary over
        # members as the other branch's numbers do (see `train_epoch`'s `keep`).
        nan = jnp.full_like(state.best_accuracy, jnp.nan)
        shapes = jax.eval_shape(validate, state)[1]
        return state, {**{name: nan for name in shapes}, "stopped": state.stopped}

    return jax.lax.cond(state.stopped, keep, validate, state)


@functools.cache
def validate_program(
    spec: TrainSpec, mesh: Mesh, chunk_size: int, members_per_step: int | None = None
):
    """Each member's epoch validation (`train.validate_epoch`: loss, accuracy, best-epoch
    tracking and early stopping) on stacked states (donated, member-sharded).
    Returns (new stacked state, {"loss": (M,), "accuracy": (M,), "stopped": (M,)}).

    With `members_per_step`, a member stopped before the epoch is not validated
    (`validate_unless_stopped`); under a plain vmap (None), where that branch would be a select
    computing both, every member is validated."""
    per_member = validate_epoch if members_per_step is None else validate_unless_stopped
    validate = functools.partial(per_member, spec, chunk_size=chunk_size)
    return _member_program(validate, mesh, members_per_step, 2, donate_argnums=0)


@functools.cache
def logits_program(
    spec: TrainSpec, mesh: Mesh, chunk_size: int, members_per_step: int | None = None
):
    """Per-member logits (M, N, C) of stacked params (`predict_logits`), member-sharded."""
    predict = functools.partial(predict_logits, spec.model, chunk_size=chunk_size)
    return _member_program(predict, mesh, members_per_step, 1)


def members_per_program(
    spec: TrainSpec,
    num_examples: int,
    bytes_budget: int | None = None,
    *,
    num_devices: int | None = None,
    num_classes: int = 10,
    eval_examples: int = 10_000,
    eval_chunk_size: int = 2_000,
    members_per_step: int | None = None,
) -> int:
    """How many members one compiled program call may hold: per device
    `bytes_budget // member_bytes` (at least `MIN_MEMBERS_PER_DEVICE`, which every call computes
    anyway), times the number of devices (so a multiple of it).

    With `members_per_step` (members trained a few at a time, `over_members`), only that many
    members' working memory exists at once, beside every member's state and logits: the bound is
    then `(bytes_budget - members_per_step * working) // resident`, with at least half the budget
    left to the members' state (a working set alone over the budget, as a CNN's evaluation chunk
    on a small budget, runs anyway: more members only add their state).

    `bytes_budget` is per device (default `default_budget_bytes()`); `num_devices` defaults to all.
    """
    budget = default_budget_bytes() if bytes_budget is None else int(bytes_budget)
    num_devices = jax.device_count() if num_devices is None else num_devices
    resident, working = member_bytes_parts(
        spec, num_examples, num_classes, eval_examples, eval_chunk_size
    )
    if members_per_step is None:
        return max(MIN_MEMBERS_PER_DEVICE, budget // (resident + working)) * num_devices
    for_states = max(budget - members_per_step * working, budget // 2)
    return max(1, for_states // resident) * num_devices
