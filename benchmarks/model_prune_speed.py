"""Speed of model-level pruning (quantize + Algorithm 2 + binary pruning), excluding loading and evaluation.

Prints one JSON line per (model, preset) run:
``{"bench": "model_prune", "model", "preset", "params", "pruned_weights", "seconds", "target_seconds",
"effective_bits", ...}``. Activation calibration is timed separately (``calibration_seconds``) and
is not part of ``seconds``; the first run per method also pays numba's cached-JIT load, so every
configuration runs ``--repeat`` times and the best time is reported (``first_seconds``: the first run's,
``cpu_seconds``: the best run's process CPU time, all threads). ``stage_seconds`` / ``stage_cpu_seconds``
split the best run by stage (``ModelPruneReport.stage_seconds``): ``hessians`` (calibration forward
passes and ``XᵀX``), ``factor`` (Cholesky of ``H``), ``solver`` (error feedback and the per-group
search), ``greedy`` (the per-group methods), ``layers`` (the rest of the per-layer work), ``other``.
``load_avg_1m`` records how busy the machine was: with more runnable processes than cores,
multi-threaded torch ops slow down a lot (``--threads 1`` is then faster).

Presets with ``solver="gptq"`` (``moderate-gptq``, ``llm-moderate-gptq``, ...) need calibration inputs for
their layer Hessians: they get the model's first ``--calibration-samples`` calibration samples (32, the
default of ``bitvert prune``), and their ``seconds`` *include* the sequential Hessian collection (targets:
MiniLM ``moderate-gptq`` 20 s, SmolLM2 ``llm-moderate-gptq`` 180 s). ``peak_rss_mb`` is the process's
peak resident memory so far (Linux ``ru_maxrss``).

Usage: ``python benchmarks/model_prune_speed.py [--models minilm-l6 smollm2-135m] [--presets moderate]``
"""

from __future__ import annotations

import argparse
import copy
import gc
import json
import os
import platform
import resource
import sys
import time

import torch

from bitvert.pipeline import get_preset, prune_model_

TARGETS_S = {"minilm-l6": 3.0, "smollm2-135m": 15.0}
GPTQ_TARGETS_S = {"minilm-l6": 20.0, "smollm2-135m": 180.0}

# Layer shapes of the two models, for --synthetic (same weights count and shapes, random values).
_SHAPES = {
    # 6 BERT layers: q, k, v, attention output (384x384), intermediate 1536x384, output 384x1536; pooler
    "minilm-l6": [(384, 384)] * 4 * 6 + [(1536, 384), (384, 1536)] * 6 + [(384, 384)],
    # 30 Llama layers: q, o (576x576), k, v (192x576), gate, up (1536x576), down (576x1536); tied LM head
    "smollm2-135m": ([(576, 576), (192, 576), (192, 576), (576, 576), (1536, 576), (1536, 576), (576, 1536)]
                     * 30 + [(49152, 576)]),
}


class _Synthetic(torch.nn.Module):
    """A stack of Linear layers with a real model's weight shapes and Laplace-distributed weights."""

    def __init__(self, shapes: list[tuple[int, int]]) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(0)
        self.layers = torch.nn.ModuleList()
        for out_f, in_f in shapes:
            lin = torch.nn.Linear(in_f, out_f, bias=False)
            with torch.no_grad():
                u = torch.rand(out_f, in_f, generator=g) - 0.5
                lin.weight.copy_(-0.02 * torch.sign(u) * torch.log1p(-(2 * u.abs()).clamp(max=1 - 1e-6)))
            self.layers.append(lin)


def _load(name: str, synthetic: bool) -> torch.nn.Module:
    if synthetic:
        return _Synthetic(_SHAPES[name])
    from bitvert.models import load_model

    return load_model(name).model


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", nargs="+", default=["minilm-l6", "smollm2-135m"])
    ap.add_argument("--presets", nargs="+", default=["moderate"])
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--calibrate", action="store_true", help="also time activation calibration (64 samples)")
    ap.add_argument("--synthetic", action="store_true",
                    help="random Laplace weights with the models' Linear shapes instead of the real models")
    ap.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's choice)")
    ap.add_argument("--calibration-samples", type=int, default=32,
                    help="calibration samples of the gptq presets' Hessians (default 32, as bitvert prune)")
    args = ap.parse_args()
    if args.threads is not None:
        torch.set_num_threads(args.threads)

    for name in args.models:
        if args.synthetic and name not in _SHAPES:
            ap.error(f"--synthetic knows {sorted(_SHAPES)}, not {name!r}")
        base = _load(name, args.synthetic)
        params = sum(p.numel() for p in base.parameters())
        for preset_name in args.presets:
            preset = get_preset(preset_name, quant={"act_bits": None})
            batches = None
            if preset.solver == "gptq":
                if args.synthetic:
                    ap.error(f"{preset_name} uses the gptq solver, which needs the real model's calibration inputs")
                from bitvert.models import load_model

                batches = list(load_model(name).calibration_batches(args.calibration_samples))
            best, report, best_report, first, cpu_best = float("inf"), None, None, None, None
            for _ in range(args.repeat):
                model = copy.deepcopy(base)
                gc.collect()
                t, c = time.perf_counter(), time.process_time()
                report = prune_model_(model, preset, calibration=batches)
                wall = time.perf_counter() - t
                first = wall if first is None else first
                if wall < best:
                    best, best_report, cpu_best = wall, report, time.process_time() - c
                del model
            assert report is not None and best_report is not None
            row = {
                "bench": "model_prune", "model": name, "synthetic": args.synthetic, "preset": preset_name,
                "params": params,
                "pruned_weights": report.n_weights, "layers": len(report.layers),
                "seconds": round(best, 3), "cpu_seconds": round(cpu_best, 3), "first_seconds": round(first, 3),
                "stage_seconds": {k: round(v, 3) for k, v in best_report.stage_seconds.items()},
                "stage_cpu_seconds": {k: round(v, 3) for k, v in best_report.stage_cpu_seconds.items()},
                "target_seconds": (GPTQ_TARGETS_S if preset.solver == "gptq" else TARGETS_S).get(name),
                "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
                "effective_bits": round(report.effective_bits, 4), "threads": torch.get_num_threads(),
                "load_avg_1m": round(os.getloadavg()[0], 2), "cpus": os.cpu_count(),
                "python": platform.python_version(),
            }
            if args.calibrate and not args.synthetic:
                from bitvert.models import load_model

                loaded = load_model(name)
                model = loaded.model
                r = prune_model_(model, get_preset(preset_name), calibration=loaded.calibration_batches(64))
                row["calibration_seconds"] = round(r.calibration_seconds, 3)
                del model
            print(json.dumps(row), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
