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
    """Least and greatest of ``vals[i, :length]`` (``int64``). Written so that LLVM vectorises the
    loop: ``int32`` ``min``/``max`` (AVX2 has no int64 min/max) over a row slice (indexing
    ``vals[i, j]`` from ``j = 1`` kept it scalar)."""
    row = vals[i, :length]
    mn = np.int32(row[0])
    mx = mn
    for j in range(row.shape[0]):
        v = np.int32(row[j])
        mn = min(mn, v)
        mx = max(mx, v)
    return np.int64(mn), np.int64(mx)


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
def free_columns_from_stats(mn: int, mx: int, codes_or: int, codes_and: int, bits: int,
                            cap: int) -> tuple[int, int]:
    """``(capped redundant columns, free columns)`` of a group in two's complement from its
    statistics: least and greatest value and the OR / AND of its ``bits``-bit codes
    (``value & (2**bits - 1)``). The one definition of the count (:func:`group_free_columns`,
    and kernels that know the statistics of their output without reading it again)."""
    r = redundancy_from_range(mn, mx, bits, cap)
    constant = ~(codes_or ^ codes_and)  # bit set where the column is all-0 or all-1
    t = 0
    limit = bits - 1 - r  # the (new) sign column is always stored
    while t < limit and (constant >> t) & 1:
        t += 1
    return r, r + t


@njit(cache=True, inline="always")
def group_free_columns(vals: np.ndarray, i: int, length: int, off: int, bits: int,
                       cap: int) -> tuple[int, int]:
    """``(capped redundant columns, free columns)`` in two's complement of one group's values
    ``vals[i, :length] + off`` (:func:`free_columns_from_stats` of them)."""
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
    return free_columns_from_stats(mn, mx, acc_or, acc_and, bits, cap)


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


@njit(cache=True, parallel=True)
def int16_copy_min_max(src: np.ndarray, out: np.ndarray, chunk: int) -> tuple[int, int]:
    """``(least, greatest)`` of the flat integer array ``src``, and ``out[:] = src`` as ``int16`` when
    ``out`` has ``src``'s size (an empty ``out`` skips the copy). One parallel, vectorised pass in
    chunks of ``chunk`` elements: input validation and the ``int16`` conversion of large tensors
    read the weights once, on every core (``bitvert.core.validation.as_int_array``)."""
    n = src.shape[0]
    copy = out.shape[0] == n
    n_chunks = (n + chunk - 1) // chunk
    mins = np.empty(n_chunks, dtype=np.int64)
    maxs = np.empty(n_chunks, dtype=np.int64)
    for ch in prange(n_chunks):
        part = src[ch * chunk: min(n, ch * chunk + chunk)]
        mn = part[0]
        mx = mn
        if copy:
            dst = out[ch * chunk: min(n, ch * chunk + chunk)]
            for j in range(part.shape[0]):
                v = part[j]
                mn = min(mn, v)
                mx = max(mx, v)
                dst[j] = v
        else:
            for j in range(part.shape[0]):
                v = part[j]
                mn = min(mn, v)
                mx = max(mx, v)
        mins[ch] = mn
        maxs[ch] = mx
    return mins.min(), maxs.max()
