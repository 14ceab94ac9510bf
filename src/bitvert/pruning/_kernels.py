"""Compiled pruning kernels (numba, parallel over groups).

These are the fast paths of :mod:`bitvert.pruning.reference`; tests compare
the two on random inputs. Conventions: ``vals[n, width]`` int16 groups,
``lengths[n]`` real weights per group (phantom entries are never read and are
written as 0), ``active[n]`` False for groups that must stay unchanged.
Outputs: pruned values, a per-group count (redundant columns / leading zero
planes) and a per-group constant.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from bitvert.core._kernels import group_min_max, redundancy_from_range


@njit(cache=True, inline="always")
def _clip(x: int, lo: int, hi: int) -> int:
    return lo if x < lo else (hi if x > hi else x)


@njit(cache=True, parallel=True)
def rounded_avg(vals, lengths, active, bits, ncols, cap, half_even):  # type: ignore[no-untyped-def]
    n, width = vals.shape
    out = np.zeros((n, width), dtype=np.int16)
    red = np.zeros(n, dtype=np.uint8)
    const = np.zeros(n, dtype=np.int16)
    for i in prange(n):
        length = lengths[i]
        mn, mx = group_min_max(vals, i, length)
        r = redundancy_from_range(mn, mx, bits, cap)
        red[i] = r
        k = ncols - r
        if not active[i] or k <= 0:
            for j in range(length):
                out[i, j] = vals[i, j]
            continue
        mask = (np.int64(1) << k) - 1
        s = np.int64(0)
        for j in range(length):
            s += np.int64(vals[i, j]) & mask
        q = s // length
        rem = s - q * length
        if 2 * rem > length:
            q += 1
        elif 2 * rem == length:
            q += (q & 1) if half_even else 1
        const[i] = q
        for j in range(length):
            out[i, j] = (np.int64(vals[i, j]) & ~mask) | q
    return out, red, const


@njit(cache=True, inline="always")
def _zp_twos_bounds(tmn, tmx, c, bits, ncols, cap):  # type: ignore[no-untyped-def]
    """Redundancy r, shift k and the representable [lo, hi] for one candidate constant."""
    r = redundancy_from_range(tmn, tmx, bits, cap)
    k = ncols - r
    if k <= 0:
        return r, 0, 0, 0
    step = np.int64(1) << k
    lo = -(np.int64(1) << (bits - 1 - r))
    hi = (np.int64(1) << (bits - 1 - r)) - step
    # keep the decoded weight (rounded value - c) inside the b-bit range
    b_lo = -(np.int64(1) << (bits - 1))
    b_hi = (np.int64(1) << (bits - 1)) - 1
    lo2 = ((b_lo + c + step - 1) >> k) << k
    hi2 = ((b_hi + c) >> k) << k
    if lo2 > lo:
        lo = lo2
    if hi2 < hi:
        hi = hi2
    return r, k, lo, hi


@njit(cache=True, inline="always")
def _round_twos(t, k, lo, hi):  # type: ignore[no-untyped-def]
    """Nearest multiple of 2**k (ties toward zero), clamped to [lo, hi]."""
    half = (np.int64(1) << k) >> 1
    q = ((t + half - (1 if t >= 0 else 0)) >> k) << k
    return lo if q < lo else (hi if q > hi else q)


@njit(cache=True, parallel=True)
def zero_point_twos(vals, lengths, active, bits, ncols, cap, cmin, cmax):  # type: ignore[no-untyped-def]
    """Paper semantics (Algorithm 1): two's complement, search c in [cmin, cmax], keep min SSE."""
    n, width = vals.shape
    out = np.zeros((n, width), dtype=np.int16)
    red = np.zeros(n, dtype=np.uint8)
    const = np.zeros(n, dtype=np.int16)
    b_lo = -(np.int64(1) << (bits - 1))
    b_hi = (np.int64(1) << (bits - 1)) - 1
    for i in prange(n):
        length = lengths[i]
        mn, mx = group_min_max(vals, i, length)
        if not active[i]:
            red[i] = redundancy_from_range(mn, mx, bits, cap)
            for j in range(length):
                out[i, j] = vals[i, j]
            continue
        best = np.int64(1) << 62
        best_c = cmin
        for c in range(cmin, cmax + 1):
            tmn = _clip(mn + c, b_lo, b_hi)
            tmx = _clip(mx + c, b_lo, b_hi)
            r, k, lo, hi = _zp_twos_bounds(tmn, tmx, c, bits, ncols, cap)
            sse = np.int64(0)
            if k <= 0:
                for j in range(length):
                    v = np.int64(vals[i, j])
                    d = _clip(v + c, b_lo, b_hi) - c - v
                    sse += d * d
            else:
                if lo > hi:
                    continue
                for j in range(length):
                    v = np.int64(vals[i, j])
                    d = _round_twos(_clip(v + c, b_lo, b_hi), k, lo, hi) - c - v
                    sse += d * d
            if sse < best:
                best = sse
                best_c = c
        c = best_c
        tmn = _clip(mn + c, b_lo, b_hi)
        tmx = _clip(mx + c, b_lo, b_hi)
        r, k, lo, hi = _zp_twos_bounds(tmn, tmx, c, bits, ncols, cap)
        red[i] = r
        const[i] = c
        for j in range(length):
            t = _clip(np.int64(vals[i, j]) + c, b_lo, b_hi)
            if k > 0:
                t = _round_twos(t, k, lo, hi)
            out[i, j] = t - c
    return out, red, const


@njit(cache=True, inline="always")
def _bit_length(x):  # type: ignore[no-untyped-def]
    n = 0
    while x > 0:
        x >>= 1
        n += 1
    return n


@njit(cache=True, inline="always")
def _round_magnitude(a, s, amax):  # type: ignore[no-untyped-def]
    """Nearest multiple of 2**s to a >= 0 (ties to the smaller), saturating at amax."""
    half = (np.int64(1) << s) >> 1
    q = ((a + half - 1) >> s) << s
    return amax if q > amax else q


@njit(cache=True, parallel=True)
def zero_point_sign_magnitude(vals, lengths, active, bits, ncols, cmin, cmax):  # type: ignore[no-untyped-def]
    """Published-code semantics: sign-magnitude, clip to +-(2**(b-1)-1), uncapped leading zero planes."""
    n, width = vals.shape
    out = np.zeros((n, width), dtype=np.int16)
    red = np.zeros(n, dtype=np.uint8)
    const = np.zeros(n, dtype=np.int16)
    m = (np.int64(1) << (bits - 1)) - 1
    for i in prange(n):
        length = lengths[i]
        mn, mx = group_min_max(vals, i, length)
        if not active[i]:
            a = max(abs(mn), abs(mx))
            red[i] = (bits - 1) - _bit_length(a)
            for j in range(length):
                out[i, j] = vals[i, j]
            continue
        best = np.int64(1) << 62
        best_o = cmin
        for o in range(cmin, cmax + 1):
            amax_in = max(abs(_clip(mn + o, -m, m)), abs(_clip(mx + o, -m, m)))
            z = (bits - 1) - _bit_length(amax_in)
            p = bits - ncols + z
            sse = np.int64(0)
            if p >= bits:
                for j in range(length):
                    v = np.int64(vals[i, j])
                    d = _clip(v + o, -m, m) - o - v
                    sse += d * d
            else:
                s = bits - p
                amax = ((np.int64(1) << (p - 1 - z)) - 1) << s
                for j in range(length):
                    v = np.int64(vals[i, j])
                    t = _clip(v + o, -m, m)
                    q = _round_magnitude(t if t >= 0 else -t, s, amax)
                    d = (q if t >= 0 else -q) - o - v
                    sse += d * d
            if sse < best:
                best = sse
                best_o = o
        o = best_o
        amax_in = max(abs(_clip(mn + o, -m, m)), abs(_clip(mx + o, -m, m)))
        z = (bits - 1) - _bit_length(amax_in)
        p = bits - ncols + z
        red[i] = z
        const[i] = o
        for j in range(length):
            t = _clip(np.int64(vals[i, j]) + o, -m, m)
            if p < bits:
                s = bits - p
                amax = ((np.int64(1) << (p - 1 - z)) - 1) << s
                q = _round_magnitude(t if t >= 0 else -t, s, amax)
                t = q if t >= 0 else -q
            out[i, j] = t - o
    return out, red, const


@njit(cache=True, parallel=True)
def bitflip(vals, lengths, active, bits, ncols):  # type: ignore[no-untyped-def]
    """BitWave bit flip (published re-implementation): zero magnitude columns in sign-magnitude."""
    n, width = vals.shape
    out = np.zeros((n, width), dtype=np.int16)
    red = np.zeros(n, dtype=np.uint8)
    const = np.zeros(n, dtype=np.int16)
    for i in prange(n):
        length = lengths[i]
        orv = np.int64(0)
        for j in range(length):
            v = np.int64(vals[i, j])
            orv |= v if v >= 0 else -v
        if not active[i]:
            for j in range(length):
                out[i, j] = vals[i, j]
            continue
        p = bits - ncols
        last = 0
        counted = 0
        for plane in range(1, bits):
            if p > plane and ((orv >> (bits - 1 - plane)) & 1) == 0:
                p += 1
                last = plane
                counted += 1
        red[i] = counted
        t = 1 + last
        if p >= bits:
            for j in range(length):
                out[i, j] = vals[i, j]
            continue
        s = bits - p
        low_mask = (np.int64(1) << (bits - t)) - 1
        amax = ((np.int64(1) << (p - t)) - 1) << s
        for j in range(length):
            v = np.int64(vals[i, j])
            a = v if v >= 0 else -v
            low = a & low_mask
            a = (a - low) + _round_magnitude(low, s, amax)
            out[i, j] = a if v >= 0 else -a
    return out, red, const
