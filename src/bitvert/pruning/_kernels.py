"""Compiled pruning kernels (numba, parallel over groups).

These are the fast paths of :mod:`bitvert.pruning.reference`; tests compare
the two on random inputs. Conventions: ``vals[n, width]`` int16 groups,
``lengths[n]`` real weights per group (phantom entries are never read and are
written as 0), ``active[n]`` False for groups that must stay unchanged.
Every kernel writes the pruned values into ``out[n, width]`` (int16, allocated by the caller:
numpy backs large arrays with huge pages, which halves the cost of first touching the output
compared with an allocation inside the kernel) and returns ``out``, a per-group count
(redundant columns / leading zero planes), a per-group constant and the output's free columns
(counted in the same pass, so the output is not read again).

numba's on-disk cache of a kernel is keyed on this file alone: a change to a helper it inlines
from :mod:`bitvert.core._kernels` (e.g. ``group_min_max``) takes effect only once this file
changes too (or its ``__pycache__`` is cleared), so such changes touch both files.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from bitvert.core._kernels import (free_columns_from_stats, group_free_columns, group_min_max,
                                   redundancy_from_range, zero_magnitude_plane_count)


@njit(cache=True, inline="always")
def _clip(x: int, lo: int, hi: int) -> int:
    return lo if x < lo else (hi if x > hi else x)


@njit(cache=True, parallel=True)
def rounded_avg(vals, lengths, active, bits, ncols, cap, half_even, out):  # type: ignore[no-untyped-def]
    """Rounded averaging: the ``ncols - r`` low columns of each group become the rounded mean of
    their values (``r`` redundant columns, at most ``cap``); ties to even when ``half_even``.

    Integers only; the output is written once and never read back: its free columns follow from
    the input's statistics, because ``v -> (v & ~mask) | q`` keeps the order of the values (so the
    output's least and greatest values are the images of the input's) and acts column-wise on the
    codes (so the output codes' OR / AND are the images of the input codes' OR / AND).
    """
    n, width = vals.shape
    red = np.empty(n, dtype=np.uint8)
    const = np.empty(n, dtype=np.int16)
    free = np.empty(n, dtype=np.uint8)
    code_mask = (np.int32(1) << bits) - 1
    for i in prange(n):
        length = lengths[i]
        for j in range(length, width):
            out[i, j] = 0
        mn = np.int32(vals[i, 0])
        mx = mn
        codes_or = np.int32(0)
        codes_and = code_mask
        for j in range(length):
            v = np.int32(vals[i, j])
            mn = min(mn, v)
            mx = max(mx, v)
            codes_or |= v & code_mask
            codes_and &= v & code_mask
        r = redundancy_from_range(mn, mx, bits, cap)
        red[i] = r
        const[i] = 0
        k = ncols - r
        if not active[i] or k <= 0:
            for j in range(length):
                out[i, j] = vals[i, j]
            free[i] = free_columns_from_stats(mn, mx, codes_or, codes_and, bits, cap)[1]
            continue
        mask = np.int32((1 << k) - 1)
        s = np.int32(0)
        for j in range(length):
            s += np.int32(vals[i, j]) & mask
        q = s // length
        rem = s - q * length
        if 2 * rem > length:
            q += 1
        elif 2 * rem == length:
            q += (q & 1) if half_even else 1
        const[i] = q
        keep = np.int16(~mask)
        low = np.int16(q)
        for j in range(length):
            out[i, j] = (vals[i, j] & keep) | low
        keep32 = np.int32(~mask)
        free[i] = free_columns_from_stats((mn & keep32) | q, (mx & keep32) | q, (codes_or & keep32) | q,
                                          (codes_and & keep32) | q, bits, cap)[1]
    return out, red, const, free


@njit(cache=True, inline="always")
def _round_twos(t, k, lo, hi):  # type: ignore[no-untyped-def]
    """Nearest multiple of 2**k to ``t`` (ties toward zero), clamped to [lo, hi]."""
    half = (np.int64(1) << k) >> 1
    q = ((t + half - (1 if t >= 0 else 0)) >> k) << k
    return lo if q < lo else (hi if q > hi else q)


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


@njit(cache=True, inline="always")
def _value_twos(v, c, r, bits, ncols):  # type: ignore[no-untyped-def]
    """Paper zero-point shifting of one weight: constant ``c``, ``r`` redundant columns.

    T = clip(v + c) to the b-bit range; the N - r low columns are zeroed by rounding
    T to the nearest multiple of 2**(N-r) that keeps r redundant columns and keeps
    the decoded weight T' - c inside the b-bit range; returns T' - c.
    """
    b_lo = -(np.int64(1) << (bits - 1))
    b_hi = (np.int64(1) << (bits - 1)) - 1
    t = _clip(v + c, b_lo, b_hi)
    k = ncols - r
    if k > 0:
        step = np.int64(1) << k
        lo = max(-(np.int64(1) << (bits - 1 - r)), ((b_lo + c + step - 1) >> k) << k)
        hi = min((np.int64(1) << (bits - 1 - r)) - step, ((b_hi + c) >> k) << k)
        t = _round_twos(t, k, lo, hi)
    return t - c


@njit(cache=True, inline="always")
def _value_sign_magnitude(v, o, z, bits, ncols):  # type: ignore[no-untyped-def]
    """Published zero-point shifting of one weight: offset ``o``, ``z`` leading zero magnitude planes.

    T = clip(v + o, +-(2**(b-1)-1)); with p = b - N + z < b the magnitude is rounded
    to the nearest multiple of 2**(b-p) (ties to the smaller, saturating at
    (2**(b-N-1) - 1) * 2**(b-p)); returns T' - o.
    """
    m = (np.int64(1) << (bits - 1)) - 1
    t = _clip(v + o, -m, m)
    p = bits - ncols + z
    if p < bits:
        s = bits - p
        amax = ((np.int64(1) << (p - 1 - z)) - 1) << s
        q = _round_magnitude(t if t >= 0 else -t, s, amax)
        t = q if t >= 0 else -q
    return t - o


@njit(cache=True)
def _sq_error_twos(v, c, r, bits, ncols):  # type: ignore[no-untyped-def]
    d = _value_twos(v, c, r, bits, ncols) - v
    return d * d


@njit(cache=True)
def _sq_error_sign_magnitude(v, o, z, bits, ncols):  # type: ignore[no-untyped-def]
    d = _value_sign_magnitude(v, o, z, bits, ncols) - v
    return d * d


@njit(cache=True)
def error_table(bits, ncols, n_levels, cmin, cmax, sign_magnitude):  # type: ignore[no-untyped-def]
    """``table[level, v - v_min, c - cmin]``: squared error of every weight value for every constant and level."""
    ncand = cmax - cmin + 1
    nv = np.int64(1) << bits
    v_min = -(np.int64(1) << (bits - 1))
    table = np.zeros((n_levels, nv, ncand), dtype=np.uint16)  # e**2 <= 255**2 fits
    for lev in range(n_levels):
        for vi in range(nv):
            v = v_min + vi
            for ci in range(ncand):
                c = cmin + ci
                if sign_magnitude:
                    table[lev, vi, ci] = _sq_error_sign_magnitude(v, c, lev, bits, ncols)
                else:
                    table[lev, vi, ci] = _sq_error_twos(v, c, lev, bits, ncols)
    return table


@njit(cache=True, inline="always")
def _level(mn, mx, c, bits, cap, sign_magnitude):  # type: ignore[no-untyped-def]
    """Level of a group for constant ``c``: redundant columns (two's complement) or leading zero planes."""
    if sign_magnitude:
        m = (np.int64(1) << (bits - 1)) - 1
        a = max(abs(_clip(mn + c, -m, m)), abs(_clip(mx + c, -m, m)))
        return (bits - 1) - _bit_length(a)
    b_lo = -(np.int64(1) << (bits - 1))
    b_hi = (np.int64(1) << (bits - 1)) - 1
    return redundancy_from_range(_clip(mn + c, b_lo, b_hi), _clip(mx + c, b_lo, b_hi), bits, cap)


@njit(cache=True, inline="always")
def _level_intervals(lo, hi, mn, mx, cmin, cmax, bits, sign_magnitude):  # type: ignore[no-untyped-def]
    """``[lo[r], hi[r]]``: the candidate indices ``c - cmin`` for which a group spanning ``[mn, mx]``
    reaches level ``r`` or more (``r = 0 .. len(lo) - 1``); empty when ``lo[r] > hi[r]``.

    The intervals are nested, so a constant's level is the last ``r`` whose interval holds it.
    Two's complement: ``r`` redundant columns iff ``[mn + c, mx + c]`` lies in
    ``[-2**(b-1-r), 2**(b-1-r) - 1]`` (clipping to the b-bit range cannot create redundancy).
    Sign-magnitude: ``r`` leading zero planes iff both clipped magnitudes are below ``2**(b-1-r)``,
    i.e. ``-2**(b-1-r) < mn + c`` and ``mx + c < 2**(b-1-r)``.
    """
    lo[0] = 0
    hi[0] = cmax - cmin
    strict = 1 if sign_magnitude else 0
    for r in range(1, lo.shape[0]):
        lim = np.int64(1) << (bits - 1 - r)
        lo[r] = max(lo[r - 1], -lim + strict - mn - cmin)
        hi[r] = min(hi[r - 1], lim - 1 - mx - cmin)


@njit(cache=True, inline="always")
def _level_of(ci, lo, hi):  # type: ignore[no-untyped-def]
    """Level of candidate index ``ci`` from the nested intervals of :func:`_level_intervals`."""
    r = 0
    while r + 1 < lo.shape[0] and lo[r + 1] <= ci <= hi[r + 1]:
        r += 1
    return r


_KEY_SHIFT = 9
"""Candidate keys are ``error << _KEY_SHIFT | ci`` (``ci < 2**9``: constants have at most 8 bits),
so the least key is the least error, ties to the first candidate, found without branches."""


@njit(cache=True, inline="always")
def _scan_first_period(q_row, start, stop, period, cmin, best):  # type: ignore[no-untyped-def]
    """Least key ``q_row[(cmin + ci) mod period] << _KEY_SHIFT | ci`` over ``start <= ci < stop``,
    merged into ``best`` (``period`` a power of two).

    The errors repeat with ``period`` in ``ci``, so the first period of the range holds its
    first least value: only that is scanned.
    """
    for ci in range(start, min(stop, start + period)):
        best = min(best, (q_row[(cmin + ci) & (period - 1)] << _KEY_SHIFT) | ci)
    return best


@njit(cache=True, inline="always")
def _copy_periodic(dst, src, start, stop, cmin, period):  # type: ignore[no-untyped-def]
    """``dst[ci] = src[(cmin + ci) mod period] << _KEY_SHIFT | ci`` for ``start <= ci < stop``
    (``period`` a power of two): the candidates' keys."""
    for ci in range(start, stop):
        dst[ci] = (src[(cmin + ci) & (period - 1)] << _KEY_SHIFT) | ci


@njit(cache=True, inline="always")
def _round_half_toward_zero(t, k):  # type: ignore[no-untyped-def]
    """Nearest multiple of ``2**k`` to ``t``, ties toward zero, no clamping (``k >= 1``)."""
    half = np.int64(1) << (k - 1)
    return ((t + half - (t >= 0)) >> k) << k


@njit(cache=True)
def agreement_intervals(bits, ncols, n_levels, cmin, cmax, sign_magnitude):  # type: ignore[no-untyped-def]
    """Where zero-point shifting is plain rounding: ``(agree_lo, agree_hi)``, ``int32[n_levels, ncand]``.

    At level ``lev`` both semantics write multiples of ``step = 2**(ncols - lev)`` (no rounding
    when ``ncols <= lev``), so a weight ``v`` shifted by ``c`` has squared error at least
    ``min(m, step - m)**2`` with ``m = (v + c) mod step``: the error of plain rounding to the
    nearest multiple (ties toward zero). ``[agree_lo[lev, ci], agree_hi[lev, ci]]`` is the longest
    run of weight values whose pruned value for constant ``cmin + ci`` at level ``lev`` *is* plain
    rounding (no clipping, clamping or saturation; empty when ``agree_lo > agree_hi``). A group
    inside it has exactly that residue error, which depends on the weights modulo ``step`` only.
    """
    ncand = cmax - cmin + 1
    agree_lo = np.ones((n_levels, ncand), dtype=np.int32)
    agree_hi = np.zeros((n_levels, ncand), dtype=np.int32)
    nv = np.int64(1) << bits
    v_min = -(np.int64(1) << (bits - 1))
    for lev in range(n_levels):
        k = ncols - lev
        for ci in range(ncand):
            c = cmin + ci
            best_len = 0
            run_start = 0
            for vi in range(nv + 1):
                same = False
                if vi < nv:
                    v = v_min + vi
                    plain = (_round_half_toward_zero(v + c, k) if k > 0 else v + c) - c
                    if sign_magnitude:
                        same = _value_sign_magnitude(v, c, lev, bits, ncols) == plain
                    else:
                        same = _value_twos(v, c, lev, bits, ncols) == plain
                if not same:
                    if vi - run_start > best_len:
                        best_len = vi - run_start
                        agree_lo[lev, ci] = v_min + run_start
                        agree_hi[lev, ci] = v_min + vi - 1
                    run_start = vi + 1
    return agree_lo, agree_hi


@njit(cache=True, inline="always")
def _residue_errors(q, hist, scratch, lev, ncols, length):  # type: ignore[no-untyped-def]
    """``q[cm] = sum_j min(x, step - x)**2`` with ``x = (v_j + cm) mod step``, ``step = 2**(ncols - lev)``,
    for every ``cm < step`` (the errors repeat with ``step`` in ``cm``; ``q[0] = 0`` when
    ``step <= 1``), from ``hist``: the group's weights counted
    modulo ``len(hist)``.

    With ``d = x - step * [x >= step / 2]`` the error is ``d**2``; going from ``cm`` to ``cm + 1``
    every ``d`` grows by one except those at ``step/2 - 1``, which wrap to ``-step/2`` with the same
    square, so ``q[cm + 1] = q[cm] + 2 * s1 + n`` and ``s1`` (the sum of ``d``) grows by
    ``n - step * (count at x = step/2 - 1)``.
    """
    k = ncols - lev
    if k <= 0:
        q[0] = 0
        return 0
    s = np.int64(1) << k
    half = s >> 1
    for m in range(s):
        scratch[m] = 0
    for m in range(hist.shape[0]):
        scratch[m & (s - 1)] += hist[m]
    q0 = np.int64(0)
    s1 = np.int64(0)
    for m in range(s):
        d = m if m < half else m - s
        q0 += scratch[m] * d * d
        s1 += scratch[m] * d
    least = q0
    for cm in range(s):
        q[cm] = q0
        least = min(least, q0)
        q0 += 2 * s1 + length
        s1 += length - s * scratch[(half - 1 - cm) & (s - 1)]
    return least


@njit(cache=True, parallel=True)
def zero_point(vals, lengths, active, table, agree_lo, agree_hi,  # type: ignore[no-untyped-def]
               bits, ncols, cap, cmin, cmax, sign_magnitude, out):
    """Zero-point shifting: per group, the constant of least squared error, then the rounded weights.

    Residue search (see :func:`agreement_intervals`): the level of every candidate constant
    follows from the group's min and max; one histogram of the weights modulo ``2**ncols`` gives,
    per level present, every candidate's residue error (:func:`_residue_errors`). That is the
    candidate's exact squared error when the group lies in the candidate's agreement interval,
    and a lower bound otherwise. The first candidate of least bound wins if its bound is exact;
    else its error is summed exactly from ``table[level, v - v_min, c - cmin]`` and the search
    repeats (rarely more than once). Ties go to the first (most negative) constant.
    ``sign_magnitude`` selects the published-code semantics, else the paper's.
    """
    n, width = vals.shape
    ncand = cmax - cmin + 1
    n_levels = table.shape[0]
    smax = np.int64(1) << ncols
    red = np.empty(n, dtype=np.uint8)
    const = np.empty(n, dtype=np.int16)
    free = np.empty(n, dtype=np.uint8)
    v_min = -(np.int64(1) << (bits - 1))
    key_mask = (np.int64(1) << _KEY_SHIFT) - 1
    chunk = 256
    n_chunks = (n + chunk - 1) // chunk
    for ch in prange(n_chunks):
        q = np.empty((n_levels, smax), dtype=np.int64)
        least = np.empty(n_levels, dtype=np.int64)
        hist = np.empty(smax, dtype=np.int64)
        scratch = np.empty(smax, dtype=np.int64)
        ilo = np.empty(n_levels, dtype=np.int64)
        ihi = np.empty(n_levels, dtype=np.int64)
        bound = np.empty(ncand, dtype=np.int64)
        summed = np.full(ncand, -1, dtype=np.int64)
        for i in range(ch * chunk, min(n, (ch + 1) * chunk)):
            length = lengths[i]
            for j in range(length, width):
                out[i, j] = 0
            mn, mx = group_min_max(vals, i, length)
            if not active[i]:
                red[i] = _level(mn, mx, 0, bits, cap, sign_magnitude)
                const[i] = 0
                for j in range(length):
                    out[i, j] = vals[i, j]
                free[i] = group_free_columns(out, i, length, np.int32(0), bits, cap)[1]
                continue
            _level_intervals(ilo, ihi, mn, mx, cmin, cmax, bits, sign_magnitude)
            lmin = 0
            while lmin + 1 < n_levels and ilo[lmin + 1] == 0 and ihi[lmin + 1] == ncand - 1:
                lmin += 1
            lmax = lmin
            while lmax + 1 < n_levels and ilo[lmax + 1] <= ihi[lmax + 1]:
                lmax += 1
            for m in range(smax):
                hist[m] = 0
            for j in range(length):
                hist[np.int64(vals[i, j]) & (smax - 1)] += 1
            for lv in range(lmin, lmax + 1):
                least[lv] = _residue_errors(q[lv], hist, scratch, lv, ncols, length)
            # the candidate of least residue error (first on ties); level lv holds [ilo[lv], ihi[lv]]
            # minus the nested interval of level lv + 1, where its residue error repeats every step.
            # Finer levels first: a level whose least error exceeds the best so far is skipped.
            best = np.int64(1) << 62
            for lv in range(lmax, lmin - 1, -1):
                if (least[lv] << _KEY_SHIFT) > best:
                    continue
                period = np.int64(1) << max(ncols - lv, 0)
                if lv == lmax:
                    best = _scan_first_period(q[lv], ilo[lv], ihi[lv] + 1, period, cmin, best)
                else:
                    best = _scan_first_period(q[lv], ilo[lv], ilo[lv + 1], period, cmin, best)
                    best = _scan_first_period(q[lv], ihi[lv + 1] + 1, ihi[lv] + 1, period, cmin, best)
            best_ci = best & key_mask
            lv = _level_of(best_ci, ilo, ihi)
            if not (mn >= agree_lo[lv, best_ci] and mx <= agree_hi[lv, best_ci]):
                # its residue error is only a lower bound: bound[ci] <= exact error for every
                # candidate, with equality inside the agreement interval or once summed exactly
                for lv in range(lmin, lmax + 1):
                    period = np.int64(1) << max(ncols - lv, 0)
                    if lv == lmax:
                        _copy_periodic(bound, q[lv], ilo[lv], ihi[lv] + 1, cmin, period)
                    else:
                        _copy_periodic(bound, q[lv], ilo[lv], ilo[lv + 1], cmin, period)
                        _copy_periodic(bound, q[lv], ihi[lv + 1] + 1, ihi[lv] + 1, cmin, period)
                while True:
                    best = bound[0]
                    for ci in range(1, ncand):
                        best = min(best, bound[ci])
                    best_ci = best & key_mask
                    lv = _level_of(best_ci, ilo, ihi)
                    if summed[best_ci] == i or (mn >= agree_lo[lv, best_ci] and mx <= agree_hi[lv, best_ci]):
                        break  # exact, and no smaller key anywhere
                    row = table[lv]
                    s = np.int64(0)
                    for j in range(length):
                        s += row[np.int64(vals[i, j]) - v_min, best_ci]
                    bound[best_ci] = (s << _KEY_SHIFT) | best_ci
                    summed[best_ci] = i
            c = cmin + best_ci
            lv = _level_of(best_ci, ilo, ihi)
            red[i] = lv
            const[i] = c
            k = ncols - lv
            if mn >= agree_lo[lv, best_ci] and mx <= agree_hi[lv, best_ci]:
                if k > 0:
                    # plain rounding is monotone: the stored extremes are the rounded input extremes
                    half = np.int64(1) << (k - 1)
                    code_mask = (np.int64(1) << bits) - 1
                    codes_or = np.int64(0)
                    codes_and = code_mask
                    for j in range(length):
                        t = np.int64(vals[i, j]) + c
                        st = ((t + half - (t >= 0)) >> k) << k
                        out[i, j] = st - c
                        codes_or |= st & code_mask
                        codes_and &= st & code_mask
                    lo_t = mn + c
                    hi_t = mx + c
                    free[i] = free_columns_from_stats(((lo_t + half - (lo_t >= 0)) >> k) << k,
                                                      ((hi_t + half - (hi_t >= 0)) >> k) << k,
                                                      codes_or, codes_and, bits, cap)[1]
                    continue
                for j in range(length):
                    out[i, j] = vals[i, j]
            else:
                for j in range(length):
                    v = np.int64(vals[i, j])
                    if sign_magnitude:
                        out[i, j] = _value_sign_magnitude(v, c, lv, bits, ncols)
                    else:
                        out[i, j] = _value_twos(v, c, lv, bits, ncols)
            free[i] = group_free_columns(out, i, length, np.int32(c), bits, cap)[1]
    return out, red, const, free


@njit(cache=True, parallel=True)
def bitflip(vals, lengths, active, bits, ncols, out):  # type: ignore[no-untyped-def]
    """BitWave bit flip (published re-implementation): zero magnitude columns in sign-magnitude.

    Also returns each output group's all-zero magnitude planes (its free columns).
    """
    n, width = vals.shape
    red = np.zeros(n, dtype=np.uint8)
    const = np.zeros(n, dtype=np.int16)
    free = np.empty(n, dtype=np.uint8)
    for i in prange(n):
        length = lengths[i]
        for j in range(length, width):
            out[i, j] = 0
        orv = np.int64(0)
        for j in range(length):
            v = np.int64(vals[i, j])
            orv |= v if v >= 0 else -v
        p = bits - ncols
        last = 0
        counted = 0
        for plane in range(1, bits):
            if p > plane and ((orv >> (bits - 1 - plane)) & 1) == 0:
                p += 1
                last = plane
                counted += 1
        if not active[i] or p >= bits:
            for j in range(length):
                out[i, j] = vals[i, j]
            if active[i]:
                red[i] = counted
            free[i] = zero_magnitude_plane_count(orv, bits)
            continue
        red[i] = counted
        t = 1 + last
        s = bits - p
        low_mask = (np.int64(1) << (bits - t)) - 1
        amax = ((np.int64(1) << (p - t)) - 1) << s
        out_or = np.int64(0)
        for j in range(length):
            v = np.int64(vals[i, j])
            a = v if v >= 0 else -v
            low = a & low_mask
            a = (a - low) + _round_magnitude(low, s, amax)
            out_or |= a
            out[i, j] = a if v >= 0 else -a
        free[i] = zero_magnitude_plane_count(out_or, bits)
    return out, red, const, free
