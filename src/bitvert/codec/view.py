"""The hardware's view of an encoded weight tensor, derived only from the codec.

The simulator (:mod:`bitvert.hardware`) never re-prunes or re-measures a variant: what an
accelerator runs is what the encoder wrote. :func:`weight_encoding` turns one
:class:`~bitvert.codec.tensor.EncodedTensor` into a :class:`WeightEncoding`:

* ``weights`` -- the decoded integers (:func:`~bitvert.codec.tensor.decode`), in PyTorch
  ``(out, ...)`` layout: a ``linear_in_out`` tensor (HuggingFace ``Conv1D``) is transposed
  here, once, by its grouping layout's :meth:`~bitvert.core.grouping.GroupLayout.to_rows`;
* ``stored_columns`` -- the bit columns the encoder stored for each group
  (:func:`~bitvert.codec.tensor.plan_groups` plane masks counted by
  :func:`~bitvert.core.bitplanes.plane_count`, scattered from stored order to layout order);
* ``sensitive`` -- the output channels stored at full width without metadata;
* ``footprint_bits`` -- ``8 *`` the tensor's bytes in the file
  (:meth:`~bitvert.codec.tensor.EncodedTensor.to_bytes`: column stream + metadata + index table,
  the ``total_bytes`` of :meth:`~bitvert.codec.tensor.EncodedTensor.stats`).

:func:`model_encodings` does this for every tensor of an
:class:`~bitvert.codec.container.EncodedModel`, keyed by layer name.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from bitvert.codec.container import EncodedModel
from bitvert.codec.layout import TensorLayout
from bitvert.codec.tensor import EncodedTensor, decode, plan_groups
from bitvert.core.bitplanes import plane_count
from bitvert.core.grouping import GroupLayout, LayerKind, make_layout, out_channels_first
from bitvert.errors import InputError

__all__ = ["WeightEncoding", "weight_encoding", "model_encodings", "layer_name", "channel_widths",
           "sensitive_channels"]


@dataclass(frozen=True, eq=False)
class WeightEncoding:
    """One encoded weight tensor as the hardware reads it.

    Attributes:
        name: layer name (the tensor name without ``.weight``).
        layout: how the encoder stored the groups (:class:`~bitvert.codec.layout.TensorLayout`).
        group_layout: grouping of ``weights`` (PyTorch ``(out, ...)`` layout; for a
            ``linear_in_out`` tensor the ``linear`` layout of its transpose, whose groups are
            the same groups in the same order).
        weights: decoded integers (``int16``), ``(out, ...)`` layout.
        stored_columns: ``uint8[n_groups]``, layout order: bit columns stored for each group
            (sign column included for BitWave).
        sensitive: ``bool[K]``: channels stored at full width without metadata (BBS / BitWave
            layouts); for ``plain`` tensors the full-width channels among narrower ones.
        columns: ``N`` of the encoding (0 for ``plain``).
        weight_bits: ``b``.
        footprint_bits: exact bits of this tensor in the file: column stream + metadata +
            channel-index table, each padded to whole bytes as stored.
        n_sensitive_global: the layer's share of the global top-beta channels before the
            per-layer rounding, when the file's source header records it; else ``None``.
    """

    name: str
    layout: TensorLayout
    group_layout: GroupLayout
    weights: np.ndarray = field(repr=False)
    stored_columns: np.ndarray = field(repr=False)
    sensitive: np.ndarray = field(repr=False)
    columns: int
    weight_bits: int
    footprint_bits: int
    n_sensitive_global: int | None = None

    @property
    def n_weights(self) -> int:
        return int(self.weights.size)

    @property
    def bits_per_weight(self) -> float:
        """``footprint_bits / n_weights``: equals the tensor's ``stats()["bits_per_weight"]``."""
        return self.footprint_bits / self.n_weights

    def per_weight_columns(self) -> np.ndarray:
        """Stored columns of each weight's group, in the shape of :attr:`weights` (``uint8``)."""
        lay = self.group_layout
        g = np.broadcast_to(self.stored_columns[:, None], (lay.n_groups, lay.width))
        return lay.ungroup(np.ascontiguousarray(g))


def layer_name(tensor_name: str) -> str:
    """Layer name of a weight tensor name (``features.0.weight`` -> ``features.0``)."""
    if tensor_name == "weight":
        return ""
    return tensor_name[: -len(".weight")] if tensor_name.endswith(".weight") else tensor_name


def channel_widths(enc: EncodedTensor) -> tuple[np.ndarray, np.ndarray]:
    """Per output channel (original order): stored width in bits and whether it has metadata."""
    counts = [c.channels for c in enc.chunks]
    width = np.empty(enc.n_channels, dtype=np.int64)
    meta = np.empty(enc.n_channels, dtype=bool)
    width[enc.channel_order] = np.repeat(np.array([c.columns for c in enc.chunks], dtype=np.int64), counts)
    meta[enc.channel_order] = np.repeat(np.array([c.metadata for c in enc.chunks], dtype=bool), counts)
    return width, meta


def sensitive_channels(enc: EncodedTensor) -> np.ndarray:
    """``bool[K]``: channels stored at full width without metadata (see :class:`WeightEncoding`)."""
    width, meta = channel_widths(enc)
    if enc.layout is TensorLayout.PLAIN:  # full width among narrower channels (fewer-bit RTN layers)
        return (width == enc.weight_bits) & bool((width < enc.weight_bits).any())
    return ~meta


def weight_encoding(enc: EncodedTensor, name: str, n_sensitive_global: int | None = None) -> WeightEncoding:
    """The hardware's view of one encoded tensor.

    Args:
        enc: the encoded tensor.
        name: layer name (recorded; used in error messages).
        n_sensitive_global: the layer's global top-beta count before rounding, when known.

    Raises:
        InputError: ``enc`` is not an :class:`~bitvert.codec.tensor.EncodedTensor`.
        FormatError: the tensor's metadata is inconsistent (from :func:`plan_groups`).
    """
    if not isinstance(enc, EncodedTensor):
        raise InputError(f"layer {name!r}: weight_encoding expects an EncodedTensor, got {type(enc).__name__}")
    lay = enc.group_layout
    plan = plan_groups(enc, name)
    stored = np.empty(lay.n_groups, dtype=np.uint8)
    stored[plan.order] = plane_count(plan.planes).astype(np.uint8)
    weights = decode(enc)
    if lay.kind is LayerKind.LINEAR_IN_OUT:
        weights = out_channels_first(weights, lay.kind)  # (in, out) -> (out, in): same group order
        lay = make_layout(weights.shape, LayerKind.LINEAR, lay.group_size, lay.remainder)
    return WeightEncoding(
        name=name, layout=enc.layout, group_layout=lay, weights=weights, stored_columns=stored,
        sensitive=sensitive_channels(enc), columns=int(enc.columns), weight_bits=int(enc.weight_bits),
        footprint_bits=8 * int(enc.to_bytes().shape[0]),
        n_sensitive_global=None if n_sensitive_global is None else int(n_sensitive_global),
    )


def _global_counts(source: dict[str, Any]) -> dict[str, int]:
    """``n_sensitive_global`` per layer from a pruned checkpoint's header (``layer_summary``)."""
    out: dict[str, int] = {}
    for d in source.get("layer_summary") or []:
        if isinstance(d, dict) and d.get("role") == "prune" and "n_sensitive_global" in d:
            out[str(d["name"])] = int(d["n_sensitive_global"])
    return out


def model_encodings(model: EncodedModel) -> dict[str, WeightEncoding]:
    """:func:`weight_encoding` of every tensor of ``model``, keyed by layer name."""
    if not isinstance(model, EncodedModel):
        raise InputError(f"model_encodings expects an EncodedModel (bitvert.codec.load_encoded), got "
                         f"{type(model).__name__}")
    counts = _global_counts(model.source)
    out: dict[str, WeightEncoding] = {}
    for tensor_name, enc in model.tensors.items():
        lname = layer_name(tensor_name)
        out[lname] = weight_encoding(enc, lname, counts.get(lname))
    return out
