"""BBS analysis: ones, effectual bits, redundant and free columns, sparsity statistics.

Definitions (BBS.md §3-§4), for a group column with ``n1`` ones among ``L`` real bits:

* *effectual bits* (software count) = ``min(n1, L - n1)``: BBS computes a column
  through whichever of its 1s or 0s is in the minority.
* *hardware polarity* (BitVert scheduler): per 8-weight sub-group column, invert
  (compute through the zeros) iff ``2*n1 > L``; a tie is computed through the ones.
  Every sub-group column then has at most ``L//2`` effectual bits.
* *redundant columns*: planes ``1..r`` equal to plane 0 (sign extension) for every
  weight, i.e. all values lie in ``[-2**(b-1-r), 2**(b-1-r) - 1]``; capped (2-bit field).
* *free columns* = redundant columns + trailing constant (all-0 or all-1) columns
  below them. The column that becomes the sign after dropping the redundant ones
  is always stored, so at most ``b - 1`` columns are free.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from bitvert.core import _kernels
from bitvert.core.bitplanes import NumberFormat, zero_magnitude_planes
from bitvert.core.grouping import LayerKind, RemainderPolicy, group_weights
from bitvert.core.validation import check_bits, check_positive_int
from bitvert.errors import InputError

__all__ = [
    "redundant_columns",
    "free_columns",
    "column_ones",
    "effectual_bits",
    "zero_magnitude_columns",
    "SparsityStats",
    "sparsity_stats",
]


_NO_OFFSETS = np.zeros(0, dtype=np.int16)


def _check_groups(values: np.ndarray, lengths: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    values = np.asarray(values)
    if values.ndim != 2 or values.shape[0] == 0 or values.shape[1] == 0:
        raise InputError(f"values must be a non-empty [n_groups, group_size] array, got shape {values.shape}")
    if values.dtype.kind not in "iu":
        raise InputError(f"values must hold integers, got dtype {values.dtype}")
    if lengths is None:
        lengths = np.full(values.shape[0], values.shape[1], dtype=np.int32)
    lengths = np.ascontiguousarray(lengths, dtype=np.int32)
    if lengths.shape != (values.shape[0],):
        raise InputError(f"lengths must have shape ({values.shape[0]},), got {lengths.shape}")
    if lengths.min() < 1 or lengths.max() > values.shape[1]:
        raise InputError(f"lengths must lie in [1, {values.shape[1]}]")
    return np.ascontiguousarray(values), lengths


def _check_cap(cap: int, bits: int) -> int:
    if isinstance(cap, bool) or not isinstance(cap, (int, np.integer)) or not 0 <= int(cap) <= bits - 1:
        raise InputError(f"cap must be an integer in [0, bits-1={bits - 1}], got {cap!r}")
    return int(cap)


def redundant_columns(values: Any, lengths: Any = None, bits: int = 8, cap: int = 3) -> np.ndarray:
    """Sign-extension columns per group (two's complement), at most ``cap``: ``uint8[n_groups]``.

    >>> int(redundant_columns(np.array([[13, -57, 20, -11]]))[0])  # BBS paper Fig. 4
    1
    """
    bits = check_bits(bits)
    values, lengths = _check_groups(values, lengths)
    return _kernels.free_columns_kernel(values, lengths, bits, _check_cap(cap, bits), _NO_OFFSETS)[0]


def free_columns(values: Any, lengths: Any = None, bits: int = 8, cap: int = 3,
                 offsets: Any = None) -> np.ndarray:
    """Free columns per group (two's complement): ``min(redundant, cap)`` + trailing constant columns.

    ``offsets`` (one integer per group) counts the columns of ``values + offsets[:, None]``
    without building that array (zero-point shifting stores pruned weights plus the constant).

    >>> free_columns(np.array([[13, -59, 21, -11]])).tolist()  # Fig. 4 after rounded averaging
    [4]
    >>> free_columns(np.array([[82, -22, 2, -6]]), offsets=[-26]).tolist()  # Fig. 5: stores 56 -48 -24 -32
    [4]
    """
    bits = check_bits(bits)
    values, lengths = _check_groups(values, lengths)
    if offsets is None:
        offsets = _NO_OFFSETS
    else:
        offsets = np.ascontiguousarray(offsets, dtype=np.int16)
        if offsets.shape != (values.shape[0],):
            raise InputError(
                f"offsets must have shape ({values.shape[0]},) (one per group), got {offsets.shape}")
    return _kernels.free_columns_kernel(values, lengths, bits, _check_cap(cap, bits), offsets)[1]


def _valid_mask(values: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    return np.arange(values.shape[1])[None, :] < lengths[:, None]


def column_ones(
    values: Any, lengths: Any = None, bits: int = 8, fmt: NumberFormat | str = NumberFormat.TWOS_COMPLEMENT
) -> np.ndarray:
    """Number of 1 bits in each group column: ``int32[n_groups, bits]``, plane 0 (MSB/sign) first."""
    bits = check_bits(bits)
    fmt = NumberFormat(fmt)
    values, lengths = _check_groups(values, lengths)
    v = values.astype(np.int32)
    mask = _valid_mask(values, lengths)
    if fmt is NumberFormat.TWOS_COMPLEMENT:
        code = v & ((1 << bits) - 1)
    else:
        if (v[mask] == -(1 << (bits - 1))).any():
            raise InputError(f"values hold {-(1 << (bits - 1))}, which has no sign-magnitude code")
        code = np.abs(v) | ((v < 0).astype(np.int32) << (bits - 1))
    code = np.where(mask, code, 0)
    out = np.empty((values.shape[0], bits), dtype=np.int32)
    for k in range(bits):  # one vectorized pass per bit plane
        out[:, k] = ((code >> (bits - 1 - k)) & 1).sum(axis=1)
    return out


def effectual_bits(
    values: Any, lengths: Any = None, bits: int = 8, subgroup: int | None = 8
) -> np.ndarray:
    """Effectual bits per group column under BBS (two's complement): ``int32[n_groups, bits]``.

    Args:
        subgroup: ``None`` counts ``min(ones, zeros)`` over the whole group (the
            software definition). An integer applies the hardware polarity rule per
            sub-group of that many weights (BitVert: 8): invert iff ``2*ones > L``.

    Worked example (BBS.md §4): column ``[1,1,0,1,1,1,0,1]`` has six ones, so the
    scheduler inverts it and only the two zeros cost an addition.
    """
    bits = check_bits(bits)
    values, lengths = _check_groups(values, lengths)
    if subgroup is None or subgroup >= values.shape[1]:
        ones = column_ones(values, lengths, bits)
        return np.minimum(ones, lengths[:, None] - ones).astype(np.int32)
    subgroup = check_positive_int(subgroup, "subgroup", 1)
    n, width = values.shape
    n_sub = -(-width // subgroup)
    padded = np.zeros((n, n_sub * subgroup), dtype=values.dtype)
    padded[:, :width] = values
    sub_vals = padded.reshape(n * n_sub, subgroup)
    starts = np.arange(n_sub) * subgroup
    sub_len = np.clip(lengths[:, None] - starts[None, :], 0, subgroup).reshape(-1)
    keep = sub_len > 0
    ones = np.zeros((n * n_sub, bits), dtype=np.int32)
    ones[keep] = column_ones(sub_vals[keep], sub_len[keep], bits)
    inverted = 2 * ones > sub_len[:, None]
    eff = np.where(inverted, sub_len[:, None] - ones, ones)
    return eff.reshape(n, n_sub, bits).sum(axis=1).astype(np.int32)


def zero_magnitude_columns(values: Any, lengths: Any = None, bits: int = 8) -> np.ndarray:
    """All-zero magnitude planes (planes 1..bits-1 in sign-magnitude) per group: ``uint8[n_groups]``."""
    bits = check_bits(bits)
    values, lengths = _check_groups(values, lengths)
    neg_min = -(1 << (bits - 1))
    if (values[_valid_mask(values, lengths)] <= neg_min).any():
        raise InputError(f"values hold {neg_min} (or less), which has no {bits}-bit sign-magnitude code")
    return zero_magnitude_planes(_kernels.magnitude_or_kernel(values, lengths), bits).astype(np.uint8)


@dataclass(frozen=True)
class SparsityStats:
    """Bit-level statistics of one weight tensor (fractions in [0, 1])."""

    weights: int
    groups: int
    value_sparsity: float
    """Fraction of weights equal to zero."""
    zero_bit_sparsity_twos: float
    """Fraction of 0 bits in two's complement (what zero-skipping bit-serial designs exploit)."""
    zero_bit_sparsity_sign_magnitude: float
    """Fraction of 0 bits in sign-magnitude."""
    bbs_sparsity: float
    """Fraction of skippable bits when each group column goes through its minority bit value."""
    bbs_sparsity_hardware: float
    """Same with BitVert's per-8-weight sub-group polarity rule."""
    free_column_fraction: float
    """Fraction of group columns that are free (redundant or constant), redundant count capped at 3."""

    def to_dict(self) -> dict[str, float | int]:
        return asdict(self)


def sparsity_stats(
    weights: Any,
    kind: LayerKind | str | None = None,
    group_size: int = 32,
    bits: int = 8,
    remainder: RemainderPolicy | str = RemainderPolicy.SHORT,
    redundant_cap: int = 3,
) -> SparsityStats:
    """Value, zero-bit and BBS sparsity of an integer weight tensor grouped as the hardware sees it."""
    bits = check_bits(bits)
    gw = group_weights(weights, kind, group_size, remainder, bits=bits)
    vals, lengths = gw.values, gw.lengths
    total_bits = int(lengths.sum()) * bits
    mask = _valid_mask(vals, lengths)
    ones_tc = column_ones(vals, lengths, bits).sum()
    sm_vals = np.where(vals == -(1 << (bits - 1)), vals + 1, vals)  # -128 -> -127 for the SM count only
    ones_sm = column_ones(sm_vals, lengths, bits, NumberFormat.SIGN_MAGNITUDE).sum()
    eff_sw = effectual_bits(vals, lengths, bits, subgroup=None).sum()
    eff_hw = effectual_bits(vals, lengths, bits, subgroup=8).sum()
    free = free_columns(vals, lengths, bits, cap=min(redundant_cap, bits - 1))
    return SparsityStats(
        weights=int(lengths.sum()),
        groups=int(vals.shape[0]),
        value_sparsity=float(((vals == 0) & mask).sum() / lengths.sum()),
        zero_bit_sparsity_twos=1.0 - float(ones_tc) / total_bits,
        zero_bit_sparsity_sign_magnitude=1.0 - float(ones_sm) / total_bits,
        bbs_sparsity=1.0 - float(eff_sw) / total_bits,
        bbs_sparsity_hardware=1.0 - float(eff_hw) / total_bits,
        free_column_fraction=float(free.astype(np.int64).sum()) / (vals.shape[0] * bits),
    )
