"""Streaming prune + encode of sharded HuggingFace checkpoints (bitvert.codec.stream) == the in-memory pipeline."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

transformers = pytest.importorskip("transformers")
from safetensors.torch import save_file  # noqa: E402
from stream_models import interrupt_save, llama_config, write_hf  # noqa: E402

from bitvert.codec import ShardedEncodedModel, encode_report, load_model_, load_state_dict, stream_prune  # noqa: E402
from bitvert.codec import stream as stream_mod  # noqa: E402
from bitvert.codec.stream import INDEX_NAME, STATE_NAME, STREAM_STAGES, HFCheckpoint, parse_size  # noqa: E402
from bitvert.errors import ConfigError, FormatError, InputError  # noqa: E402
from bitvert.pipeline import get_preset, prune_model_  # noqa: E402
from bitvert.pipeline.checkpoint import checkpoint_header  # noqa: E402


def _in_memory(folder: Path, preset):
    model = transformers.LlamaForCausalLM.from_pretrained(folder, dtype=torch.float32)
    return model, prune_model_(model, preset)


CASES = [
    ("llm-moderate", torch.bfloat16, False),
    ("llm-conservative", torch.float32, False),
    ("llm-moderate", torch.float32, True),
    ("moderate-weight-only", torch.bfloat16, True),  # beta > 0: pass 1 and the global selection matter
]


def _preset(name: str):
    if name == "moderate-weight-only":
        return get_preset("moderate", quant={"act_bits": None})
    return get_preset(name)


@pytest.mark.parametrize("preset_name,dtype,tied", CASES)
def test_stream_equals_in_memory(tmp_path, preset_name, dtype, tied):
    src = write_hf(tmp_path / "hf", tied=tied, dtype=dtype)
    preset = _preset(preset_name)
    res = stream_prune(src, tmp_path / "out", preset, shard_size_bytes=40_000)
    model, report = _in_memory(src, preset)
    ref = encode_report(report)
    sm = ShardedEncodedModel(res.out_dir)
    assert len(sm.shard_info) > 1
    assert sm.encoded_names == list(ref.tensors)  # same layers, same (registration) order
    for name in ref.tensors:
        assert np.array_equal(sm.tensors[name].to_bytes(), ref.tensors[name].to_bytes()), name
        assert sm.header(name) == {**ref.tensors[name].header(), "scale": True}, name
        assert torch.equal(sm.scales[name], ref.scales[name]), name
        assert np.array_equal(sm.decode(name), ref.decode(name)), name
    # per-layer records and metadata of the run: identical apart from timing
    expected = checkpoint_header(report, {"name": "hf"})
    got = dict(sm.source)
    for d in (expected, got):
        d["summary"].pop("prune_seconds"), d["summary"].pop("calibration_seconds")
    expected = json.loads(json.dumps(expected))
    assert got["summary"] == expected["summary"]
    assert got == expected
    assert res.report.effective_bits == report.effective_bits
    # tensors not quantized are copied as stored (dtype included)
    hf = HFCheckpoint(src)
    for key in sm.state_names:
        assert torch.equal(sm.state[key], hf.read(key)), key
        assert sm.state[key].dtype == dtype
    if preset_name.startswith("llm-"):
        assert res.bits_per_weight == pytest.approx(sm.stats()["bits_per_weight"])
    # the decoded model computes the in-memory pruned model's logits exactly
    loaded = transformers.LlamaForCausalLM(llama_config(tied)).to(torch.float32).eval()
    load_model_(loaded, res.out_dir)
    ids = torch.arange(24).reshape(2, 12) % 160
    with torch.no_grad():
        assert torch.equal(loaded(ids).logits, model.eval()(ids).logits)
    assert not (res.out_dir / STATE_NAME).exists()


def test_lazy_reader_state_dict_and_stats(tmp_path):
    src = write_hf(tmp_path / "hf")
    res = stream_prune(src, tmp_path / "out", "llm-moderate", shard_size_bytes=40_000)
    sm = ShardedEncodedModel(res.index)
    sd = load_state_dict(tmp_path / "out")
    assert set(sd) == set(sm.weight_map)
    for name in sm.encoded_names:
        assert torch.equal(sd[name], sm.float_weight(name))
    st = sm.stats()
    assert st["n_weights"] == res.n_weights_quantized
    assert st["bits_per_weight"] == pytest.approx(res.bits_per_weight)
    for s in st["tensors"].values():  # llm-moderate: every layer pruned at N = 4, g = 32 -> 4.25 bits
        assert s["bits_per_weight"] == pytest.approx(4.25)
    acc = sm.file_accounting()
    assert acc["file_bytes"] == res.output_bytes
    sm.verify_files()


def test_reader_detects_corruption(tmp_path):
    src = write_hf(tmp_path / "hf")
    res = stream_prune(src, tmp_path / "out", "llm-moderate", shard_size_bytes=40_000)
    sm = ShardedEncodedModel(res.out_dir)
    name = sm.encoded_names[-1]
    shard = res.out_dir / sm.weight_map[name]
    blob = bytearray(shard.read_bytes())
    blob[-1] ^= 0xFF  # the last bytes belong to a tensor's data
    shard.write_bytes(bytes(blob))
    with pytest.raises(FormatError, match="checksum"):
        reopened = ShardedEncodedModel(res.out_dir)
        for n in reopened.weight_map:
            reopened.state[n] if n in reopened.state else reopened.tensors[n]
    index = res.out_dir / INDEX_NAME
    doc = json.loads(index.read_text())
    doc["encoded_tensors"] = doc["encoded_tensors"][:-1]
    index.write_text(json.dumps(doc))
    with pytest.raises(FormatError, match="index checksum"):
        ShardedEncodedModel(res.out_dir)


def test_resume_after_interruption(tmp_path, monkeypatch):
    src = write_hf(tmp_path / "hf")
    fresh = stream_prune(src, tmp_path / "fresh", "llm-moderate", shard_size_bytes=40_000)
    n_shards = len(ShardedEncodedModel(fresh.out_dir).shard_info)
    assert n_shards >= 3
    real = interrupt_save(monkeypatch, 3)
    out = tmp_path / "out"
    with pytest.raises(KeyboardInterrupt):
        stream_prune(src, out, "llm-moderate", shard_size_bytes=40_000)
    assert not (out / INDEX_NAME).exists()  # nothing that looks complete
    with pytest.raises(InputError, match="no model.bbs.safetensors.index.json"):
        ShardedEncodedModel(out)
    monkeypatch.setattr(stream_mod, "save_encoded", real)
    # a finished shard damaged since is redone, the intact one kept
    first, second = sorted(out.glob("model-*.bbs.safetensors"))
    second.write_bytes(second.read_bytes()[:-5])
    res = stream_prune(src, out, "llm-moderate", shard_size_bytes=40_000)
    assert res.resumed_shards == 1
    for f in fresh.out_dir.glob("*.bbs.safetensors"):
        assert (out / f.name).read_bytes() == f.read_bytes(), f.name
    # another preset into the unfinished folder is refused, and a finished folder is not overwritten
    with pytest.raises(InputError, match="finished sharded model"):
        stream_prune(src, out, "llm-conservative")


def test_refuses_other_unfinished_run(tmp_path, monkeypatch):
    src = write_hf(tmp_path / "hf")
    monkeypatch.setattr(stream_mod, "save_encoded", lambda *a, **k: (_ for _ in ()).throw(KeyboardInterrupt()))
    with pytest.raises(KeyboardInterrupt):
        stream_prune(src, tmp_path / "out", "llm-moderate")
    with pytest.raises(InputError, match="unfinished run of another input or other settings"):
        stream_prune(src, tmp_path / "out", "llm-conservative")
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "x.txt").write_text("x")
    with pytest.raises(InputError, match="not empty"):
        stream_prune(src, tmp_path / "busy", "llm-moderate")


def _index(folder: Path) -> dict:
    return json.loads((folder / "model.safetensors.index.json").read_text())


def test_bad_input_missing_shard(tmp_path):
    src = write_hf(tmp_path / "hf")
    (src / "model-00002-of-00003.safetensors").unlink()
    with pytest.raises(InputError, match=r"model-00002-of-00003.safetensors.*missing.*tensor '"):
        stream_prune(src, tmp_path / "out", "llm-moderate")
    assert not (tmp_path / "out").exists()


def test_bad_input_index_names_absent_tensor(tmp_path):
    src = write_hf(tmp_path / "hf")
    doc = _index(src)
    doc["weight_map"]["model.layers.0.mlp.extra.weight"] = "model-00001-of-00003.safetensors"
    (src / "model.safetensors.index.json").write_text(json.dumps(doc))
    with pytest.raises(FormatError, match=r"'model.layers.0.mlp.extra.weight'.*model-00001-of-00003"):
        stream_prune(src, tmp_path / "out", "llm-moderate")
    assert not (tmp_path / "out").exists()


def test_bad_input_truncated_shard(tmp_path):
    src = write_hf(tmp_path / "hf")
    shard = src / "model-00003-of-00003.safetensors"
    shard.write_bytes(shard.read_bytes()[:-100])
    with pytest.raises(FormatError, match=r"model-00003-of-00003.safetensors.*truncated.*tensor '"):
        stream_prune(src, tmp_path / "out", "llm-moderate")
    assert not (tmp_path / "out").exists()


def test_bad_input_unsupported_dtype(tmp_path):
    src = write_hf(tmp_path / "hf", n_shards=1)
    fname = "model-00001-of-00001.safetensors"
    from safetensors.torch import load_file

    state = load_file(str(src / fname))
    key = "model.layers.1.mlp.up_proj.weight"
    state[key] = state[key].to(torch.float8_e4m3fn)
    save_file(state, str(src / fname))
    with pytest.raises(InputError, match=rf"'{key}'.*{fname}.*F8_E4M3"):
        stream_prune(src, tmp_path / "out", "llm-moderate")
    state[key] = torch.zeros(state[key].shape, dtype=torch.int8)
    save_file(state, str(src / fname))
    with pytest.raises(InputError, match=rf"'{key}'.*dtype I8"):
        stream_prune(src, tmp_path / "out", "llm-moderate")
    assert not (tmp_path / "out").exists()


def test_bad_input_shape_disagrees_with_config(tmp_path):
    src = write_hf(tmp_path / "hf")
    cfg = json.loads((src / "config.json").read_text())
    cfg["intermediate_size"] = 128
    (src / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(FormatError, match=r"'model.layers.0.mlp.gate_proj.weight' in shard .*model-0000\d-of-00003"
                                          r".*shape \[96, 64\].*\[128, 64\]"):
        stream_prune(src, tmp_path / "out", "llm-moderate")
    assert not (tmp_path / "out").exists()


def test_bad_input_missing_tensor_and_activation_preset(tmp_path):
    src = write_hf(tmp_path / "hf")
    doc = _index(src)
    doc["weight_map"].pop("model.norm.weight")
    (src / "model.safetensors.index.json").write_text(json.dumps(doc))
    with pytest.raises(FormatError, match="'model.norm.weight'.*is in no shard"):
        stream_prune(src, tmp_path / "out", "llm-moderate")
    with pytest.raises(ConfigError, match="quantizes activations.*weight-only"):
        stream_prune(src, tmp_path / "out", "moderate")
    with pytest.raises(ConfigError, match="gptq solver.*calibration-free"):
        stream_prune(src, tmp_path / "out", "llm-moderate-gptq")
    with pytest.raises(ConfigError, match="Hessians"):
        stream_prune(src, tmp_path / "out", get_preset("llm-moderate", target_bits=4.5))


@pytest.mark.parametrize("text,value", [("8GB", 8 * 10**9), ("512MiB", 512 * 2**20), ("1.5G", 1_500_000_000),
                                        ("1000", 1000), (64, 64)])
def test_parse_size(text, value):
    assert parse_size(text) == value


def test_tensor_byte_ranges_and_prefetch(tmp_path):
    """The byte range HFCheckpoint records for a tensor holds exactly its stored bytes; prefetching it (read-ahead
    advice to the operating system) changes nothing and never fails."""
    src = write_hf(tmp_path / "hf", n_shards=3)
    hf = HFCheckpoint(src)
    for name, t in hf.tensors.items():
        start, length = hf._ranges[name]
        with open(src / t.file, "rb") as fh:
            fh.seek(start)
            raw = fh.read(length)
        stored = hf.read(name)
        assert raw == stored.contiguous().reshape(-1).view(torch.uint8).numpy().tobytes(), name
        hf.prefetch(name)
    hf.prefetch("no.such.tensor")


@pytest.mark.parametrize("bad", ["", "lots", "-1GB", "0", 0])
def test_parse_size_rejects(bad):
    with pytest.raises(InputError):
        parse_size(bad)


def test_bad_input_nan_weight_names_tensor_and_shard(tmp_path):
    src = write_hf(tmp_path / "hf", n_shards=1)
    fname = "model-00001-of-00001.safetensors"
    from safetensors.torch import load_file

    state = load_file(str(src / fname))
    key = "model.layers.0.self_attn.o_proj.weight"
    state[key][3, 5] = float("nan")
    save_file(state, str(src / fname))
    with pytest.raises(InputError, match=rf"'{key}' in shard .*{fname}.*NaN"):
        stream_prune(src, tmp_path / "out", "llm-moderate")
    assert not (tmp_path / "out" / INDEX_NAME).exists()


@pytest.mark.parametrize("preset_name", ["llm-moderate", "moderate-weight-only", "bitwave-llm-moderate"])
def test_large_layers_in_blocks_of_channels_equal_whole_layers(tmp_path, monkeypatch, preset_name):
    """Layers above the block size are read, quantized, pruned and encoded a block of output channels at a time
    (BitWave: encoded whole): the same bytes, headers and scales as the in-memory pipeline."""
    monkeypatch.setattr(stream_mod, "_BLOCK_ELEMENTS", 1000)  # every layer of the tiny Llama in several blocks
    monkeypatch.setattr(stream_mod, "_CONVERT_BLOCK_ELEMENTS", 700)
    src = write_hf(tmp_path / "hf", tied=True)
    preset = _preset(preset_name)
    res = stream_prune(src, tmp_path / "out", preset, shard_size_bytes=40_000)
    _, report = _in_memory(src, preset)
    ref = encode_report(report)
    sm = ShardedEncodedModel(res.out_dir)
    for name in ref.tensors:
        assert np.array_equal(sm.tensors[name].to_bytes(), ref.tensors[name].to_bytes()), name
        assert sm.tensors[name].header() == ref.tensors[name].header(), name
        assert torch.equal(sm.scales[name], ref.scales[name]), name
    assert set(res.stage_seconds) <= set(STREAM_STAGES) and {"read", "prune", "encode", "write"} <= set(
        res.stage_seconds)
    for got, want in zip(res.report.layers, report.layers):
        g, w = got.to_dict(), want.to_dict()
        assert g.pop("rel_error") == pytest.approx(w.pop("rel_error"), rel=1e-9)
        assert g == w
