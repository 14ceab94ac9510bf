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
