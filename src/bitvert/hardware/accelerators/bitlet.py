"""Bitlet (MICRO'21): one lane per bit significance; the busiest significance sets the time.

Per PE row, the ``lanes`` weights are split into two's-complement bit planes;
a plane with ``n`` ones takes ``n`` cycles in its significance lane. Cycles per
tile = max over rows and planes of the ones in that plane (BBS.md §10.3), at
least ``min_cycles_per_tile``.
"""

from __future__ import annotations

import numpy as np

from bitvert.hardware.accelerators.base import AcceleratorModel, ComputeResult, register
from bitvert.hardware.tiling import row_tile_max, weight_slices
from bitvert.hardware.workload import LayerWorkload


def plane_ones_max(slices: np.ndarray) -> np.ndarray:
    """``[cout, n_slices, lanes]`` int weights -> max over the 8 two's-complement planes of their ones."""
    u = slices.astype(np.uint8)  # two's complement low byte
    best = np.zeros(slices.shape[:2], dtype=np.int32)
    for k in range(8):
        ones = ((u >> k) & 1).sum(axis=2, dtype=np.int32)
        np.maximum(best, ones, out=best)
    return best


@register
class Bitlet(AcceleratorModel):
    """Per-significance lane model."""

    design = "bitlet"

    def layer(self, layer: LayerWorkload) -> ComputeResult:
        c = self.config
        per_row = plane_ones_max(weight_slices(layer, c.lanes_per_pe))
        tiles = np.maximum(row_tile_max(per_row, layer, c.array_rows), c.min_cycles_per_tile)
        return self.data_result(layer, tiles, layer.n_weights * 8.0, float(c.activation_bits))
