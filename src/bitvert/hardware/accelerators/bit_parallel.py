"""Bit-parallel INT8 array: one tile (one 8b x 8b MAC per PE lane) per cycle."""

from __future__ import annotations

from bitvert.hardware.accelerators.base import AcceleratorModel, ComputeResult, register
from bitvert.hardware.workload import LayerWorkload


@register
class BitParallel(AcceleratorModel):
    """Cycles = tiles."""

    design = "bit-parallel"

    def layer(self, layer: LayerWorkload) -> ComputeResult:
        return self.dense_result(layer, 1.0, 8.0, float(self.config.activation_bits))
