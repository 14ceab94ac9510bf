"""Workloads: the paper zoo's shapes, synthetic weights, validation and PyTorch import."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn as nn

from bitvert.errors import ConfigError, InputError, UnsupportedLayerError
from bitvert.hardware.import_torch import import_workload
from bitvert.pipeline.quantize import quantize_weight
from bitvert.hardware.workload import LayerType, LayerWorkload, Workload
from bitvert.hardware.workloads_zoo import (
    PAPER_WORKLOADS,
    _ZOO,
    build_workload,
    llama_specs,
    synthesize_weights,
)
from hw_helpers import linear


def _macs(name: str) -> int:
    # shapes only (no weights drawn): sum of weights x activation rows
    total = 0
    for s in _ZOO[name][0](False):
        rows = s.output_hw[0] * s.output_hw[1] if s.kind in (LayerType.CONV, LayerType.DEPTHWISE) else s.tokens
        total += int(np.prod(s.weight_shape)) * rows * s.repeats
    return total


def test_paper_zoo_layer_counts_and_macs():
    # published figures: VGG-16 15.47 GMAC, ResNet-34 3.66, ResNet-50 4.09 (v1.5), ViT-S/16 4.24 (w/o attention
    # matmuls), ViT-B/16 16.85
    assert _macs("vgg16") == 15_470_264_320
    assert round(_macs("resnet34") / 1e9, 2) == 3.66
    assert round(_macs("resnet50") / 1e9, 2) == 4.09
    assert round(_macs("vit-base") / 1e9, 2) == 16.85
    specs = {n: _ZOO[n][0](False) for n in PAPER_WORKLOADS}
    assert len(specs["vgg16"]) == 16
    assert len(specs["resnet34"]) == 33 + 3 + 1  # 33 convs incl. conv1, 3 downsample, fc
    assert len(specs["resnet50"]) == 49 + 4 + 1
    assert len(specs["vit-small"]) == 1 + 12 * 4 + 1
    assert len(specs["bert-mrpc"]) == 12 * 6 + 2
    # BERT at 128 tokens (MRPC) vs 64 (SST-2): a 768x768 projection costs 768*768*tokens MACs
    q = [s for s in specs["bert-mrpc"] if s.name == "bert.encoder.layer.0.attention.self.query"][0]
    assert q.tokens == 128 and q.weight_shape == (768, 768)
    assert [s for s in specs["bert-sst2"] if s.name.endswith("layer.0.attention.self.query")][0].tokens == 64
    names = [s.name for s in specs["resnet50"]]
    assert names[:4] == ["conv1", "layer1.0.conv1", "layer1.0.conv2", "layer1.0.conv3"]
    assert "layer1.0.downsample.0" in names and names[-1] == "fc"


def test_vit_tokens_and_attention_matmuls():
    specs = _ZOO["vit-small"][0](True)
    qk = [s for s in specs if s.name == "blocks.0.attn.q_kt"][0]
    av = [s for s in specs if s.name == "blocks.0.attn.attn_v"][0]
    # Q K^T per head: 197 x 64 times 64 x 197; A V: 197 x 197 times 197 x 64; 6 heads
    assert qk.weight_shape == (197, 64) and qk.tokens == 197 and qk.repeats == 6
    assert av.weight_shape == (64, 197) and av.tokens == 197


def test_synthetic_weights_are_int8_seeded_and_flagged():
    w1 = build_workload("resnet34", seed=3)
    w2 = build_workload("resnet34", seed=3)
    assert w1.synthetic_weights and w1.describe()["synthetic_weights"] is True
    assert all(np.array_equal(a.weights, b.weights) for a, b in zip(w1.layers, w2.layers))
    for layer in w1.layers:
        assert layer.weights.dtype == np.int16
        assert layer.weights.min() >= -127 and layer.weights.max() <= 127
        assert layer.channel_scale is not None
    w, scale = synthesize_weights((64, 512), np.random.default_rng(0))
    assert np.all(np.abs(w).max(axis=1) == 127)  # per-channel symmetric: each channel reaches 127
    assert (w == 0).mean() < 0.1  # realistic: few zero weights


def test_llama_from_config_and_errors():
    cfg = {"hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2, "num_attention_heads": 4,
           "num_key_value_heads": 2, "vocab_size": 100, "seq_len": 8}
    specs = llama_specs(cfg)
    assert len(specs) == 2 * 7 + 1
    k = [s for s in specs if s.name == "model.layers.0.self_attn.k_proj"][0]
    assert k.weight_shape == (32, 64)  # 2 kv heads x head dim 16
    wl = build_workload("llama", llama=cfg)
    assert wl.seq_len == 8 and wl.layers[0].tokens == 8
    with pytest.raises(ConfigError, match="hidden_sise"):
        llama_specs({"hidden_sise": 3})
    with pytest.raises(ConfigError):
        llama_specs({**cfg, "num_attention_heads": 5})
    with pytest.raises(InputError, match="needs a config"):
        build_workload("llama")
    with pytest.raises(InputError, match="unknown workload"):
        build_workload("alexnet")


def test_layer_validation_errors():
    with pytest.raises(InputError, match="integers"):
        LayerWorkload("x", "linear", np.ones((2, 2), dtype=np.float32))
    with pytest.raises(InputError, match="INT8"):
        LayerWorkload("x", "linear", np.full((2, 2), 300))
    with pytest.raises(InputError, match="4-d"):
        LayerWorkload("x", "conv", np.ones((2, 2), dtype=np.int8))
    with pytest.raises(InputError, match="kind"):
        LayerWorkload("x", "pool", np.ones((2, 2), dtype=np.int8))
    with pytest.raises(InputError, match="batch"):
        LayerWorkload("x", "linear", np.ones((2, 2), dtype=np.int8), batch=0)
    with pytest.raises(InputError, match="input_density"):
        LayerWorkload("x", "linear", np.ones((2, 2), dtype=np.int8), input_density=0.0)
    with pytest.raises(InputError, match="duplicate"):
        Workload("w", (linear("a", np.ones((2, 2))), linear("a", np.ones((2, 2)))))


class _HFConv1D(nn.Module):
    """Minimal stand-in with HuggingFace Conv1D's (in, out) weight layout."""

    def __init__(self, nf: int, nx: int) -> None:
        super().__init__()
        self.nf = nf
        self.weight = nn.Parameter(torch.randn(nx, nf))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x @ self.weight


_HFConv1D.__name__ = "Conv1D"


class _Tiny(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, padding=1)
        self.dw = nn.Conv2d(8, 8, 3, padding=1, groups=8)
        self.head = nn.Linear(8 * 4 * 4, 5)
        self.proj = _HFConv1D(7, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = torch.relu(self.dw(torch.relu(self.stem(x))))
        return self.proj(self.head(y.flatten(1)))


def test_import_torch_layers_by_type_and_exact_name():
    torch.manual_seed(0)
    m = _Tiny()
    wl = import_workload(m, torch.randn(2, 3, 4, 4), name="tiny")
    assert [layer.name for layer in wl.layers] == ["stem", "dw", "head", "proj"]
    stem, dw, head, proj = wl.layers
    assert stem.kind is LayerType.CONV and stem.batch == 2 and stem.output_hw == (4, 4)
    assert dw.kind is LayerType.DEPTHWISE and dw.groups == 8 and dw.macs == 8 * 9 * 2 * 16
    assert head.kind is LayerType.LINEAR and head.tokens == 1 and head.batch == 2
    assert proj.weights.shape == (7, 5)  # (in, out) transposed to PyTorch (out, in)
    assert not wl.synthetic_weights
    assert 0.3 < dw.input_density < 0.8  # post-ReLU input, measured
    q, _ = quantize_weight(m.stem.weight.detach())  # the pipeline's quantizer: the int8 variant's integers
    assert np.array_equal(stem.weights, q.numpy())
    q, _ = quantize_weight(m.proj.weight.detach(), 8, 1)
    assert np.array_equal(proj.weights, q.numpy().T)
    only = import_workload(m, torch.randn(1, 3, 4, 4), include=["head"], exclude=[])
    assert [layer.name for layer in only.layers] == ["head"]
    dropped = import_workload(m, torch.randn(1, 3, 4, 4), exclude=["dw"])
    assert "dw" not in [layer.name for layer in dropped.layers]


def test_import_torch_records_input_masks_that_sparten_costs_exactly():
    torch.manual_seed(0)
    m = _Tiny()
    x = torch.randn(2, 3, 4, 4)
    wl = import_workload(m, x, name="tiny")
    stem = wl.layers[0]
    q = torch.round(x / (x.abs().max() / 127.0))  # per-tensor symmetric INT8 of the real input
    assert np.array_equal(stem.input_mask, (q != 0).numpy())
    for layer in wl.layers:
        assert layer.input_mask is not None, layer.name
        assert layer.input_density == pytest.approx(max(layer.input_mask.mean(), 1 / layer.input_mask.size))
    from bitvert.hardware.simulate import simulate

    rows = simulate(wl, ["sparten"]).rows
    assert [row["extra"]["activations"] for row in rows] == ["mask"] * len(wl.layers)
    # a padding that is not symmetric (even kernel, "same") keeps only the density
    odd = nn.Sequential(nn.Conv2d(3, 4, 2, padding="same"))
    (layer,) = import_workload(odd, torch.randn(1, 3, 5, 5)).layers
    assert layer.input_mask is None and 0 < layer.input_density <= 1
    attn = nn.Sequential()
    attn.add_module("attn", _Attn())
    mm = [la for la in import_workload(attn, torch.randn(3, 5, 8), include_matmuls=True).layers
          if la.kind is LayerType.MATMUL]
    assert all(la.input_mask is not None and la.input_mask.size == la.repeats * la.tokens * la.in_channels_per_group
               for la in mm)
    rows = simulate(Workload(name="a", layers=tuple(mm), batch=1), ["sparten"]).rows
    assert [row["extra"]["activations"] for row in rows] == ["mask"] * len(mm)


def test_import_torch_fails_loudly_on_bad_names():
    m = _Tiny()
    with pytest.raises(UnsupportedLayerError, match="'head.'"):
        import_workload(m, torch.randn(1, 3, 4, 4), include=["head."])
    with pytest.raises(UnsupportedLayerError, match="ReLU|cannot simulate"):
        seq = nn.Sequential(nn.Linear(4, 4), nn.ReLU())
        import_workload(seq, torch.randn(1, 4), include=["1"])
    with pytest.raises(InputError, match="nn.Module"):
        import_workload("resnet", torch.randn(1))
    with pytest.raises(UnsupportedLayerError, match="no nn.Conv2d"):
        import_workload(nn.ReLU(), torch.randn(1, 4))


class _Attn(nn.Module):
    def __init__(self, dim: int = 8, heads: int = 2) -> None:
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, d = x.shape
        q, k, v = self.qkv(x).reshape(b, t, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        a = torch.softmax(q @ k.transpose(-2, -1), dim=-1)
        y = (a @ v).transpose(1, 2).reshape(b, t, d)
        z = torch.nn.functional.scaled_dot_product_attention(q, k, v)
        return self.proj(y + z.transpose(1, 2).reshape(b, t, d))


def test_import_torch_attention_matmuls():
    m = nn.Sequential()
    m.add_module("attn", _Attn())
    x = torch.randn(3, 5, 8)
    plain = import_workload(m, x)
    assert [layer.kind for layer in plain.layers] == [LayerType.LINEAR, LayerType.LINEAR]
    wl = import_workload(m, x, include_matmuls=True)
    mm = [layer for layer in wl.layers if layer.kind is LayerType.MATMUL]
    # q @ k^T, a @ v, then the two products inside scaled_dot_product_attention
    assert [layer.name for layer in mm] == ["attn.matmul0", "attn.matmul1", "attn.matmul2", "attn.matmul3"]
    qk, av = mm[0], mm[1]
    # per head: (5 x 4) @ (4 x 5) and (5 x 5) @ (5 x 4); 3 batch x 2 heads instances
    assert qk.weights.shape == (5, 4) and qk.tokens == 5 and qk.repeats == 6
    assert av.weights.shape == (4, 5) and av.macs == 5 * 5 * 4 * 6
    assert mm[2].macs == qk.macs and mm[3].macs == av.macs
    from bitvert.hardware.simulate import simulate

    s = simulate(wl, ["bitvert-moderate", "stripes"]).to_json()
    assert s["accelerators"]["bitvert-moderate"]["cycles"] > 0


def test_oversized_synthetic_workload_is_refused_before_allocating():
    with pytest.raises(InputError, match="num_hidden_layers"):
        build_workload("llama3-8b")
    specs = llama_specs({"num_hidden_layers": 1, "include_lm_head": False})  # Llama-3-8B defaults
    n = sum(int(np.prod(s.weight_shape)) for s in specs)
    assert n == 4096 * 4096 * 2 + 4096 * 1024 * 2 + 3 * 4096 * 14336  # one Llama-3-8B block: 218 M weights
