"""INT8 post-training quantization: weights, layer selection, activation calibration."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from torch import nn

from bitvert.errors import ConfigError, InputError, UnsupportedLayerError
from bitvert.pipeline import (
    ActivationQuantizer,
    LayerRole,
    QuantConfig,
    dequantize_weight,
    quantize_model_,
    quantize_weight,
    select_layers,
    weight_int_range,
)


def test_quantize_weight_golden_per_channel():
    w = torch.tensor([[0.5, -1.27, 0.004], [0.0, 0.0, 0.0], [2.54, 1.0, -0.01]])
    q, s = quantize_weight(w)
    # channel 0: scale 1.27/127 = 0.01; 0.004/0.01 = 0.4 -> 0
    # channel 2: scale 0.02; 1.0/0.02 = 50, -0.01/0.02 = -0.5 -> -0 (half to even)
    assert q.tolist() == [[50, -127, 0], [0, 0, 0], [127, 50, 0]]
    assert s.tolist() == pytest.approx([0.01, 1.0, 0.02])
    assert q.dtype == torch.int16


def test_quantize_weight_per_tensor_and_axis1():
    w = torch.tensor([[1.0, -2.0], [0.5, 0.25]])
    q, s = quantize_weight(w, granularity="per_tensor")
    assert s.tolist() == pytest.approx([2 / 127, 2 / 127])
    assert q.tolist() == [[64, -127], [32, 16]]  # 63.5 -> 64 (half to even), 15.875 -> 16
    q1, s1 = quantize_weight(w, axis=1)  # output channels are columns (HF Conv1D)
    assert s1.tolist() == pytest.approx([1 / 127, 2 / 127])
    assert q1[:, 0].tolist() == [127, 64]
    assert q1[:, 1].tolist() == [-127, 16]
    back = dequantize_weight(q1, s1, axis=1)
    assert torch.allclose(back, w, atol=1 / 127)


def test_low_bit_range():
    assert weight_int_range(8) == (-127, 127)
    assert weight_int_range(4) == (-7, 7)
    q, s = quantize_weight(torch.tensor([[0.7, -0.35, 0.1]]), bits=4)
    assert s.tolist() == pytest.approx([0.1])
    assert q.tolist() == [[7, -4, 1]]  # -3.5 -> -4 (half to even)


@settings(max_examples=60, deadline=None)
@given(
    arrays(np.float32, st.tuples(st.integers(1, 6), st.integers(1, 9)),
           elements=st.floats(-100, 100, width=32)),
    st.integers(2, 8),
    st.sampled_from(["per_channel", "per_tensor"]),
)
def test_quantize_properties(w, bits, gran):
    t = torch.from_numpy(w)
    q, s = quantize_weight(t, bits=bits, granularity=gran)
    lo, hi = weight_int_range(bits)
    assert int(q.min()) >= lo and int(q.max()) <= hi  # -2**(b-1) never occurs
    err = (dequantize_weight(q, s) - t).abs()
    assert bool((err <= s[:, None] / 2 + 1e-5 * s[:, None] + 1e-12).all())
    if gran == "per_channel":
        nonzero = t.abs().amax(dim=1) > 0
        assert bool((q.abs().amax(dim=1)[nonzero] == hi).all())  # each channel uses its full range


@pytest.mark.parametrize(
    "bad, msg",
    [
        (torch.tensor([[1, 2]]), "floating point"),
        (torch.tensor([[float("nan"), 1.0]]), "NaN"),
        (torch.zeros(0, 3), "empty"),
        (np.ones((2, 2)), "torch.Tensor"),
    ],
)
def test_quantize_weight_rejects(bad, msg):
    with pytest.raises(InputError, match=msg):
        quantize_weight(bad)


def test_quantize_weight_rejects_bad_args():
    with pytest.raises(InputError, match="axis"):
        quantize_weight(torch.ones(2, 2), axis=2)
    with pytest.raises(InputError, match="bits"):
        quantize_weight(torch.ones(2, 2), bits=9)
    with pytest.raises(InputError, match="granularity"):
        quantize_weight(torch.ones(2, 2), granularity="per_row")  # type: ignore[arg-type]


def test_select_layers_roles_and_kinds(block):
    layers = select_layers(block)
    names = [l.name for l in layers]
    assert names == ["qkv", "proj", "fc1", "fc2", "lm_head"]
    kinds = {l.name: (l.kind, l.out_axis) for l in layers}
    assert kinds["fc2"] == ("linear_in_out", 1)
    assert kinds["qkv"] == ("linear", 0)
    roles = {l.name: (l.role, l.reason) for l in layers}
    assert roles["qkv"] == (LayerRole.INT8, "first_layer")
    assert roles["lm_head"] == (LayerRole.INT8, "last_layer")
    assert roles["proj"] == (LayerRole.PRUNE, "default")


def test_select_layers_regex_rules(block):
    cfg4 = QuantConfig(weight_bits=4)
    layers = select_layers(
        block,
        rules={r"fc\d": cfg4, "lm_head": None, "qkv": "prune", "nothing.*": "int8"},
        first_layer="fp32",
    )
    by = {l.name: l for l in layers}
    assert by["fc1"].config.weight_bits == 4 and by["fc1"].role is LayerRole.PRUNE
    assert by["lm_head"].role is LayerRole.FP32  # None = skip beats the last-layer rule
    assert by["qkv"].role is LayerRole.PRUNE  # explicit rule beats the first-layer rule
    assert by["proj"].config.weight_bits == 8


def test_select_layers_errors(block):
    with pytest.raises(ConfigError, match="regular expression"):
        select_layers(block, rules={"fc[": "int8"})
    with pytest.raises(ConfigError, match="layer rule"):
        select_layers(block, rules={"fc1": "sparse"})
    with pytest.raises(ConfigError, match="first_layer"):
        select_layers(block, first_layer="dense")
    with pytest.raises(UnsupportedLayerError, match="no nn.Linear"):
        select_layers(nn.Sequential(nn.ReLU(), nn.LayerNorm(3)))


def test_conv_layers_including_depthwise(cnn):
    layers = select_layers(cnn)
    assert [(l.name, l.kind, l.role) for l in layers] == [
        ("stem", "conv", LayerRole.INT8),
        ("dw", "conv", LayerRole.PRUNE),
        ("pw", "conv", LayerRole.PRUNE),
        ("head", "linear", LayerRole.INT8),
    ]


def test_activation_calibration_golden():
    lin = nn.Linear(2, 1, bias=False)
    model = nn.Sequential(lin)
    layers = select_layers(model)
    aq = ActivationQuantizer(layers)
    ranges = aq.calibrate(model, [torch.tensor([[-1.0, 0.5]]), torch.tensor([[3.0, 0.0]])])
    r = ranges["0"]
    # affine 8-bit over [-1, 3]: scale 4/255, zero point round(1 / (4/255)) = round(63.75) = 64
    assert r.scale == pytest.approx(4 / 255)
    assert (r.zero_point, r.qmin, r.qmax) == (64, 0, 255)
    seen = []
    lin.register_forward_pre_hook(lambda m, a: seen.append(a[0].clone()))
    model(torch.tensor([[0.1, 10.0]]))
    # 0.1 -> round(0.1*63.75)=6 -> 6*4/255; 10 clamps to the top level (255-64)*4/255
    assert seen[-1].tolist()[0] == pytest.approx([6 * 4 / 255, 191 * 4 / 255])
    aq.remove()
    model(torch.tensor([[0.1, 10.0]]))
    assert seen[-1].tolist()[0] == pytest.approx([0.1, 10.0])


def test_symmetric_and_percentile_observers():
    model = nn.Sequential(nn.Linear(4, 1))
    cfg = QuantConfig(act_symmetric=True)
    aq = ActivationQuantizer(select_layers(model, cfg))
    r = aq.calibrate(model, [torch.tensor([[-2.0, 1.0, 0.0, 0.5]])])["0"]
    assert (r.scale, r.zero_point, r.qmin, r.qmax) == (pytest.approx(2 / 127), 0, -127, 127)
    aq.remove()  # otherwise its hook would clamp what the next quantizer observes
    cfg = QuantConfig(act_observer="percentile", act_percentile=100.0)
    aq = ActivationQuantizer(select_layers(model, cfg))
    r = aq.calibrate(model, [torch.tensor([[-1.0, 0.0, 0.0, 1.0]]), torch.tensor([[-3.0, 0.0, 0.0, 3.0]])])["0"]
    assert r.scale == pytest.approx(4 / 255)  # mean of per-batch extremes: [-2, 2]
    with pytest.raises(InputError, match="no batches"):
        aq.calibrate(model, [])


def test_quantize_model_int8_baseline(cnn, cnn_batches):
    x = cnn_batches[0]
    ref = cnn(x)
    model = copy.deepcopy(cnn)
    states, aq = quantize_model_(model, calibration=cnn_batches)
    assert aq is not None and len(states) == 4
    out = model(x)
    rel = float(((out - ref).norm() / ref.norm()).detach())
    assert 0 < rel < 0.05
    for s in states:
        w = s.layer.module.weight.detach()
        assert torch.equal(w, dequantize_weight(s.q, s.scale, s.layer.out_axis))
        assert int(s.q.abs().max()) <= 127


def test_quantize_model_needs_calibration_for_activations(cnn):
    with pytest.raises(ConfigError, match="calibration"):
        quantize_model_(cnn)
    states, aq = quantize_model_(cnn, QuantConfig(act_bits=None))
    assert aq is None and len(states) == 4


def test_tied_weight_is_untied_before_quantizing(block, block_batches):
    emb_before = block.embed.weight.detach().clone()
    quantize_model_(block, calibration=block_batches)
    assert block.lm_head.weight is not block.embed.weight
    assert torch.equal(block.embed.weight.detach(), emb_before)  # the embedding table stays FP32
    assert not torch.equal(block.lm_head.weight.detach(), emb_before)


def test_config_rejects_unknown_fields():
    with pytest.raises(Exception, match="extra"):
        QuantConfig(weight_bitz=8)  # type: ignore[call-arg]
    with pytest.raises(Exception):
        QuantConfig(weight_bits=9)


@settings(max_examples=40, deadline=None)
@given(
    arrays(np.float32, st.tuples(st.integers(1, 5), st.integers(1, 4), st.integers(1, 3)),
           elements=st.floats(-10, 10, width=32)),
    st.integers(0, 2),
    st.integers(2, 8),
)
def test_fused_kernel_matches_plain_torch(w, axis, bits):
    """The numba path equals the textbook tensor formula, bit for bit, on any axis."""
    t = torch.from_numpy(w)
    q, s = quantize_weight(t, bits=bits, axis=axis)
    qmax = 2 ** (bits - 1) - 1
    dims = tuple(d for d in range(t.ndim) if d != axis)
    amax = t.abs().amax(dim=dims)
    s_ref = torch.where(amax > 0, amax / qmax, torch.ones_like(amax))
    shape = [1] * t.ndim
    shape[axis] = -1
    q_ref = torch.clamp(torch.round(t / s_ref.view(shape)), -qmax, qmax).to(torch.int16)
    assert torch.equal(s, s_ref)
    assert torch.equal(q, q_ref)
    assert torch.equal(dequantize_weight(q, s, axis), q_ref.float() * s_ref.view(shape))
