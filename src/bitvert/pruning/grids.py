"""The value grid of a pruned group: every integer a method can produce given the group's metadata.

A pruned group's metadata (redundant count, constant, or BitWave's kept magnitude columns) fixes a
set of integers its weights may take; any weight on that set is stored exactly by the codec at the
group's ``b - N`` columns. The greedy methods pick the metadata and round each weight once; the
error-feedback solver (:mod:`bitvert.pruning.gptq`) picks the metadata with the same search and
then snaps each weight to this set after earlier weights' errors were pushed onto it.

Each function maps a batch of groups to ``bool[n_groups, 2**b]``; column ``j`` stands for the value
``j - 2**(b-1)`` (the signed ``b``-bit range). Arguments: ``values`` (the groups the method's kernel
was given), ``pruned`` (its output), ``lengths``, ``redundant`` and ``constant`` (its metadata) and
the :class:`~bitvert.pruning.PruneConfig`. They are registered as :attr:`MethodSpec.grid`; a test
checks that every kernel output lies on the grid of its own metadata.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from bitvert.core._kernels import magnitude_or_kernel

__all__ = ["GridFn", "grid_values", "rounded_avg_grid", "zero_point_grid", "bitflip_grid"]

GridFn = Callable[[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, Any], np.ndarray]
"""``grid(values, pruned, lengths, redundant, constant, config) -> bool[n_groups, 2**b]``."""


def grid_values(bits: int) -> np.ndarray:
    """The values the grid columns stand for: ``[-2**(b-1), 2**(b-1) - 1]`` (``int64``)."""
    return np.arange(-(1 << (bits - 1)), 1 << (bits - 1), dtype=np.int64)


def _pow2(e: np.ndarray) -> np.ndarray:
    return np.left_shift(np.int64(1), np.maximum(e, 0).astype(np.int64))


def rounded_avg_grid(values: np.ndarray, pruned: np.ndarray, lengths: np.ndarray, redundant: np.ndarray,
                     constant: np.ndarray, config: Any) -> np.ndarray:
    """Rounded averaging: ``r`` redundant sign columns kept, the ``k = N - r`` low columns equal the
    group's pattern ``constant`` (no constraint on the low columns when ``k <= 0``)."""
    b, n = int(config.weight_bits), int(config.columns)
    v = grid_values(b)[None, :]
    r = redundant.astype(np.int64)[:, None]
    lim = _pow2(b - 1 - r)
    low = _pow2(n - r) - 1
    return (v >= -lim) & (v < lim) & ((v & low) == (constant.astype(np.int64)[:, None] & low))


def zero_point_grid(values: np.ndarray, pruned: np.ndarray, lengths: np.ndarray, redundant: np.ndarray,
                    constant: np.ndarray, config: Any) -> np.ndarray:
    """Zero-point shifting: stored ``T = w + c`` keeps the group's level and has its low columns zero.

    Paper semantics (two's complement): ``T`` in ``[-2**(b-1-r), 2**(b-1-r) - 1]`` and a multiple of
    ``2**(N-r)``. Code semantics (sign-magnitude, ``z`` leading zero magnitude planes): ``|T| <
    2**(b-1-z)``; when ``z < N`` also ``|T|`` a multiple of ``2**(N-z)`` up to the method's saturation
    ``(2**(b-N-1) - 1) * 2**(N-z)``. ``w`` itself stays in the signed ``b``-bit range.
    """
    b, n = int(config.weight_bits), int(config.columns)
    v = grid_values(b)[None, :]
    lev = redundant.astype(np.int64)[:, None]
    t = v + constant.astype(np.int64)[:, None]
    step = _pow2(n - lev)
    if config.semantics == "code":
        mag = np.abs(t)
        amax = ((np.int64(1) << (b - n - 1)) - 1) * step
        limit = np.where(lev < n, amax, _pow2(b - 1 - lev) - 1)
        return (mag <= limit) & (mag % step == 0)
    lim = _pow2(b - 1 - lev)
    return (t >= -lim) & (t < lim) & (t % step == 0)


def bitflip_grid(values: np.ndarray, pruned: np.ndarray, lengths: np.ndarray, redundant: np.ndarray,
                 constant: np.ndarray, config: Any) -> np.ndarray:
    """BitWave bit flip: sign-magnitude values whose magnitude uses only the group's kept columns.

    The method zeroes the ``redundant`` all-zero planes it counted and the ``N - redundant`` lowest
    planes; every other plane is non-zero in the input, so the kept columns are the input's
    magnitude-OR without its ``N - redundant`` low bits. ``-2**(b-1)`` has no code.
    """
    b, n = int(config.weight_bits), int(config.columns)
    v = grid_values(b)[None, :]
    mag_or = magnitude_or_kernel(np.ascontiguousarray(values, dtype=np.int16),
                                 np.ascontiguousarray(lengths, dtype=np.int32))
    kept = mag_or & ~(_pow2(n - redundant.astype(np.int64)) - 1)
    return ((np.abs(v) & ~kept[:, None]) == 0) & (v > -(1 << (b - 1)))

