"""Compiled inner loop of the error-feedback solver (:mod:`bitvert.pruning.gptq`), parallel over rows."""

from __future__ import annotations

import numpy as np
from numba import njit, prange


def _snap_columns(w, up, i0, i1, c0, c1, grid, uniform, lo, hi, off, q, err):  # type: ignore[no-untyped-def]
    """Snap columns ``i0..i1-1`` of every row of ``w`` and push each error onto columns ``..c1-1``.

    ``w[R, n]`` float32 (updated in place), ``up[G, n, n]`` the upper Cholesky factor of ``H⁻¹``
    (``G = 1`` shared, else one per row). A row's value ``x`` goes to the nearest grid value: with
    ``uniform``, ``clip(rint(x), lo, hi)``; else the nearest value of the row's grid ``grid[r, :]``
    (``bool[R, V]``, index ``j`` stands for the value ``j - off``): the grid indices nearest at or below
    and at or above ``x + off`` (clipped to ``[0, V - 1]``), found by scanning the row, ties to the smaller
    value. ``q[r, i]`` receives the value, ``err[r, i - c0]`` the scaled error ``(x - q) / up[i, i]``.
    """
    rows = w.shape[0]
    nv = grid.shape[1]
    for r in prange(rows):
        u = np.int64(0) if up.shape[0] == 1 else np.int64(r)
        for i in range(i0, i1):
            x = w[r, i]
            if uniform:
                v = np.rint(x)
                qv = lo if v < lo else (hi if v > hi else int(v))
            else:
                xi = min(max(np.float64(x) + off, 0.0), nv - 1.0)
                fl = int(np.floor(xi))
                ce = int(np.ceil(xi))
                b = np.int64(fl)
                while b >= 0 and not grid[r, b]:
                    b -= 1
                a = np.int64(ce)
                while a < nv and not grid[r, a]:
                    a += 1
                if b < 0 or (a < nv and a - xi < xi - b):
                    qv = a - off
                else:
                    qv = b - off
            q[r, i] = qv
            e = (x - np.float32(qv)) / up[u, i, i]
            err[r, i - c0] = e
            for j in range(i + 1, c1):
                w[r, j] -= e * up[u, i, j]


snap_columns = njit(cache=True, parallel=True)(_snap_columns)
"""Parallel over rows (large layers)."""
snap_columns_serial = njit(cache=True)(_snap_columns)
"""One thread (small layers, where starting threads costs more than the work)."""
