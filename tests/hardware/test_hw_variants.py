"""Workloads carry the variant's own encoded weights: codec.view, hardware.variants, `simulate --checkpoint`."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from torch import nn

from bitvert.cli import main
from bitvert.codec import encode, encode_checkpoint, load_encoded, save_encoded
from bitvert.codec.tensor import plan_groups
from bitvert.codec.view import model_encodings, weight_encoding
from bitvert.core.bitplanes import plane_count
from bitvert.errors import ConfigError, InputError, UnsupportedLayerError
from bitvert.hardware.import_torch import import_workload
from bitvert.hardware.simulate import simulate
from bitvert.hardware.variants import FileVariants, PipelineVariants, file_encodings, workload_for_variant
from bitvert.hardware.workload import LayerType, LayerWorkload, Workload
from bitvert.pruning import PruneConfig, prune
from hw_helpers import linear, workload


class _Net(nn.Module):
    """Conv stem, a conv, a linear layer called twice and a head: first/last layers stay INT8 in paper presets."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 32, 3, padding=1)
        self.conv = nn.Conv2d(32, 64, 3, padding=1)
        self.fc = nn.Linear(64, 64)
        self.head = nn.Linear(64, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.conv(torch.relu(self.stem(x)))).mean(dim=(2, 3))
        return self.head(torch.relu(self.fc(torch.relu(self.fc(x)))))


@pytest.fixture(scope="module")
def net_files(tmp_path_factory):
    """The net's moderate variant as pruned.safetensors and *.bbs.safetensors, plus its geometry."""
    from bitvert.codec import encode_checkpoint_file
    from bitvert.pipeline import prune_model_, save_pruned

    torch.manual_seed(0)
    model = _Net().eval()
    x = torch.randn(2, 3, 6, 6)
    geometry = import_workload(model, x, name="net")
    pruned = _Net()
    pruned.load_state_dict(model.state_dict())
    report = prune_model_(pruned, "moderate", calibration=[x])
    d = tmp_path_factory.mktemp("net")
    ckpt = save_pruned(d / "moderate.safetensors", pruned, report, {"name": "net"})
    bbs = d / "moderate.bbs.safetensors"
    encode_checkpoint_file(ckpt, bbs)
    return geometry, ckpt, bbs, report


def test_weight_encoding_is_what_the_encoder_wrote():
    rng = np.random.default_rng(0)
    w = np.clip(np.rint(rng.laplace(0, 20, size=(96, 64))), -127, 127).astype(np.int16)  # (in, out): Conv1D
    sens = np.zeros(64, dtype=bool)
    sens[[3, 40]] = True
    res = prune(w, PruneConfig(method="zero_point", columns=4), kind="linear_in_out", dense_channels=sens)
    enc = encode(res, name="h.weight")
    e = weight_encoding(enc, "h", n_sensitive_global=2)
    np.testing.assert_array_equal(e.weights, res.weights.T)  # (out, in), transposed once
    assert e.group_layout.shape == (64, 96) and e.group_layout.n_groups == enc.group_layout.n_groups
    plan = plan_groups(enc)
    expect = np.empty(len(plan.order), dtype=np.int64)
    expect[plan.order] = plane_count(plan.planes)
    np.testing.assert_array_equal(e.stored_columns, expect)
    per_ch = e.stored_columns.reshape(64, -1)
    assert (per_ch[sens] == 8).all() and (per_ch[~sens] == 4).all()
    np.testing.assert_array_equal(e.sensitive, sens)
    assert e.footprint_bits == 8 * enc.stats()["total_bytes"]
    assert e.bits_per_weight == pytest.approx(enc.stats()["bits_per_weight"])
    assert (e.columns, e.weight_bits, e.n_sensitive_global) == (4, 8, 2)
    cols = e.per_weight_columns()
    assert cols.shape == e.weights.shape and (cols[sens] == 8).all()


def test_both_file_kinds_give_the_same_encodings(net_files):
    geometry, ckpt, bbs, report = net_files
    a, src_a = file_encodings(ckpt)
    b, src_b = file_encodings(bbs)
    assert sorted(a) == sorted(b) == ["conv", "fc", "head", "stem"]
    assert src_a["preset"]["name"] == src_b["preset"]["name"] == "moderate"
    for name in a:
        np.testing.assert_array_equal(a[name].weights, b[name].weights)
        np.testing.assert_array_equal(a[name].stored_columns, b[name].stored_columns)
        assert a[name].footprint_bits == b[name].footprint_bits
    # first / last layers stay INT8 (plain, 8 columns); the global top-beta count comes from the header
    assert a["stem"].layout.value == "plain" and (a["stem"].stored_columns == 8).all()
    assert a["head"].layout.value == "plain"
    counts = {r.name: r.n_sensitive_global for r in report.layers if r.role == "prune"}
    assert {n: a[n].n_sensitive_global for n in counts} == counts
    with pytest.raises(InputError, match="does not exist"):
        file_encodings(ckpt.parent / "nothing.bbs.safetensors")


def test_workload_for_variant_shares_encodings_and_keeps_matmuls(net_files):
    geometry, ckpt, bbs, report = net_files
    enc, _ = file_encodings(bbs)
    mm = LayerWorkload(name="attn.matmul0", kind=LayerType.MATMUL, weights=np.ones((4, 8), dtype=np.int16))
    geo = Workload("net", geometry.layers + (mm,))
    vw = workload_for_variant(geo, enc, "moderate")
    by = {layer.name: layer for layer in vw.layers}
    assert by["fc"].encoding is by["fc#1"].encoding is enc["fc"]
    assert by["attn.matmul0"] is mm
    np.testing.assert_array_equal(by["conv"].weights, load_encoded(bbs).decode("conv.weight"))
    assert vw.notes["variant"] == "moderate" and vw.name == "net"
    partial = {k: v for k, v in enc.items() if k != "fc"}
    with pytest.raises(UnsupportedLayerError, match="'fc' of workload 'net' has no encoded weights"):
        workload_for_variant(geometry, partial, "moderate")
    dropped = workload_for_variant(geometry, partial, "moderate", unquantized="drop")
    assert dropped.notes["dropped_fp32_layers"] == ["fc", "fc#1"]
    other = workload(linear("fc", np.ones((3, 3), dtype=np.int16)), name="other")
    with pytest.raises(InputError, match="another model"):
        workload_for_variant(other, enc, "moderate")


def test_pipeline_variants_apply_one_rule_to_shape_only_workloads():
    from bitvert.hardware.workloads_zoo import build_workload

    wl = build_workload("llama", llama={"hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 1,
                                        "num_attention_heads": 4, "num_key_value_heads": 4, "vocab_size": 64,
                                        "seq_len": 8}, seed=0)
    src = PipelineVariants()
    assert src.workload(wl, "int8") is wl
    mod = src.workload(wl, "moderate")
    first, last = mod.layers[0], mod.layers[-1]
    assert first.encoding.layout.value == "plain" and last.encoding.layout.value == "plain"
    mid = mod.layers[1].encoding
    assert mid.layout.value == "bbs_zero_point" and set(np.unique(mid.stored_columns)) <= {4, 8}
    bw = src.workload(wl, "bitwave-w5")
    assert bw.layers[1].encoding.layout.value == "bitwave" and bw.layers[1].encoding.columns == 3


def test_simulated_bits_and_integers_are_the_files(net_files, tmp_path):
    geometry, ckpt, bbs, report = net_files
    from bitvert.hardware.config import load_accelerator
    from bitvert.hardware.targets import target_for

    refs = [target_for(load_accelerator(r), "moderate", label=r) for r in ("stripes", "sparten")]
    rep = simulate(geometry, ["bitvert-moderate"], variants=FileVariants({"moderate": bbs}), references=refs)
    model = load_encoded(bbs)
    rows = {r["layer"]: r for r in rep.to_rows()}
    for name, enc in model.tensors.items():
        layer = name[: -len(".weight")]
        assert rows[layer]["weight_footprint_bits"] == 8 * enc.stats()["total_bytes"]
    with pytest.raises(InputError, match="no encoded file for variant 'conservative'"):
        simulate(geometry, ["bitvert-conservative"], variants=FileVariants({"moderate": bbs}), references=refs)


def test_file_variants_decode_each_file_once_per_geometry(net_files, monkeypatch):
    import bitvert.hardware.variants as variants

    geometry, ckpt, bbs, _ = net_files
    calls: list[str] = []
    real = variants.file_encodings
    monkeypatch.setattr(variants, "file_encodings", lambda p: calls.append(str(p)) or real(p))
    src = FileVariants({"moderate": bbs, "ckpt": ckpt})
    first = src.workload(geometry, "moderate")
    assert src.workload(geometry, "moderate") is first and len(calls) == 1  # a check, then the simulation
    other = src.workload(geometry, "ckpt")
    assert other is not first and len(calls) == 2
    again = src.workload(geometry, "moderate")  # only the last one is kept
    assert again is not first and len(calls) == 3
    assert all(np.array_equal(a.weights, b.weights) for a, b in zip(first.layers, again.layers))


@pytest.mark.parametrize("which", ["ckpt", "bbs"])
def test_cli_simulate_checkpoint(net_files, tmp_path, monkeypatch, which):
    geometry, ckpt, bbs, report = net_files
    import bitvert.cli.simulate as cli_sim

    monkeypatch.setattr(cli_sim, "_model_workload", lambda name, batch, seq_len, att: geometry)
    path = ckpt if which == "ckpt" else bbs
    r = CliRunner().invoke(main, ["simulate", "--checkpoint", str(path), "--out", str(tmp_path), "--no-plots"])
    assert r.exit_code == 0, r.output
    s = json.loads((tmp_path / "summary.json").read_text())
    assert list(s["accelerators"]) == ["bitvert-moderate"]
    assert s["accelerators"]["bitvert-moderate"]["per_workload"]["net"]["variant"] == "moderate"
    assert set(s["references_run_implicitly"]) == {"stripes", "sparten"}
    r = CliRunner().invoke(main, ["simulate", "--checkpoint", str(path), "--accelerators", "stripes,pragmatic",
                                  "--out", str(tmp_path)])
    assert r.exit_code == 2 and "can run variant 'moderate'" in r.output
    r = CliRunner().invoke(main, ["simulate", "--checkpoint", str(path), "--workload", "vgg16", "--out",
                                  str(tmp_path)])
    assert r.exit_code == 2 and "--checkpoint simulates one model" in r.output


def test_model_encodings_rejects_other_objects():
    with pytest.raises(InputError, match="EncodedModel"):
        model_encodings({"a": 1})
    with pytest.raises(InputError, match="EncodedTensor"):
        weight_encoding(np.zeros(3), "x")
    with pytest.raises(ConfigError):
        simulate(workload(linear("fc", np.ones((4, 4), dtype=np.int16))), ["bitvert"])
