"""A bit-exact functional model of the BitVert PE computing ``Y = W·X`` from encoded columns.

The model reads the bit columns straight from an :class:`EncodedTensor`'s column stream
(not from decoded integers) and computes every output as the hardware does (BBS.md §4,
§9.1-§9.2):

1. per stored column of a group and per **8-weight sub-group**, the scheduler counts the
   ones; the column is *inverted* (computed through its zeros) iff ``2·ones > L`` (``L`` =
   real weights in the sub-group, 8 except in short remainder groups; a tie is computed
   through the ones);
2. the adder tree sums the activations at the *effectual* positions (ones, or zeros when
   inverted); an inverted sub-group contributes ``ΣA_sub − partial sum``, with ``ΣA_sub``
   from the shared ΣA generator;
3. the group's first stored column is the two's-complement MSB: its contribution is
   negated (the dropped redundant columns are sign extension folded into it);
4. each column's result is shifted by its plane significance ``2**(b-1-p)`` and accumulated;
5. the constant path adds ``const · ΣA_group``: the rounded-average pattern of the free low
   columns, or minus the zero-point offset ``c`` (stored values are ``w + c``).

Everything is vectorized over channels, groups, sub-groups and input vectors: per stored
plane, the effectual-bit masks become a ``{-1, 0, 1}`` matrix that meets the activations in
one matrix product (exact in floating point while ``|partial sums| < 2**24``, else float64).
The model also counts effectual bits per group column, the work BitVert's lanes do.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from numba import njit, prange

from bitvert.codec.layout import TensorLayout
from bitvert.codec.tensor import EncodedTensor, plan_groups
from bitvert.core.grouping import GroupLayout, out_channels_first
from bitvert.errors import InputError, UnsupportedLayerError

__all__ = ["PEResult", "pe_matmul", "input_positions", "reference_matmul"]

SUBGROUP = 8
"""Weights per scheduler sub-group (BitVert's optimized PE)."""

_FLOAT32_EXACT = 1 << 24


@dataclass(frozen=True)
class PEResult:
    """Output of :func:`pe_matmul`.

    Attributes:
        output: ``int64[K, T]``, ``Y = W·X`` in the original channel order.
        effectual_bits: ``int32[n_groups, b]``: effectual bits (additions through the adder
            tree) of each group column under the sub-group polarity rule, 0 for planes the
            group does not store; groups in layout order, plane 0 first.
        stored_columns: ``bool[n_groups, b]``: which planes each group stores.
        inverted_subgroup_columns: number of (sub-group, column) pairs computed through zeros.
    """

    output: np.ndarray
    effectual_bits: np.ndarray
    stored_columns: np.ndarray
    inverted_subgroup_columns: int

    def summary(self) -> dict[str, Any]:
        """Totals (JSON-friendly)."""
        cols = int(self.stored_columns.sum())
        eff = int(self.effectual_bits.sum())
        return {
            "stored_group_columns": cols,
            "effectual_bits": eff,
            "effectual_bits_per_column": eff / cols if cols else 0.0,
            "inverted_subgroup_columns": self.inverted_subgroup_columns,
        }


def input_positions(layout: GroupLayout) -> np.ndarray:
    """For each padded group slot of one output channel, the input row it meets.

    Returns ``int64[groups_per_channel, width]``: index into the rows of ``X`` in *torch
    order* (the column order of ``weight.reshape(K, -1)`` for ``linear`` / ``conv``, the
    input-feature index for ``linear_in_out``); ``-1`` marks phantom padding.
    """
    rpc, rl, gpr, w = layout.rows_per_channel, layout.row_length, layout.groups_per_row, layout.width
    col = np.arange(gpr * w, dtype=np.int64)
    row = np.arange(rpc, dtype=np.int64)
    if layout.kind.value == "conv" and not layout.along_window:
        # layout row j = kernel position, column c = input channel; torch order is (c, kernel)
        idx = col[None, :] * rpc + row[:, None]
    else:
        idx = row[:, None] * rl + col[None, :]
    idx = np.where(col[None, :] < rl, idx, -1)
    return idx.reshape(rpc * gpr, w)


def reference_matmul(weights: np.ndarray, x: np.ndarray, kind: str) -> np.ndarray:
    """``W_int @ X_int`` in ``int64`` with ``W`` flattened in torch order (the check for the PE)."""
    w = np.asarray(weights, dtype=np.int64)
    w2 = out_channels_first(w, kind)
    w2 = w2.reshape(w2.shape[0], -1)
    return w2 @ np.asarray(x, dtype=np.int64)


def _check_x(x: Any, n_in: int) -> np.ndarray:
    arr = np.asarray(x.numpy() if hasattr(x, "numpy") else x)
    if arr.dtype.kind not in "iu":
        raise InputError(f"x must hold integer activations, got dtype {arr.dtype}; quantize them first")
    if arr.ndim == 1:
        arr = arr[:, None]
    if arr.ndim != 2 or arr.shape[0] != n_in or arr.shape[1] == 0:
        raise InputError(f"x must have shape ({n_in}, T) (one column per input vector, rows in torch order), "
                         f"got {arr.shape}")
    arr = arr.astype(np.int64)
    if arr.size and np.abs(arr).max() >= 1 << 16:
        raise InputError("x values must lie in (-65536, 65536) (8- or 16-bit activations)")
    return arr


@njit(cache=True, parallel=True)
def _column_coefficients(stream, offsets, lengths, plane_j, coef, wpad, e_out, p_out, eff_out):  # pragma: no cover
    """Scheduler + adder-tree selection for one stored column of every group.

    For group ``g`` whose column reads plane ``plane_j[g]`` (``-1``: none), fills
    ``e_out[g, i]`` with ``±coef[g]`` at effectual positions (``+`` through ones, ``-`` through
    zeros of an inverted sub-group), ``p_out[g, u] = coef[g]`` for inverted sub-groups (the
    ``ΣA_sub`` term) and ``eff_out[g]`` with the effectual-bit count.
    """
    n_sub = wpad // 8
    for g in prange(plane_j.shape[0]):
        for i in range(wpad):
            e_out[g, i] = 0.0
        for u in range(n_sub):
            p_out[g, u] = 0.0
        eff_out[g] = 0
        if plane_j[g] < 0:
            continue
        n = lengths[g]
        start = offsets[g]
        c = coef[g]
        total = 0
        for u in range(n_sub):
            lo = u * 8
            hi = min(lo + 8, n)
            if hi <= lo:
                break
            ones = 0
            for i in range(lo, hi):
                q = start + i
                ones += (stream[q >> 3] >> (7 - (q & 7))) & 1
            inverted = 2 * ones > hi - lo
            for i in range(lo, hi):
                q = start + i
                bit = (stream[q >> 3] >> (7 - (q & 7))) & 1
                if inverted:
                    if bit == 0:
                        e_out[g, i] = -c
                        total += 1
                elif bit == 1:
                    e_out[g, i] = c
                    total += 1
            if inverted:
                p_out[g, u] = c
        eff_out[g] = total


def pe_matmul(enc: EncodedTensor, x: Any) -> PEResult:
    """Compute ``Y = W·X`` from the encoded columns the way BitVert's PEs do.

    Args:
        enc: an encoded tensor in a two's-complement layout (BBS or plain).
        x: integer activations ``[R, T]`` (or ``[R]``), ``R = weights per output channel``,
            rows in torch order (``weight.reshape(K, -1)`` columns; input features for
            ``linear_in_out``). A depthwise filter is applied to these shared inputs.

    Returns:
        A :class:`PEResult`; ``output`` equals :func:`reference_matmul` of the decoded weights.

    Raises:
        UnsupportedLayerError: a BitWave (sign-magnitude) tensor; BitVert's datapath is two's
            complement.
    """
    if not isinstance(enc, EncodedTensor):
        raise InputError(f"pe_matmul expects an EncodedTensor, got {type(enc).__name__}")
    if enc.layout is TensorLayout.BITWAVE:
        raise UnsupportedLayerError("the BitVert PE computes two's complement columns; a BitWave (sign-magnitude) "
                                    "tensor runs on the BitWave model in bitvert.hardware")
    lay = enc.group_layout
    b = int(enc.weight_bits)
    k_all, gpc, width = lay.n_channels, lay.groups_per_channel, lay.width
    n_in = lay.n_weights // k_all
    xs = _check_x(x, n_in)
    t = xs.shape[1]
    plan = plan_groups(enc)
    wpad = -(-width // SUBGROUP) * SUBGROUP
    nsub = wpad // SUBGROUP

    # activations in padded group-slot order, and the ΣA generator (per sub-group, per group)
    pos = np.full((gpc, wpad), -1, dtype=np.int64)
    pos[:, :width] = input_positions(lay)
    valid = pos >= 0
    xg = np.where(valid[..., None], xs[np.maximum(pos, 0)], 0)  # [G, wpad, T]
    sum_sub = xg.reshape(gpc, nsub, SUBGROUP, t).sum(axis=2)  # [G, nsub, T]
    sum_group = sum_sub.sum(axis=1)  # [G, T]
    max_x = max(int(np.abs(xs).max()), 1)

    # per original group: stream position of its columns, stored planes, MSB plane, constant
    n_groups = lay.n_groups
    inv = np.empty(n_groups, dtype=np.int64)
    inv[plan.order] = np.arange(n_groups)
    offsets = plan.offsets[inv]
    planes = plan.planes[inv].astype(np.int64)
    msb = plan.msb_plane[inv].astype(np.int64)
    lengths = plan.lengths.astype(np.int64)
    n_cols = np.bitwise_count(planes.astype(np.uint16)).astype(np.int64)

    out = np.zeros((k_all, t), dtype=np.int64)
    eff = np.zeros((n_groups, b), dtype=np.int32)
    stored = np.zeros((n_groups, b), dtype=bool)
    inverted = 0
    e_buf = np.empty((n_groups, wpad), dtype=np.float32)
    p_buf = np.empty((n_groups, nsub), dtype=np.float32)
    eff_j = np.empty(n_groups, dtype=np.int32)
    rank = np.zeros(n_groups, dtype=np.int64)  # stored columns seen so far per group
    plane_of = np.full((n_groups, b), -1, dtype=np.int64)
    for p in range(b):  # the j-th stored column of each group reads plane plane_of[:, j]
        has = ((planes >> p) & 1).astype(bool)
        plane_of[has, rank[has]] = p
        rank += has
    for j in range(int(n_cols.max())):
        pj = plane_of[:, j]
        live = pj >= 0
        expo = np.where(live, b - 1 - pj, 0)  # column significance 2**expo
        e_min = int(expo[live].min())
        rel = expo - e_min
        sign = np.where(pj == msb, -1.0, 1.0)  # the MSB column is negated
        coef = np.where(live, sign * np.exp2(rel), 0.0)
        exact32 = (gpc * wpad + 1) * max_x * (1 << int(rel.max())) < _FLOAT32_EXACT
        ftype = np.float32 if exact32 else np.float64
        _column_coefficients(enc.payload, offsets + j * lengths, lengths.astype(np.int32), pj, coef, wpad,
                             e_buf, p_buf, eff_j)
        e_mat = e_buf.reshape(k_all, gpc * wpad).astype(ftype, copy=False)
        p_mat = p_buf.reshape(k_all, gpc * nsub).astype(ftype, copy=False)
        col = e_mat @ xg.reshape(gpc * wpad, t).astype(ftype)  # adder trees: Σ over effectual bits
        col += p_mat @ sum_sub.reshape(gpc * nsub, t).astype(ftype)  # inverted: ΣA_sub - partial
        out += np.rint(col).astype(np.int64) << e_min
        rows = np.flatnonzero(live)
        eff[rows, pj[live]] = eff_j[live]
        stored[rows, pj[live]] = True
        inverted += int((p_buf != 0).sum())
    # constant path ("BBS multiplier"): (pattern - c) x ΣA of the group
    add = plan.add[inv].astype(np.float64).reshape(k_all, gpc)
    out += np.rint(add @ sum_group.astype(np.float64)).astype(np.int64)
    return PEResult(output=out, effectual_bits=eff, stored_columns=stored, inverted_subgroup_columns=inverted)
