"""Spatial mapping of a layer onto an output-stationary ``rows x cols`` PE array (BBS.md §10.2).

Array rows map to output channels, array columns to output pixels (along the
output width, then rows ``oh`` and batch serially) or to tokens. Each PE
reduces ``lanes`` weights per pass. The reduction of one output channel is cut
into *slices* of ``lanes`` weights:

* channel-major (``k*k <= C/groups``): at each kernel position ``(kh, kw)``
  the input channels are cut into ``ceil(C/lanes)`` slices;
* window-major (``k*k > C/groups``: the RGB input conv, the ViT patch
  embedding, depthwise): for each input channel the kernel window is cut into
  ``ceil(k*k/lanes)`` slices;
* linear / matmul: ``ceil(in/lanes)`` slices.

Ragged slices are padded with phantom zero weights (which cost nothing in any
data-dependent model and are counted as idle lanes in utilisation). Grouped
convolutions map each group separately; a depthwise layer therefore uses one
array row per tile, as in the published model.

Everything is vectorised: :func:`weight_slices` returns an ``[cout, n_slices,
lanes]`` array, and :func:`row_tile_max` reduces a per-``(channel, slice)``
cost to per-``(row tile, slice)`` maxima.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from bitvert.hardware.workload import LayerType, LayerWorkload, ceil_div

__all__ = ["Mapping", "map_layer", "weight_slices", "per_weight_slices", "row_tile_max"]


@dataclass(frozen=True)
class Mapping:
    """How one layer maps onto an array.

    Attributes:
        rows, cols, lanes: array rows (output channels), columns (pixels/tokens), weights per PE pass.
        window_major: the reduction is cut along the kernel window.
        n_slices: reduction slices per output channel.
        row_tiles: output-channel tiles (per conv group, summed over groups).
        spatial_tiles: pixel/token tiles (times batch and repeats).
        tiles: ``row_tiles * n_slices * spatial_tiles``.
        utilisation: real MACs / (tiles * rows * cols * lanes).
    """

    rows: int
    cols: int
    lanes: int
    window_major: bool
    n_slices: int
    row_tiles: int
    spatial_tiles: int
    tiles: int
    utilisation: float


def _window_major(layer: LayerWorkload) -> bool:
    if not layer.is_conv:
        return False
    kh, kw = layer.kernel
    return kh * kw > layer.in_channels_per_group


def _spatial_tiles(layer: LayerWorkload, cols: int) -> int:
    if layer.is_conv:
        oh, ow = layer.output_hw
        return ceil_div(ow, cols) * oh * layer.batch * layer.repeats
    return ceil_div(layer.batch * layer.tokens, cols) * layer.repeats


def map_layer(layer: LayerWorkload, rows: int, cols: int, lanes: int) -> Mapping:
    """Tile counts and mapping utilisation of ``layer`` on a ``rows x cols`` array of ``lanes``-wide PEs."""
    window = _window_major(layer)
    if layer.is_conv:
        kh, kw = layer.kernel
        c = layer.in_channels_per_group
        n_slices = c * ceil_div(kh * kw, lanes) if window else kh * kw * ceil_div(c, lanes)
        groups = layer.groups
    else:
        n_slices = ceil_div(layer.in_channels_per_group, lanes)
        groups = 1
    cout_g = layer.out_channels // groups
    row_tiles = groups * ceil_div(cout_g, rows)
    spatial = _spatial_tiles(layer, cols)
    tiles = row_tiles * n_slices * spatial
    util = layer.macs / float(tiles * rows * cols * lanes)
    return Mapping(rows, cols, lanes, window, n_slices, row_tiles, spatial, tiles, util)


def per_weight_slices(values: np.ndarray, layer: LayerWorkload, lanes: int) -> np.ndarray:
    """Rearrange a per-weight array (same shape as ``layer.weights``) into ``[cout, n_slices, lanes]``.

    Phantom (padding) positions are 0.
    """
    v = values
    cout = v.shape[0]
    if layer.is_conv:
        c = v.shape[1]
        kk = v.shape[2] * v.shape[3]
        if _window_major(layer):
            r = v.reshape(cout, c, kk)
            pad = ceil_div(kk, lanes) * lanes - kk
        else:
            r = v.reshape(cout, c, kk).transpose(0, 2, 1)
            pad = ceil_div(c, lanes) * lanes - c
    else:
        r = v.reshape(cout, 1, v.shape[1])
        pad = ceil_div(v.shape[1], lanes) * lanes - v.shape[1]
    if pad:
        r = np.concatenate([r, np.zeros(r.shape[:2] + (pad,), dtype=v.dtype)], axis=2)
    return np.ascontiguousarray(r).reshape(cout, -1, lanes)


def weight_slices(layer: LayerWorkload, lanes: int) -> np.ndarray:
    """The layer's weights as ``int16[cout, n_slices, lanes]`` (phantom weights are 0)."""
    return per_weight_slices(layer.weights, layer, lanes)


def row_tile_max(cost: np.ndarray, layer: LayerWorkload, rows: int, order: np.ndarray | None = None) -> np.ndarray:
    """Per-``(row tile, slice)`` maximum of a per-``(channel, slice)`` cost.

    Channels are packed ``rows`` at a time within each conv group, in the
    given ``order`` (a permutation of the channels of each group, as global
    indices) or in natural order. Padding rows cost 0. Returns
    ``[row_tiles, n_slices]``.
    """
    cout, n_slices = cost.shape
    groups = layer.groups if layer.kind in (LayerType.CONV, LayerType.DEPTHWISE) else 1
    if order is not None:
        cost = cost[order]
    cout_g = cout // groups
    per_group = ceil_div(cout_g, rows)
    c = cost.reshape(groups, cout_g, n_slices)
    pad = per_group * rows - cout_g
    if pad:
        c = np.concatenate([c, np.zeros((groups, pad, n_slices), dtype=c.dtype)], axis=1)
    return c.reshape(groups * per_group, rows, n_slices).max(axis=1)
