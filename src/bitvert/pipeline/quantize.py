"""INT8 post-training quantization of PyTorch models (the paper's baseline).

Weights: per-output-channel (default) or per-tensor **symmetric** quantization
to ``[-(2**(b-1) - 1), 2**(b-1) - 1]``, i.e. ``[-127, 127]`` at 8 bits. The
value ``-128`` therefore never occurs (BBS.md §3 [OPEN], option (a)); every
output records this as ``weight_int_range``. The scale of a channel is
``max|w| / 127`` (a channel of zeros gets scale 1 so it stays exactly 0).

Activations: the *input* of every quantized layer (the operand BitVert
multiplies with the weights) is fake-quantized per tensor with a range
calibrated on a few batches (:class:`ActivationQuantizer`).

Layer selection (:func:`select_layers`): ``nn.Linear``, ``nn.Conv1d/2d/3d``
(grouped and depthwise included) and HuggingFace-style ``Conv1D`` (a module
named ``Conv1D`` with an ``nf`` attribute and an ``(in, out)`` weight,
detected without importing ``transformers``). A mapping from regular
expressions over fully-qualified module names to a role (``"prune"``,
``"int8"``, ``"fp32"``/``None`` = skip) or to a :class:`QuantConfig`
overrides the defaults; the first and last quantizable modules (in
registration order) get the explicit ``first_layer`` / ``last_layer`` rule.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, Literal

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field
from torch import nn

from bitvert.errors import ConfigError, InputError, UnsupportedLayerError
from bitvert.pipeline._kernels import channel_absmax, quantize_rows, snapped_sse

__all__ = [
    "QuantConfig",
    "LayerRole",
    "LayerRule",
    "QuantLayer",
    "quantize_weight",
    "dequantize_weight",
    "SCALE_SEARCH_FACTORS",
    "search_channel_scales",
    "weight_int_range",
    "assign_roles",
    "select_layers",
    "get_weight",
    "set_weight_",
    "ActivationQuantizer",
    "ActivationRange",
    "run_batches",
    "quantize_model_",
    "padding_mask",
    "drop_padded_tokens",
    "output_padding_mask",
    "mse_range",
    "call_model",
    "model_output",
    "hidden_of",
    "block_stack",
    "replay_outputs",
]

logger = logging.getLogger(__name__)


class QuantConfig(BaseModel):
    """Post-training quantization settings of one layer (or of a whole model).

    Attributes:
        weight_bits: weight bit width ``b``; weights are quantized to ``[-(2**(b-1)-1), 2**(b-1)-1]``.
        weight_granularity: ``per_channel`` (one scale per output channel, the paper's baseline)
            or ``per_tensor``.
        act_bits: activation bit width, or ``None`` to leave activations in floating point.
        act_symmetric: symmetric signed activation range (``[-m, m]``) instead of an affine
            unsigned one (``[min, max]`` with a zero point).
        act_observer: ``minmax`` (running min/max over the calibration batches),
            ``percentile`` (mean over batches of the ``act_percentile``-th percentiles) or ``mse``
            (the clipping range that minimises the quantization MSE of a bounded sample of the observed
            values) or ``output`` (whichever of the ``minmax`` and ``mse`` ranges moves the model's output
            less on the calibration batches; :class:`ActivationQuantizer`).
        act_percentile: percentile for the ``percentile`` observer, in ``(50, 100]``.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    weight_bits: int = Field(8, ge=2, le=8)
    weight_granularity: Literal["per_channel", "per_tensor"] = "per_channel"
    act_bits: int | None = Field(8, ge=2, le=16)
    act_symmetric: bool = False
    act_observer: Literal["minmax", "percentile", "mse", "output"] = "minmax"
    act_percentile: float = Field(99.99, gt=50.0, le=100.0)


class LayerRole(str, Enum):
    """What the pipeline does with a quantizable layer."""

    PRUNE = "prune"
    """Quantize, then binary-prune its normal channels (sensitive channels stay at 8 bits)."""
    INT8 = "int8"
    """Quantize, never prune: every channel stays at the full weight bit width."""
    FP32 = "fp32"
    """Leave the layer untouched in floating point (weights and input activations)."""


LayerRule = LayerRole | QuantConfig | str | None
"""A value of the per-module regex mapping: a role, a role's name, ``None`` (= ``fp32``, skip),
or a :class:`QuantConfig` (quantize the layer with that config and treat it as ``prune``)."""


@dataclass
class QuantLayer:
    """One selected layer.

    Attributes:
        name: fully-qualified module name.
        module: the module itself.
        kind: grouping layout of its weight (``linear``, ``linear_in_out`` or ``conv``).
        out_axis: axis of the weight holding output channels (1 for ``Conv1D``, else 0).
        role: what the pipeline does with it.
        config: its quantization config.
        reason: why it got this role (``default``, ``first_layer``, ``last_layer`` or the matching regex).
    """

    name: str
    module: nn.Module
    kind: str
    out_axis: int
    role: LayerRole
    config: QuantConfig
    reason: str = "default"
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def n_channels(self) -> int:
        return int(get_weight(self.module).shape[self.out_axis])


def weight_int_range(bits: int) -> tuple[int, int]:
    """Integer range of symmetric weights: ``(-(2**(bits-1)-1), 2**(bits-1)-1)``; -128 never occurs at 8 bits."""
    if isinstance(bits, bool) or not isinstance(bits, int) or not 2 <= bits <= 8:
        raise InputError(f"weight bits must be an integer in 2..8, got {bits!r}")
    q = (1 << (bits - 1)) - 1
    return -q, q


def _channel_view(w: torch.Tensor, axis: int) -> torch.Tensor:
    """``[K, rest]`` view with output channels first."""
    return w.movedim(axis, 0).reshape(w.shape[axis], -1)


def quantize_weight(
    w: torch.Tensor,
    bits: int = 8,
    axis: int = 0,
    granularity: Literal["per_channel", "per_tensor"] = "per_channel",
) -> tuple[torch.Tensor, torch.Tensor]:
    """Symmetric round-to-nearest quantization of a float weight tensor.

    Args:
        w: float weights, output channels along ``axis``.
        bits: bit width ``b``; integers lie in ``[-(2**(b-1)-1), 2**(b-1)-1]``.
        axis: output-channel axis (0 for ``nn.Linear``/convolutions, 1 for HF ``Conv1D``).
        granularity: one scale per output channel or one for the whole tensor.

    Returns:
        ``(q, scale)``: ``q`` is ``int16`` with ``w``'s shape; ``scale`` is ``float32[K]``
        (per-tensor scales are repeated per channel) with ``w ≈ q * scale`` along ``axis``.

    Example::

        >>> q, s = quantize_weight(torch.tensor([[0.5, -1.27], [0.0, 0.0]]))
        >>> q.tolist(), [round(x, 4) for x in s.tolist()]
        ([[50, -127], [0, 0]], [0.01, 1.0])
    """
    if not isinstance(w, torch.Tensor):
        raise InputError(f"weights must be a torch.Tensor, got {type(w).__name__}")
    if not w.is_floating_point():
        raise InputError(f"weights must be floating point to quantize, got dtype {w.dtype}")
    if w.numel() == 0 or w.ndim == 0:
        raise InputError(f"weights are empty or scalar (shape {tuple(w.shape)})")
    if not -w.ndim <= axis < w.ndim:
        raise InputError(f"axis {axis} is out of range for a weight of shape {tuple(w.shape)}")
    axis = axis % w.ndim
    if granularity not in ("per_channel", "per_tensor"):
        raise InputError(f"granularity must be 'per_channel' or 'per_tensor', got {granularity!r}")
    _, qmax = weight_int_range(bits)
    rows = to_rows(w.detach().to(torch.float32), axis)
    amax = channel_absmax(rows)
    if not np.isfinite(amax).all():
        raise InputError(f"weights of shape {tuple(w.shape)} contain NaN or inf; fix the model before quantizing")
    if granularity == "per_tensor":
        amax = np.full_like(amax, amax.max())
    scale = (amax / np.float32(qmax)).astype(np.float32)
    # A zero channel, or one so small that its scale underflows float32, gets scale 1 (its integers are 0).
    scale = np.where(scale > 0, scale, np.float32(1.0)).astype(np.float32)
    q_rows = quantize_rows(rows, scale, qmax)
    return from_rows(q_rows, tuple(w.shape), axis), torch.from_numpy(scale)


SCALE_SEARCH_FACTORS: tuple[float, ...] = tuple(round(1.0 - 0.05 * i, 2) for i in range(11))
"""Shrink factors of the ``mse`` scale search: ``1.0, 0.95, ..., 0.5`` times the absmax scale."""


def search_channel_scales(
    rows: np.ndarray,
    scale: np.ndarray,
    qmax: int,
    snap: Callable[[np.ndarray], np.ndarray] | None = None,
    weights: np.ndarray | None = None,
    channels: np.ndarray | None = None,
    factors: Sequence[float] = SCALE_SEARCH_FACTORS,
    on_choice: Callable[[np.ndarray], None] | None = None,
) -> np.ndarray:
    """Clipped per-channel scales: per channel, the shrunk scale with the least snapped-weight error.

    For every factor ``f`` (one pass over all channels at once, no loop over channels) the rows are
    quantized at ``scale · f`` (round to nearest, clamped to ``[-qmax, qmax]``: a shrunk scale *clips* the
    channel's largest weights), snapped to the target grid by ``snap`` (e.g. BBS binary pruning of the
    integers) and dequantized; each channel keeps the factor whose error
    ``Σ_j weights[k, j] · (snap(q)[k, j] · scale[k] · f - rows[k, j])²`` is least. ``1.0`` is always a
    candidate and wins ties, so no channel ends with a larger error than at ``scale``.

    Args:
        rows: ``float32[K, n]`` float weights, one output channel per row (any fixed column order).
        scale: ``float32[K]`` the channels' absmax scales (``max |row| / qmax``).
        qmax: largest integer of the grid before snapping (127 at 8 bits).
        snap: ``int16[K, n] -> int[K, n]`` integers -> the stored values (same shape); ``None`` = plain rounding.
        weights: ``float[n]`` or ``float[K, n]`` non-negative column weights of the error (the diagonal of
            the layer's input Hessian); ``None`` = plain squared error.
        channels: ``bool[K]``: the channels to search; the others keep ``scale`` exactly.
        factors: the shrink factors tried, each in ``(0, 1]``.
        on_choice: called after each factor's error with ``bool[K]``, the channels whose best factor is now
            this one (all at the first factor, ``1.0``): a caller whose ``snap`` keeps more than the integers
            (the pruning's metadata) merges what its last call made for those channels, and so ends with the
            snap at the chosen scales without snapping once more.

    Returns:
        ``float32[K]`` the chosen scales (``scale · f`` per channel).

    Example (one outlier: a shrunk scale clips it and rounds the other weights finer)::

        >>> s = search_channel_scales(np.array([[1.0, 0.3, 0.33, 0.36]], np.float32), np.array([0.5], np.float32), 2)
        >>> [round(float(x), 3) for x in s]
        [0.425]
    """
    rows = np.asarray(rows, dtype=np.float32)
    scale = np.asarray(scale, dtype=np.float32).reshape(-1)
    if rows.ndim != 2 or scale.shape[0] != rows.shape[0]:
        raise InputError(f"rows must be [K, n] with one scale per row, got rows {rows.shape} and scale {scale.shape}")
    fs = [float(f) for f in factors]
    if not fs or not all(0.0 < f <= 1.0 for f in fs):
        raise ConfigError(f"scale search factors must be in (0, 1], got {list(factors)!r}")
    fs = [1.0] + [f for f in fs if f != 1.0]
    k = rows.shape[0]
    search = np.ones(k, dtype=bool) if channels is None else np.asarray(channels, dtype=bool).reshape(-1)
    if search.shape != (k,):
        raise InputError(f"channels must be a bool array of shape ({k},), got {search.shape}")
    wts = np.zeros((0, rows.shape[1]), dtype=np.float32)  # no weights: the plain squared error
    if weights is not None:
        wts = np.asarray(weights, dtype=np.float32)
        if wts.shape not in ((rows.shape[1],), rows.shape) or not (np.isfinite(wts) & (wts >= 0)).all():
            raise InputError(f"weights must be finite and non-negative, shape ({rows.shape[1]},) or {rows.shape}, "
                             f"got {wts.shape}")
        wts = np.ascontiguousarray(wts.reshape(-1, rows.shape[1]))
    rows = np.ascontiguousarray(rows)
    best_err = np.full(k, np.inf)
    best = scale.copy()
    for f in fs:  # a handful of factors; every channel in one compiled pass each
        s_f = np.where(search, scale * np.float32(f), scale).astype(np.float32)
        q = quantize_rows(rows, s_f, qmax)
        v = q if snap is None else np.ascontiguousarray(snap(q))
        if v.shape != rows.shape:
            raise InputError(f"snap must return integers of the shape it was given {rows.shape}, got {v.shape}")
        err = snapped_sse(v, s_f, rows, wts)
        better = err < best_err
        if on_choice is not None:
            on_choice(better if f != 1.0 else np.ones(k, dtype=bool))
        best_err = np.where(better, err, best_err)
        best = np.where(better, s_f, best)
    return best.astype(np.float32)


def to_rows(t: torch.Tensor, axis: int) -> np.ndarray:
    """``[K, rest]`` numpy rows (output channel ``axis`` first); a view when ``axis`` is 0 and ``t`` is contiguous."""
    return np.ascontiguousarray(_channel_view(t.detach(), axis).numpy())


def from_rows(rows: np.ndarray, shape: tuple[int, ...], axis: int) -> torch.Tensor:
    """Inverse of :func:`to_rows`: a contiguous tensor of ``shape``."""
    moved = (shape[axis],) + tuple(s for i, s in enumerate(shape) if i != axis)
    t = torch.from_numpy(np.ascontiguousarray(rows)).reshape(moved)
    return t if axis == 0 else t.movedim(0, axis).contiguous()


def dequantize_weight(q: torch.Tensor | np.ndarray, scale: torch.Tensor | np.ndarray, axis: int = 0) -> torch.Tensor:
    """``q * scale`` broadcast along ``axis``, as ``float32``."""
    qt = torch.as_tensor(q).to(torch.float32)
    st = torch.as_tensor(scale).to(torch.float32)
    if st.ndim != 1 or st.shape[0] != qt.shape[axis]:
        raise InputError(
            f"scale has shape {tuple(st.shape)}, expected ({qt.shape[axis]},) for weights {tuple(qt.shape)}"
        )
    shape = [1] * qt.ndim
    shape[axis] = -1
    return qt * st.view(shape)


# --------------------------------------------------------------------------- layer selection

_CONV_TYPES = (nn.Conv1d, nn.Conv2d, nn.Conv3d)


def _is_hf_conv1d(module: nn.Module) -> bool:
    w = getattr(module, "weight", None)
    return (
        type(module).__name__ == "Conv1D"
        and hasattr(module, "nf")
        and isinstance(w, torch.Tensor)
        and w.ndim == 2
        and w.shape[1] == module.nf
    )


def layer_kind(module: nn.Module) -> tuple[str, int] | None:
    """``(grouping kind, output axis)`` of a quantizable module, or ``None`` for other modules."""
    if isinstance(module, nn.Linear):
        return "linear", 0
    if isinstance(module, _CONV_TYPES):
        return "conv", 0
    if _is_hf_conv1d(module):
        return "linear_in_out", 1
    return None


def get_weight(module: nn.Module) -> torch.Tensor:
    """The module's ``weight`` parameter."""
    w = getattr(module, "weight", None)
    if not isinstance(w, torch.Tensor):
        raise UnsupportedLayerError(f"module {type(module).__name__} has no weight tensor")
    return w


def set_weight_(module: nn.Module, value: torch.Tensor) -> None:
    """Overwrite ``module.weight`` in place (keeps the Parameter object, dtype and device)."""
    w = get_weight(module)
    if tuple(value.shape) != tuple(w.shape):
        raise InputError(f"new weight has shape {tuple(value.shape)}, module expects {tuple(w.shape)}")
    with torch.no_grad():
        w.copy_(value.to(dtype=w.dtype, device=w.device))


def _parse_rule(rule: LayerRule, default: QuantConfig, pattern: str) -> tuple[LayerRole, QuantConfig]:
    if rule is None:
        return LayerRole.FP32, default
    if isinstance(rule, QuantConfig):
        return LayerRole.PRUNE, rule
    if isinstance(rule, LayerRole):
        return rule, default
    if isinstance(rule, str):
        try:
            return LayerRole(rule), default
        except ValueError:
            pass
    raise ConfigError(
        f"layer rule for pattern {pattern!r} must be None, 'prune', 'int8', 'fp32' or a QuantConfig, got {rule!r}"
    )


def _untie_shared_weights(model: nn.Module, layers: list[QuantLayer]) -> None:
    """Give every selected layer its own weight Parameter when it shares one (e.g. a tied LM head)."""
    owners: dict[int, int] = {}
    for _, mod in model.named_modules(remove_duplicate=False):
        for pname, p in mod.named_parameters(recurse=False):
            owners[id(p)] = owners.get(id(p), 0) + 1
    for layer in layers:
        w = get_weight(layer.module)
        if owners.get(id(w), 0) > 1:
            logger.info("untying weight of %s (shared with another module) before quantizing it", layer.name)
            layer.module.weight = nn.Parameter(w.detach().clone(), requires_grad=w.requires_grad)
            layer.extra["untied"] = True


def assign_roles(
    names: Sequence[str],
    config: QuantConfig | None = None,
    rules: Mapping[str, LayerRule] | None = None,
    first_layer: LayerRole | str = LayerRole.INT8,
    last_layer: LayerRole | str = LayerRole.INT8,
) -> list[tuple[LayerRole, QuantConfig, str]]:
    """The role rule of the pipeline: ``(role, config, reason)`` for each quantizable layer, in order.

    This is the one place that decides which layers are pruned, kept INT8 or left in FP32, for a
    PyTorch model (:func:`select_layers`) and for integer layers without a model
    (:func:`bitvert.pipeline.prune_int_layers`, the simulator's shape-only workloads) alike.

    Args:
        names: fully-qualified names of the quantizable layers in execution/registration order.
        config: default :class:`QuantConfig` (INT8 weights and activations when ``None``).
        rules: regex (``re.fullmatch`` on the name) -> rule; the first matching pattern in insertion
            order wins and beats the first/last-layer rule.
        first_layer: role of the first layer; ``last_layer``: role of the last one.

    Raises:
        ConfigError: a pattern is not a valid regular expression, a rule or role is malformed.

    Example::

        >>> [(r.value, why) for r, _, why in assign_roles(["a", "b", "c"], rules={"b": "fp32"})]
        [('int8', 'first_layer'), ('fp32', "rule 'b'"), ('int8', 'last_layer')]
    """
    config = QuantConfig() if config is None else config
    if not isinstance(config, QuantConfig):
        raise ConfigError(f"config must be a QuantConfig, got {type(config).__name__}")
    try:
        first_role, last_role = LayerRole(first_layer), LayerRole(last_layer)
    except ValueError as exc:
        raise ConfigError(f"first_layer/last_layer must be one of {[r.value for r in LayerRole]}: {exc}") from None
    compiled: list[tuple[re.Pattern[str], str, LayerRole, QuantConfig]] = []
    for pattern, rule in (rules or {}).items():
        try:
            rx = re.compile(pattern)
        except re.error as exc:
            raise ConfigError(f"layer pattern {pattern!r} is not a valid regular expression: {exc}") from None
        role, cfg = _parse_rule(rule, config, pattern)
        compiled.append((rx, pattern, role, cfg))
    out: list[tuple[LayerRole, QuantConfig, str]] = [(LayerRole.PRUNE, config, "default") for _ in names]
    if out:
        out[0] = (first_role, config, "first_layer")
    if len(out) > 1:
        out[-1] = (last_role, config, "last_layer")
    for i, name in enumerate(names):
        for rx, pattern, role, cfg in compiled:
            if rx.fullmatch(name):
                out[i] = (role, cfg, f"rule {pattern!r}")
                break
    unused = [p for rx, p, _, _ in compiled if not any(rx.fullmatch(n) for n in names)]
    if unused:
        logger.warning("layer patterns matched no quantizable module: %s", unused)
    return out


def select_layers(
    model: nn.Module,
    config: QuantConfig | None = None,
    rules: Mapping[str, LayerRule] | None = None,
    first_layer: LayerRole | str = LayerRole.INT8,
    last_layer: LayerRole | str = LayerRole.INT8,
) -> list[QuantLayer]:
    """List the quantizable layers of ``model`` with the role each gets (:func:`assign_roles`).

    Args:
        model: any PyTorch module.
        config: default :class:`QuantConfig` (INT8 weights and activations when ``None``).
        rules: regex (``re.fullmatch`` on the fully-qualified module name) -> rule; the first
            matching pattern in insertion order wins and beats the first/last-layer rule. A
            pattern may match non-quantizable modules too; it is then ignored.
        first_layer: role of the first quantizable module in registration order.
        last_layer: role of the last quantizable module in registration order.

    Raises:
        UnsupportedLayerError: the model has no Linear, Conv or ``Conv1D`` layer.
        ConfigError: a pattern is not a valid regular expression or a rule is malformed.
    """
    found = [(name, module, kind) for name, module in model.named_modules()
             if (kind := layer_kind(module)) is not None]
    roles = assign_roles([name for name, _, _ in found], config, rules, first_layer, last_layer)
    if not found:
        raise UnsupportedLayerError(
            f"model {type(model).__name__} has no nn.Linear, nn.Conv1d/2d/3d or HuggingFace Conv1D layer to quantize"
        )
    return [QuantLayer(name=name, module=module, kind=kind[0], out_axis=kind[1], role=role, config=cfg, reason=why)
            for (name, module, kind), (role, cfg, why) in zip(found, roles)]


# --------------------------------------------------------------------------- padded text batches

def padding_mask(batch: Any) -> torch.Tensor | None:
    """The ``attention_mask`` of a mapping batch (e.g. a tokenizer's ``BatchEncoding``) as bool ``[batch,
    tokens]``; ``None`` when the batch has none, when it is not 2-d or when it masks nothing (every token real).

    Padded positions (mask 0) carry activations of no real token; every calibration statistic (activation
    ranges, input Hessians, output gains) leaves them out with :func:`drop_padded_tokens`.

    >>> padding_mask({"attention_mask": torch.tensor([[1, 1, 0]])}).tolist()
    [[True, True, False]]
    >>> padding_mask(torch.zeros(2, 3)) is None
    True
    """
    if not isinstance(batch, Mapping):
        return None
    mask = batch.get("attention_mask")
    if not isinstance(mask, torch.Tensor) or mask.ndim != 2:
        return None
    mask = mask != 0
    return None if bool(mask.all()) else mask


def drop_padded_tokens(module: nn.Module, x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """The real-token rows ``[n_real, features]`` of a linear layer's input or output ``x`` of shape
    ``[batch, tokens, features]`` under ``mask`` (:func:`padding_mask`); ``x`` unchanged when there is no
    mask, when ``x`` has another shape (a pooler's ``[batch, in]``) or ``module`` is a convolution."""
    if mask is None or x.ndim != 3 or tuple(x.shape[:2]) != tuple(mask.shape):
        return x
    kind = layer_kind(module)
    if kind is None or kind[0] not in ("linear", "linear_in_out"):
        return x
    return x[mask.to(x.device)]


def output_padding_mask(output: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor | None:
    """``mask`` (:func:`padding_mask`) when it marks the padded positions of a model output ``[batch, tokens,
    ...]`` (3 or more dims whose first two are the mask's); ``None`` otherwise (no mask, pooled outputs)."""
    if mask is None or output.ndim < 3 or tuple(output.shape[:2]) != tuple(mask.shape):
        return None
    return mask.to(output.device)


# --------------------------------------------------------------------------- activations

@dataclass
class ActivationRange:
    """Calibrated range of one layer's input: ``x_q = (clamp(round(x/scale) + zero_point, qmin, qmax) - zp) * scale``."""

    scale: float
    zero_point: int
    qmin: int
    qmax: int

    def to_dict(self) -> dict[str, float | int]:
        return {"scale": self.scale, "zero_point": self.zero_point, "qmin": self.qmin, "qmax": self.qmax}


_TINY_SCALE = float(torch.finfo(torch.float32).tiny)


def _range_params(lo: torch.Tensor, hi: torch.Tensor, bits: int, symmetric: bool
                  ) -> tuple[torch.Tensor, torch.Tensor, int, int]:
    """``(scale, zero_point, qmin, qmax)`` of the ranges ``[lo, hi]`` (float64 tensors of candidates).

    Symmetric: ``[-m, m]`` with ``m = max(|lo|, |hi|)`` on ``[-(2**(b-1)-1), 2**(b-1)-1]``. Affine: ``[min(lo, 0),
    max(hi, 0)]`` on ``[0, 2**b - 1]`` (zero exactly representable), zero point rounded half to even.
    A range of width 0 gets scale 1, and so does one whose scale would be below float32's smallest normal number
    (the float32 fake quantizer would divide by 0)."""
    if symmetric:
        qmax = (1 << (bits - 1)) - 1
        m = torch.maximum(lo.abs(), hi.abs())
        scale = torch.where(m / qmax >= _TINY_SCALE, m / qmax, torch.ones_like(m))
        return scale, torch.zeros_like(scale), -qmax, qmax
    lo, hi = lo.clamp(max=0.0), hi.clamp(min=0.0)
    qmax = (1 << bits) - 1
    scale = torch.where((hi - lo) / qmax >= _TINY_SCALE, (hi - lo) / qmax, torch.ones_like(hi))
    zp = torch.round(-lo / scale).clamp(0, qmax)
    return scale, zp, 0, qmax


def _range_from(lo: float, hi: float, bits: int, symmetric: bool) -> ActivationRange:
    scale, zp, qmin, qmax = _range_params(torch.tensor([float(lo)], dtype=torch.float64),
                                          torch.tensor([float(hi)], dtype=torch.float64), bits, symmetric)
    return ActivationRange(scale=float(scale[0]), zero_point=int(zp[0]), qmin=qmin, qmax=qmax)


def fake_quantize(x: torch.Tensor, r: ActivationRange) -> torch.Tensor:
    """Quantize-dequantize ``x`` with the calibrated range ``r``."""
    q = torch.clamp(torch.round(x / r.scale) + r.zero_point, r.qmin, r.qmax)
    return (q - r.zero_point) * r.scale


_MAX_PERCENTILE_SAMPLES = 1 << 20
_MSE_SAMPLE_CAP = 1 << 18  # values kept per layer by the ``mse`` observer
_MSE_SEARCH_SAMPLES = 1 << 14  # evenly spaced quantiles of the kept values the range search evaluates
_MSE_COARSE = torch.pow(2.0, -torch.arange(64, dtype=torch.float64) / 8)  # 1 .. 2**-7.9, 9 % apart
_MSE_FINE = torch.pow(2.0, torch.arange(-7, 8, dtype=torch.float64) / 64)  # around the coarse best, 1.1 % apart
_MSE_CHUNK = 1 << 22  # candidate x sample elements per step of the search


def _sorted(x: torch.Tensor) -> torch.Tensor:
    """The values of ``x`` as a sorted float32 vector (numpy's sort: the same values as ``torch.sort``, several
    times faster on CPU)."""
    return torch.from_numpy(np.sort(x.detach().reshape(-1).float().cpu().numpy()))


class _BoundedSample:
    """A deterministic sample of at most ``cap`` of the values observed: each batch's sorted values at the
    current stride; when more than ``cap`` are kept, every other value of the sorted sample is dropped and
    the stride doubles, so every kept value stands for the same number of observed ones. Below the cap the
    sample is exactly the observed values (in sorted order, so the batching does not matter)."""

    def __init__(self, cap: int) -> None:
        self.cap = cap
        self.stride = 1
        self.parts: list[torch.Tensor] = []
        self.n = 0

    def add(self, x: torch.Tensor) -> None:
        part = _sorted(x)[self.stride // 2::self.stride]
        self.parts.append(part)
        self.n += part.numel()
        while self.n > self.cap:
            kept = self.values()[1::2]
            self.parts, self.n = [kept], kept.numel()
            self.stride *= 2

    def values(self) -> torch.Tensor:
        return self.parts[0] if len(self.parts) == 1 else _sorted(torch.cat(self.parts))  # parts are sorted


def _quant_sse(x: torch.Tensor, scale: torch.Tensor, zp: torch.Tensor, qmin: int, qmax: int) -> torch.Tensor:
    """Sum of squared fake-quantization errors of the float32 values ``x`` for each candidate range
    (``scale``/``zp`` float64 ``[c]``), computed in float32 as :func:`fake_quantize` does; float64 ``[c]``."""
    out = torch.empty(scale.shape[0], dtype=torch.float64)
    step = max(1, _MSE_CHUNK // max(x.numel(), 1))
    for i in range(0, scale.shape[0], step):
        s = scale[i:i + step].float().unsqueeze(1)
        z = zp[i:i + step].float().unsqueeze(1)
        q = torch.round(x.unsqueeze(0) / s).add_(z).clamp_(qmin, qmax).sub_(z).mul_(s).sub_(x)
        out[i:i + step] = q.square_().sum(dim=1, dtype=torch.float64)
    return out


def mse_range(values: torch.Tensor, bits: int, symmetric: bool) -> tuple[float, float]:
    """The clipping range ``(lo, hi)`` of ``values`` whose fake quantization (:func:`fake_quantize` with the
    range :func:`_range_from` makes of it) has the smallest mean squared error.

    Candidates are fractions of the observed extremes: ``2**(-k/8)``, ``k = 0..63`` (1 down to 0.004, 9 %
    apart), then ``2**(j/64)``, ``j = -7..7``, times the best of those (1.1 % apart). Symmetric: these
    two scans of ``m``. Affine: the two scans shrinking both ends together, then the two of ``hi`` at the
    best ``lo`` and the two of ``lo`` at that ``hi`` (234 candidates). Each scan starts with the best range
    so far (the first one with the observed extremes, i.e. ``minmax``), and ties keep the earlier candidate,
    so the result's error is never above ``minmax``'s on the values searched. The error is evaluated exactly
    (zero point rounding and float32 arithmetic included) on all values, or on 16,384 of them when there
    are more: the middle value of each of 16,384 equal strata of the sorted values, so each stands for as
    many values as the others (a single far outlier among many values is then not seen). Vectorised over
    candidates and values.

    >>> x = torch.randn(100_000, generator=torch.Generator().manual_seed(0))
    >>> lo, hi = mse_range(x, 8, symmetric=True)      # a Gaussian is clipped at about 4 sigma
    >>> round(hi, 1), hi < float(x.max())
    (4.0, True)
    """
    x = values.reshape(-1).float()
    if x.numel() == 0:
        raise InputError("mse_range needs at least one value")
    if not bool(torch.isfinite(x).all()):
        raise InputError("activations contain NaN or inf; fix the model or the calibration inputs")
    x = _sorted(x)
    lo0, hi0 = min(float(x[0]), 0.0), max(float(x[-1]), 0.0)
    if x.numel() > _MSE_SEARCH_SAMPLES:  # the middle value of each of equal strata of the sorted values
        strata = torch.arange(_MSE_SEARCH_SAMPLES, dtype=torch.float64) + 0.5
        x = x[(strata * (x.numel() / _MSE_SEARCH_SAMPLES)).long()]

    def scan(lo: torch.Tensor, hi: torch.Tensor) -> int:
        scale, zp, qmin, qmax = _range_params(lo, hi, bits, symmetric)
        return int(torch.argmin(_quant_sse(x, scale, zp, qmin, qmax)))

    def fraction(make: Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor]], incumbent: float) -> float:
        """The best fraction of a coarse scan, refined by a fine one around it (at most 1); the incumbent
        is the first candidate of both scans, so the error never increases from scan to scan."""
        coarse = torch.cat([torch.tensor([incumbent], dtype=torch.float64), _MSE_COARSE])
        best = float(coarse[scan(*make(coarse))])
        fine = torch.cat([torch.tensor([best], dtype=torch.float64), (best * _MSE_FINE).clamp(max=1.0)])
        return float(fine[scan(*make(fine))])

    if symmetric:
        m = max(-lo0, hi0)
        f = fraction(lambda fr: (-fr * m, fr * m), 1.0)
        return -f * m, f * m
    f = fraction(lambda fr: (fr * lo0, fr * hi0), 1.0)
    f_lo = f_hi = f
    f_hi = fraction(lambda fr: (torch.full_like(fr, f_lo * lo0), fr * hi0), f_hi)
    f_lo = fraction(lambda fr: (fr * lo0, torch.full_like(fr, f_hi * hi0)), f_lo)
    return f_lo * lo0, f_hi * hi0


class ActivationQuantizer:
    """Observes and then fake-quantizes the inputs of selected layers through forward pre-hooks.

    Usage: ``aq = ActivationQuantizer(layers)``; ``aq.calibrate(model, batches)``; the hooks then
    quantize every forward pass until :meth:`remove`. Layers whose config has ``act_bits=None``
    or whose role is ``fp32`` are not touched. The model structure and ``state_dict`` keys are
    left unchanged.

    Observers (``QuantConfig.act_observer``): ``minmax`` keeps the extremes over all batches;
    ``percentile`` averages each batch's ``act_percentile``-th percentiles; ``mse`` keeps a bounded
    sample of the values (:class:`_BoundedSample`, 2**18 values per layer) and picks the range with
    :func:`mse_range`; ``output`` computes both of those ranges and keeps, per layer, the one whose
    quantization (that layer's input alone, every other layer in float) gives the smallest squared error
    of the model's output against the float model on the calibration batches (ties: ``minmax``); it costs
    two partial forward passes over the batches per layer whose two ranges differ (only the layer's own block,
    the later ones and what follows the stack run: :class:`_OutputScorer`), plus one for the reference.
    Padded tokens of text batches (``attention_mask == 0`` of a mapping batch) are not observed
    (:func:`drop_padded_tokens`), so a padded batch gives the ranges of its samples run one by one
    (``minmax``, and ``mse`` below the sample cap), and padded positions of the model output do not
    count in the ``output`` observer's error.
    """

    def __init__(self, layers: Iterable[QuantLayer]) -> None:
        self.layers = [l for l in layers if l.role is not LayerRole.FP32 and l.config.act_bits is not None]
        self.ranges: dict[str, ActivationRange] = {}
        self._stats: dict[str, list[float]] = {}
        self._samples: dict[str, _BoundedSample] = {}
        self._mask: torch.Tensor | None = None  # the current calibration batch's padding mask
        self._mode: Literal["observe", "quantize", "off"] = "off"
        self._handles = [l.module.register_forward_pre_hook(self._make_hook(l)) for l in self.layers]

    def _make_hook(self, layer: QuantLayer) -> Callable[..., Any]:
        def hook(module: nn.Module, args: tuple[Any, ...]) -> Any:
            if not args or not isinstance(args[0], torch.Tensor) or not args[0].is_floating_point():
                return None
            x = args[0]
            if self._mode == "observe":
                self._observe(layer, x.detach())
                return None
            if self._mode == "quantize":
                r = self.ranges.get(layer.name)
                if r is None:
                    return None
                return (fake_quantize(x, r),) + tuple(args[1:])
            return None

        return hook

    def _observe(self, layer: QuantLayer, x: torch.Tensor) -> None:
        cfg = layer.config
        xf = drop_padded_tokens(layer.module, x, self._mask).float().reshape(-1)
        if xf.numel() == 0:
            return
        if cfg.act_observer in ("minmax", "mse", "output"):
            lo, hi = float(xf.min()), float(xf.max())
            st = self._stats.setdefault(layer.name, [lo, hi, 1.0])
            st[0], st[1] = min(st[0], lo), max(st[1], hi)
            if cfg.act_observer != "minmax":
                self._samples.setdefault(layer.name, _BoundedSample(_MSE_SAMPLE_CAP)).add(xf)
            return
        if xf.numel() > _MAX_PERCENTILE_SAMPLES:
            idx = torch.linspace(0, xf.numel() - 1, _MAX_PERCENTILE_SAMPLES).long()
            xf = xf[idx]
        q = cfg.act_percentile / 100.0
        lo, hi = float(torch.quantile(xf, 1.0 - q)), float(torch.quantile(xf, q))
        st = self._stats.setdefault(layer.name, [0.0, 0.0, 0.0])
        st[0] += lo
        st[1] += hi
        st[2] += 1.0

    def calibrate(self, model: nn.Module, batches: Iterable[Any]) -> dict[str, ActivationRange]:
        """Run ``batches`` through ``model`` (no grad, eval mode) and fix the activation ranges.

        Raises:
            InputError: no batch was given, or a quantized layer saw no floating-point input.
        """
        self._stats.clear()
        self._samples.clear()
        self._mode = "observe"
        batches = list(batches)  # the ``output`` observer runs them again
        n = 0
        try:
            for batch in batches:
                self._mask = padding_mask(batch)
                n += run_batches(model, [batch])
        finally:
            self._mode = "off"
            self._mask = None
        if n == 0:
            raise InputError("calibration got no batches; pass at least one batch of model inputs")
        missing = [l.name for l in self.layers if l.name not in self._stats]
        if missing:
            logger.info("layers never executed during calibration keep float inputs: %s", missing[:10])
        candidates: dict[str, list[ActivationRange]] = {}
        for layer in self.layers:
            st = self._stats.get(layer.name)
            if st is None:
                continue
            bits, symmetric = int(layer.config.act_bits), layer.config.act_symmetric  # type: ignore[arg-type]
            observer = layer.config.act_observer
            lo, hi = (st[0], st[1]) if observer != "percentile" else (st[0] / st[2], st[1] / st[2])
            ranges = [_range_from(lo, hi, bits, symmetric)]
            if observer in ("mse", "output"):
                ranges.append(_range_from(*mse_range(self._samples[layer.name].values(), bits, symmetric),
                                          bits, symmetric))
            candidates[layer.name] = ranges
        self._samples.clear()
        self.ranges = {name: c[-1] for name, c in candidates.items()}
        by_output = [l for l in self.layers if l.config.act_observer == "output" and l.name in candidates]
        if by_output:
            self._choose_by_output(model, batches, by_output, candidates)
        self._mode = "quantize"
        return dict(self.ranges)

    def _choose_by_output(self, model: nn.Module, batches: Sequence[Any], layers: Sequence[QuantLayer],
                          candidates: Mapping[str, list[ActivationRange]]) -> None:
        """Per layer, the candidate range (``minmax`` first) with the smallest squared output error when it
        alone quantizes its layer's input; the other layers stay in float meanwhile (:class:`_OutputScorer`
        runs only the part of the model the layer can change). A later candidate is scored only until its
        error reaches the best so far: it could no longer win (ties keep the earlier one)."""
        final = dict(self.ranges)
        scored = []
        for layer in layers:
            cands = candidates[layer.name]
            if all(c == cands[0] for c in cands[1:]):
                final[layer.name] = cands[0]
            else:
                scored.append(layer)
        if not scored:
            self.ranges = final
            return
        chose_mse = 0
        was_training = model.training
        model.eval()
        try:
            with torch.no_grad():
                self._mode = "off"
                scorer = _OutputScorer(model, batches, scored)
                self._mode = "quantize"
                for layer in scored:
                    cands = candidates[layer.name]
                    errors: list[float] = []
                    for cand in cands:
                        self.ranges = {layer.name: cand}
                        errors.append(scorer.error(layer.name, min(errors, default=float("inf"))))
                    best = int(np.argmin(errors))
                    chose_mse += best > 0
                    final[layer.name] = cands[best]
                    logger.debug("%s: output errors %s, keeps candidate %d", layer.name, errors, best)
        finally:
            self.ranges = final
            self._mode = "off"
            model.train(was_training)
        logger.info("output observer: %d of %d layers keep the mse range, the others the min/max range",
                    chose_mse, len(layers))

    def load_ranges(self, ranges: Mapping[str, ActivationRange]) -> None:
        """Use previously calibrated ranges (e.g. from a checkpoint) and start quantizing."""
        self.ranges = dict(ranges)
        self._mode = "quantize"

    def enable(self, on: bool = True) -> None:
        """Switch fake quantization on or off (ranges are kept)."""
        self._mode = "quantize" if on else "off"

    def remove(self) -> None:
        """Detach every hook; the model is back to float activations."""
        for h in self._handles:
            h.remove()
        self._handles.clear()
        self._mode = "off"


def call_model(model: nn.Module, batch: Any) -> Any:
    """``model(batch)`` for a tensor, ``model(*batch)`` for a tuple/list, ``model(**batch)`` for a mapping."""
    if isinstance(batch, Mapping):
        return model(**batch)
    if isinstance(batch, (tuple, list)):
        return model(*batch)
    return model(batch)


def hidden_of(output: Any) -> torch.Tensor | None:
    """The hidden-state tensor of a module's output (the tensor, the first of a tuple, ``last_hidden_state``)."""
    if isinstance(output, torch.Tensor):
        return output
    if isinstance(output, (tuple, list)) and output and isinstance(output[0], torch.Tensor):
        return output[0]
    hs = getattr(output, "last_hidden_state", None)
    return hs if isinstance(hs, torch.Tensor) else None


def model_output(out: Any) -> torch.Tensor:
    """The tensor a model returns (a tensor, the first of a tuple, ``logits`` or ``last_hidden_state``)."""
    for key in ("logits", "last_hidden_state"):
        t = getattr(out, key, None)
        if isinstance(t, torch.Tensor):
            return t
    hidden = hidden_of(out)
    if hidden is None:
        raise UnsupportedLayerError(f"cannot find the output tensor of a model returning {type(out).__name__}")
    return hidden


def run_batches(model: nn.Module, batches: Iterable[Any]) -> int:
    """Feed ``batches`` to ``model`` in eval mode without gradients; returns the number of batches.

    A batch may be a tensor (``model(x)``), a tuple/list (``model(*b)``) or a mapping
    (``model(**b)``, e.g. HuggingFace tokenizer output).
    """
    was_training = model.training
    model.eval()
    n = 0
    try:
        with torch.no_grad():
            for batch in batches:
                call_model(model, batch)
                n += 1
    finally:
        model.train(was_training)
    return n


# --------------------------------------------------------------------------- block stacks

def block_stack(model: nn.Module, layers: Sequence[QuantLayer]) -> tuple[list[nn.Module], dict[str, int]]:
    """The block stack of a model: the ``nn.ModuleList`` of same-class modules (>= 2, each holding at least one
    of ``layers``) holding the most layers, and the block index of each layer in it; ``([], {})`` when there is
    none. The decoder layers of an LLM, the encoder layers of BERT."""
    best: tuple[int, str, list[nn.Module]] | None = None
    names = [l.name for l in layers]
    for prefix, mod in model.named_modules():
        if not isinstance(mod, nn.ModuleList) or len(mod) < 2:
            continue
        if len({type(m) for m in mod}) != 1:
            continue
        base = f"{prefix}." if prefix else ""
        count = sum(1 for n in names if n.startswith(base))
        per_block = [sum(1 for n in names if n.startswith(f"{base}{i}.")) for i in range(len(mod))]
        if min(per_block) == 0:
            continue
        if best is None or count > best[0]:
            best = (count, base, list(mod))
    if best is None:
        return [], {}
    _, base, blocks = best
    block_of = {}
    for n in names:
        if n.startswith(base):
            rest = n[len(base):]
            block_of[n] = int(rest.split(".", 1)[0])
    return blocks, block_of


@contextmanager
def replay_outputs(modules: Sequence[nn.Module], output: Callable[[int], Any]) -> Iterator[None]:
    """Within the context a call of ``modules[i]`` computes nothing and returns ``output(i)`` (its hooks still
    run); afterwards every module computes again. How the pipeline skips the blocks of a stack whose outputs it
    already knows (the sequential calibration's head layers, the ``output`` observer)."""
    saved = [m.__dict__.get("forward") for m in modules]

    def replay(i: int) -> Callable[..., Any]:
        def forward(*args: Any, **kwargs: Any) -> Any:
            return output(i)

        return forward

    for i, m in enumerate(modules):
        m.forward = replay(i)  # type: ignore[method-assign]
    try:
        yield
    finally:
        for m, fwd in zip(modules, saved):
            if fwd is None:
                del m.forward
            else:
                m.forward = fwd  # type: ignore[method-assign]


def _tensors(output: Any) -> list[torch.Tensor]:
    """The tensors of a module output: itself, or the tensors of a tuple/list/mapping (one level)."""
    if isinstance(output, torch.Tensor):
        return [output]
    values = output.values() if isinstance(output, Mapping) else output if isinstance(output, (tuple, list)) else ()
    return [v for v in values if isinstance(v, torch.Tensor)]


_SCORING_SAMPLES = 8  # samples per sub-batch of a padded text batch the ``output`` observer scores


def _trimmed_batches(batches: Sequence[Any]) -> list[Any]:
    """The batches with each padded text batch re-cut for scoring: its samples sorted by length (longest first)
    in sub-batches of :data:`_SCORING_SAMPLES`, each cut to its longest sample, so that padded positions, which
    no real token's output depends on, are hardly computed. Only a mapping batch whose ``attention_mask``
    (:func:`padding_mask`) pads on the right and whose tensors all have the mask's shape is re-cut; every other
    batch is kept as it is."""
    out: list[Any] = []
    for batch in batches:
        mask = padding_mask(batch)
        if mask is None or not all(v.shape == mask.shape for v in batch.values() if isinstance(v, torch.Tensor)):
            out.append(batch)
            continue
        lengths = mask.sum(dim=1)
        if not torch.equal(mask, torch.arange(mask.shape[1]) < lengths[:, None]):  # not right-padded
            out.append(batch)
            continue
        order = torch.sort(lengths, descending=True, stable=True).indices
        for i in range(0, len(order), _SCORING_SAMPLES):
            rows = order[i:i + _SCORING_SAMPLES]
            width = int(lengths[rows].max())
            out.append({k: v[rows, :width] if isinstance(v, torch.Tensor) else v for k, v in batch.items()})
    return out


class _OutputScorer:
    """Squared errors of the model output against the float model when one layer's input is quantized, computing
    only the part of the model that layer can change (the ``output`` observer).

    The reference pass (float model, hooks off) records every batch's output of each block of the stack
    (:func:`block_stack`) and where each layer runs. A layer that runs only inside block ``b`` of a stack whose
    blocks run once each per pass, in order, cannot change what blocks ``0..b-1`` return: they replay their
    recorded outputs (:func:`replay_outputs`), and only the embeddings, block ``b``, the later blocks and
    whatever follows the stack (pooling, final norm, head) run. A layer that runs after the stack replays every
    block. Every other layer, and every layer of a model without such a stack, runs the whole model. The outputs
    are those of full passes, bit for bit (the same operations on the same tensors); replaying stops, with a
    warning, if a recorded output is ever changed in place. Padded text batches are scored in sub-batches of
    samples of similar length without most of their padding (:func:`_trimmed_batches`): the same real-token
    outputs, up to float rounding (matrix products of another shape).
    """

    def __init__(self, model: nn.Module, batches: Sequence[Any], layers: Sequence[QuantLayer]) -> None:
        self.model, self.batches = model, _trimmed_batches(batches)
        blocks, _ = block_stack(model, layers)
        self.blocks = blocks if len({id(b) for b in blocks}) == len(blocks) else []
        self.outputs: list[list[Any]] = [[] for _ in self.blocks]  # [block][batch]
        self.start: dict[str, int] = {}  # layer -> number of leading blocks it replays
        where: dict[str, set[int | str]] = {l.name: set() for l in layers}
        calls: list[int] = []  # blocks called so far in the current batch
        current: list[int | None] = [None]
        chained = [True]
        n = len(self.blocks)

        def pre(i: int) -> Callable[..., None]:
            def hook(module: nn.Module, args: tuple[Any, ...]) -> None:
                chained[0] &= current[0] is None and len(calls) == i
                current[0] = i
                calls.append(i)
            return hook

        def post(i: int) -> Callable[..., None]:
            def hook(module: nn.Module, args: tuple[Any, ...], output: Any) -> None:
                current[0] = None
                self.outputs[i].append(output)
            return hook

        def seen(name: str) -> Callable[..., None]:
            def hook(module: nn.Module, args: tuple[Any, ...]) -> None:
                at = current[0]
                where[name].add(at if at is not None else "before" if not calls else "after" if len(calls) == n
                                else "between")
            return hook

        handles = [b.register_forward_pre_hook(pre(i)) for i, b in enumerate(self.blocks)]
        handles += [b.register_forward_hook(post(i)) for i, b in enumerate(self.blocks)]
        handles += [l.module.register_forward_pre_hook(seen(l.name)) for l in layers]
        self.reference: list[torch.Tensor] = []
        try:
            for batch in self.batches:
                calls.clear()
                self.reference.append(self._output(batch))
                chained[0] &= len(calls) == n and all(len(o) == len(self.reference) for o in self.outputs)
        finally:
            for h in handles:
                h.remove()
        self._versions = [(t, t._version) for outs in self.outputs for o in outs for t in _tensors(o)]
        if not chained[0]:
            self._stop_replaying("its blocks do not run once each, in order, per forward pass", logging.INFO)
        elif not self._intact():
            self._stop_replaying("a block's output was changed in place by the code after it", logging.WARNING)
        for l in layers:
            at = where[l.name]
            if self.blocks and len(at) == 1:
                (only,) = at
                self.start[l.name] = only if isinstance(only, int) else n if only == "after" else 0
        logger.debug("output observer: %d layers replay the blocks before theirs",
                     sum(1 for s in self.start.values() if s > 0))

    def _output(self, batch: Any) -> torch.Tensor:
        f = model_output(call_model(self.model, batch)).detach()
        mask = output_padding_mask(f, padding_mask(batch))
        return f if mask is None else f[mask]

    def _intact(self) -> bool:
        return all(t._version == v for t, v in self._versions)

    def _stop_replaying(self, why: str, level: int) -> None:
        if self.blocks:
            logger.log(level, "output observer: running the whole model for every layer (%s)", why)
        self.blocks, self.outputs, self._versions = [], [], []
        self.start.clear()

    def error(self, name: str, stop_at: float = float("inf")) -> float:
        """The squared output error summed over the batches with the hooks in their current mode; the sum
        stops growing (a partial sum is returned) as soon as it reaches ``stop_at``."""
        start = self.start.get(name, 0)
        total = 0.0
        for i, batch in enumerate(self.batches):
            with replay_outputs(self.blocks[:start], lambda j: self.outputs[j][i]):
                f = self._output(batch)
            if start and not self._intact():
                self._stop_replaying(f"a block's output was changed in place while scoring {name}", logging.WARNING)
                return self.error(name, stop_at)
            total += float(((f - self.reference[i]).double() ** 2).sum())
            if total >= stop_at:  # errors are sums of squares: this candidate cannot win any more
                break
        return total


# --------------------------------------------------------------------------- INT8 baseline

@dataclass
class QuantizedLayerState:
    """Integer weights of one quantized layer: ``weight ≈ q * scale`` along ``out_axis``."""

    layer: QuantLayer
    q: torch.Tensor
    scale: torch.Tensor


def quantize_layers_(layers: Iterable[QuantLayer]) -> list[QuantizedLayerState]:
    """Quantize the weights of every non-``fp32`` layer and write the dequantized floats back."""
    out = []
    for layer in layers:
        if layer.role is LayerRole.FP32:
            continue
        w = get_weight(layer.module)
        q, scale = quantize_weight(w, layer.config.weight_bits, layer.out_axis, layer.config.weight_granularity)
        set_weight_(layer.module, dequantize_weight(q, scale, layer.out_axis))
        out.append(QuantizedLayerState(layer=layer, q=q, scale=scale))
    return out


def quantize_model_(
    model: nn.Module,
    config: QuantConfig | None = None,
    calibration: Iterable[Any] | None = None,
    rules: Mapping[str, LayerRule] | None = None,
    first_layer: LayerRole | str = LayerRole.INT8,
    last_layer: LayerRole | str = LayerRole.INT8,
) -> tuple[list[QuantizedLayerState], ActivationQuantizer | None]:
    """INT8 post-training quantization in place: the paper's baseline.

    Weights of every selected layer are replaced by their dequantized per-channel INT8
    values; if the config quantizes activations, hooks fake-quantize layer inputs with
    ranges calibrated on ``calibration``.

    Returns:
        The per-layer integer weights and the attached :class:`ActivationQuantizer`
        (``None`` when no layer quantizes activations).

    Raises:
        ConfigError: activations are quantized but no calibration batches were given.
    """
    layers = select_layers(model, config, rules, first_layer, last_layer)
    _untie_shared_weights(model, layers)
    states = quantize_layers_(layers)
    aq = attach_activation_quant(model, layers, calibration)
    return states, aq


def attach_activation_quant(
    model: nn.Module, layers: list[QuantLayer], calibration: Iterable[Any] | None
) -> ActivationQuantizer | None:
    """Calibrate and attach activation fake quantization for ``layers`` (``None`` if none needs it)."""
    needs = [l for l in layers if l.role is not LayerRole.FP32 and l.config.act_bits is not None]
    if not needs:
        return None
    if calibration is None:
        raise ConfigError(
            f"{len(needs)} layers quantize activations but no calibration batches were given; pass "
            "calibration=<iterable of model inputs>, or set act_bits=None for weight-only quantization"
        )
    aq = ActivationQuantizer(needs)
    aq.calibrate(model, calibration)
    return aq
