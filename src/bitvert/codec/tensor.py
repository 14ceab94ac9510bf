"""One weight tensor in the BBS compressed format: :func:`encode`, :func:`decode`.

An :class:`EncodedTensor` holds three byte sections (docs/format.md):

* the **column stream**: for every group, in stored order, its stored bit columns (MSB
  plane first), each column holding the group's real weights in order, all packed MSB
  first into one tight bit stream (:mod:`bitvert.codec.pack`);
* the **metadata stream**: one byte per metadata group for the BBS layouts
  (``redundant << 6 | constant & 63``), or a ``b-1``-bit zero-column mask per group for
  the BitWave layout;
* the **channel-index table**: the original index of each stored output channel
  (little-endian ``uint16``, ``uint32`` above 65,536 channels); empty when the stored
  order is the original order.

Output channels are reordered so that channels of equal precision form contiguous
:class:`~bitvert.codec.layout.Chunk` s: sensitive channels (full ``b`` bits, no metadata)
first, then normal channels by decreasing stored width.

Stored width (a project decision, docs/format.md): every group of a normal channel stores
exactly ``b - N`` columns (fixed width; natural redundancy beyond ``N`` is not exploited,
as lock-step PE rows gain nothing from it). A channel holding a group that cannot be
described at ``b - N`` columns with the 8-bit metadata (more than 3 redundant columns
without enough constant low columns, possible under published-code zero-point shifting,
or a rounded-average pattern wider than 6 bits) moves to a wider chunk, and
``EncodedTensor.stats()`` counts it as *escaped*.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from bitvert.codec import _kernels as K
from bitvert.codec.layout import (
    CONSTANT_FIELD_BITS,
    METADATA_BITS_BBS,
    REDUNDANT_FIELD_MAX,
    Chunk,
    TensorLayout,
)
from bitvert.codec.pack import pack_columns, unpack_columns
from bitvert.core.bitplanes import zero_magnitude_planes
from bitvert.core.grouping import GroupLayout, LayerKind, RemainderPolicy, make_layout
from bitvert.core.validation import as_int_array, check_bits, check_positive_int
from bitvert.errors import ConfigError, FormatError, InputError
from bitvert.pruning import PruneResult

__all__ = ["EncodedTensor", "GroupPlan", "encode", "encode_plain", "decode", "plan_groups", "concat_channels"]

log = logging.getLogger(__name__)

_C_MIN, _C_MAX = -(1 << (CONSTANT_FIELD_BITS - 1)), (1 << (CONSTANT_FIELD_BITS - 1)) - 1


@dataclass(frozen=True)
class EncodedTensor:
    """A weight tensor in the BBS compressed format.

    Attributes:
        layout: how groups are stored (:class:`TensorLayout`).
        shape: the weight's shape in its module's own layout.
        kind: grouping kind (``linear``, ``linear_in_out``, ``conv``).
        group_size: ``g``.
        remainder: remainder policy of the grouping.
        weight_bits: ``b``.
        columns: ``N``, free columns of a normal group (0 for ``plain``).
        chunks: runs of equal-precision channels in stored order.
        channel_order: ``int32[K]``, original index of each stored channel.
        payload: ``uint8`` column stream.
        metadata: ``uint8`` metadata stream.
        source: JSON-friendly description of how the weights were pruned (informational).
    """

    layout: TensorLayout
    shape: tuple[int, ...]
    kind: LayerKind
    group_size: int
    remainder: RemainderPolicy
    weight_bits: int
    columns: int
    chunks: tuple[Chunk, ...]
    channel_order: np.ndarray = field(repr=False)
    payload: np.ndarray = field(repr=False)
    metadata: np.ndarray = field(repr=False)
    source: dict[str, Any] = field(default_factory=dict, repr=False)

    # ------------------------------------------------------------------ geometry
    @property
    def group_layout(self) -> GroupLayout:
        """The grouping of the weight tensor."""
        return make_layout(self.shape, self.kind, self.group_size, self.remainder)

    @property
    def n_weights(self) -> int:
        return int(np.prod(self.shape))

    @property
    def n_channels(self) -> int:
        return int(self.channel_order.shape[0])

    @property
    def identity_order(self) -> bool:
        """True when channels are stored in their original order (no index table)."""
        return bool((self.channel_order == np.arange(self.n_channels)).all())

    @property
    def index_dtype(self) -> np.dtype:
        """Element type of the channel-index table."""
        return np.dtype("<u2") if self.n_channels <= 1 << 16 else np.dtype("<u4")

    def index_table(self) -> np.ndarray:
        """The channel-index table as stored (``uint8`` bytes; empty for the identity order)."""
        if self.identity_order:
            return np.zeros(0, dtype=np.uint8)
        return self.channel_order.astype(self.index_dtype).view(np.uint8)

    def to_bytes(self) -> np.ndarray:
        """The tensor's bytes as stored in the container: column stream, metadata, index table."""
        return np.concatenate([self.payload, self.metadata, self.index_table()])

    def header(self) -> dict[str, Any]:
        """JSON description stored next to the bytes (see docs/format.md)."""
        return {
            "layout": self.layout.value,
            "shape": list(self.shape),
            "kind": self.kind.value,
            "group_size": int(self.group_size),
            "remainder": self.remainder.value,
            "weight_bits": int(self.weight_bits),
            "columns": int(self.columns),
            "chunks": [c.to_list() for c in self.chunks],
            "payload_bytes": int(self.payload.shape[0]),
            "metadata_bytes": int(self.metadata.shape[0]),
            "index_bytes": int(self.index_table().shape[0]),
            "source": self.source,
        }

    @classmethod
    def from_bytes(cls, blob: np.ndarray, header: dict[str, Any], name: str = "tensor") -> "EncodedTensor":
        """Rebuild from :meth:`to_bytes` + :meth:`header`, validating everything.

        Raises:
            FormatError: any field is missing or inconsistent, or the byte count is wrong;
                the message names ``name``.
        """
        where = f"tensor {name!r}"
        try:
            layout = TensorLayout.parse(header["layout"], where)
            shape = tuple(int(s) for s in header["shape"])
            kind = LayerKind(header["kind"])
            group_size = int(header["group_size"])
            remainder = RemainderPolicy(header["remainder"])
            bits = int(header["weight_bits"])
            columns = int(header["columns"])
            chunks = tuple(Chunk(int(c), int(n), bool(m)) for c, n, m in header["chunks"])
            sizes = [int(header[k]) for k in ("payload_bytes", "metadata_bytes", "index_bytes")]
            source = dict(header.get("source") or {})
        except FormatError:
            raise
        except (KeyError, TypeError, ValueError) as exc:
            raise FormatError(f"{where}: malformed header ({type(exc).__name__}: {exc})") from None
        try:
            lay = make_layout(shape, kind, group_size, remainder)
            check_bits(bits, "weight_bits")
        except InputError as exc:
            raise FormatError(f"{where}: header describes an impossible tensor: {exc}") from None
        if not 0 <= columns < bits:
            raise FormatError(f"{where}: columns={columns} is outside [0, {bits - 1}]")
        if any(c.channels < 1 or not 1 <= c.columns <= bits for c in chunks):
            raise FormatError(f"{where}: chunk table {[c.to_list() for c in chunks]} has an empty chunk or a "
                              f"width outside [1, {bits}]")
        if sum(c.channels for c in chunks) != lay.n_channels:
            raise FormatError(f"{where}: chunks cover {sum(c.channels for c in chunks)} channels, the weight "
                              f"{shape} has {lay.n_channels}")
        if layout is TensorLayout.PLAIN and any(c.metadata for c in chunks):
            raise FormatError(f"{where}: a plain tensor cannot have metadata chunks")
        blob = np.asarray(blob)
        if blob.dtype != np.uint8 or blob.ndim != 1:
            raise FormatError(f"{where}: bytes must be a 1-d uint8 array, got {blob.dtype} {blob.shape}")
        if min(sizes) < 0 or sum(sizes) != blob.shape[0]:
            raise FormatError(f"{where}: holds {blob.shape[0]} bytes, the header says {sum(sizes)} "
                              f"({sizes[0]} columns + {sizes[1]} metadata + {sizes[2]} index); the file is "
                              "truncated or corrupted")
        if sizes[0] * 8 < lay.n_weights:  # every weight stores at least one column
            raise FormatError(f"{where}: {sizes[0]} column bytes cannot hold {lay.n_weights} weights")
        payload = blob[: sizes[0]]
        metadata = blob[sizes[0]: sizes[0] + sizes[1]]
        index = blob[sizes[0] + sizes[1]:]
        k = lay.n_channels
        idt = np.dtype("<u2") if k <= 1 << 16 else np.dtype("<u4")
        if index.shape[0] == 0:
            order = np.arange(k, dtype=np.int32)
        else:
            if index.shape[0] != k * idt.itemsize:
                raise FormatError(f"{where}: channel-index table has {index.shape[0]} bytes, expected "
                                  f"{k * idt.itemsize} ({k} channels)")
            order = np.ascontiguousarray(index).view(idt).astype(np.int32)
            if order.max() >= k or np.bincount(order, minlength=k).max() != 1:
                raise FormatError(f"{where}: channel-index table is not a permutation of 0..{k - 1}")
        enc = cls(layout=layout, shape=shape, kind=kind, group_size=group_size, remainder=remainder,
                  weight_bits=bits, columns=columns, chunks=chunks, channel_order=order,
                  payload=np.ascontiguousarray(payload), metadata=np.ascontiguousarray(metadata), source=source)
        plan_groups(enc, name)  # validates metadata and the column-stream length
        return enc

    # ------------------------------------------------------------------ accounting
    def stats(self) -> dict[str, Any]:
        """Exact storage accounting of this tensor (JSON-friendly).

        ``bits_per_weight`` is ``8 * total_bytes / n_weights`` where ``total_bytes`` is the
        byte count of :meth:`to_bytes` (columns + metadata + channel-index table).
        """
        plan = plan_groups(self)
        column_bits = plan.total_bits
        n_meta = int(plan.has_metadata.sum())
        meta_bits = n_meta * _metadata_bits_per_group(self.layout, self.weight_bits)
        total = int(self.payload.shape[0] + self.metadata.shape[0] + self.index_table().shape[0])
        normal = [c for c in self.chunks if c.metadata]
        escaped = sum(c.channels for c in normal if c.columns > self.weight_bits - self.columns) \
            if self.layout.is_bbs else 0
        if self.layout is TensorLayout.PLAIN:  # sensitive = full width among narrower channels (RTN)
            narrow = any(c.columns < self.weight_bits for c in self.chunks)
            sensitive = sum(c.channels for c in self.chunks if c.columns == self.weight_bits) if narrow else 0
        else:
            sensitive = sum(c.channels for c in self.chunks if not c.metadata)
        return {
            "layout": self.layout.value,
            "shape": list(self.shape),
            "n_weights": self.n_weights,
            "n_groups": int(plan.order.shape[0]),
            "metadata_groups": n_meta,
            "column_bits": column_bits,
            "metadata_bits": meta_bits,
            "index_bits": int(self.index_table().shape[0]) * 8,
            "payload_bytes": int(self.payload.shape[0]),
            "metadata_bytes": int(self.metadata.shape[0]),
            "index_bytes": int(self.index_table().shape[0]),
            "total_bytes": total,
            "bits_per_weight": 8.0 * total / self.n_weights,
            "compression_vs_int8": self.n_weights / total,
            "metadata_overhead_bits_per_weight": (meta_bits + 8 * int(self.index_table().shape[0]))
            / self.n_weights,
            "sensitive_channels": sensitive,
            "normal_channels": self.n_channels - sensitive,
            "escaped_channels": escaped,
            "chunks": [c.to_list() for c in self.chunks],
        }


@dataclass(frozen=True)
class GroupPlan:
    """Per stored group: where its bits are and how to finish its values (internal, documented).

    ``order[s]`` is the original group index (layout order) of the ``s``-th stored group;
    the other per-group arrays are indexed by ``s``. ``lengths`` is per original group.
    ``planes`` is the stored-plane mask (bit ``p`` = plane ``p``), ``sign_pos`` the code bit
    of the first stored plane (``-1``: sign-magnitude), ``add`` the free-column pattern
    minus the zero-point offset, ``msb_plane`` the first stored plane.
    """

    order: np.ndarray
    lengths: np.ndarray
    planes: np.ndarray
    sign_pos: np.ndarray
    add: np.ndarray
    has_metadata: np.ndarray
    msb_plane: np.ndarray
    offsets: np.ndarray
    total_bits: int


_LAYOUT_CODE = {TensorLayout.BBS_ROUNDED_AVG: K.LAYOUT_RA, TensorLayout.BBS_ZERO_POINT: K.LAYOUT_ZP,
                TensorLayout.BITWAVE: K.LAYOUT_BITWAVE, TensorLayout.PLAIN: K.LAYOUT_PLAIN}


def _metadata_bits_per_group(layout: TensorLayout, bits: int) -> int:
    """Metadata bits of one metadata group: 8 (BBS), ``b - 1`` (BitWave mask), 0 (plain)."""
    return METADATA_BITS_BBS if layout.is_bbs else (bits - 1 if layout is TensorLayout.BITWAVE else 0)


@dataclass(frozen=True)
class _Walk:
    """Output of :func:`~bitvert.codec._kernels.walk_kernel`, per stored group in stream order."""

    order: np.ndarray
    columns: np.ndarray
    has_metadata: np.ndarray
    metadata_groups: int


def _walk(lay: GroupLayout, channel_order: np.ndarray, chunks: tuple[Chunk, ...], bits: int) -> _Walk:
    """Stream order, stored width and metadata placement of every group (the one layout walk)."""
    n = lay.n_groups
    ch_cols = np.repeat(np.array([c.columns for c in chunks], dtype=np.uint8), [c.channels for c in chunks])
    ch_meta = np.repeat(np.array([c.metadata for c in chunks], dtype=np.bool_), [c.channels for c in chunks])
    order = np.empty(n, dtype=np.int64)
    columns = np.empty(n, dtype=np.uint8)
    has_meta = np.empty(n, dtype=np.bool_)
    n_meta = K.walk_kernel(np.ascontiguousarray(channel_order, dtype=np.int64), lay.groups_per_channel,
                           lay.prunable(), ch_cols, ch_meta, int(bits), order, columns, has_meta)
    return _Walk(order=order, columns=columns, has_metadata=has_meta, metadata_groups=int(n_meta))


def _plan(walk: _Walk, lengths: np.ndarray, md: np.ndarray, layout: TensorLayout, bits: int,
          where: str) -> GroupPlan:
    """Plane masks, finishing constants and offsets of the walked groups, read from the metadata ``md``.

    Raises:
        FormatError: the metadata contradicts the chunk table (the message names ``where``).
    """
    n = walk.order.shape[0]
    planes = np.empty(n, dtype=np.uint16)
    sign_pos = np.empty(n, dtype=np.int32)
    add = np.empty(n, dtype=np.int32)
    msb = np.empty(n, dtype=np.int32)
    offsets = np.empty(n, dtype=np.int64)
    status, g, v1, v2, total, _ = K.plan_kernel(walk.order, lengths, walk.columns, walk.has_metadata, md, bits,
                                                _LAYOUT_CODE[layout], planes, sign_pos, add, msb, offsets)
    if status == K.PLAN_SHORT_METADATA:
        raise FormatError(f"{where}: metadata holds {md.shape[0]} bytes, too few for the metadata groups the chunk "
                          "table implies; the data is truncated or corrupted")
    if status == K.PLAN_REDUNDANT:
        raise FormatError(f"{where}: metadata group {g} records {v1} redundant columns, more than the "
                          f"{bits - v2} free columns of its {v2}-column chunk")
    if status == K.PLAN_PATTERN:
        raise FormatError(f"{where}: metadata group {g} has constant {v1}, wider than its {v2} free low columns")
    if status == K.PLAN_BITWAVE_WIDTH:
        raise FormatError(f"{where}: BitWave group {g} stores {v1} columns, more than its chunk's {v2}")
    return GroupPlan(order=walk.order, lengths=lengths, planes=planes, sign_pos=sign_pos, add=add,
                     has_metadata=walk.has_metadata, msb_plane=msb, offsets=offsets, total_bits=int(total))


def _check_pad(stream: np.ndarray, used_bits: int, where: str, what: str) -> None:
    spare = stream.shape[0] * 8 - used_bits
    if spare and int(stream[-1]) & ((1 << spare) - 1):
        raise FormatError(f"{where}: unused bits at the end of the {what} are not zero; the data is corrupted")


def plan_groups(enc: EncodedTensor, name: str = "tensor") -> GroupPlan:
    """Decode the chunk table and metadata of ``enc`` into a :class:`GroupPlan`.

    Raises:
        FormatError: inconsistent metadata or a column stream of the wrong length.
    """
    where = f"tensor {name!r}"
    lay = enc.group_layout
    b = int(enc.weight_bits)
    walk = _walk(lay, enc.channel_order, enc.chunks, b)
    md = enc.metadata
    n_meta = walk.metadata_groups
    meta_bits = n_meta * _metadata_bits_per_group(enc.layout, b)
    need = -(-meta_bits // 8)
    if md.shape[0] != need:
        raise FormatError(f"{where}: metadata holds {md.shape[0]} bytes, the chunk table implies {n_meta} "
                          f"metadata groups ({need} bytes)")
    plan = _plan(walk, lay.lengths(), md, enc.layout, b, where)
    _check_pad(md, meta_bits, where, "metadata")
    total = plan.total_bits
    if enc.payload.shape[0] != -(-total // 8):
        raise FormatError(f"{where}: column stream holds {enc.payload.shape[0]} bytes, the groups need "
                          f"{-(-total // 8)} ({total} bits); the data is truncated or corrupted")
    _check_pad(enc.payload, total, where, "column stream")
    return plan


def decode(enc: EncodedTensor) -> np.ndarray:
    """Integer weights of an encoded tensor (``int16``, the original shape and channel order).

    >>> from bitvert.pruning import PruneConfig, prune
    >>> r = prune([[13, -57, 20, -11]], PruneConfig("rounded_avg", group_size=4, columns=4))
    >>> decode(encode(r)).tolist()
    [[13, -59, 21, -11]]
    """
    if not isinstance(enc, EncodedTensor):
        raise InputError(f"decode expects an EncodedTensor, got {type(enc).__name__}")
    plan = plan_groups(enc)
    lay = enc.group_layout
    groups = unpack_columns(enc.payload, plan.order, plan.lengths, plan.planes, enc.weight_bits, lay.width,
                            plan.sign_pos, plan.add, offsets=plan.offsets, total_bits=plan.total_bits)
    return lay.ungroup(groups)


# ---------------------------------------------------------------------- encoding
def _first_bad(name: str, lay: GroupLayout, values: np.ndarray, bad: np.ndarray, what: str) -> InputError:
    g = int(np.flatnonzero(bad >= 0)[0])
    ch = int(lay.channel_of_group()[g])
    return InputError(f"{name}: group {g} (output channel {ch}) holds {int(values[g, bad[g]])}, {what}")


def _order_channels(width: np.ndarray, metadata: np.ndarray) -> tuple[np.ndarray, tuple[Chunk, ...]]:
    """Stable order: channels without metadata first, then by decreasing width; run-length chunks."""
    k = width.shape[0]
    perm = np.lexsort((np.arange(k), -width, metadata.astype(np.int8))).astype(np.int32)
    w, m = width[perm], metadata[perm]
    change = np.flatnonzero((w[1:] != w[:-1]) | (m[1:] != m[:-1])) + 1
    starts = np.concatenate([[0], change])
    ends = np.concatenate([change, [k]])
    chunks = tuple(Chunk(int(w[s]), int(e - s), bool(m[s])) for s, e in zip(starts, ends))
    return perm, chunks


def _bbs_min_width(redundant: np.ndarray, trailing: np.ndarray, bits: int, field_limit: bool) -> np.ndarray:
    """Fewest stored columns describing each group with a 2-bit redundant count + trailing columns.

    A group fits ``S`` columns iff its ``k = b - S - min(R, 3)`` low columns are constant
    (``k <= trailing``; rounded averaging also needs ``k <= 6`` for the pattern field), i.e.
    ``S >= b - min(R, 3) - trailing``.
    """
    t = np.minimum(trailing, CONSTANT_FIELD_BITS) if field_limit else trailing
    return np.maximum(1, bits - np.minimum(redundant, REDUNDANT_FIELD_MAX) - t)


def _pack(scan: dict[str, np.ndarray], lay: GroupLayout, lengths: np.ndarray, perm: np.ndarray,
          chunks: tuple[Chunk, ...], constant: np.ndarray, bits: int, layout: TensorLayout,
          name: str) -> tuple[np.ndarray, np.ndarray]:
    """Column stream and metadata: the shared walk, the metadata values, the shared plan, then packing."""
    walk = _walk(lay, perm, chunks, bits)
    md = np.zeros(-(-walk.metadata_groups * _metadata_bits_per_group(layout, bits) // 8), dtype=np.uint8)
    K.metadata_kernel(walk.order, walk.columns, walk.has_metadata, scan["redundant"], scan["first"],
                      np.ascontiguousarray(constant, dtype=np.int32), scan["mag_or"], bits, _LAYOUT_CODE[layout],
                      md)
    plan = _plan(walk, lengths, md, layout, bits, f"tensor {name!r}")
    payload = pack_columns(scan["codes"], plan.order, plan.lengths, plan.planes, bits, offsets=plan.offsets,
                           total_bits=plan.total_bits)
    return payload, md


def encode(result: PruneResult, name: str = "tensor", channel_columns: Any = None) -> EncodedTensor:
    """Encode a pruned tensor.

    Args:
        result: the :class:`~bitvert.pruning.PruneResult` of :func:`bitvert.pruning.prune`
            (any method, semantics, group size, ``N``, bit width and layer kind).
        channel_columns: optional ``int[out_channels]``: the ``N`` each normal channel was pruned
            with, when a bit budget gave channels of one tensor different ``N`` (the pipeline's
            ``target_bits``); a channel is stored at ``b - N`` columns (or wider if it needs to).
            ``None``: every normal channel has ``result.config.columns``.
            Output channels none of whose groups is pruned are *sensitive* and stored at
            full width without metadata.
        name: used in error messages.

    Returns:
        The :class:`EncodedTensor`; ``decode(encode(result))`` equals ``result.weights``.

    Raises:
        InputError: ``result`` is not a PruneResult, or a group marked pruned does not have
            the ``N`` free columns its method guarantees (the weights were not pruned with
            this configuration), or a value has no code.
        ConfigError: a zero-point constant does not fit the 6-bit field (``constant_bits > 6``).
    """
    if not isinstance(result, PruneResult):
        raise InputError(
            f"{name}: encode expects a PruneResult from bitvert.pruning.prune, got {type(result).__name__}; "
            "prune the integer weights first, or store unpruned weights with encode_plain()"
        )
    cfg = result.config
    lay = result.layout
    b, n_cols = int(cfg.weight_bits), int(cfg.columns)
    layout = TensorLayout(cfg.spec.layout)  # the method's layout, declared in its registry entry
    n_groups, kch, gpc = lay.n_groups, lay.n_channels, lay.groups_per_channel
    if channel_columns is None:
        ch_cols = np.full(kch, n_cols, dtype=np.int64)
    else:
        ch_cols = np.asarray(channel_columns)
        if ch_cols.shape != (kch,) or ch_cols.dtype.kind not in "iu":
            raise InputError(f"{name}: channel_columns must be {kch} integers (one N per output channel), got "
                             f"dtype {ch_cols.dtype} and shape {ch_cols.shape}")
        ch_cols = ch_cols.astype(np.int64)
    md = result.metadata
    for key in ("redundant", "constant", "free_columns", "pruned"):
        if np.asarray(getattr(md, key)).shape != (n_groups,):
            raise InputError(f"{name}: metadata.{key} has shape {np.asarray(getattr(md, key)).shape}, the layout "
                             f"has {n_groups} groups")
    if tuple(np.shape(result.weights)) != lay.shape:
        raise InputError(f"{name}: weights have shape {tuple(np.shape(result.weights))}, the layout expects "
                         f"{lay.shape}")
    weights = np.asarray(result.weights)
    if weights.dtype.kind not in "iu" or (weights.dtype not in (np.int8, np.int16, np.uint8) and weights.size and
                                           (weights.min() < -(1 << 15) or weights.max() >= 1 << 15)):
        raise InputError(f"{name}: weights must be integers in the int16 range, got dtype {weights.dtype}")
    values = lay.group(weights.astype(np.int16, copy=False))
    lengths = lay.lengths()
    prunable = lay.prunable()
    pruned = np.asarray(md.pruned, dtype=bool)
    normal_ch = pruned.reshape(kch, gpc).any(axis=1)
    meta_group = np.repeat(normal_ch, gpc) & prunable
    constant = np.asarray(md.constant).astype(np.int16)
    if layout is TensorLayout.BBS_ZERO_POINT:
        c = constant[meta_group]
        if c.size and (c.min() < _C_MIN or c.max() > _C_MAX):
            raise ConfigError(
                f"{name}: zero-point constants range over [{int(c.min())}, {int(c.max())}]; the 6-bit BBS "
                f"constant field holds [{_C_MIN}, {_C_MAX}]; prune with constant_bits <= 6"
            )
    mode = np.full(n_groups, K.MODE_RAW, dtype=np.uint8)
    if layout is TensorLayout.BBS_ZERO_POINT:
        mode[meta_group] = K.MODE_OFFSET
    elif layout is TensorLayout.BITWAVE:
        mode[meta_group] = K.MODE_SIGN_MAGNITUDE
    scan = K.scan_groups(values, lengths, constant, mode, b)
    if (scan["bad"] >= 0).any():
        bad = scan["bad"]
        g = int(np.flatnonzero(bad >= 0)[0])
        what = (f"which is outside the signed {b}-bit range" if mode[g] != K.MODE_SIGN_MAGNITUDE
                else f"which has no {b}-bit sign-magnitude code")
        if mode[g] == K.MODE_OFFSET:
            what = f"and its stored value (weight + constant {int(constant[g])}) is outside the signed {b}-bit range"
        raise _first_bad(name, lay, values, bad, what + "; pass the PruneResult of bitvert.pruning.prune unchanged")
    red = scan["redundant"].astype(np.int64)
    if layout is TensorLayout.BITWAVE:
        zero_planes = zero_magnitude_planes(scan["mag_or"], b)
        free = zero_planes
    else:
        trailing = (scan["trail_const"] if layout is TensorLayout.BBS_ROUNDED_AVG else scan["trail_zero"]).astype(
            np.int64)
        rc = np.minimum(red, int(cfg.redundant_cap))
        free = rc + np.minimum(trailing, b - 1 - rc)
    normal_cols = ch_cols[normal_ch]
    if normal_cols.size and (normal_cols.min() < 1 or normal_cols.max() >= b):
        raise InputError(f"{name}: channel_columns of normal channels span [{int(normal_cols.min())}, "
                         f"{int(normal_cols.max())}]; N must be in [1, {b - 1}]")
    g_cols = ch_cols[lay.channel_of_group()]
    short = pruned & meta_group & (free < g_cols)
    if short.any():
        g = int(np.flatnonzero(short)[0])
        raise InputError(
            f"{name}: group {g} (output channel {int(lay.channel_of_group()[g])}) is marked pruned but has only "
            f"{int(free[g])} free columns, fewer than N={int(g_cols[g])}; these weights were not pruned with this "
            f"configuration (method={cfg.method_name}, columns={int(g_cols[g])}); pass the unchanged PruneResult"
        )

    # channel widths and order
    if layout is TensorLayout.BITWAVE:
        kept = 1 + (b - 1 - zero_planes)
        ch_need = np.where(meta_group, kept, 0).reshape(kch, gpc).max(axis=1)
        width = np.full(kch, b, dtype=np.int64)
        for n in np.unique(ch_cols[normal_ch]):  # one width per N (one N unless a bit budget split the tensor)
            at = normal_ch & (ch_cols == n)
            width[at] = ch_need[at].max()
    else:
        s_min = _bbs_min_width(red, trailing, b, layout is TensorLayout.BBS_ROUNDED_AVG)
        ch_need = np.where(meta_group, s_min, 0).reshape(kch, gpc).max(axis=1)
        width = np.where(normal_ch, np.maximum(b - ch_cols, ch_need), b)
    perm, chunks = _order_channels(width.astype(np.int64), normal_ch)
    payload, metadata = _pack(scan, lay, lengths, perm, chunks, constant, b, layout, name)
    enc = EncodedTensor(
        layout=layout, shape=lay.shape, kind=lay.kind, group_size=lay.group_size, remainder=lay.remainder,
        weight_bits=b, columns=n_cols, chunks=chunks, channel_order=perm, payload=payload,
        metadata=np.ascontiguousarray(metadata, dtype=np.uint8), source=cfg.to_dict(),
    )
    escaped = int((normal_ch & (width > b - ch_cols)).sum()) if layout.is_bbs else 0
    if escaped:
        log.info("%s: %d normal channel(s) need more than %d columns and are stored wider", name, escaped,
                 b - int(ch_cols[normal_ch].min()))
    return enc


def encode_plain(
    weights: Any,
    kind: LayerKind | str | None = None,
    group_size: int = 32,
    channel_bits: Any = None,
    weight_bits: int = 8,
    remainder: RemainderPolicy | str = RemainderPolicy.SHORT,
    name: str = "tensor",
) -> EncodedTensor:
    """Encode an unpruned integer tensor (``plain`` layout: no metadata).

    Args:
        weights: integer weights in the module's layout.
        kind: grouping kind; ``None`` infers it from the rank.
        group_size: ``g`` (only the column order inside the stream depends on it).
        channel_bits: optional ``int[K]`` stored bits per output channel (e.g. fewer-bit RTN
            channels); every weight must fit its channel's signed width. Default: ``weight_bits``.
        weight_bits: ``b``.
        remainder: remainder policy of the grouping.
        name: used in error messages.
    """
    b = check_bits(weight_bits, "weight_bits")
    group_size = check_positive_int(group_size, "group_size", 2)
    arr = as_int_array(weights, name, bits=b)
    from bitvert.core.grouping import infer_kind

    lay = make_layout(arr.shape, infer_kind(arr.shape) if kind is None else kind, group_size, remainder)
    kch, gpc = lay.n_channels, lay.groups_per_channel
    if channel_bits is None:
        width = np.full(kch, b, dtype=np.int64)
    else:
        width = np.asarray(channel_bits.numpy() if hasattr(channel_bits, "numpy") else channel_bits)
        if width.shape != (kch,) or width.dtype.kind not in "iu" or width.min() < 1 or width.max() > b:
            raise InputError(f"{name}: channel_bits must be {kch} integers in [1, {b}], got dtype {width.dtype} "
                             f"shape {width.shape}")
        width = width.astype(np.int64)
    values = lay.group(arr.astype(np.int16, copy=False))
    lengths = lay.lengths()
    scan = K.scan_groups(values, lengths, np.zeros(lay.n_groups, np.int16), np.zeros(lay.n_groups, np.uint8), b)
    need = (b - scan["redundant"].astype(np.int64)).reshape(kch, gpc).max(axis=1)
    if (need > width).any():
        ch = int(np.flatnonzero(need > width)[0])
        raise InputError(f"{name}: output channel {ch} needs {int(need[ch])} bits but channel_bits gives "
                         f"{int(width[ch])}")
    perm, chunks = _order_channels(width, np.zeros(kch, dtype=bool))
    payload, _ = _pack(scan, lay, lengths, perm, chunks, np.zeros(lay.n_groups, np.int16), b,
                       TensorLayout.PLAIN, name)
    return EncodedTensor(
        layout=TensorLayout.PLAIN, shape=lay.shape, kind=lay.kind, group_size=lay.group_size,
        remainder=lay.remainder, weight_bits=b, columns=0, chunks=chunks, channel_order=perm, payload=payload,
        metadata=np.zeros(0, dtype=np.uint8), source={"method": "plain"},
    )


def _channel_runs(enc: EncodedTensor, name: str) -> dict[str, np.ndarray]:
    """Per original output channel of ``enc``: stored width, metadata flag, and where its bits are (start and
    length in the column stream and in the metadata stream)."""
    plan = plan_groups(enc, name)
    lay = enc.group_layout
    gpc = lay.groups_per_channel
    k = enc.n_channels
    starts = plan.offsets[::gpc].astype(np.int64)  # a stored channel's groups are consecutive in the stream
    lens = np.diff(np.append(starts, plan.total_bits))
    md_lens = plan.has_metadata.reshape(k, gpc).sum(axis=1).astype(np.int64) \
        * _metadata_bits_per_group(enc.layout, int(enc.weight_bits))
    md_starts = np.concatenate([[0], np.cumsum(md_lens)[:-1]]).astype(np.int64)
    counts = [c.channels for c in enc.chunks]
    stored = {"width": np.repeat(np.array([c.columns for c in enc.chunks], dtype=np.int64), counts),
              "metadata": np.repeat(np.array([c.metadata for c in enc.chunks], dtype=bool), counts),
              "start": starts, "length": lens, "md_start": md_starts, "md_length": md_lens}
    out = {}
    for key, v in stored.items():  # stored position -> original channel
        o = np.empty_like(v)
        o[enc.channel_order] = v
        out[key] = o
    return out


def concat_channels(parts: Sequence[EncodedTensor], name: str = "tensor", columns: int | None = None,
                    source: dict[str, Any] | None = None) -> EncodedTensor:
    """One tensor from the encodings of consecutive blocks of its output channels.

    ``parts[i]`` is the encoding of output channels ``c_i .. c_{i+1} - 1`` (axis 0) of one tensor, each encoded
    on its own (:func:`encode` or :func:`encode_plain`, same settings); the result is byte for byte the
    encoding of the whole tensor: channels of every part re-ordered together into the chunks, and each
    channel's stored bits and metadata moved, unchanged, to their place in the one column and metadata
    stream. A large tensor can so be encoded a block of channels at a time, never holding the whole
    tensor's per-weight and per-group arrays.

    Args:
        parts: the encoded blocks in channel order.
        name: used in error messages.
        columns, source: the whole tensor's ``columns`` (``N``) and ``source`` description, when the parts
            differ in them (blocks pruned with different per-channel ``N`` record their own minimum);
            by default the parts' common values.

    Raises:
        InputError: no parts, parts of different layouts, groupings, bit widths or channel shapes, output
            channels not along axis 0 (``linear_in_out``), a BitWave tensor in more than one part (its
            channels' stored width is the maximum over the whole tensor, so blocks do not encode alike;
            encode it whole), or parts differing in ``columns`` / ``source`` without the whole's given.
    """
    parts = list(parts)
    if not parts or not all(isinstance(p, EncodedTensor) for p in parts):
        raise InputError(f"{name}: concat_channels expects a non-empty list of EncodedTensor parts, got "
                         f"{[type(p).__name__ for p in parts]}")
    first = parts[0]

    def key(p: EncodedTensor) -> tuple[Any, ...]:
        return p.layout, p.kind, p.group_size, p.remainder, p.weight_bits, tuple(p.shape[1:])

    for i, p in enumerate(parts):
        if key(p) != key(first):
            raise InputError(f"{name}: part {i} is {key(p)}, part 0 is {key(first)} (layout, kind, group size, "
                             "remainder, bits, channel shape); only blocks of one tensor encoded alike concatenate")
    if first.kind is LayerKind.LINEAR_IN_OUT:
        raise InputError(f"{name}: a {first.kind.value} tensor has its output channels along axis 1; "
                         "concat_channels joins blocks of axis-0 channels (linear, conv)")
    if first.layout is TensorLayout.BITWAVE and len(parts) > 1:
        raise InputError(f"{name}: a BitWave tensor stores every normal channel at the widest width any of them "
                         "needs, a whole-tensor quantity; encode it whole instead of in blocks")
    for what, given in (("columns", columns), ("source", source)):
        vals = [getattr(p, what) for p in parts]
        if given is None and any(v != vals[0] for v in vals):
            raise InputError(f"{name}: the parts differ in {what} ({vals[:4]}...); pass the whole tensor's "
                             f"{what}= to concat_channels")
    runs = [_channel_runs(p, f"{name} (part {i})") for i, p in enumerate(parts)]
    cat = {k: np.concatenate([r[k] for r in runs]) for k in runs[0]}
    which = np.repeat(np.arange(len(parts)), [p.n_channels for p in parts])
    perm, chunks = _order_channels(cat["width"], cat["metadata"])
    streams = []
    for start, length, part_bytes in (("start", "length", lambda p: p.payload),
                                      ("md_start", "md_length", lambda p: p.metadata)):
        lens = cat[length][perm]
        dst = np.zeros(lens.shape[0], dtype=np.int64)
        np.cumsum(lens[:-1], out=dst[1:])
        out = np.zeros(-(-int(lens.sum()) // 8), dtype=np.uint8)
        for i, p in enumerate(parts):
            at = np.flatnonzero(which[perm] == i)
            K.copy_bits_kernel(np.ascontiguousarray(part_bytes(p), dtype=np.uint8), cat[start][perm[at]],
                               lens[at], out, dst[at])
        streams.append(out)
    shape = (sum(p.shape[0] for p in parts),) + tuple(first.shape[1:])
    return EncodedTensor(
        layout=first.layout, shape=shape, kind=first.kind, group_size=first.group_size, remainder=first.remainder,
        weight_bits=first.weight_bits, columns=int(first.columns if columns is None else columns), chunks=chunks,
        channel_order=perm, payload=streams[0], metadata=streams[1],
        source=dict(first.source if source is None else source),
    )
