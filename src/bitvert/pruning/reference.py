"""Readable reference implementations of the pruning methods, one group at a time.

These follow BBS.md §6 step by step on explicit bit planes and are meant to be
read, not run on large tensors: the tests check the compiled kernels of
:mod:`bitvert.pruning._kernels` against them. Each function takes one group
(a 1-d integer array of real weights, no padding) and returns
``(pruned_weights, count, constant)``.
"""

from __future__ import annotations

from collections.abc import Iterable
from fractions import Fraction

import numpy as np

from bitvert.core.bitplanes import NumberFormat, from_bitplanes, to_bitplanes

__all__ = ["rounded_avg_group", "zero_point_paper_group", "zero_point_code_group", "bitflip_group"]


def _redundant_planes(planes: np.ndarray, cap: int) -> int:
    """Planes 1.. that equal plane 0 for every weight, consecutively, at most ``cap``."""
    r = 0
    for i in range(1, planes.shape[0]):
        if r >= cap or not np.array_equal(planes[i], planes[0]):
            break
        r += 1
    return r


def _round_mean(values: list[int], half_even: bool) -> int:
    mean = Fraction(sum(values), len(values))
    floor = mean.numerator // mean.denominator
    frac = mean - floor
    if frac > Fraction(1, 2) or (frac == Fraction(1, 2) and (not half_even or floor % 2 == 1)):
        return floor + 1
    return floor


def rounded_avg_group(
    w: np.ndarray, bits: int, columns: int, cap: int = 3, half_even: bool = True
) -> tuple[np.ndarray, int, int]:
    """Rounded averaging (BBS §III-B, Fig. 4) of one group in two's complement."""
    planes = to_bitplanes(w, bits, NumberFormat.TWOS_COMPLEMENT)
    r = _redundant_planes(planes, cap)
    k_low = columns - r
    if k_low <= 0:
        return w.astype(np.int16), r, 0
    low = planes[bits - k_low :]  # the k_low lowest planes, MSB of the field first
    fields = [int("".join(str(b) for b in low[:, i]), 2) for i in range(w.size)]
    c = _round_mean(fields, half_even)
    pattern = [(c >> (k_low - 1 - j)) & 1 for j in range(k_low)]
    new_planes = planes.copy()
    for j, bit in enumerate(pattern):
        new_planes[bits - k_low + j, :] = bit  # each low column becomes all-0 or all-1
    return from_bitplanes(new_planes, NumberFormat.TWOS_COMPLEMENT), r, c


def _candidates(constant_bits: int, constants: Iterable[int] | None) -> list[int]:
    if constants is not None:
        return list(constants)
    return list(range(-(1 << (constant_bits - 1)), 1 << (constant_bits - 1)))


def _nearest_multiple(x: int, step: int, lo: int, hi: int, toward_zero_ties: bool = True) -> int:
    """Nearest multiple of ``step`` in [lo, hi]; ties resolved toward zero."""
    candidates = [m for m in range(lo - lo % step, hi + 1, step) if lo <= m <= hi]
    best = min(abs(m - x) for m in candidates)
    tied = [m for m in candidates if abs(m - x) == best]
    return min(tied, key=abs) if toward_zero_ties else max(tied)


def zero_point_paper_group(
    w: np.ndarray,
    bits: int,
    columns: int,
    constant_bits: int = 6,
    cap: int = 3,
    constants: Iterable[int] | None = None,
) -> tuple[np.ndarray, int, int]:
    """Algorithm 1 of the paper (two's complement), bitvert's reading of its [OPEN] points.

    For each constant c: T = clip(W + c) to the b-bit range; r = redundant columns of
    T (capped); round each T to the nearest multiple of 2**(N-r) that keeps r
    redundant columns and keeps T - c inside the b-bit range (ties toward zero);
    W' = T' - c. Keep the c with the least squared error (ties: most negative c).
    ``constants`` overrides the candidate list (default: every ``constant_bits`` value).
    """
    lo_b, hi_b = -(1 << (bits - 1)), (1 << (bits - 1)) - 1
    best: tuple[int, np.ndarray, int, int] | None = None
    for c in _candidates(constant_bits, constants):
        t = np.clip(w.astype(np.int64) + c, lo_b, hi_b)
        r = _redundant_planes(to_bitplanes(t, bits), cap)
        k = columns - r
        if k > 0:
            step = 1 << k
            lo = max(-(1 << (bits - 1 - r)), lo_b + c)
            hi = min((1 << (bits - 1 - r)) - step, hi_b + c)
            t = np.array([_nearest_multiple(int(x), step, lo, hi) for x in t])
        new = t - c
        sse = int(((new - w) ** 2).sum())
        if best is None or sse < best[0]:
            best = (sse, new, r, c)
    assert best is not None
    return best[1].astype(np.int16), best[2], best[3]


def zero_point_code_group(
    w: np.ndarray,
    bits: int,
    columns: int,
    constant_bits: int = 5,
    constants: Iterable[int] | None = None,
) -> tuple[np.ndarray, int, int]:
    """Published zero-point shifting (sign-magnitude), BBS.md §6.2 steps 1-6."""
    m = (1 << (bits - 1)) - 1
    best: tuple[int, np.ndarray, int, int] | None = None
    for o in _candidates(constant_bits, constants):
        t = np.clip(w.astype(np.int64) + o, -m, m)
        planes = to_bitplanes(t, bits, NumberFormat.SIGN_MAGNITUDE)
        z = 0
        for i in range(1, bits):
            if planes[i].any():
                break
            z += 1
        p, tt = bits - columns + z, 1 + z
        if p < bits:
            sign = planes[0]
            mag = np.abs(t)
            step = 1 << (bits - p)
            n_max = (1 << (p - tt)) - 1
            ns = np.arange(n_max + 1)
            # n minimising (n*step - v)^2; argmin picks the first, i.e. the smaller n on ties
            chosen = ns[np.argmin((ns[None, :] * step - mag[:, None]) ** 2, axis=1)]
            mag = chosen * step
            t = np.where(sign == 1, -mag, mag)
        new = t - o
        sse = int(((new - w) ** 2).sum())
        if best is None or sse < best[0]:
            best = (sse, new, z, o)
    assert best is not None
    return best[1].astype(np.int16), best[2], best[3]


def bitflip_group(w: np.ndarray, bits: int, columns: int) -> tuple[np.ndarray, int, int]:
    """BitWave bit flip as re-implemented by the BBS authors (BBS.md §6.5)."""
    planes = to_bitplanes(w, bits, NumberFormat.SIGN_MAGNITUDE)
    zero = [not planes[i].any() for i in range(bits)]
    p, last, counted = bits - columns, 0, 0
    for i in range(1, bits):
        if p > i and zero[i]:
            p += 1
            last = i
            counted += 1
    t = 1 + last
    if p >= bits:
        return w.astype(np.int16), counted, 0
    mag = np.abs(w.astype(np.int64))
    low_mask = (1 << (bits - t)) - 1
    v = mag & low_mask
    step = 1 << (bits - p)
    ns = np.arange((1 << (p - t)))
    chosen = ns[np.argmin((ns[None, :] * step - v[:, None]) ** 2, axis=1)]
    mag = (mag - v) + chosen * step
    return np.where(w < 0, -mag, mag).astype(np.int16), counted, 0
