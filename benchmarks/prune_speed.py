"""Speed and peak memory of single-tensor binary pruning (issues 2 and 11 benchmark).

Prints one JSON object per line: ``method, semantics, group_size, columns, shape, weights,
repeats, seconds`` (median wall time of the whole ``prune()`` call over the repeats),
``mweights_per_s`` (weights / median seconds), ``cpu_seconds`` (median process CPU time,
all threads), ``threads`` (numba's thread count), ``load_avg`` (1-minute load average before
and after the case: the machine may be shared) and ``peak_rss_mb``.

Each case runs in a fresh child process so ``peak_rss_mb`` is that case's own peak resident
memory (including the int8 input). Weights are Laplace(0, 12) values quantized to INT8, the
usual shape of trained layers. The ``memcpy_int16`` case is the roofline: one copy of the
int16 output's bytes (``prune()`` must at least read the input and write that output).

    python benchmarks/prune_speed.py                    # all cases
    python benchmarks/prune_speed.py --quick            # small shapes only
    python benchmarks/prune_speed.py --only zero_point:paper:4 --repeats 7
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time

CASES = [
    # (method, semantics, columns, shape)
    ("memcpy_int16", "-", 0, (4096, 4096)),
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
    import numba
    import numpy as np

    from bitvert.pruning import PruneConfig, prune

    load_before = os.getloadavg()[0]
    rng = np.random.default_rng(0)
    w = np.clip(np.round(rng.laplace(0, 12, size=shape)), -127, 127).astype(np.int8)
    if method == "memcpy_int16":
        src = w.astype(np.int16)

        def call() -> object:
            return src.copy()
    else:
        cfg = PruneConfig(method, semantics, group_size=32, columns=columns)
        prune(w[:2], cfg)  # load the compiled kernels (numba cache) outside the timing

        def call() -> object:
            return prune(w, cfg)
    walls, cpus = [], []
    for _ in range(repeats):
        c0, t0 = time.process_time(), time.perf_counter()
        res = call()
        walls.append(time.perf_counter() - t0)
        cpus.append(time.process_time() - c0)
        del res
    seconds = statistics.median(walls)
    peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {
        "method": method,
        "semantics": semantics,
        "group_size": 32,
        "columns": columns,
        "shape": list(shape),
        "weights": int(w.size),
        "repeats": repeats,
        "seconds": round(seconds, 4),
        "mweights_per_s": round(w.size / seconds / 1e6, 1),
        "cpu_seconds": round(statistics.median(cpus), 4),
        "threads": numba.get_num_threads(),
        "load_avg": [round(load_before, 2), round(os.getloadavg()[0], 2)],
        "peak_rss_mb": round(peak_kb / 1024, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="skip the 14336x4096 cases")
    parser.add_argument("--repeats", type=int, default=5, help="timed calls per case (median reported)")
    parser.add_argument("--only", action="append", default=[], metavar="METHOD:SEMANTICS:COLUMNS",
                        help="run only these cases (repeatable), e.g. zero_point:paper:4")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        method, semantics, columns, shape = json.loads(args.child)
        print(json.dumps(run_case(method, semantics, columns, tuple(shape), args.repeats)), flush=True)
        return
    for method, semantics, columns, shape in CASES:
        if args.quick and shape[0] > 4096:
            continue
        if args.only and f"{method}:{semantics}:{columns}" not in args.only:
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
