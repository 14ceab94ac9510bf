"""Fused per-channel kernels of the pipeline (numba, parallel over output channels).

Each kernel makes one pass over a ``[K, n]`` float32 array of channel rows, replacing a chain of
tensor operations (each its own pass and thread-pool round trip).
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

_PARALLEL_ELEMENTS = 1 << 21
"""Weights from which :func:`quantize_rows` and :func:`snapped_sse` run in parallel: below, starting the threads
costs more than the work (and, on a busy machine, waiting for them far more)."""


@njit(cache=True, parallel=True)
def channel_absmax(rows: np.ndarray) -> np.ndarray:
    """``max |row|`` per channel (float32); NaN when the row holds NaN or inf."""
    k_n, n = rows.shape
    out = np.empty(k_n, dtype=np.float32)
    for k in prange(k_n):
        m = np.float32(0.0)
        bad = False
        for j in range(n):
            v = rows[k, j]
            if not np.isfinite(v):
                bad = True
            a = abs(v)
            if a > m:
                m = a
        out[k] = np.float32(np.nan) if bad else m
    return out


def _quantize_rows(rows: np.ndarray, scale: np.ndarray, qmax: int) -> np.ndarray:
    """The compiled body of :func:`quantize_rows` (compiled twice: parallel over channels, and serial)."""
    k_n, n = rows.shape
    q = np.empty((k_n, n), dtype=np.int16)
    lim = np.float32(qmax)
    for k in prange(k_n):
        s = scale[k]
        for j in range(n):
            v = np.rint(rows[k, j] / s)
            if v > lim:
                v = lim
            elif v < -lim:
                v = -lim
            q[k, j] = np.int16(v)
    return q


_quantize_rows_parallel = njit(cache=True, parallel=True)(_quantize_rows)
_quantize_rows_serial = njit(cache=True)(_quantize_rows)


def quantize_rows(rows: np.ndarray, scale: np.ndarray, qmax: int) -> np.ndarray:
    """``clamp(rint(row / scale), -qmax, qmax)`` as int16 (float32 division, ties to even); parallel over
    channels on large arrays (:data:`_PARALLEL_ELEMENTS`: the scale search calls it 11 times per layer)."""
    kernel = _quantize_rows_parallel if rows.size >= _PARALLEL_ELEMENTS else _quantize_rows_serial
    return kernel(rows, scale, qmax)


@njit(cache=True, parallel=True)
def dequantize_rows(
    q: np.ndarray, scale: np.ndarray, rows_fp: np.ndarray, q_ref: np.ndarray, out: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Write ``q * scale`` into ``out``; return per channel ``Σ(out - rows_fp)²``, ``Σ rows_fp²`` (float64)
    and ``Σ(q - q_ref)²`` (int64)."""
    k_n, n = q.shape
    sse = np.zeros(k_n, dtype=np.float64)
    energy = np.zeros(k_n, dtype=np.float64)
    int_sse = np.zeros(k_n, dtype=np.int64)
    for k in prange(k_n):
        s = scale[k]
        a = 0.0
        e = 0.0
        c = 0
        for j in range(n):
            v = rows_fp[k, j]
            o = np.float32(q[k, j]) * s
            out[k, j] = o
            d = np.float64(o) - np.float64(v)
            a += d * d
            e += np.float64(v) * np.float64(v)
            di = np.int64(q[k, j]) - np.int64(q_ref[k, j])
            c += di * di
        sse[k] = a
        energy[k] = e
        int_sse[k] = c
    return sse, energy, int_sse


_SUM_BUFFER = 8192
"""numpy's default ufunc buffer (``np.getbufsize()``): a float32 row summed with ``dtype=float64`` is cast and
reduced in chunks of this many elements, each chunk pairwise, the chunks one after another."""


@njit(cache=True)
def _pairwise_sum(a: np.ndarray, lo: int, n: int) -> float:
    """numpy's pairwise summation of ``a[lo:lo + n]`` (float64), the same additions in the same order
    (``pairwise_sum`` of numpy's ``loops_utils.h``: 8 accumulators up to 128 elements, halves above)."""
    if n < 8:
        res = 0.0
        for i in range(n):
            res += a[lo + i]
        return res
    if n <= 128:
        r0, r1, r2, r3 = a[lo], a[lo + 1], a[lo + 2], a[lo + 3]
        r4, r5, r6, r7 = a[lo + 4], a[lo + 5], a[lo + 6], a[lo + 7]
        i = 8
        stop = n - n % 8
        while i < stop:
            r0 += a[lo + i]
            r1 += a[lo + i + 1]
            r2 += a[lo + i + 2]
            r3 += a[lo + i + 3]
            r4 += a[lo + i + 4]
            r5 += a[lo + i + 5]
            r6 += a[lo + i + 6]
            r7 += a[lo + i + 7]
            i += 8
        res = ((r0 + r1) + (r2 + r3)) + ((r4 + r5) + (r6 + r7))
        while i < n:
            res += a[lo + i]
            i += 1
        return res
    n2 = n // 2
    n2 -= n2 % 8
    return _pairwise_sum(a, lo, n2) + _pairwise_sum(a, lo + n2, n - n2)


def _snapped_sse(v: np.ndarray, scale: np.ndarray, rows: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """The compiled body of :func:`snapped_sse` (compiled twice: parallel over channel chunks, and serial)."""
    k_n, n = rows.shape
    n_w = weights.shape[0]
    out = np.empty(k_n, dtype=np.float64)
    chunk = 64
    for c in prange((k_n + chunk - 1) // chunk):
        buf = np.empty(n, dtype=np.float64)
        for k in range(c * chunk, min(k_n, (c + 1) * chunk)):
            s = scale[k]
            wk = 0 if n_w == 1 else k
            for j in range(n):
                d = np.float32(v[k, j]) * s - rows[k, j]
                d = d * d
                if n_w > 0:
                    d = d * weights[wk, j]
                buf[j] = np.float64(d)
            acc = 0.0
            for lo in range(0, n, _SUM_BUFFER):
                acc += _pairwise_sum(buf, lo, min(_SUM_BUFFER, n - lo))
            out[k] = acc
    return out


_snapped_sse_parallel = njit(cache=True, parallel=True)(_snapped_sse)
_snapped_sse_serial = njit(cache=True)(_snapped_sse)


def snapped_sse(v: np.ndarray, scale: np.ndarray, rows: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Per channel ``Σ_j weights[j] · (v[k, j] · scale[k] - rows[k, j])²`` (float64[K]) in one compiled pass.

    The products are float32 and the sum float64, bit-identical to numpy's
    ``((v.astype(float32) * scale[:, None] - rows) ** 2 * weights).sum(axis=1, dtype=float64)`` (same
    roundings, numpy's chunked pairwise summation order). ``weights`` is float32 ``[1, n]`` (shared),
    ``[K, n]`` (per channel) or ``[0, n]`` (no weights: the plain squared error). Parallel over channels
    on large arrays.
    """
    kernel = _snapped_sse_parallel if rows.size >= _PARALLEL_ELEMENTS else _snapped_sse_serial
    return kernel(v, scale, rows, weights)
