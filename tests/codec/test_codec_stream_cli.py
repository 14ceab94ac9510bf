"""`bitvert prune --stream`, and `bitvert inspect` / `bitvert decode` of a sharded model."""

from __future__ import annotations

import json

import pytest
import torch
from click.testing import CliRunner

transformers = pytest.importorskip("transformers")
from stream_models import interrupt_save, write_hf  # noqa: E402

from bitvert.cli import main  # noqa: E402
from bitvert.codec.stream import INDEX_NAME  # noqa: E402
from bitvert.pipeline import prune_model_  # noqa: E402


def test_prune_stream_inspect_decode(tmp_path):
    src = write_hf(tmp_path / "hf")
    out = tmp_path / "out"
    runner = CliRunner()
    r = runner.invoke(main, ["prune", "--model", str(src), "--preset", "llm-moderate", "--stream", "--out", str(out),
                             "--shard-size", "40KB"])
    assert r.exit_code == 0, r.output
    assert "streamed" in r.output and "4.250" in r.output
    assert (out / INDEX_NAME).is_file() and (out / "config.json").is_file()
    assert json.loads((out / "status.json").read_text())["status"] == "complete"
    summary = json.loads((out / "summary.json").read_text())
    assert summary["mode"] == "stream" and summary["effective_bits"] == 4.25
    assert not list(tmp_path.glob(".out.partial*"))

    r = runner.invoke(main, ["inspect", str(out)])
    assert r.exit_code == 0, r.output
    assert "model.layers.1.mlp.down_proj.weight" in r.output and "shards" in r.output
    r = runner.invoke(main, ["inspect", str(out / INDEX_NAME), "--json"])
    doc = json.loads(r.output)
    assert doc["bits_per_weight"] == pytest.approx(4.25)  # every layer pruned, N = 4, g = 32: exactly 4.25

    dec = tmp_path / "dec"
    r = runner.invoke(main, ["decode", str(out), "-o", str(dec)])
    assert r.exit_code == 0, r.output
    decoded = transformers.LlamaForCausalLM.from_pretrained(dec, dtype=torch.float32).eval()
    ref = transformers.LlamaForCausalLM.from_pretrained(src, dtype=torch.float32).eval()
    prune_model_(ref, "llm-moderate")
    ids = torch.arange(20).reshape(2, 10)
    with torch.no_grad():
        assert torch.equal(decoded(ids).logits, ref(ids).logits)


def test_prune_auto_stream_by_memory_budget(tmp_path):
    src = write_hf(tmp_path / "hf")
    runner = CliRunner()
    r = runner.invoke(main, ["prune", "--model", str(src), "--preset", "llm-conservative", "--memory-budget", "100KB",
                             "--out", str(tmp_path / "out")])
    assert r.exit_code == 0, r.output
    assert (tmp_path / "out" / INDEX_NAME).is_file()
    r = runner.invoke(main, ["prune", "--model", str(src), "--stream", "--memory-budget", "lots",
                             "--out", str(tmp_path / "o2")])
    assert r.exit_code == 2 and "lots" in r.output


def test_prune_stream_bad_input_leaves_nothing(tmp_path):
    src = write_hf(tmp_path / "hf")
    (src / "model-00001-of-00003.safetensors").unlink()
    runner = CliRunner()
    out = tmp_path / "out"
    r = runner.invoke(main, ["prune", "--model", str(src), "--preset", "llm-moderate", "--stream", "--out", str(out)])
    assert r.exit_code == 2
    assert "model-00001-of-00003.safetensors" in r.output and "missing" in r.output
    assert not out.exists()
    assert not any((p / INDEX_NAME).exists() for p in tmp_path.glob(".out*"))


def test_prune_stream_interrupted_then_resumed(tmp_path, monkeypatch):
    from bitvert.codec import stream as stream_mod

    src = write_hf(tmp_path / "hf")
    out = tmp_path / "out"
    real = interrupt_save(monkeypatch, 2)
    args = ["prune", "--model", str(src), "--preset", "llm-moderate", "--stream", "--out", str(out),
            "--shard-size", "40KB"]
    r = CliRunner().invoke(main, args)
    assert r.exit_code == 130
    assert not out.exists()  # nothing at --out; the hidden work folder is kept for the resume
    assert (tmp_path / ".out.partial-stream" / "stream_state.json").is_file()
    monkeypatch.setattr(stream_mod, "save_encoded", real)
    r = CliRunner().invoke(main, args)
    assert r.exit_code == 0, r.output
    assert json.loads((out / "summary.json").read_text())["resumed_shards"] == 1
    assert not (tmp_path / ".out.partial-stream").exists()
