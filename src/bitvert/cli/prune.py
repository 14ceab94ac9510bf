"""``bitvert prune``: quantize and globally binary-prune a real model, compare with the baselines.

Writes into ``--out``:

* ``pruned.safetensors`` -- the model pruned with ``--preset`` (integer weights, scales,
  per-group metadata, activation ranges; see :mod:`bitvert.pipeline.checkpoint`);
* ``summary.json`` -- the resolved configuration, ``effective_bits`` and a ``metrics`` object
  keyed by variant (``fp32``, ``int8``, the preset and each baseline), plus per-layer records;
  ``variant_descriptions`` says what each variant is (a weight-only preset's ``int8`` row is weight-only);
* ``table.txt`` -- the same as a readable table (also printed);
* ``timings.json`` -- wall seconds of each step (kept apart, so the other files are the same bytes
  on every run with the same inputs).

The variants are run by :func:`bitvert.report.variants.run_variants`, the runner of ``bitvert run``,
with the same defaults (calibration samples, ``--limit auto``) and seeding.
"""

from __future__ import annotations

import json
import logging
import platform
import shutil
import time
from pathlib import Path
from typing import Any

import click

from bitvert import __version__
from bitvert.cli._common import check_output_folder, show_progress
from bitvert.errors import BitvertError, ConfigError, InputError, MissingDependencyError
from bitvert.jsonutil import json_default
from bitvert.pipeline import BASELINES, get_preset, list_presets, save_pruned
from bitvert.pipeline.presets import PipelinePreset
from bitvert.report.variants import (
    DEFAULT_CALIBRATION_SAMPLES,
    EvalLimit,
    parse_eval_limit,
    run_variants,
    variant_presets,
)

logger = logging.getLogger(__name__)

__all__ = ["prune_cmd", "load_model", "parse_overrides", "format_variants_table", "run_prune", "run_stream_prune",
           "stream_wanted"]


def load_model(name: str) -> Any:
    """``bitvert.models.load_model`` (imported lazily so ``bitvert --help`` stays fast)."""
    try:
        from bitvert.models import load_model as _load
    except ImportError as exc:  # pragma: no cover - only without the models package
        raise MissingDependencyError(f"bitvert.models could not be imported ({exc}); reinstall bitvert") from None
    return _load(name)


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
    limit: EvalLimit | None = "auto",
    calibration_samples: int = DEFAULT_CALIBRATION_SAMPLES,
    overrides: tuple[str, ...] = (),
    rules: tuple[str, ...] = (),
    evaluate_variants: bool = True,
    progress: bool = False,
    fidelity_samples: int = 16,
    seed: int = 0,
) -> dict[str, Any]:
    """The work behind ``bitvert prune``; returns the summary it writes.

    The variants (``int8`` on the preset's quantization footing, the preset, its baselines) are run by
    :func:`bitvert.report.variants.run_variants` with the same defaults and seeding as ``bitvert run``,
    so both commands report the same numbers for the same preset.
    """
    preset = _merge(get_preset(preset_name), parse_overrides(overrides))  # fail fast, before loading
    variants = variant_presets([preset], BASELINES if baselines else ())
    layer_rules = _parse_rules(rules)
    limit = parse_eval_limit("full" if limit is None else limit, "--limit")
    out_dir = check_output_folder(out_dir, "--out")

    t0 = time.perf_counter()
    loaded = load_model(model_name)
    load_s = time.perf_counter() - t0
    model_info = {"name": loaded.name, "family": loaded.family, "default_task": loaded.default_task}
    saved: dict[str, Path] = {}
    created = not out_dir.exists()

    def save(variant: PipelinePreset, model: Any, report: Any) -> None:
        if variant.name == preset.name:
            # wall times go to timings.json (the run kept them); zeroed here so that the checkpoint header
            # and summary.json are the same bytes on every run
            report.prune_seconds = 0.0
            report.calibration_seconds = 0.0
            out_dir.mkdir(parents=True, exist_ok=True)  # after every input was checked and the model loaded
            saved["checkpoint"] = save_pruned(out_dir / "pruned.safetensors", model, report, model_info)

    try:
        runs = run_variants(loaded, variants, task=task, eval_limit=limit, calibration_samples=calibration_samples,
                            seed=seed, rules=layer_rules, evaluate=evaluate_variants,
                            fidelity_samples=fidelity_samples if evaluate_variants else 0, on_variant=save,
                            progress=progress)
        return _write_summary(loaded, model_name, preset, runs, saved["checkpoint"], out_dir, load_s, limit,
                              calibration_samples, fidelity_samples, seed, layer_rules, evaluate_variants)
    except BaseException:
        if created and out_dir.exists():  # leave no half-written folder behind
            shutil.rmtree(out_dir, ignore_errors=True)
            if out_dir.exists():
                logger.warning("bitvert prune did not finish; could NOT remove %s: delete it by hand", out_dir)
            else:
                logger.warning("bitvert prune did not finish; removed the incomplete %s", out_dir)
        raise


def _write_summary(loaded: Any, model_name: str, preset: PipelinePreset, runs: Any, ckpt: Path, out_dir: Path,
                   load_s: float, limit: EvalLimit, calibration_samples: int, fidelity_samples: int, seed: int,
                   layer_rules: dict[str, str | None], evaluate_variants: bool) -> dict[str, Any]:
    main_report = runs.variants[preset.name].report
    done = list(runs.variants.items())
    metrics: dict[str, dict[str, float]] = {}
    timings: dict[str, float] = {"load_seconds": load_s}
    if evaluate_variants:
        metrics["fp32"] = runs.fp32_metrics
        timings["eval_fp32_seconds"] = runs.fp32_eval_seconds
    for name, run in runs.variants.items():
        timings[f"prune_{name}_seconds"] = run.prune_seconds
        timings[f"calibrate_{name}_seconds"] = run.calibration_seconds
        if evaluate_variants:
            metrics[name] = run.metrics
            timings[f"eval_{name}_seconds"] = run.eval_seconds
    summary: dict[str, Any] = {
        "bitvert_version": __version__,
        "python": platform.python_version(),
        "model": {"name": loaded.name, "family": loaded.family, "requested": model_name},
        "task": runs.task,
        "limit": runs.eval_limit,
        "limit_rule": limit,
        "calibration_samples": calibration_samples,
        "fidelity_samples": fidelity_samples,
        "seed": seed,
        "preset": preset.to_dict(),
        "layer_rules": layer_rules,
        "variants": list(runs.variants),
        "variant_descriptions": {name: run.preset.description for name, run in runs.variants.items()},
        "effective_bits": main_report.effective_bits,
        "compression_vs_int8": main_report.compression_vs_int8,
        "effective_bits_by_variant": {"fp32": 32.0, **{n: r.report.effective_bits for n, r in done}},
        "weight_sqnr_db_by_variant": {n: r.report.to_dict()["weight_sqnr_db"] for n, r in done},
        "metrics": metrics,
        "weight_int_range": main_report.to_dict()["weight_int_range"],
        "checkpoint": {"file": ckpt.name, "size_bytes": ckpt.stat().st_size},
        "report": main_report.to_dict(),
    }
    (out_dir / "summary.json").write_text(json.dumps(summary, indent=2, allow_nan=False, default=json_default))
    (out_dir / "timings.json").write_text(json.dumps({"timings_s": timings}, indent=2, default=json_default) + "\n")
    table = (format_variants_table(summary) if evaluate_variants else
             f"model {loaded.name} | preset {preset.name} | effective bits {main_report.effective_bits:.3f}")
    (out_dir / "table.txt").write_text(table + "\n\n" + main_report.table() + "\n")
    summary["_table"] = table
    return summary


def stream_wanted(model_name: str, stream: bool | None, memory_budget: str) -> bool:
    """Whether ``bitvert prune`` streams: ``--stream`` / ``--no-stream``, else when ``model_name`` is a HuggingFace
    safetensors folder whose float32 size exceeds ``--memory-budget``."""
    from bitvert.codec.stream import HFCheckpoint, parse_size

    budget = parse_size(memory_budget)  # checked even when not needed, so a typo fails at once
    if stream is not None:
        return stream
    folder = Path(model_name)
    if not folder.is_dir() or not (folder / "config.json").is_file():
        return False
    try:
        size = HFCheckpoint(folder).fp32_bytes
    except BitvertError:
        return False  # not a safetensors folder: the in-memory loader reports what is wrong
    if size > budget:
        logger.info("%s needs %.1f GB in float32, more than --memory-budget %s: streaming", folder, size / 1e9,
                    memory_budget)
        return True
    return False


def run_stream_prune(model_dir: Path, preset_name: str, out_dir: Path, overrides: tuple[str, ...] = (),
                     rules: tuple[str, ...] = (), shard_size: str = "256MiB", progress: bool = False) -> dict[str, Any]:
    """The work behind ``bitvert prune --stream``: :func:`bitvert.codec.stream.stream_prune` into a hidden work
    folder next to ``out_dir`` (kept when interrupted, so a rerun resumes from its finished shards), published
    to ``out_dir`` with ``summary.json`` and ``status.json`` only when complete. Returns the summary."""
    from bitvert.codec.stream import INDEX_NAME, parse_size, stream_prune
    from bitvert.report.publish import check_out_dir, publish

    preset = _merge(get_preset(preset_name), parse_overrides(overrides))
    layer_rules = _parse_rules(rules)
    shard_bytes = parse_size(shard_size)
    if not model_dir.is_dir():
        raise InputError(f"--stream needs a HuggingFace model folder (config.json + *.safetensors), got "
                         f"{str(model_dir)!r}")
    check_out_dir(out_dir)
    work = out_dir.parent / f".{out_dir.name}.partial-stream"
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    if (work / INDEX_NAME).is_file():  # an earlier run finished writing but was stopped before publishing
        logger.warning("%s holds a finished but unpublished run; it is redone", work)
        shutil.rmtree(work)
    result = stream_prune(model_dir, work, preset, rules=layer_rules, shard_size_bytes=shard_bytes,
                          model_info={"name": model_dir.name, "family": "causal-lm", "requested": str(model_dir)},
                          progress=progress)
    summary: dict[str, Any] = {
        "bitvert_version": __version__,
        "python": platform.python_version(),
        "model": {"name": model_dir.name, "family": "causal-lm", "requested": str(model_dir)},
        "mode": "stream",
        "preset": preset.to_dict(),
        "layer_rules": layer_rules,
        "effective_bits": result.report.effective_bits,
        "compression_vs_int8": result.report.compression_vs_int8,
        "encoded_bits_per_weight": result.bits_per_weight,
        "n_weights_quantized": result.n_weights_quantized,
        "n_tensors_copied": result.n_tensors_copied,
        "output_bytes": result.output_bytes,
        "weight_int_range": result.report.to_dict()["weight_int_range"],
        "resumed_shards": result.resumed_shards,
        "timings": {"stream_seconds": result.seconds},
        "report": result.report.to_dict(),
    }
    (work / "summary.json").write_text(json.dumps(summary, indent=2, allow_nan=False, default=json_default))
    (work / "table.txt").write_text(result.report.table() + "\n")
    publish(work, out_dir, {"status": "complete", "command": "prune --stream", "index": result.index.name})
    summary["_table"] = (f"model {model_dir.name} | preset {preset.name} | streamed | effective bits "
                         f"{result.report.effective_bits:.3f} | encoded {result.bits_per_weight:.3f} bits/weight | "
                         f"{result.output_bytes} bytes in {result.seconds:.1f} s")
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
@click.option("--limit", default="auto", show_default=True,
              help="Examples per evaluation: a number, 'auto' (by model family, as `bitvert run`) or 'full'.")
@click.option("--calibration-samples", type=click.IntRange(min=1), default=DEFAULT_CALIBRATION_SAMPLES,
              show_default=True, help="Samples used to calibrate 8-bit activations (as `bitvert run`).")
@click.option("--seed", type=click.IntRange(min=0), default=0, show_default=True,
              help="Seed of every random choice (as `bitvert run`).")
@click.option("--fidelity-samples", type=click.IntRange(min=1), default=16, show_default=True,
              help="Calibration-set samples on which output_sqnr_db / output_rel_error vs FP32 are measured.")
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE",
              help="Override a preset field, e.g. --set sensitive_fraction=0.3 --set quant.act_bits=none.")
@click.option("--rule", "rules", multiple=True, metavar="REGEX=ROLE",
              help="Per-module rule (full-match regex over module names): prune, int8 or fp32.")
@click.option("--no-eval", is_flag=True, help="Only prune and write the checkpoint; skip every evaluation.")
@click.option("--stream/--no-stream", "stream", default=None,
              help="Prune + encode a HuggingFace safetensors folder tensor by tensor into sharded "
                   "*.bbs.safetensors (bounded memory, resumable; no evaluation). Default: stream when the "
                   "model's float32 size exceeds --memory-budget.")
@click.option("--memory-budget", default="8GB", show_default=True,
              help="Float32 model size above which a HuggingFace folder is streamed (e.g. 8GB, 500MiB).")
@click.option("--shard-size", default="256MiB", show_default=True, help="Target size of a streamed output shard.")
def prune_cmd(model_name: str, preset_name: str, out_dir: Path, baselines: bool, task: str | None,
              limit: str, calibration_samples: int, seed: int, fidelity_samples: int, overrides: tuple[str, ...],
              rules: tuple[str, ...], no_eval: bool, stream: bool | None, memory_budget: str, shard_size: str) -> None:
    """Quantize to INT8 and globally binary-prune a model (BBS Algorithm 2); compare with the baselines."""
    if stream_wanted(model_name, stream, memory_budget):
        summary = run_stream_prune(Path(model_name), preset_name, out_dir, overrides=overrides, rules=rules,
                                   shard_size=shard_size, progress=show_progress())
        click.echo(summary["_table"])
        click.echo(f"wrote {out_dir} (sharded BBS model: {summary['report']['n_weights_quantized']} quantized weights; "
                   "read it with `bitvert inspect` / `bitvert decode`)")
        return
    summary = run_prune(model_name, preset_name, out_dir, baselines=baselines, task=task,
                        limit=parse_eval_limit(limit, "--limit"), seed=seed,
                        calibration_samples=calibration_samples, overrides=overrides, rules=rules,
                        evaluate_variants=not no_eval, progress=show_progress(),
                        fidelity_samples=fidelity_samples)
    click.echo(summary["_table"])
    click.echo(f"wrote {out_dir / 'pruned.safetensors'}, {out_dir / 'summary.json'}, {out_dir / 'table.txt'}, "
               f"{out_dir / 'timings.json'}")
