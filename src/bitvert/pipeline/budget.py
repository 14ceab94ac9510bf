"""Output-aware channel scores and the bit budget (``sensitivity="output_error"``, ``target_bits``).

Both weigh a channel's weight error by the layer's input Hessian ``H = Σ XᵀX``
(:mod:`bitvert.pipeline.calibration`): pruning output channel ``k`` changes its weight row by ``e_k``
(float units: ``(q - prune(q)) · scale_k``, the row in the grouping's column order) and the layer's
outputs over the calibration inputs by ``Σ‖e_k x‖² = e_k H e_kᵀ``.

* **output_error** scores channel ``k`` with ``e_k H e_kᵀ`` at the preset's ``N`` (all channels pruned
  greedily by the preset's method, or re-quantized at ``8 - N`` bits for ``rtn``); Algorithm 2's global
  top-β selection and per-layer rounding then run unchanged (:func:`select_sensitive`).
* **target_bits** chooses the free columns ``N`` of every pruned layer among :data:`BUDGET_COLUMNS` so the
  model's effective bits (the same count :class:`ModelPruneReport` reports; INT8 layers and sensitive
  channels at 8 bits) reach the budget with the smallest summed output error: per layer, the lower convex
  hull of (bits saved, error) over its allowed ``N``; one global greedy over the hull segments by error per
  saved bit; the segment that crosses the budget is applied to only part of that layer's channels, those
  with the least error per saved bit, and the last of those channels moves only as many columns as the
  budget still needs, so the budget is met to within one column of one channel (below it, never above).
  Every layer has one ``N`` except at most one, which has two (``N`` and the next hull point's; rarely a
  third, for that last channel), recorded per channel in ``channel_bits`` (stored bits ``8 - N``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from bitvert.core.grouping import GroupLayout, make_layout
from bitvert.errors import ConfigError, InputError
from bitvert.pipeline.presets import BUDGET_COLUMNS, PipelinePreset
from bitvert.pipeline.quantize import quantize_weight
from bitvert.pruning import GroupMetadata, PruneConfig, PruneResult, prune

__all__ = ["channel_group_bits", "prune_by_columns", "channel_output_errors", "allowed_columns", "LayerBudget",
           "layer_budget", "allocate_columns", "budget_range", "check_target_bits"]

logger = logging.getLogger(__name__)


def channel_group_bits(layout: GroupLayout, active: np.ndarray, stored_bits: int | np.ndarray, full_bits: int,
                       meta_bits: int) -> np.ndarray:
    """Weight bits of each output channel by the effective-bits rule (``int64[K]``).

    A pruned (``active``) group costs ``stored_bits · length + meta_bits``, any other group
    ``full_bits · length``; ``stored_bits`` is one value or one per group. The pipeline's layer and
    model effective bits are sums of this.
    """
    lengths = layout.lengths().astype(np.int64)
    per_group = np.where(active, lengths * np.asarray(stored_bits, dtype=np.int64) + meta_bits, lengths * full_bits)
    return per_group.reshape(layout.n_channels, layout.groups_per_channel).sum(axis=1)


def _channel_take(arrays: Sequence[np.ndarray], which: np.ndarray, axis: int) -> np.ndarray:
    """``out[..k..] = arrays[which[k]][..k..]`` along ``axis`` (one array per choice)."""
    shape = [1] * arrays[0].ndim
    shape[axis] = -1
    out = arrays[0].copy()
    for i, a in enumerate(arrays[1:], start=1):
        out = np.where((which == i).reshape(shape), a, out)
    return out


def prune_by_columns(
    q: np.ndarray, kind: str, preset: PipelinePreset, bits: int, sensitive: np.ndarray, columns: np.ndarray,
    out_axis: int = 0, prune_fn: Callable[[PruneConfig, np.ndarray], PruneResult] | None = None,
) -> tuple[np.ndarray, GroupMetadata, GroupLayout]:
    """Binary pruning of the normal channels of ``q``, channel ``k`` with ``columns[k]`` free columns.

    One pruning call per distinct ``N`` (channels at other ``N`` are passed as dense), merged per
    channel; a layer with one ``N`` is exactly one call. Rows are pruned independently by every
    solver (greedy: per group; ``gptq``: error feedback along a row), so the merge is exact.

    Args:
        prune_fn: ``prune_fn(config, dense_channels) -> PruneResult``; default the greedy
            :func:`bitvert.pruning.prune` of ``q`` (the ``gptq`` solver passes its own).

    Returns:
        ``(weights, metadata, layout)`` as a :class:`~bitvert.pruning.PruneResult` would hold them.
    """
    normal = ~np.asarray(sensitive, dtype=bool)
    columns = np.asarray(columns, dtype=np.int64)
    values = np.unique(columns[normal]) if normal.any() else np.array([preset.columns])
    if prune_fn is None:
        def prune_fn(config: PruneConfig, dense: np.ndarray) -> PruneResult:
            return prune(q, config, kind=kind, dense_channels=dense)

    results = [prune_fn(preset.prune_config(bits, columns=int(n)), ~(normal & (columns == n))) for n in values]
    if len(results) == 1:
        r = results[0]
        return r.weights, r.metadata, r.layout
    which = np.searchsorted(values, np.where(normal, columns, values[0]))
    lay = results[0].layout
    g_which = which[lay.channel_of_group()]
    md = GroupMetadata(**{key: _channel_take([np.asarray(getattr(r.metadata, key)) for r in results], g_which, 0)
                          for key in ("redundant", "constant", "free_columns", "pruned")})
    weights = _channel_take([np.asarray(r.weights) for r in results], which, out_axis)
    return weights, md, lay


def allowed_columns(preset: PipelinePreset, bits: int, layout: GroupLayout) -> list[int]:
    """The ``N`` of :data:`BUDGET_COLUMNS` a layer may get: at least 2 stored bits for ``rtn``, and for group
    methods groups long enough to save bits (``N · width > metadata``) and a config the method accepts."""
    out = []
    for n in BUDGET_COLUMNS:
        if n >= bits:
            continue
        if preset.method == "rtn":
            if bits - n >= 2:
                out.append(n)
            continue
        if n * layout.width <= preset.metadata_bits_per_group:
            continue
        try:
            preset.prune_config(bits, columns=n)
        except (ConfigError, InputError, ValueError):
            continue
        out.append(n)
    return out


def _quadratic_rows(rows: np.ndarray, h: torch.Tensor) -> np.ndarray:
    """``e_k H_k e_kᵀ`` per row of ``rows`` (``[K, L]``); ``h`` is ``[L, L]`` or ``[groups, L, L]``."""
    hn = h.detach().to(torch.float64).cpu().numpy()
    if hn.ndim == 2:
        if hn.shape != (rows.shape[1], rows.shape[1]):
            raise InputError(f"Hessian of shape {hn.shape} does not fit weight rows of length {rows.shape[1]}")
        return np.einsum("ki,ki->k", rows @ hn, rows)
    k, length = rows.shape
    if hn.ndim != 3 or hn.shape[1:] != (length, length) or k % hn.shape[0]:
        raise InputError(f"Hessian of shape {hn.shape} does not fit {k} weight rows of length {length}")
    r = rows.reshape(hn.shape[0], k // hn.shape[0], length)
    return np.einsum("gki,gki->gk", np.matmul(r, hn), r).reshape(k)


def channel_output_errors(
    q: torch.Tensor, scale: torch.Tensor, weight: torch.Tensor, kind: str, out_axis: int, h: torch.Tensor,
    preset: PipelinePreset, bits: int, columns: Sequence[int], granularity: str = "per_channel",
) -> dict[int, np.ndarray]:
    """Output error ``e_k H e_kᵀ`` of pruning each output channel with ``N`` free columns, for each ``N``.

    Args:
        q, scale: INT8 weights (module layout) and per-channel scales.
        weight: float weights (``rtn`` re-quantizes them).
        kind, out_axis: grouping kind and output axis of the weight.
        h: the layer's input Hessian in the grouping's column order (:func:`collect_hessians`).
        preset: method, g, semantics; ``bits``: weight bits; ``columns``: the ``N`` to evaluate.

    Returns:
        ``{N: float64[K]}`` in float units (``(ΔW x)²`` summed over the calibration inputs).
    """
    layout = make_layout(tuple(q.shape), kind, preset.group_size, preset.remainder)
    q_np = q.numpy()
    k = layout.n_channels
    shape = [1] * q.ndim
    shape[out_axis] = -1
    s = scale.detach().to(torch.float64).numpy().reshape(shape)
    out = {}
    for n in columns:
        if preset.method == "rtn":
            q_low, s_low = quantize_weight(weight, bits - int(n), out_axis, granularity)  # type: ignore[arg-type]
            e = q_np * s - q_low.numpy() * s_low.to(torch.float64).numpy().reshape(shape)
        else:
            res = prune(q_np, preset.prune_config(bits, columns=int(n)), kind=kind)
            e = (q_np.astype(np.float64) - np.asarray(res.weights, dtype=np.float64)) * s
        rows = layout.to_rows(e).reshape(k, -1)
        out[int(n)] = _quadratic_rows(rows, h)
    return out


@dataclass
class LayerBudget:
    """What the allocation knows about one pruned layer.

    Attributes:
        name: layer name.
        columns: the allowed ``N``, ascending.
        errors: ``float64[len(columns), K]`` output error per channel at each ``N`` (0 for sensitive channels).
        bits: ``int64[len(columns), K]`` weight bits per channel at each ``N`` (the effective-bits rule).
        dense_bits: bits of one channel kept dense (a sensitive channel).
    """

    name: str
    columns: list[int]
    errors: np.ndarray
    bits: np.ndarray
    dense_bits: int = 0


def layer_budget(name: str, layout: GroupLayout, preset: PipelinePreset, bits: int, sensitive: np.ndarray,
                 errors: Mapping[int, np.ndarray] | None, columns: Sequence[int]) -> LayerBudget:
    """Per-channel errors and bits of one layer at each allowed ``N`` (sensitive channels: 8 bits, no error).

    ``errors=None``: only the bits (errors 0), e.g. for :func:`budget_range` before any Hessian exists."""
    if errors is None:
        errors = {n: np.zeros(layout.n_channels) for n in columns}
    normal = ~np.asarray(sensitive, dtype=bool)
    rows = []
    for n in columns:
        if preset.method == "rtn":
            per_ch = layout.n_weights // layout.n_channels
            rows.append(np.where(normal, per_ch * (bits - n), per_ch * bits).astype(np.int64))
        else:
            active = layout.prunable() & normal[layout.channel_of_group()]
            rows.append(channel_group_bits(layout, active, bits - n, bits, preset.metadata_bits_per_group))
    err = np.stack([np.where(normal, errors[n], 0.0) for n in columns]) if columns else np.zeros((0, layout.n_channels))
    return LayerBudget(name=name, columns=list(columns), errors=err,
                       bits=np.stack(rows) if rows else np.zeros((0, layout.n_channels), np.int64),
                       dense_bits=layout.n_weights // layout.n_channels * bits)


def _hull(x: np.ndarray, y: np.ndarray) -> list[int]:
    """Indices of the lower convex hull of points sorted by strictly increasing ``x``, from the first point."""
    hull: list[int] = []
    for i in range(len(x)):
        while len(hull) >= 2:
            a, b = hull[-2], hull[-1]
            # drop b when it lies on or above the segment a -> i
            if (y[b] - y[a]) * (x[i] - x[a]) >= (y[i] - y[a]) * (x[b] - x[a]):
                hull.pop()
            else:
                break
        hull.append(i)
    return hull


def _column_span(layers: Sequence[LayerBudget]) -> tuple[int, int]:
    n_min = min((l.columns[0] for l in layers if l.columns), default=0)
    n_max = max((l.columns[-1] for l in layers if l.columns), default=0)
    return n_min, n_max


def check_target_bits(target_bits: float, reach: tuple[float, float], layers: Sequence[LayerBudget],
                      bound: bool = False) -> None:
    """Raise :class:`ConfigError` naming the range when ``target_bits`` is outside ``reach = (lo, hi)``.

    ``bound``: the range is an outer bound (the sensitive channels are not chosen yet), not the exact one.
    """
    lo, hi = reach
    if lo - 1e-12 <= target_bits <= hi + 1e-12:
        return
    n_min, n_max = _column_span(layers)
    what = ("a range holding every effective bits" if bound else "the effective bits")
    raise ConfigError(
        f"target_bits={target_bits:g} is outside [{lo:.4f}, {hi:.4f}], {what} this model reaches with N in "
        f"{n_min}..{n_max} per pruned layer (INT8 layers and sensitive channels stay at 8 bits); choose a "
        "target in that range")


def budget_range(layers: Sequence[LayerBudget], fixed_bits: int, n_weights: int,
                 n_sensitive: tuple[int, int] | None = None) -> tuple[float, float]:
    """The effective bits a bit budget can reach: ``(lowest, highest)``, from shapes and the preset alone.

    Every pruned layer at its largest allowed ``N`` gives the lowest, at its smallest the highest (what
    :func:`allocate_columns` can reach; the errors of ``layers`` are not used).

    Args:
        layers: :func:`layer_budget` of every pruned layer, with its sensitive channels when they are known.
        fixed_bits, n_weights: as in :func:`allocate_columns`.
        n_sensitive: when the sensitive channels are not chosen yet (``layers`` were built without them):
            ``(fewest, most)`` channels the selection may keep dense. The range is then an outer bound: the
            fewest placed where they cost least at the largest ``N``, the most where they cost most at the
            smallest ``N``.
    """
    used = [l for l in layers if l.columns]
    low = np.concatenate([l.bits[-1] for l in used]) if used else np.zeros(0, np.int64)
    high = np.concatenate([l.bits[0] for l in used]) if used else np.zeros(0, np.int64)
    lo_total, hi_total = int(low.sum()), int(high.sum())
    if n_sensitive is not None and used:
        per_ch = np.concatenate([np.full(l.bits.shape[1], l.dense_bits, np.int64) for l in used])
        fewest, most = (max(0, min(int(n), per_ch.size)) for n in n_sensitive)
        lo_total += int(np.sort(per_ch - low)[:fewest].sum())
        hi_total += int(np.sort(per_ch - high)[::-1][:most].sum())
    return (fixed_bits + lo_total) / n_weights, (fixed_bits + hi_total) / n_weights


def allocate_columns(layers: Sequence[LayerBudget], fixed_bits: int, n_weights: int, target_bits: float
                     ) -> dict[str, np.ndarray]:
    """Choose ``N`` per channel of every layer to reach ``target_bits`` with the least summed error.

    Args:
        layers: the pruned layers' candidates (:func:`layer_budget`).
        fixed_bits: bits of the quantized layers that are not allocated (INT8 layers).
        n_weights: weights of all quantized layers (the effective-bits denominator).
        target_bits: the budget in bits per weight.

    Returns:
        ``{layer name: int64[K]}`` free columns per channel (sensitive channels get the layer's first ``N``).

    Raises:
        ConfigError: the budget is outside what ``N`` in :data:`BUDGET_COLUMNS` reaches on this model.
    """
    target_total = float(target_bits) * n_weights
    start = np.array([l.bits[0].sum() if l.columns else 0 for l in layers], dtype=np.int64)
    total0 = int(fixed_bits + start.sum())
    segs = []  # (slope, layer, from index, to index, bits saved)
    min_total = total0
    for li, l in enumerate(layers):
        if len(l.columns) < 2:
            continue
        tb = l.bits.sum(axis=1)
        te = l.errors.sum(axis=1)
        x = (tb[0] - tb).astype(np.float64)
        if not (np.diff(x) > 0).all():
            continue
        idx = _hull(x, te)
        min_total -= int(tb[0] - tb[idx[-1]])
        for a, b in zip(idx[:-1], idx[1:]):
            segs.append(((te[b] - te[a]) / (x[b] - x[a]), li, a, b, int(tb[a] - tb[b])))
    check_target_bits(target_bits, (min_total / n_weights, total0 / n_weights), layers)
    choice = [np.zeros(l.bits.shape[1], dtype=np.int64) for l in layers]  # index into l.columns per channel
    need = total0 - target_total
    segs.sort(key=lambda s: (s[0], s[1], s[2]))
    for slope, li, a, b, saved in segs:
        if need <= 0:
            break
        l = layers[li]
        if saved <= need:
            choice[li][:] = b
            need -= saved
            continue
        d_bits = (l.bits[a] - l.bits[b]).astype(np.float64)
        d_err = l.errors[b] - l.errors[a]
        movable = d_bits > 0
        ratio = np.where(movable, d_err / np.where(movable, d_bits, 1.0), np.inf)
        order = np.argsort(ratio, kind="stable")
        cum = np.cumsum(d_bits[order])
        m = int(np.searchsorted(cum, need - 1e-9)) + 1
        choice[li][order[:m - 1]] = b
        rest = need - (float(cum[m - 2]) if m >= 2 else 0.0)
        last = order[m - 1]  # the last channel moves only as far as the budget needs (any N up to b)
        j = next(j for j in range(a + 1, b + 1) if l.bits[a, last] - l.bits[j, last] >= rest - 1e-9)
        choice[li][last] = j
        need = rest - float(l.bits[a, last] - l.bits[j, last])
        logger.info("bit budget: layer %s splits: %d of %d channels to N=%d, the rest N=%d", l.name, m,
                    len(order), l.columns[b], l.columns[a])
    return {l.name: np.asarray(l.columns, dtype=np.int64)[choice[i]] if l.columns else choice[i]
            for i, l in enumerate(layers)}
