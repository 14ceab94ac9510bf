"""Binary pruning of one integer weight tensor: :func:`prune`."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import numpy as np

from bitvert.core.bitplanes import NumberFormat, apply_neg_min_policy
from bitvert.core.grouping import GroupLayout, LayerKind, group_weights
from bitvert.core.validation import as_int_array
from bitvert.errors import InputError
from bitvert.pruning.config import PruneConfig
from bitvert.timing import timed

__all__ = ["GroupMetadata", "PruneResult", "prune", "prune_groups"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class GroupMetadata:
    """Per-group metadata of a pruned tensor (one entry per group, group order of the layout).

    Attributes:
        redundant: leading columns the method counted: sign-extension columns
            (rounded averaging, paper zero-point; capped at 3), leading all-zero
            magnitude planes (code zero-point; uncapped) or zero magnitude planes
            counted by the bit-flip scan.
        constant: rounded averaging: the ``k_low``-bit pattern written into the low
            columns; zero-point shifting: the offset ``c`` that was *added* before
            rounding (stored values are ``weights + c``; the hardware subtracts
            ``c * sum(A)``); bit flip: 0.
        free_columns: columns that need no per-weight storage, by the method's own
            definition (two's complement of the stored values for BBS methods; all-zero
            magnitude columns for bit flip).
        pruned: False for groups left unchanged on purpose (sensitive channels,
            ``remainder="dense"`` groups).
    """

    redundant: np.ndarray
    constant: np.ndarray
    free_columns: np.ndarray
    pruned: np.ndarray

    def __len__(self) -> int:
        return int(self.redundant.shape[0])


@dataclass(frozen=True)
class PruneResult:
    """Outcome of :func:`prune`.

    Attributes:
        weights: pruned integer weights, ``int16``, same shape as the input.
        original: the input weights as ``int16`` (after any ``neg_min`` clamping).
        metadata: per-group :class:`GroupMetadata`.
        layout: how the tensor was grouped.
        config: the configuration used.
        n_clamped: weights changed by the ``neg_min="clamp"`` policy before pruning.
    """

    weights: np.ndarray
    original: np.ndarray
    metadata: GroupMetadata
    layout: GroupLayout
    config: PruneConfig
    n_clamped: int = 0

    def groups(self) -> np.ndarray:
        """Pruned weights as ``[n_groups, width]`` (phantom entries 0)."""
        return self.layout.group(self.weights)

    def stored_groups(self) -> np.ndarray:
        """What the hardware stores per group: pruned weights + zero-point offset (``int16``)."""
        g = self.groups().astype(np.int16)
        if self.config.spec.offset:
            g = g + self.metadata.constant[:, None].astype(np.int16)
            g = np.where(self.layout.valid_mask(), g, 0).astype(np.int16)
        return g

    @property
    def free_columns(self) -> np.ndarray:
        """Free columns per group (``uint8[n_groups]``)."""
        return self.metadata.free_columns

    @property
    def sse(self) -> int:
        """Sum of squared integer errors against the input."""
        d = self.weights.astype(np.int64) - self.original.astype(np.int64)
        return int((d * d).sum())

    @property
    def mse(self) -> float:
        """Mean squared integer error per weight."""
        return self.sse / self.weights.size

    @property
    def changed_fraction(self) -> float:
        """Fraction of weights whose value changed."""
        return float(np.count_nonzero(self.weights != self.original)) / self.weights.size

    def summary(self) -> dict[str, Any]:
        """Scalar statistics (JSON-friendly)."""
        pruned = self.metadata.pruned
        free = self.metadata.free_columns.astype(np.int64)
        return {
            "config": self.config.to_dict(),
            "weights": int(self.weights.size),
            "groups": len(self.metadata),
            "pruned_groups": int(pruned.sum()),
            "mse": self.mse,
            "changed_fraction": self.changed_fraction,
            "min_free_columns_pruned": int(free[pruned].min()) if pruned.any() else None,
            "mean_free_columns": float(free.mean()),
            "n_clamped": self.n_clamped,
        }


def prune_groups(
    values: np.ndarray,
    lengths: np.ndarray,
    active: np.ndarray,
    config: PruneConfig,
) -> tuple[np.ndarray, GroupMetadata]:
    """Prune a padded group array ``values[n_groups, width]`` (int16) with ``config``.

    ``lengths`` gives the real weights per group, ``active`` which groups may change.
    Returns the pruned groups and their metadata. Inputs are assumed validated
    (use :func:`prune` for tensors).
    """
    spec = config.spec
    values = np.ascontiguousarray(values, dtype=np.int16)
    lengths = np.ascontiguousarray(lengths, dtype=np.int32)
    active = np.ascontiguousarray(active, dtype=np.bool_)
    result = spec.kernel(values, lengths, active, config)
    out, red, const = result[:3]
    if spec.kernel_free_columns:
        free = result[3]
    else:
        free = spec.count_free(out, const, lengths, int(config.weight_bits), config.redundant_cap)
    meta = GroupMetadata(redundant=red, constant=const, free_columns=free, pruned=active.copy())
    return out, meta


def prune(
    weights: Any,
    config: PruneConfig,
    kind: LayerKind | str | None = None,
    dense_channels: Any = None,
) -> PruneResult:
    """Binary-prune an integer weight tensor.

    Args:
        weights: integer weights (torch tensor, numpy array or nested list) in the
            signed ``config.weight_bits`` range.
        config: method, semantics, group size, number of columns to free, ...
        kind: ``"linear"`` (PyTorch ``(out, in)``), ``"linear_in_out"`` (``(in, out)``,
            HuggingFace ``Conv1D``) or ``"conv"``; ``None`` infers it from the rank.
        dense_channels: optional ``bool[out_channels]``; True marks channels to leave
            unpruned (the sensitive channels of global pruning).

    Returns:
        A :class:`PruneResult`; ``result.weights`` has the input's shape.

    Worked example (BBS paper Fig. 4, rounded averaging of one 4-weight group)::

        >>> r = prune([[13, -57, 20, -11]], PruneConfig("rounded_avg", group_size=4, columns=4))
        >>> r.weights.tolist(), int(r.metadata.redundant[0]), int(r.metadata.constant[0])
        ([[13, -59, 21, -11]], 1, 5)

    Fig. 5's zero-point example with the paper's search finds a better constant
    than the figure's -14::

        >>> r = prune([[81, -20, 1, -7]], PruneConfig("zero_point", group_size=4, columns=4))
        >>> r.weights.tolist(), int(r.metadata.constant[0]), r.sse
        ([[82, -22, 2, -6]], -26, 7)
    """
    if not isinstance(config, PruneConfig):
        raise InputError(f"config must be a PruneConfig, got {type(config).__name__}")
    bits = int(config.weight_bits)
    arr = as_int_array(weights, "weights", bits=bits)
    n_clamped = 0
    if config.number_format is NumberFormat.SIGN_MAGNITUDE:
        arr, n_clamped = apply_neg_min_policy(arr, bits, config.neg_min, name="weights")
        if n_clamped:
            log.warning("clamped %d weight(s) from %d to %d (neg_min=clamp)", n_clamped, -(1 << (bits - 1)),
                        -(1 << (bits - 1)) + 1)
    gw = group_weights(arr, kind, int(config.group_size), config.remainder)
    layout = gw.layout
    active = gw.prunable.copy()
    if dense_channels is not None:
        dense = np.asarray(dense_channels.numpy() if hasattr(dense_channels, "numpy") else dense_channels)
        if dense.dtype != np.bool_ or dense.shape != (layout.n_channels,):
            raise InputError(
                f"dense_channels must be a bool array of shape ({layout.n_channels},) (one flag per output "
                f"channel), got dtype {dense.dtype} and shape {dense.shape}"
            )
        active &= ~dense[layout.channel_of_group()]
    with timed("greedy"):
        out, meta = prune_groups(gw.values, gw.lengths, active, config)
    return PruneResult(
        weights=layout.ungroup(out),
        original=arr,
        metadata=meta,
        layout=layout,
        config=config,
        n_clamped=n_clamped,
    )
