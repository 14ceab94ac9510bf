"""The end-to-end BBS study (``bitvert run``): one model, every variant, every accelerator, one report.

Stages (each timed; the times are part of the report):

1. ``load`` -- :func:`bitvert.models.load_model`;
2. ``evaluate`` -- the FP32 model and every variant with :func:`bitvert.evaluation.evaluate`
   (variants are compared with the FP32 model: fidelity metrics);
3. ``prune`` -- INT8 post-training quantization and each preset / baseline with
   :func:`bitvert.pipeline.prune_model_` on a fresh copy of the FP32 model;
4. ``encode`` -- each variant's pruned checkpoint (:func:`bitvert.pipeline.save_pruned`) is encoded
   into the BBS container (:mod:`bitvert.codec`), read back, decoded and compared bit-exactly with the
   pipeline's integer weights; the model loaded from the file must reproduce the pruned model's
   output exactly on one input; the file size is the "size on disk";
5. ``analyze`` -- per-layer bit sparsity and BBS sparsity of the INT8 weights
   (:func:`bitvert.core.analysis.sparsity_stats`) and per-layer effective bits of every variant;
6. ``simulate`` -- the model's workload imported with forward hooks on one calibration batch
   (:func:`bitvert.hardware.import_torch.import_workload`, exactly what ``bitvert simulate --model``
   does) and :func:`bitvert.hardware.simulate.simulate` on the requested accelerators;
7. ``write`` -- ``results.json``, plots, ``report.md`` and ``report.html``.

Everything is written into a hidden sibling folder ``.<out>.partial-<pid>`` which is renamed to
``out`` only when complete (``status.json`` says ``"complete"``); an interrupted or failed run
removes it, so a half-written report is never presented as complete.

Determinism: every stage that may draw random numbers is preceded by seeding torch, numpy and
``random`` with ``seed`` (a variant's stages with ``seed`` + CRC-32 of its name), so a variant's numbers
do not depend on which other variants ran before it; the same command twice gives identical numbers
(timings aside).
"""

from __future__ import annotations

import copy
import dataclasses
import gc
import json
import logging
import math
import os
import platform
import random
import shutil
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from tqdm.auto import tqdm

from bitvert import __version__
from bitvert.errors import ConfigError, InputError, MissingDependencyError
from bitvert.jsonutil import json_default
from bitvert.report.simulation import attach_accelerators, simulate_study

__all__ = [
    "AUTO_EVAL_LIMITS",
    "REPORT_STATUS_FILE",
    "RESULTS_SCHEMA",
    "StageTimer",
    "StudyConfig",
    "StudyResult",
    "VariantResult",
    "is_complete_report",
    "run_study",
]

logger = logging.getLogger(__name__)

REPORT_STATUS_FILE = "status.json"
"""Written last into a report folder; ``{"status": "complete", ...}`` marks a finished report."""

RESULTS_SCHEMA = "bitvert.report.results/1"
"""``schema`` of ``results.json``."""

AUTO_EVAL_LIMITS: dict[str, int] = {
    "text-embedding": 120,
    "vision": 4000,
    "causal-lm": 8,
    "text-classifier": 200,
}
"""Examples evaluated per variant with ``eval_limit="auto"``, by model family (keeps the default
study of the embedded MiniLM within a few minutes on two cores; ``"full"`` uses each task's own
default)."""

_FIDELITY_KEYS = ("embedding_cosine", "top1_agreement", "probe_agreement", "prediction_agreement",
                  "perplexity_ratio")
_STAGES = ("load", "prune", "evaluate", "encode", "analyze", "simulate", "write")


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
            :data:`AUTO_EVAL_LIMITS`) or ``"full"`` (the task's own default).
        calibration_samples: samples used to calibrate 8-bit activations.
        calibration_path: an ImageNet-style image folder that calibrates vision models without embedded
            calibration data (``torchvision:``, ``timm:``, ONNX); ignored by the embedded models.
        simulate_batch: batch size of the simulated workload.
        keep_checkpoints: also keep each variant's ``pruned.safetensors`` (``checkpoints/``) for
            ``bitvert eval``; the encoded ``*.bbs.safetensors`` files are always kept.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    model: str = Field("minilm-l6", min_length=1)
    presets: tuple[str, ...] = ("conservative", "moderate")
    baselines: tuple[str, ...] = ("bitwave", "rtn")
    accelerators: tuple[str, ...] = ("all",)
    seed: int = Field(0, ge=0, lt=2**32)
    task: str | None = None
    eval_limit: int | Literal["auto", "full"] = "auto"
    calibration_samples: int = Field(32, ge=1)
    calibration_path: str | None = None
    simulate_batch: int = Field(1, ge=1)
    keep_checkpoints: bool = False

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

    @field_validator("eval_limit")
    @classmethod
    def _check_limit(cls, v: int | str) -> int | str:
        if isinstance(v, int) and not isinstance(v, bool) and v < 1:
            raise ValueError(f"eval_limit must be a positive integer, 'auto' or 'full', got {v}")
        return v

    @classmethod
    def create(cls, **kwargs: Any) -> StudyConfig:
        """Validate keyword arguments; raises :class:`ConfigError` naming the bad field."""
        try:
            return cls(**kwargs)
        except ValidationError as exc:
            raise ConfigError(f"invalid study configuration: {exc}") from None

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
        environment: versions, platform, seed.
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
        }

    def numbers(self) -> dict[str, Any]:
        """:meth:`to_dict` without run-dependent entries (timings, simulator wall time): what must be
        identical between two runs with the same configuration."""
        d = self.to_dict()
        d.pop("timings_s")
        d.pop("cpu_seconds")
        sim = dict(d["simulation"])
        sim.pop("elapsed_s", None)
        d["simulation"] = sim
        return d


class StageTimer:
    """Accumulates wall time per named stage (``with timer.stage("prune"): ...``)."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self.cpu_seconds: dict[str, float] = {}

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        """Time the ``with`` block (wall and process CPU time) and add it to ``name``."""
        t0, c0 = time.perf_counter(), time.process_time()
        try:
            yield
        finally:
            self.seconds[name] = self.seconds.get(name, 0.0) + time.perf_counter() - t0
            self.cpu_seconds[name] = self.cpu_seconds.get(name, 0.0) + time.process_time() - c0

    def _keys(self) -> list[str]:
        return [k for k in _STAGES if k in self.seconds] + [k for k in self.seconds if k not in _STAGES]

    def ordered(self) -> dict[str, float]:
        """Wall seconds per stage in pipeline order, plus any other stage, rounded to milliseconds."""
        return {k: round(self.seconds[k], 3) for k in self._keys()}

    def ordered_cpu(self) -> dict[str, float]:
        """Process CPU seconds (all threads) per stage, in the order of :meth:`ordered`."""
        return {k: round(self.cpu_seconds[k], 3) for k in self._keys()}


def is_complete_report(path: str | os.PathLike[str]) -> bool:
    """True when ``path`` is a report folder whose ``status.json`` says ``complete``."""
    status = Path(path) / REPORT_STATUS_FILE
    try:
        return json.loads(status.read_text(encoding="utf-8")).get("status") == "complete"
    except (OSError, ValueError, AttributeError):
        return False


def _variant_seed(seed: int, name: str) -> int:
    """Seed of one variant's stages: depends on the study seed and the variant's name only."""
    import zlib

    return (seed + zlib.crc32(name.encode("utf-8"))) % 2**32


def _seed_everything(seed: int) -> None:
    import torch

    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def _require(module: str, hint: str) -> None:
    import importlib

    try:
        importlib.import_module(module)
    except ImportError as exc:
        raise MissingDependencyError(f"`bitvert run` needs {module} ({exc}); install it with: {hint}") from None


def _check_out_dir(out_dir: Path) -> None:
    if out_dir.exists() and not out_dir.is_dir():
        raise InputError(f"--out {str(out_dir)!r} is a file; give a folder path for the report")
    if out_dir.is_dir() and any(out_dir.iterdir()) and not is_complete_report(out_dir):
        raise InputError(
            f"--out {str(out_dir)!r} is a non-empty folder that is not a bitvert report; choose a new or "
            "empty folder (a previous complete report there is replaced)"
        )


def _publish(tmp: Path, out_dir: Path, status: dict[str, Any]) -> None:
    """Mark ``tmp`` complete and move it to ``out_dir`` (replacing an old report there)."""
    (tmp / REPORT_STATUS_FILE).write_text(json.dumps(status, indent=2) + "\n", encoding="utf-8")
    old: Path | None = None
    if out_dir.exists():
        old = out_dir.parent / f".{out_dir.name}.old-{os.getpid()}"
        if old.exists():
            shutil.rmtree(old)
        out_dir.rename(old)
    tmp.rename(out_dir)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def run_study(config: StudyConfig | None, out_dir: str | os.PathLike[str], progress: bool = False) -> StudyResult:
    """Run the whole study and write the report folder ``out_dir``.

    Args:
        config: what to study (``None``: the defaults -- the embedded MiniLM, presets
            ``conservative`` and ``moderate``, both baselines, every accelerator).
        out_dir: the report folder; created, or replaced when it holds a previous complete report.
        progress: show progress bars (stderr).

    Returns:
        The :class:`StudyResult` (also in ``out_dir/results.json``).

    Raises:
        ConfigError: invalid configuration (unknown preset, accelerator, task...).
        InputError: ``out_dir`` is a file or a non-empty folder that is not a bitvert report.
        MissingDependencyError: an optional dependency (model package, matplotlib) is missing.
        KeyboardInterrupt: re-raised after removing the partial folder.
    """
    if config is None:
        config = StudyConfig()
    if not isinstance(config, StudyConfig):
        raise InputError(f"config must be a StudyConfig, got {type(config).__name__}")
    out = Path(out_dir).expanduser()
    _check_out_dir(out)
    _require("matplotlib", "pip install matplotlib")
    from bitvert.hardware.targets import resolve_targets

    resolve_targets(list(config.accelerators))  # fail fast on an unknown accelerator
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.parent / f".{out.name}.partial-{os.getpid()}"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir()
    try:
        result = _run(config, tmp, progress)
        _publish(tmp, out, {
            "status": "complete", "schema": RESULTS_SCHEMA, "bitvert_version": __version__,
            "model": result.model["name"], "variants": list(result.variants),
            "files": sorted(str(p.relative_to(tmp)) for p in tmp.rglob("*") if p.is_file()),
        })
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        logger.warning("the study did not finish; removed the partial report folder %s", tmp)
        raise
    result.out_dir = out
    return result


def _variants(config: StudyConfig) -> list[Any]:
    from bitvert.pipeline import baseline_of, get_preset

    out = [get_preset("int8")]
    for name in config.presets:
        preset = get_preset(name)
        out.append(preset)
        if preset.method in ("rounded_avg", "zero_point"):
            out += [baseline_of(preset, b) for b in config.baselines]
    seen: set[str] = set()
    unique = []
    for p in out:
        if p.name not in seen:
            seen.add(p.name)
            unique.append(p)
    return unique


_MEMO_TASKS = frozenset({"similarity-suite", "lee-similarity", "simlex999", "wordsim353", "mnist-top1",
                         "news-perplexity", "text-perplexity", "glue", "image-folder"})
"""Tasks that call the FP32 reference only through its forward (no hooks on its submodules), so its
outputs may be memoized across the variants' evaluations."""


class ReferenceMemo:
    """While active (``with memo:``), ``module.forward`` returns the stored output for inputs it has seen.

    The FP32 model is evaluated once for its own metrics and then once more as the reference of every
    variant, on the same inputs; it is never modified, so its outputs can be reused. Inputs are keyed by
    the SHA-1 of every tensor argument (with its name, dtype and shape) and the ``repr`` of scalar
    arguments; a call with any other argument type is not memoized. Only installed for tasks in
    :data:`_MEMO_TASKS`, whose evaluation uses the reference's plain forward.
    """

    def __init__(self, module: Any, enabled: bool = True) -> None:
        self.module = module
        self.enabled = enabled
        self.cache: dict[tuple[Any, ...], Any] = {}
        self.hits = 0
        self.misses = 0
        self._orig: Any = None

    def __enter__(self) -> ReferenceMemo:
        if self.enabled:
            self._orig = self.module.forward
            self.module.forward = self._forward
        return self

    def __exit__(self, *exc: object) -> None:
        if self.enabled and self._orig is not None:
            del self.module.forward  # the instance attribute; the class's forward is visible again
            self._orig = None

    @staticmethod
    def _key(args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[Any, ...] | None:
        import hashlib

        import torch

        parts: list[Any] = []
        for name, value in [(str(i), a) for i, a in enumerate(args)] + sorted(kwargs.items()):
            if isinstance(value, torch.Tensor):
                t = value.detach().cpu().contiguous()
                digest = hashlib.sha1(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"").hexdigest()
                parts.append((name, str(t.dtype), tuple(t.shape), digest))
            elif value is None or isinstance(value, (bool, int, float, str)):
                parts.append((name, repr(value)))
            else:
                return None
        return tuple(parts)

    def _forward(self, *args: Any, **kwargs: Any) -> Any:
        key = self._key(args, kwargs)
        if key is None:
            return self._orig(*args, **kwargs)
        if key in self.cache:
            self.hits += 1
            return self.cache[key]
        self.misses += 1
        out = self._orig(*args, **kwargs)
        self.cache[key] = out
        return out


def _evaluate(loaded: Any, module: Any, task: str, reference: Any, limit: int | None,
              memo: ReferenceMemo | None = None) -> dict[str, float]:
    from bitvert.evaluation import evaluate

    target = loaded if module is loaded.model else dataclasses.replace(loaded, model=module)
    if memo is None:
        memo = ReferenceMemo(reference, enabled=False)
    with memo:
        res = evaluate(target, task, reference=reference, limit=limit, fidelity=reference is not None)
    return {k: float(v) for k, v in res.items()}


def _resolve_limit(config: StudyConfig, family: str) -> int | None:
    if config.eval_limit == "full":
        return None
    if config.eval_limit == "auto":
        return AUTO_EVAL_LIMITS.get(family)
    return int(config.eval_limit)


def _headline(task: str, fp32_metrics: dict[str, float]) -> tuple[str, str | None]:
    from bitvert.evaluation import task_info

    name = task.partition(":")[0]
    try:
        keys = list(task_info(name).metrics)
    except ConfigError:
        keys = []
    headline = next((k for k in keys if k in fp32_metrics), None)
    if headline is None:
        headline = next(k for k in fp32_metrics if not k.startswith("n_"))
    fidelity = next((k for k in _FIDELITY_KEYS if k in keys), None)
    return headline, fidelity


def _encode_variant(model: Any, report: Any, model_info: dict[str, Any], scratch: Path, encoded_dir: Path,
                    name: str, keep_checkpoint_dir: Path | None, fp32: Any, probe_batch: Any) -> dict[str, Any]:
    """save_pruned -> BBS container -> read back: decode every tensor and compare it with the pipeline's
    integers, then load the file into a fresh copy of the FP32 architecture and compare its output on
    ``probe_batch`` with the pruned model's."""
    from bitvert.codec import encode_checkpoint_file, file_accounting, load_encoded, load_model_
    from bitvert.codec.checkpoint import weight_key
    from bitvert.models import run_module
    from bitvert.pipeline import save_pruned

    ckpt_dir = keep_checkpoint_dir if keep_checkpoint_dir is not None else scratch
    ckpt = save_pruned(ckpt_dir / f"{name}.safetensors", model, report, model_info)
    target = encoded_dir / f"{name}.bbs.safetensors"
    encode_checkpoint_file(ckpt, target)
    if keep_checkpoint_dir is None:
        ckpt.unlink()
    decoded = load_encoded(target)
    mismatched = []
    for rec in report.quantized_layers:
        key = weight_key(rec.name)
        got = decoded.decode(key) if key in decoded.tensors else None
        if got is None or got.shape != rec.q.shape or not np.array_equal(got, rec.q):
            mismatched.append(rec.name)
    if mismatched:
        logger.error("%s: decoded weights differ from the pipeline's in %d layer(s): %s", name, len(mismatched),
                     mismatched[:5])
    restored = copy.deepcopy(fp32)
    quantizer = load_model_(restored, decoded)
    try:
        expected = run_module(model, probe_batch)
        got_out = run_module(restored, probe_batch)
        diff = float((expected.float() - got_out.float()).abs().max()) if expected.shape == got_out.shape \
            else float("inf")
    finally:
        if quantizer is not None:
            quantizer.remove()
        del restored
    if diff != 0.0:
        logger.error("%s: the model loaded from %s differs from the pruned model by %g", name, target.name, diff)
    acc = file_accounting(target)
    return {"encoded_file": target.name, "file_bytes": int(acc["file_bytes"]),
            "weight_bytes": int(acc["weight_bytes"]), "verified": not mismatched and diff == 0.0,
            "mismatched_layers": mismatched, "output_max_abs_diff": diff}


def _layer_table(reports: dict[str, Any], group_size: int) -> list[dict[str, Any]]:
    """Per quantized layer: INT8 bit / BBS sparsity and each variant's effective bits."""
    from bitvert.core.analysis import sparsity_stats

    int8 = reports["int8"]
    rows = []
    for rec in int8.quantized_layers:
        stats = sparsity_stats(rec.q, kind=rec.kind, group_size=group_size).to_dict()
        rows.append({
            "name": rec.name, "kind": rec.kind, "shape": list(rec.shape), "n_weights": rec.n_weights,
            "int8_sparsity": {k: float(v) for k, v in stats.items() if k not in ("weights", "groups")},
            "effective_bits": {}, "role": {},
        })
    index = {r["name"]: r for r in rows}
    for vname, rep in reports.items():
        for rec in rep.layers:
            if rec.name in index:
                index[rec.name]["effective_bits"][vname] = rec.effective_bits
                index[rec.name]["role"][vname] = rec.role
    return rows


def _environment(seed: int) -> dict[str, Any]:
    import importlib.metadata as md

    import torch

    versions = {"bitvert": __version__, "python": platform.python_version(), "torch": torch.__version__,
                "numpy": np.__version__}
    for pkg in ("numba", "pydantic", "safetensors", "transformers", "matplotlib"):
        try:
            versions[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            continue
    return {"versions": versions, "platform": platform.platform(), "machine": platform.machine(),
            "torch_threads": torch.get_num_threads(), "seed": seed}


def _run(config: StudyConfig, tmp: Path, progress: bool) -> StudyResult:
    from bitvert.models import load_model
    from bitvert.report.render import write_report

    timer = StageTimer()
    t_start, c_start = time.perf_counter(), time.process_time()
    presets = _variants(config)
    _seed_everything(config.seed)
    with timer.stage("load"):
        loaded = load_model(config.model, calibration_path=config.calibration_path)
    fp32 = loaded.model.eval()
    task = config.task or loaded.default_task
    limit = _resolve_limit(config, loaded.family)
    model_info = {"name": loaded.name, "family": loaded.family, "default_task": loaded.default_task}
    logger.info("model %s (%s), task %s, limit %s, %d variants", loaded.name, loaded.family, task, limit,
                len(presets))

    memo = ReferenceMemo(fp32, enabled=task.partition(":")[0] in _MEMO_TASKS)
    with timer.stage("evaluate"):
        _seed_everything(config.seed)
        fp32_metrics = _evaluate(loaded, fp32, task, None, limit, memo)
    headline, fidelity = _headline(task, fp32_metrics)
    variants: dict[str, VariantResult] = {
        "fp32": VariantResult(name="fp32", method="fp32", description="the original floating-point model",
                              metrics=fp32_metrics, effective_bits=32.0, compression_vs_int8=0.25),
    }
    reports: dict[str, Any] = {}
    encoded_dir = tmp / "encoded"
    encoded_dir.mkdir()
    scratch = tmp / ".scratch"
    scratch.mkdir()
    ckpt_dir: Path | None = None
    if config.keep_checkpoints:
        ckpt_dir = tmp / "checkpoints"
        ckpt_dir.mkdir()
    probe_batch = next(iter(loaded.calibration_batches(1)))  # input of the encoded-model check
    bar = tqdm(presets, desc="variants", unit="variant", disable=not progress)
    for preset in bar:
        bar.set_postfix_str(preset.name)
        _seed_everything(_variant_seed(config.seed, preset.name))
        with timer.stage("prune"):
            model = copy.deepcopy(fp32)
            calib = (loaded.calibration_batches(config.calibration_samples)
                     if preset.quant.act_bits is not None else None)
            report = _prune_model(model, preset, calib, progress)
        with timer.stage("evaluate"):
            metrics = _evaluate(loaded, model, task, fp32, limit, memo)
        # the checkpoint header records the report's wall times; the study keeps its own timings
        # (results.json), so they are zeroed here to keep the files -- and their sizes -- reproducible
        report.prune_seconds = 0.0
        report.calibration_seconds = 0.0
        with timer.stage("encode"):
            enc = _encode_variant(model, report, model_info, scratch, encoded_dir, preset.name, ckpt_dir, fp32,
                                  probe_batch)
        if report.activation_quantizer is not None:
            report.activation_quantizer.remove()
            report.activation_quantizer = None
        del model
        gc.collect()
        sq = report.weight_sqnr_db
        variants[preset.name] = VariantResult(
            name=preset.name, method=preset.method, description=preset.description, metrics=metrics,
            effective_bits=report.effective_bits, compression_vs_int8=report.compression_vs_int8,
            weight_sqnr_db=sq if math.isfinite(sq) else None,
            sensitive_channel_fraction=report.sensitive_channel_fraction,
            encoded_file=enc["encoded_file"], file_bytes=enc["file_bytes"], weight_bytes=enc["weight_bytes"],
            verified=enc["verified"], output_max_abs_diff=enc["output_max_abs_diff"], preset=preset.to_dict(),
        )
        reports[preset.name] = report
    shutil.rmtree(scratch)
    logger.info("FP32 reference outputs: %d computed, %d reused", memo.misses, memo.hits)
    memo.cache.clear()
    int8 = variants["int8"]
    for v in variants.values():
        if v.file_bytes:
            v.file_ratio_vs_int8 = int8.file_bytes / v.file_bytes if int8.file_bytes else None
            v.weight_ratio_vs_int8 = int8.weight_bytes / v.weight_bytes if int8.weight_bytes and v.weight_bytes \
                else None

    with timer.stage("analyze"):
        layers = _layer_table(reports, presets[1].group_size if len(presets) > 1 else 32)

    with timer.stage("simulate"):
        _seed_everything(config.seed)
        simulation, workload_check = simulate_study(loaded, fp32, config, reports["int8"], tmp / "simulation", encoded_dir)
    attach_accelerators(presets, variants, simulation)
    del reports
    gc.collect()

    result = StudyResult(
        config=config, out_dir=tmp,
        model={**model_info, "requested": config.model, "n_parameters": loaded.n_parameters,
               "n_weights_quantized": int(sum(r["n_weights"] for r in layers)),
               "description": str(loaded.extra.get("description", ""))},
        task=task, eval_limit=limit, headline_metric=headline, fidelity_metric=fidelity, variants=variants,
        layers=layers, simulation=simulation, workload_check=workload_check, timings_s={},
        environment=_environment(config.seed),
    )
    def stamp() -> None:
        result.timings_s = {**timer.ordered(), "total": round(time.perf_counter() - t_start, 3)}
        result.cpu_seconds = {**timer.ordered_cpu(), "total": round(time.process_time() - c_start, 3)}

    with timer.stage("write"):
        stamp()
        write_report(result, tmp)
    stamp()
    (tmp / "results.json").write_text(json.dumps(finite(result.to_dict()), indent=2, allow_nan=False, default=json_default)
                                      + "\n", encoding="utf-8")
    return result


def finite(obj: Any) -> Any:
    """``obj`` with every NaN / infinite float replaced by ``None`` (strict JSON has neither)."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [finite(v) for v in obj]
    return obj


def _prune_model(model: Any, preset: Any, calibration: Any, progress: bool) -> Any:
    """:func:`bitvert.pipeline.prune_model_` (imported lazily so ``bitvert --help`` stays fast)."""
    from bitvert.pipeline import prune_model_ as _prune

    return _prune(model, preset, calibration=calibration, progress=progress)
