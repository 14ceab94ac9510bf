"""Numba kernels of the encoder: one pass over the groups of a tensor."""

from __future__ import annotations

import numpy as np
from numba import njit, prange

__all__ = ["scan_groups", "MODE_RAW", "MODE_OFFSET", "MODE_SIGN_MAGNITUDE"]

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


@njit(cache=True)
def plan_kernel(perm, gpc, lengths, prunable, ch_cols, ch_meta, md, bits, layout, order, planes, sign_pos, add,
                msb, has_meta, offsets):  # pragma: no cover - jit
    """Walk the stored groups once: stream order, plane masks, finishing constants, bit offsets.

    ``ch_cols`` / ``ch_meta`` are per *stored* channel. Returns ``(status, group, a, b, total_bits,
    metadata_groups)``; a non-zero status (``PLAN_*``) names the first inconsistent metadata
    group and two values for the message.
    """
    s = 0
    pos = 0
    m = 0
    n_md = md.shape[0]
    for ci in range(perm.shape[0]):
        ch = perm[ci]
        cols = ch_cols[ci]
        meta = ch_meta[ci]
        for j in range(gpc):
            row = ch * gpc + j
            order[s] = row
            if meta and prunable[row]:
                has_meta[s] = True
                if layout == LAYOUT_RA or layout == LAYOUT_ZP:
                    if m >= n_md:
                        return PLAN_SHORT_METADATA, m, 0, 0, 0, m
                    byte = np.int64(md[m])
                    r = byte >> 6
                    fld = byte & 63
                    k = bits - cols - r
                    if k < 0:
                        return PLAN_REDUNDANT, m, r, cols, 0, m
                    if layout == LAYOUT_RA:
                        if fld >= (1 << k):
                            return PLAN_PATTERN, m, fld, k, 0, m
                        a = fld
                    else:
                        a = -(fld - 64) if fld > 31 else -fld
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
                has_meta[s] = False
                w = bits if meta else cols
                planes[s] = ((1 << w) - 1) << (bits - w)
                sign_pos[s] = w - 1
                add[s] = 0
                msb[s] = bits - w
                nc = w
            offsets[s] = pos
            pos += lengths[row] * nc
            s += 1
    return PLAN_OK, 0, 0, 0, pos, m


@njit(cache=True)
def assign_kernel(perm, gpc, lengths, prunable, ch_cols, ch_meta, redundant, first, constant, mag_or, bits, layout,
                  order, planes, offsets, md_out):  # pragma: no cover - jit
    """Encoder side of :func:`plan_kernel`: stream order, plane masks, metadata entries, bit offsets.

    Per metadata group: BBS layouts write ``r << 6 | field`` (``r = min(R, 3, b - S)``; field =
    the low-column pattern for rounded averaging, ``c & 63`` for zero-point shifting); BitWave
    sets the zero-column bits of the ``b-1``-bit mask in ``md_out`` (zero-initialised).
    Returns ``(total_bits, metadata_groups)``.
    """
    s = 0
    pos = 0
    m = 0
    for ci in range(perm.shape[0]):
        ch = perm[ci]
        cols = ch_cols[ci]
        meta = ch_meta[ci]
        for j in range(gpc):
            row = ch * gpc + j
            order[s] = row
            if meta and prunable[row]:
                if layout == LAYOUT_RA or layout == LAYOUT_ZP:
                    r = min(redundant[row], 3, bits - cols)
                    k = bits - cols - r
                    if layout == LAYOUT_RA:
                        fld = first[row] & ((1 << k) - 1)
                    else:
                        fld = constant[row] & 63
                    md_out[m] = (r << 6) | fld
                    planes[s] = ((1 << cols) - 1) << r
                    nc = cols
                else:
                    mask = 1
                    nc = 1
                    mo = mag_or[row]
                    for p in range(1, bits):
                        if (mo >> (bits - 1 - p)) & 1:
                            mask |= 1 << p
                            nc += 1
                        else:
                            q = m * (bits - 1) + p - 1
                            md_out[q >> 3] |= 1 << (7 - (q & 7))
                    planes[s] = mask
                m += 1
            else:
                w = bits if meta else cols
                planes[s] = ((1 << w) - 1) << (bits - w)
                nc = w
            offsets[s] = pos
            pos += lengths[row] * nc
            s += 1
    return pos, m
