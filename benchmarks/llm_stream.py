"""Streaming prune + encode of a Llama-3-8B-shaped checkpoint: wall time, peak RSS, output size.

Generates once, into ``$BITVERT_CACHE_DIR/bench/llm_stream/llama3-8b-shapes-L{layers}-s{seed}`` (the folder is
printed), a seeded bfloat16 HuggingFace checkpoint with Llama-3-8B's shapes (hidden 4096, intermediate 14336,
32 query / 8 key-value heads, vocab 128256, untied LM head; ``--layers`` decoder layers, 32 by default) in 4
shards; each output channel's weights are Laplace-distributed with their own scale (log-normal across
channels), like real LLM weights. The full model is about 16 GB: the script checks the free disk space first
and refuses when it is too little. Generation runs in a child process, so the measured peak RSS is the
streaming run's own.

Then times :func:`bitvert.codec.stream.stream_prune` (``--preset``, default ``llm-moderate``) into a fresh
output folder and prints JSON lines: ``{"bench": "llm_stream", "layers", "preset", "weights", "seconds",
"m_weights_per_s", "peak_rss_mb", "output_bytes", "bits_per_weight", "stage_seconds", ...}``
(``stage_seconds`` / ``stage_cpu_seconds``: wall / CPU seconds per stage -- setup, read, quantize, score,
prune, encode, write, checksum). ``load_avg_1m`` records how busy the machine was.

The first run after installing or changing bitvert compiles the numba kernels (about a minute of CPU time on
the 2-core machine; cached on disk afterwards), which this run's figures then include: run ``--layers 1``
first to time the steady state.

Usage: ``python benchmarks/llm_stream.py [--layers 2] [--preset llm-moderate] [--keep-output]``
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import platform
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path

HIDDEN, INTERMEDIATE, HEADS, KV_HEADS, VOCAB = 4096, 14336, 32, 8, 128256
HEAD_DIM = HIDDEN // HEADS
N_SHARDS = 4
_CHUNK_ROWS = 8192


def _shapes(layers: int) -> list[tuple[str, tuple[int, ...]]]:
    """Every tensor of the checkpoint in the architecture's order."""
    out: list[tuple[str, tuple[int, ...]]] = [("model.embed_tokens.weight", (VOCAB, HIDDEN))]
    for i in range(layers):
        p = f"model.layers.{i}"
        out += [(f"{p}.self_attn.q_proj.weight", (HEADS * HEAD_DIM, HIDDEN)),
                (f"{p}.self_attn.k_proj.weight", (KV_HEADS * HEAD_DIM, HIDDEN)),
                (f"{p}.self_attn.v_proj.weight", (KV_HEADS * HEAD_DIM, HIDDEN)),
                (f"{p}.self_attn.o_proj.weight", (HIDDEN, HEADS * HEAD_DIM)),
                (f"{p}.mlp.gate_proj.weight", (INTERMEDIATE, HIDDEN)),
                (f"{p}.mlp.up_proj.weight", (INTERMEDIATE, HIDDEN)),
                (f"{p}.mlp.down_proj.weight", (HIDDEN, INTERMEDIATE)),
                (f"{p}.input_layernorm.weight", (HIDDEN,)),
                (f"{p}.post_attention_layernorm.weight", (HIDDEN,))]
    out += [("model.norm.weight", (HIDDEN,)), ("lm_head.weight", (VOCAB, HIDDEN))]
    return out


def _numel(shape: tuple[int, ...]) -> int:
    n = 1
    for s in shape:
        n *= s
    return n


def _config(layers: int) -> dict:
    return {"architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": HIDDEN,
            "intermediate_size": INTERMEDIATE, "num_hidden_layers": layers, "num_attention_heads": HEADS,
            "num_key_value_heads": KV_HEADS, "vocab_size": VOCAB, "max_position_embeddings": 8192,
            "rms_norm_eps": 1e-5, "rope_theta": 500000.0, "tie_word_embeddings": False, "hidden_act": "silu",
            "torch_dtype": "bfloat16", "bos_token_id": 128000, "eos_token_id": 128001}


def _rows(shape: tuple[int, ...], start: int, stop: int, gen) -> "torch.Tensor":
    """Rows ``start:stop`` of a tensor: per-channel Laplace weights (norm weights: around 1)."""
    import torch

    if len(shape) == 1:
        return (1.0 + 0.05 * torch.randn(stop - start, generator=gen)).to(torch.bfloat16)
    n = stop - start
    scale = 0.02 * torch.exp(0.3 * torch.randn(n, 1, generator=gen))  # per-channel scale, log-normal
    u = torch.rand(n, shape[1], generator=gen) - 0.5
    w = -scale * torch.sign(u) * torch.log1p(-(2 * u.abs()).clamp(max=1 - 2**-20))  # finite: |u| < 0.5
    return w.to(torch.bfloat16)


def _write_shard(path: Path, entries: list[tuple[str, tuple[int, ...]]], seed: int) -> None:
    """A safetensors file written tensor by tensor (chunks of rows), never holding a whole tensor as float32.
    A shard already there with this header and size (from an interrupted generation) is kept: shards appear
    only complete (written to ``*.tmp``, then renamed)."""
    import torch

    header: dict = {"__metadata__": {"format": "pt"}}
    offset = 0
    for name, shape in entries:
        nbytes = 2 * _numel(shape)
        header[name] = {"dtype": "BF16", "shape": list(shape), "data_offsets": [offset, offset + nbytes]}
        offset += nbytes
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    if path.is_file() and path.stat().st_size == 8 + len(text) + offset:
        with open(path, "rb") as fh:
            if fh.read(8 + len(text)) == len(text).to_bytes(8, "little") + text:
                return
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as fh:
        fh.write(len(text).to_bytes(8, "little"))
        fh.write(text)
        for name, shape in entries:
            gen = torch.Generator().manual_seed(_name_seed(seed, name))
            rows = shape[0]
            for start in range(0, rows, _CHUNK_ROWS if len(shape) > 1 else rows):
                stop = min(rows, start + (_CHUNK_ROWS if len(shape) > 1 else rows))
                fh.write(_rows(shape, start, stop, gen).view(torch.int16).numpy().tobytes())
    os.replace(tmp, path)


def _name_seed(seed: int, name: str) -> int:
    import zlib

    return (seed * 1_000_003 + zlib.crc32(name.encode())) % 2**31


def _generate(folder: Path, layers: int, seed: int) -> None:
    """The checkpoint: config.json, 4 shards of about equal size, the index (written last)."""
    import torch

    torch.set_num_threads(max(1, os.cpu_count() or 1))
    folder.mkdir(parents=True, exist_ok=True)
    shapes = _shapes(layers)
    total = sum(2 * _numel(s) for _, s in shapes)
    shards: list[list[tuple[str, tuple[int, ...]]]] = [[] for _ in range(N_SHARDS)]
    acc = 0
    for name, shape in shapes:
        k = min(N_SHARDS - 1, acc * N_SHARDS // total)
        shards[k].append((name, shape))
        acc += 2 * _numel(shape)
    shards = [s for s in shards if s]
    weight_map = {}
    for i, entries in enumerate(shards):
        fname = f"model-{i + 1:05d}-of-{len(shards):05d}.safetensors"
        _write_shard(folder / fname, entries, seed)
        weight_map.update({name: fname for name, _ in entries})
    (folder / "config.json").write_text(json.dumps(_config(layers), indent=2))
    (folder / "model.safetensors.index.json").write_text(json.dumps(
        {"metadata": {"total_size": total}, "weight_map": weight_map}, indent=2))


def _peak_rss_mb() -> float:
    kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return kb / 1024 if sys.platform != "darwin" else kb / 2**20


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--layers", type=int, default=32, help="decoder layers (32 = Llama-3-8B)")
    ap.add_argument("--preset", default="llm-moderate")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--shard-size", default="256MiB", help="target size of an output shard")
    ap.add_argument("--out", type=Path, default=None, help="output folder (default: a temporary folder, removed)")
    ap.add_argument("--keep-output", action="store_true", help="keep the temporary output folder")
    ap.add_argument("--progress", action="store_true", help="show the progress bar")
    args = ap.parse_args()
    if args.layers < 1:
        ap.error("--layers must be at least 1")

    from bitvert.cachedir import cache_root

    folder = cache_root() / "bench" / "llm_stream" / f"llama3-8b-shapes-L{args.layers}-s{args.seed}"
    need = sum(2 * _numel(s) for _, s in _shapes(args.layers))
    if not (folder / "model.safetensors.index.json").is_file():
        folder.parent.mkdir(parents=True, exist_ok=True)
        free = shutil.disk_usage(folder.parent).free
        out_need = need // 3  # the encoded output (about 4.25 bits/weight + the bf16 embedding table)
        if free < need + out_need + 2 * 2**30:
            sys.exit(f"error: generating the {args.layers}-layer checkpoint needs {need / 1e9:.1f} GB plus about "
                     f"{out_need / 1e9:.1f} GB for the output and 2 GB spare, but {folder.parent} has only "
                     f"{free / 1e9:.1f} GB free; free some space, set BITVERT_CACHE_DIR elsewhere, or use --layers N")
        print(json.dumps({"bench": "llm_stream_generate", "folder": str(folder), "bytes": need}), flush=True)
        t0 = time.perf_counter()
        proc = mp.get_context("spawn").Process(target=_generate, args=(folder, args.layers, args.seed))
        proc.start()
        proc.join()
        if proc.exitcode != 0:
            shutil.rmtree(folder, ignore_errors=True)
            sys.exit(f"error: generating the checkpoint failed (exit code {proc.exitcode})")
        print(json.dumps({"bench": "llm_stream_generate", "folder": str(folder), "seconds":
                          round(time.perf_counter() - t0, 1)}), flush=True)

    from bitvert.codec.stream import parse_size, stream_prune

    out = args.out or Path(tempfile.mkdtemp(prefix="llm_stream_out-", dir=folder.parent)) / "out"
    if out.exists():
        sys.exit(f"error: --out {out} exists; give a new folder")
    free = shutil.disk_usage(out.parent if out.parent.exists() else folder.parent).free
    if free < need // 3 + 2**30:
        sys.exit(f"error: the output needs about {need / 3e9:.1f} GB, only {free / 1e9:.1f} GB free")
    rss0 = _peak_rss_mb()
    load0 = os.getloadavg()[0]
    ru0 = resource.getrusage(resource.RUSAGE_SELF)
    t0 = time.perf_counter()
    res = stream_prune(folder, out, args.preset, shard_size_bytes=parse_size(args.shard_size),
                       progress=args.progress)
    seconds = time.perf_counter() - t0
    ru1 = resource.getrusage(resource.RUSAGE_SELF)
    cpu_s = (ru1.ru_utime - ru0.ru_utime) + (ru1.ru_stime - ru0.ru_stime)
    import numba
    import torch

    print(json.dumps({
        "bench": "llm_stream", "layers": args.layers, "preset": args.preset, "weights": res.n_weights_quantized,
        "tensors_copied": res.n_tensors_copied, "input_bytes": need, "seconds": round(seconds, 2),
        "cpu_seconds": round(cpu_s, 1),
        "m_weights_per_s": round(res.n_weights_quantized / seconds / 1e6, 1), "peak_rss_mb": round(_peak_rss_mb(), 0),
        "rss_before_mb": round(rss0, 0), "output_bytes": res.output_bytes,
        "bits_per_weight": round(res.bits_per_weight, 4), "effective_bits": round(res.report.effective_bits, 4),
        "stage_seconds": res.stage_seconds, "stage_cpu_seconds": res.stage_cpu_seconds,
        "load_avg_1m": round(load0, 2), "load_avg_1m_after": round(os.getloadavg()[0], 2),
        "cpus": os.cpu_count(), "torch_threads": torch.get_num_threads(), "numba_threads": numba.get_num_threads(),
        "python": platform.python_version(),
    }), flush=True)
    if args.out is None and not args.keep_output:
        shutil.rmtree(out.parent, ignore_errors=True)


if __name__ == "__main__":
    main()
