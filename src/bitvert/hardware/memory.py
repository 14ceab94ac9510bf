"""SRAM and DRAM traffic per layer: footprints, refetch, on-chip residency, DRAM cycles.

Per layer (BBS.md §10.5, with the published bugs fixed, §11):

* footprints in **bits**, as each design stores them: compressed weights with
  their metadata and index tables, activations at the design's precision
  (SparTen: non-zeros plus a 1-bit mask per element);
* refetch only when both the weights exceed the weight buffer and the inputs
  exceed the activation buffer: the cheaper of re-reading the weights
  ``ceil(I / I_sram)`` times or the inputs ``ceil(W / W_sram)`` times, for every
  workload (no model-name list);
* residency: when inputs plus outputs fit the activation buffer, the output
  stays on chip and a next layer that consumes it (``input_from_previous``)
  reads nothing from DRAM; the last layer always writes its output;
* DRAM cycles = bits moved / ``dram_bits_per_cycle`` (bits = bytes x 8, not
  scaled by precision twice);
* SRAM writes = the bits arriving from DRAM plus the outputs written back;
* an attention matmul's second operand is an activation: when the layer's input
  is on chip, so is that operand (no DRAM traffic for it).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from bitvert.hardware.accelerators.base import ComputeResult
from bitvert.hardware.workload import LayerType, LayerWorkload

__all__ = ["LayerTraffic", "layer_traffic"]


@dataclass(frozen=True)
class LayerTraffic:
    """Memory traffic of one layer on one accelerator (all in bits, cycles in cycles)."""

    weight_footprint_bits: float
    input_footprint_bits: float
    output_footprint_bits: float
    weight_dram_bits: float
    input_dram_bits: float
    output_dram_bits: float
    weight_fetches: int
    input_fetches: int
    output_resident: bool
    sram_read_weight_bits: float
    sram_read_input_bits: float
    sram_write_bits: float
    dram_cycles: float

    @property
    def dram_bits(self) -> float:
        return self.weight_dram_bits + self.input_dram_bits + self.output_dram_bits

    def as_dict(self) -> dict[str, Any]:
        return {
            "weight_footprint_bits": self.weight_footprint_bits,
            "weight_dram_bits": self.weight_dram_bits,
            "input_dram_bits": self.input_dram_bits,
            "output_dram_bits": self.output_dram_bits,
            "dram_bits": self.dram_bits,
            "weight_fetches": self.weight_fetches,
            "input_fetches": self.input_fetches,
            "output_resident": self.output_resident,
            "sram_read_weight_bits": self.sram_read_weight_bits,
            "sram_read_input_bits": self.sram_read_input_bits,
            "sram_write_bits": self.sram_write_bits,
        }


def layer_traffic(
    layer: LayerWorkload,
    compute: ComputeResult,
    config: Any,
    previous_output_resident: bool,
    is_last: bool,
) -> LayerTraffic:
    """Traffic of ``layer`` given its compute result and the accelerator ``config``."""
    w = float(compute.weight_bits)
    if layer.kind is LayerType.MATMUL:
        w *= layer.repeats  # one second operand per head / batch instance
    i = float(layer.input_elements) * compute.input_bits_per_element
    o = float(layer.output_elements) * compute.output_bits_per_element
    w_sram = float(config.weight_sram_kib) * 8192.0
    i_sram = float(config.input_sram_kib) * 8192.0
    n_w = n_i = 1
    if w > w_sram and i > i_sram:
        refetch_w = math.ceil(i / i_sram)
        refetch_i = math.ceil(w / w_sram)
        if w * refetch_w + i <= w + i * refetch_i:
            n_w = refetch_w
        else:
            n_i = refetch_i
    input_on_chip = layer.input_from_previous and previous_output_resident
    resident = (i + o) <= i_sram and not is_last
    weight_dram = w * n_w
    if layer.kind is LayerType.MATMUL and input_on_chip and n_w == 1:
        weight_dram = 0.0  # the second operand (K, V) was produced on chip as well
    input_dram = 0.0 if (input_on_chip and n_i == 1) else i * n_i
    output_dram = 0.0 if resident else o
    sram_write = weight_dram + input_dram + o
    return LayerTraffic(
        weight_footprint_bits=w,
        input_footprint_bits=i,
        output_footprint_bits=o,
        weight_dram_bits=weight_dram,
        input_dram_bits=input_dram,
        output_dram_bits=output_dram,
        weight_fetches=n_w,
        input_fetches=n_i,
        output_resident=resident,
        sram_read_weight_bits=float(compute.weight_read_bits),
        sram_read_input_bits=float(compute.input_read_bits),
        sram_write_bits=sram_write,
        dram_cycles=(weight_dram + input_dram + output_dram) / float(config.dram_bits_per_cycle),
    )
