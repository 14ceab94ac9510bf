"""Stimulus for the RTL processing elements (``rtl/``, docs/rtl.md) from an encoded tensor.

A BitVert PE takes ``lanes`` weights per *pass* (16 in the paper): a metadata group of 32
weights is two passes that share one metadata byte. :func:`pe_passes` cuts every group of
an :class:`~bitvert.codec.EncodedTensor` into passes and gives, per pass, what the RTL
reads: the stored bit columns straight from the column stream (MSB column first, lane
``i`` = weight ``i`` of the pass), the number of stored columns, the 8-bit metadata byte
and whether the group has one, plus random activations and the dot product that
:func:`~bitvert.codec.pe_model.pe_matmul` computes for that pass.

The expected value is the functional model's own output, not a re-derivation: every pass
gets its own input vector that is zero outside the pass's inputs, so ``pe_matmul``'s
output column for that vector, at the pass's channel, is exactly the pass's dot product.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from bitvert.codec.layout import TensorLayout
from bitvert.codec.pe_model import input_positions, pe_matmul
from bitvert.codec.tensor import EncodedTensor, plan_groups
from bitvert.core.validation import check_positive_int
from bitvert.errors import InputError, UnsupportedLayerError

__all__ = ["PEPasses", "pe_passes"]


@dataclass(frozen=True)
class PEPasses:
    """Per-pass stimulus and expected results for a PE of ``lanes`` weights.

    Attributes:
        lanes: weights per pass.
        weight_bits: ``b``; ``columns`` has ``b`` column slots.
        zero_point: the tensor's constant is a zero-point offset (else a rounded-average
            pattern; meaningless without metadata).
        columns: ``uint8[P, b, lanes]`` bits of the pass's ``j``-th stored column (``j = 0`` the
            MSB column); 0 beyond ``n_columns`` and on phantom lanes.
        n_columns: ``uint8[P]`` stored columns of the pass's group.
        metadata: ``uint8[P]`` the group's metadata byte (``r << 6 | constant``), 0 without.
        has_metadata: ``bool[P]``.
        activations: ``int64[P, lanes]`` the pass's activations (0 on phantom lanes).
        expected: ``int64[P]`` the pass's dot product according to ``pe_matmul``.
        group: ``int64[P]`` the pass's group (layout order).
        channel: ``int64[P]`` its output channel (original order).
        weight_index: ``int64[P, lanes]`` flat index of each lane's weight in the weight
            tensor (its own layout), ``-1`` for phantom lanes.
    """

    lanes: int
    weight_bits: int
    zero_point: bool
    columns: np.ndarray
    n_columns: np.ndarray
    metadata: np.ndarray
    has_metadata: np.ndarray
    activations: np.ndarray
    expected: np.ndarray
    group: np.ndarray
    channel: np.ndarray
    weight_index: np.ndarray

    def __len__(self) -> int:
        return int(self.n_columns.shape[0])

    def take(self, index: np.ndarray) -> "PEPasses":
        """The passes at ``index`` (an integer array or a boolean mask)."""
        idx = np.asarray(index)
        return PEPasses(self.lanes, self.weight_bits, self.zero_point, self.columns[idx], self.n_columns[idx],
                        self.metadata[idx], self.has_metadata[idx], self.activations[idx], self.expected[idx],
                        self.group[idx], self.channel[idx], self.weight_index[idx])


def pe_passes(enc: EncodedTensor, lanes: int = 16, seed: int = 0, activation_bits: int = 8,
              groups: np.ndarray | None = None, activation_values: Sequence[int] | None = None) -> PEPasses:
    """Cut the groups of ``enc`` into PE passes with random activations and expected outputs.

    Args:
        enc: a tensor in a two's-complement layout (BBS or plain).
        lanes: weights per pass; must divide into the PE's sub-groups (8 in BitVert).
        seed: seed of the activations, uniform over the signed ``activation_bits`` range.
        activation_bits: activation width (2..16).
        groups: layout-order group indices to keep (default: all), in the order given.
        activation_values: draw the activations uniformly from these values instead of the
            whole signed range (corner cases such as ``[-128, 127]``).

    Returns:
        A :class:`PEPasses`, passes of each group in order (lanes ``0..lanes-1`` first).

    Raises:
        UnsupportedLayerError: a BitWave (sign-magnitude) tensor.
        InputError: bad ``lanes`` / ``activation_bits`` / ``groups``.
    """
    if not isinstance(enc, EncodedTensor):
        raise InputError(f"pe_passes expects an EncodedTensor, got {type(enc).__name__}")
    if enc.layout is TensorLayout.BITWAVE:
        raise UnsupportedLayerError("the BitVert PE computes two's complement columns; BitWave tensors are "
                                    "sign-magnitude")
    lanes = check_positive_int(lanes, "lanes")
    if not 2 <= activation_bits <= 16:
        raise InputError(f"activation_bits must lie in [2, 16], got {activation_bits}")
    lay = enc.group_layout
    b = int(enc.weight_bits)
    gpc, width, n_groups = lay.groups_per_channel, lay.width, lay.n_groups
    n_pass = -(-width // lanes)
    wpad = n_pass * lanes
    if groups is None:
        sel = np.arange(n_groups, dtype=np.int64)
    else:
        sel = np.asarray(groups, dtype=np.int64).ravel()
    if sel.size and (sel.min() < 0 or sel.max() >= n_groups):
        raise InputError(f"groups must index the tensor's {n_groups} groups, got values in "
                         f"[{sel.min()}, {sel.max()}]")

    # activations: one input vector per (group-in-channel, pass), zero outside that pass
    rng = np.random.default_rng(seed)
    lo, hi = -(1 << (activation_bits - 1)), 1 << (activation_bits - 1)
    pos = np.full((gpc, wpad), -1, dtype=np.int64)
    pos[:, :width] = input_positions(lay)
    if activation_values is None:
        acts = rng.integers(lo, hi, size=(gpc, wpad), dtype=np.int64)
    else:
        pool = np.asarray(activation_values, dtype=np.int64).ravel()
        if pool.size == 0 or pool.min() < lo or pool.max() >= hi:
            raise InputError(f"activation_values must be a non-empty list of {activation_bits}-bit signed "
                             f"integers in [{lo}, {hi - 1}]")
        acts = rng.choice(pool, size=(gpc, wpad))
    acts = np.where(pos >= 0, acts, 0)
    n_in = lay.n_weights // lay.n_channels
    x = np.zeros((n_in, gpc * n_pass), dtype=np.int64)
    vec = np.repeat(np.arange(gpc * n_pass).reshape(gpc, n_pass), lanes, axis=1)  # input vector of each slot
    live = pos >= 0
    x[pos[live], vec[live]] = acts[live]
    out = pe_matmul(enc, x).output.reshape(lay.n_channels, gpc, n_pass)

    # stored columns of the kept groups, read from the column stream
    plan = plan_groups(enc)
    inv = np.empty(n_groups, dtype=np.int64)
    inv[plan.order] = np.arange(n_groups)
    s = inv[sel]
    lengths = plan.lengths[sel].astype(np.int64)
    n_cols = np.bitwise_count(plan.planes[s].astype(np.uint16)).astype(np.int64)
    bits = np.unpackbits(enc.payload)
    j = np.arange(b, dtype=np.int64)[None, :, None]
    i = np.arange(wpad, dtype=np.int64)[None, None, :]
    ok = (j < n_cols[:, None, None]) & (i < lengths[:, None, None])
    at = plan.offsets[s][:, None, None] + j * lengths[:, None, None] + i
    cols = np.where(ok, bits[np.where(ok, at, 0)], 0).astype(np.uint8)  # [G, b, wpad]
    meta_idx = np.cumsum(plan.has_metadata) - 1
    has_meta = plan.has_metadata[s]
    md = np.where(has_meta, enc.metadata[np.maximum(meta_idx[s], 0)] if enc.metadata.size else 0, 0)

    # which weight each (group, slot) is, in the weight tensor's own layout
    slot_id = lay.ungroup(np.arange(n_groups * width, dtype=np.int64).reshape(n_groups, width)).ravel()
    widx = np.full(n_groups * width, -1, dtype=np.int64)
    widx[slot_id] = np.arange(slot_id.size, dtype=np.int64)
    pad = np.full((n_groups, wpad - width), -1, np.int64)
    widx = np.concatenate([widx.reshape(n_groups, width), pad], axis=1)

    ch = sel // gpc
    jg = sel % gpc
    p = sel.size * n_pass
    rep = np.repeat
    return PEPasses(
        lanes=lanes,
        weight_bits=b,
        zero_point=enc.layout is TensorLayout.BBS_ZERO_POINT,
        columns=cols.reshape(sel.size, b, n_pass, lanes).transpose(0, 2, 1, 3).reshape(p, b, lanes),
        n_columns=rep(n_cols, n_pass).astype(np.uint8),
        metadata=rep(md, n_pass).astype(np.uint8),
        has_metadata=rep(has_meta, n_pass),
        activations=acts[jg].reshape(p, lanes),
        expected=out[ch, jg].reshape(p),
        group=rep(sel, n_pass),
        channel=rep(ch, n_pass),
        weight_index=widx[sel].reshape(p, lanes),
    )
