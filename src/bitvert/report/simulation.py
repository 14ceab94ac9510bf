"""The ``simulate`` stage of ``bitvert run``: every variant on the hardware that runs it.

Each variant's workload is built from the variant's own encoded file, written by the encode stage
(``<report>/encoded/<variant>.bbs.safetensors``): the geometry (shapes, activations) comes from the
FP32 model imported with forward hooks on its example input
(:func:`bitvert.models.example.example_input`: ``simulate_batch`` x ``simulate_seq_len`` tokens of
real text, or real images at native resolution), the integers, stored columns and
sensitive channels from the file (:class:`bitvert.hardware.variants.FileVariants`). BitVert runs
every BBS variant, BitWave every ``bitwave-*`` variant, the dense designs ``int8``
(:func:`study_targets`); each variant's row gets its own accelerator's speedup and energy
(:func:`attach_accelerators`). Layers a variant left in FP32 are not simulated (listed in the
workload check).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["simulate_study", "model_geometry", "attach_accelerators", "study_targets", "ENCODED_SUFFIX"]

logger = logging.getLogger(__name__)

ENCODED_SUFFIX = ".bbs.safetensors"


def study_targets(accelerators: Sequence[str], variants: Sequence[str] | Mapping[str, str]) -> list[Any]:
    """The simulation targets of a study: each requested hardware on every variant it is built for.

    BitVert hardware runs every BBS variant (label ``bitvert-<variant>``), BitWave hardware every
    bit-flip variant (label ``<variant>``, e.g. ``bitwave-moderate``), a dense design ``int8`` (its
    own name). A named target such as ``bitvert-moderate`` selects its hardware, and so does a bare
    hardware preset or YAML file (``bitvert``; :func:`~bitvert.hardware.targets.resolve_hardware`).

    ``variants`` are the variant names, or a mapping of name -> preset method for variants whose method
    is not their named preset's (a study with ``preset_overrides``).
    """
    from bitvert.hardware.targets import DENSE_PRESET, native, native_method, resolve_hardware, target_for

    methods = dict(variants) if isinstance(variants, Mapping) else {}

    def runs(design: str, v: str) -> bool:
        return native_method(design, methods[v]) if v in methods else native(design, v)

    targets = []
    for cfg in resolve_hardware(list(accelerators)):
        if cfg.design in ("bitvert", "bitwave"):
            targets += [target_for(cfg, v, method=methods.get(v)) for v in variants if runs(cfg.design, v)]
        elif DENSE_PRESET in variants:
            targets.append(target_for(cfg))
    return targets


def model_geometry(loaded: Any, batch_size: int = 1, seq_len_tokens: int | None = None, name: str | None = None,
                   module: Any = None, include_matmuls: bool = False) -> tuple[Any, Any]:
    """The workload geometry of a model on its example input; return (workload, example input).

    The input is :func:`bitvert.models.example.example_input` (``seq_len_tokens`` tokens of real text
    per sequence, default 128, or real images at the model's native resolution); the workload records
    batch, sequence length and ``notes["example_input"]``.

    Args:
        loaded: a :class:`~bitvert.models.LoadedModel`.
        batch_size: sequences / images (>= 1).
        seq_len_tokens: tokens per sequence (text models only).
        name: workload name (default: the model's name with ``/`` replaced).
        module: the module whose layers are imported (default ``loaded.model``).
        include_matmuls: also record the attention matmuls.
    """
    from bitvert.hardware.import_torch import import_workload
    from bitvert.models.example import example_input

    example = example_input(loaded, batch_size, seq_len_tokens)
    if example.padded_tokens:
        logger.warning("simulating %s on %s", loaded.name, example.sentence())
    else:
        logger.info("simulating %s on %s", loaded.name, example.sentence())
    geometry = import_workload(loaded.model if module is None else module, example.batch,
                               name=name or loaded.name.replace("/", "_"), seq_len=example.seq_len_tokens,
                               include_matmuls=include_matmuls)
    geometry.notes["example_input"] = example.describe()
    return geometry, example


def simulate_study(loaded: Any, fp32: Any, config: Any, int8_report: Any, sim_dir: Path,
                   encoded_dir: Path | None = None, progress: bool = False) -> tuple[dict[str, Any], dict[str, Any]]:
    """Simulate the study's variants from their encoded files; write ``sim_dir``; return (summary, check).

    The summary is ``summary.json``'s document plus ``example_input`` (batch size, tokens per sequence or
    image resolution, pad tokens, data source and a sentence saying so).

    Args:
        loaded: the loaded model (its example input is simulated).
        fp32: the FP32 model (geometry).
        config: the :class:`~bitvert.report.study.StudyConfig`.
        int8_report: the INT8 variant's pipeline report (the check compares the simulated INT8
            integers with it).
        sim_dir: output folder of ``layers.csv`` / ``summary.json``.
        encoded_dir: folder of the variants' ``*.bbs.safetensors`` (default ``sim_dir``'s sibling
            ``encoded``).
        progress: progress bars of the simulator (stderr).
    """
    from bitvert.hardware.simulate import simulate
    from bitvert.hardware.targets import DENSE_PRESET
    from bitvert.hardware.variants import FileVariants

    encoded_dir = Path(encoded_dir) if encoded_dir is not None else Path(sim_dir).parent / "encoded"
    files = {p.name[: -len(ENCODED_SUFFIX)]: p for p in sorted(encoded_dir.glob(f"*{ENCODED_SUFFIX}"))}
    methods = {p.name: p.method for p in config.variant_presets()}  # the resolved methods (overrides)
    targets = study_targets(config.accelerators,
                            {v: methods[v] for v in files} if set(files) <= set(methods) else list(files))
    geometry, example = model_geometry(loaded, config.simulate_batch, config.simulate_seq_len,
                                       name=config.model.replace("/", "_"), module=fp32)
    source = FileVariants(files, unquantized="drop")
    check = _int8_check(geometry, source.workload(geometry, DENSE_PRESET), int8_report)
    report = simulate(geometry, targets, variants=source, progress=progress)
    report.write(sim_dir)
    summary = report.to_json()
    summary["example_input"] = {**example.describe(), "sentence": example.sentence()}
    check["variants_simulated"] = {
        label: acc["per_workload"][geometry.name]["variant"] for label, acc in summary["accelerators"].items()
    }
    return summary, check


def _int8_check(geometry: Any, int8: Any, int8_report: Any) -> dict[str, Any]:
    """How the INT8 variant the dense designs run compares with the pipeline's INT8 integers."""
    from bitvert.hardware.variants import module_name

    from bitvert.core.grouping import out_channels_first

    q_of = {rec.name: out_channels_first(rec.q, rec.kind) for rec in int8_report.quantized_layers}
    simulated = {module_name(layer.name): layer.weights for layer in int8.layers if layer.encoding is not None}
    compared = [n for n in simulated if n in q_of]
    differing = [n for n in compared if not np.array_equal(simulated[n], q_of[n])]
    if differing:
        logger.error("simulated INT8 workload: %d layer(s) differ from the pipeline's INT8 weights: %s",
                     len(differing), differing[:5])
    return {
        "workload_layers": len(geometry.layers),
        "weights_source": "each variant's encoded file (encoded/<variant>.bbs.safetensors)",
        "layers_compared_with_int8": len(compared),
        "layers_equal_to_int8": len(compared) - len(differing),
        "differing_layers": differing,
        "layers_not_quantized_by_pipeline": list(int8.notes.get("dropped_fp32_layers", [])),
    }


def attach_accelerators(presets: list[Any], variants: dict[str, Any], simulation: dict[str, Any]) -> None:
    """Copy each variant's accelerator ratios (the simulated accelerator that runs it) onto its result.

    BitVert / BitWave targets run exactly one variant; the INT8 variant gets Stripes (the reference).
    """
    accs = simulation["accelerators"]
    for preset in presets:
        v = variants[preset.name]
        acc = _accelerator_for(preset, simulation["configs"])
        if acc is not None and acc in accs:
            v.accelerator = acc
            v.speedup_vs_stripes = accs[acc]["speedup_vs_stripes"]
            v.energy_vs_sparten = accs[acc]["energy_vs_sparten"]


def _accelerator_for(preset: Any, configs: dict[str, dict[str, Any]]) -> str | None:
    """The simulated accelerator that runs ``preset``'s variant, when one was simulated."""
    if preset.method == "none":
        return next((n for n, c in configs.items() if c.get("design") == "stripes"), None)
    return next((n for n, c in configs.items() if c.get("design") in ("bitvert", "bitwave")
                 and c.get("variant_preset") == preset.name), None)
