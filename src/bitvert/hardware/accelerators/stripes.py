"""Stripes (MICRO'16): dense bit-serial reference; every tile takes ``weight_precision_bits`` cycles."""

from __future__ import annotations

from bitvert.hardware.accelerators.base import AcceleratorModel, ComputeResult, register
from bitvert.hardware.workload import LayerWorkload


@register
class Stripes(AcceleratorModel):
    """Cycles = tiles x weight precision (BBS.md §10.2-10.3)."""

    design = "stripes"

    def layer(self, layer: LayerWorkload) -> ComputeResult:
        p = self.config.weight_precision_bits
        return self.dense_result(layer, float(p), 8.0, float(self.config.activation_bits))
