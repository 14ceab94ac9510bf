"""Calibration statistics of quantized layers: input Hessians ``H = Σ XᵀX``, in one pass or sequentially.

For a layer ``y = W x`` the output error of a weight change ``E`` over the calibration inputs is
``Σ ‖E x‖² = tr(E H Eᵀ)`` with ``H = Σ x xᵀ`` over every input row ``x`` the layer sees. Error-feedback
solvers (GPTQ/OBQ), the ``output_error`` sensitivity score and the ``target_bits`` allocation all weigh
weight errors with it.

**Column order.** ``H`` is indexed in the *grouping's column order* of the layer's weight, the order in
which :mod:`bitvert.core.grouping` cuts one output channel into metadata groups, so the ``g`` columns of a
group are ``g`` consecutive rows/columns of ``H``:

* ``linear`` (``nn.Linear``, ``(out, in)``) and ``linear_in_out`` (HuggingFace ``Conv1D``, ``(in, out)``,
  transposed by :func:`bitvert.core.grouping.out_channels_first`): the ``in`` input features; ``H`` is
  ``[in, in]``.
* ``conv`` grouped along channels (``nn.Conv1d/2d/3d``, ``C/groups > 1``): the im2col patch of one
  output position, ordered ``(*kernel, C/groups)`` (kernel position outermost, input channel innermost,
  as ``GroupLayout.to_rows`` permutes ``(K, C, kh, kw)`` to ``(K, kh, kw, C)``); ``H`` is
  ``[kh·kw·C/g, kh·kw·C/g]``.
* ``conv`` grouped along the kernel window (depthwise, ``C/groups == 1``): the window ``(kh, kw)``.

``order="weight"`` gives the weight's own flattened order ``(C/groups, *kernel)`` instead (PyTorch's
``unfold`` order); :func:`grouping_permutation` maps one to the other.

**Grouped and depthwise convolutions.** Output channels of different convolution groups see different
inputs, so such a layer gets one ``H`` per convolution group: a ``[groups, L, L]`` tensor, and output
channel ``k`` uses ``H[k // (K // groups)]`` (:func:`channel_hessians` expands it to one ``[L, L]`` per
output channel). A depthwise 3×3 convolution with 32 channels thus has ``H`` of shape ``[32, 9, 9]``.
Every other layer (``groups == 1``) has a 2-d ``[L, L]`` ``H``.

``H`` is a float64 *sum* (not a mean) over all input rows: tokens for linear layers, output positions
times batch for convolutions. :attr:`Hessians.n_samples` holds the row counts.

**Padded text batches.** When a batch is a mapping (e.g. a tokenizer's ``BatchEncoding``) with a 2-d
``attention_mask`` ``[batch, tokens]``, the rows of a linear layer's input ``[batch, tokens, in]`` whose
mask is 0 (padding) are left out of ``H`` and of the row counts, so a padded batch gives the same ``H`` as
its samples run one by one. Inputs of another shape (a pooler's ``[batch, in]``, convolutions) are not
masked. The mask helpers (:func:`bitvert.pipeline.quantize.padding_mask`,
:func:`~bitvert.pipeline.quantize.drop_padded_tokens`) live in :mod:`bitvert.pipeline.quantize`, whose
activation-range observers leave padded tokens out the same way; :func:`output_gains` does too.

**Sequential mode** (:func:`calibrate_sequentially`): each layer's ``H`` is collected from inputs that
already passed through the earlier layers *after* the caller's callback changed them (standard for
GPTQ). Layers that receive the very same input tensor (attention ``q``/``k``/``v``, an MLP's gate and
up projections) form one step and are handed to the callback together. When the model has a stack of
repeated blocks (an ``nn.ModuleList`` of same-class modules holding the layers, e.g. the decoder layers
of an LLM) only one block's inputs are resident: block inputs are captured once, each step re-runs just
that block, and its outputs become the next block's inputs. Otherwise every step re-runs the model on
the calibration batches. Either way a step's pass ends as soon as its first layer receives its input
(the step's own products and everything after them are never computed), unless a layer of the step is
called more than once per forward pass.
"""

from __future__ import annotations

import logging
import weakref
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from bitvert.errors import InputError, UnsupportedLayerError
from bitvert.pipeline.quantize import (
    QuantLayer,
    block_stack,
    call_model,
    drop_padded_tokens,
    get_weight,
    layer_kind,
    output_padding_mask,
    padding_mask,
    replay_outputs,
    run_batches,
)
from bitvert.pipeline.quantize import hidden_of as _hidden_of
from bitvert.pipeline.quantize import model_output as _model_output
from bitvert.timing import timed

__all__ = [
    "Hessians",
    "collect_hessians",
    "calibrate_sequentially",
    "hessian_shape",
    "layer_input_rows",
    "grouping_permutation",
    "channel_hessians",
    "output_gains",
    "HessianOrder",
]

logger = logging.getLogger(__name__)

HessianOrder = Literal["grouping", "weight"]

# Rows of X turned into XᵀX at once (bounds the float64 copy of an im2col matrix).
_ROW_CHUNK = 16384


class Hessians(dict):  # type: ignore[type-arg]
    """``dict[str, torch.Tensor]`` of per-layer input Hessians (float64 sums), plus the row counts.

    Attributes:
        n_samples: input rows each layer saw (0 for a layer that never ran: its ``H`` is all zeros).
        order: the column order (``grouping`` or ``weight``).
    """

    def __init__(self, data: Mapping[str, torch.Tensor], n_samples: Mapping[str, int], order: HessianOrder) -> None:
        super().__init__(data)
        self.n_samples: dict[str, int] = dict(n_samples)
        self.order: HessianOrder = order


# --------------------------------------------------------------------------------------------- geometry

@dataclass(frozen=True)
class _ConvGeometry:
    """What im2col needs to know about one convolution module."""

    kernel: tuple[int, ...]
    stride: tuple[int, ...]
    dilation: tuple[int, ...]
    pad: tuple[int, ...]  # F.pad order (last dim first)
    pad_mode: str
    groups: int
    in_channels: int


def _conv_geometry(module: nn.Module) -> _ConvGeometry:
    w = get_weight(module)
    nd = w.ndim - 2
    kernel = tuple(int(k) for k in w.shape[2:])
    stride = tuple(int(s) for s in module.stride)  # type: ignore[union-attr]
    dilation = tuple(int(d) for d in module.dilation)  # type: ignore[union-attr]
    pad = tuple(int(p) for p in module._reversed_padding_repeated_twice)  # type: ignore[union-attr]
    mode = str(module.padding_mode)
    if len(stride) != nd or len(dilation) != nd:
        raise UnsupportedLayerError(f"convolution {type(module).__name__} has inconsistent stride/dilation")
    static = _static_padding(module, nd)
    if static is not None:
        if mode != "zeros" and any(pad):
            raise UnsupportedLayerError(
                f"convolution {type(module).__name__} pads its input twice (static_padding and padding_mode "
                f"{mode!r}); its im2col rows cannot be rebuilt")
        pad, mode = tuple(a + b for a, b in zip(pad, static)), "zeros"
    return _ConvGeometry(kernel=kernel, stride=stride, dilation=dilation, pad=pad,
                         pad_mode="constant" if mode == "zeros" else mode, groups=int(module.groups),
                         in_channels=int(w.shape[1]) * int(module.groups))


_CONSTANT_PADS = (nn.ZeroPad1d, nn.ZeroPad2d, nn.ZeroPad3d, nn.ConstantPad1d, nn.ConstantPad2d, nn.ConstantPad3d)


def _static_padding(module: nn.Module, nd: int) -> tuple[int, ...] | None:
    """The zero padding a "same"-padding convolution applies in its own ``forward`` before convolving (the
    ``static_padding`` module of EfficientNet's ``Conv2dStaticSamePadding``), in ``F.pad`` order; ``None``
    when it has none. The forward pre-hooks see the input before that padding."""
    static = getattr(module, "static_padding", None)
    if static is None or isinstance(static, nn.Identity) or (
            type(static).__name__ == "Identity" and not any(True for _ in static.parameters())):
        return None  # no padding (efficientnet_lite_pytorch ships its own parameter-free Identity)
    if not isinstance(static, _CONSTANT_PADS) or float(static.value) != 0.0 or len(static.padding) != 2 * nd:
        raise UnsupportedLayerError(
            f"convolution {type(module).__name__} pads its input with {type(static).__name__} in its forward; "
            "only zero padding (nn.ZeroPad*d / nn.ConstantPad*d with value 0) can be rebuilt for its Hessian")
    return tuple(int(p) for p in static.padding)


def _kind_of(module: nn.Module) -> str:
    found = layer_kind(module)
    if found is None:
        raise UnsupportedLayerError(
            f"module {type(module).__name__} is not a quantizable layer (nn.Linear, nn.Conv1d/2d/3d, HF Conv1D)")
    return found[0]


def hessian_shape(module: nn.Module) -> tuple[int, ...]:
    """Shape of the ``H`` :func:`collect_hessians` returns for ``module``: ``(L, L)`` or ``(groups, L, L)``.

    >>> hessian_shape(nn.Conv2d(8, 8, 3, groups=8))
    (8, 9, 9)
    """
    kind = _kind_of(module)
    w = get_weight(module)
    if kind == "linear":
        return (int(w.shape[1]),) * 2
    if kind == "linear_in_out":
        return (int(w.shape[0]),) * 2
    length = int(np.prod(w.shape[1:]))
    groups = int(module.groups)  # type: ignore[arg-type]
    return (length, length) if groups == 1 else (groups, length, length)


def grouping_permutation(module: nn.Module) -> np.ndarray:
    """Index ``p`` with ``H_grouping = H_weight[p][:, p]`` for one output channel's columns.

    The weight order of a convolution is ``(C/groups, *kernel)`` (``weight[k].reshape(-1)``), the grouping
    order ``(*kernel, C/groups)``; for linear layers and depthwise convolutions both are the identity.
    """
    kind = _kind_of(module)
    w = get_weight(module)
    if kind != "conv":
        n = int(w.shape[1] if kind == "linear" else w.shape[0])
        return np.arange(n)
    cg, kernel = int(w.shape[1]), tuple(int(k) for k in w.shape[2:])
    idx = np.arange(cg * int(np.prod(kernel))).reshape((cg,) + kernel)
    return idx.transpose(tuple(range(1, len(kernel) + 1)) + (0,)).reshape(-1)


def layer_input_rows(module: nn.Module, x: torch.Tensor, order: HessianOrder = "grouping") -> torch.Tensor:
    """The rows ``X`` whose products with the weight columns give the layer's outputs: ``[groups, n, L]``.

    Linear / HF ``Conv1D``: ``x.reshape(-1, in)`` (``groups = 1``). Convolutions: im2col of the padded
    input (padding mode, stride and dilation of the module), one block per convolution group, columns in
    the grouping order (default) or the weight order (see the module docstring).

    Args:
        module: a quantizable layer.
        x: the layer's input as it is called (``(..., in)`` or ``(N, C, *spatial)``).
        order: ``grouping`` or ``weight`` column order.
    """
    kind = _kind_of(module)
    if order not in ("grouping", "weight"):
        raise InputError(f"order must be 'grouping' or 'weight', got {order!r}")
    if kind in ("linear", "linear_in_out"):
        n_in = hessian_shape(module)[0]
        if x.shape[-1] != n_in:
            raise InputError(f"input of shape {tuple(x.shape)} does not end in the layer's {n_in} input features")
        return x.reshape(1, -1, n_in)
    geo = _conv_geometry(module)
    nd = len(geo.kernel)
    if x.ndim == nd + 1:  # unbatched call
        x = x.unsqueeze(0)
    if x.ndim != nd + 2 or x.shape[1] != geo.in_channels:
        raise InputError(f"convolution input of shape {tuple(x.shape)} does not match (N, {geo.in_channels}, "
                         f"{nd} spatial dims)")
    if any(geo.pad):
        x = F.pad(x, geo.pad, mode=geo.pad_mode)
    for d, (k, s, dil) in enumerate(zip(geo.kernel, geo.stride, geo.dilation)):
        span = dil * (k - 1) + 1
        x = x.unfold(2 + d, span, s)
        if dil > 1:
            x = x[..., ::dil]
    # x: [N, C, *out, *kernel]
    n, c = x.shape[0], x.shape[1]
    out = tuple(x.shape[2:2 + nd])
    cg = c // geo.groups
    x = x.reshape((n, geo.groups, cg) + out + geo.kernel)
    spatial = tuple(range(3, 3 + nd))
    kern = tuple(range(3 + nd, 3 + 2 * nd))
    if order == "grouping":
        perm = (1, 0) + spatial + kern + (2,)
    else:
        perm = (1, 0) + spatial + (2,) + kern
    length = cg * int(np.prod(geo.kernel))
    return x.permute(perm).reshape(geo.groups, -1, length)


def channel_hessians(h: torch.Tensor, n_channels: int) -> torch.Tensor:
    """One ``[L, L]`` Hessian per output channel: ``[n_channels, L, L]`` (a broadcast view for 2-d ``h``).

    A 3-d ``h`` (``[groups, L, L]``, grouped/depthwise convolutions) is indexed with ``k // (K // groups)``.
    """
    if h.ndim == 2:
        return h.unsqueeze(0).expand(n_channels, -1, -1)
    if h.ndim != 3 or n_channels % h.shape[0]:
        raise InputError(f"Hessian of shape {tuple(h.shape)} does not fit {n_channels} output channels")
    per = n_channels // h.shape[0]
    return h.repeat_interleave(per, dim=0) if per > 1 else h


# --------------------------------------------------------------------------------------------- collection

def _signature(module: nn.Module) -> tuple[Any, ...]:
    """Layers with equal signatures turn the same input into the same rows (so they share XᵀX)."""
    kind = _kind_of(module)
    if kind != "conv":
        return ("linear", hessian_shape(module)[0])
    geo = _conv_geometry(module)
    return ("conv", geo)


class _Accumulator:
    """Forward pre-hooks adding ``XᵀX`` of the inputs of some layers; shares the work between layers
    that receive the very same input tensor with the same im2col geometry."""

    def __init__(self, layers: Sequence[QuantLayer], order: HessianOrder,
                 compute_dtype: torch.dtype = torch.float64) -> None:
        self.layers = list(layers)
        self.order = order
        self.compute_dtype = compute_dtype
        self.h: dict[str, torch.Tensor] = {}
        self.n: dict[str, int] = {l.name: 0 for l in self.layers}
        self.enabled = True
        self.mask: torch.Tensor | None = None  # the current batch's attention mask (bool [batch, tokens])
        self._memo: list[tuple[weakref.ref[torch.Tensor], tuple[Any, ...], torch.Tensor, int]] = []
        self._handles: list[Any] = []

    def attach(self) -> "_Accumulator":
        for layer in self.layers:
            self._handles.append(layer.module.register_forward_pre_hook(self._hook(layer)))
        return self

    def remove(self) -> None:
        for h in self._handles:
            h.remove()
        self._handles.clear()
        self._memo.clear()

    def _hook(self, layer: QuantLayer) -> Callable[..., None]:
        sig = _signature(layer.module)

        def hook(module: nn.Module, args: tuple[Any, ...]) -> None:
            if not self.enabled or not args or not isinstance(args[0], torch.Tensor):
                return
            self.add(layer, sig, args[0])

        return hook

    def add(self, layer: QuantLayer, sig: tuple[Any, ...], x: torch.Tensor) -> None:
        contribution, rows = None, 0
        self._memo = [m for m in self._memo if m[0]() is not None]
        for ref, msig, c, r in self._memo:
            if ref() is x and msig == sig:
                contribution, rows = c, r
                break
        if contribution is None:
            real = drop_padded_tokens(layer.module, x.detach(), self.mask)
            contribution, rows = self._gram(layer.module, real)
            self._memo.append((weakref.ref(x), sig, contribution, rows))
        acc = self.h.get(layer.name)
        if acc is None:
            self.h[layer.name] = contribution.clone()
        else:
            acc += contribution
        self.n[layer.name] += rows

    def _gram(self, module: nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, int]:
        rows = layer_input_rows(module, x, self.order)
        g, n, length = rows.shape
        out = torch.zeros((g, length, length), dtype=torch.float64, device=rows.device)
        for start in range(0, n, _ROW_CHUNK):
            chunk = rows[:, start:start + _ROW_CHUNK].to(self.compute_dtype)
            out += (chunk.transpose(1, 2) @ chunk).to(torch.float64)
        return (out[0] if g == 1 else out), n

    def result(self) -> dict[str, torch.Tensor]:
        out = {}
        for layer in self.layers:
            h = self.h.get(layer.name)
            out[layer.name] = h if h is not None else torch.zeros(hessian_shape(layer.module), dtype=torch.float64)
        return out


def _run_masked(model: nn.Module, data: Sequence[Any], acc: "_Accumulator") -> None:
    """Run every batch with ``acc.mask`` set to its attention mask; a hook's :class:`_StopForward` ends
    that batch's pass."""
    try:
        for batch in data:
            acc.mask = padding_mask(batch)
            try:
                run_batches(model, [batch])
            except _StopForward:
                pass
    finally:
        acc.mask = None


def _check_layers(layers: Sequence[QuantLayer]) -> list[QuantLayer]:
    layers = list(layers)
    for i, layer in enumerate(layers):
        if not isinstance(layer, QuantLayer):
            raise InputError(f"layers[{i}] must be a QuantLayer (from select_layers), got {type(layer).__name__}")
        _kind_of(layer.module)
    names = [l.name for l in layers]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise InputError(f"layer names must be unique, got duplicates {dupes[:5]}")
    return layers


def _check_dtype(dtype: Any) -> None:
    if dtype not in (torch.float32, torch.float64):
        raise InputError(f"compute_dtype must be torch.float32 or torch.float64, got {dtype!r}")


def _materialize(batches: Iterable[Any]) -> list[Any]:
    if batches is None:
        raise InputError("calibration batches are required to collect Hessians; pass an iterable of model inputs")
    out = list(batches)
    if not out:
        raise InputError("calibration got no batches; pass at least one batch of model inputs")
    return out


@timed("hessians")
def collect_hessians(
    model: nn.Module,
    layers: Sequence[QuantLayer],
    batches: Iterable[Any],
    order: HessianOrder = "grouping",
    compute_dtype: torch.dtype = torch.float64,
) -> Hessians:
    """``H = Σ XᵀX`` (float64) of every layer's inputs over ``batches``, in one pass over the model.

    Args:
        model: the model the layers belong to.
        layers: the layers to observe (e.g. from :func:`bitvert.pipeline.select_layers`).
        batches: model inputs (tensor, tuple or mapping per batch, as :func:`run_batches` takes them).
        order: column order of ``H`` (``grouping``, default, or ``weight``; module docstring).
        compute_dtype: dtype of each chunk's ``XᵀX`` product (``torch.float32`` is about 1.6x faster on
            CPU, relative error ~1e-7); the sum is always accumulated in float64.

    Returns:
        :class:`Hessians` keyed by layer name: ``[L, L]``, or ``[groups, L, L]`` for grouped convolutions.
        Layers that never ran get zeros (and ``n_samples`` 0), with a logged warning. Padded tokens of
        text batches (``attention_mask == 0``) are not counted (module docstring).

    Memory: one float64 ``H`` per layer at a time (an LLM's ``[in, in]`` per projection); use
    :func:`calibrate_sequentially` to hold one step's at a time.
    """
    layers = _check_layers(layers)
    _check_dtype(compute_dtype)
    data = _materialize(batches)
    acc = _Accumulator(layers, order, compute_dtype).attach()
    try:
        _run_masked(model, data, acc)
    finally:
        acc.remove()
    n = len(data)
    missing = [name for name, c in acc.n.items() if c == 0]
    if missing:
        logger.warning("layers never executed on the %d calibration batches (H = 0): %s", n, missing[:10])
    return Hessians(acc.result(), acc.n, order)


# --------------------------------------------------------------------------------------------- sequential

class _StopForward(BaseException):
    """Raised by a hook to end a forward pass early (caught by this module only)."""


@dataclass
class _Plan:
    """Execution order found on the first batch: steps of layers and, when usable, the block stack."""

    steps: list[list[QuantLayer]]
    blocks: list[nn.Module] = field(default_factory=list)
    block_of: dict[str, int] = field(default_factory=dict)  # layer name -> block index
    before_blocks: set[str] = field(default_factory=set)  # layers outside the stack that run before it
    calls: dict[str, int] = field(default_factory=dict)  # layer name -> calls on the first batch


def _plan(model: nn.Module, layers: list[QuantLayer], first_batch: Any, use_blocks: bool) -> _Plan:
    """Run one batch, recording when each layer first runs and which input tensor it got."""
    events: list[tuple[str, Any]] = []  # ("layer", name, x) / ("block_in", i, x) / ("block_out", i, out)
    seen: set[str] = set()
    inputs: dict[str, torch.Tensor] = {}
    handles = []
    blocks, block_of = block_stack(model, layers) if use_blocks else ([], {})
    block_kwargs: list[tuple[tuple[Any, ...], dict[str, Any]]] = []
    block_outputs: list[Any] = []

    calls: dict[str, int] = {}

    def layer_hook(layer: QuantLayer) -> Callable[..., None]:
        def hook(module: nn.Module, args: tuple[Any, ...]) -> None:
            calls[layer.name] = calls.get(layer.name, 0) + 1
            if layer.name not in seen:
                seen.add(layer.name)
                events.append(("layer", layer.name))
                if args and isinstance(args[0], torch.Tensor):
                    inputs[layer.name] = args[0]
        return hook

    def block_pre(i: int) -> Callable[..., None]:
        def hook(module: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
            if len(block_kwargs) == i:
                events.append(("block", i))
                block_kwargs.append((args, dict(kwargs)))
        return hook

    def block_post(i: int) -> Callable[..., None]:
        def hook(module: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any], output: Any) -> None:
            if len(block_outputs) == i:
                block_outputs.append(_hidden_of(output))
        return hook

    for layer in layers:
        handles.append(layer.module.register_forward_pre_hook(layer_hook(layer)))
    for i, b in enumerate(blocks):
        handles.append(b.register_forward_pre_hook(block_pre(i), with_kwargs=True))
        handles.append(b.register_forward_hook(block_post(i), with_kwargs=True))
    try:
        run_batches(model, [first_batch])
    finally:
        for h in handles:
            h.remove()
    by_name = {l.name: l for l in layers}
    steps: list[list[QuantLayer]] = []
    for ev in events:
        if ev[0] != "layer":
            continue
        layer = by_name[ev[1]]
        x = inputs.get(layer.name)
        if steps and x is not None and any(inputs.get(o.name) is x for o in steps[-1]):
            steps[-1].append(layer)
        else:
            steps.append([layer])
    never = [l for l in layers if l.name not in seen]
    if never:
        logger.warning("layers never executed on the first calibration batch (processed last): %s",
                       [l.name for l in never][:10])
        steps.extend([l] for l in never)
    plan = _Plan(steps=steps, calls=calls)
    if blocks and _blocks_chain(blocks, block_kwargs, block_outputs, events, block_of, layers):
        plan.blocks, plan.block_of = blocks, block_of
        first = events.index(("block", 0))
        plan.before_blocks = {ev[1] for ev in events[:first] if ev[0] == "layer"}
    elif blocks:
        logger.info("the block stack does not chain hidden states simply; calibrating layer by layer on the model")
    return plan


_CACHE_KEYS = ("past_key_values", "past_key_value", "layer_past")


def _hidden_in(args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> torch.Tensor | None:
    if args and isinstance(args[0], torch.Tensor):
        return args[0]
    hs = kwargs.get("hidden_states")
    return hs if isinstance(hs, torch.Tensor) else None


def _same_extra(a: tuple[tuple[Any, ...], dict[str, Any]], b: tuple[tuple[Any, ...], dict[str, Any]]) -> bool:
    """Whether two block calls agree on everything but the hidden states (and KV caches)."""
    (aa, ak), (ba, bk) = a, b
    if len(aa) != len(ba) or set(ak) != set(bk):
        return False

    def same(x: Any, y: Any) -> bool:
        if isinstance(x, torch.Tensor) or isinstance(y, torch.Tensor):
            return x is y
        if isinstance(x, (tuple, list)) and isinstance(y, (tuple, list)):
            return len(x) == len(y) and all(same(i, j) for i, j in zip(x, y))
        try:
            return bool(x == y)
        except Exception:  # noqa: BLE001 - objects without a usable ==
            return x is y

    return all(same(x, y) for x, y in zip(aa[1:], ba[1:])) and all(
        k in _CACHE_KEYS or k == "hidden_states" or same(ak[k], bk[k]) for k in ak)


def _blocks_chain(blocks: list[nn.Module], calls: list[tuple[tuple[Any, ...], dict[str, Any]]],
                  outputs: list[Any], events: list[tuple[Any, ...]], block_of: Mapping[str, int],
                  layers: Sequence[QuantLayer]) -> bool:
    """Blocks ran once each, in order, each fed the previous one's hidden output with the same other
    arguments, and every layer outside the stack ran before the first or after the last block."""
    if len(calls) != len(blocks) or len(outputs) != len(blocks):
        return False
    if any(_hidden_in(*c) is None for c in calls) or any(o is None for o in outputs):
        return False
    for i in range(1, len(blocks)):
        if _hidden_in(*calls[i]) is not outputs[i - 1] or not _same_extra(calls[0], calls[i]):
            return False
    order = [ev for ev in events]
    pos_first = next(i for i, ev in enumerate(order) if ev[0] == "block" and ev[1] == 0)
    pos_last = next(i for i, ev in enumerate(order) if ev[0] == "block" and ev[1] == len(blocks) - 1)
    for i, ev in enumerate(order):
        if ev[0] != "layer":
            continue
        b = block_of.get(ev[1])
        if b is None and pos_first < i < pos_last:
            return False
        if b is not None:
            start = next(j for j, e in enumerate(order) if e[0] == "block" and e[1] == b)
            end = next((j for j, e in enumerate(order) if e[0] == "block" and e[1] == b + 1), len(order))
            if not start < i < end:
                return False
    return True


def _block_call(block: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any], hidden: torch.Tensor) -> Any:
    kw = {k: (None if k in _CACHE_KEYS else v) for k, v in kwargs.items()}
    if "use_cache" in kw:
        kw["use_cache"] = False
    if args and isinstance(args[0], torch.Tensor):
        return block(hidden, *args[1:], **kw)
    kw["hidden_states"] = hidden
    return block(*args, **kw)


@timed("hessians")
def calibrate_sequentially(
    model: nn.Module,
    layers: Sequence[QuantLayer],
    batches: Iterable[Any],
    callback: Callable[[QuantLayer, torch.Tensor], None],
    order: HessianOrder = "grouping",
    blocks: bool = True,
    compute_dtype: torch.dtype = torch.float64,
) -> dict[str, int]:
    """Collect each layer's ``H`` from inputs that passed through the already-processed layers.

    Layers are processed in execution order (found on the first batch); layers fed the very same
    input tensor form one step. For each step, the step's ``H`` are collected, then ``callback(layer, H)``
    is called for each of its layers (in execution order) -- typically it prunes the layer's weight in
    place -- before any later layer's ``H`` is collected.

    Args:
        model: the model; the callback may change its weights.
        layers: the layers to process (e.g. the pruned ones from :func:`select_layers`).
        batches: calibration inputs (materialized once; every step reuses them).
        callback: ``callback(layer, H)`` with ``H`` as :func:`collect_hessians` returns it.
        order: column order of ``H``.
        blocks: use the block stack when there is one (only one block's activations resident);
            ``False`` re-runs the whole model per step.
        compute_dtype: as in :func:`collect_hessians`.

    Returns:
        Input rows seen by each layer (0: the layer never ran; its ``H`` was all zeros).
    """
    layers = _check_layers(layers)
    _check_dtype(compute_dtype)
    if not callable(callback):
        raise InputError(f"callback must be callable(layer, H), got {type(callback).__name__}")
    data = _materialize(batches)
    if not layers:
        return {}
    spec = (order, compute_dtype)
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            plan = _plan(model, layers, data[0], blocks)
            if plan.blocks:
                logger.info("calibrating block by block (%d blocks, %d steps)", len(plan.blocks), len(plan.steps))
                return _run_blocks(model, plan, data, callback, spec)
            counts: dict[str, int] = {}
            done: set[str] = set()
            for step in plan.steps:
                counts.update(_model_step(model, step, done, layers, data, callback, spec, plan))
            return counts
    finally:
        model.train(was_training)


def _stop_hooks(others: Sequence[QuantLayer]) -> list[Any]:
    def stop(module: nn.Module, args: tuple[Any, ...]) -> None:
        raise _StopForward

    return [l.module.register_forward_pre_hook(stop) for l in others]


def _stop_after(step: Sequence[QuantLayer], plan: _Plan, acc: _Accumulator) -> list[Any]:
    """End each pass as soon as the step's first layer receives its input: the step's layers share that
    very tensor (that is what makes them a step), so it is added to every other layer of the step there
    and nothing after it is computed -- neither the step's own products nor anything up to the next later
    layer -- without changing any ``H``. Registered after the accumulator's hooks. Only when every layer
    of the step ran exactly once on the first batch (a layer called twice sums both calls' inputs)."""
    if any(plan.calls.get(l.name) != 1 for l in step):
        return []
    others = [(layer, _signature(layer.module)) for layer in step[1:]]

    def stop(module: nn.Module, args: tuple[Any, ...]) -> None:
        if acc.enabled and args and isinstance(args[0], torch.Tensor):
            for layer, sig in others:
                acc.add(layer, sig, args[0])
        raise _StopForward

    return [step[0].module.register_forward_pre_hook(stop)]


def _finish_step(acc: _Accumulator, step: Sequence[QuantLayer],
                 callback: Callable[[QuantLayer, torch.Tensor], None]) -> dict[str, int]:
    hs = acc.result()
    for layer in step:
        if acc.n[layer.name] == 0:
            logger.warning("layer %s never executed during calibration; its H is all zeros", layer.name)
        callback(layer, hs[layer.name])
    return dict(acc.n)


def _run_each(model: nn.Module, data: Sequence[Any]) -> None:
    """Run every batch through the model; a hook's :class:`_StopForward` ends that batch's pass."""
    for batch in data:
        try:
            run_batches(model, [batch])
        except _StopForward:
            pass


def _model_step(model: nn.Module, step: list[QuantLayer], done: set[str], layers: Sequence[QuantLayer],
                data: Sequence[Any], callback: Callable[[QuantLayer, torch.Tensor], None],
                spec: tuple[HessianOrder, torch.dtype], plan: _Plan) -> dict[str, int]:
    """One step on the whole model: run every batch until the step's inputs are collected."""
    names = {l.name for l in step}
    later = [l for l in layers if l.name not in names and l.name not in done]
    acc = _Accumulator(step, *spec).attach()
    handles = _stop_hooks(later) + _stop_after(step, plan, acc)
    try:
        _run_masked(model, data, acc)
    finally:
        acc.remove()
        for h in handles:
            h.remove()
    done.update(names)
    return _finish_step(acc, step, callback)


def _run_blocks(model: nn.Module, plan: _Plan, data: Sequence[Any],
                callback: Callable[[QuantLayer, torch.Tensor], None],
                spec: tuple[HessianOrder, torch.dtype]) -> dict[str, int]:
    counts: dict[str, int] = {}
    done: set[str] = set()
    all_layers = [l for s in plan.steps for l in s]
    outside = [s for s in plan.steps if all(l.name not in plan.block_of for l in s)]
    in_blocks = [s for s in plan.steps if any(l.name in plan.block_of for l in s)]
    # layers outside the stack run before or after it (the plan checked it): on the whole model, stopping early
    first_block = plan.blocks[0]
    before = [s for s in outside if s[0].name in plan.before_blocks]
    after = [s for s in outside if s[0].name not in plan.before_blocks]
    for step in before:
        counts.update(_model_step(model, step, done, all_layers, data, callback, spec, plan))
    # capture the first block's calls over every batch
    calls: list[tuple[tuple[Any, ...], dict[str, Any]]] = []
    masks: list[torch.Tensor | None] = []  # attention mask of the batch of each captured call
    current: list[torch.Tensor | None] = [None]

    def capture(module: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        calls.append((args, dict(kwargs)))
        masks.append(current[0])
        raise _StopForward

    handle = first_block.register_forward_pre_hook(capture, with_kwargs=True)
    try:
        for batch in data:
            current[0] = padding_mask(batch)
            _run_each(model, [batch])
    finally:
        handle.remove()
    hidden = [_hidden_in(*c) for c in calls]
    outputs: list[Any] = []
    for b, block in enumerate(plan.blocks):
        steps = [s for s in in_blocks if plan.block_of[s[0].name] == b]
        for step in steps:
            names = {l.name for l in step}
            later = [l for s in steps for l in s if l.name not in names and l.name not in done]
            acc = _Accumulator(step, *spec).attach()
            handles = _stop_hooks(later) + _stop_after(step, plan, acc)
            try:
                for (args, kwargs), h, mask in zip(calls, hidden, masks):
                    acc.mask = mask
                    try:
                        _block_call(block, args, kwargs, h)
                    except _StopForward:
                        pass
            finally:
                acc.remove()
                for hd in handles:
                    hd.remove()
            done.update(names)
            counts.update(_finish_step(acc, step, callback))
        outputs = [_block_call(block, args, kwargs, h) for (args, kwargs), h in zip(calls, hidden)]
        hidden = [_hidden_of(o) for o in outputs]
    del hidden
    if after:
        # the stack's outputs are known: replay them instead of running every block again for the head
        with _replayed_blocks(plan.blocks, outputs if len(calls) == len(data) else None):
            for step in after:
                counts.update(_model_step(model, step, done, all_layers, data, callback, spec, plan))
    return counts


@contextmanager
def _replayed_blocks(blocks: Sequence[nn.Module], outputs: Sequence[Any] | None) -> Iterator[None]:
    """Make every block of the stack return the last block's output of the current batch (``outputs[i]``
    for the i-th call of the first block) without computing anything. The plan checked that the blocks
    run once per forward pass and feed each other directly, so the layers after the stack see exactly
    the inputs a full pass would give them. ``None``: the blocks run normally."""
    if outputs is None or not blocks:
        yield
        return
    index = [-1]

    def output(i: int) -> Any:
        if i == 0:
            index[0] = (index[0] + 1) % len(outputs)  # every pass over the batches starts again at 0
        return outputs[index[0]]

    with replay_outputs(blocks, output):
        yield


# --------------------------------------------------------------------------------------------- output gains

@timed("hessians")
def output_gains(model: nn.Module, layers: Sequence[QuantLayer], batches: Iterable[Any], seed: int = 0
                 ) -> dict[str, np.ndarray]:
    """How much each output channel of each layer moves the model's output: ``float64[K]`` per layer.

    For a random projection ``v ~ N(0, I)`` of the model output ``f``, ``E[(∂(vᵀf)/∂y_k)²] = Σ_j (∂f_j/∂y_k)²``
    (Hutchinson), averaged over the layer's output rows (tokens, positions): a change ``δ`` of channel
    ``k``'s outputs changes ``‖f‖²`` by about ``gain_k · ‖δ‖²``. One backward pass per batch; the
    weights get ``requires_grad`` only for the pass (restored afterwards, no ``.grad`` is written).
    Padded tokens of text batches (``attention_mask == 0``) count neither as output rows of a layer nor
    as model outputs (``v`` is 0 there), as for the Hessians.
    """
    layers = _check_layers(layers)
    data = _materialize(batches)
    gen = torch.Generator().manual_seed(seed)
    sums = {l.name: None for l in layers}
    rows = {l.name: 0 for l in layers}
    flags = {l.name: get_weight(l.module).requires_grad for l in layers}
    was_training = model.training
    model.eval()
    try:
        for l in layers:
            get_weight(l.module).requires_grad_(True)
        for batch in data:
            mask = padding_mask(batch)
            outs: list[tuple[QuantLayer, torch.Tensor]] = []

            def hook(layer: QuantLayer) -> Callable[..., None]:
                def fn(module: nn.Module, args: tuple[Any, ...], output: Any) -> None:
                    if isinstance(output, torch.Tensor) and output.requires_grad:
                        outs.append((layer, output))
                return fn

            handles = [l.module.register_forward_hook(hook(l)) for l in layers]
            try:
                with torch.enable_grad():
                    f = _model_output(call_model(model, batch))
                    v = torch.randn(f.shape, generator=gen, dtype=f.dtype)
                    out_mask = output_padding_mask(f, mask)
                    if out_mask is not None:  # padded outputs
                        v = v * out_mask.reshape(tuple(out_mask.shape) + (1,) * (f.ndim - 2)).to(v)
                    grads = torch.autograd.grad((f * v).sum(), [o for _, o in outs], allow_unused=True)
            finally:
                for h in handles:
                    h.remove()
            for (layer, o), g in zip(outs, grads):
                if g is None:
                    continue
                kind = _kind_of(layer.module)
                gg = drop_padded_tokens(layer.module, g.detach(), mask).to(torch.float64) ** 2
                if kind == "conv":
                    per = gg.transpose(0, 1).reshape(gg.shape[1], -1)
                else:
                    per = gg.reshape(-1, gg.shape[-1]).T
                s = per.sum(dim=1)
                sums[layer.name] = s if sums[layer.name] is None else sums[layer.name] + s
                rows[layer.name] += per.shape[1]
            del outs, grads
    finally:
        for l in layers:
            get_weight(l.module).requires_grad_(flags[l.name])
        model.train(was_training)
    out_gains = {}
    for l in layers:
        s = sums[l.name]
        k = int(get_weight(l.module).shape[1 if _kind_of(l.module) == "linear_in_out" else 0])
        out_gains[l.name] = np.ones(k) if s is None else (s / max(rows[l.name], 1)).cpu().numpy()
    return out_gains
