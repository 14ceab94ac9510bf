"""Pragmatic (MICRO'17): essential-bit skipping on sign-magnitude weights, whole array in lock-step.

Cycles per tile = the largest number of *magnitude* one-bits among all
``rows x lanes`` weights of the tile (the published code also counted the sign
bit, BBS.md §11 item 4; bitvert does not). An all-zero tile costs
``min_cycles_per_tile`` (1 by default: the array still steps once).
"""

from __future__ import annotations

import numpy as np

from bitvert.hardware.accelerators.base import POPCOUNT8, AcceleratorModel, ComputeResult, register
from bitvert.hardware.tiling import row_tile_max, weight_slices
from bitvert.hardware.workload import LayerWorkload


def essential_bits(w: np.ndarray) -> np.ndarray:
    """Magnitude one-bits of each weight (sign excluded), ``uint8``."""
    return POPCOUNT8[np.abs(w.astype(np.int16)).astype(np.uint8)]


@register
class Pragmatic(AcceleratorModel):
    """Lock-step essential-bit model."""

    design = "pragmatic"

    def layer(self, layer: LayerWorkload) -> ComputeResult:
        c = self.config
        per_row = essential_bits(weight_slices(layer, c.lanes_per_pe)).max(axis=2)
        tiles = np.maximum(row_tile_max(per_row, layer, c.array_rows), c.min_cycles_per_tile)
        return self.data_result(layer, tiles, layer.n_weights * 8.0, float(c.activation_bits))
