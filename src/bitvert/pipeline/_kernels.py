"""Fused per-channel kernels of the pipeline (numba, parallel over output channels).

Each kernel makes one pass over a ``[K, n]`` float32 array of channel rows, replacing a chain of
tensor operations (each its own pass and thread-pool round trip).
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange


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


@njit(cache=True, parallel=True)
def quantize_rows(rows: np.ndarray, scale: np.ndarray, qmax: int) -> np.ndarray:
    """``clamp(rint(row / scale), -qmax, qmax)`` as int16 (float32 division, ties to even)."""
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
