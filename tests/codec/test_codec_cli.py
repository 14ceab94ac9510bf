"""bitvert encode / decode / inspect."""

from __future__ import annotations

import json

import pytest
import torch
from click.testing import CliRunner
from codec_models import MLP, mlp_batches
from safetensors.torch import load_file

from bitvert.cli import main
from bitvert.pipeline import load_pruned, prune_model_, save_pruned


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    torch.manual_seed(0)
    model = MLP().eval()
    report = prune_model_(model, "llm-moderate", calibration=mlp_batches())
    path = tmp_path_factory.mktemp("cli") / "pruned.safetensors"
    save_pruned(path, model, report, {"name": "mlp"})
    return path, model


def test_encode_inspect_decode(checkpoint, tmp_path):
    ckpt, model = checkpoint
    runner = CliRunner()
    out = tmp_path / "m.bbs.safetensors"
    r = runner.invoke(main, ["encode", str(ckpt), "-o", str(out)])
    assert r.exit_code == 0, r.output
    assert "bits/weight" in r.output and out.is_file()

    r = runner.invoke(main, ["inspect", "--json", str(out)])
    assert r.exit_code == 0, r.output
    info = json.loads(r.output)
    assert info["file"]["file_bytes"] == out.stat().st_size
    pruned = [s for s in info["tensors"].values() if s["layout"] == "bbs_zero_point"]
    assert pruned and all(s["bits_per_weight"] == 4.25 for s in pruned)
    assert all(s["compression_vs_int8"] == pytest.approx(8 / 4.25) for s in pruned)
    r = runner.invoke(main, ["inspect", str(out)])
    assert r.exit_code == 0 and "4.250" in r.output and "total" in r.output

    r = runner.invoke(main, ["decode", str(out), "-o", str(tmp_path / "dec")])
    assert r.exit_code == 0, r.output
    ints = load_file(str(tmp_path / "dec" / "int_weights.safetensors"))
    for layer in load_pruned(ckpt).layers:
        assert torch.equal(ints[f"{layer.name}.weight"], layer.q)
        assert torch.equal(ints[f"scale.{layer.name}.weight"], layer.scale)
    sd = load_file(str(tmp_path / "dec" / "state_dict.safetensors"))
    fresh = MLP()
    fresh.load_state_dict(sd)
    x = mlp_batches()[0]
    ref = {k: v for k, v in model.state_dict().items()}
    assert all(torch.equal(sd[k], ref[k]) for k in ref)
    assert fresh(x).shape == (8, 8)


def test_errors_exit_nonzero_with_a_message(checkpoint, tmp_path):
    ckpt, _ = checkpoint
    runner = CliRunner()
    r = runner.invoke(main, ["encode", str(tmp_path / "missing.safetensors"), "-o", str(tmp_path / "x")])
    assert r.exit_code == 2 and "does not exist" in r.output
    r = runner.invoke(main, ["inspect", str(ckpt)])
    assert r.exit_code == 2 and "not a BBS weight file" in r.output
    bad = tmp_path / "trunc.bbs.safetensors"
    runner.invoke(main, ["encode", str(ckpt), "-o", str(tmp_path / "ok.bbs.safetensors")])
    data = (tmp_path / "ok.bbs.safetensors").read_bytes()
    bad.write_bytes(data[: len(data) // 2])
    r = runner.invoke(main, ["decode", str(bad), "-o", str(tmp_path / "d")])
    assert r.exit_code == 2 and "truncated or corrupted" in r.output
    assert not (tmp_path / "d").exists()
