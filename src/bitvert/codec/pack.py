"""Bit-column packing: integer groups <-> a tight MSB-first bit stream of stored columns.

Stream layout (docs/format.md): groups one after another in *stored order*; inside a group
its stored columns one after another, most significant plane first; inside a column the
group's real weights in order (phantom padding is never stored). Bit ``i`` of the stream is
bit ``7 - i % 8`` of byte ``i // 8`` (``np.packbits`` order). Which planes a group stores is
a per-group bit mask (bit ``p`` set = plane ``p`` stored; plane 0 is the MSB / sign).

Byte-aligned groups whose length is a multiple of 8 take a fast path that moves 8 weights
at a time through a 64-bit word (an 8x8 bit transpose by one multiplication); every other
group goes bit by bit. Both paths produce the same bytes.
"""

from __future__ import annotations

import sys

import numpy as np
from numba import njit, prange

from bitvert.core.bitplanes import plane_count

__all__ = ["pack_columns", "unpack_columns", "stream_offsets", "plane_count"]

_LITTLE = sys.byteorder == "little"


@njit(cache=True)
def _pack_group(codes, codes64, fast_ok, row, n, pos, mask, bits, out):  # pragma: no cover - jit
    lanes = np.uint64(0x0101010101010101)
    gather = np.uint64(0x8040201008040201)  # 8x8 bit transpose: lane i -> bit 7-i of the top byte
    j = 0
    if fast_ok and (pos & 7) == 0 and (n & 7) == 0:
        for p in range(bits):
            if (mask >> p) & 1 == 0:
                continue
            shift = np.uint64(bits - 1 - p)
            base = (pos + j * n) >> 3
            for blk in range(n >> 3):
                m = (codes64[row, blk] >> shift) & lanes
                out[base + blk] = np.uint8((m * gather) >> np.uint64(56))
            j += 1
    else:
        for p in range(bits):
            if (mask >> p) & 1 == 0:
                continue
            shift = bits - 1 - p
            start = pos + j * n
            for i in range(n):
                if (codes[row, i] >> shift) & 1:
                    q = start + i
                    out[q >> 3] |= np.uint8(1 << (7 - (q & 7)))
            j += 1


@njit(cache=True)
def _pack_serial(codes, codes64, fast_ok, order, lengths, planes, offsets, bits, out):  # pragma: no cover - jit
    for s in range(order.shape[0]):
        row = order[s]
        _pack_group(codes, codes64, fast_ok, row, lengths[row], offsets[s], planes[s], bits, out)


@njit(cache=True, parallel=True)
def _pack_parallel(codes, codes64, order, lengths, planes, offsets, bits, out):  # pragma: no cover - jit
    # every group starts on a byte and holds a multiple of 8 weights: groups own disjoint bytes
    for s in prange(order.shape[0]):
        row = order[s]
        _pack_group(codes, codes64, True, row, lengths[row], offsets[s], planes[s], bits, out)


def _spread16_table() -> np.ndarray:
    """``table[byte, h]``: 4 int16 lanes (a uint64) holding bits ``7-4h .. 4-4h`` of ``byte``."""
    b = np.arange(256, dtype=np.uint64)
    out = np.zeros((256, 2), dtype=np.uint64)
    for h in range(2):
        for i in range(4):
            out[:, h] |= ((b >> np.uint64(7 - 4 * h - i)) & np.uint64(1)) << np.uint64(16 * i)
    return out


_SPREAD16 = _spread16_table()


@njit(cache=True)
def _finish(code, bits, sb, a):  # pragma: no cover - jit
    if sb < 0:  # sign-magnitude
        v = code & ((1 << (bits - 1)) - 1)
        if (code >> (bits - 1)) & 1:
            v = -v
        return v
    return code - (((code >> sb) & 1) << (sb + 1)) + a


@njit(cache=True, parallel=True)
def _unpack_kernel(stream, spread16, out64, fast_ok, order, lengths, planes, offsets, bits, sign_pos, add,
                   out):  # pragma: no cover - jit
    high = np.uint64(0x8000800080008000)
    low = np.uint64(0x7FFF7FFF7FFF7FFF)
    for s in prange(order.shape[0]):
        row = order[s]
        n = lengths[row]
        pos = offsets[s]
        mask = planes[s]
        sb = sign_pos[s]
        a = add[s]
        p0 = 0
        while p0 < bits and (mask >> p0) & 1 == 0:
            p0 += 1
        nc = 0
        while p0 + nc < bits and (mask >> (p0 + nc)) & 1:
            nc += 1
        contiguous = mask == ((1 << nc) - 1) << p0
        if fast_ok and contiguous and sb >= 0 and (pos & 7) == 0 and (n & 7) == 0:
            # 8 weights per step as two words of four 16-bit lanes (SWAR):
            # sign-extend from bit sb, then add a, lane-wise modulo 2**16.
            m = np.uint64(1 << sb) * np.uint64(0x0001000100010001)
            av = np.uint64(a & 0xFFFF) * np.uint64(0x0001000100010001)
            base = pos >> 3
            step = n >> 3
            top = bits - 1 - p0
            for blk in range(step):
                w0 = np.uint64(0)
                w1 = np.uint64(0)
                for j in range(nc):
                    byte = stream[base + j * step + blk]
                    sh = np.uint64(top - j)
                    w0 |= spread16[byte, 0] << sh
                    w1 |= spread16[byte, 1] << sh
                for h in range(2):
                    t = (w0 if h == 0 else w1) ^ m
                    v = ((t | high) - m) ^ high  # t - m per lane (t < 2**15)
                    r = ((v & low) + (av & low)) ^ ((v ^ av) & high)  # v + a per lane
                    out64[row, blk * 2 + h] = r
        else:
            for i in range(n):
                code = 0
                j = 0
                for p in range(bits):
                    if (mask >> p) & 1 == 0:
                        continue
                    q = pos + j * n + i
                    code |= ((stream[q >> 3] >> (7 - (q & 7))) & 1) << (bits - 1 - p)
                    j += 1
                out[row, i] = _finish(code, bits, sb, a)


def stream_offsets(lengths_in_order: np.ndarray, columns: np.ndarray) -> tuple[np.ndarray, int]:
    """Start bit of every stored group and the stream's total bit count.

    Args:
        lengths_in_order: real weights of each group, in stored order.
        columns: stored columns of each group, in stored order.
    """
    sizes = np.asarray(lengths_in_order, dtype=np.int64) * np.asarray(columns, dtype=np.int64)
    offsets = np.zeros(sizes.shape[0], dtype=np.int64)
    if sizes.shape[0] > 1:
        np.cumsum(sizes[:-1], out=offsets[1:])
    return offsets, int(sizes.sum())


def _as_codes64(codes: np.ndarray) -> tuple[np.ndarray, bool]:
    if _LITTLE and codes.shape[1] % 8 == 0:
        return codes.view(np.uint64), True
    return np.zeros((1, 1), dtype=np.uint64), False


def pack_columns(
    codes: np.ndarray,
    order: np.ndarray,
    lengths: np.ndarray,
    planes: np.ndarray,
    bits: int,
    offsets: np.ndarray | None = None,
    total_bits: int | None = None,
) -> np.ndarray:
    """Pack the stored planes of every group into one bit stream.

    Args:
        codes: ``uint8[n_groups, width]`` ``bits``-bit code words (two's complement
            ``v & (2**bits - 1)``, or sign-magnitude), C-contiguous, phantom entries ignored.
        order: ``int64[n_stored]`` row of ``codes`` of each stored group, in stream order.
        lengths: ``int32[n_groups]`` real weights per row of ``codes``.
        planes: ``uint16[n_stored]`` plane mask of each stored group (bit ``p`` = plane ``p``).
        bits: code width ``b`` (2..8).
        offsets, total_bits: start bit of every stored group and the stream length, when the
            caller already has them (else computed from ``lengths`` and ``planes``).

    Returns:
        ``uint8[ceil(total_bits / 8)]``; unused bits of the last byte are zero.
    """
    codes = np.ascontiguousarray(codes, dtype=np.uint8)
    order = np.ascontiguousarray(order, dtype=np.int64)
    lengths = np.ascontiguousarray(lengths, dtype=np.int32)
    planes = np.ascontiguousarray(planes, dtype=np.uint16)
    if offsets is None or total_bits is None:
        offsets, total = stream_offsets(lengths[order], plane_count(planes))
    else:
        offsets, total = np.ascontiguousarray(offsets, dtype=np.int64), int(total_bits)
    out = np.zeros(-(-total // 8), dtype=np.uint8)
    codes64, fast = _as_codes64(codes)
    if fast and not ((offsets & 7).any() or (lengths & 7).any()):
        _pack_parallel(codes, codes64, order, lengths, planes, offsets, int(bits), out)
    else:
        _pack_serial(codes, codes64, fast, order, lengths, planes, offsets, int(bits), out)
    return out


def unpack_columns(
    stream: np.ndarray,
    order: np.ndarray,
    lengths: np.ndarray,
    planes: np.ndarray,
    bits: int,
    width: int,
    sign_pos: np.ndarray,
    add: np.ndarray,
    offsets: np.ndarray | None = None,
    total_bits: int | None = None,
) -> np.ndarray:
    """Inverse of :func:`pack_columns`, finishing each weight to its integer value.

    Two's complement groups (``sign_pos[s] >= 0``): the code word holds the stored planes at
    their bit positions; the value is that word sign-extended from bit ``sign_pos[s]`` (the
    group's first stored plane) plus ``add[s]`` (the free-column pattern minus the
    zero-point offset). Sign-magnitude groups (``sign_pos[s] < 0``): ``±magnitude``.
    ``offsets`` / ``total_bits`` may be passed when already known (see :func:`pack_columns`).

    Returns:
        ``int16[n_groups, width]`` in row order (``order`` maps stream position -> row);
        phantom entries are zero.
    """
    stream = np.ascontiguousarray(stream, dtype=np.uint8)
    order = np.ascontiguousarray(order, dtype=np.int64)
    lengths = np.ascontiguousarray(lengths, dtype=np.int32)
    planes = np.ascontiguousarray(planes, dtype=np.uint16)
    sign_pos = np.ascontiguousarray(sign_pos, dtype=np.int32)
    add = np.ascontiguousarray(add, dtype=np.int32)
    if offsets is None:
        offsets, total = stream_offsets(lengths[order], plane_count(planes))
    else:
        offsets, total = np.ascontiguousarray(offsets, dtype=np.int64), int(total_bits or 0)
    if stream.shape[0] * 8 < total:
        raise ValueError(f"stream holds {stream.shape[0] * 8} bits, the groups need {total}")
    full = bool(lengths.shape[0] == 0 or lengths.min() == width)
    out = np.empty((lengths.shape[0], width), dtype=np.int16) if full else \
        np.zeros((lengths.shape[0], width), dtype=np.int16)
    fast = _LITTLE and width % 4 == 0
    out64 = out.view(np.uint64) if fast else np.zeros((1, 1), dtype=np.uint64)
    _unpack_kernel(stream, _SPREAD16, out64, fast, order, lengths, planes, offsets, int(bits), sign_pos, add, out)
    return out
