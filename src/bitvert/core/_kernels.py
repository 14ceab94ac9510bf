"""Compiled per-group kernels of the bit-level core (numba, parallel over groups).

Every kernel takes the padded group array ``vals[n_groups, width]`` and the
number of real weights per group ``lengths``; phantom entries beyond a group's
length are never read.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange


@njit(cache=True, inline="always")
def group_min_max(vals: np.ndarray, i: int, length: int) -> tuple[int, int]:
    mn = np.int64(vals[i, 0])
    mx = mn
    for j in range(1, length):
        v = np.int64(vals[i, j])
        if v < mn:
            mn = v
        if v > mx:
            mx = v
    return mn, mx


@njit(cache=True, inline="always")
def redundancy_from_range(mn: int, mx: int, bits: int, cap: int) -> int:
    """Number of sign-extension columns (max ``cap``) of values spanning ``[mn, mx]``."""
    r = 0
    while r < cap:
        lim = np.int64(1) << (bits - 2 - r)
        if mn >= -lim and mx <= lim - 1:
            r += 1
        else:
            break
    return r


@njit(cache=True, inline="always")
def group_free_columns(vals: np.ndarray, i: int, length: int, off: int, bits: int, cap: int) -> tuple[int, int]:
    """``(capped redundant columns, free columns)`` in two's complement of one group's values
    ``vals[i, :length] + off``: the one definition that :func:`free_columns_kernel` and the
    pruning kernels (which count their output's free columns in the same pass) share."""
    code_mask = (np.int32(1) << bits) - 1
    mn = np.int32(vals[i, 0]) + off
    mx = mn
    acc_or = np.int32(0)
    acc_and = code_mask
    for j in range(length):
        v = np.int32(vals[i, j]) + off
        mn = min(mn, v)
        mx = max(mx, v)
        c = v & code_mask
        acc_or |= c
        acc_and &= c
    r = redundancy_from_range(mn, mx, bits, cap)
    constant = ~(acc_or ^ acc_and)  # bit set where the column is all-0 or all-1
    t = 0
    limit = bits - 1 - r  # the (new) sign column is always stored
    while t < limit and (constant >> t) & 1:
        t += 1
    return r, r + t


@njit(cache=True, inline="always")
def zero_magnitude_plane_count(magnitude_or: int, bits: int) -> int:
    """All-zero magnitude planes of a group from the OR of its magnitudes (compiled twin of
    :func:`bitvert.core.bitplanes.zero_magnitude_planes`, for kernels that count in the same pass)."""
    count = 0
    for p in range(bits - 1):
        count += 1 - ((magnitude_or >> p) & 1)
    return count


@njit(cache=True, parallel=True)
def free_columns_kernel(vals: np.ndarray, lengths: np.ndarray, bits: int, cap: int,
                        offsets: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per group: (capped redundant columns, free columns) in two's complement of the values
    ``vals[i, j] + offsets[i]`` (``offsets``: one integer per group, or an empty array for none)."""
    n = vals.shape[0]
    red = np.empty(n, dtype=np.uint8)
    free = np.empty(n, dtype=np.uint8)
    shifted = offsets.shape[0] > 0
    for i in prange(n):
        off = np.int32(offsets[i]) if shifted else np.int32(0)
        r, f = group_free_columns(vals, i, lengths[i], off, bits, cap)
        red[i] = r
        free[i] = f
    return red, free


@njit(cache=True, parallel=True)
def magnitude_or_kernel(vals: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """Per group: bitwise OR of the magnitudes of its real weights."""
    n = vals.shape[0]
    out = np.zeros(n, dtype=np.int64)
    for i in prange(n):
        acc = np.int64(0)
        for j in range(lengths[i]):
            v = np.int64(vals[i, j])
            acc |= v if v >= 0 else -v
        out[i] = acc
    return out
