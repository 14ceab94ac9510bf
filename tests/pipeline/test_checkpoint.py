"""pruned.safetensors: round trip, header, and clear errors."""

from __future__ import annotations

import copy
import json
import struct

import pytest
import torch
from safetensors.torch import save_file

from bitvert.errors import FormatError, InputError, UnsupportedLayerError
from bitvert.pipeline import apply_checkpoint_, load_pruned, prune_model_, save_pruned
from pipeline_helpers import read_header
from pipeline_models import TinyBlock


def test_round_trip_reproduces_outputs(cnn, cnn_batches, tmp_path):
    base = copy.deepcopy(cnn)
    report = prune_model_(cnn, "moderate", calibration=cnn_batches)
    x = cnn_batches[0]
    out = cnn(x)
    path = save_pruned(tmp_path / "pruned.safetensors", cnn, report, {"name": "tiny-cnn"})
    ckpt = load_pruned(path)
    assert ckpt.model_info == {"name": "tiny-cnn"}
    assert ckpt.preset == report.preset
    assert ckpt.effective_bits == pytest.approx(report.effective_bits)
    assert [l.name for l in ckpt.layers] == ["stem", "dw", "pw", "head"]
    for rec, layer in zip(report.layers, ckpt.layers):
        assert torch.equal(layer.q, torch.from_numpy(rec.q).to(torch.int16))
        assert layer.sensitive.tolist() == (rec.sensitive.tolist() if rec.sensitive is not None
                                            else [False] * rec.n_channels)
    pw = ckpt.layers[2]
    assert set(pw.metadata) == {"redundant", "constant", "free_columns", "pruned"}
    assert pw.q.dtype == torch.int16  # dtype is widened on load
    aq = apply_checkpoint_(base, path)
    assert aq is not None
    assert torch.equal(base(x), out)


def test_header_is_json_and_integer_weights_are_int8(block, block_batches, tmp_path):
    report = prune_model_(block, "llm-conservative", calibration=block_batches)
    path = save_pruned(tmp_path / "p.safetensors", block, report, {"name": "tiny-block"})
    header, meta = read_header(path)
    assert meta["format"] == "bitvert-pruned" and meta["format_version"] == "3"
    info = json.loads(meta["bitvert"])
    assert info["weight_int_range"] == [-127, 127]
    assert info["preset"]["name"] == "llm-conservative"
    assert info["summary"]["effective_bits"] == pytest.approx(6.25)
    dtypes = {k: v["dtype"] for k, v in header.items() if k != "__metadata__"}
    assert all(dtypes[f"layer.{i}.q"] in ("I8", "I16") for i in range(5))
    assert dtypes["layer.0.q"] == "I8"  # rounded averaging keeps every value in [-128, 127]
    assert "state.embed.weight" in dtypes and "state.fc2.weight" not in dtypes
    # the tied LM head is restored without touching the embedding of a fresh model
    torch.manual_seed(0)
    fresh = TinyBlock().eval()
    emb = fresh.embed.weight.detach().clone()
    apply_checkpoint_(fresh, path)
    assert torch.equal(fresh.embed.weight.detach(), emb)
    assert torch.equal(fresh(block_batches[0]), block(block_batches[0]))


def test_checkpoint_from_another_model_is_rejected(cnn, block, cnn_batches, tmp_path):
    report = prune_model_(cnn, "moderate", calibration=cnn_batches)
    path = save_pruned(tmp_path / "p.safetensors", cnn, report, {"name": "tiny-cnn"})
    with pytest.raises(UnsupportedLayerError, match="tiny-cnn"):
        apply_checkpoint_(block, path)
    other = copy.deepcopy(cnn)
    other.pw = torch.nn.Conv2d(32, 48, 1)
    with pytest.raises(UnsupportedLayerError, match="does not match"):
        apply_checkpoint_(other, path)


def test_bad_files(tmp_path):
    with pytest.raises(InputError, match="does not exist"):
        load_pruned(tmp_path / "missing.safetensors")
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"not a safetensors file at all")
    with pytest.raises(FormatError, match="safetensors"):
        load_pruned(junk)
    plain = tmp_path / "plain.safetensors"
    save_file({"w": torch.zeros(2)}, str(plain))
    with pytest.raises(FormatError, match="not a bitvert pruned checkpoint"):
        load_pruned(plain)
    future = tmp_path / "future.safetensors"
    save_file({"w": torch.zeros(2)}, str(future), metadata={"format": "bitvert-pruned", "format_version": "9",
                                                             "bitvert": "{}"})
    with pytest.raises(FormatError, match="version"):
        load_pruned(future)
    broken = tmp_path / "broken.safetensors"
    save_file({"w": torch.zeros(2)}, str(broken), metadata={"format": "bitvert-pruned", "format_version": "1",
                                                             "bitvert": json.dumps({"layers": [{"index": 0}]})})
    with pytest.raises(FormatError, match="malformed"):
        load_pruned(broken)


def test_save_needs_existing_folder(cnn, cnn_batches, tmp_path):
    report = prune_model_(cnn, "int8", calibration=cnn_batches)
    with pytest.raises(InputError, match="does not exist"):
        save_pruned(tmp_path / "nope" / "p.safetensors", cnn, report)


def test_no_pickle_in_file(cnn, cnn_batches, tmp_path):
    report = prune_model_(cnn, "conservative", calibration=cnn_batches)
    path = save_pruned(tmp_path / "p.safetensors", cnn, report)
    raw = path.read_bytes()
    (n,) = struct.unpack("<Q", raw[:8])
    json.loads(raw[8 : 8 + n])  # a plain safetensors JSON header
    assert b"\x80\x04\x95" not in raw[: 8 + n]  # no pickle protocol marker in the header


def test_checksums_catch_tampering_and_files_are_reproducible(cnn, cnn_batches, tmp_path):
    """A flipped weight or an edited header is a FormatError; the same run writes the same bytes."""
    from safetensors import safe_open

    from bitvert.tensorfile import save_tensors

    report = prune_model_(cnn, "moderate", calibration=cnn_batches)
    a = save_pruned(tmp_path / "a.safetensors", cnn, report, {"name": "tiny"})
    b = save_pruned(tmp_path / "b.safetensors", cnn, report, {"name": "tiny"})
    assert a.read_bytes() == b.read_bytes()
    assert (a.stat().st_mode & 0o777) == (0o666 & ~_umask())
    with safe_open(str(a), framework="pt") as f:
        meta = f.metadata()
        tensors = {k: f.get_tensor(k) for k in f.keys()}
    flipped = dict(tensors)
    q = flipped["layer.1.q"].clone()
    q.view(-1)[:5] += 1
    flipped["layer.1.q"] = q
    save_tensors(tmp_path / "flipped.safetensors", flipped, meta)
    with pytest.raises(FormatError, match="'layer.1.q' fails its checksum"):
        load_pruned(tmp_path / "flipped.safetensors")
    edited = dict(meta, bitvert=meta["bitvert"].replace('"tiny"', '"other"'))
    save_tensors(tmp_path / "edited.safetensors", tensors, edited)
    with pytest.raises(FormatError, match="header checksum"):
        load_pruned(tmp_path / "edited.safetensors")
    dropped = {k: v for k, v in tensors.items() if k != "layer.0.scale"}
    save_tensors(tmp_path / "dropped.safetensors", dropped, meta)
    with pytest.raises(FormatError, match="'layer.0.scale' is missing"):
        load_pruned(tmp_path / "dropped.safetensors")
    # a version-1 file (no checksums) still loads, with a warning
    v1 = {k: v for k, v in meta.items() if not k.startswith("bitvert_checksum")}
    save_tensors(tmp_path / "v1.safetensors", tensors, dict(v1, format_version="1"))
    assert len(load_pruned(tmp_path / "v1.safetensors").layers) == len(report.quantized_layers)


def _umask() -> int:
    import os

    m = os.umask(0)
    os.umask(m)
    return m
