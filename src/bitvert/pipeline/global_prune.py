"""Hardware-aware global binary pruning of a whole model (BBS paper Algorithm 2, BBS.md §7.1).

1. Every layer whose role is ``prune`` is quantized to per-channel INT8 and each of its
   output channels gets a sensitivity score: its quantization scale (step size), or
   the standard deviation of its float weights when weights are quantized per tensor.
2. **One global sort** over all those channels: the top ``ceil(β · n_channels)`` are
   sensitive (ties: earlier layer, then lower channel index).
3. Per layer, the sensitive count ``k`` is rounded **up** to a multiple of
   ``channel_multiple`` (C_H = 32) and capped at the layer's channel count ``K``; the
   rounded count is filled with that layer's highest-scoring channels (which include
   the ``k`` globally selected ones). A layer with ``K <= 32`` channels therefore keeps
   *all or none*: all when at least one of its channels is globally sensitive.
4. The remaining (normal) channels are binary-pruned by :func:`bitvert.pruning.prune`
   with ``dense_channels`` set to the sensitive mask (or, for the ``rtn`` baseline,
   re-quantized to ``8 - N`` bits).

Effective bits (BBS.md §7.3 [D]; decisions in docs/pipeline.md): a sensitive-channel
weight and an ``int8`` layer's weight cost 8 bits and **carry no metadata** (they are
stored dense in their own 32-channel chunks, whose precision is implied by the chunk).
A pruned group of a normal channel costs ``(8 - N) · length + 8`` bits (2-bit
redundant count + 6-bit constant), so 4.25 bits per weight at N = 4, g = 32. Groups
the remainder policy keeps dense cost 8 bits per weight. Per-channel scales and the
channel-index buffer are not counted (the paper does not count them either; the codec
reports exact bytes). ``rtn`` normal channels cost ``8 - N`` bits per weight. Layers
left in FP32 are excluded from the model's effective bits and listed separately.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from bitvert.core.grouping import GroupLayout, make_layout
from bitvert.errors import ConfigError, InputError
from bitvert.pipeline.budget import (
    allocate_columns,
    allowed_columns,
    budget_range,
    channel_group_bits,
    channel_output_errors,
    check_target_bits,
    layer_budget,
    prune_by_columns,
)
from bitvert.pipeline.calibration import calibrate_sequentially, collect_hessians, output_gains
from bitvert.pipeline.presets import PipelinePreset, get_preset
from bitvert.pipeline.quantize import (
    ActivationQuantizer,
    LayerRole,
    QuantConfig,
    QuantLayer,
    _channel_view,
    _untie_shared_weights,
    assign_roles,
    attach_activation_quant,
    dequantize_weight,
    from_rows,
    get_weight,
    quantize_weight,
    search_channel_scales,
    select_layers,
    set_weight_,
    to_rows,
    weight_int_range,
)
from bitvert.pipeline._kernels import dequantize_rows, quantize_rows
from bitvert.pruning import GroupMetadata, PruneResult, prune
from bitvert.pruning.gptq import gptq_prune, gptq_round
from bitvert.timing import collect_stage_seconds, timed

__all__ = [
    "select_sensitive", "channel_scores", "LayerPruneRecord", "ModelPruneReport", "IntLayer", "prune_model_",
    "prune_int_layers",
]

logger = logging.getLogger(__name__)


def select_sensitive(
    scores: Sequence[np.ndarray], fraction: float, multiple: int = 32
) -> list[np.ndarray]:
    """Algorithm 2's channel selection: global top-β, rounded up per layer.

    Args:
        scores: one ``float[K_l]`` array of channel scores per layer (higher = more sensitive).
        fraction: β in ``[0, 1]``, the fraction of all channels selected globally.
        multiple: per-layer counts are rounded up to a multiple of this, capped at ``K_l``.

    Returns:
        One ``bool[K_l]`` mask per layer (True = sensitive, kept at full precision).

    Example (β = 0.25 of 8 channels = 2; layer 0 gets one, rounded up to 2)::

        >>> [m.tolist() for m in select_sensitive([np.array([5., 1., 2.]), np.array([9., 0, 0, 0, 3.])], 0.25, 2)]
        [[True, False, True], [True, False, False, False, True]]
    """
    if not 0.0 <= float(fraction) <= 1.0:
        raise ConfigError(f"sensitive fraction must be in [0, 1], got {fraction}")
    if isinstance(multiple, bool) or not isinstance(multiple, int) or multiple < 1:
        raise ConfigError(f"channel multiple must be a positive integer, got {multiple!r}")
    arrays = [np.asarray(s, dtype=np.float64).reshape(-1) for s in scores]
    if not arrays:
        return []
    sizes = np.array([a.size for a in arrays], dtype=np.int64)
    if (sizes == 0).any():
        raise InputError("every layer needs at least one channel score")
    flat = np.concatenate(arrays)
    if not np.isfinite(flat).all():
        raise InputError("channel scores contain NaN or inf")
    n_total = flat.size
    n_keep = _n_selected(n_total, fraction)
    order = np.argsort(-flat, kind="stable")  # the one global sort
    rank = np.empty(n_total, dtype=np.int64)
    rank[order] = np.arange(n_total)
    top = rank < n_keep
    offsets = np.concatenate([[0], np.cumsum(sizes)])
    layer_of = np.repeat(np.arange(len(arrays)), sizes)
    k = np.bincount(layer_of, weights=top, minlength=len(arrays)).astype(np.int64)
    k_rounded = np.minimum(-(-k // multiple) * multiple, sizes)
    masks = []
    for i in range(len(arrays)):
        r = rank[offsets[i]:offsets[i + 1]]
        local = np.argsort(r, kind="stable")  # this layer's channels, best first
        m = np.zeros(sizes[i], dtype=bool)
        m[local[: k_rounded[i]]] = True
        masks.append(m)
    return masks


def _n_selected(n_total: int, fraction: float) -> int:
    """Channels the global top-β selects before the per-layer rounding."""
    return min(n_total, math.ceil(round(float(fraction) * n_total, 9)))


def channel_scores(weight: torch.Tensor, scale: torch.Tensor, out_axis: int, kind: str) -> np.ndarray:
    """Sensitivity score per output channel: ``scale`` (``kind="scale"``) or channel std (``"std"``)."""
    if kind == "scale":
        return scale.detach().to(torch.float64).cpu().numpy()
    if kind == "std":
        rows = _channel_view(weight.detach().to(torch.float64), out_axis)
        if rows.shape[1] < 2:
            return rows.abs().reshape(-1).cpu().numpy()
        return rows.std(dim=1).cpu().numpy()
    raise ConfigError(f"sensitivity must be 'scale' or 'std', got {kind!r}")


@dataclass
class LayerPruneRecord:
    """What happened to one layer; also carries the integer data the checkpoint stores.

    Attributes:
        name, kind, shape, out_axis: the module and its weight layout.
        role: ``prune``, ``int8`` or ``fp32``; ``reason`` says why.
        n_weights, n_channels, n_sensitive: sizes (``n_sensitive`` after rounding).
        n_sensitive_global: channels picked by the global sort before rounding.
        weight_bits_total: bits of weight storage by the effective-bits rule (0 for fp32 layers).
        int_sse: squared integer error introduced by binary pruning, vs the INT8 weights (0 for ``rtn``).
        float_sse, float_energy: ``Σ(w_new - w_fp32)²`` and ``Σ w_fp32²`` of the float weights.
        q: final integer weights (``int16``, the module's weight layout); ``None`` for fp32 layers.
        scale: ``float32[K]`` per-channel scale (``weight = q * scale`` along ``out_axis``).
        channel_bits: ``uint8[K]`` stored bits per channel (8 sensitive / ``8 - N`` normal).
        sensitive: ``bool[K]``.
        metadata: per-group arrays of the pruning (``redundant``, ``constant``, ``free_columns``,
            ``pruned``) or ``None``; ``layout``: the grouping layout as a dict.
        columns: free columns N of the normal channels -> how many channels have it (one entry, or
            two when a bit budget split the layer; empty for layers that are not pruned).
    """

    name: str
    kind: str
    shape: tuple[int, ...]
    out_axis: int
    role: str
    reason: str
    n_weights: int
    n_channels: int
    n_sensitive: int = 0
    n_sensitive_global: int = 0
    weight_bits_total: int = 0
    int_sse: int = 0
    float_sse: float = 0.0
    float_energy: float = 0.0
    q: np.ndarray | None = field(default=None, repr=False)
    scale: np.ndarray | None = field(default=None, repr=False)
    channel_bits: np.ndarray | None = field(default=None, repr=False)
    sensitive: np.ndarray | None = field(default=None, repr=False)
    metadata: dict[str, np.ndarray] | None = field(default=None, repr=False)
    layout: dict[str, Any] | None = None
    columns: dict[int, int] = field(default_factory=dict)

    @property
    def columns_label(self) -> str:
        """``N`` as the report prints it: ``4``, ``3/4`` for a split layer, ``-`` when not pruned."""
        return "/".join(str(n) for n in sorted(self.columns)) or "-"

    @property
    def effective_bits(self) -> float | None:
        """Weight bits per weight of this layer (``None`` for fp32 layers)."""
        return None if self.role == LayerRole.FP32.value else self.weight_bits_total / self.n_weights

    @property
    def rel_error(self) -> float:
        """``‖w_new - w_fp32‖ / ‖w_fp32‖`` of this layer's float weights."""
        return math.sqrt(self.float_sse / self.float_energy) if self.float_energy > 0 else 0.0

    def to_dict(self) -> dict[str, Any]:
        """Scalar summary (JSON-friendly)."""
        return {
            "name": self.name, "kind": self.kind, "shape": list(self.shape), "role": self.role,
            "reason": self.reason, "n_weights": self.n_weights, "n_channels": self.n_channels,
            "n_sensitive": self.n_sensitive, "n_sensitive_global": self.n_sensitive_global,
            "effective_bits": self.effective_bits, "int_mse": self.int_sse / self.n_weights,
            "rel_error": self.rel_error, "layout": self.layout,
            "columns": {str(n): c for n, c in sorted(self.columns.items())},
        }


@dataclass
class ModelPruneReport:
    """Result of :func:`prune_model_`.

    Attributes:
        preset: the preset applied.
        layers: one record per quantizable layer, in registration order.
        activation_ranges: calibrated input range per layer (empty without activation quantization).
        activation_quantizer: the live hooks on the model (``None`` without activation quantization).
        prune_seconds: wall time of quantization + selection + pruning (no calibration).
        calibration_seconds: wall time of activation calibration.
        stage_seconds: ``prune_seconds`` split by stage (wall seconds, :mod:`bitvert.timing`):
            ``hessians`` (calibration forward passes and ``XᵀX``), ``factor`` (Cholesky of ``H``),
            ``solver`` (error feedback, the method's search per group, the comparison with greedy),
            ``greedy`` (the per-group methods), ``layers`` (the rest of each layer's quantization and
            write-back) and ``other`` (selection, scores, ...); only the stages that ran.
        stage_cpu_seconds: the same split in process CPU seconds (all threads).
    """

    preset: PipelinePreset
    layers: list[LayerPruneRecord]
    activation_ranges: dict[str, dict[str, float | int]] = field(default_factory=dict)
    activation_quantizer: ActivationQuantizer | None = field(default=None, repr=False)
    prune_seconds: float = 0.0
    calibration_seconds: float = 0.0
    stage_seconds: dict[str, float] = field(default_factory=dict)
    stage_cpu_seconds: dict[str, float] = field(default_factory=dict)

    @property
    def quantized_layers(self) -> list[LayerPruneRecord]:
        return [l for l in self.layers if l.role != LayerRole.FP32.value]

    @property
    def n_weights(self) -> int:
        """Weights of the quantized layers."""
        return sum(l.n_weights for l in self.quantized_layers)

    @property
    def effective_bits(self) -> float:
        """Model effective weight bits: total weight bits / weights, over quantized layers."""
        n = self.n_weights
        return sum(l.weight_bits_total for l in self.quantized_layers) / n if n else 0.0

    @property
    def compression_vs_int8(self) -> float:
        """``8 / effective_bits``: footprint reduction of the quantized layers vs INT8."""
        eb = self.effective_bits
        return self.preset.quant.weight_bits / eb if eb else 0.0

    @property
    def sensitive_channel_fraction(self) -> float:
        """Sensitive channels / channels, over pruned layers (after rounding)."""
        pr = [l for l in self.layers if l.role == LayerRole.PRUNE.value]
        n = sum(l.n_channels for l in pr)
        return sum(l.n_sensitive for l in pr) / n if n else 0.0

    @property
    def weight_sqnr_db(self) -> float:
        """``10 log10(Σw² / Σ(w_new - w)²)`` over the quantized layers' float weights."""
        e = sum(l.float_sse for l in self.quantized_layers)
        s = sum(l.float_energy for l in self.quantized_layers)
        return float("inf") if e == 0 else 10.0 * math.log10(s / e)

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly summary (no tensors)."""
        sq = self.weight_sqnr_db
        return {
            "preset": self.preset.to_dict(),
            "effective_bits": self.effective_bits,
            "compression_vs_int8": self.compression_vs_int8,
            "n_weights_quantized": self.n_weights,
            "n_weights_fp32": sum(l.n_weights for l in self.layers if l.role == LayerRole.FP32.value),
            "sensitive_channel_fraction": self.sensitive_channel_fraction,
            "weight_sqnr_db": sq if math.isfinite(sq) else None,
            "weight_int_range": [-(2 ** (self.preset.quant.weight_bits - 1) - 1),
                                 2 ** (self.preset.quant.weight_bits - 1) - 1],
            "prune_seconds": self.prune_seconds,
            "calibration_seconds": self.calibration_seconds,
            "layers": [l.to_dict() for l in self.layers],
        }

    def table(self) -> str:
        """Readable per-layer table plus the model total."""
        head = f"{'layer':<48} {'role':<6} {'shape':<20} {'sens':>9} {'N':>5} {'bits':>6} {'rel.err':>8}"
        lines = [head, "-" * len(head)]
        for l in self.layers:
            eb = "-" if l.effective_bits is None else f"{l.effective_bits:.3f}"
            sens = f"{l.n_sensitive}/{l.n_channels}"
            shape = "x".join(str(s) for s in l.shape)
            lines.append(f"{l.name[-48:]:<48} {l.role:<6} {shape:<20} {sens:>9} {l.columns_label:>5} {eb:>6} "
                         f"{l.rel_error:>8.4f}")
        lines.append("-" * len(head))
        lines.append(f"{'model (' + self.preset.name + ')':<48} {'':<6} {self.n_weights:<20,} "
                     f"{self.sensitive_channel_fraction:>9.1%} {'':>5} {self.effective_bits:>6.3f}")
        return "\n".join(lines)


def _group_bits(layout: Any, active: np.ndarray, stored_bits: int | np.ndarray, full_bits: int, meta_bits: int) -> int:
    return int(channel_group_bits(layout, active, stored_bits, full_bits, meta_bits).sum())


@dataclass(frozen=True, eq=False)
class IntLayer:
    """One already-quantized layer given as arrays, for Algorithm 2 without a PyTorch model.

    Used for shape-only (synthetic) workloads of the simulator and for checkpoints streamed tensor by
    tensor; :func:`prune_int_layers` applies exactly the rules of :func:`prune_model_` to them.

    Attributes:
        name: the layer's qualified name (unique).
        kind: grouping kind of its weight: ``linear``, ``linear_in_out`` (HF ``Conv1D``) or ``conv``.
        q: integer weights in the layer's own layout, within the symmetric INT range of the
            weight bits (``[-127, 127]`` at 8 bits).
        scale: ``float[K]`` per-output-channel step size, ``weight ≈ q * scale`` along ``out_axis``.
        out_axis: axis of ``q`` holding output channels (1 for ``linear_in_out``, else 0).
        weight: the float weights when known (used by the ``rtn`` baseline, the ``std`` sensitivity
            score and the float error figures); ``None`` = ``q * scale``.
    """

    name: str
    kind: str
    q: np.ndarray
    scale: np.ndarray
    out_axis: int = 0
    weight: np.ndarray | None = None


@dataclass
class _LayerJob:
    """A layer on its way through Algorithm 2: role, float weight, and where the result goes."""

    name: str
    kind: str
    out_axis: int
    role: LayerRole
    reason: str
    config: QuantConfig
    weight: torch.Tensor
    module: nn.Module | None = None
    scratch_weight: bool = False
    """``weight`` is the caller's private copy: pruning may overwrite it with the dequantized values (no buffer)."""


def _jobs_from_model(layers: Sequence[QuantLayer]) -> list[_LayerJob]:
    return [_LayerJob(name=l.name, kind=l.kind, out_axis=l.out_axis, role=l.role, reason=l.reason, config=l.config,
                      weight=get_weight(l.module), module=l.module) for l in layers]


def _check_int_layer(layer: Any, i: int) -> IntLayer:
    if not isinstance(layer, IntLayer):
        raise InputError(f"layers[{i}] must be an IntLayer, got {type(layer).__name__}")
    q = np.asarray(layer.q)
    where = f"layer {layer.name!r}"
    if q.dtype.kind not in "iu":
        raise InputError(f"{where}: q must hold integers, got dtype {q.dtype}; quantize the weights first")
    if q.ndim < 2:
        raise InputError(f"{where}: q must be at least 2-d (out, in, ...), got shape {q.shape}")
    axis = int(layer.out_axis)
    if not 0 <= axis < q.ndim:
        raise InputError(f"{where}: out_axis {axis} is out of range for q of shape {q.shape}")
    scale = np.asarray(layer.scale, dtype=np.float32).reshape(-1)
    if scale.shape[0] != q.shape[axis] or not np.isfinite(scale).all() or (scale <= 0).any():
        raise InputError(f"{where}: scale must hold {q.shape[axis]} positive finite values (one per output "
                         f"channel), got shape {np.shape(layer.scale)}")
    if layer.weight is not None and np.shape(layer.weight) != q.shape:
        raise InputError(f"{where}: weight has shape {np.shape(layer.weight)}, q has {q.shape}")
    return layer


def prune_int_layers(
    layers: Sequence[IntLayer],
    preset: PipelinePreset | str,
    rules: Mapping[str, LayerRole | str | None] | None = None,
    progress: bool = False,
    hessians: Mapping[str, torch.Tensor] | None = None,
) -> ModelPruneReport:
    """Algorithm 2 on already-quantized integer layers (no PyTorch model needed).

    The same role rule (:func:`bitvert.pipeline.quantize.assign_roles`: first/last layer, regex
    rules), the same short-group rule, channel scores, global selection and per-layer pruning as
    :func:`prune_model_`; only the INT8 quantization is skipped (``q`` and ``scale`` are given).
    Layers are taken in the given order (which decides "first" and "last").

    Args:
        layers: the quantizable layers, in execution order.
        preset: a :class:`PipelinePreset` or a preset name.
        rules: extra regex -> role rules, applied before ``preset.rules``.
        progress: show a progress bar over layers (stderr).
        hessians: input Hessian per layer name (grouping column order,
            :mod:`bitvert.pipeline.calibration`); required by ``sensitivity="output_error"`` and
            ``target_bits``.

    Returns:
        A :class:`ModelPruneReport` (no activation ranges: activations are not modelled here).

    Raises:
        InputError: malformed layers, duplicate names, integers outside the weight range.
    """
    preset = get_preset(preset)
    if preset.solver == "gptq":
        raise ConfigError(
            f"preset {preset.name!r} uses solver 'gptq', which needs each layer's input Hessian from calibration "
            "batches through a model; prune_int_layers has integer layers only. Use prune_model_ on the model, "
            "or set solver='greedy'")
    layers = [_check_int_layer(l, i) for i, l in enumerate(layers)]
    if not layers:
        raise InputError("layers is empty; pass at least one IntLayer")
    names = [l.name for l in layers]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise InputError(f"layer names must be unique, got duplicates {dupes[:5]}")
    t0 = time.perf_counter()
    roles = assign_roles(names, preset.quant, {**(rules or {}), **preset.rules}, preset.first_layer,
                         preset.last_layer)
    jobs: list[_LayerJob] = []
    given: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
    for layer, (role, cfg, why) in zip(layers, roles):
        q = np.asarray(layer.q)
        scale = np.asarray(layer.scale, dtype=np.float32).reshape(-1)
        lo, hi = weight_int_range(cfg.weight_bits)
        if role is not LayerRole.FP32 and (q.min() < lo or q.max() > hi):
            raise InputError(f"layer {layer.name!r}: integers span [{q.min()}, {q.max()}], outside the "
                             f"{cfg.weight_bits}-bit weight range [{lo}, {hi}]")
        if layer.weight is not None:
            w = torch.as_tensor(np.asarray(layer.weight, dtype=np.float32))
        else:
            w = dequantize_weight(q, scale, layer.out_axis)
        jobs.append(_LayerJob(name=layer.name, kind=layer.kind, out_axis=int(layer.out_axis), role=role, reason=why,
                              config=cfg, weight=w))
        given[layer.name] = (torch.from_numpy(q.astype(np.int16, copy=False)), torch.from_numpy(scale))
    records = _algorithm2(jobs, preset, lambda job: given[job.name], progress, None, hessians)
    return ModelPruneReport(preset=preset, layers=records, prune_seconds=time.perf_counter() - t0)


def prune_model_(
    model: nn.Module,
    preset: PipelinePreset | str,
    calibration: Iterable[Any] | None = None,
    rules: Mapping[str, LayerRole | str | None] | None = None,
    progress: bool = False,
) -> ModelPruneReport:
    """Quantize and globally binary-prune ``model`` in place (Algorithm 2).

    The module weights are overwritten with the dequantized pruned values (so the model
    runs as before, in floating point); the integer weights, scales and per-group
    metadata stay in the returned report for :func:`bitvert.pipeline.save_pruned`.

    Args:
        model: a PyTorch model (any architecture with Linear / Conv / HF Conv1D layers).
        preset: a :class:`PipelinePreset` or a preset name (``moderate``, ``rtn-moderate``, ...).
        calibration: iterable of model inputs (materialized once); required when the preset
            quantizes activations (``preset.quant.act_bits`` is not ``None``), needs the layers' input
            Hessians (``sensitivity="output_error"``, ``target_bits``: collected in one pass on the FP32
            model) or uses the ``gptq`` solver, whose layer Hessians are collected sequentially on these
            inputs (:func:`bitvert.pipeline.calibration.calibrate_sequentially`: each layer sees the
            outputs of the already-pruned earlier layers); :attr:`PipelinePreset.needs_calibration`.
        rules: extra regex -> role rules, applied before ``preset.rules``.
        progress: show a progress bar over layers (stderr).

    Raises:
        ConfigError: unknown preset, or activation quantization / the gptq solver without calibration batches.
        UnsupportedLayerError: the model has no quantizable layer.
    """
    preset = get_preset(preset)
    if not isinstance(model, nn.Module):
        raise InputError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    if preset.needs_hessians and calibration is None:
        raise ConfigError(
            f"preset {preset.name!r} weighs weight errors by the layers' inputs (sensitivity="
            f"{preset.sensitivity!r}, target_bits={preset.target_bits}) but no calibration batches were given; "
            "pass calibration=<iterable of model inputs>")
    if preset.quant.act_bits is not None and calibration is None:
        raise ConfigError(
            f"preset {preset.name!r} quantizes activations to {preset.quant.act_bits} bits but no calibration "
            "batches were given; pass calibration=<iterable of model inputs>, or use "
            f"get_preset({preset.name!r}, quant={{'act_bits': None}}) for weight-only pruning"
        )
    if preset.solver == "gptq" and calibration is None:
        raise ConfigError(
            f"preset {preset.name!r} uses solver 'gptq', which needs calibration batches for the layers' input "
            "Hessians; pass calibration=<iterable of model inputs>, or use solver='greedy'")
    batches = None if calibration is None else list(calibration)
    t0, c0 = time.perf_counter(), time.process_time()
    with collect_stage_seconds() as stages:
        all_rules: dict[str, Any] = {**(rules or {}), **preset.rules}
        layers = select_layers(model, preset.quant, all_rules, preset.first_layer, preset.last_layer)
        _untie_shared_weights(model, layers)
        jobs = _jobs_from_model(layers)

        early: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}  # INT8 weights the budget check already made

        def quantize(job: _LayerJob) -> tuple[torch.Tensor, torch.Tensor]:
            if job.name in early:
                return early.pop(job.name)
            return quantize_weight(job.weight, job.config.weight_bits, job.out_axis, job.config.weight_granularity)

        if preset.target_bits is not None:  # before any Hessian is collected

            def quantize_early(job: _LayerJob) -> tuple[torch.Tensor, torch.Tensor]:
                early[job.name] = quantize(job)
                return early[job.name]

            _check_budget_reachable(jobs, preset, quantize_early)

        hessians, gains = None, None
        if preset.needs_hessians:
            to_prune = [l for l in layers if l.role is LayerRole.PRUNE]
            hessians = collect_hessians(model, to_prune, batches or [], compute_dtype=torch.float32)
            gains = output_gains(model, to_prune, batches or [])
        solve = None
        if preset.solver == "gptq":
            def solve(todo: list[_LayerJob], process: Callable[[_LayerJob, torch.Tensor], None]) -> None:
                by_name = {j.name: j for j in todo}
                chosen = [l for l in layers if l.name in by_name]
                # with gptq_quantized_inputs, the Hessians see the layers' inputs as the evaluated model does:
                # fake-quantized to the activation bits (ranges calibrated on the model as it is now, its INT8
                # layers already quantized); the final ranges are calibrated afterwards, as always
                aq_solve = attach_activation_quant(model, layers, batches) if preset.gptq_quantized_inputs else None
                try:
                    calibrate_sequentially(model, chosen, batches or [], lambda l, h: process(by_name[l.name], h),
                                           compute_dtype=torch.float32)
                finally:
                    if aq_solve is not None:
                        aq_solve.remove()

        records = _algorithm2(jobs, preset, quantize, progress, solve, hessians, gains)
        del hessians
        for layer, job in zip(layers, jobs):  # the short-group rule may have changed a role
            layer.role, layer.reason = job.role, job.reason
    prune_s = time.perf_counter() - t0
    stage_s, stage_cpu = dict(stages.seconds), dict(stages.cpu_seconds)
    stage_s["other"] = max(0.0, prune_s - sum(stage_s.values()))
    stage_cpu["other"] = max(0.0, time.process_time() - c0 - sum(stage_cpu.values()))

    t1 = time.perf_counter()
    aq = attach_activation_quant(model, layers, batches)
    ranges = {k: r.to_dict() for k, r in aq.ranges.items()} if aq is not None else {}
    report = ModelPruneReport(
        preset=preset, layers=records, activation_ranges=ranges, activation_quantizer=aq,
        prune_seconds=prune_s, calibration_seconds=time.perf_counter() - t1, stage_seconds=stage_s,
        stage_cpu_seconds=stage_cpu,
    )
    logger.info("%s: %d layers, effective bits %.3f (%.2fx vs INT8), %.2f s", preset.name, len(records),
                report.effective_bits, report.compression_vs_int8, prune_s)
    return report


_Solve = Callable[[list[_LayerJob], Callable[[_LayerJob, torch.Tensor], None]], None]
"""``solve(jobs, process)``: calls ``process(job, H)`` for every job, in an order where each layer's ``H``
sees the already-processed layers (the ``gptq`` solver's sequential calibration)."""


def _algorithm2(
    jobs: list[_LayerJob],
    preset: PipelinePreset,
    quantize: Callable[[_LayerJob], tuple[torch.Tensor, torch.Tensor]],
    progress: bool,
    solve: _Solve | None = None,
    hessians: Mapping[str, torch.Tensor] | None = None,
    gains: Mapping[str, np.ndarray] | None = None,
) -> list[LayerPruneRecord]:
    """Short-group rule, INT8 integers, channel scores, global selection and per-layer pruning.

    With ``solve`` (``solver="gptq"``), the pruned layers are processed through it with their input
    Hessians, after every other layer (INT8, FP32) was processed, so each Hessian sees them quantized.
    """
    _prepare_jobs(jobs, preset)
    quantized = {job.name: quantize(job) for job in jobs if job.role is not LayerRole.FP32}
    pruned = _scored_jobs(jobs, preset)
    errors = _output_errors(pruned, quantized, preset, hessians, gains) if preset.needs_hessians else {}
    kind = _sensitivity_kind(preset)
    if kind == "output_error":
        scores = {j.name: errors[j.name][preset.columns] for j in pruned}
    else:
        scores = {j.name: channel_scores(j.weight, quantized[j.name][1], j.out_axis, kind) for j in pruned}
    mask_of, count_of = _select_for_jobs(scores, preset)
    columns_of = _budget_columns(jobs, pruned, quantized, mask_of, errors, preset) \
        if preset.target_bits is not None else {}
    bar = tqdm(total=len(jobs), desc=f"prune ({preset.name})", unit="layer", disable=not progress, leave=False)
    records: dict[str, LayerPruneRecord] = {}

    def process(job: _LayerJob, hessian: torch.Tensor | None = None) -> None:
        records[job.name] = _process_layer(job, preset, quantized.get(job.name), mask_of.get(job.name),
                                           count_of.get(job.name, 0), hessian, columns_of.get(job.name))
        bar.update()

    solved = pruned if solve is not None else []
    solved_names = {j.name for j in solved}
    for job in jobs:
        if job.name not in solved_names:
            process(job)
    if solved:
        solve(solved, process)
        missing = [j.name for j in solved if j.name not in records]
        if missing:
            raise ConfigError(f"the gptq solver's calibration never reached layers {missing[:5]}")
    bar.close()
    return [records[job.name] for job in jobs]


def _layout_of(job: _LayerJob, preset: PipelinePreset) -> Any:
    return make_layout(tuple(job.weight.shape), job.kind, preset.group_size, preset.remainder)


def _output_errors(
    pruned: Sequence[_LayerJob], quantized: Mapping[str, tuple[torch.Tensor, torch.Tensor]],
    preset: PipelinePreset, hessians: Mapping[str, torch.Tensor] | None,
    gains: Mapping[str, np.ndarray] | None = None,
) -> dict[str, dict[int, np.ndarray]]:
    """Per pruned layer, ``{N: output error per channel}`` at the N the preset needs (docs: output_error).

    With ``gains`` (:func:`bitvert.pipeline.calibration.output_gains`, from a model), each channel's layer
    output error is weighed by how much that channel moves the model's output."""
    if hessians is None:
        raise ConfigError(
            f"preset {preset.name!r} needs the layers' input Hessians (sensitivity={preset.sensitivity!r}, "
            f"target_bits={preset.target_bits}); pass calibration batches to prune_model_, or hessians= to "
            "prune_int_layers")
    missing = [j.name for j in pruned if j.name not in hessians]
    if missing:
        raise InputError(f"no Hessian for pruned layers {missing[:5]}; collect them with "
                         "bitvert.pipeline.calibration.collect_hessians")
    out = {}
    for j in pruned:
        bits = j.config.weight_bits
        ns = {preset.columns}
        if preset.target_bits is not None:
            ns.update(allowed_columns(preset, bits, _layout_of(j, preset)))
        q, scale = quantized[j.name]
        errs = channel_output_errors(q, scale, j.weight.detach().to(torch.float32), j.kind, j.out_axis,
                                     hessians[j.name], preset, bits, sorted(ns), j.config.weight_granularity)
        g = None if gains is None else gains.get(j.name)
        out[j.name] = errs if g is None else {n: e * g for n, e in errs.items()}
    return out


def _budget_columns(
    jobs: Sequence[_LayerJob], pruned: Sequence[_LayerJob],
    quantized: Mapping[str, tuple[torch.Tensor, torch.Tensor]], mask_of: Mapping[str, np.ndarray],
    errors: Mapping[str, Mapping[int, np.ndarray]], preset: PipelinePreset,
) -> dict[str, np.ndarray]:
    """Per-channel N of every pruned layer meeting ``preset.target_bits`` (:func:`allocate_columns`)."""
    budgets = []
    for j in pruned:
        lay = _layout_of(j, preset)
        bits = j.config.weight_bits
        budgets.append(layer_budget(j.name, lay, preset, bits, mask_of[j.name], errors[j.name],
                                    allowed_columns(preset, bits, lay)))
    fixed, n_weights = _fixed_bits(jobs, pruned)
    return allocate_columns(budgets, fixed, n_weights, float(preset.target_bits))  # type: ignore[arg-type]


def _fixed_bits(jobs: Sequence[_LayerJob], pruned: Sequence[_LayerJob]) -> tuple[int, int]:
    """Bits of the quantized layers a bit budget does not allocate, and the weights of all quantized layers."""
    names = {j.name for j in pruned}
    quant = [j for j in jobs if j.role is not LayerRole.FP32]
    fixed = sum(int(j.weight.numel()) * j.config.weight_bits for j in quant if j.name not in names)
    return fixed, sum(int(j.weight.numel()) for j in quant)


def _check_budget_reachable(jobs: list[_LayerJob], preset: PipelinePreset,
                            quantize: Callable[[_LayerJob], tuple[torch.Tensor, torch.Tensor]]) -> None:
    """Reject a ``target_bits`` the model cannot reach from the shapes and the preset, before any Hessian.

    The range is exact when the sensitive channels need no Hessian (``scale``/``std`` scores: selected
    here as Algorithm 2 selects them); with ``output_error`` scores it is the outer bound over where the
    global top-β (and its per-layer rounding) may put them (:func:`budget_range`), and
    :func:`allocate_columns` checks the exact range once they are chosen.
    """
    _prepare_jobs(jobs, preset)
    pruned = _scored_jobs(jobs, preset)
    layouts = {j.name: _layout_of(j, preset) for j in pruned}
    kind = _sensitivity_kind(preset)
    n_sensitive = None
    if kind == "output_error":
        masks = {j.name: np.zeros(layouts[j.name].n_channels, dtype=bool) for j in pruned}
        n_total = sum(lay.n_channels for lay in layouts.values())
        n_keep = _n_selected(n_total, preset.sensitive_fraction)
        n_sensitive = (n_keep, min(n_total, n_keep + (preset.channel_multiple - 1) * len(pruned)))
    else:
        masks, _ = _select_for_jobs({j.name: channel_scores(j.weight, quantize(j)[1], j.out_axis, kind)
                                     for j in pruned}, preset)
    budgets = [layer_budget(j.name, layouts[j.name], preset, j.config.weight_bits, masks[j.name], None,
                            allowed_columns(preset, j.config.weight_bits, layouts[j.name])) for j in pruned]
    fixed, n_weights = _fixed_bits(jobs, pruned)
    reach = budget_range(budgets, fixed, n_weights, n_sensitive)
    target = float(preset.target_bits)  # type: ignore[arg-type]
    check_target_bits(target, reach, budgets, bound=n_sensitive is not None)


# The steps of Algorithm 2 as separate functions, shared by _algorithm2 (every layer in memory) and the
# streaming orchestrator bitvert.codec.stream (one tensor at a time: scores in a first pass, then
# _process_layer per tensor in a second), so both apply exactly the same rules.

def _prepare_jobs(jobs: list[_LayerJob], preset: PipelinePreset) -> None:
    """Role changes that depend only on shapes (the short-group rule); ``job.weight`` may be a meta tensor."""
    if preset.method != "none":
        _keep_unprofitable_dense(jobs, preset)


def _sensitivity_kind(preset: PipelinePreset) -> str:
    """The channel score Algorithm 2 uses: ``scale``, ``std`` (``auto`` resolved by the weight granularity) or
    ``output_error`` (needs the layers' Hessians)."""
    if preset.sensitivity == "auto":
        return "scale" if preset.quant.weight_granularity == "per_channel" else "std"
    return preset.sensitivity


def _scored_jobs(jobs: Sequence[_LayerJob], preset: PipelinePreset) -> list[_LayerJob]:
    """The layers whose channels take part in the global selection, in order."""
    return [j for j in jobs if j.role is LayerRole.PRUNE and preset.method != "none"]


def _select_for_jobs(
    scores: Mapping[str, np.ndarray], preset: PipelinePreset
) -> tuple[dict[str, np.ndarray], dict[str, int]]:
    """Global selection over the scored layers (insertion order = layer order): masks and pre-rounding counts."""
    names = list(scores)
    arrays = [scores[n] for n in names]
    masks = select_sensitive(arrays, preset.sensitive_fraction, preset.channel_multiple)
    counts = _global_counts(arrays, preset.sensitive_fraction)
    return dict(zip(names, masks)), dict(zip(names, counts))


def _keep_unprofitable_dense(layers: list[_LayerJob], preset: PipelinePreset) -> None:
    """Give role ``int8`` to ``prune`` layers whose groups are too short for pruning to save bits.

    A group of ``w`` weights costs ``(b - N)·w + metadata`` bits pruned and ``b·w`` dense; when
    ``N·w <= metadata`` (e.g. the RGB input convolution, groups of 3, at N = 2) pruning would
    make the layer *larger*, so it stays at INT8 (recorded as the layer's reason). The ``rtn`` and
    ``bitwave`` baselines apply the same rule, so they see the same layers and sensitive channels.
    """
    for layer in layers:
        if layer.role is not LayerRole.PRUNE:
            continue
        layout = make_layout(tuple(layer.weight.shape), layer.kind, preset.group_size, preset.remainder)
        if preset.columns * layout.width <= preset.metadata_bits_per_group:
            layer.role, layer.reason = LayerRole.INT8, f"groups of {layout.width} too short to save bits"


def _global_counts(scores: Sequence[np.ndarray], fraction: float) -> list[int]:
    """Per-layer sensitive counts before rounding (for the report)."""
    if not scores:
        return []
    masks = select_sensitive(scores, fraction, 1)
    return [int(m.sum()) for m in masks]


_Pruned = tuple[np.ndarray, GroupMetadata, GroupLayout]
"""What :func:`bitvert.pipeline.budget.prune_by_columns` returns: weights (module layout), metadata, layout."""


def _search_scales(
    layer: _LayerJob, preset: PipelinePreset, w_fp: torch.Tensor, scale: torch.Tensor, bits: int,
    channels: np.ndarray, hessian: torch.Tensor | None,
    prune_fn: Callable[[np.ndarray], _Pruned] | None = None,
) -> tuple[torch.Tensor, torch.Tensor, _Pruned | None]:
    """``preset.scale_search`` on the ``channels`` of one layer: the integers and scales it chooses.

    The search (:func:`bitvert.pipeline.quantize.search_channel_scales`) runs on each channel's weights in
    the grouping's column order, so that ``diag H`` (``hessian``, same order; one per convolution group)
    weighs each weight's squared error; ``prune_fn`` prunes integers in the module layout (BBS: the preset's
    greedy pruning, :func:`bitvert.pipeline.budget.prune_by_columns`; ``None``: plain rounding at ``bits``).
    The other channels keep ``scale`` and their integers exactly.

    Returns:
        ``(q, scale, pruned)``: ``q`` and ``scale`` as :func:`bitvert.pipeline.quantize.quantize_weight` gives
        them, at the chosen scales; ``pruned`` is ``prune_fn(q)`` (merged per channel from the search's own
        calls: every channel's rows and group metadata from the call at its chosen factor; rows and groups are
        pruned independently), ``None`` without ``prune_fn``.
    """
    lay = _layout_of(layer, preset)
    k = lay.n_channels
    w_np = w_fp.numpy()
    rows = np.ascontiguousarray(lay.to_rows(w_np).reshape(k, -1), dtype=np.float32)
    diag = None
    if hessian is not None:
        d = torch.diagonal(hessian.detach(), dim1=-2, dim2=-1).to(torch.float32).numpy()
        diag = np.maximum(d if d.ndim == 1 else d[np.arange(k) // (k // d.shape[0])], 0.0)
    last: list[_Pruned] = []
    kept: list[_Pruned] = []

    def snap_rows(q_rows: np.ndarray) -> np.ndarray:
        q_mod = lay.from_rows(np.ascontiguousarray(q_rows).reshape(lay.n_rows, lay.row_length))
        last[:] = [prune_fn(q_mod)]  # type: ignore[misc]
        return lay.to_rows(np.asarray(last[0][0])).reshape(k, -1)

    def keep(better: np.ndarray) -> None:  # merge the last call's channels that now hold their best factor
        if not kept:  # the first factor (1.0): every channel; prune_fn's arrays are its own, fresh per call
            kept[:] = last
            return
        (w_k, md_k, p_lay), (w_l, md_l, _) = kept[0], last[0]
        idx = np.flatnonzero(better)
        np.moveaxis(w_k, layer.out_axis, 0)[idx] = np.moveaxis(w_l, layer.out_axis, 0)[idx]
        g = better[p_lay.channel_of_group()]
        for name in ("redundant", "constant", "free_columns", "pruned"):
            getattr(md_k, name)[g] = getattr(md_l, name)[g]

    _, qmax = weight_int_range(bits)
    chosen = search_channel_scales(rows, scale.numpy(), qmax, None if prune_fn is None else snap_rows, diag,
                                   channels, on_choice=None if prune_fn is None else keep)
    shrunk = chosen < scale.numpy()
    logger.debug("%s: scale search clipped %d of %d channels (mean factor %.3f)", layer.name, int(shrunk.sum()),
                 int(np.asarray(channels).sum()), float((chosen / scale.numpy())[channels].mean()) if channels.any()
                 else 1.0)
    q_rows = quantize_rows(to_rows(w_fp, layer.out_axis), chosen, qmax)
    q = from_rows(q_rows, tuple(w_fp.shape), layer.out_axis)
    return q, torch.from_numpy(chosen), (kept[0] if kept else None)


@timed("layers")
def _process_layer(
    layer: _LayerJob,
    preset: PipelinePreset,
    qs: tuple[torch.Tensor, torch.Tensor] | None,
    sensitive: np.ndarray | None,
    n_global: int,
    hessian: torch.Tensor | None = None,
    columns: np.ndarray | None = None,
) -> LayerPruneRecord:
    """Prune (or quantize) one layer and write its dequantized weights into the module.

    ``hessian`` (the ``gptq`` solver): the layer's input ``H`` in the grouping's column order; the
    normal channels are then solved with error feedback instead of rounded group by group.
    ``columns``: free columns N per output channel (a bit budget); ``None``: the preset's N.
    """
    w = layer.weight
    rec = LayerPruneRecord(
        name=layer.name, kind=layer.kind, shape=tuple(w.shape), out_axis=layer.out_axis, role=layer.role.value,
        reason=layer.reason, n_weights=int(w.numel()), n_channels=int(w.shape[layer.out_axis]),
    )
    if qs is None:  # fp32: untouched
        return rec
    bits = layer.config.weight_bits
    q, scale = qs
    w_fp = w.detach().to(torch.float32)  # may be a view of the parameter: read before it is overwritten
    q_np = q.numpy()
    q_int8 = q
    k = rec.n_channels
    per_channel = rec.n_weights // k
    channel_bits = np.full(k, bits, dtype=np.uint8)
    rec.weight_bits_total = rec.n_weights * bits
    scale_out = scale.clone()
    if sensitive is not None:
        rec.sensitive = sensitive
        rec.n_sensitive = int(sensitive.sum())
        rec.n_sensitive_global = n_global
        normal = ~sensitive
        cols = np.full(k, preset.columns, dtype=np.int64) if columns is None else np.asarray(columns, np.int64)
        channel_bits[normal] = bits - cols[normal]
        values, counts = np.unique(cols[normal], return_counts=True)
        rec.columns = {int(v): int(c) for v, c in zip(values, counts)}
        shape = [1] * w.ndim
        shape[layer.out_axis] = -1
        search = preset.scale_search != "none" and layer.config.weight_granularity == "per_channel"
        if preset.method == "rtn":
            for n_cols in np.unique(cols[normal]):
                at = normal & (cols == n_cols)
                stored = bits - int(n_cols)
                q_low, s_low = quantize_weight(w_fp, stored, layer.out_axis, layer.config.weight_granularity)
                if search:
                    q_low, s_low, _ = _search_scales(layer, preset, w_fp, s_low, stored, at, hessian)
                if hessian is not None:
                    q_low = torch.from_numpy(gptq_round(
                        (w_fp / s_low.view(shape)).numpy(), stored, hessian, kind=layer.kind, dense_channels=~at,
                        damp=preset.gptq_damp, block_size=preset.gptq_block, act_order=preset.gptq_act_order))
                q = torch.where(torch.from_numpy(at).view(shape), q_low, q)
                scale_out = torch.where(torch.from_numpy(at), s_low, scale_out)
            rec.weight_bits_total = int(per_channel * channel_bits.astype(np.int64).sum())
        else:
            greedy: _Pruned | None = None  # the greedy pruning of q_np, when the scale search made it
            if search:

                def greedy_prune(q_mod: np.ndarray) -> _Pruned:
                    return prune_by_columns(q_mod, layer.kind, preset, bits, sensitive, cols, layer.out_axis)

                q, scale, greedy = _search_scales(layer, preset, w_fp, scale, bits, normal, hessian, greedy_prune)
                q_np, q_int8, scale_out = q.numpy(), q, scale.clone()
            if hessian is not None:
                w_int = (w_fp / scale.view(shape)).numpy()
                # with one N the solver's own greedy comparison is the search's pruning (same integers, same
                # dense channels); with several, prune_by_columns calls it per N with the others dense
                one_n = greedy is not None and np.unique(cols[normal]).size <= 1

                def solve_fn(config: Any, dense: np.ndarray) -> Any:
                    known = None if not one_n or greedy is None else PruneResult(
                        weights=greedy[0], original=q_np, metadata=greedy[1], layout=greedy[2], config=config)
                    return gptq_prune(w_int, config, hessian, kind=layer.kind, dense_channels=dense,
                                      damp=preset.gptq_damp, block_size=preset.gptq_block, rounded=q_np,
                                      act_order=preset.gptq_act_order, greedy=known)

                q_new, md, lay = prune_by_columns(q_np, layer.kind, preset, bits, sensitive, cols, layer.out_axis,
                                                  solve_fn)
            elif greedy is not None:
                q_new, md, lay = greedy
            else:
                q_new, md, lay = prune_by_columns(q_np, layer.kind, preset, bits, sensitive, cols, layer.out_axis)
            rec.metadata = {"redundant": md.redundant, "constant": md.constant,
                            "free_columns": md.free_columns, "pruned": md.pruned}
            rec.layout = lay.to_dict()
            stored = np.repeat(channel_bits.astype(np.int64), lay.groups_per_channel)
            rec.weight_bits_total = _group_bits(lay, md.pruned, stored, bits, preset.metadata_bits_per_group)
            q = torch.from_numpy(np.ascontiguousarray(q_new))
    axis = layer.out_axis
    rows_fp = to_rows(w_fp, axis)
    q_ref = q_int8 if preset.method != "rtn" else q  # rtn integers live on another scale: no int error
    scale_np = scale_out.to(torch.float32).numpy()
    # A float32 CPU weight of a module with output channels first is rewritten in place (the kernel reads
    # each element before writing it); any other layout goes through a buffer and a copy. Integer layers
    # without a module (prune_int_layers) only measure the error; a scratch weight (streaming) is
    # overwritten in place instead of a buffer being allocated.
    in_place = ((layer.module is not None or layer.scratch_weight) and w.dtype == torch.float32 and not w.is_cuda
                and np.shares_memory(rows_fp, w.detach().numpy()))
    out = rows_fp if in_place else np.empty_like(rows_fp)
    with torch.no_grad():
        sse, energy, int_sse = dequantize_rows(to_rows(q, axis), scale_np, rows_fp, to_rows(q_ref, axis), out)
    rec.float_sse, rec.float_energy, rec.int_sse = float(sse.sum()), float(energy.sum()), int(int_sse.sum())
    if not in_place and layer.module is not None:
        set_weight_(layer.module, from_rows(out, rec.shape, axis))
    rec.q = q.numpy().astype(np.int16, copy=False)
    rec.scale = scale_out.to(torch.float32).numpy()
    rec.channel_bits = channel_bits
    return rec
