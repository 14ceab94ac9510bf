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
7. ``write`` -- ``results.json`` (every number), ``timings.json`` (the stage times), plots, ``report.md``
   and ``report.html``.

Stages 2-4 are the variant runner shared with ``bitvert prune``
(:func:`bitvert.report.variants.run_variants`, same defaults and seeding, so both commands print the
same numbers for the same preset); stage 4 is its ``on_variant`` hook
(:func:`bitvert.report.verify.encode_and_verify`).

Everything is written into a hidden sibling folder ``.<out>.partial-<pid>`` which is renamed to
``out`` only when complete (:mod:`bitvert.report.publish`); an interrupted or failed run
removes it, so a half-written report is never presented as complete.

Determinism: every stage that may draw random numbers is preceded by seeding torch, numpy and
``random`` with ``seed`` (a variant's stages with :func:`bitvert.report.variants.variant_seed`), so a
variant's numbers do not depend on which other variants ran before it; the same command twice gives
identical numbers (timings aside).
"""

from __future__ import annotations

import gc
import json
import logging
import math
import os
import platform
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np

from bitvert import __version__
from bitvert.errors import ConfigError, InputError, MissingDependencyError
from bitvert.jsonutil import json_default
from bitvert.report.noise import noise_bands
from bitvert.report.publish import check_out_dir, partial_folder, publish
from bitvert.report.results import RESULTS_SCHEMA, StudyConfig, StudyResult, VariantResult, finite
from bitvert.report.simulation import attach_accelerators, simulate_study
from bitvert.report.variants import StageTimer, run_variants, seed_everything
from bitvert.report.verify import encode_and_verify

__all__ = ["measure_study", "run_study"]

logger = logging.getLogger(__name__)

_FIDELITY_KEYS = ("embedding_cosine", "top1_agreement", "probe_agreement", "prediction_agreement",
                  "perplexity_ratio")


def _require(module: str, hint: str) -> None:
    import importlib

    try:
        importlib.import_module(module)
    except ImportError as exc:
        raise MissingDependencyError(f"`bitvert run` needs {module} ({exc}); install it with: {hint}") from None


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
    check_out_dir(out)
    _require("matplotlib", "pip install matplotlib")
    from bitvert.evaluation import resolve_task
    from bitvert.models import check_calibration_path

    check_calibration_path(config.model, config.calibration_path)
    if config.task is not None:
        resolve_task(config.task)  # name and data path; the model family is checked once it is loaded
    from bitvert.hardware.targets import resolve_hardware

    resolve_hardware(list(config.accelerators))  # fail fast on an unknown accelerator
    with partial_folder(out) as tmp:
        result = _run(config, tmp, progress, render=True)
        publish(tmp, out, {
            "status": "complete", "schema": RESULTS_SCHEMA, "bitvert_version": __version__,
            "model": result.model["name"], "variants": list(result.variants),
            "files": sorted(str(p.relative_to(tmp)) for p in tmp.rglob("*") if p.is_file()),
        })
    result.out_dir = out
    return result


def measure_study(config: StudyConfig, work_dir: str | os.PathLike[str], *, loaded: Any = None,
                  memo: Any = None, progress: bool = False) -> StudyResult:
    """The stages of :func:`run_study` without the report: everything measured, nothing rendered.

    ``bitvert sweep`` runs each of its points through this function, so a point's numbers are those of
    ``bitvert run`` with the same configuration. ``work_dir`` (an existing empty folder) receives
    ``encoded/``, ``simulation/`` and ``results.json``; the caller removes it.

    Args:
        config: what to study.
        work_dir: scratch folder of the encoded files and the simulation.
        loaded: the :class:`~bitvert.models.LoadedModel` of ``config.model`` when the caller already
            loaded it (it is not modified); ``None``: loaded here.
        memo: a :class:`~bitvert.report.memo.ReferenceMemo` of ``loaded.model`` kept across calls with the
            same task and limit (the FP32 reference outputs are then computed once).
        progress: show progress bars (stderr).
    """
    if not isinstance(config, StudyConfig):
        raise InputError(f"config must be a StudyConfig, got {type(config).__name__}")
    return _run(config, Path(work_dir), progress, render=False, loaded=loaded, memo=memo)


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


def _task_metrics(task: str, present: list[str]) -> list[str]:
    """The task's own metrics (not fidelity, not counts) among ``present``."""
    from bitvert.evaluation import task_info

    try:
        keys = list(task_info(task.partition(":")[0]).metrics)
    except ConfigError:
        keys = []
    return [k for k in keys if k in present and k not in _FIDELITY_KEYS and k not in ("logit_kl", "token_kl")]


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
    from bitvert.threads import thread_counts

    threads = thread_counts()
    return {"versions": versions, "platform": platform.platform(), "machine": platform.machine(),
            "cpu_capability": torch.backends.cpu.get_cpu_capability(),
            "torch_threads": threads["torch"], "numba_threads": threads["numba"], "seed": seed}


def _run(config: StudyConfig, tmp: Path, progress: bool, render: bool, loaded: Any = None,
         memo: Any = None) -> StudyResult:
    from bitvert.models import example_input, load_model
    from bitvert.report.render import write_report

    timer = StageTimer()
    t_start, c_start = time.perf_counter(), time.process_time()
    presets = config.variant_presets()
    seed_everything(config.seed)
    with timer.stage("load"):
        if loaded is None:
            loaded = load_model(config.model, calibration_path=config.calibration_path)
    fp32 = loaded.model.eval()
    example_input(loaded, config.simulate_batch, config.simulate_seq_len)  # a bad --seq-len fails before any work
    model_info = {"name": loaded.name, "family": loaded.family, "default_task": loaded.default_task}
    encoded_dir = tmp / "encoded"
    encoded_dir.mkdir()
    scratch = tmp / ".scratch"
    scratch.mkdir()
    ckpt_dir: Path | None = None
    if config.keep_checkpoints:
        ckpt_dir = tmp / "checkpoints"
        ckpt_dir.mkdir()
    probe_batch = next(iter(loaded.calibration_batches(1)))  # input of the encoded-model check

    def encode(preset: Any, model: Any, report: Any) -> dict[str, Any]:
        # the checkpoint header records the report's wall times; the study keeps its own timings
        # (results.json), so they are zeroed here to keep the files -- and their sizes -- reproducible
        report.prune_seconds = 0.0
        report.calibration_seconds = 0.0
        logger.info("encoding and verifying variant %s of %s", preset.name, loaded.name)
        with timer.stage("encode"):
            return encode_and_verify(model, report, model_info, scratch, encoded_dir, preset.name, ckpt_dir,
                                     fp32, probe_batch)

    runs = run_variants(loaded, presets, task=config.task, eval_limit=config.eval_limit,
                        calibration_samples=config.calibration_samples, seed=config.seed, on_variant=encode,
                        timer=timer, progress=progress, memo=memo)
    shutil.rmtree(scratch)
    task = runs.task
    headline, fidelity = _headline(task, runs.fp32_metrics)
    variants: dict[str, VariantResult] = {
        "fp32": VariantResult(name="fp32", method="fp32", description="the original floating-point model",
                              metrics=runs.fp32_metrics, effective_bits=32.0, compression_vs_int8=0.25),
    }
    reports: dict[str, Any] = {}
    for name, run in runs.variants.items():
        preset, report, enc = run.preset, run.report, run.outputs
        sq = report.weight_sqnr_db
        variants[name] = VariantResult(
            name=name, method=preset.method, description=preset.description, metrics=run.metrics,
            effective_bits=report.effective_bits, compression_vs_int8=report.compression_vs_int8,
            weight_sqnr_db=sq if math.isfinite(sq) else None,
            sensitive_channel_fraction=report.sensitive_channel_fraction,
            encoded_file=enc["encoded_file"], file_bytes=enc["file_bytes"], weight_bytes=enc["weight_bytes"],
            verified=enc["verified"], output_max_abs_diff=enc["output_max_abs_diff"], preset=preset.to_dict(),
        )
        reports[name] = report
    runs_limit = runs.eval_limit
    runs_fp32_keys = list(runs.fp32_metrics)
    del runs
    int8 = variants["int8"]
    for v in variants.values():
        if v.file_bytes:
            v.file_ratio_vs_int8 = int8.file_bytes / v.file_bytes if int8.file_bytes else None
            v.weight_ratio_vs_int8 = int8.weight_bytes / v.weight_bytes if int8.weight_bytes and v.weight_bytes \
                else None

    with timer.stage("analyze"):
        layers = _layer_table(reports, presets[1].group_size if len(presets) > 1 else 32)

    simulation: dict[str, Any] = {}
    workload_check: dict[str, Any] = {}
    if config.simulate:
        with timer.stage("simulate"):
            seed_everything(config.seed)
            simulation, workload_check = simulate_study(loaded, fp32, config, reports["int8"],
                                                        tmp / "simulation", encoded_dir, progress=progress)
        attach_accelerators(presets, variants, simulation)
    del reports
    gc.collect()

    task_metrics = _task_metrics(task, runs_fp32_keys)
    result = StudyResult(
        config=config, out_dir=tmp,
        model={**model_info, "requested": config.model, "n_parameters": loaded.n_parameters,
               "n_weights_quantized": int(sum(r["n_weights"] for r in layers)),
               "description": str(loaded.extra.get("description", ""))},
        task=task, eval_limit=runs_limit, headline_metric=headline, fidelity_metric=fidelity, variants=variants,
        layers=layers, simulation=simulation, workload_check=workload_check, timings_s={},
        environment=_environment(config.seed),
        noise=noise_bands(loaded.name, task_metrics, {n: v.metrics for n, v in variants.items()}),
    )

    def stamp() -> None:
        result.timings_s = {**timer.ordered(), "total": round(time.perf_counter() - t_start, 3)}
        result.cpu_seconds = {**timer.ordered_cpu(), "total": round(time.process_time() - c_start, 3)}

    if render:
        with timer.stage("write"):
            stamp()
            write_report(result, tmp)
    stamp()
    for name, doc in (("results.json", result.numbers()), ("timings.json", result.timings())):
        (tmp / name).write_text(json.dumps(finite(doc), indent=2, allow_nan=False, default=json_default) + "\n",
                                encoding="utf-8")
    return result
