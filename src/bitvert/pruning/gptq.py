"""Error-feedback (GPTQ-style) binary pruning of one layer on the BBS grid: :func:`gptq_prune`.

The greedy methods treat every group on its own. This solver walks the layer's input columns in group
order and, like GPTQ / OBQ, pushes each column's rounding error onto the columns not yet rounded,
weighted by the inverse Hessian ``H = Σ XᵀX`` of the layer's inputs, so the layer's *output* error
``tr((W - Ŵ) H (W - Ŵ)ᵀ)`` is what gets minimised:

1. ``H`` is dampened (``damp · mean(diag H)`` on the diagonal; inputs that never fire get 1) and the
   upper Cholesky factor ``U`` of ``H⁻¹`` is taken. A non-positive-definite ``H`` falls back to the
   greedy method with a logged warning.
2. At each group's first column, the method's **own search** (its registry kernel) runs on the
   error-updated weights rounded to integers and fixes every row's metadata (redundant count,
   constant, kept columns); :attr:`MethodSpec.grid` turns the metadata into the group's value grid.
3. Each column is snapped to its group's grid, and its error ``(w - q) / U[i, i]`` updates the later
   columns (``w[:, j] -= err · U[i, j]``), inside a block of whole groups eagerly and beyond it in
   one matrix product per block (the lazy batch updates of GPTQ).
4. Per output channel the result is kept only where its output error ``Δ H Δᵀ`` (undamped ``H``) is
   not larger than the greedy method's, so the solver never loses to the greedy method on a channel.

The output is a normal :class:`~bitvert.pruning.PruneResult`: every pruned group lies on a grid its
metadata describes, so the codec, the decoder and the BitVert PE model run it unchanged.
:func:`gptq_round` is the same solver on a plain uniform grid (GPTQ proper, the ``rtn`` baseline).

Column order: ``hessian`` is indexed in the grouping's column order of one output channel (what
``GroupLayout.to_rows(w).reshape(K, -1)`` gives per channel: ``(*kernel, in)`` for a convolution
grouped along its input channels, the window for a depthwise one, ``in`` for linear layers), as
:func:`bitvert.pipeline.calibration.collect_hessians` returns it. ``hessian`` is ``[n, n]`` (one for
every output channel) or ``[G, n, n]`` with ``G`` dividing ``K`` (channel ``k`` uses
``H[k // (K // G)]``: grouped convolutions; ``G = K`` for depthwise ones).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import numpy as np
import torch

from bitvert.core.grouping import GroupLayout, LayerKind, infer_kind, make_layout
from bitvert.errors import ConfigError, InputError
from bitvert.pruning import _gptq_kernels as _kernels
from bitvert.pruning.api import GroupMetadata, PruneResult, prune
from bitvert.pruning.config import PruneConfig
from bitvert.timing import timed

__all__ = ["DEFAULT_DAMP", "DEFAULT_BLOCK", "gptq_prune", "gptq_round", "output_error"]

log = logging.getLogger(__name__)

DEFAULT_DAMP = 0.01
"""Default dampening: fraction of the mean diagonal of ``H`` added to its diagonal."""
DEFAULT_BLOCK = 128
"""Default columns per lazy-update block (rounded to whole groups)."""

_Choose = Callable[[int, np.ndarray], "np.ndarray | None"]


_PARALLEL_ROWS = 256
"""Rows from which the snapping kernel runs in parallel."""
_GRID_ROWS = 2048
"""Rows per call of a method's grid function (cache-sized temporaries)."""


class _NotPositiveDefinite(Exception):
    """``H`` (after dampening) has no Cholesky factor."""


# ---------------------------------------------------------------------- inputs
def _as_float_rows(weights: Any, name: str) -> np.ndarray:
    arr = weights.detach().cpu().numpy() if isinstance(weights, torch.Tensor) else np.asarray(weights)
    if arr.dtype.kind not in "fiu":
        raise InputError(f"{name} must hold numbers, got dtype {arr.dtype}")
    arr = arr.astype(np.float64)
    if not np.isfinite(arr).all():
        raise InputError(f"{name} contain NaN or inf; fix the model before pruning")
    return arr


def _check_damp_block(damp: float, block_size: int) -> None:
    if isinstance(damp, bool) or not isinstance(damp, (int, float)) or not 0.0 <= float(damp) <= 1.0:
        raise ConfigError(f"damp must be a number in [0, 1] (fraction of the mean diagonal of H), got {damp!r}")
    if isinstance(block_size, bool) or not isinstance(block_size, int) or block_size < 1:
        raise ConfigError(f"block_size must be a positive integer (columns per lazy update), got {block_size!r}")


def _check_hessian(hessian: Any, n_channels: int, n: int) -> np.ndarray:
    h = hessian.detach().cpu().to(torch.float64).numpy() if isinstance(hessian, torch.Tensor) else np.asarray(
        hessian, dtype=np.float64)
    if h.ndim == 2:
        h = h[None]
    if h.ndim != 3 or h.shape[1:] != (n, n) or h.shape[0] < 1 or n_channels % h.shape[0]:
        raise InputError(f"hessian must be [{n}, {n}] or [G, {n}, {n}] with G dividing {n_channels} (the layer's "
                         f"output channels), got shape {tuple(h.shape)}")
    if not np.isfinite(h).all():
        raise InputError("hessian contains NaN or inf; check the calibration inputs")
    return h


def _group_rows(w: np.ndarray, layout: GroupLayout) -> np.ndarray:
    """``[K, n]``: each output channel's weights in the grouping's column order."""
    return layout.to_rows(w).reshape(layout.n_channels, -1)


def _from_group_rows(rows: np.ndarray, layout: GroupLayout) -> np.ndarray:
    """Inverse of :func:`_group_rows`: back to the module layout."""
    return layout.from_rows(np.ascontiguousarray(rows).reshape(layout.n_rows, layout.row_length))


# ---------------------------------------------------------------------- the solver
@timed("factor")
def _inverse_factor(h: np.ndarray, damp: float) -> np.ndarray:
    """Upper Cholesky factor of the dampened ``H⁻¹`` per Hessian (``float32[G, n, n]``)."""
    h = h.copy()
    idx = np.arange(h.shape[1])
    diag = h[:, idx, idx]
    dead = diag <= 0
    mean = np.where(dead, 0.0, diag).sum(axis=1) / np.maximum((~dead).sum(axis=1), 1)
    h[:, idx, idx] = np.where(dead, 1.0, diag + damp * mean[:, None])
    # With J the order reversal, H = (J L J)(J L J)ᵀ for L = chol(J H J) (J L J is upper triangular), so
    # H⁻¹ = Uᵀ U with U = (J L J)⁻¹ upper triangular: one factorization and one triangular solve. torch's
    # LAPACK runs both several times faster than numpy's on a busy machine (same float64 results to ~1e-16).
    ht = torch.from_numpy(np.ascontiguousarray(h[:, ::-1, ::-1]))
    low, info = torch.linalg.cholesky_ex(ht)
    if bool((info != 0).any()):
        raise _NotPositiveDefinite(f"Cholesky factorization failed (leading minor {int(info.max())})")
    upper = low.flip((-2, -1))
    eye = torch.eye(h.shape[1], dtype=upper.dtype).expand_as(upper)
    up = torch.linalg.solve_triangular(upper, eye, upper=True).numpy()
    if not np.isfinite(up).all():
        raise _NotPositiveDefinite("non-finite inverse")
    return np.ascontiguousarray(up, dtype=np.float32)


def _blocks(starts: np.ndarray, stops: np.ndarray, block_size: int) -> list[tuple[int, int, list[int]]]:
    """Runs of consecutive groups of about ``block_size`` columns: ``(first column, stop, group indices)``."""
    out: list[tuple[int, int, list[int]]] = []
    cur: list[int] = []
    for j in range(starts.shape[0]):
        cur.append(j)
        if stops[j] - starts[cur[0]] >= block_size or j == starts.shape[0] - 1:
            out.append((int(starts[cur[0]]), int(stops[j]), cur))
            cur = []
    return out


def _grid_by_chunks(grid: Any, vals: np.ndarray, out: np.ndarray, lengths: np.ndarray, redundant: np.ndarray,
                    constant: np.ndarray, config: PruneConfig) -> np.ndarray:
    """``grid(...)`` (a :attr:`MethodSpec.grid`, one group per row) for ``_GRID_ROWS`` rows at a time, so that
    its ``[rows, 2**b]`` int64 temporaries stay in the cache on layers with many rows (an LLM's head)."""
    n = vals.shape[0]
    mask = np.empty((n, 1 << int(config.weight_bits)), dtype=np.bool_)
    for a in range(0, n, _GRID_ROWS):
        z = slice(a, min(n, a + _GRID_ROWS))
        mask[z] = grid(vals[z], out[z], lengths[z], redundant[z], constant[z], config)
    return mask


def _error_feedback(w: np.ndarray, up: np.ndarray, starts: np.ndarray, stops: np.ndarray, choose: _Choose,
                    block_size: int, bits: int, uniform: tuple[int, int]) -> np.ndarray:
    """Snap ``w`` (``[R, n]``, group column order) column by column with error feedback through ``up``.

    ``up`` is ``[1, n, n]`` (shared) or ``[R, n, n]`` (one per row). ``choose(j, cols)`` is called at
    group ``j``'s first column with the group's current values ``[R, len]`` and returns the group's grid
    ``bool[R, 2**bits]``, or ``None`` for the uniform integer range ``uniform = (lo, hi)``.
    Returns the snapped values (``int16[R, n]``).
    """
    rows, n = w.shape
    shared = up.shape[0] == 1
    wk = np.ascontiguousarray(w, dtype=np.float32)
    q = np.empty((rows, n), dtype=np.int16)
    no_grid = np.zeros((1, 1), dtype=np.bool_)
    for c0, c1, groups in _blocks(starts, stops, block_size):
        err = np.empty((rows, c1 - c0), dtype=np.float32)
        for j in groups:
            mask = choose(j, wk[:, starts[j]:stops[j]])
            kernel = _kernels.snap_columns if rows >= _PARALLEL_ROWS else _kernels.snap_columns_serial
            kernel(wk, up, int(starts[j]), int(stops[j]), c0, c1, no_grid if mask is None else mask, mask is None,
                   uniform[0], uniform[1], 1 << (bits - 1), q, err)
        if c1 < n:
            if shared:
                wk[:, c1:] -= err @ up[0, c0:c1, c1:]
            else:
                wk[:, c1:] -= np.einsum("rb,rbc->rc", err, up[:, c0:c1, c1:])
    return q


def output_error(weights: Any, snapped: Any, hessian: Any) -> np.ndarray:
    """Per-row output error ``Δ_k H Δ_kᵀ`` (``float64[R]``) with ``Δ = snapped - weights``.

    ``weights`` and ``snapped`` are ``[R, n]`` rows in ``hessian``'s column order; ``hessian`` is
    ``[n, n]`` or ``[G, n, n]`` (row ``k`` uses ``H[k // (R // G)]``). The layer's output error is the sum.
    """
    d = _as_float_rows(snapped, "snapped") - _as_float_rows(weights, "weights")
    return _quadratic(d, _check_hessian(hessian, d.shape[0], d.shape[1]))


def _quadratic(d: np.ndarray, h: np.ndarray) -> np.ndarray:
    """``d_k H d_kᵀ`` per row of ``d`` (float64 ``[R, n]``) for a checked float64 ``h`` (``[G, n, n]``)."""
    if h.shape[0] == 1:
        return np.einsum("rn,rn->r", d @ h[0], d)
    per = d.shape[0] // h.shape[0]
    dg = d.reshape(h.shape[0], per, -1)
    return np.einsum("gpn,gnm,gpm->gp", dg, h, dg).reshape(-1)


def _row_factors(h: np.ndarray, damp: float, rows: np.ndarray, n_channels: int) -> np.ndarray:
    """Factors for the solved rows: shared ``[1, n, n]`` or one per row ``[R, n, n]``."""
    up = _inverse_factor(h, damp)
    if up.shape[0] == 1:
        return up
    return up[rows // (n_channels // up.shape[0])]


def _act_order(h: np.ndarray, starts: np.ndarray, stops: np.ndarray) -> np.ndarray:
    """Groups by decreasing input energy (the sum of ``diag(H)`` over a group's columns, averaged over the
    Hessians of a grouped convolution); ties keep the grouping's order."""
    cum = np.concatenate([[0.0], np.cumsum(np.diagonal(h, axis1=1, axis2=2).mean(axis=0))])
    return np.argsort(-(cum[stops] - cum[starts]), kind="stable")


def _solve_rows(w_rows: np.ndarray, h: np.ndarray, rows: np.ndarray, layout: GroupLayout, damp: float,
                block_size: int, choose: _Choose, bits: int, uniform: tuple[int, int],
                act_order: bool = False) -> np.ndarray:
    """Run the solver on ``rows`` of ``w_rows`` (group order); raises :class:`_NotPositiveDefinite`.

    ``act_order``: walk whole groups by decreasing input energy (:func:`_act_order`) instead of in the
    grouping's order; a group's columns stay together, so its metadata and grid are unchanged.
    """
    width, gpr, length = layout.width, layout.groups_per_row, layout.row_length
    starts = (np.arange(layout.rows_per_channel)[:, None] * length
              + np.arange(gpr)[None, :] * width).reshape(-1)
    stops = starts + np.tile(layout.lengths()[:gpr], layout.rows_per_channel)
    if not act_order:
        up = _row_factors(h, damp, rows, layout.n_channels)
        return _error_feedback(w_rows[rows], up, starts, stops, choose, block_size, bits, uniform)
    order = _act_order(h, starts, stops)
    perm = np.concatenate([np.arange(starts[j], stops[j]) for j in order])
    sizes = (stops - starts)[order]
    new_stops = np.cumsum(sizes)
    up = _row_factors(np.ascontiguousarray(h[:, perm][:, :, perm]), damp, rows, layout.n_channels)
    q_perm = _error_feedback(np.ascontiguousarray(w_rows[rows][:, perm]), up, new_stops - sizes, new_stops,
                             lambda j, cols: choose(int(order[j]), cols), block_size, bits, uniform)
    q = np.empty_like(q_perm)
    q[:, perm] = q_perm
    return q


def _prepare(weights: Any, kind: LayerKind | str | None, group_size: int, remainder: Any,
             hessian: Any) -> tuple[np.ndarray, GroupLayout, np.ndarray, np.ndarray]:
    w = _as_float_rows(weights, "weights")
    if w.ndim < 2:
        raise InputError(f"weights must be at least 2-d (out, in, ...), got shape {w.shape}")
    layout = make_layout(w.shape, infer_kind(w.shape) if kind is None else kind, group_size, remainder)
    h = _check_hessian(hessian, layout.n_channels, layout.rows_per_channel * layout.row_length)
    return w, layout, _group_rows(w, layout), h


@timed("solver")
def gptq_prune(
    weights: Any,
    config: PruneConfig,
    hessian: Any,
    kind: LayerKind | str | None = None,
    dense_channels: Any = None,
    damp: float = DEFAULT_DAMP,
    block_size: int = DEFAULT_BLOCK,
    rounded: Any = None,
    act_order: bool = False,
    greedy: PruneResult | None = None,
) -> PruneResult:
    """Binary-prune one layer with error feedback through its input Hessian.

    Args:
        weights: float weights in integer units (``W / scale`` per output channel), module layout
            (``kind`` as in :func:`~bitvert.pruning.prune`), within the signed ``config.weight_bits`` range.
        config: the method and its parameters; the method must have a :attr:`MethodSpec.grid`.
        hessian: ``Σ XᵀX`` of the layer's inputs, ``[n, n]`` or ``[G, n, n]`` in the grouping's column
            order (module docstring).
        kind: ``linear``, ``linear_in_out`` or ``conv``; ``None`` infers it from the rank.
        dense_channels: optional ``bool[K]``: channels kept exactly at ``rounded`` (sensitive channels).
        damp: dampening, a fraction of ``mean(diag H)`` in ``[0, 1]``.
        block_size: columns per lazy-update block (rounded to whole groups).
        rounded: the integers the greedy method would prune (default ``rint(weights)`` clipped to
            the symmetric range); sensitive channels keep them, and they are the greedy comparison.
        act_order: walk the groups by decreasing input energy (sum of ``diag H`` over the group's
            columns) instead of in column order, as GPTQ's act-order with static groups: a group's
            columns stay together, so its metadata is chosen as before.
        greedy: the greedy result ``prune(rounded, config, kind, dense_channels)`` when the caller already has
            it (the pipeline's scale search pruned every channel at its chosen scale); it is used as given, so
            it must be exactly that. Default: computed here.

    Returns:
        A :class:`~bitvert.pruning.PruneResult` whose ``original`` is ``rounded``. When ``H`` is not
        positive definite after dampening, the greedy result (with a logged warning).

    Raises:
        ConfigError: the method has no grid, or bad ``damp`` / ``block_size``.
        InputError: malformed weights or Hessian.
    """
    if not isinstance(config, PruneConfig):
        raise InputError(f"config must be a PruneConfig, got {type(config).__name__}")
    spec = config.spec
    if spec.grid is None:
        raise ConfigError(f"method {spec.name!r} declares no value grid (MethodSpec.grid), so the error-feedback "
                          "solver cannot run it; use solver='greedy'")
    _check_damp_block(damp, block_size)
    w, layout, w_rows, h = _prepare(weights, kind, int(config.group_size), config.remainder, hessian)
    bits = int(config.weight_bits)
    qmax = (1 << (bits - 1)) - 1
    if rounded is None:
        rounded = np.clip(np.rint(w), -qmax, qmax).astype(np.int16)
    if greedy is None:
        greedy = prune(rounded, config, kind=layout.kind, dense_channels=dense_channels)
    elif not isinstance(greedy, PruneResult) or greedy.weights.shape != w.shape or len(greedy.metadata) != \
            layout.n_groups:
        raise InputError(f"greedy must be the PruneResult of pruning the rounded weights of shape {w.shape} "
                         f"({layout.n_groups} groups), got {type(greedy).__name__}; pass greedy=None to compute it")
    md = greedy.metadata
    gpc = layout.groups_per_channel
    normal = md.pruned.reshape(layout.n_channels, gpc).any(axis=1)
    rows = np.flatnonzero(normal)
    if rows.size == 0:
        return greedy
    prunable = layout.prunable()[:gpc]
    g_lengths = layout.lengths()[:gpc]
    red = md.redundant.reshape(layout.n_channels, gpc)[rows].copy()
    const = md.constant.reshape(layout.n_channels, gpc)[rows].copy()
    width = layout.width

    def choose(j: int, cols: np.ndarray) -> np.ndarray | None:
        if not prunable[j]:
            return None
        vals = np.zeros((cols.shape[0], width), dtype=np.int16)
        vals[:, :cols.shape[1]] = np.clip(np.rint(cols), -qmax, qmax)
        lengths = np.full(cols.shape[0], g_lengths[j], dtype=np.int32)
        active = np.ones(cols.shape[0], dtype=bool)
        out, r, c = spec.kernel(vals, lengths, active, config)[:3]
        red[:, j], const[:, j] = r, c
        return _grid_by_chunks(spec.grid, vals, out, lengths, r, c, config)

    try:
        snapped = _solve_rows(w_rows, h, rows, layout, float(damp), block_size, choose, bits, (-qmax, qmax),
                              bool(act_order))
    except _NotPositiveDefinite as exc:
        log.warning("Hessian of a %s layer %s is not positive definite after dampening %g (%s); falling back to "
                    "the greedy %s", layout.kind.value, layout.shape, damp, exc, spec.name)
        return greedy
    greedy_rows = _group_rows(greedy.weights, layout)[rows]
    h_rows = h if h.shape[0] == 1 else h[rows // (layout.n_channels // h.shape[0])]
    w_sel = w_rows[rows]  # float64, checked by _prepare: compare both without converting them again
    e_new = _quadratic(snapped.astype(np.float64) - w_sel, h_rows)
    e_old = _quadratic(greedy_rows.astype(np.float64) - w_sel, h_rows)
    better = e_new <= e_old
    log.debug("gptq %s %s: solver kept on %d of %d channels, output error %.4g -> %.4g", spec.name, layout.shape,
              int(better.sum()), rows.size, float(e_old.sum()), float(np.where(better, e_new, e_old).sum()))
    keep = rows[better]
    out_rows = _group_rows(greedy.weights, layout).copy()
    out_rows[keep] = snapped[better]
    weights_out = _from_group_rows(out_rows, layout).astype(np.int16)
    redundant = md.redundant.reshape(layout.n_channels, gpc).copy()
    constant = md.constant.reshape(layout.n_channels, gpc).copy()
    redundant[keep], constant[keep] = red[better], const[better]
    redundant, constant = redundant.reshape(-1), constant.reshape(-1)
    groups = layout.group(weights_out)
    free = spec.count_free(groups, constant, layout.lengths(), bits, config.redundant_cap)
    meta = GroupMetadata(redundant=redundant.astype(np.uint8), constant=constant.astype(np.int16),
                         free_columns=free, pruned=md.pruned.copy())
    return replace(greedy, weights=weights_out, metadata=meta)


@timed("solver")
def gptq_round(
    weights: Any,
    bits: int,
    hessian: Any,
    kind: LayerKind | str | None = None,
    dense_channels: Any = None,
    damp: float = DEFAULT_DAMP,
    block_size: int = DEFAULT_BLOCK,
    act_order: bool = False,
) -> np.ndarray:
    """GPTQ on the plain integer grid ``[-(2**(bits-1) - 1), 2**(bits-1) - 1]`` (the ``rtn`` baseline).

    ``weights`` are float weights in integer units of that grid (``W / scale``), module layout;
    ``dense_channels`` rows are plainly rounded; ``act_order`` as in :func:`gptq_prune`. Per channel the
    result is kept only where its output error is not larger than plain rounding's. Falls back to plain
    rounding (with a logged warning) when ``H`` is not positive definite. Returns ``int16`` weights in the module layout.
    """
    if isinstance(bits, bool) or not isinstance(bits, int) or not 2 <= bits <= 8:
        raise ConfigError(f"bits must be an integer in 2..8, got {bits!r}")
    _check_damp_block(damp, block_size)
    w, layout, w_rows, h = _prepare(weights, kind, DEFAULT_BLOCK, "short", hessian)
    qmax = (1 << (bits - 1)) - 1
    plain = np.clip(np.rint(w), -qmax, qmax).astype(np.int16)
    rows = np.arange(layout.n_channels)
    if dense_channels is not None:
        dense = np.asarray(dense_channels, dtype=bool).reshape(-1)
        if dense.shape != (layout.n_channels,):
            raise InputError(f"dense_channels must be a bool array of shape ({layout.n_channels},), got {dense.shape}")
        rows = np.flatnonzero(~dense)
    if rows.size == 0:
        return plain
    try:
        snapped = _solve_rows(w_rows, h, rows, layout, float(damp), block_size, lambda j, cols: None, 8,
                              (-qmax, qmax), bool(act_order))
    except _NotPositiveDefinite as exc:
        log.warning("Hessian of a %s layer %s is not positive definite after dampening %g (%s); falling back to "
                    "round-to-nearest", layout.kind.value, layout.shape, damp, exc)
        return plain
    plain_rows = _group_rows(plain, layout)
    h_rows = h if h.shape[0] == 1 else h[rows // (layout.n_channels // h.shape[0])]
    w_sel = w_rows[rows]
    better = _quadratic(snapped.astype(np.float64) - w_sel, h_rows) <= _quadratic(
        plain_rows[rows].astype(np.float64) - w_sel, h_rows)
    plain_rows[rows[better]] = snapped[better]
    return _from_group_rows(plain_rows, layout).astype(np.int16)
