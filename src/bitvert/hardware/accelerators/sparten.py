"""SparTen (MICRO'19): bit-parallel MACs that skip zero weights and zero activations.

Mapping: 32 x 16 PEs (rows = output channels, columns = pixels/tokens); the
reduction is cut into 128-long chunks (the ``lanes_per_pe`` of the config).
PE ``(r, c)`` performs the effectual MACs of its chunk: positions where both
the weight and the activation are non-zero. The array waits for its slowest
PE, and a chunk never takes fewer than ``min_cycles_per_chunk`` cycles (the
buffer-load time; ``min_cycles_per_chunk_depthwise`` for depthwise layers).

Weights are real; activations are modelled as independent Bernoulli(d)
non-zeros with the layer's ``input_density`` d (measured on a real input by
:mod:`bitvert.hardware.import_torch`, assumed in shape-only mode). For a tile
whose row ``r`` has ``n_r`` non-zero weights in the chunk, the effectual MACs
of PE ``(r, c)`` are Binomial(n_r, d), independent over the ``c`` columns, so
``P(max <= m) = prod_r F(n_r, m) ** cols`` and the model charges the exact
expectation ``E[max(floor, max)]`` -- deterministic, no sampling.
The full token count is used (no truncation to 128 tokens, BBS.md §11 item 5);
ragged column tiles use their real column count.
"""

from __future__ import annotations

import numpy as np

from bitvert.hardware.accelerators.base import AcceleratorModel, ComputeResult, register
from bitvert.hardware.tiling import per_weight_slices
from bitvert.hardware.workload import LayerType, LayerWorkload

__all__ = ["SparTen", "binomial_log_cdf", "expected_tile_max"]


def binomial_log_cdf(n_max: int, p: float) -> np.ndarray:
    """``log P(Binomial(n, p) <= m)`` for ``n, m`` in ``0..n_max`` (``float64[n_max+1, n_max+1]``)."""
    pmf = np.zeros((n_max + 1, n_max + 1), dtype=np.float64)
    pmf[0, 0] = 1.0
    for n in range(1, n_max + 1):
        pmf[n, 1:] = pmf[n - 1, :-1] * p
        pmf[n] += pmf[n - 1] * (1.0 - p)
    cdf = np.minimum(np.cumsum(pmf, axis=1), 1.0)
    with np.errstate(divide="ignore"):
        return np.log(cdf)


def expected_tile_max(log_sum: np.ndarray, cols: int, floor: float) -> np.ndarray:
    """``E[max(floor, M)]`` where ``log P(M <= m) = cols * log_sum[..., m]``."""
    n_max = log_sum.shape[-1] - 1
    with np.errstate(invalid="ignore"):
        p_le = np.exp(cols * log_sum)
    p_le = np.nan_to_num(p_le, nan=0.0)
    start = int(np.ceil(floor))
    tail = (1.0 - p_le[..., start:n_max]).sum(axis=-1) if start < n_max else 0.0
    base = float(floor)
    # E[max(floor, M)] = floor + sum_{m >= ceil(floor)} P(M > m) (+ fractional part of a non-integer floor)
    frac = (start - floor) * (1.0 - p_le[..., start - 1]) if start > floor and start >= 1 else 0.0
    return base + tail + frac


@register
class SparTen(AcceleratorModel):
    """Expected-max value-sparsity model."""

    design = "sparten"

    def layer(self, layer: LayerWorkload) -> ComputeResult:
        c = self.config
        m = self.mapping(layer)
        d = float(layer.input_density)
        nz = (layer.weights != 0).astype(np.uint8)
        per_chunk = per_weight_slices(nz, layer, c.chunk_size).sum(axis=2, dtype=np.int64)  # [cout, chunks]
        cout, n_chunks = per_chunk.shape
        groups = layer.groups if layer.is_conv else 1
        cout_g = cout // groups
        per_group = -(-cout_g // c.array_rows)
        pad = per_group * c.array_rows - cout_g
        pc = per_chunk.reshape(groups, cout_g, n_chunks)
        if pad:
            pc = np.concatenate([pc, np.zeros((groups, pad, n_chunks), dtype=pc.dtype)], axis=1)
        pc = pc.reshape(groups * per_group, c.array_rows, n_chunks)
        n_max = c.chunk_size
        hist_idx = (np.arange(groups * per_group)[:, None, None] * n_chunks + np.arange(n_chunks)[None, None, :]) * (
            n_max + 1
        ) + pc
        hist = np.bincount(hist_idx.ravel(), minlength=groups * per_group * n_chunks * (n_max + 1))
        hist = hist.reshape(groups * per_group, n_chunks, n_max + 1).astype(np.float64)
        logf = binomial_log_cdf(n_max, d)
        with np.errstate(invalid="ignore"):
            log_sum = np.where(hist[..., None] > 0, hist[..., None] * logf[None, None], 0.0).sum(axis=2)
        floor = c.min_cycles_per_chunk_depthwise if layer.kind is LayerType.DEPTHWISE else c.min_cycles_per_chunk
        # spatial tiles with a full set of columns and the ragged last one
        if layer.is_conv:
            oh, ow = layer.output_hw
            reps = oh * layer.batch * layer.repeats
            n_full, rem = (ow // c.array_cols) * reps, ow % c.array_cols
            n_rem = reps if rem else 0
        else:
            rows = layer.batch * layer.tokens
            n_full, rem = (rows // c.array_cols) * layer.repeats, rows % c.array_cols
            n_rem = layer.repeats if rem else 0
        cycles = n_full * float(expected_tile_max(log_sum, c.array_cols, floor).sum())
        if n_rem:
            cycles += n_rem * float(expected_tile_max(log_sum, rem, floor).sum())
        nnz = float(per_chunk.sum())
        effectual = nnz * d * (layer.rows * layer.repeats)
        act_bits = 8.0 * d + c.mask_bits_per_element
        wbits = nnz * 8.0 + layer.n_weights * c.mask_bits_per_element
        return ComputeResult(
            compute_cycles=cycles,
            mapping=m,
            weight_bits=wbits,
            input_bits_per_element=act_bits,
            output_bits_per_element=act_bits,
            weight_read_bits=wbits * m.spatial_tiles,
            input_read_bits=m.tiles * c.array_cols * c.chunk_size * act_bits,
            effectual_macs=effectual,
            extra={"weight_density": nnz / layer.n_weights, "input_density": d},
        )
