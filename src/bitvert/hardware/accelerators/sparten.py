"""SparTen (MICRO'19): bit-parallel MACs that skip zero weights and zero activations (BBS.md §10.3).

Mapping: 32 x 16 PEs; array rows are output channels, array columns are
output pixels (along the output width) or tokens; the reduction is cut into
``chunk_size``-long chunks (128) in the order of
:func:`~bitvert.hardware.tiling.per_weight_slices`. A tile is one
(row tile of 32 channels, chunk, column tile of up to 16 pixels/tokens).

**Sharing.** The activation chunk of a pixel/token is broadcast down its PE
column: the 32 rows of column ``c`` read the *same* activation vector and
its sparsity mask ``a_c``. PE ``(r, c)`` performs
``popcount(w_r AND a_c)`` effectual MACs, ``w_r`` being row ``r``'s weight
mask in the chunk. The array runs in lock-step: a tile costs
``max(floor, max over the 32 x 16 PEs)`` cycles, where the floor is the
buffer-load time of a chunk, 128 * 9 * 16 / 1152 = 16 cycles
(``min_cycles_per_chunk``; ``min_cycles_per_chunk_depthwise`` = 8 for
depthwise layers). Ragged column tiles use their real columns only.

**Activation masks.** When a layer carries the mask of its real input
(``LayerWorkload.input_mask``), every tile is costed exactly from it (zero
padding of convolutions is a zero activation). Otherwise the activation
non-zeros are modelled as independent Bernoulli(d) draws with the layer's
``input_density`` d (measured by :mod:`bitvert.hardware.import_torch` on the
example input; assumed in shape-only mode, see
:data:`bitvert.hardware.workloads_zoo.RELU_DENSITY`). Every spatial tile of a
(row tile, chunk) then has the same expected cost, which the model estimates
as the mean over :data:`STAT_TILES` column tiles of masks drawn with a fixed
seed (:data:`STAT_SEED`), computed exactly like real ones -- the rows of a
column share their draw. The draws are ``U < d`` on fixed uniforms ``U``, so
a denser layer gets a superset mask and is never faster, results are
deterministic, and the estimate does not depend on batch or token count.
Effectual MACs (energy) are the exact expectation ``nnz(w) * d`` per row.

The full token count is used (no truncation to 128 tokens, BBS.md §11 item 5).
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from bitvert.errors import InputError
from bitvert.hardware.accelerators.base import AcceleratorModel, ComputeResult, register
from bitvert.hardware.tiling import per_weight_slices
from bitvert.hardware.workload import LayerType, LayerWorkload, ceil_div

__all__ = [
    "SparTen", "STAT_SEED", "STAT_TILES", "pack_lanes", "column_max_effectual", "activation_slices",
]

STAT_TILES = 16
"""Column tiles drawn per (row tile, chunk) by the statistical activation model."""

STAT_SEED = 0
"""Seed of the statistical activation model's uniforms (results are deterministic)."""

_U_RANGE = 1 << 16
"""Resolution of the statistical model's uniforms (``uint16``): densities are drawn to 1/65536."""

_BLOCK_ELEMENTS = 1 << 22
"""Bound on the ``uint64`` words one step of :func:`column_max_effectual` materialises (32 MiB)."""


def pack_lanes(mask: np.ndarray) -> np.ndarray:
    """Pack a boolean ``[..., lanes]`` mask into ``uint64[..., ceil(lanes / 64)]`` words (zero-padded)."""
    m = np.asarray(mask, dtype=bool)
    lanes = m.shape[-1]
    pad = ceil_div(lanes, 64) * 64 - lanes
    if pad:
        m = np.concatenate([m, np.zeros(m.shape[:-1] + (pad,), dtype=bool)], axis=-1)
    packed = np.packbits(m, axis=-1)
    return np.ascontiguousarray(packed).view(np.uint64)


def column_max_effectual(
    w_bits: np.ndarray, a_bits: np.ndarray, a_index: np.ndarray | None = None, with_total: bool = True
) -> tuple[np.ndarray, int]:
    """Per PE column, the largest effectual-MAC count over the rows of a row tile.

    Args:
        w_bits: ``uint64[T, K, R, words]`` packed weight masks: ``T`` row tiles of ``R`` rows, ``K`` chunks.
        a_bits: ``uint64[GA, K, N, words]`` packed activation masks of ``N`` PE columns per chunk, for ``GA``
            activation sets (conv groups; 1 when every row tile reads the same activations).
        a_index: ``int[T]``, the activation set of each row tile (default: all read set 0).
        with_total: also sum the effectual MACs of every PE (else ``total`` is 0).

    Returns:
        ``(colmax, total)``: ``colmax[t, k, n] = max_r popcount(w[t, k, r] & a[a_index[t], k, n])`` as
        ``uint8[T, K, N]`` (``uint16`` beyond 192 lanes), and the sum of ``popcount`` over every PE (the
        effectual MACs).
    """
    t_n, k_n, r_n, words = w_bits.shape
    n_cols = a_bits.shape[2]
    if a_bits.shape[1] != k_n or a_bits.shape[3] != words:
        raise InputError(f"activation masks {a_bits.shape} do not match weight masks {w_bits.shape}")
    if a_index is None:
        a_index = np.zeros(t_n, dtype=np.intp)
    count_dtype = np.uint8 if words * 64 <= 255 else np.uint16
    colmax = np.zeros((t_n, k_n, n_cols), dtype=count_dtype)
    total = 0
    w_words = np.ascontiguousarray(np.moveaxis(w_bits, -1, 0))  # [words, T, K, R]: one pass per word
    a_words = np.ascontiguousarray(np.moveaxis(a_bits, -1, 0))  # [words, GA, K, N]
    per_col = max(1, k_n * r_n)
    n_step = max(1, min(n_cols, _BLOCK_ELEMENTS // per_col))
    t_step = max(1, _BLOCK_ELEMENTS // (per_col * n_step))
    for t0, t1, n0, n1 in _blocks(t_n, t_step, n_cols, n_step):
        idx = a_index[t0:t1]
        counts = np.zeros((t1 - t0, k_n, r_n, n1 - n0), dtype=count_dtype)
        for word in range(words):  # 2 words for a 128-lane chunk
            both = w_words[word, t0:t1, :, :, None] & a_words[word, idx, :, None, n0:n1]
            counts += np.bitwise_count(both)
        colmax[t0:t1, :, n0:n1] = counts.max(axis=2)
        if with_total:
            total += int(counts.sum(dtype=np.int64))
    return colmax, total


def _blocks(t_n: int, t_step: int, n_n: int, n_step: int) -> Iterator[tuple[int, int, int, int]]:
    for t0 in range(0, t_n, t_step):
        for n0 in range(0, n_n, n_step):
            yield t0, min(t_n, t0 + t_step), n0, min(n_n, n0 + n_step)


def activation_slices(layer: LayerWorkload, input_mask: np.ndarray, chunk: int, cols: int) -> np.ndarray:
    """The layer's real input mask as PE-column activation chunks, ``bool[groups, K, N, chunk]``.

    Columns are output pixels (conv: per batch image and output row, along the output width) or rows of
    ``batch * tokens`` (linear / matmul, per repeat); each such run of columns is padded with all-zero
    columns to a multiple of ``cols``, so the column axis splits into the layer's spatial tiles in order.

    Args:
        layer: the layer (geometry only).
        input_mask: boolean non-zero mask of the input: ``(batch, in_channels, ih, iw)`` for a conv,
            ``batch * tokens * repeats * in`` elements for a linear / matmul layer.
        chunk: reduction chunk length (lanes).
        cols: array columns.
    """
    m = np.asarray(input_mask, dtype=bool)
    if layer.is_conv:
        want = (layer.batch, layer.in_channels, *layer.input_hw)
        if m.shape != want or layer.repeats != 1:
            raise InputError(
                f"layer {layer.name!r}: input_mask must have shape {want} (batch, in_channels, ih, iw), got "
                f"{m.shape}; pass the mask of the layer's input tensor"
            )
        (kh, kw), (sh, sw), (ph, pw) = layer.kernel, layer.stride, layer.padding
        oh, ow = layer.output_hw
        padded = np.pad(m, ((0, 0), (0, 0), (ph, ph), (pw, pw)))
        fits = padded.shape[2] >= kh and padded.shape[3] >= kw
        win = np.lib.stride_tricks.sliding_window_view(padded, (kh, kw), axis=(2, 3)) if fits else None
        if win is not None:
            win = win[:, :, ::sh, ::sw]
        if win is None or win.shape[2] < oh or win.shape[3] < ow:
            raise InputError(
                f"layer {layer.name!r}: input {m.shape[2:]} with kernel {layer.kernel}, stride "
                f"{layer.stride} and padding {layer.padding} gives fewer than the output's {layer.output_hw} "
                "pixels; set the layer's padding to what the model applies, or drop input_mask"
            )
        win = win[:, :, :oh, :ow]  # [B, C, oh, ow, kh, kw]
        g, cpg = layer.groups, layer.in_channels_per_group
        win = win.reshape(layer.batch, g, cpg, oh, ow, kh, kw).transpose(1, 0, 3, 4, 2, 5, 6)
        runs, width = layer.batch * oh, ow
        cols_arr = win.reshape(g, runs, width, cpg, kh, kw)
    else:
        n_in = layer.in_channels_per_group
        runs, width = layer.repeats, layer.batch * layer.tokens
        if m.size != runs * width * n_in:
            raise InputError(
                f"layer {layer.name!r}: input_mask must hold repeats x batch x tokens x in = "
                f"{runs} x {width} x {n_in} elements, got shape {m.shape}"
            )
        g = 1
        cols_arr = m.reshape(1, runs, width, n_in)
    padw = ceil_div(width, cols) * cols - width
    if padw:
        zeros = np.zeros(cols_arr.shape[:2] + (padw,) + cols_arr.shape[3:], dtype=bool)
        cols_arr = np.concatenate([cols_arr, zeros], axis=2)
    n = runs * (width + padw)
    flat = cols_arr.reshape((g * n,) + cols_arr.shape[3:])
    sl = per_weight_slices(flat, layer, chunk)  # [g*n, K, chunk] in the weights' reduction order
    return sl.reshape(g, n, sl.shape[1], chunk).transpose(0, 2, 1, 3)


@register
class SparTen(AcceleratorModel):
    """Lock-step value-sparse array whose PE columns share their activation vector."""

    design = "sparten"

    def layer(self, layer: LayerWorkload) -> ComputeResult:
        c = self.config
        m = self.mapping(layer)
        rows, cols, chunk = c.array_rows, c.array_cols, c.chunk_size
        depthwise = layer.kind is LayerType.DEPTHWISE
        floor = c.min_cycles_per_chunk_depthwise if depthwise else c.min_cycles_per_chunk
        nz = layer.weights != 0
        w_slices = per_weight_slices(nz, layer, chunk)  # [cout, K, chunk]
        cout, n_chunks, _ = w_slices.shape
        groups = layer.groups if layer.is_conv else 1
        cout_g = cout // groups
        per_group = ceil_div(cout_g, rows)
        w = w_slices.reshape(groups, cout_g, n_chunks, chunk)
        if per_group * rows > cout_g:
            pad = np.zeros((groups, per_group * rows - cout_g, n_chunks, chunk), dtype=bool)
            w = np.concatenate([w, pad], axis=1)
        w_bits = pack_lanes(w.reshape(groups * per_group, rows, n_chunks, chunk).transpose(0, 2, 1, 3))
        a_index = np.repeat(np.arange(groups), per_group)  # row tile -> conv group
        nnz = int(nz.sum())
        input_mask = layer.input_mask
        if input_mask is not None:
            a_bits = pack_lanes(activation_slices(layer, input_mask, chunk, cols))
            colmax, effectual = column_max_effectual(w_bits, a_bits, a_index)
            tile_max = colmax.reshape(colmax.shape[0], n_chunks, -1, cols).max(axis=3)
            cycles = float(np.maximum(tile_max, floor).sum(dtype=np.float64))
            d = float(np.asarray(input_mask, dtype=bool).mean())
            source = "mask"
        else:
            d = float(layer.input_density)
            cycles = self._statistical_cycles(layer, w_bits, a_index, groups, n_chunks, floor)
            effectual = nnz * d * layer.rows * layer.repeats
            source = "density"
        act_bits = 8.0 * d + c.mask_bits_per_element
        wbits = nnz * 8.0 + layer.n_weights * c.mask_bits_per_element
        return ComputeResult(
            compute_cycles=cycles,
            mapping=m,
            weight_bits=wbits,
            input_bits_per_element=act_bits,
            output_bits_per_element=act_bits,
            weight_read_bits=wbits * m.spatial_tiles,
            input_read_bits=m.tiles * cols * chunk * act_bits,
            effectual_macs=float(effectual),
            extra={"weight_density": nnz / layer.n_weights, "input_density": d, "activations": source},
        )

    def _statistical_cycles(
        self, layer: LayerWorkload, w_bits: np.ndarray, a_index: np.ndarray, groups: int, n_chunks: int,
        floor: float,
    ) -> float:
        """Expected cycles under independent Bernoulli(d) activations (the column's rows share one draw)."""
        c = self.config
        cols, chunk = c.array_cols, c.chunk_size
        if layer.is_conv:
            oh, ow = layer.output_hw
            reps = oh * layer.batch * layer.repeats
            n_full, rem = (ow // cols) * reps, ow % cols
            n_rem = reps if rem else 0
        else:
            width = layer.batch * layer.tokens
            n_full, rem = (width // cols) * layer.repeats, width % cols
            n_rem = layer.repeats if rem else 0
        width = cols if n_full else rem  # a layer without full column tiles draws only its ragged width
        u = np.random.default_rng(STAT_SEED).integers(
            0, _U_RANGE, size=(groups, n_chunks, STAT_TILES * width, chunk), dtype=np.uint16
        )
        threshold = round(float(layer.input_density) * _U_RANGE)
        a_bits = pack_lanes(u < threshold if threshold < _U_RANGE else np.ones(u.shape, dtype=bool))
        colmax, _ = column_max_effectual(w_bits, a_bits, a_index, with_total=False)
        per_tile = colmax.reshape(colmax.shape[0], n_chunks, STAT_TILES, width)
        cycles = 0.0
        if n_full:
            full = np.maximum(per_tile.max(axis=3), floor)
            cycles += n_full * float(full.mean(axis=2).sum(dtype=np.float64))
        if n_rem:
            ragged = np.maximum(per_tile[..., :rem].max(axis=3), floor)
            cycles += n_rem * float(ragged.mean(axis=2).sum(dtype=np.float64))
        return cycles
