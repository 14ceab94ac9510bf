"""``bitvert encode`` / ``decode`` / ``inspect``: the BBS compressed weight file."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from bitvert.cli._common import check_output_file, check_output_folder

__all__ = ["encode_cmd", "decode_cmd", "inspect_cmd", "format_inspect"]


def format_inspect(stats: dict[str, Any], accounting: dict[str, int]) -> str:
    """Human-readable table of :meth:`EncodedModel.stats` plus the file accounting."""
    head = (f"{'tensor':<40} {'layout':<16} {'shape':<18} {'sens':>5} {'esc':>4} {'bits/w':>7} {'vs INT8':>8} "
            f"{'meta b/w':>8}")
    lines = [head, "-" * len(head)]
    for name, s in stats["tensors"].items():
        shape = "x".join(str(d) for d in s["shape"])
        lines.append(
            f"{name[-40:]:<40} {s['layout']:<16} {shape:<18} {s['sensitive_channels']:>5} {s['escaped_channels']:>4} "
            f"{s['bits_per_weight']:>7.3f} {s['compression_vs_int8']:>7.3f}x {s['metadata_overhead_bits_per_weight']:>8.3f}"
        )
    lines.append("-" * len(head))
    lines.append(
        f"{'total':<40} {'':<16} {stats['n_weights']:<18} {'':>5} {'':>4} {stats['bits_per_weight']:>7.3f} "
        f"{stats['compression_vs_int8']:>7.3f}x {stats['metadata_overhead_bits_per_weight']:>8.3f}"
    )
    a = accounting
    what = f"{a['shards']} shards" if "shards" in a else "file"
    lines.append(
        f"{what} {a['file_bytes']} bytes = header {a['header_bytes']} + encoded weights {a['weight_bytes']} + "
        f"scales {a['scale_bytes']} + other tensors {a['state_bytes']}"
        + (f" (+ index {a['index_bytes']} bytes)" if "index_bytes" in a else "")
    )
    return "\n".join(lines)


def _is_sharded(path: Path) -> bool:
    return path.is_dir() or path.name.endswith(".index.json")


@click.command("encode")
@click.argument("checkpoint", type=click.Path(dir_okay=False, path_type=Path))
@click.option("-o", "--out", "out", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="Output file, e.g. model.bbs.safetensors.")
def encode_cmd(checkpoint: Path, out: Path) -> None:
    """Encode a pruned checkpoint (pruned.safetensors from `bitvert prune`) into the BBS format."""
    from bitvert.codec.checkpoint import encode_checkpoint_file
    from bitvert.codec.container import file_accounting

    check_output_file(out, "--out", inputs=[checkpoint])  # before any work
    model = encode_checkpoint_file(checkpoint, out)
    stats = model.stats()
    acc = file_accounting(out)
    click.echo(f"wrote {out}: {len(model.tensors)} encoded tensors, {stats['n_weights']} weights, "
               f"{stats['bits_per_weight']:.3f} bits/weight ({stats['compression_vs_int8']:.3f}x smaller than "
               f"INT8), file {acc['file_bytes']} bytes")


def _decode_sharded(path: Path, out_dir: Path) -> str:
    """Decode a sharded model one tensor at a time into a HuggingFace-style float folder (one output shard per
    input shard, ``model.safetensors.index.json``, ``config.json``), loadable with ``from_pretrained``."""
    import shutil

    from safetensors.torch import save_file

    from bitvert.codec.stream import ShardedEncodedModel

    model = ShardedEncodedModel(path)
    out_dir.mkdir(parents=True, exist_ok=True)
    shards = list(model.shard_info)
    weight_map: dict[str, str] = {}
    for i, shard in enumerate(shards):
        fname = f"model-{i + 1:05d}-of-{len(shards):05d}.safetensors"
        keys = [k for k, s in model.weight_map.items() if s == shard]
        tensors = {}
        for key in keys:
            tensors[key] = (model.float_weight(key) if key in model.scales else model.state[key]).contiguous()
            weight_map[key] = fname
        save_file(tensors, str(out_dir / fname), metadata={"format": "pt", "source": shard})
        del tensors
    (out_dir / "model.safetensors.index.json").write_text(json.dumps({"metadata": {}, "weight_map": weight_map},
                                                                     indent=2))
    if (model.folder / "config.json").is_file():
        shutil.copyfile(model.folder / "config.json", out_dir / "config.json")
    return (f"wrote {out_dir}: {len(shards)} float shards ({len(model.encoded_names)} decoded weights, "
            f"{len(model.state_names)} tensors as stored) + model.safetensors.index.json")


@click.command("decode")
@click.argument("path", type=click.Path(path_type=Path))
@click.option("-o", "--out", "out_dir", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Output folder (created if missing).")
def decode_cmd(path: Path, out_dir: Path) -> None:
    """Decode a BBS file into integer weights and a float state_dict.

    Writes OUT/int_weights.safetensors (int16 weights by state_dict key, plus `scale.KEY`) and
    OUT/state_dict.safetensors (float weights = q * scale, and every other tensor), which
    `model.load_state_dict(safetensors.torch.load_file(...))` loads.

    PATH may also be a sharded model (its folder or model.bbs.safetensors.index.json, from
    `bitvert prune --stream`): it is decoded a tensor at a time into a HuggingFace-style folder
    (float32 shards + model.safetensors.index.json + config.json).
    """
    if _is_sharded(path):
        click.echo(_decode_sharded(path, out_dir))
        return
    import numpy as np
    import torch
    from safetensors.torch import save_file

    from bitvert.codec.container import load_encoded
    from bitvert.codec.torch_load import load_state_dict

    check_output_folder(out_dir, "--out")  # before any work
    model = load_encoded(path)
    out_dir.mkdir(parents=True, exist_ok=True)
    ints: dict[str, torch.Tensor] = {}
    for name in model.tensors:
        ints[name] = torch.from_numpy(np.ascontiguousarray(model.decode(name)))
        if name in model.scales:
            ints[f"scale.{name}"] = model.scales[name]
    meta = {"source": str(path.name)}
    save_file(ints, str(out_dir / "int_weights.safetensors"), metadata=meta)
    save_file({k: v.contiguous() for k, v in load_state_dict(model).items()}, str(out_dir / "state_dict.safetensors"),
              metadata=meta)
    click.echo(f"wrote {out_dir / 'int_weights.safetensors'} ({len(model.tensors)} integer tensors) and "
               f"{out_dir / 'state_dict.safetensors'}")


@click.command("inspect")
@click.argument("path", type=click.Path(path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
def inspect_cmd(path: Path, as_json: bool) -> None:
    """Per-tensor and total bits/weight of a BBS file, compression vs INT8, metadata overhead.

    PATH may be a sharded model (folder or index json): it is summarized a tensor at a time, without decoding.
    """
    from bitvert.codec.container import file_accounting, load_encoded
    from bitvert.codec.stream import ShardedEncodedModel

    if _is_sharded(path):
        sharded = ShardedEncodedModel(path)
        stats, acc = sharded.stats(), sharded.file_accounting()
    else:
        stats, acc = load_encoded(path).stats(), file_accounting(path)
    if as_json:
        click.echo(json.dumps({**stats, "file": acc}, indent=2))
    else:
        click.echo(format_inspect(stats, acc))
