"""The variant runner shared by ``bitvert prune`` and ``bitvert run``.

Given a loaded model and the presets to compare (``int8`` first, then each preset followed by its
baselines, see :func:`variant_presets`), :func:`run_variants` evaluates the FP32 model and, for every
variant, prunes a fresh copy of the FP32 model (:func:`bitvert.pipeline.prune_model_`), evaluates it
against the FP32 model (task metrics + fidelity) and hands the pruned model to the caller's
``on_variant`` hook (``bitvert prune`` saves its checkpoint there, ``bitvert run`` encodes and verifies
every variant) before freeing it.

Both commands share one set of defaults (:data:`DEFAULT_CALIBRATION_SAMPLES`, the ``"auto"``
evaluation limit of :data:`AUTO_EVAL_LIMITS`) and one seeding rule (:func:`variant_seed`), so the
same preset on the same model gives the same numbers whichever command ran it.

It lives in ``report/`` because it needs ``evaluation/`` (the layer above); ``cli/`` uses it.
"""

from __future__ import annotations

import copy
import dataclasses
import gc
import logging
import math
import random
import time
import zlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from bitvert.errors import ConfigError
from bitvert.report.memo import ReferenceMemo
from bitvert.timing import StageTimer as _BaseStageTimer

__all__ = [
    "AUTO_EVAL_LIMITS",
    "DEFAULT_CALIBRATION_SAMPLES",
    "EvalLimit",
    "StageTimer",
    "VariantRun",
    "VariantsRun",
    "evaluate_model",
    "int8_baseline",
    "output_fidelity",
    "parse_eval_limit",
    "resolve_eval_limit",
    "run_variants",
    "seed_everything",
    "variant_presets",
    "variant_seed",
]

logger = logging.getLogger(__name__)

DEFAULT_CALIBRATION_SAMPLES = 32
"""Calibration samples of 8-bit activations, for ``bitvert prune`` and ``bitvert run`` alike."""

AUTO_EVAL_LIMITS: dict[str, int] = {
    "text-embedding": 120,
    "vision": 4000,
    "causal-lm": 8,
    "text-classifier": 200,
}
"""Examples evaluated per variant with the evaluation limit ``"auto"`` (the default of ``bitvert prune``,
``bitvert run`` and ``bitvert eval``), by model family (keeps the default study of the embedded MiniLM
within a few minutes on two cores); ``"full"`` uses each task's own default."""

EvalLimit = int | Literal["auto", "full"]
"""Examples per evaluation: a positive integer, ``"auto"`` (:data:`AUTO_EVAL_LIMITS`) or ``"full"``."""

_STAGES = ("load", "prune", "evaluate", "encode", "analyze", "simulate", "write")

OnVariant = Callable[[Any, Any, Any], Mapping[str, Any] | None]
"""``on_variant(preset, pruned_model, report)``: called once per variant after its evaluation, while the
pruned model is alive; what it returns is kept in :attr:`VariantRun.outputs`."""


def parse_eval_limit(value: Any, name: str = "eval_limit") -> EvalLimit:
    """Normalise an evaluation limit (``12``, ``"12"``, ``"auto"``, ``"FULL"``); ``name`` is the option
    named in the error. Raises :class:`ConfigError` for anything else."""
    given = value
    if isinstance(value, str):
        v = value.strip().lower()
        if v in ("auto", "full"):
            return v  # type: ignore[return-value]
        try:
            value = int(v)
        except ValueError:
            pass
    if isinstance(value, int) and not isinstance(value, bool) and value >= 1:
        return value
    raise ConfigError(f"{name} must be a positive integer, 'auto' or 'full', got {given!r}")


def resolve_eval_limit(limit: EvalLimit | None, family: str) -> int | None:
    """The number of examples per evaluation (``None``: the task's own default) for a model family."""
    if limit is None or limit == "full":
        return None
    if limit == "auto":
        return AUTO_EVAL_LIMITS.get(family)
    return int(limit)


def variant_seed(seed: int, name: str) -> int:
    """Seed of one variant's stages: depends on the study seed and the variant's name only."""
    return (seed + zlib.crc32(name.encode("utf-8"))) % 2**32


def seed_everything(seed: int) -> None:
    """Seed torch, numpy and ``random``."""
    import torch

    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def _describe_quant(quant: Any) -> str:
    acts = ("weight-only: activations in floating point" if quant.act_bits is None
            else f"{quant.act_bits}-bit activations")
    return f"{quant.weight_granularity.replace('_', '-')} symmetric INT{quant.weight_bits} weights, {acts}"


def int8_baseline(preset: Any) -> Any:
    """The INT8 variant compared with ``preset``: no pruning, the same quantization (weight bits and
    granularity, activation setting: weight-only presets get a weight-only INT8) and layer rules; its
    description says which activations it uses."""
    from bitvert.pipeline import get_preset

    return get_preset("int8", quant=preset.quant.model_dump(), rules=preset.rules,
                      description=f"{_describe_quant(preset.quant)} (baseline)")


def variant_presets(requested: Sequence[Any], baselines: Sequence[str] = ("bitwave", "rtn")) -> list[Any]:
    """The variants compared in one run: the INT8 baseline first, then each requested preset followed by
    its baselines (``bitwave-<p>``, ``rtn-<p>``; only BBS presets have baselines); duplicates once.

    A requested ``method="none"`` preset is the INT8 row itself; otherwise the INT8 row is
    :func:`int8_baseline` of the requested presets. Every requested preset must quantize the same way
    (one :class:`~bitvert.pipeline.quantize.QuantConfig`, one set of layer rules): the INT8 baseline is
    on the same footing as every preset it is compared with (a weight-only preset next to an INT8 row
    with 8-bit activations would compare two different things).

    Raises:
        ConfigError: no preset, or presets that quantize differently (study them in separate runs).
    """
    from bitvert.pipeline import baseline_of
    from bitvert.pipeline.presets import bbs_methods

    if not requested:
        raise ConfigError("give at least one preset, e.g. ('conservative', 'moderate')")
    first = requested[0]
    for p in requested[1:]:
        if p.quant != first.quant or p.rules != first.rules:
            what = "activations" if p.quant.act_bits != first.quant.act_bits else (
                "quantization" if p.quant != first.quant else "layer rules")
            raise ConfigError(
                f"presets {first.name!r} ({_describe_quant(first.quant)}) and {p.name!r} "
                f"({_describe_quant(p.quant)}) differ in {what}, so no single INT8 baseline compares with both; "
                "study them in separate runs (e.g. --presets conservative,moderate and "
                "--presets llm-conservative,llm-moderate)")
    int8 = next((p for p in requested if p.method == "none"), None)
    out = [int8 if int8 is not None else int8_baseline(first)]
    for p in requested:
        if p.method == "none":
            continue
        out.append(p)
        if p.method in bbs_methods():
            out += [baseline_of(p, b) for b in baselines]
    seen: set[str] = set()
    unique = []
    for p in out:
        if p.name not in seen:
            seen.add(p.name)
            unique.append(p)
    return unique


class StageTimer(_BaseStageTimer):
    """:class:`bitvert.timing.StageTimer` listing the report's stages in pipeline order
    (``with timer.stage("prune"): ...``)."""

    def __init__(self) -> None:
        super().__init__(order=_STAGES)


def evaluate_model(loaded: Any, module: Any, task: str, reference: Any = None, limit: int | None = None,
                   memo: ReferenceMemo | None = None, variant: str | None = None, progress: bool = False,
                   limit_rule: EvalLimit | None = None) -> dict[str, float]:
    """Evaluate ``module`` (``loaded.model`` or a copy with rewritten weights) on ``task``.

    ``loaded`` supplies the tokenizer / preprocessing; ``reference`` is the FP32 module the fidelity
    metrics compare against (``None``: task metrics only, used for the FP32 model itself); ``memo``
    (when given) memoizes the reference's outputs across calls. ``variant`` names the model in the log
    line and the progress bar (``progress``: a bar over the evaluation batches on stderr).
    ``limit_rule``: the limit as the user gave it; a number above what the task can use is reported
    with a warning (``"auto"`` is not: it is a per-family cap).
    """
    from bitvert.evaluation import batch_progress, evaluate, limit_unused, limit_uses

    label = variant or ("fp32" if reference is None else "the variant")
    logger.info("evaluating %s of %s on %s (%s examples)", label, loaded.name, task,
                "all" if limit is None else limit)
    target = loaded if module is loaded.model else dataclasses.replace(loaded, model=module)
    if memo is None:
        memo = ReferenceMemo(reference, enabled=False)
    with memo, limit_uses() as uses, batch_progress(f"evaluate {label}" if progress else None):
        res = evaluate(target, task, reference=reference, limit=limit, fidelity=reference is not None)
    unused = limit_unused(uses)
    if unused and isinstance(limit_rule, int):
        logger.warning("--limit: %s on %s", unused, task)
    return {k: float(v) for k, v in res.items()}


def output_fidelity(module: Any, reference: Any, batches: list[Any]) -> dict[str, float]:
    """Output SQNR of ``module`` against ``reference`` on ``batches`` (relative L2 error of the primary
    output tensor: logits, embeddings, ...). A stable fidelity measure even when softmax outputs saturate."""
    import torch

    from bitvert.models import output_tensor

    num = den = 0.0
    for batch in batches:
        with torch.inference_mode():
            ref = output_tensor(reference(**batch) if isinstance(batch, Mapping) else reference(batch)).double()
            out = output_tensor(module(**batch) if isinstance(batch, Mapping) else module(batch)).double()
        num += float(((out - ref) ** 2).sum())
        den += float((ref ** 2).sum())
    if den == 0.0:
        return {}
    return {"output_rel_error": math.sqrt(num / den),
            "output_sqnr_db": 10.0 * math.log10(den / num) if num > 0 else 999.0}


@dataclass
class VariantRun:
    """One variant produced by :func:`run_variants`.

    Attributes:
        preset: the resolved preset.
        report: its :class:`~bitvert.pipeline.global_prune.PruneReport` (integer weights per layer).
        metrics: evaluation metrics against the FP32 model (empty without evaluation).
        prune_seconds, calibration_seconds, eval_seconds: wall seconds of its stages.
        outputs: what ``on_variant`` returned (checkpoint paths, verification results...).
    """

    preset: Any
    report: Any
    metrics: dict[str, float]
    prune_seconds: float
    calibration_seconds: float
    eval_seconds: float
    outputs: dict[str, Any] = field(default_factory=dict)


@dataclass
class VariantsRun:
    """Everything :func:`run_variants` produced.

    Attributes:
        task: the evaluation task used; eval_limit: examples per evaluation (``None``: the task's default).
        fp32_metrics: the FP32 model's own metrics (empty without evaluation).
        fp32_eval_seconds: wall seconds of that evaluation.
        variants: by name, in the order of the presets (``int8`` first).
    """

    task: str
    eval_limit: int | None
    fp32_metrics: dict[str, float]
    fp32_eval_seconds: float
    variants: dict[str, VariantRun]


def run_variants(
    loaded: Any,
    presets: Sequence[Any],
    *,
    task: str | None = None,
    eval_limit: EvalLimit | None = "auto",
    calibration_samples: int = DEFAULT_CALIBRATION_SAMPLES,
    seed: int = 0,
    rules: Mapping[str, Any] | None = None,
    evaluate: bool = True,
    fidelity_samples: int = 0,
    on_variant: OnVariant | None = None,
    timer: StageTimer | None = None,
    progress: bool = False,
    memo: ReferenceMemo | None = None,
) -> VariantsRun:
    """Evaluate the FP32 model, then prune, evaluate and hand over every variant of ``presets``.

    Args:
        loaded: a :class:`bitvert.models.LoadedModel` (its ``model`` is the FP32 reference, never modified).
        presets: the variants, ``int8`` first (:func:`variant_presets`).
        task: evaluation task (``None``: the model's default task).
        eval_limit: examples per evaluation (:data:`EvalLimit`; ``None`` = ``"full"``).
        calibration_samples: calibration samples of the 8-bit activations, of the input Hessians and of
            the ``gptq`` solver (variants that need none use none: ``PipelinePreset.needs_calibration``).
        seed: torch / numpy / ``random`` are seeded with ``seed`` before the FP32 evaluation and with
            :func:`variant_seed` before each variant, so a variant's numbers do not depend on which
            other variants ran before it.
        rules: extra regex -> layer-role rules for every variant (``bitvert prune --rule``).
        evaluate: evaluate the models (``False``: prune only, metrics stay empty).
        fidelity_samples: when > 0, also measure :func:`output_fidelity` on that many calibration samples.
        on_variant: ``on_variant(preset, pruned_model, report)`` after each variant's evaluation.
        timer: accumulates the ``prune`` and ``evaluate`` stages (the hook may time its own).
        progress: progress bars on stderr.
        memo: the FP32 model's :class:`ReferenceMemo` kept by the caller across calls (``bitvert sweep``
            reuses one per model, task and limit within a worker); ``None``: a memo of this call only.

    Raises:
        ConfigError: ``presets`` is empty or does not start with the INT8 baseline, or ``memo`` wraps
            another module than ``loaded.model``.
    """
    from tqdm.auto import tqdm

    from bitvert.pipeline import prune_model_

    if not presets or presets[0].method != "none":
        raise ConfigError("run_variants needs the INT8 baseline first; build the list with variant_presets()")
    timer = timer if timer is not None else StageTimer()
    fp32 = loaded.model.eval()
    task = task or loaded.default_task
    limit = resolve_eval_limit(eval_limit, loaded.family)
    logger.info("model %s (%s), task %s, limit %s, %d variants", loaded.name, loaded.family, task, limit,
                len(presets))
    own_memo = memo is None
    if memo is None:
        memo = ReferenceMemo.for_task(fp32, task)
    elif memo.module is not fp32:
        raise ConfigError("run_variants: the memo given wraps another module than loaded.model")
    fp32_metrics: dict[str, float] = {}
    fp32_eval_s = 0.0
    if evaluate:
        t = time.perf_counter()
        with timer.stage("evaluate"):
            seed_everything(seed)
            fp32_metrics = evaluate_model(loaded, fp32, task, None, limit, memo, variant="fp32", progress=progress,
                                          limit_rule=eval_limit)
        fp32_eval_s = time.perf_counter() - t
    fid_batches = list(loaded.calibration_batches(fidelity_samples)) if evaluate and fidelity_samples else []
    runs: dict[str, VariantRun] = {}
    bar = tqdm(presets, desc="variants", unit="variant", disable=not progress)
    for preset in bar:
        bar.set_postfix_str(preset.name)
        seed_everything(variant_seed(seed, preset.name))
        logger.info("pruning variant %s of %s", preset.name, loaded.name)
        with timer.stage("prune"):
            model = copy.deepcopy(fp32)
            calib = loaded.calibration_batches(calibration_samples) if preset.needs_calibration else None
            report = prune_model_(model, preset, calibration=calib, rules=rules, progress=progress)
        metrics: dict[str, float] = {}
        t = time.perf_counter()
        if evaluate:
            with timer.stage("evaluate"):
                metrics = evaluate_model(loaded, model, task, fp32, limit, memo, variant=preset.name,
                                         progress=progress)
                if fid_batches:
                    metrics.update(output_fidelity(model, fp32, fid_batches))
        run = VariantRun(preset=preset, report=report, metrics=metrics, prune_seconds=report.prune_seconds,
                         calibration_seconds=report.calibration_seconds, eval_seconds=time.perf_counter() - t)
        if on_variant is not None:
            run.outputs = dict(on_variant(preset, model, report) or {})
        if report.activation_quantizer is not None:
            report.activation_quantizer.remove()
            report.activation_quantizer = None
        del model
        gc.collect()
        runs[preset.name] = run
    if memo.enabled:
        logger.info("FP32 reference outputs: %d computed, %d reused", memo.misses, memo.hits)
    if own_memo:
        memo.cache.clear()
    return VariantsRun(task=task, eval_limit=limit, fp32_metrics=fp32_metrics, fp32_eval_seconds=fp32_eval_s,
                       variants=runs)
