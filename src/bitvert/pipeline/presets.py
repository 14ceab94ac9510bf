"""Named, validated pipeline presets (BBS.md §7.3) and the baselines the paper compares with.

========================  ====  ==================  ===  =================  =====================
preset                    β     normal channels     N    first/last layer   effective bits
========================  ====  ==================  ===  =================  =====================
``int8``                  --    per-channel INT8    0    int8               8
``conservative``          10 %  rounded averaging   2    int8 (not pruned)  per model
``moderate``              20 %  zero-point shift    4    int8 (not pruned)  per model
``llm-conservative``      0     rounded averaging   2    pruned             6.25 (FP activations)
``llm-moderate``          0     zero-point shift    4    pruned             4.25 (FP activations)
``bitwave-<preset>``      same  BitWave bit flip    same same               same as ``<preset>``
``rtn-<preset>``          same  (8-N)-bit RTN       same same               ``<preset>`` - 8/g on normal channels
``bitwave-w5`` / ``-w6``  0     BitWave bit flip    3/2  int8 (not pruned)  per model (paper's BitWave setting)
``<preset>-gptq``         same  same, gptq + mse    same same               same as ``<preset>``
                                + act order
========================  ====  ==================  ===  =================  =====================

Activation ranges (``quant.act_observer``): ``minmax`` for the paper's presets; ``output`` for the
``-gptq`` presets that quantize activations (each layer keeps the min/max or the MSE-optimal range,
whichever moves the model output less on the calibration batches; docs/pipeline.md "Decisions").

``<preset>-gptq`` (``conservative-gptq``, ``moderate-gptq``, ``llm-*-gptq``, ``bitwave-w5-gptq``, ...)
is ``<preset>`` with ``solver="gptq"``: the error-feedback solver of :mod:`bitvert.pruning.gptq` on
calibration Hessians instead of the greedy per-group rounding (same grid, metadata and bits), and with
``scale_search="mse"`` (clipped per-channel scales of the normal channels, searched with ``diag H``
weights; ``--set scale_search=none`` gives the absmax scales; docs/pipeline.md) and ``gptq_act_order=True``
(the solver walks whole groups by decreasing input energy; ``--set gptq_act_order=false`` walks them in
column order);
``bitwave-<p>-gptq`` and ``rtn-<p>-gptq`` are its baselines with the same solver.

``bitwave-*`` applies the BitWave bit-flip baseline (BBS.md §6.5) with the same
sensitive channels and the same N; its per-group column mask is counted as 8
metadata bits per group, like BBS's metadata, so its effective bits equal the
preset's. ``rtn-*`` re-quantizes the *normal* channels from the float weights
with plain per-channel round-to-nearest at ``8 - N`` bits (same sensitive
channels at 8 bits); it needs no per-group metadata, so it uses 8/g = 0.25
fewer bits per normal weight than BBS.
"""

from __future__ import annotations

import difflib
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from bitvert.errors import ConfigError, validation_message
from bitvert.pipeline.quantize import LayerRole, QuantConfig
from bitvert.pruning.config import PruneConfig
from bitvert.pruning.methods import REGISTRY, methods_for_hardware

__all__ = ["PipelinePreset", "PRESETS", "GPTQ_SUFFIX", "BASELINES", "PIPELINE_METHODS", "BUDGET_COLUMNS", "get_preset",
           "list_presets", "baseline_of",
           "preset_methods", "method_label", "bbs_methods"]

PIPELINE_METHODS: dict[str, str] = {"none": "INT8", "rtn": "round-to-nearest"}
"""Pipeline-level methods (name -> report label), accepted next to every registered pruning method.

They are not entries of the pruning registry (:mod:`bitvert.pruning.methods`): ``none`` keeps the
INT8 integers and ``rtn`` re-quantizes the normal channels from the float weights, so neither
binary-prunes groups (no kernel, codec layout or per-group metadata)."""


BUDGET_COLUMNS: tuple[int, ...] = (1, 2, 3, 4, 5)
"""Free columns N a bit budget (``target_bits``) may give a layer: the paper's N = 2 and 4 and the values
around them."""


def preset_methods() -> list[str]:
    """Every value a preset's ``method`` accepts: the pipeline-level methods, then the registered ones."""
    return [*PIPELINE_METHODS, *REGISTRY]


def method_label(method: str) -> str:
    """Human name of a preset method for reports (``BBS zero-point shifting``, ``INT8``...).

    A name neither pipeline-level nor registered (a results file written by a process that had
    registered another method) is returned as it is.
    """
    if method in PIPELINE_METHODS:
        return PIPELINE_METHODS[method]
    return REGISTRY[method].label if method in REGISTRY else method


def bbs_methods() -> list[str]:
    """Registered methods BitVert runs (BBS); ``bitwave-*`` and ``rtn-*`` baselines derive from their presets."""
    return methods_for_hardware("bitvert")


class PipelinePreset(BaseModel):
    """Everything the model-level pipeline needs to turn an FP32 model into a pruned INT8 one.

    Attributes:
        name: preset name (recorded in every output).
        description: one line for humans.
        method: pruning of normal channels: ``none`` (INT8 baseline), ``rtn`` (fewer-bit
            round-to-nearest) or a registered pruning method (:mod:`bitvert.pruning.methods`:
            ``rounded_avg``, ``zero_point``, ``bitflip`` (BitWave baseline), ...); see
            :func:`preset_methods`.
        sensitive_fraction: β, the global fraction of output channels (of all pruned layers)
            kept at full precision.
        columns: N, the free bit columns every group of a normal channel gets.
        group_size: g, weights per metadata group.
        channel_multiple: per-layer sensitive counts are rounded **up** to a multiple of this
            (C_H = 32, the weight channels BitVert processes in parallel); 1 disables rounding.
        semantics: ``paper`` or ``code`` (published-code) pruning rules (BBS.md §6.3).
        constant_bits: width of the zero-point constant; ``None`` = the semantics' default.
        mean_rounding: tie rule of the rounded average.
        remainder: grouping policy when a reduction length is not a multiple of g.
        first_layer / last_layer: role of the first / last quantizable module.
        sensitivity: channel score: ``scale`` (per-channel quantization step), ``std`` (standard
            deviation of the channel's float weights), ``auto`` (``scale`` for per-channel
            weights, ``std`` for per-tensor, as the paper's footnote 1 suggests) or
            ``output_error`` (the output error ``e H eᵀ`` pruning the channel would cause over the
            calibration inputs, ``e`` its weight error in float units; needs calibration batches).
        target_bits: a bit budget: the model's effective bits per weight to reach by choosing the
            free columns N per layer (in ``BUDGET_COLUMNS``, 1..5) to minimise the summed output
            error (docs/pipeline.md); ``None`` = every normal channel at ``columns``. Needs
            calibration batches.
        metadata_bits_per_group: metadata stored per pruned group (2-bit redundant count +
            6-bit constant in BBS).
        solver: ``greedy`` (each group rounded on its own, the paper's method) or ``gptq`` (error
            feedback through the layer's input Hessian, :func:`bitvert.pruning.gptq.gptq_prune`; needs
            calibration batches; ``rtn`` then runs GPTQ proper at ``8 - N`` bits).
        gptq_damp: dampening of the ``gptq`` solver, a fraction of the mean diagonal of ``H``.
        gptq_block: columns per lazy-update block of the ``gptq`` solver.
        gptq_act_order: the ``gptq`` solver walks whole groups by decreasing input energy (``diag H``)
            instead of in column order (:func:`bitvert.pruning.gptq.gptq_prune`).
        gptq_quantized_inputs: the ``gptq`` solver's Hessians are collected on the layers' inputs
            fake-quantized to ``quant.act_bits`` (as the evaluated model sees them) instead of float inputs;
            no effect for weight-only presets.
        scale_search: per-channel scales of the normal (pruned) channels: ``none`` (absmax / 127, the
            paper's) or ``mse`` (per channel, the shrink factor of the absmax scale in
            :data:`~bitvert.pipeline.quantize.SCALE_SEARCH_FACTORS` whose quantize -> prune (this preset's
            method and N; ``rtn``: round at ``8 - N`` bits) -> dequantize error is least, weighed by
            ``diag H`` when the layer has a Hessian; :func:`~bitvert.pipeline.quantize.search_channel_scales`).
            Sensitive channels keep their absmax scale and the sensitivity scores use the absmax scales;
            one scale per channel is stored either way, so the bits do not change. Needs per-channel weights.
            Default ``none``; the ``-gptq`` presets (and their baselines) use ``mse``.
        quant: weight/activation quantization.
        rules: regex over module names -> ``prune`` / ``int8`` / ``fp32`` (or ``None`` = fp32);
            the first full match wins and overrides ``first_layer`` / ``last_layer``.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(min_length=1)
    description: str = ""
    method: str
    sensitive_fraction: float = Field(0.0, ge=0.0, le=1.0)
    columns: int = Field(0, ge=0, le=6)
    group_size: int = Field(32, ge=2)
    channel_multiple: int = Field(32, ge=1)
    semantics: Literal["paper", "code"] = "paper"
    constant_bits: int | None = Field(None, ge=1, le=7)
    mean_rounding: Literal["half_even", "half_up"] = "half_even"
    remainder: Literal["short", "dense", "error"] = "short"
    first_layer: LayerRole = LayerRole.INT8
    last_layer: LayerRole = LayerRole.INT8
    sensitivity: Literal["auto", "scale", "std", "output_error"] = "auto"
    target_bits: float | None = Field(None, gt=0.0, allow_inf_nan=False)
    metadata_bits_per_group: int = Field(8, ge=0, le=32)
    solver: Literal["greedy", "gptq"] = "greedy"
    gptq_damp: float = Field(0.01, ge=0.0, le=1.0)
    gptq_block: int = Field(128, ge=1, le=4096)
    gptq_act_order: bool = False
    gptq_quantized_inputs: bool = False
    scale_search: Literal["none", "mse"] = "none"
    quant: QuantConfig = QuantConfig()
    rules: dict[str, LayerRole | None] = Field(default_factory=dict)

    @field_validator("method")
    @classmethod
    def _known_method(cls, value: str) -> str:
        if value not in PIPELINE_METHODS and value not in REGISTRY:
            raise ValueError(f"method must be one of {preset_methods()}, got {value!r}")
        return value

    @field_validator("target_bits", mode="before")
    @classmethod
    def _number(cls, value: Any) -> Any:
        if isinstance(value, bool):
            raise ValueError(f"target_bits must be a number of bits per weight (e.g. 5.0), got {value!r}")
        return value

    @model_validator(mode="after")
    def _check(self) -> "PipelinePreset":
        if self.method == "none" and self.columns != 0:
            raise ValueError("method 'none' (INT8 baseline) prunes nothing; set columns=0")
        if self.method != "none" and self.columns == 0:
            raise ValueError(f"method {self.method!r} needs columns >= 1 (N, the bit columns to free)")
        if self.method != "none" and self.columns >= self.quant.weight_bits:
            raise ValueError(
                f"columns={self.columns} leaves no stored bit at weight_bits={self.quant.weight_bits}"
            )
        if self.method == "rtn" and self.quant.weight_bits - self.columns < 2:
            raise ValueError("rtn needs at least 2 bits for normal channels (weight_bits - columns >= 2)")
        if self.target_bits is not None:
            if self.method == "none":
                raise ValueError("target_bits needs a pruning method; method 'none' (INT8) has nothing to allocate")
            lo = self.quant.weight_bits - max(BUDGET_COLUMNS) if self.method == "rtn" else \
                self.quant.weight_bits - max(BUDGET_COLUMNS) + self.metadata_bits_per_group / self.group_size
            if not lo <= self.target_bits <= self.quant.weight_bits:
                raise ValueError(
                    f"target_bits={self.target_bits} is outside [{lo:g}, {self.quant.weight_bits}], the effective "
                    f"bits N in {list(BUDGET_COLUMNS)} can reach at g={self.group_size} (the reachable range of a "
                    "model is narrower: its INT8 layers and sensitive channels stay at 8 bits)")
        if self.scale_search != "none":
            if self.method == "none":
                raise ValueError(f"scale_search {self.scale_search!r} searches the scales of pruned channels; "
                                 "method 'none' (INT8) prunes nothing, set scale_search='none'")
            if self.quant.weight_granularity != "per_channel":
                raise ValueError(f"scale_search {self.scale_search!r} picks one scale per output channel; set "
                                 "quant.weight_granularity='per_channel' or scale_search='none'")
        if self.solver == "gptq":
            if self.method == "none":
                raise ValueError("solver 'gptq' needs a pruning method; method 'none' (INT8) only rounds")
            if self.method in REGISTRY and REGISTRY[self.method].grid is None:
                raise ValueError(f"method {self.method!r} declares no value grid, so solver 'gptq' cannot run it; "
                                 "use solver='greedy'")
        return self

    @property
    def needs_hessians(self) -> bool:
        """Whether pruning needs the layers' input Hessians (``output_error`` sensitivity or a bit budget)."""
        return self.sensitivity == "output_error" or self.target_bits is not None

    @property
    def needs_calibration(self) -> bool:
        """Whether pruning needs calibration batches: activation quantization, Hessians or the ``gptq`` solver."""
        return self.quant.act_bits is not None or self.needs_hessians or self.solver == "gptq"

    @property
    def stored_bits(self) -> int:
        """Bit columns stored per weight of a normal channel (``weight_bits - N``)."""
        return self.quant.weight_bits - self.columns

    def prune_config(self, weight_bits: int | None = None, columns: int | None = None) -> PruneConfig:
        """The :class:`~bitvert.pruning.PruneConfig` of this preset's pruning method (one tensor).

        Args:
            weight_bits: the layer's weight bits (a per-layer rule may differ); default the preset's.
            columns: N of this tensor (a bit budget chooses it per layer); default the preset's.
        """
        return PruneConfig(
            method=self.method, semantics=self.semantics,
            weight_bits=self.quant.weight_bits if weight_bits is None else weight_bits,
            group_size=self.group_size, columns=self.columns if columns is None else columns,
            constant_bits=self.constant_bits,
            mean_rounding=self.mean_rounding, remainder=self.remainder, neg_min="reject",
        )

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly, round-trippable through :meth:`from_dict`."""
        return self.model_dump(mode="json")

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "PipelinePreset":
        """Validate a dict (e.g. from ``summary.json``); raises :class:`ConfigError` on bad input."""
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            raise ConfigError(f"invalid pipeline preset: {validation_message(exc)}") from None


def _make(**kw: Any) -> PipelinePreset:
    return PipelinePreset(**kw)


# LLM presets keep activations in floating point: per-tensor 8-bit activations calibrated by min/max
# break LLMs with outlier features (SmolLM2-135M: perplexity 34 -> 62 with INT8 weights), and the
# paper's LLM study is about weight bits (docs/pipeline.md).
_WEIGHT_ONLY = QuantConfig(act_bits=None)

PRESETS: dict[str, PipelinePreset] = {
    p.name: p
    for p in (
        _make(name="int8", description="per-channel symmetric INT8 weights, 8-bit activations (baseline)",
              method="none"),
        _make(name="conservative", description="BBS cons: beta 10 %, rounded averaging, N = 2, g = 32",
              method="rounded_avg", sensitive_fraction=0.10, columns=2),
        _make(name="moderate", description="BBS mod: beta 20 %, zero-point shifting, N = 4, g = 32",
              method="zero_point", sensitive_fraction=0.20, columns=4),
        _make(name="llm-conservative", description="BBS LLM cons: no sensitive channels, rounded averaging, "
              "N = 2 (6.25 bits), weight-only", method="rounded_avg", columns=2,
              first_layer=LayerRole.PRUNE, last_layer=LayerRole.PRUNE, quant=_WEIGHT_ONLY),
        _make(name="llm-moderate", description="BBS LLM mod: no sensitive channels, zero-point shifting, "
              "N = 4 (4.25 bits), weight-only", method="zero_point", columns=4,
              first_layer=LayerRole.PRUNE, last_layer=LayerRole.PRUNE, quant=_WEIGHT_ONLY),
        # BitWave as the BBS paper evaluates it (BBS.md §10.3): bit flip to w_prec kept columns, g = 32,
        # no sensitive channels; w_prec = 6 for ViT-S, BERT-MRPC and ResNet-34, 5 for the other workloads.
        _make(name="bitwave-w5", description="BitWave (paper setting): bit flip to 5 kept columns (N = 3), g = 32, "
              "no sensitive channels", method="bitflip", semantics="code", columns=3),
        _make(name="bitwave-w6", description="BitWave (paper setting): bit flip to 6 kept columns (N = 2), g = 32, "
              "no sensitive channels", method="bitflip", semantics="code", columns=2),
    )
}
"""The named presets of the paper (BBS.md §7.3) plus the INT8 baseline (``-gptq`` variants added below)."""

GPTQ_SUFFIX = "-gptq"
"""Name suffix of a preset run with ``solver="gptq"``."""

# The calibration-aware presets also choose each layer's activation range by its effect on the model
# output (``act_observer="output"``: the min/max or the MSE-optimal range, docs/pipeline.md "Decisions");
# the paper's presets keep min/max.
PRESETS.update({
    f"{name}{GPTQ_SUFFIX}": p.model_copy(update={
        "name": f"{name}{GPTQ_SUFFIX}", "solver": "gptq", "scale_search": "mse", "gptq_act_order": True,
        "quant": p.quant if p.quant.act_bits is None else p.quant.model_copy(update={"act_observer": "output"}),
        "description": f"{p.description}; error-feedback (GPTQ) solver on calibration Hessians, "
                       "clipped scales (mse search), groups by decreasing input energy (act order)"
                       + ("" if p.quant.act_bits is None else "; activation ranges chosen by output error")})
    for name, p in list(PRESETS.items()) if p.method != "none"
})

BASELINES: tuple[str, ...] = ("bitwave", "rtn")
"""Baselines derivable from every pruning preset: ``bitwave-<preset>`` and ``rtn-<preset>``."""


def baseline_of(preset: PipelinePreset, baseline: str) -> PipelinePreset:
    """The ``bitwave`` or ``rtn`` baseline at the same β, N, g and layer rules as ``preset``."""
    if baseline not in BASELINES:
        raise ConfigError(f"baseline must be one of {list(BASELINES)}, got {baseline!r}")
    if preset.method not in bbs_methods():
        raise ConfigError(f"preset {preset.name!r} is not a BBS pruning preset; baselines derive from one")
    if baseline == "bitwave":
        return preset.model_copy(update={
            "name": f"bitwave-{preset.name}", "method": "bitflip",
            "description": f"BitWave bit flip at the beta and N of {preset.name}",
        })
    if preset.solver == "gptq":
        return preset.model_copy(update={
            "name": f"rtn-{preset.name}", "method": "rtn",
            "description": f"GPTQ at {preset.stored_bits} bits (per-channel scale) on the normal channels of "
                           f"{preset.name}",
        })
    return preset.model_copy(update={
        "name": f"rtn-{preset.name}", "method": "rtn",
        "description": f"per-channel round-to-nearest at {preset.stored_bits} bits on the normal channels "
                       f"of {preset.name}",
    })


def list_presets() -> list[str]:
    """Every name :func:`get_preset` accepts."""
    names = list(PRESETS)
    names += [f"{b}-{n}" for n, p in PRESETS.items() if p.method in bbs_methods() for b in BASELINES]
    return names


def get_preset(name: str | PipelinePreset, **overrides: Any) -> PipelinePreset:
    """Look up a preset by name (``moderate``, ``bitwave-moderate``, ``rtn-conservative``, ...).

    Keyword overrides replace fields after lookup (validated), e.g.
    ``get_preset("moderate", sensitive_fraction=0.3)``.

    Raises:
        ConfigError: unknown name (with the closest valid names) or an invalid override.
    """
    if isinstance(name, PipelinePreset):
        preset = name
    else:
        if not isinstance(name, str):
            raise ConfigError(f"preset must be a name or a PipelinePreset, got {type(name).__name__}")
        key = name.strip().lower().replace("_", "-")
        if key in PRESETS:
            preset = PRESETS[key]
        else:
            base = None
            for b in BASELINES:
                if key.startswith(b + "-") and key[len(b) + 1:] in PRESETS:
                    base = baseline_of(PRESETS[key[len(b) + 1:]], b)
            if base is None:
                close = difflib.get_close_matches(key, list_presets(), n=3, cutoff=0.5)
                hint = f"did you mean {' or '.join(repr(c) for c in close)}? " if close else ""
                raise ConfigError(f"unknown preset {name!r}; {hint}valid presets: {', '.join(list_presets())}")
            preset = base
    if overrides:
        try:
            preset = PipelinePreset.model_validate({**preset.model_dump(), **overrides})
        except ValidationError as exc:
            raise ConfigError(f"invalid override of preset {preset.name!r}: {validation_message(exc)}") from None
    return preset
