"""BitVert: cycles derived from the actual BBS-encoded weights (BBS.md §9-§10).

Per metadata group the PE processes ``stored_columns = 8 - free_columns``
bit columns, one per cycle (BBS guarantees at most ``g/2`` effectual bits per
column, which the 8 selection lanes cover). A 16-wide PE slice covers half of
a 32-weight metadata group (two passes share one metadata entry, [OPEN]
BBS.md §8.4); a slice touching several groups (window-major layers) takes
the largest column count. Sensitive channels are reordered into their own
tiles (their per-layer count is already a multiple of 32); the channel-index
buffer records the permutation. Per tile, the lock-step rows wait for the
slowest row: cycles = max over the tile's rows, at least
``min_cycles_per_tile`` (the 6-bit BBS constant is multiplied 3 bits per cycle).

The published "fluid" model ``tiles * (r_h * 8 + (1 - r_h) * p_l)`` is
reported next to it as ``cycles_fluid``, with ``r_h`` the layer's share of the
global top-beta channels *before* rounding to 32 (as the published simulator
read its unrounded channel lists).

Attention matmul operands have no offline encoding: they run at 8 columns.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from bitvert.hardware.accelerators.base import AcceleratorModel, ComputeResult, register
from bitvert.hardware.presets import BitVertLayerData, apply_bitvert_preset
from bitvert.hardware.tiling import per_weight_slices, row_tile_max
from bitvert.hardware.workload import LayerType, LayerWorkload, Workload, log2_ceil

__all__ = ["BitVert"]


@register
class BitVert(AcceleratorModel):
    """BitVert cycle model on pruned weights."""

    design = "bitvert"

    def __init__(self, config: Any) -> None:
        super().__init__(config)
        self.data: dict[str, BitVertLayerData] = {}

    def prepare(self, workload: Workload, prepared: dict[str, BitVertLayerData] | None = None) -> None:
        """Apply the preset (or take ``prepared`` per-layer encodings from a pipeline)."""
        super().prepare(workload)
        c = self.config
        if prepared is not None:
            self.data = dict(prepared)
            return
        self.data = apply_bitvert_preset(
            workload, c.method, c.pruned_columns, c.group_size, c.sensitive_fraction, c.sensitive_round_multiple
        )

    def layer(self, layer: LayerWorkload) -> ComputeResult:
        c = self.config
        m = self.mapping(layer)
        if layer.kind is LayerType.MATMUL or layer.name not in self.data:
            if layer.kind is not LayerType.MATMUL:
                from bitvert.errors import UnsupportedLayerError

                raise UnsupportedLayerError(
                    f"accelerator {c.name!r}: layer {layer.name!r} has no BBS encoding; call prepare() "
                    "with the workload that contains it"
                )
            return self.dense_result(layer, 8.0, 8.0, float(c.activation_bits), extra={"cycles_fluid": m.tiles * 8.0})
        d = self.data[layer.name]
        per_row = per_weight_slices(d.per_weight_columns(), layer, c.lanes_per_pe).max(axis=2)
        order = None
        if layer.groups == 1 and d.sensitive.any():
            order = np.concatenate([np.flatnonzero(d.sensitive), np.flatnonzero(~d.sensitive)])
        tiles = np.maximum(row_tile_max(per_row, layer, c.array_rows, order), c.min_cycles_per_tile)
        n_sens = int(d.sensitive.sum())
        wbits = float(
            (d.stored_columns.astype(np.int64) * d.lengths).sum()
            + c.metadata_bits_per_group * len(d.lengths)
            + layer.out_channels * log2_ceil(layer.out_channels)
        )
        n_listed = n_sens if d.sensitive_unrounded is None else d.sensitive_unrounded
        r_h = n_listed / layer.out_channels
        fluid = m.tiles * (r_h * 8.0 + (1.0 - r_h) * c.fluid_low_precision_bits)
        return self.data_result(
            layer, tiles, wbits, float(c.activation_bits),
            extra={
                "cycles_fluid": fluid,
                "sensitive_channels": n_sens,
                "bits_per_weight": wbits / layer.n_weights,
                "prune_mse": d.mse,
            },
        )
