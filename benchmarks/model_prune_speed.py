"""Speed of model-level pruning (quantize + Algorithm 2 + binary pruning), excluding loading and evaluation.

Prints one JSON line per (model, preset) run:
``{"bench": "model_prune", "model", "preset", "params", "pruned_weights", "seconds", "target_seconds",
"effective_bits", ...}``. Activation calibration is timed separately (``calibration_seconds``) and
is not part of ``seconds``; the first run per method also pays numba's cached-JIT load, so every
configuration runs ``--repeat`` times and the best time is reported.

Usage: ``python benchmarks/model_prune_speed.py [--models minilm-l6 smollm2-135m] [--presets moderate]``
"""

from __future__ import annotations

import argparse
import copy
import gc
import json
import platform
import sys
import time

import torch

from bitvert.pipeline import get_preset, prune_model_

TARGETS_S = {"minilm-l6": 3.0, "smollm2-135m": 15.0}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", nargs="+", default=["minilm-l6", "smollm2-135m"])
    ap.add_argument("--presets", nargs="+", default=["moderate"])
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--calibrate", action="store_true", help="also time activation calibration (64 samples)")
    args = ap.parse_args()

    from bitvert.models import load_model

    torch.set_num_threads(max(1, torch.get_num_threads()))
    for name in args.models:
        loaded = load_model(name)
        params = sum(p.numel() for p in loaded.model.parameters())
        for preset_name in args.presets:
            preset = get_preset(preset_name, quant={"act_bits": None})
            best, report = float("inf"), None
            for _ in range(args.repeat):
                model = copy.deepcopy(loaded.model)
                gc.collect()
                t = time.perf_counter()
                report = prune_model_(model, preset)
                best = min(best, time.perf_counter() - t)
                del model
            assert report is not None
            row = {
                "bench": "model_prune", "model": name, "preset": preset_name, "params": params,
                "pruned_weights": report.n_weights, "layers": len(report.layers),
                "seconds": round(best, 3), "target_seconds": TARGETS_S.get(name),
                "effective_bits": round(report.effective_bits, 4), "threads": torch.get_num_threads(),
                "python": platform.python_version(),
            }
            if args.calibrate:
                model = copy.deepcopy(loaded.model)
                r = prune_model_(model, get_preset(preset_name), calibration=loaded.calibration_batches(64))
                row["calibration_seconds"] = round(r.calibration_seconds, 3)
                del model
            print(json.dumps(row), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
