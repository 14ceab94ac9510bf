"""Weight grouping: which ``g`` weights share one metadata entry.

A *group* is ``g`` weights of one output channel that meet the same ``g``
activations. bitvert works on a rectangular ``[n_groups, g]`` array plus a
per-group ``lengths`` vector, so remainders never need a Python loop.

Layouts (BBS.md §5):

* ``LayerKind.LINEAR`` -- PyTorch ``(out, in)``: a group is ``g`` consecutive
  input features of one output row.
* ``LayerKind.LINEAR_IN_OUT`` -- ``(in, out)`` storage (HuggingFace ``Conv1D``,
  Torch2Chip dumps): transposed to ``(out, in)`` first.
* ``LayerKind.CONV`` -- ``(K, C/groups, kh, kw)``: permuted to ``(K, kh, kw, C)``;
  a group is ``g`` consecutive input channels at one ``(k, kh, kw)``. When a
  filter sees a single input channel (depthwise), the reduction runs over the
  kernel window instead, so a group is ``g`` consecutive window positions of
  one filter (project decision, docs/decisions.md).

Group order: output channel outermost, then (kh, kw), then the channel block.

Remainders (``C`` not a multiple of ``g``; [OPEN] in the spec), chosen by
:class:`RemainderPolicy`:

* ``short`` (default) -- the last group of a row is shorter and has its own
  metadata. Internally it is padded with *phantom* entries that every
  statistic, every pruning rule and storage ignore (``lengths`` says how many
  entries are real).
* ``dense`` -- remainder groups are marked not prunable and stay at full precision.
* ``error`` -- raise.

A row shorter than ``g`` (e.g. the RGB input convolution, ``C = 3``) is one
group of that length under every policy, as in the published code.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from typing import Any

import numpy as np

from bitvert.core.validation import as_int_array, check_positive_int
from bitvert.errors import InputError

__all__ = ["LayerKind", "RemainderPolicy", "GroupLayout", "GroupedWeights", "group_weights", "out_channels_first"]


class LayerKind(str, Enum):
    """Storage layout of a weight tensor."""

    LINEAR = "linear"
    """``(out, in)``, PyTorch ``nn.Linear``."""
    LINEAR_IN_OUT = "linear_in_out"
    """``(in, out)``, HuggingFace ``Conv1D`` and similar; transposed before grouping."""
    CONV = "conv"
    """``(out, in/groups, kh, kw)``, PyTorch ``nn.Conv2d`` (1-d and 3-d kernels too)."""


class RemainderPolicy(str, Enum):
    """What to do when a row's reduction length is not a multiple of the group size."""

    SHORT = "short"
    DENSE = "dense"
    ERROR = "error"


@dataclass(frozen=True)
class GroupLayout:
    """How a weight tensor maps to ``[n_groups, group_size]`` and back.

    Attributes:
        shape: original tensor shape.
        kind: storage layout.
        group_size: ``g``.
        remainder: remainder policy used.
        n_channels: number of output channels ``K``.
        rows_per_channel: reduction rows per output channel (``kh*kw`` for a conv grouped along channels).
        row_length: weights per reduction row (``C`` or the window size).
        groups_per_row: ``ceil(row_length / g)``.
        along_window: True when a conv is grouped along its kernel window (depthwise).
    """

    shape: tuple[int, ...]
    kind: LayerKind
    group_size: int
    remainder: RemainderPolicy
    n_channels: int
    rows_per_channel: int
    row_length: int
    groups_per_row: int
    along_window: bool = False

    @property
    def n_rows(self) -> int:
        return self.n_channels * self.rows_per_channel

    @property
    def n_groups(self) -> int:
        return self.n_rows * self.groups_per_row

    @property
    def groups_per_channel(self) -> int:
        return self.rows_per_channel * self.groups_per_row

    @property
    def n_weights(self) -> int:
        return int(np.prod(self.shape))

    @property
    def width(self) -> int:
        """Columns of the padded group array: ``g``, or the row length when a row is shorter."""
        return min(self.group_size, self.row_length)

    def lengths(self) -> np.ndarray:
        """Number of real weights in each group (``int32[n_groups]``)."""
        w = self.width
        out = np.full(self.n_groups, w, dtype=np.int32)
        last = self.row_length - (self.groups_per_row - 1) * w
        if last != w:
            out[self.groups_per_row - 1 :: self.groups_per_row] = last
        return out

    def prunable(self) -> np.ndarray:
        """Which groups a pruning method may change (``bool[n_groups]``)."""
        lengths = self.lengths()
        if self.remainder is RemainderPolicy.DENSE and self.row_length > self.group_size:
            return lengths == self.width
        return np.ones(self.n_groups, dtype=bool)

    def channel_of_group(self) -> np.ndarray:
        """Output channel of each group (``int32[n_groups]``)."""
        return np.repeat(np.arange(self.n_channels, dtype=np.int32), self.groups_per_channel)

    def valid_mask(self) -> np.ndarray:
        """``bool[n_groups, width]``: True for real weights, False for phantom padding."""
        return np.arange(self.width, dtype=np.int32)[None, :] < self.lengths()[:, None]

    def to_rows(self, w: np.ndarray) -> np.ndarray:
        """Original tensor -> ``[n_rows, row_length]`` reduction rows."""
        if self.kind is LayerKind.LINEAR:
            return w.reshape(self.n_rows, self.row_length)
        if self.kind is LayerKind.LINEAR_IN_OUT:
            return out_channels_first(w, self.kind)
        if self.along_window:
            return w.reshape(self.n_rows, self.row_length)
        # (K, C, *kernel) -> (K, *kernel, C)
        perm = (0,) + tuple(range(2, w.ndim)) + (1,)
        return np.ascontiguousarray(w.transpose(perm)).reshape(self.n_rows, self.row_length)

    def from_rows(self, rows: np.ndarray) -> np.ndarray:
        """Inverse of :meth:`to_rows`."""
        if self.kind is LayerKind.LINEAR:
            return rows.reshape(self.shape)
        if self.kind is LayerKind.LINEAR_IN_OUT:
            return np.ascontiguousarray(rows.T)
        if self.along_window:
            return rows.reshape(self.shape)
        k, c = self.shape[0], self.shape[1]
        kernel = self.shape[2:]
        t = rows.reshape((k,) + kernel + (c,))
        perm = (0, t.ndim - 1) + tuple(range(1, t.ndim - 1))
        return np.ascontiguousarray(t.transpose(perm))

    def group(self, w: np.ndarray) -> np.ndarray:
        """Original tensor -> ``[n_groups, width]`` (phantom entries are 0)."""
        rows = self.to_rows(w)
        width = self.width
        padded_len = self.groups_per_row * width
        if padded_len != self.row_length:
            pad = np.zeros((self.n_rows, padded_len), dtype=rows.dtype)
            pad[:, : self.row_length] = rows
            rows = pad
        return rows.reshape(self.n_groups, width)

    def ungroup(self, groups: np.ndarray) -> np.ndarray:
        """Inverse of :meth:`group`; phantom entries are dropped."""
        if groups.shape != (self.n_groups, self.width):
            raise InputError(
                f"groups has shape {tuple(groups.shape)}, expected {(self.n_groups, self.width)} for this layout"
            )
        rows = groups.reshape(self.n_rows, self.groups_per_row * self.width)[:, : self.row_length]
        return self.from_rows(np.ascontiguousarray(rows))

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly description (recorded with every output)."""
        return {
            "shape": list(self.shape),
            "kind": self.kind.value,
            "group_size": self.group_size,
            "remainder": self.remainder.value,
            "along_window": self.along_window,
        }


@dataclass(frozen=True)
class GroupedWeights:
    """A weight tensor cut into groups: ``values[n_groups, width]`` plus its :class:`GroupLayout`."""

    values: np.ndarray
    layout: GroupLayout
    lengths: np.ndarray = field(repr=False)
    prunable: np.ndarray = field(repr=False)

    def ungroup(self, values: np.ndarray | None = None) -> np.ndarray:
        """Back to the original layout (of ``values`` when given, else of the stored values)."""
        return self.layout.ungroup(self.values if values is None else values)


def out_channels_first(w: np.ndarray, kind: LayerKind | str) -> np.ndarray:
    """A weight in PyTorch's output-channels-first orientation: ``(in, out)`` storage
    (``linear_in_out``, HuggingFace ``Conv1D``) transposed, every other kind unchanged.

    The one place bitvert turns ``Conv1D`` weights around.

    >>> out_channels_first(np.zeros((3, 5)), "linear_in_out").shape
    (5, 3)
    """
    return np.ascontiguousarray(w.T) if LayerKind(kind) is LayerKind.LINEAR_IN_OUT else w


def make_layout(
    shape: tuple[int, ...],
    kind: LayerKind | str,
    group_size: int = 32,
    remainder: RemainderPolicy | str = RemainderPolicy.SHORT,
) -> GroupLayout:
    """Build the :class:`GroupLayout` for a tensor of ``shape``; validates shape and kind."""
    group_size = check_positive_int(group_size, "group_size", minimum=2)
    try:
        kind = LayerKind(kind)
    except ValueError:
        raise InputError(
            f"kind must be one of {[k.value for k in LayerKind]}, got {kind!r}"
        ) from None
    try:
        remainder = RemainderPolicy(remainder)
    except ValueError:
        raise InputError(
            f"remainder must be one of {[r.value for r in RemainderPolicy]}, got {remainder!r}"
        ) from None
    shape = tuple(int(s) for s in shape)
    if any(s == 0 for s in shape):
        raise InputError(f"weights are empty (shape {shape})")
    along_window = False
    if kind in (LayerKind.LINEAR, LayerKind.LINEAR_IN_OUT):
        if len(shape) != 2:
            raise InputError(f"a {kind.value} weight must be 2-d, got shape {shape}")
        n_channels, row_length = (shape[0], shape[1]) if kind is LayerKind.LINEAR else (shape[1], shape[0])
        rows_per_channel = 1
    else:
        if len(shape) < 3:
            raise InputError(f"a conv weight must be (out, in/groups, *kernel), got shape {shape}")
        n_channels, c_in = shape[0], shape[1]
        window = int(np.prod(shape[2:]))
        if c_in == 1 and window > 1:
            along_window = True
            rows_per_channel, row_length = 1, window
        else:
            rows_per_channel, row_length = window, c_in
    groups_per_row = -(-row_length // group_size)
    if remainder is RemainderPolicy.ERROR and row_length > group_size and row_length % group_size:
        raise InputError(
            f"reduction length {row_length} of a {kind.value} weight {shape} is not a multiple of "
            f"group_size={group_size}; choose remainder='short' or 'dense', or another group size"
        )
    return GroupLayout(
        shape=shape,
        kind=kind,
        group_size=group_size,
        remainder=remainder,
        n_channels=n_channels,
        rows_per_channel=rows_per_channel,
        row_length=row_length,
        groups_per_row=groups_per_row,
        along_window=along_window,
    )


def infer_kind(shape: tuple[int, ...]) -> LayerKind:
    """Guess the layout from the rank: 2-d -> ``LINEAR`` (PyTorch ``(out, in)``), 3-d+ -> ``CONV``."""
    if len(shape) == 2:
        return LayerKind.LINEAR
    if len(shape) >= 3:
        return LayerKind.CONV
    raise InputError(
        f"cannot infer the layer kind of a weight with shape {tuple(shape)}; pass kind='linear' or 'conv' "
        "(a 1-d tensor can be reshaped to (1, n))"
    )


def group_weights(
    w: Any,
    kind: LayerKind | str | None = None,
    group_size: int = 32,
    remainder: RemainderPolicy | str = RemainderPolicy.SHORT,
    bits: int | None = None,
) -> GroupedWeights:
    """Cut an integer weight tensor into groups.

    Args:
        w: integer weights (torch tensor, numpy array or nested list).
        kind: storage layout; ``None`` infers it from the rank (2-d = PyTorch ``(out, in)``).
            Pass ``"linear_in_out"`` for ``(in, out)`` storage such as HuggingFace ``Conv1D``.
        group_size: ``g``, at least 2.
        remainder: policy for a row length not divisible by ``g``.
        bits: when given, values must fit the signed ``bits``-bit range.

    Example::

        >>> import numpy as np
        >>> gw = group_weights(np.arange(8).reshape(2, 4), "linear", group_size=2)
        >>> gw.values.tolist()
        [[0, 1], [2, 3], [4, 5], [6, 7]]
    """
    arr = as_int_array(w, "weights", bits=bits)
    kind = infer_kind(arr.shape) if kind is None else kind
    layout = make_layout(arr.shape, kind, group_size, remainder)
    return GroupedWeights(
        values=layout.group(arr), layout=layout, lengths=layout.lengths(), prunable=layout.prunable()
    )
