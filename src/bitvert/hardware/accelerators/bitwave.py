"""BitWave (HPCA'24): bit-flip pruned sign-magnitude weights with zero-column skipping.

Weights are first pruned by the BitWave bit flip (BBS.md §6.5) through
:func:`bitvert.pruning.prune` with ``method="bitflip", semantics="code"``,
group 32 and ``N = 8 - w_prec``. A PE row processes the magnitude columns of
its ``lanes``-weight slice that are not all zero; cycles per tile are the
maximum over the lock-step rows. Only magnitude planes 1..7 are counted (the
published ``planes incl. sign - 1`` gave -1 cycles on all-zero tiles, BBS.md
§11 item 3); an all-zero tile costs ``min_cycles_per_tile``.

Storage per bit-flip group: the sign column, the non-zero magnitude columns
and ``metadata_bits_per_group`` bits of column mask.

Attention matmul operands are produced at run time and cannot be bit-flipped
offline: they are costed on their values unchanged.
"""

from __future__ import annotations

import numpy as np

from bitvert.core.grouping import group_weights
from bitvert.hardware.accelerators.base import POPCOUNT8, AcceleratorModel, ComputeResult, register
from bitvert.hardware.tiling import row_tile_max, weight_slices
from bitvert.hardware.workload import LayerType, LayerWorkload, Workload


def nonzero_magnitude_columns(slices: np.ndarray) -> np.ndarray:
    """``[..., lanes]`` int weights -> number of magnitude planes with at least one 1 (``uint8[...]``)."""
    mag = np.abs(slices.astype(np.int16)).astype(np.uint8)
    return POPCOUNT8[np.bitwise_or.reduce(mag, axis=-1) & 0x7F]


def grouping_kind(layer: LayerWorkload) -> str:
    """The :mod:`bitvert.core.grouping` layout of a layer's weights."""
    return "conv" if layer.is_conv else "linear"


@register
class BitWave(AcceleratorModel):
    """Zero-column skipping model on bit-flipped weights."""

    design = "bitwave"

    def __init__(self, config: object) -> None:
        super().__init__(config)
        self._pruned: dict[str, np.ndarray] = {}

    def prepare(self, workload: Workload) -> None:
        super().prepare(workload)
        self._pruned = {}

    def pruned_weights(self, layer: LayerWorkload) -> np.ndarray:
        """Bit-flipped weights of a layer (cached per workload)."""
        if layer.kind is LayerType.MATMUL:
            return layer.weights
        if layer.name not in self._pruned:
            from bitvert.pruning import PruneConfig, prune

            c = self.config
            w_prec = c.precision_for(self.workload_name)
            cfg = PruneConfig(
                method="bitflip", semantics="code", weight_bits=8, group_size=c.group_size,
                columns=8 - w_prec, neg_min="clamp",
            )
            self._pruned[layer.name] = prune(layer.weights, cfg, kind=grouping_kind(layer)).weights
        return self._pruned[layer.name]

    def layer(self, layer: LayerWorkload) -> ComputeResult:
        c = self.config
        w = self.pruned_weights(layer)
        pl = layer.with_weights(w)
        per_row = nonzero_magnitude_columns(weight_slices(pl, c.lanes_per_pe))
        tiles = np.maximum(row_tile_max(per_row, pl, c.array_rows), c.min_cycles_per_tile)
        gw = group_weights(w, grouping_kind(layer), c.group_size)
        cols = nonzero_magnitude_columns(gw.values).astype(np.int64) + 1  # + sign column
        wbits = float((cols * gw.lengths).sum() + c.metadata_bits_per_group * len(gw.lengths))
        return self.data_result(
            layer, tiles, wbits, float(c.activation_bits),
            extra={"weight_precision_bits": c.precision_for(self.workload_name)},
        )
