"""Mixed precision as a model wrapper: any `Model` computing in bfloat16 on float32 parameters.

`BFloat16Model(model).apply` casts the parameters and the batch to bfloat16 and returns float32
logits; the parameters, their gradients and the optimizer's state stay float32 (the usual recipe).
Wrapping the model, not the step, makes validation, evaluation and predictions compute as training.
`--precision bf16` is refused where `bf16_unsupported` says XLA would emulate bfloat16 in float32.
"""

from __future__ import annotations

import dataclasses
import platform
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp

from mnist_jax.config import PRECISIONS
from mnist_jax.models.base import Model, Params


@dataclasses.dataclass(frozen=True)
class BFloat16Model(Model):
    """`model` computing in bfloat16: the same parameters (float32), float32 logits."""

    model: Model

    @property
    def input_layout(self) -> str:  # type: ignore[override]
        return self.model.input_layout

    @property
    def takes_dropout_rate(self) -> bool:
        return self.model.takes_dropout_rate

    def init(self, key: jax.Array, example_shape: tuple[int, ...]) -> Params:
        return self.model.init(key, example_shape)

    def apply(
        self,
        params: Params,
        x: jax.Array,
        *,
        dropout_rate: float | jax.Array = 0.0,
        dropout_key: jax.Array | None = None,
    ) -> jax.Array:
        params = jax.tree.map(
            lambda p: p.astype(jnp.bfloat16) if p.dtype == jnp.float32 else p, params
        )
        logits = self.model.apply(
            params,
            jnp.asarray(x).astype(jnp.bfloat16),
            dropout_rate=dropout_rate,
            dropout_key=dropout_key,
        )
        return logits.astype(jnp.float32)

    def describe(self) -> dict[str, Any]:
        return {**self.model.describe(), "precision": "bf16"}


def with_precision(model: Model, precision: str) -> Model:
    """`model` as it computes in `precision` ("f32": itself; "bf16": `BFloat16Model`)."""
    if precision == "f32":
        return model
    if precision == "bf16":
        return model if isinstance(model, BFloat16Model) else BFloat16Model(model)
    raise ValueError(f"unknown precision {precision!r}: expected one of {', '.join(PRECISIONS)}")


# CPU features that give hardware bfloat16 matmuls, by the names Linux's /proc/cpuinfo uses.
BF16_CPU_FEATURES = ("avx512_bf16", "amx_bf16", "bf16")


def cpu_features(cpuinfo: str | None = None) -> set[str]:
    """The CPU's feature flags from /proc/cpuinfo (or `cpuinfo`, its text); empty if unknown."""
    if cpuinfo is None:
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text()
        except OSError:
            return set()
    features: set[str] = set()
    for line in cpuinfo.splitlines():
        name, _, value = line.partition(":")
        if name.strip().lower() in ("flags", "features"):
            features.update(value.split())
    return features


def bf16_unsupported(device: jax.Device | None = None, cpuinfo: str | None = None) -> str | None:
    """None where `device` (default: the first local one) has hardware bfloat16 matmuls, else why
    not."""
    device = device or jax.local_devices()[0]
    if device.platform == "cpu":
        if cpu_features(cpuinfo) & set(BF16_CPU_FEATURES):
            return None
        machine = platform.machine() or "this"
        return (
            f"this {machine} CPU has no bfloat16 matmul instructions (AVX512-BF16, AMX-BF16 or "
            "Arm BF16), so XLA would emulate them in float32: slower than --precision f32"
        )
    capability = getattr(device, "compute_capability", None)
    if device.platform == "gpu" and capability and str(capability)[0].isdigit():
        major = int(str(capability).split(".")[0])
        if major < 8:
            return (
                f"{device.device_kind} (compute capability {capability}) has no bfloat16 "
                "tensor cores; they start at 8.0 (A100)"
            )
    return None
