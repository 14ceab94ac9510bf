"""The ``simulate`` stage of ``bitvert run``: the study's variants on the simulated accelerators."""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["simulate_study", "attach_accelerators"]

logger = logging.getLogger(__name__)


def _accelerator_for(preset: Any, configs: dict[str, dict[str, Any]]) -> str | None:
    """The simulated accelerator that runs ``preset``'s weights, when one was simulated."""
    if preset.method == "none":
        return "stripes" if "stripes" in configs else None
    if preset.method in ("rounded_avg", "zero_point"):
        matches = [
            n for n, c in configs.items()
            if c.get("design") == "bitvert" and c.get("method") == preset.method
            and c.get("pruned_columns") == preset.columns and c.get("group_size") == preset.group_size
            and math.isclose(float(c.get("sensitive_fraction", -1)), preset.sensitive_fraction)
        ]
        preferred = f"bitvert-{preset.name}"
        return preferred if preferred in matches else (matches[0] if matches else None)
    if preset.method == "bitflip":
        return next((n for n, c in configs.items() if c.get("design") == "bitwave"), None)
    return None


def simulate_study(loaded: Any, fp32: Any, config: Any, int8_report: Any, sim_dir: Path
              ) -> tuple[dict[str, Any], dict[str, Any]]:
    from bitvert.hardware.config import resolve_accelerators
    from bitvert.hardware.import_torch import import_workload
    from bitvert.hardware.simulate import simulate

    configs = resolve_accelerators(list(config.accelerators))
    batch = next(iter(loaded.calibration_batches(config.simulate_batch)))
    workload = import_workload(fp32, batch, name=config.model.replace("/", "_"))
    q_of = {rec.name: rec.q for rec in int8_report.quantized_layers}
    simulated = {layer.name.split("#")[0]: layer.weights for layer in workload.layers}
    compared = [n for n in simulated if n in q_of]
    differing = [n for n in compared if not np.array_equal(_torch_layout(simulated[n], q_of[n]), q_of[n])]
    check = {
        "workload_layers": len(workload.layers),
        "layers_compared_with_int8": len(compared),
        "layers_equal_to_int8": len(compared) - len(differing),
        "differing_layers": differing,
        "layers_not_quantized_by_pipeline": sorted(set(simulated) - set(q_of)),
    }
    if differing:  # expected in a few layers: rounding ties resolved differently in float32 and float64
        logger.info("simulated workload: %d layer(s) differ from the pipeline's INT8 weights (see the report)",
                    len(differing))
    report = simulate(workload, configs)
    report.write(sim_dir)
    return report.to_json(), check


def _torch_layout(sim_w: np.ndarray, q: np.ndarray) -> np.ndarray:
    """The workload stores HF Conv1D weights transposed; bring them back to the module layout."""
    if sim_w.shape != q.shape and sim_w.ndim == 2 and sim_w.T.shape == q.shape:
        return sim_w.T
    return sim_w


def attach_accelerators(presets: list[Any], variants: dict[str, Any], simulation: dict[str, Any]) -> None:
    """Copy each variant's accelerator ratios (when one simulated accelerator runs it) onto its result."""
    accs = simulation["accelerators"]
    for preset in presets:
        v = variants[preset.name]
        acc = _accelerator_for(preset, simulation["configs"])
        if acc is not None and acc in accs:
            v.accelerator = acc
            v.speedup_vs_stripes = accs[acc]["speedup_vs_stripes"]
            v.energy_vs_sparten = accs[acc]["energy_vs_sparten"]
