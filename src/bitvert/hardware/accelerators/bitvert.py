"""BitVert: cycles from the stored columns of a BBS-encoded variant (BBS.md §9-§10).

The model reads the layer's :class:`~bitvert.codec.view.WeightEncoding` -- what the encoder
wrote into the variant's ``*.bbs.safetensors``, nothing recomputed:

* per metadata group the PE processes its ``stored_columns`` bit columns, one per cycle (BBS
  guarantees at most ``g/2`` effectual bits per column, which the 8 selection lanes cover).
  A 16-wide PE slice covers half of a 32-weight metadata group (two passes share one metadata
  entry, [OPEN] BBS.md §8.4); a slice touching several groups (window-major layers) takes the
  largest column count;
* sensitive channels (``encoding.sensitive``: stored at full width without metadata) are
  reordered into their own tiles, as the encoder's channel-index table records;
* per tile the lock-step rows wait for the slowest row: cycles = max over the tile's rows, at
  least ``min_cycles_per_tile`` (the 6-bit BBS constant is multiplied 3 bits per cycle);
* storage = ``encoding.footprint_bits`` (column stream + metadata + channel-index table, the
  codec's own accounting).

The published "fluid" model ``tiles * (r_h * 8 + (1 - r_h) * p_l)`` is reported next to it as
``cycles_fluid``, with ``p_l = b - N`` of the encoding and ``r_h`` the layer's share of the
global top-beta channels *before* rounding to 32 when the variant's header records it (as the
published simulator read its unrounded channel lists), else its sensitive channels.

A layer whose encoding is missing or neither BBS nor ``plain`` (e.g. a BitWave variant) raises
:class:`~bitvert.errors.UnsupportedLayerError`. Attention matmul operands have no offline
encoding: they run at 8 columns.
"""

from __future__ import annotations

import numpy as np

from bitvert.codec.layout import TensorLayout
from bitvert.errors import ConfigError, UnsupportedLayerError
from bitvert.hardware.accelerators.base import AcceleratorModel, ComputeResult, register
from bitvert.hardware.tiling import per_weight_slices, row_tile_max
from bitvert.hardware.workload import LayerType, LayerWorkload

__all__ = ["BitVert"]


@register
class BitVert(AcceleratorModel):
    """BitVert cycle model on a BBS-encoded variant."""

    design = "bitvert"

    def layer(self, layer: LayerWorkload) -> ComputeResult:
        c = self.config
        m = self.mapping(layer)
        if layer.kind is LayerType.MATMUL:
            return self.dense_result(layer, 8.0, 8.0, float(c.activation_bits), extra={"cycles_fluid": m.tiles * 8.0})
        enc = layer.encoding
        if enc is None or not (enc.layout.is_bbs or enc.layout is TensorLayout.PLAIN):
            got = "no encoding" if enc is None else f"a {enc.layout.value!r} encoding"
            raise UnsupportedLayerError(
                f"accelerator {c.name!r}: layer {layer.name!r} has {got}; BitVert runs a BBS-pruned variant -- "
                "pass a BBS preset (e.g. 'bitvert:moderate'), or a pruned.safetensors / *.bbs.safetensors of a "
                "BBS preset (moderate, conservative, llm-*)"
            )
        if enc.group_layout.group_size != c.group_size:
            raise ConfigError(
                f"accelerator {c.name!r}: key 'group_size' = {c.group_size}, but layer {layer.name!r} was encoded "
                f"with groups of {enc.group_layout.group_size}; use a datapath with group_size "
                f"{enc.group_layout.group_size} or prune with group_size {c.group_size}"
            )
        per_row = per_weight_slices(enc.per_weight_columns(), layer, c.lanes_per_pe).max(axis=2)
        order = None
        if layer.groups == 1 and enc.sensitive.any():
            order = np.concatenate([np.flatnonzero(enc.sensitive), np.flatnonzero(~enc.sensitive)])
        tiles = np.maximum(row_tile_max(per_row, layer, c.array_rows, order), c.min_cycles_per_tile)
        n_sens = int(enc.sensitive.sum())
        wbits = float(enc.footprint_bits)
        n_listed = n_sens if enc.n_sensitive_global is None else enc.n_sensitive_global
        r_h = n_listed / layer.out_channels
        low = float(enc.weight_bits - enc.columns)
        fluid = m.tiles * (r_h * float(enc.weight_bits) + (1.0 - r_h) * low)
        return self.data_result(
            layer, tiles, wbits, float(c.activation_bits),
            extra={
                "cycles_fluid": fluid,
                "sensitive_channels": n_sens,
                "bits_per_weight": wbits / layer.n_weights,
                "columns": enc.columns,
            },
        )
