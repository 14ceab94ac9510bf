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
    and at or above ``x + off`` (clipped to ``[0, V - 1]``), found by scanning the row outwards from it, ties
    to the smaller value. ``q[r, i]`` receives the value, ``err[r, i - c0]`` the scaled error ``(x - q) / up[i, i]``.
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
                # scan outwards from [fl, ce]: the first grid index found at or below fl / at or above ce
                # is the nearest on its side; one found on one side only is nearer than anything on the other
                b = np.int64(-1)
                a = np.int64(nv)
                k = 0
                while True:
                    lo_k = fl - k
                    hi_k = ce + k
                    if lo_k < 0 and hi_k >= nv:
                        break
                    hit = False
                    if lo_k >= 0 and grid[r, lo_k]:
                        b = lo_k
                        hit = True
                    if hi_k < nv and grid[r, hi_k]:
                        a = hi_k
                        hit = True
                    if hit:
                        break
                    k += 1
                if b < 0 or (a < nv and a - xi < xi - b):
                    qv = a - off
                else:
                    qv = b - off
            q[r, i] = qv
            e = (x - np.float32(qv)) / up[u, i, i]
            err[r, i - c0] = e
            # slices indexed from 0: numba then drops the negative-index wraparound, and LLVM vectorizes the
            # update (a multiply and a subtract per element, no fused multiply-add: the same float32 results)
            wr = w[r, i + 1:c1]
            ur = up[u, i, i + 1:c1]
            for t in range(wr.shape[0]):
                wr[t] -= e * ur[t]


snap_columns = njit(cache=True, parallel=True)(_snap_columns)
"""Parallel over rows (large layers)."""
snap_columns_serial = njit(cache=True)(_snap_columns)
"""One thread (small layers, where starting threads costs more than the work)."""
