"""BitWave (HPCA'24): zero-column skipping on bit-flipped sign-magnitude weights.

BitWave runs a ``bitwave-*`` variant: the weights the pipeline bit-flipped (BBS.md §6.5) and
the codec stored, taken from the layer as given -- the simulator flips nothing. A PE row
processes the magnitude columns of its ``lanes``-weight slice that are not all zero; cycles
per tile are the maximum over the lock-step rows. Only magnitude planes 1..7 are counted (the
published ``planes incl. sign - 1`` gave -1 cycles on all-zero tiles, BBS.md §11 item 3); an
all-zero tile costs ``min_cycles_per_tile``.

Storage: the encoding's ``footprint_bits`` when the layer holds a BitWave encoding (sign
column + stored magnitude columns + 7-bit column mask per group + channel-index table, the
codec's accounting); otherwise (INT8 layers of the variant, attention operands, a layer
without encoding) per bit-flip group of ``group_size`` weights the sign column, the non-zero
magnitude columns and ``metadata_bits_per_group`` bits of column mask.
"""

from __future__ import annotations

import numpy as np

from bitvert.codec.layout import TensorLayout
from bitvert.core.grouping import group_weights
from bitvert.hardware.accelerators.base import POPCOUNT8, AcceleratorModel, ComputeResult, register
from bitvert.hardware.tiling import row_tile_max, weight_slices
from bitvert.hardware.workload import LayerWorkload


def nonzero_magnitude_columns(slices: np.ndarray) -> np.ndarray:
    """``[..., lanes]`` int weights -> number of magnitude planes with at least one 1 (``uint8[...]``)."""
    mag = np.abs(slices.astype(np.int16)).astype(np.uint8)
    return POPCOUNT8[np.bitwise_or.reduce(mag, axis=-1) & 0x7F]


def grouping_kind(layer: LayerWorkload) -> str:
    """The :mod:`bitvert.core.grouping` layout of a layer's weights."""
    return "conv" if layer.is_conv else "linear"


@register
class BitWave(AcceleratorModel):
    """Zero-column skipping model on the layer's (bit-flipped) weights."""

    design = "bitwave"

    def layer(self, layer: LayerWorkload) -> ComputeResult:
        c = self.config
        per_row = nonzero_magnitude_columns(weight_slices(layer, c.lanes_per_pe))
        tiles = np.maximum(row_tile_max(per_row, layer, c.array_rows), c.min_cycles_per_tile)
        enc = layer.encoding
        if enc is not None and enc.layout is TensorLayout.BITWAVE:
            wbits = float(enc.footprint_bits)
        else:
            gw = group_weights(layer.weights, grouping_kind(layer), c.group_size)
            cols = nonzero_magnitude_columns(gw.values).astype(np.int64) + 1  # + sign column
            wbits = float((cols * gw.lengths).sum() + c.metadata_bits_per_group * len(gw.lengths))
        return self.data_result(layer, tiles, wbits, float(c.activation_bits),
                                extra={"bits_per_weight": wbits / layer.n_weights})
