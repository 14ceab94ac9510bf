"""Numba kernels of the codec: the encoder's group scan and the one byte-layout walk.

The byte layout of a tensor (docs/format.md) is described once, by three kernels shared by
the encoder and the decoder:

* :func:`walk_kernel` -- which group is stored where: stream order (chunks in order, each
  stored channel's groups in order), each group's stored width and which groups own a
  metadata entry (entries follow stream order);
* :func:`metadata_kernel` -- the encoder's only own step: it fills the metadata entries of
  the groups the walk marked;
* :func:`plan_kernel` -- from the walk and the metadata bytes, every stored group's plane
  mask, finishing constants and bit offset in the column stream.

The encoder runs walk -> metadata -> plan -> pack, the decoder walk -> plan -> unpack, so the
plane masks and offsets the encoder packs with are, by construction, the ones the decoder reads.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from bitvert.codec.layout import CONSTANT_FIELD_BITS, REDUNDANT_FIELD_MAX

__all__ = [
    "scan_groups", "walk_kernel", "metadata_kernel", "plan_kernel", "copy_bits_kernel",
    "MODE_RAW", "MODE_OFFSET", "MODE_SIGN_MAGNITUDE",
]

MODE_RAW = 0
"""Two's complement code of the weight itself."""
MODE_OFFSET = 1
"""Two's complement code of ``weight + c`` (zero-point shifting)."""
MODE_SIGN_MAGNITUDE = 2
"""Sign-magnitude code of the weight (BitWave)."""


@njit(cache=True, parallel=True)
def _scan(values, lengths, constant, mode, bits, codes, redundant, trail_const, trail_zero, first, mag_or,
          bad):  # pragma: no cover - jit
    lo = -(1 << (bits - 1))
    hi = (1 << (bits - 1)) - 1
    full = (1 << bits) - 1
    sign = 1 << (bits - 1)
    for g in prange(values.shape[0]):
        n = lengths[g]
        md = mode[g]
        mn = np.int32(1 << 20)
        mx = np.int32(-(1 << 20))
        x_or = np.int32(0)
        z_or = np.int32(0)
        m_or = np.int32(0)
        b = -1
        if md == MODE_SIGN_MAGNITUDE:
            v0 = np.int32(values[g, 0])
            c0 = (-v0 | sign) if v0 < 0 else v0
            for i in range(n):
                v = np.int32(values[g, i])
                mn = min(mn, v)
                mx = max(mx, v)
                code = (-v | sign) if v < 0 else v
                m_or |= code & (sign - 1)
                x_or |= code ^ c0
                z_or |= code
                codes[g, i] = code & full
            lo_ok = lo + 1
        else:
            c = np.int32(constant[g]) if md == MODE_OFFSET else np.int32(0)
            c0 = (np.int32(values[g, 0]) + c) & full
            for i in range(n):
                v = np.int32(values[g, i]) + c
                mn = min(mn, v)
                mx = max(mx, v)
                code = v & full
                x_or |= code ^ c0
                z_or |= code
                codes[g, i] = code
            lo_ok = lo
        if mn < lo_ok or mx > hi:
            c = np.int32(constant[g]) if md == MODE_OFFSET else np.int32(0)
            for i in range(n):
                v = np.int32(values[g, i]) + c
                if v < lo_ok or v > hi:
                    b = i
        r = 0
        for k in range(bits - 1, 0, -1):
            if mn >= -(1 << (bits - 1 - k)) and mx <= (1 << (bits - 1 - k)) - 1:
                r = k
                break
        tc = 0
        while tc < bits and (x_or >> tc) & 1 == 0:
            tc += 1
        tz = 0
        while tz < bits and (z_or >> tz) & 1 == 0:
            tz += 1
        redundant[g] = r
        trail_const[g] = tc
        trail_zero[g] = tz
        first[g] = c0
        mag_or[g] = m_or
        bad[g] = b


def scan_groups(
    values: np.ndarray, lengths: np.ndarray, constant: np.ndarray, mode: np.ndarray, bits: int
) -> dict[str, np.ndarray]:
    """Code words and per-group column statistics in one pass.

    Args:
        values: ``int16[n_groups, width]`` weights (phantom entries ignored).
        lengths: ``int32[n_groups]`` real weights per group.
        constant: ``int16[n_groups]`` zero-point offsets (used where ``mode == MODE_OFFSET``).
        mode: ``uint8[n_groups]``, one of the ``MODE_*`` constants per group.
        bits: code width.

    Returns:
        ``codes`` (``uint8[n_groups, width]``), per group ``redundant`` (uncapped sign-extension
        columns, two's complement modes), ``trail_const`` / ``trail_zero`` (trailing columns that
        are constant / all-zero over the group's codes), ``first`` (code of the first weight),
        ``mag_or`` (OR of the magnitudes, sign-magnitude mode) and ``bad`` (index of the last
        weight whose value has no code, else -1).
    """
    n, width = values.shape
    codes = np.empty((n, width), dtype=np.uint8)  # phantom entries are never read
    out = {
        "codes": codes,
        "redundant": np.empty(n, np.int32),
        "trail_const": np.empty(n, np.int32),
        "trail_zero": np.empty(n, np.int32),
        "first": np.empty(n, np.int32),
        "mag_or": np.empty(n, np.int32),
        "bad": np.empty(n, np.int32),
    }
    _scan(np.ascontiguousarray(values, dtype=np.int16), np.ascontiguousarray(lengths, dtype=np.int32),
          np.ascontiguousarray(constant, dtype=np.int16), np.ascontiguousarray(mode, dtype=np.uint8), int(bits),
          codes, out["redundant"], out["trail_const"], out["trail_zero"], out["first"], out["mag_or"], out["bad"])
    return out


PLAN_OK, PLAN_SHORT_METADATA, PLAN_REDUNDANT, PLAN_PATTERN, PLAN_BITWAVE_WIDTH = 0, 1, 2, 3, 4
LAYOUT_RA, LAYOUT_ZP, LAYOUT_BITWAVE, LAYOUT_PLAIN = 0, 1, 2, 3

_FIELD_MASK = (1 << CONSTANT_FIELD_BITS) - 1
_FIELD_SIGN = 1 << (CONSTANT_FIELD_BITS - 1)


@njit(cache=True)
def walk_kernel(perm, gpc, prunable, ch_cols, ch_meta, bits, order, columns, has_meta):  # pragma: no cover - jit
    """Where every group is stored: the one walk of the chunk table.

    ``perm`` is the original index of each stored channel, ``ch_cols`` / ``ch_meta`` the
    columns and metadata flag of its chunk. Per stored group ``s`` it writes ``order[s]`` (the
    original group index), ``has_meta[s]`` (the group owns the next metadata entry: a
    prunable group of a metadata channel) and ``columns[s]`` (the chunk's columns; ``bits`` for
    an unprunable group of a metadata channel, stored whole). Returns the number of metadata
    groups.
    """
    s = 0
    m = 0
    for ci in range(perm.shape[0]):
        row0 = perm[ci] * gpc
        cols = ch_cols[ci]
        meta = ch_meta[ci]
        for j in range(gpc):
            row = row0 + j
            order[s] = row
            hm = meta and prunable[row]
            has_meta[s] = hm
            columns[s] = cols if hm or not meta else bits
            if hm:
                m += 1
            s += 1
    return m


@njit(cache=True)
def metadata_kernel(order, columns, has_meta, redundant, first, constant, mag_or, bits, layout,
                    md_out):  # pragma: no cover - jit
    """Encoder: fill the metadata entries of the groups :func:`walk_kernel` marked, in stream order.

    BBS layouts write one byte ``r << 6 | field`` per group (``r = min(R, 3, b - S)``; field =
    the low-column pattern for rounded averaging, ``c & 63`` for zero-point shifting). BitWave
    sets, in ``md_out`` (zero-initialised), the bit of every all-zero magnitude plane of the
    group's ``b-1``-bit mask.
    """
    m = 0
    for s in range(order.shape[0]):
        if not has_meta[s]:
            continue
        row = order[s]
        cols = np.int64(columns[s])
        if layout == LAYOUT_RA or layout == LAYOUT_ZP:
            r = min(np.int64(redundant[row]), REDUNDANT_FIELD_MAX, bits - cols)
            if layout == LAYOUT_RA:
                fld = first[row] & ((1 << (bits - cols - r)) - 1)
            else:
                fld = constant[row] & _FIELD_MASK
            md_out[m] = (r << CONSTANT_FIELD_BITS) | fld
        else:
            mo = mag_or[row]
            for p in range(1, bits):
                if (mo >> (bits - 1 - p)) & 1 == 0:
                    q = m * (bits - 1) + p - 1
                    md_out[q >> 3] |= 1 << (7 - (q & 7))
        m += 1


@njit(cache=True)
def plan_kernel(order, lengths, columns, has_meta, md, bits, layout, planes, sign_pos, add, msb,
                offsets):  # pragma: no cover - jit
    """Stored planes, finishing constants and bit offsets of the groups of :func:`walk_kernel`.

    A metadata group stores the planes its entry names (BBS: ``columns`` planes below ``r``
    redundant ones; BitWave: the sign and the magnitude planes not masked as zero); any other
    group stores its top ``columns`` planes. Groups follow one another in stream order.
    Returns ``(status, group, a, b, total_bits, metadata_groups)``; a non-zero status
    (``PLAN_*``) names the first inconsistent metadata group and two values for the message.
    """
    pos = 0
    m = 0
    n_md = md.shape[0]
    for s in range(order.shape[0]):
        cols = np.int64(columns[s])
        if has_meta[s]:
            if layout == LAYOUT_RA or layout == LAYOUT_ZP:
                if m >= n_md:
                    return PLAN_SHORT_METADATA, m, 0, 0, 0, m
                byte = np.int64(md[m])
                r = byte >> CONSTANT_FIELD_BITS
                fld = byte & _FIELD_MASK
                k = bits - cols - r
                if k < 0:
                    return PLAN_REDUNDANT, m, r, cols, 0, m
                if layout == LAYOUT_RA:
                    if fld >= (1 << k):
                        return PLAN_PATTERN, m, fld, k, 0, m
                    a = fld
                else:
                    a = -(fld - (_FIELD_MASK + 1)) if fld >= _FIELD_SIGN else -fld
                planes[s] = ((1 << cols) - 1) << r
                sign_pos[s] = bits - 1 - r
                add[s] = a
                msb[s] = r
                nc = cols
            else:
                mask = 1
                nc = 1
                for p in range(1, bits):
                    q = m * (bits - 1) + p - 1
                    if (q >> 3) >= n_md:
                        return PLAN_SHORT_METADATA, m, 0, 0, 0, m
                    if (md[q >> 3] >> (7 - (q & 7))) & 1 == 0:
                        mask |= 1 << p
                        nc += 1
                if nc > cols:
                    return PLAN_BITWAVE_WIDTH, m, nc, cols, 0, m
                planes[s] = mask
                sign_pos[s] = -1
                add[s] = 0
                msb[s] = 0
            m += 1
        else:
            planes[s] = ((1 << cols) - 1) << (bits - cols)
            sign_pos[s] = cols - 1
            add[s] = 0
            msb[s] = bits - cols
            nc = cols
        offsets[s] = pos
        pos += lengths[order[s]] * nc
    return PLAN_OK, 0, 0, 0, pos, m


@njit(cache=True)
def copy_bits_kernel(src, src_starts, lengths, dst, dst_starts):  # pragma: no cover - jit
    """Copy bit runs between MSB-first bit streams (bit ``i`` = bit ``7 - i % 8`` of byte ``i // 8``).

    Run ``k`` copies ``lengths[k]`` bits starting at bit ``src_starts[k]`` of ``src`` to bit ``dst_starts[k]``
    of ``dst``. ``dst`` must be zero where the runs go and the runs must not overlap: a run's partial first
    and last bytes are OR-ed in, its whole bytes are written a byte at a time (shifted from two source bytes).
    """
    for k in range(lengths.shape[0]):
        s = np.int64(src_starts[k])
        d = np.int64(dst_starts[k])
        n = np.int64(lengths[k])
        while n > 0 and (d & 7) != 0:
            if (src[s >> 3] >> (7 - (s & 7))) & 1:
                dst[d >> 3] |= np.uint8(1 << (7 - (d & 7)))
            s += 1
            d += 1
            n -= 1
        nbytes = n >> 3
        sb = s >> 3
        db = d >> 3
        sh = s & 7
        if sh == 0:
            for i in range(nbytes):
                dst[db + i] = src[sb + i]
        else:
            for i in range(nbytes):
                dst[db + i] = np.uint8(((np.int64(src[sb + i]) << sh) | (np.int64(src[sb + i + 1]) >> (8 - sh)))
                                       & 0xFF)
        s += nbytes << 3
        d += nbytes << 3
        n -= nbytes << 3
        while n > 0:
            if (src[s >> 3] >> (7 - (s & 7))) & 1:
                dst[d >> 3] |= np.uint8(1 << (7 - (d & 7)))
            s += 1
            d += 1
            n -= 1
