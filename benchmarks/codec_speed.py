"""Speed of the BBS codec: encode, decode (MB/s of int8 weights) and the functional BitVert PE.

Prints one JSON line per measurement:
``{"bench": "codec", "op", "preset", "weights", "seconds", "cpu_seconds", "mb_per_s", "target_mb_per_s"
| "target_seconds", "bits_per_weight", "ok"}``. ``seconds`` is the best wall time of ``--repeat``
runs (the first run also loads numba's cached kernels); ``cpu_seconds`` is the process CPU time of
that run (all threads), which is what to compare on a shared machine. ``ok`` says whether the
result was checked exact: decode against the pruned weights, the PE against ``W_int @ X_int``.

Targets (2-core machine): encode >= 150 MB/s, decode >= 300 MB/s, PE of a 4096x4096 layer
against 64 input vectors <= 5 s.

Usage: ``python benchmarks/codec_speed.py [--size 4096] [--vectors 64] [--repeat 3]``
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from bitvert.codec import decode, encode, encode_plain
from bitvert.codec.pe_model import pe_matmul
from bitvert.pruning import PruneConfig, prune

TARGET_ENCODE_MBS = 150.0
TARGET_DECODE_MBS = 300.0
TARGET_PE_S = 5.0

PRESETS = {
    "moderate": PruneConfig("zero_point", columns=4),  # N = 4, g = 32: 4.25 bits/weight
    "conservative": PruneConfig("rounded_avg", columns=2),  # N = 2: 6.25 bits/weight
}


def _best(fn: Callable[[], Any], repeat: int) -> tuple[float, float, Any]:
    best = (float("inf"), 0.0, None)
    for _ in range(repeat):
        t0, c0 = time.perf_counter(), time.process_time()
        out = fn()
        t, c = time.perf_counter() - t0, time.process_time() - c0
        if t < best[0]:
            best = (t, c, out)
    return best


def _line(**kw: Any) -> None:
    print(json.dumps({"bench": "codec", **kw}), flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--size", type=int, default=4096, help="layer is size x size (default 4096)")
    ap.add_argument("--vectors", type=int, default=64, help="input vectors for the PE (default 64)")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    rng = np.random.default_rng(args.seed)
    n = args.size
    w = np.clip(np.round(rng.laplace(0, 12, (n, n))), -127, 127).astype(np.int16)
    mb = w.size / 1e6  # MB of int8 weights
    _line(op="machine", cpus=os.cpu_count(), python=platform.python_version(),
          load_avg=list(os.getloadavg()) if hasattr(os, "getloadavg") else None)
    for name, cfg in PRESETS.items():
        res = prune(w, cfg)
        t, c, enc = _best(lambda: encode(res), args.repeat)
        bpw = enc.stats()["bits_per_weight"]
        _line(op="encode", preset=name, weights=w.size, seconds=t, cpu_seconds=c, mb_per_s=mb / t,
              cpu_mb_per_s=mb / c if c else None, target_mb_per_s=TARGET_ENCODE_MBS, bits_per_weight=bpw)
        t, c, out = _best(lambda: decode(enc), args.repeat)
        _line(op="decode", preset=name, weights=w.size, seconds=t, cpu_seconds=c, mb_per_s=mb / t,
              cpu_mb_per_s=mb / c if c else None, target_mb_per_s=TARGET_DECODE_MBS,
              ok=bool(np.array_equal(out, res.weights)))
        if name == "moderate":
            x = rng.integers(-128, 128, (n, args.vectors))
            t, c, pe = _best(lambda: pe_matmul(enc, x), max(1, args.repeat - 1))
            ref = res.weights.astype(np.float64) @ x.astype(np.float64)  # exact: |sums| < 2**53
            _line(op="pe_matmul", preset=name, weights=w.size, vectors=args.vectors, seconds=t, cpu_seconds=c,
                  mb_per_s=mb / t, target_seconds=TARGET_PE_S, ok=bool(np.array_equal(pe.output, ref)),
                  effectual_bits_per_column=pe.summary()["effectual_bits_per_column"])
    plain = encode_plain(w)
    t, c, _ = _best(lambda: encode_plain(w), args.repeat)
    _line(op="encode", preset="int8-plain", weights=w.size, seconds=t, cpu_seconds=c, mb_per_s=mb / t,
          target_mb_per_s=TARGET_ENCODE_MBS, bits_per_weight=plain.stats()["bits_per_weight"])
    t, c, out = _best(lambda: decode(plain), args.repeat)
    _line(op="decode", preset="int8-plain", weights=w.size, seconds=t, cpu_seconds=c, mb_per_s=mb / t,
          target_mb_per_s=TARGET_DECODE_MBS, ok=bool(np.array_equal(out, w)))


if __name__ == "__main__":
    main()
