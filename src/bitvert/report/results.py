"""What a study is and what it measured: :class:`StudyConfig`, :class:`VariantResult`,
:class:`StudyResult` (``results.json``) and the strict-JSON helper :func:`finite`."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from bitvert.errors import ConfigError, validation_message
from bitvert.report.variants import DEFAULT_CALIBRATION_SAMPLES, parse_eval_limit, variant_presets

__all__ = ["RESULTS_SCHEMA", "TIMINGS_SCHEMA", "StudyConfig", "StudyResult", "VariantResult", "finite"]

RESULTS_SCHEMA = "bitvert.report.results/2"
"""``schema`` of ``results.json`` (2: timings moved to ``timings.json``, CPU capability and noise bands added)."""

TIMINGS_SCHEMA = "bitvert.report.timings/1"
"""``schema`` of ``timings.json``."""


class StudyConfig(BaseModel):
    """What :func:`run_study` does (validated; unknown fields are rejected).

    Attributes:
        model: a model of :func:`bitvert.models.list_models` or a path / hub id that
            :func:`bitvert.models.load_model` accepts.
        presets: pipeline presets to study besides INT8 (see :func:`bitvert.pipeline.list_presets`).
        baselines: baselines derived from every BBS preset at the same β, N and g
            (``bitwave``: BitWave bit flip; ``rtn``: round-to-nearest at ``8 - N`` bits).
        accelerators: accelerator presets or YAML files (``all`` = every shipped design).
        seed: seed of torch / numpy / ``random``.
        task: evaluation task (``None``: the model's default task; ``name:PATH`` for user data).
        eval_limit: examples per evaluation: a positive integer, ``"auto"`` (by model family, see
            :data:`bitvert.report.variants.AUTO_EVAL_LIMITS`) or ``"full"`` (the task's own default);
            the same rule as ``bitvert prune --limit``.
        calibration_samples: samples used to calibrate 8-bit activations (default
            :data:`bitvert.report.variants.DEFAULT_CALIBRATION_SAMPLES`, as ``bitvert prune``).
        calibration_path: an ImageNet-style image folder that calibrates vision models without embedded
            calibration data (``torchvision:``, ``timm:``, ONNX); refused with the embedded and text models.
        simulate_batch: batch size of the simulated workload.
        simulate_seq_len: tokens per sequence of a text model's simulated input (``None``: 128, see
            :data:`bitvert.models.example.DEFAULT_SEQ_LEN_TOKENS`); vision models run at their native
            resolution and reject it.
        keep_checkpoints: also keep each variant's ``pruned.safetensors`` (``checkpoints/``) for
            ``bitvert eval``; the encoded ``*.bbs.safetensors`` files are always kept.
        preset_overrides: preset fields replaced in every requested preset (not in ``int8``), validated
            by :class:`~bitvert.pipeline.PipelinePreset` (any field: ``columns``, ``group_size``,
            ``sensitive_fraction``, ``method``...); the baselines derive from the overridden presets.
            ``bitvert sweep`` runs each of its points as a study with overrides.
        simulate: run the ``simulate`` stage (``False``: no accelerator is simulated; ``bitvert sweep``
            uses it for variants no requested hardware runs, e.g. ``rtn``).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    model: str = Field("minilm-l6", min_length=1)
    presets: tuple[str, ...] = ("conservative", "moderate")
    baselines: tuple[str, ...] = ("bitwave", "rtn")
    accelerators: tuple[str, ...] = ("all",)
    seed: int = Field(0, ge=0, lt=2**32)
    task: str | None = None
    eval_limit: int | Literal["auto", "full"] = "auto"
    calibration_samples: int = Field(DEFAULT_CALIBRATION_SAMPLES, ge=1)
    calibration_path: str | None = None
    simulate_batch: int = Field(1, ge=1)
    simulate_seq_len: int | None = Field(None, ge=1)
    keep_checkpoints: bool = False
    preset_overrides: dict[str, Any] = Field(default_factory=dict)
    simulate: bool = True

    @field_validator("presets")
    @classmethod
    def _check_presets(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        from bitvert.pipeline import get_preset

        if not v:
            raise ValueError("give at least one preset, e.g. ('conservative', 'moderate')")
        names = []
        for p in v:
            try:
                name = get_preset(p).name
            except ConfigError as exc:
                raise ValueError(str(exc)) from None
            if name == "int8":
                continue  # always part of the study
            if name not in names:
                names.append(name)
        return tuple(names)

    @field_validator("baselines")
    @classmethod
    def _check_baselines(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        from bitvert.pipeline import BASELINES

        bad = [b for b in v if b not in BASELINES]
        if bad:
            raise ValueError(f"unknown baseline(s) {bad}; choose from {list(BASELINES)} (or none)")
        return tuple(dict.fromkeys(v))

    @field_validator("accelerators")
    @classmethod
    def _check_accelerators(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        if not v or not all(isinstance(a, str) and a.strip() for a in v):
            raise ValueError("give 'all' or accelerator names such as 'stripes', 'bitvert-moderate'")
        return tuple(a.strip() for a in v)

    @field_validator("preset_overrides")
    @classmethod
    def _check_overrides(cls, v: dict[str, Any]) -> dict[str, Any]:
        if "name" in v:
            raise ValueError("preset_overrides cannot rename a preset (remove 'name')")
        return v

    @field_validator("eval_limit", mode="before")
    @classmethod
    def _check_limit(cls, v: Any) -> int | str:
        try:
            return parse_eval_limit(v)
        except ConfigError as exc:
            raise ValueError(str(exc)) from None

    @model_validator(mode="after")
    def _check_footing(self) -> StudyConfig:
        """The INT8 baseline must quantize like every studied preset (:func:`variant_presets`)."""
        try:
            self.variant_presets()
        except ConfigError as exc:
            raise ValueError(str(exc)) from None
        return self

    def variant_presets(self) -> list[Any]:
        """The study's variants in order: ``int8``, then each preset followed by its baselines."""
        from bitvert.pipeline import get_preset

        requested = [self._overridden(get_preset(p)) for p in self.presets]
        return variant_presets(requested or [get_preset("int8")], self.baselines)

    def _overridden(self, preset: Any) -> Any:
        """``preset`` with :attr:`preset_overrides` applied (validated), its description saying so."""
        from bitvert.pipeline import get_preset

        if not self.preset_overrides:
            return preset
        resolved = get_preset(preset, **self.preset_overrides)
        before, after = preset.model_dump(), resolved.model_dump()
        changed = {k: v for k, v in self.preset_overrides.items() if k != "description" and before[k] != after[k]}
        if not changed or "description" in self.preset_overrides:
            return resolved  # an override that changes nothing leaves the preset (and its files) as it ships
        said = ", ".join(f"{k}={v}" for k, v in sorted(changed.items()))
        return resolved.model_copy(update={"description": f"{preset.description} [{said}]"})

    @classmethod
    def create(cls, **kwargs: Any) -> StudyConfig:
        """Validate keyword arguments; raises :class:`ConfigError` naming the bad field."""
        try:
            return cls(**kwargs)
        except ValidationError as exc:
            raise ConfigError(f"invalid study configuration: {validation_message(exc)}") from None

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly copy."""
        return self.model_dump(mode="json")


@dataclass
class VariantResult:
    """One variant of the model (``fp32``, ``int8``, a preset or a baseline).

    Attributes:
        name, method, description: the preset's identity (``method="fp32"`` for the FP32 model).
        metrics: evaluation metrics (:func:`bitvert.evaluation.evaluate`).
        effective_bits: weight bits per weight of the quantized layers (32 for FP32).
        compression_vs_int8: ``8 / effective_bits``.
        weight_sqnr_db: ``10 log10(Σw² / Σ(w_q - w)²)`` over the quantized layers (``None`` for FP32).
        sensitive_channel_fraction: channels kept at 8 bits / channels of pruned layers.
        encoded_file: the ``*.bbs.safetensors`` file name (in ``encoded/``), ``None`` for FP32.
        file_bytes: size of that file on disk; weight_bytes: bytes of its encoded weight tensors.
        file_ratio_vs_int8, weight_ratio_vs_int8: INT8's sizes divided by this variant's.
        verified: the decoded integers equal the pipeline's bit for bit, and the model loaded from the
            file (:func:`bitvert.codec.load_model_`) gives exactly the pruned model's output on one input.
        output_max_abs_diff: largest absolute difference of those two outputs (0.0 when verified).
        accelerator: the simulated accelerator that runs this variant (``None``: none does).
        speedup_vs_stripes, energy_vs_sparten: that accelerator's simulated ratios.
        preset: the resolved preset (``None`` for FP32).
    """

    name: str
    method: str
    description: str
    metrics: dict[str, float]
    effective_bits: float
    compression_vs_int8: float
    weight_sqnr_db: float | None = None
    sensitive_channel_fraction: float = 0.0
    encoded_file: str | None = None
    file_bytes: int | None = None
    weight_bytes: int | None = None
    file_ratio_vs_int8: float | None = None
    weight_ratio_vs_int8: float | None = None
    verified: bool | None = None
    output_max_abs_diff: float | None = None
    accelerator: str | None = None
    speedup_vs_stripes: float | None = None
    energy_vs_sparten: float | None = None
    preset: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly copy."""
        return dataclasses.asdict(self)


@dataclass
class StudyResult:
    """Everything :func:`run_study` measured; ``results.json`` is :meth:`to_dict`.

    Attributes:
        config: the validated configuration.
        out_dir: the finished report folder.
        model: ``name``, ``family``, ``requested``, ``n_parameters``, ``n_weights_quantized``.
        task, eval_limit: the evaluation task and the per-evaluation example limit used.
        headline_metric, fidelity_metric: the task's main metric and the FP32-fidelity metric.
        variants: by name, in study order (``fp32``, ``int8``, then each preset and its baselines).
        layers: per quantized layer: name, kind, shape, weights, INT8 sparsity statistics and
            effective bits / role per variant.
        simulation: the ``summary.json`` document of :func:`bitvert.hardware.simulate.simulate`.
        workload_check: how the simulated workload's weights compare with the pipeline's INT8 weights.
        timings_s: wall seconds per stage (and ``total``).
        cpu_seconds: process CPU seconds per stage, all threads (and ``total``): on a busy machine the
            wall times grow, these much less.
        environment: versions, platform, the CPU capability torch ran with, thread counts, seed.
        noise: the noise band of each task metric (:func:`bitvert.report.noise.noise_bands`).
    """

    config: StudyConfig
    out_dir: Path
    model: dict[str, Any]
    task: str
    eval_limit: int | None
    headline_metric: str
    fidelity_metric: str | None
    variants: dict[str, VariantResult]
    layers: list[dict[str, Any]]
    simulation: dict[str, Any]
    workload_check: dict[str, Any]
    timings_s: dict[str, float]
    environment: dict[str, Any]
    cpu_seconds: dict[str, float] = field(default_factory=dict)
    noise: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """The ``results.json`` document."""
        return {
            "schema": RESULTS_SCHEMA,
            "config": self.config.to_dict(),
            "model": self.model,
            "task": self.task,
            "eval_limit": self.eval_limit,
            "headline_metric": self.headline_metric,
            "fidelity_metric": self.fidelity_metric,
            "variants": {k: v.to_dict() for k, v in self.variants.items()},
            "layers": self.layers,
            "simulation": self.simulation,
            "workload_check": self.workload_check,
            "timings_s": self.timings_s,
            "cpu_seconds": self.cpu_seconds,
            "environment": self.environment,
            "noise": self.noise,
        }

    def numbers(self) -> dict[str, Any]:
        """:meth:`to_dict` without run-dependent entries (timings, simulator wall time): what must be
        identical between two runs with the same configuration. This is ``results.json``; the timings
        are in ``timings.json`` (:meth:`timings`), so two runs write byte-identical ``results.json``."""
        d = self.to_dict()
        d.pop("timings_s")
        d.pop("cpu_seconds")
        sim = dict(d["simulation"])
        sim.pop("elapsed_s", None)
        d["simulation"] = sim
        return d

    def timings(self) -> dict[str, Any]:
        """The ``timings.json`` document: wall and CPU seconds per stage (they differ from run to run)."""
        return {"schema": TIMINGS_SCHEMA, "timings_s": self.timings_s, "cpu_seconds": self.cpu_seconds}


def finite(obj: Any) -> Any:
    """``obj`` with every NaN / infinite float replaced by ``None`` (strict JSON has neither)."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [finite(v) for v in obj]
    return obj
