"""SparTen against the paper: what its speedup over Stripes depends on (docs/simulator.md, SparTen).

Prints one JSON object per line:

* ``{"bench": "sensitivity", "workload": ..., ...}`` -- compute-cycle speedup of SparTen over Stripes on each
  of the seven paper workloads (synthetic weights, seed 0) as simulated (``base``), with transformer
  sequences truncated to 128 tokens as the published simulator did (``trunc128``, BBS.md §11 item 5), with
  transformer input densities of 0.85 / 0.5 instead of the shape-only 1.0, and with post-ReLU CNN
  densities of 0.4 / 0.3 instead of 0.5; then one ``"geomean"`` line per variant;
* ``{"bench": "real_masks", "model": ...}`` (with ``--models``) -- on real models of bitvert's zoo, SparTen's
  compute cycles from the statistical model (measured input density) and from the real input masks of the
  example input (recorded by :mod:`bitvert.hardware.import_torch`, per-tensor INT8); layers whose input
  geometry the workload cannot express (e.g. "same" padding with an even kernel) are skipped and counted.

Run: ``python benchmarks/sparten_study.py [--models minilm-l6,mnist-cnn,efficientnet-lite0]``.
"""

from __future__ import annotations

import argparse
import json
import math
from collections.abc import Callable
from dataclasses import replace
from typing import Any


from bitvert.hardware.accelerators import model_for
from bitvert.hardware.config import load_accelerator
from bitvert.hardware.workload import LayerWorkload, Workload
from bitvert.hardware.workloads_zoo import PAPER_WORKLOADS, RELU_DENSITY, build_workload

Variant = Callable[[LayerWorkload, bool], LayerWorkload]


def _compute_cycles(design: str, workload: Workload, layers: list[LayerWorkload]) -> float:
    model = model_for(load_accelerator(design))
    model.prepare(workload)
    return sum(model.layer(layer).compute_cycles for layer in layers)


def _variants() -> dict[str, Variant]:
    def density(d: float, transformer: bool) -> Variant:
        def apply(layer: LayerWorkload, is_tf: bool) -> LayerWorkload:
            if transformer and is_tf:
                return replace(layer, input_density=d)
            if not transformer and not is_tf and layer.input_density == RELU_DENSITY:
                return replace(layer, input_density=d)
            return layer
        return apply

    return {
        "base": lambda layer, is_tf: layer,
        "trunc128": lambda layer, is_tf: replace(layer, tokens=min(layer.tokens, 128)) if is_tf else layer,
        "transformer_d0.85": density(0.85, True),
        "transformer_d0.5": density(0.5, True),
        "cnn_d0.4": density(0.4, False),
        "cnn_d0.3": density(0.3, False),
    }


def sensitivity() -> None:
    variants = _variants()
    logs: dict[str, list[float]] = {k: [] for k in variants}
    for name in PAPER_WORKLOADS:
        wl = build_workload(name, seed=0)
        is_tf = name.startswith(("vit", "bert"))
        stripes = _compute_cycles("stripes", wl, list(wl.layers))
        row: dict[str, Any] = {"bench": "sensitivity", "workload": name}
        for key, fn in variants.items():
            speedup = stripes / _compute_cycles("sparten", wl, [fn(layer, is_tf) for layer in wl.layers])
            row[key] = round(speedup, 3)
            logs[key].append(math.log(speedup))
        print(json.dumps(row), flush=True)
    print(json.dumps({"bench": "sensitivity", "workload": "geomean",
                      **{k: round(math.exp(sum(v) / len(v)), 3) for k, v in logs.items()}}), flush=True)


def real_masks(model_name: str) -> None:
    from bitvert.hardware.import_torch import import_workload
    from bitvert.models import load_model

    lm = load_model(model_name)
    batch = next(iter(lm.calibration_batches(1)))
    wl = import_workload(lm.model, batch, name=model_name)  # records each layer's real INT8 input mask
    sparten, stripes = model_for(load_accelerator("sparten")), model_for(load_accelerator("stripes"))
    sparten.prepare(wl)
    stripes.prepare(wl)
    ref = stat = real = 0.0
    skipped = 0
    for layer in wl.layers:
        if layer.input_mask is None:  # a padding the workload cannot express
            skipped += 1
            continue
        real += sparten.layer(layer).compute_cycles
        stat += sparten.layer(replace(layer, input_mask=None)).compute_cycles
        ref += stripes.layer(layer).compute_cycles
    densities = [layer.input_density for layer in wl.layers]
    print(json.dumps({
        "bench": "real_masks", "model": model_name, "layers": len(wl.layers), "skipped": skipped,
        "input_density_min": round(min(densities), 3), "input_density_max": round(max(densities), 3),
        "speedup_statistical": round(ref / stat, 3), "speedup_real_masks": round(ref / real, 3),
        "cycles_real_over_statistical": round(real / stat, 4),
    }), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="", help="comma list of zoo models for the real-mask comparison")
    parser.add_argument("--no-sensitivity", action="store_true", help="skip the seven paper workloads")
    args = parser.parse_args()
    if not args.no_sensitivity:
        sensitivity()
    for name in filter(None, args.models.split(",")):
        real_masks(name)


if __name__ == "__main__":
    main()
