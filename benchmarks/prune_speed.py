"""Speed and peak memory of single-tensor binary pruning (issue 2 benchmark).

Prints one JSON object per line:
``method, semantics, group_size, columns, shape, weights, seconds, mweights_per_s, peak_rss_mb``.

Each case runs in a fresh child process so ``peak_rss_mb`` is that case's own
peak resident memory (including the int8 input). Weights are Laplace(0, 12)
values quantized to INT8, the usual shape of trained layers.

    python benchmarks/prune_speed.py            # all cases
    python benchmarks/prune_speed.py --quick    # small shapes only
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time

CASES = [
    # (method, semantics, columns, shape)
    ("rounded_avg", "paper", 2, (4096, 4096)),
    ("rounded_avg", "paper", 4, (4096, 4096)),
    ("zero_point", "paper", 4, (4096, 4096)),
    ("zero_point", "code", 4, (4096, 4096)),
    ("bitflip", "code", 4, (4096, 4096)),
    ("rounded_avg", "paper", 2, (256, 256, 3, 3)),
    ("zero_point", "paper", 4, (256, 256, 3, 3)),
    ("zero_point", "code", 4, (256, 256, 3, 3)),
    ("bitflip", "code", 4, (256, 256, 3, 3)),
    ("zero_point", "paper", 4, (14336, 4096)),
    ("rounded_avg", "paper", 2, (14336, 4096)),
]


def run_case(method: str, semantics: str, columns: int, shape: tuple[int, ...], repeats: int) -> dict:
    import numpy as np

    from bitvert.pruning import PruneConfig, prune

    rng = np.random.default_rng(0)
    w = np.clip(np.round(rng.laplace(0, 12, size=shape)), -127, 127).astype(np.int8)
    cfg = PruneConfig(method, semantics, group_size=32, columns=columns)
    prune(w[:2], cfg)  # load the compiled kernels (numba cache) outside the timing
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        res = prune(w, cfg)
        best = min(best, time.perf_counter() - t0)
        del res
    peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {
        "method": method,
        "semantics": semantics,
        "group_size": 32,
        "columns": columns,
        "shape": list(shape),
        "weights": int(w.size),
        "seconds": round(best, 4),
        "mweights_per_s": round(w.size / best / 1e6, 1),
        "peak_rss_mb": round(peak_kb / 1024, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="skip the 14336x4096 cases")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        method, semantics, columns, shape = json.loads(args.child)
        print(json.dumps(run_case(method, semantics, columns, tuple(shape), args.repeats)), flush=True)
        return
    for method, semantics, columns, shape in CASES:
        if args.quick and shape[0] > 4096:
            continue
        spec = json.dumps([method, semantics, columns, list(shape)])
        out = subprocess.run(
            [sys.executable, __file__, "--child", spec, "--repeats", str(args.repeats)],
            check=True, capture_output=True, text=True,
        )
        sys.stdout.write(out.stdout)
        sys.stdout.flush()


if __name__ == "__main__":
    main()
