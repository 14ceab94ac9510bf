"""Workloads: the layers an accelerator runs, with their real integer weights.

A :class:`Workload` is an ordered list of :class:`LayerWorkload` plus the
facts every output must state (batch, sequence length, whether the weights are
synthetic). Layers carry PyTorch-layout integer weights:

* ``conv`` / ``depthwise``: ``(out, in/groups, kh, kw)``;
* ``linear``: ``(out, in)`` applied to ``batch * tokens`` rows;
* ``matmul`` (attention ``Q Kᵀ`` / ``A V``): the second operand stored as
  ``(n, k)`` like a linear weight, applied to ``tokens`` rows, ``repeats``
  independent times (batch x heads).
"""

from __future__ import annotations

import math
from dataclasses import KW_ONLY, dataclass, field, fields, replace
from enum import Enum
from typing import TYPE_CHECKING, Any

import numpy as np

from bitvert.errors import InputError

if TYPE_CHECKING:  # the codec (and torch) is imported only where encodings are built
    from bitvert.codec.view import WeightEncoding

__all__ = ["LayerType", "LayerGeometry", "LayerWorkload", "Workload"]


class LayerType(str, Enum):
    """What a layer computes."""

    CONV = "conv"
    DEPTHWISE = "depthwise"
    LINEAR = "linear"
    MATMUL = "matmul"


def _pair(v: int | tuple[int, int], name: str) -> tuple[int, int]:
    if isinstance(v, (int, np.integer)):
        return int(v), int(v)
    t = tuple(int(x) for x in v)
    if len(t) != 2:
        raise InputError(f"{name} must be an int or a pair of ints, got {v!r}")
    return t  # type: ignore[return-value]


@dataclass(frozen=True, eq=False)
class LayerGeometry:
    """Where a layer's weights meet its activations: every field of a layer but its weights.

    Shared by :class:`LayerWorkload` and the shape-only specs of
    :mod:`bitvert.hardware.workloads_zoo` (one definition, one set of defaults).

    Attributes:
        name: exact qualified name (e.g. ``layer1.0.conv1``).
        kind: :class:`LayerType`.
        input_hw: conv input height/width (``(1, 1)`` for linear/matmul).
        output_hw: conv output height/width (``(1, 1)`` for linear/matmul).
        stride, padding: conv geometry (informational for linear).
        groups: conv groups (``in_channels`` for depthwise).
        tokens: rows per batch element for linear/matmul (sequence length; 1 for a CNN classifier).
        repeats: independent instances (attention heads) for matmul; 1 otherwise.
        input_density: fraction of non-zero input activations (SparTen, SparTen's mask overhead).
        input_mask: optional boolean non-zero mask of the real input (conv ``(batch, in, ih, iw)``; linear /
            matmul ``repeats * batch * tokens * in`` elements); SparTen then costs every tile from it.
        input_from_previous: the input is the previous layer's output (enables on-chip residency).
    """

    name: str
    kind: LayerType
    _: KW_ONLY
    input_hw: tuple[int, int] = (1, 1)
    output_hw: tuple[int, int] = (1, 1)
    stride: tuple[int, int] = (1, 1)
    padding: tuple[int, int] = (0, 0)
    groups: int = 1
    tokens: int = 1
    repeats: int = 1
    input_density: float = 1.0
    input_mask: np.ndarray | None = field(default=None, repr=False)
    input_from_previous: bool = False

    def geometry(self) -> dict[str, Any]:
        """The :class:`LayerGeometry` fields of this object, by name."""
        return {f.name: getattr(self, f.name) for f in fields(LayerGeometry)}


@dataclass(frozen=True, eq=False)
class LayerWorkload(LayerGeometry):
    """One layer: its geometry (:class:`LayerGeometry`), the integer weights and what they are.

    Attributes:
        weights: integer weights (``int16``), PyTorch layout (see module doc).
        batch: batch size (images or sequences).
        synthetic: the weights were drawn at random (shape-only mode).
        channel_scale: per-output-channel quantization scale (float step size), when known;
            the pipeline's Algorithm 2 scores sensitive channels by it (shape-only workloads).
        encoding: the variant's encoding of these weights (:class:`~bitvert.codec.view.WeightEncoding`)
            when the layer comes from a pruned / encoded variant (:mod:`bitvert.hardware.variants`);
            ``None`` for a layer that only carries integers (the INT8 geometry, attention matmuls).
    """

    weights: np.ndarray
    batch: int = 1
    synthetic: bool = False
    channel_scale: np.ndarray | None = field(default=None, repr=False)
    encoding: WeightEncoding | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise InputError(f"layer name must be a non-empty string, got {self.name!r}")
        try:
            kind = LayerType(self.kind)
        except ValueError:
            raise InputError(
                f"layer {self.name!r}: kind must be one of {[k.value for k in LayerType]}, got {self.kind!r}"
            ) from None
        object.__setattr__(self, "kind", kind)
        w = np.asarray(self.weights)
        if w.dtype.kind not in "iu":
            raise InputError(
                f"layer {self.name!r}: weights must be integers (quantize first), got dtype {w.dtype}"
            )
        if w.size == 0:
            raise InputError(f"layer {self.name!r}: weights are empty")
        decoded = (self.encoding is not None and getattr(self.encoding, "weights", None) is self.weights
                   and getattr(self.encoding, "weight_bits", 99) <= 8)
        if not decoded and (w.min() < -128 or w.max() > 127):  # decoded weights: the codec checked their range
            raise InputError(f"layer {self.name!r}: weights must be INT8 values in [-128, 127]")
        w = w.astype(np.int16, copy=False)
        expected_ndim = 4 if kind in (LayerType.CONV, LayerType.DEPTHWISE) else 2
        if w.ndim != expected_ndim:
            raise InputError(
                f"layer {self.name!r}: a {kind.value} layer needs {expected_ndim}-d weights, got shape {w.shape}"
            )
        object.__setattr__(self, "weights", w)
        for attr in ("input_hw", "output_hw", "stride", "padding"):
            object.__setattr__(self, attr, _pair(getattr(self, attr), f"layer {self.name!r}: {attr}"))
        for attr in ("batch", "groups", "tokens", "repeats"):
            v = getattr(self, attr)
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or int(v) < 1:
                raise InputError(f"layer {self.name!r}: {attr} must be a positive integer, got {v!r}")
            object.__setattr__(self, attr, int(v))
        if min(self.input_hw) < 1 or min(self.output_hw) < 1:
            raise InputError(f"layer {self.name!r}: input_hw and output_hw must be positive")
        if not 0.0 < float(self.input_density) <= 1.0:
            raise InputError(
                f"layer {self.name!r}: input_density must lie in (0, 1], got {self.input_density!r}"
            )
        if self.input_mask is not None:
            mask = np.asarray(self.input_mask)
            if mask.dtype != np.bool_:
                raise InputError(
                    f"layer {self.name!r}: input_mask must be boolean (x != 0), got dtype {mask.dtype}"
                )
            object.__setattr__(self, "input_mask", mask)
        if self.channel_scale is not None:
            cs = np.asarray(self.channel_scale, dtype=np.float64).reshape(-1)
            if cs.shape[0] != w.shape[0] or not np.all(np.isfinite(cs)) or np.any(cs <= 0):
                raise InputError(
                    f"layer {self.name!r}: channel_scale must hold {w.shape[0]} positive finite values"
                )
            object.__setattr__(self, "channel_scale", cs)
        if self.encoding is not None and getattr(getattr(self.encoding, "weights", None), "shape", None) != w.shape:
            raise InputError(
                f"layer {self.name!r}: encoding must be a WeightEncoding of weights shaped {w.shape}"
            )
        if kind is LayerType.DEPTHWISE and w.shape[1] != 1:
            raise InputError(
                f"layer {self.name!r}: a depthwise layer has one input channel per filter, got shape {w.shape}"
            )
        if kind in (LayerType.CONV, LayerType.DEPTHWISE) and w.shape[0] % self.groups:
            raise InputError(
                f"layer {self.name!r}: out channels {w.shape[0]} not divisible by groups={self.groups}"
            )

    # ---- shapes -------------------------------------------------------------------------
    @property
    def out_channels(self) -> int:
        return int(self.weights.shape[0])

    @property
    def in_channels_per_group(self) -> int:
        return int(self.weights.shape[1])

    @property
    def in_channels(self) -> int:
        return self.in_channels_per_group * (self.groups if self.is_conv else 1)

    @property
    def kernel(self) -> tuple[int, int]:
        if self.is_conv:
            return int(self.weights.shape[2]), int(self.weights.shape[3])
        return 1, 1

    @property
    def is_conv(self) -> bool:
        return self.kind in (LayerType.CONV, LayerType.DEPTHWISE)

    @property
    def n_weights(self) -> int:
        return int(self.weights.size)

    @property
    def rows(self) -> int:
        """Activation rows that meet the weights: ``batch*oh*ow`` (conv) or ``batch*tokens`` (linear)."""
        if self.is_conv:
            return self.batch * self.output_hw[0] * self.output_hw[1]
        return self.batch * self.tokens

    @property
    def macs(self) -> int:
        """Multiply-accumulates of the layer (all repeats)."""
        per_row = self.n_weights
        return per_row * self.rows * self.repeats

    @property
    def input_elements(self) -> int:
        """Input activation elements read by the layer (all repeats)."""
        if self.is_conv:
            return self.batch * self.in_channels * self.input_hw[0] * self.input_hw[1]
        return self.batch * self.tokens * self.in_channels * self.repeats

    @property
    def output_elements(self) -> int:
        """Output activation elements written by the layer (all repeats)."""
        return self.rows * self.out_channels * self.repeats

    def describe(self) -> dict[str, Any]:
        """JSON-friendly shape description."""
        return {
            "name": self.name,
            "kind": self.kind.value,
            "weight_shape": list(self.weights.shape),
            "batch": self.batch,
            "input_hw": list(self.input_hw),
            "output_hw": list(self.output_hw),
            "stride": list(self.stride),
            "groups": self.groups,
            "tokens": self.tokens,
            "repeats": self.repeats,
            "macs": self.macs,
            "input_density": float(self.input_density),
        }

    def with_weights(self, weights: np.ndarray) -> "LayerWorkload":
        """Copy of this layer with other weights of the same shape."""
        if tuple(weights.shape) != tuple(self.weights.shape):
            raise InputError(
                f"layer {self.name!r}: replacement weights have shape {tuple(weights.shape)}, "
                f"expected {tuple(self.weights.shape)}"
            )
        return replace(self, weights=weights)


@dataclass(frozen=True, eq=False)
class Workload:
    """An ordered list of layers plus the facts every output must state.

    Attributes:
        name: workload name (``resnet50``...), used for per-workload settings (BitWave, ANT precision).
        layers: the layers in execution order.
        batch: batch size.
        seq_len: sequence length (transformers) or ``None``.
        synthetic_weights: True when the weights are random draws (shape-only mode).
        seed: seed of the synthetic weights, when synthetic.
        notes: free-form provenance.
    """

    name: str
    layers: tuple[LayerWorkload, ...]
    batch: int = 1
    seq_len: int | None = None
    synthetic_weights: bool = False
    seed: int | None = None
    notes: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        layers = tuple(self.layers)
        if not layers:
            raise InputError(f"workload {self.name!r} has no layers")
        names = [layer.name for layer in layers]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise InputError(f"workload {self.name!r}: duplicate layer names {dupes[:5]}")
        object.__setattr__(self, "layers", layers)
        if any(layer.synthetic for layer in layers) and not self.synthetic_weights:
            object.__setattr__(self, "synthetic_weights", True)

    @property
    def macs(self) -> int:
        return sum(layer.macs for layer in self.layers)

    @property
    def n_weights(self) -> int:
        return sum(layer.n_weights for layer in self.layers)

    def describe(self) -> dict[str, Any]:
        """JSON-friendly summary recorded in every output."""
        return {
            "name": self.name,
            "n_layers": len(self.layers),
            "batch": self.batch,
            "seq_len": self.seq_len,
            "synthetic_weights": bool(self.synthetic_weights),
            "seed": self.seed,
            "macs": self.macs,
            "n_weights": self.n_weights,
            "notes": dict(self.notes),
        }

    def geomean_key(self) -> str:
        return self.name


def ceil_div(a: int, b: int) -> int:
    """Integer ceiling division for non-negative ints."""
    return -(-int(a) // int(b))


def log2_ceil(n: int) -> int:
    """Bits needed to index ``n`` items (at least 1)."""
    return max(1, math.ceil(math.log2(max(int(n), 2))))
