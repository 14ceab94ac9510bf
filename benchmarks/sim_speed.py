"""Simulator speed: all accelerators on ResNet-50 with real-sized weights, and scaling with the weight count.

Prints one JSON object per line:

* ``{"bench": "resnet50", ...}`` -- building the workload (synthetic INT8 weights) and simulating all
  accelerator presets (pruning for BitVert and BitWave included); target <= 30 s on 2 cores;
* ``{"bench": "scaling", ...}`` -- Llama-style stacks of growing width (same layer count): the
  marginal seconds per million weights between successive points should stay roughly constant
  (cost = per-layer overhead + a term linear in the number of weights).

Run: ``python benchmarks/sim_speed.py`` (``--quick`` skips the largest scaling point).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time

from bitvert.hardware.config import DEFAULT_ACCELERATORS, resolve_accelerators
from bitvert.hardware.simulate import simulate
from bitvert.hardware.workloads_zoo import build_workload


def _warm_up() -> None:
    """Compile the numba kernels of the pruning code once (cached on disk afterwards)."""
    wl = build_workload("llama", llama={"hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 1,
                                        "num_attention_heads": 4, "num_key_value_heads": 4, "vocab_size": 64,
                                        "seq_len": 16})
    simulate(wl, "all")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="skip the largest scaling point")
    args = parser.parse_args()
    env = {"cpus": os.cpu_count(), "python": platform.python_version()}
    _warm_up()
    configs = resolve_accelerators("all")
    t0 = time.perf_counter()
    wl = build_workload("resnet50", seed=0)
    t1 = time.perf_counter()
    rep = simulate(wl, configs)
    t2 = time.perf_counter()
    s = rep.to_json()
    print(json.dumps({
        "bench": "resnet50", "accelerators": list(DEFAULT_ACCELERATORS), "n_weights": wl.n_weights,
        "macs": wl.macs, "build_s": round(t1 - t0, 3), "simulate_s": round(t2 - t1, 3),
        "total_s": round(t2 - t0, 3), "target_s": 30.0, "within_target": (t2 - t0) <= 30.0,
        "speedup_vs_stripes": {k: round(v["speedup_vs_stripes"], 4) for k, v in s["accelerators"].items()},
        "synthetic_weights": s["synthetic_weights"], **env,
    }), flush=True)
    widths = [256, 512, 1024] if args.quick else [256, 512, 1024, 2048]
    prev: tuple[int, float] | None = None
    for h in widths:
        cfg = {"hidden_size": h, "intermediate_size": 4 * h, "num_hidden_layers": 4, "num_attention_heads": 8,
               "num_key_value_heads": 8, "vocab_size": 1000, "seq_len": 64, "include_lm_head": False}
        t0 = time.perf_counter()
        wl = build_workload("llama", llama=cfg, seed=0)
        t1 = time.perf_counter()
        simulate(wl, configs)
        t2 = time.perf_counter()
        marginal = None
        if prev is not None:
            marginal = round((t2 - t1 - prev[1]) / ((wl.n_weights - prev[0]) / 1e6), 4)
        prev = (wl.n_weights, t2 - t1)
        print(json.dumps({
            "bench": "scaling", "hidden_size": h, "n_layers": len(wl.layers), "n_weights": wl.n_weights,
            "simulate_s": round(t2 - t1, 3), "s_per_mweight": round((t2 - t1) / (wl.n_weights / 1e6), 4),
            "marginal_s_per_mweight": marginal, "build_s": round(t1 - t0, 3),
        }), flush=True)


if __name__ == "__main__":
    main()
