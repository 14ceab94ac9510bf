"""Simulator speed: all accelerators on ResNet-50 with real-sized weights, and scaling with the weight count.

Prints one JSON object per line:

* ``{"bench": "resnet50", ...}`` -- building the workload (synthetic INT8 weights) and simulating all
  accelerators, each on its own variant (the pipeline's Algorithm 2, encoding and decoding for BitVert
  and BitWave included); target <= 30 s on 2 cores (2.7 s on a quiet machine before variants were
  encoded, docs/simulator.md);
* ``{"bench": "scaling", ...}`` -- Llama-style stacks of growing width (same layer count): the
  marginal seconds per million weights between successive points should stay roughly constant
  (cost = per-layer overhead + a term linear in the number of weights);
* ``{"bench": "paper_memory", ...}`` -- peak resident memory of ``bitvert simulate --workload paper
  --accelerators all`` (the seven paper workloads, one workload and one variant in memory at a time),
  measured on a child process; target <= 2 GB.

Run: ``python benchmarks/sim_speed.py`` (``--quick`` skips the largest scaling point,
``--no-paper`` the paper-memory run, which takes minutes).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time

from bitvert.hardware.simulate import simulate
from bitvert.hardware.targets import DEFAULT_TARGETS, resolve_targets
from bitvert.hardware.workloads_zoo import build_workload


def _paper_memory() -> dict[str, object]:
    """Peak RSS of ``bitvert simulate --workload paper --accelerators all`` in a child process."""
    with tempfile.TemporaryDirectory() as out:
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-m", "bitvert", "-q", "simulate", "--workload", "paper", "--accelerators",
                        "all", "--out", out, "--no-plots"], check=True, stdout=subprocess.DEVNULL)
        elapsed = time.perf_counter() - t0
    peak_kib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss  # Linux: KiB
    return {"bench": "paper_memory", "workloads": 7, "peak_rss_gb": round(peak_kib / 2**20, 3),
            "target_gb": 2.0, "within_target": peak_kib / 2**20 <= 2.0, "elapsed_s": round(elapsed, 1)}


def _warm_up() -> None:
    """Compile the numba kernels of the pruning code once (cached on disk afterwards)."""
    wl = build_workload("llama", llama={"hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 1,
                                        "num_attention_heads": 4, "num_key_value_heads": 4, "vocab_size": 64,
                                        "seq_len": 16})
    simulate(wl, "all")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="skip the largest scaling point")
    parser.add_argument("--no-paper", action="store_true", help="skip the paper-memory run (minutes)")
    args = parser.parse_args()
    env = {"cpus": os.cpu_count(), "python": platform.python_version()}
    _warm_up()
    configs = resolve_targets("all")
    t0 = time.perf_counter()
    wl = build_workload("resnet50", seed=0)
    t1 = time.perf_counter()
    rep = simulate(wl, configs)
    t2 = time.perf_counter()
    s = rep.to_json()
    print(json.dumps({
        "bench": "resnet50", "accelerators": list(DEFAULT_TARGETS), "n_weights": wl.n_weights,
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
    if not args.no_paper:
        print(json.dumps({**_paper_memory(), **env}), flush=True)


if __name__ == "__main__":
    main()
