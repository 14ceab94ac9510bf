"""Applying a BitVert preset to a workload: global sensitive channels + binary pruning.

Self-contained stand-in for the model-level pipeline (``bitvert.pipeline``),
kept small so it can be swapped for it. Steps (paper Algorithm 2, BBS.md §7.1):

1. Score every output channel of every weight layer (attention matmuls have no
   static weights and are excluded) by its quantization scale (``channel_scale``),
   or, when a layer has none, by the standard deviation of its integer weights
   (the paper's footnote-1 fallback).
2. Mark the top ``round(beta * total)`` channels globally as sensitive.
3. Per layer, round the sensitive count **up** to a multiple of
   ``sensitive_round_multiple`` (32 = the array rows), clamped to the layer's
   channel count, filling with the layer's next-highest scores.
4. Binary-prune the other channels with :func:`bitvert.pruning.prune`
   (``dense_channels`` = the sensitive mask); all weight layers are pruned,
   including the first convolution and the classifier ([OPEN] first/last-layer
   rule: the paper prunes all weight layers; the same rule is used for storage
   and cycles).
5. Stored columns per group = ``bits - free_columns(stored_groups)``, with
   :func:`bitvert.core.analysis.free_columns` (natural redundancy included; the
   pruner's metadata already holds exactly this count when its redundant-column
   cap is 3, and it is reused then).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from bitvert.core.grouping import GroupLayout
from bitvert.hardware.workload import LayerType, LayerWorkload, Workload

__all__ = ["BitVertLayerData", "select_sensitive_channels", "apply_bitvert_preset", "prune_layer"]


@dataclass(frozen=True)
class BitVertLayerData:
    """BBS encoding facts of one layer that the BitVert model needs.

    Attributes:
        stored_columns: ``uint8[n_groups]`` bit columns stored and processed per metadata group.
        lengths: ``int32[n_groups]`` real weights per group.
        layout: the grouping layout.
        sensitive: ``bool[out_channels]`` channels kept at 8 bits.
        mse: mean squared integer error of the pruning.
        sensitive_unrounded: the layer's share of the global top-beta channels before rounding
            up to the array rows (what the published fluid model uses); ``None`` = ``sensitive.sum()``.
    """

    stored_columns: np.ndarray
    lengths: np.ndarray
    layout: GroupLayout
    sensitive: np.ndarray
    mse: float
    sensitive_unrounded: int | None = None

    def per_weight_columns(self) -> np.ndarray:
        """Stored columns of each weight's group, in the weight tensor's shape."""
        width = self.layout.width
        g = np.repeat(self.stored_columns.astype(np.int16)[:, None], width, axis=1)
        return self.layout.ungroup(g)


def _channel_scores(layer: LayerWorkload) -> np.ndarray:
    if layer.channel_scale is not None:
        return np.asarray(layer.channel_scale, dtype=np.float64)
    w = layer.weights.reshape(layer.out_channels, -1).astype(np.float64)
    return w.std(axis=1)


def select_sensitive_channels(
    layers: list[LayerWorkload], fraction: float, round_multiple: int, counts_out: dict[str, int] | None = None
) -> dict[str, np.ndarray]:
    """Global top-``fraction`` channels by score, rounded up per layer to ``round_multiple``.

    When ``counts_out`` is given it receives each layer's count before rounding.
    """
    scores = [_channel_scores(layer) for layer in layers]
    total = sum(len(s) for s in scores)
    n_sel = int(round(fraction * total))
    masks: dict[str, np.ndarray] = {}
    if n_sel == 0:
        if counts_out is not None:
            counts_out.update({layer.name: 0 for layer in layers})
        return {layer.name: np.zeros(layer.out_channels, dtype=bool) for layer in layers}
    flat = np.concatenate(scores)
    owner = np.concatenate([np.full(len(s), i, dtype=np.int64) for i, s in enumerate(scores)])
    top = np.argsort(-flat, kind="stable")[:n_sel]
    counts = np.bincount(owner[top], minlength=len(layers))
    for i, layer in enumerate(layers):
        k = int(counts[i])
        if counts_out is not None:
            counts_out[layer.name] = k
        if k:
            k = min(layer.out_channels, -(-k // round_multiple) * round_multiple)
        mask = np.zeros(layer.out_channels, dtype=bool)
        mask[np.argsort(-scores[i], kind="stable")[:k]] = True
        masks[layer.name] = mask
    return masks


def prune_layer(
    layer: LayerWorkload, sensitive: np.ndarray, method: str, columns: int, group_size: int,
    semantics: str = "paper",
) -> BitVertLayerData:
    """Binary-prune one layer's normal channels and measure its stored columns per group."""
    from bitvert.core.analysis import free_columns
    from bitvert.pruning import PruneConfig, prune

    cfg = PruneConfig(method=method, semantics=semantics, weight_bits=8, group_size=group_size, columns=columns)
    kind = "conv" if layer.is_conv else "linear"
    res = prune(layer.weights, cfg, kind=kind, dense_channels=sensitive)
    lengths = res.layout.lengths()
    if res.config.redundant_cap == 3:
        # the pruner already measured free_columns(stored_groups, cap=3) for its metadata
        free = res.metadata.free_columns
    else:
        free = free_columns(res.stored_groups(), lengths, bits=8, cap=3)
    stored = (8 - free.astype(np.int16)).astype(np.uint8)
    return BitVertLayerData(stored, lengths, res.layout, sensitive, float(res.mse))


def apply_bitvert_preset(
    workload: Workload,
    method: str,
    columns: int,
    group_size: int,
    sensitive_fraction: float,
    round_multiple: int,
    semantics: str = "paper",
) -> dict[str, BitVertLayerData]:
    """Sensitive-channel selection and pruning of every weight layer of ``workload``."""
    layers = [layer for layer in workload.layers if layer.kind is not LayerType.MATMUL]
    counts: dict[str, int] = {}
    masks = select_sensitive_channels(layers, sensitive_fraction, round_multiple, counts)
    out = {}
    for layer in layers:
        d = prune_layer(layer, masks[layer.name], method, columns, group_size, semantics)
        out[layer.name] = replace(d, sensitive_unrounded=counts[layer.name])
    return out
