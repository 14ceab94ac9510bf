"""``bitvert prune``: quantize and globally binary-prune a real model, compare with the baselines.

Writes into ``--out``:

* ``pruned.safetensors`` -- the model pruned with ``--preset`` (integer weights, scales,
  per-group metadata, activation ranges; see :mod:`bitvert.pipeline.checkpoint`);
* ``summary.json`` -- the resolved configuration, ``effective_bits`` and a ``metrics`` object
  keyed by variant (``fp32``, ``int8``, the preset and each baseline), plus per-layer records;
* ``table.txt`` -- the same as a readable table (also printed).
"""

from __future__ import annotations

import copy
import dataclasses
import gc
import json
import logging
import math
import platform
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import click
import torch
from tqdm.auto import tqdm

from bitvert import __version__
from bitvert.errors import ConfigError, MissingDependencyError
from bitvert.jsonutil import json_default
from bitvert.pipeline import BASELINES, baseline_of, get_preset, list_presets, prune_model_, save_pruned
from bitvert.pipeline.presets import PipelinePreset

logger = logging.getLogger(__name__)

__all__ = ["prune_cmd", "load_model", "evaluate", "parse_overrides", "format_variants_table"]


def load_model(name: str) -> Any:
    """``bitvert.models.load_model`` (imported lazily so ``bitvert --help`` stays fast)."""
    try:
        from bitvert.models import load_model as _load
    except ImportError as exc:  # pragma: no cover - only without the models package
        raise MissingDependencyError(f"bitvert.models could not be imported ({exc}); reinstall bitvert") from None
    return _load(name)


def evaluate(loaded: Any, module: Any, task: str, reference: Any = None, limit: int | None = None
             ) -> dict[str, float]:
    """Evaluate ``module`` (a copy of ``loaded.model`` with rewritten weights) with ``bitvert.evaluation``.

    ``loaded`` supplies the tokenizer / preprocessing; ``reference`` is the FP32 module the fidelity
    metrics compare against (``None``: task metrics only, used for the FP32 model itself).
    """
    try:
        from bitvert.evaluation import evaluate as _evaluate
    except ImportError as exc:  # pragma: no cover - only without the evaluation package
        raise MissingDependencyError(
            f"bitvert.evaluation could not be imported ({exc}); reinstall bitvert"
        ) from None
    target = loaded if module is loaded.model else dataclasses.replace(loaded, model=module)
    result = _evaluate(target, task, reference=reference, limit=limit, fidelity=reference is not None)
    return {k: float(v) for k, v in result.items()}


def output_fidelity(module: Any, reference: Any, batches: list[Any]) -> dict[str, float]:
    """Output SQNR of ``module`` against ``reference`` on ``batches`` (relative L2 error of the primary
    output tensor: logits, embeddings, ...). A stable fidelity measure even when softmax outputs saturate."""
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


def parse_overrides(items: tuple[str, ...]) -> dict[str, Any]:
    """``key=value`` / ``quant.act_bits=none`` strings -> a nested override dict (values parsed as JSON)."""
    out: dict[str, Any] = {}
    for item in items:
        if "=" not in item:
            raise ConfigError(f"--set expects key=value (e.g. --set sensitive_fraction=0.3), got {item!r}")
        key, raw = item.split("=", 1)
        text = raw.strip()
        if text.lower() in ("none", "null"):
            value: Any = None
        else:
            try:
                value = json.loads(text)
            except json.JSONDecodeError:
                value = text
        node = out
        parts = key.strip().split(".")
        for p in parts[:-1]:
            node = node.setdefault(p, {})
            if not isinstance(node, dict):
                raise ConfigError(f"--set {item!r} conflicts with an earlier --set of {p!r}")
        node[parts[-1]] = value
    return out


def _merge(preset: PipelinePreset, overrides: dict[str, Any]) -> PipelinePreset:
    if not overrides:
        return preset
    quant = overrides.pop("quant", None)
    kw = dict(overrides)
    if quant is not None:
        kw["quant"] = {**preset.quant.model_dump(), **quant}
    return get_preset(preset, **kw)


def _parse_rules(items: tuple[str, ...]) -> dict[str, str | None]:
    rules: dict[str, str | None] = {}
    for item in items:
        if "=" not in item:
            raise ConfigError(f"--rule expects REGEX=ROLE with ROLE prune, int8 or fp32, got {item!r}")
        pattern, role = item.rsplit("=", 1)
        role = role.strip().lower()
        if role not in ("prune", "int8", "fp32", "none", "skip"):
            raise ConfigError(f"--rule {item!r}: role must be prune, int8 or fp32 (skip), got {role!r}")
        rules[pattern] = None if role in ("none", "skip", "fp32") else role
    return rules


def format_variants_table(summary: dict[str, Any]) -> str:
    """A readable table of every variant's effective bits and metrics."""
    metrics: dict[str, dict[str, float]] = summary["metrics"]
    bits: dict[str, float] = summary["effective_bits_by_variant"]
    keys: list[str] = []
    for m in metrics.values():
        keys += [k for k in m if k not in keys]
    head = f"{'variant':<26} {'bits':>6} {'vs INT8':>8} " + " ".join(f"{k:>16}" for k in keys)
    lines = [f"model {summary['model']['name']} | task {summary['task']} | preset {summary['preset']['name']}",
             head, "-" * len(head)]
    for variant, m in metrics.items():
        b = bits.get(variant)
        bs = "32" if variant == "fp32" else (f"{b:.3f}" if b is not None else "-")
        ratio = f"{8 / b:.2f}x" if b and variant != "fp32" else "-"
        vals = " ".join(f"{m[k]:>16.5g}" if isinstance(m.get(k), (int, float)) else f"{'-':>16}" for k in keys)
        lines.append(f"{variant:<26} {bs:>6} {ratio:>8} {vals}")
    return "\n".join(lines)


def run_prune(
    model_name: str,
    preset_name: str,
    out_dir: Path,
    baselines: bool = True,
    task: str | None = None,
    limit: int | None = None,
    calibration_samples: int = 128,
    overrides: tuple[str, ...] = (),
    rules: tuple[str, ...] = (),
    evaluate_variants: bool = True,
    progress: bool = False,
    fidelity_samples: int = 16,
) -> dict[str, Any]:
    """The work behind ``bitvert prune``; returns the summary it writes."""
    preset = _merge(get_preset(preset_name), parse_overrides(overrides))  # fail fast, before loading
    if preset.method in ("bitflip", "rtn"):
        baselines = False  # a baseline has no baselines of its own
    variants: list[PipelinePreset] = []
    if preset.name != "int8":
        variants.append(get_preset("int8", quant=preset.quant.model_dump(), rules=preset.rules))
    variants.append(preset)
    if baselines and preset.method not in ("none",):
        variants += [baseline_of(preset, b) for b in BASELINES]
    layer_rules = _parse_rules(rules)
    out_dir.mkdir(parents=True, exist_ok=True)

    t0 = time.perf_counter()
    loaded = load_model(model_name)
    load_s = time.perf_counter() - t0
    fp32 = loaded.model.eval()
    task = task or loaded.default_task
    metrics: dict[str, dict[str, float]] = {}
    bits: dict[str, float] = {}
    sqnr: dict[str, float | None] = {}
    timings: dict[str, float] = {"load_seconds": load_s}
    if evaluate_variants:
        t = time.perf_counter()
        metrics["fp32"] = evaluate(loaded, fp32, task, reference=None, limit=limit)
        timings["eval_fp32_seconds"] = time.perf_counter() - t
    fid_batches = list(loaded.calibration_batches(fidelity_samples)) if evaluate_variants else []
    main_report = None
    bar = tqdm(variants, desc="variants", unit="variant", disable=not progress)
    for variant in bar:
        bar.set_postfix_str(variant.name)
        model = copy.deepcopy(fp32)
        calib = loaded.calibration_batches(calibration_samples) if variant.quant.act_bits is not None else None
        report = prune_model_(model, variant, calibration=calib, rules=layer_rules, progress=progress)
        bits[variant.name] = report.effective_bits
        sqnr[variant.name] = report.to_dict()["weight_sqnr_db"]
        timings[f"prune_{variant.name}_seconds"] = report.prune_seconds
        timings[f"calibrate_{variant.name}_seconds"] = report.calibration_seconds
        if evaluate_variants:
            t = time.perf_counter()
            metrics[variant.name] = evaluate(loaded, model, task, reference=fp32, limit=limit)
            metrics[variant.name].update(output_fidelity(model, fp32, fid_batches))
            timings[f"eval_{variant.name}_seconds"] = time.perf_counter() - t
        if variant.name == preset.name:
            main_report = report
            ckpt = save_pruned(out_dir / "pruned.safetensors", model, report,
                               {"name": loaded.name, "family": loaded.family, "default_task": loaded.default_task})
        del model
        gc.collect()
    assert main_report is not None
    summary: dict[str, Any] = {
        "bitvert_version": __version__,
        "python": platform.python_version(),
        "model": {"name": loaded.name, "family": loaded.family, "requested": model_name},
        "task": task,
        "limit": limit,
        "calibration_samples": calibration_samples,
        "fidelity_samples": fidelity_samples,
        "preset": preset.to_dict(),
        "layer_rules": layer_rules,
        "variants": [v.name for v in variants],
        "effective_bits": main_report.effective_bits,
        "compression_vs_int8": main_report.compression_vs_int8,
        "effective_bits_by_variant": {"fp32": 32.0, **bits},
        "weight_sqnr_db_by_variant": sqnr,
        "metrics": metrics,
        "weight_int_range": main_report.to_dict()["weight_int_range"],
        "checkpoint": {"file": ckpt.name, "size_bytes": ckpt.stat().st_size},
        "timings": timings,
        "report": main_report.to_dict(),
    }
    (out_dir / "summary.json").write_text(json.dumps(summary, indent=2, allow_nan=False, default=json_default))
    table = (format_variants_table(summary) if evaluate_variants else
             f"model {loaded.name} | preset {preset.name} | effective bits {main_report.effective_bits:.3f}")
    (out_dir / "table.txt").write_text(table + "\n\n" + main_report.table() + "\n")
    summary["_table"] = table
    return summary


@click.command("prune")
@click.option("--model", "model_name", required=True, help="Model short name or path (see `bitvert models`).")
@click.option("--preset", "preset_name", default="moderate", show_default=True,
              help="Pipeline preset: " + ", ".join(list_presets()) + ".")
@click.option("-o", "--out", "out_dir", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Output folder (created if missing).")
@click.option("--baselines/--no-baselines", default=True, show_default=True,
              help="Also run the BitWave bit-flip and round-to-nearest baselines at the same beta and N.")
@click.option("--task", default=None, help="Evaluation task (default: the model's own).")
@click.option("--limit", type=click.IntRange(min=1), default=None, help="Evaluate on at most this many samples.")
@click.option("--calibration-samples", type=click.IntRange(min=1), default=128, show_default=True,
              help="Samples used to calibrate 8-bit activations.")
@click.option("--fidelity-samples", type=click.IntRange(min=1), default=16, show_default=True,
              help="Calibration-set samples on which output_sqnr_db / output_rel_error vs FP32 are measured.")
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE",
              help="Override a preset field, e.g. --set sensitive_fraction=0.3 --set quant.act_bits=none.")
@click.option("--rule", "rules", multiple=True, metavar="REGEX=ROLE",
              help="Per-module rule (full-match regex over module names): prune, int8 or fp32.")
@click.option("--no-eval", is_flag=True, help="Only prune and write the checkpoint; skip every evaluation.")
def prune_cmd(model_name: str, preset_name: str, out_dir: Path, baselines: bool, task: str | None,
              limit: int | None, calibration_samples: int, fidelity_samples: int, overrides: tuple[str, ...],
              rules: tuple[str, ...], no_eval: bool) -> None:
    """Quantize to INT8 and globally binary-prune a model (BBS Algorithm 2); compare with the baselines."""
    summary = run_prune(model_name, preset_name, out_dir, baselines=baselines, task=task, limit=limit,
                        calibration_samples=calibration_samples, overrides=overrides, rules=rules,
                        evaluate_variants=not no_eval, progress=sys.stderr.isatty(),
                        fidelity_samples=fidelity_samples)
    click.echo(summary["_table"])
    click.echo(f"wrote {out_dir / 'pruned.safetensors'}, {out_dir / 'summary.json'}, {out_dir / 'table.txt'}")
