"""ANT (MICRO'22): Stripes-style PE at a fractional adaptive-type precision for weights and activations."""

from __future__ import annotations

from bitvert.hardware.accelerators.base import AcceleratorModel, ComputeResult, register
from bitvert.hardware.workload import LayerWorkload


@register
class Ant(AcceleratorModel):
    """Cycles = tiles x b_ant; weights and activations stored at b_ant bits (BBS.md §10.3)."""

    design = "ant"

    def layer(self, layer: LayerWorkload) -> ComputeResult:
        b = self.config.precision_for(self.workload_name)
        return self.dense_result(layer, b, b, b, extra={"precision_bits": b})
