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
    ActivationRange,
    LayerRole,
    QuantConfig,
    dequantize_weight,
    get_preset,
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
    s_ref = torch.where(amax / qmax > 0, amax / qmax, torch.ones_like(amax))
    shape = [1] * t.ndim
    shape[axis] = -1
    q_ref = torch.clamp(torch.round(t / s_ref.view(shape)), -qmax, qmax).to(torch.int16)
    assert torch.equal(s, s_ref)
    assert torch.equal(q, q_ref)
    assert torch.equal(dequantize_weight(q, s, axis), q_ref.float() * s_ref.view(shape))


def test_quantize_rows_parallel_and_serial_agree() -> None:
    """Large arrays take the parallel compiled loop, small ones the serial one: the same integers."""
    from bitvert.pipeline._kernels import _quantize_rows_parallel, _quantize_rows_serial

    rows = np.random.default_rng(0).laplace(0, 0.05, (300, 70)).astype(np.float32)
    rows[3, :] = 0.0
    scale = (np.abs(rows).max(axis=1) / 127 * 0.8 + 1e-3).astype(np.float32)  # some weights clip
    np.testing.assert_array_equal(_quantize_rows_parallel(rows, scale, 127), _quantize_rows_serial(rows, scale, 127))


# --------------------------------------------------------------------------- mse observer

def _sse(x: torch.Tensor, lo: float, hi: float, bits: int, symmetric: bool) -> float:
    from bitvert.pipeline.quantize import _range_from, fake_quantize

    r = _range_from(lo, hi, bits, symmetric)
    return float(((fake_quantize(x, r) - x).double() ** 2).sum())


def test_mse_range_golden():
    from bitvert.pipeline.quantize import mse_range

    # values exactly on the 8-bit grid of their own min/max: no error there, so the full range is kept
    grid = torch.arange(256, dtype=torch.float32) * 0.25 - 8.0  # zero point 32, scale 0.25
    assert mse_range(grid, 8, symmetric=False) == (-8.0, 55.75)
    # one value at 40 among 10,000 in [-1, 1]: clipping it would cost 39² = 1521, more than rounding the
    # bulk with the wide step (10,000 · (41/255)² / 12 ≈ 22), so MSE keeps it
    bulk = torch.linspace(-1, 1, 9999)
    lo, hi = mse_range(torch.cat([bulk, torch.tensor([40.0])]), 8, symmetric=False)
    assert 39.0 < hi <= 40.0 and -1.0 <= lo < -0.8  # (lo is within one step of 0: its value hardly matters)
    # a long tail is clipped: a Laplace distribution at 4 bits near 5 b (ACIQ's 5.03 b)
    lap = torch.distributions.Laplace(0.0, 1.0).icdf(torch.linspace(1e-6, 1 - 1e-6, 200_001))
    lo, hi = mse_range(lap, 4, symmetric=True)
    assert 4.5 < hi < 5.6 < float(lap.max())
    # symmetric: Gaussian 8-bit clips at about 4.2 sigma
    x = torch.randn(100_000, generator=torch.Generator().manual_seed(0))
    lo, hi = mse_range(x, 8, symmetric=True)
    assert lo == -hi and 3.8 < hi < 4.5 < float(x.abs().max())
    # 4 bits clip much harder than 8: ACIQ's 2.55 sigma
    assert 2.3 < mse_range(x, 4, symmetric=True)[1] < 2.9


@settings(max_examples=40, deadline=None)
@given(arrays(np.float32, st.integers(1, 3000), elements=st.floats(-1e3, 1e3, width=32)),
       st.integers(2, 8), st.booleans())
def test_mse_range_never_worse_than_minmax(values, bits, symmetric):
    from bitvert.pipeline.quantize import mse_range

    x = torch.from_numpy(values)
    lo, hi = mse_range(x, bits, symmetric)
    lo0, hi0 = float(x.min()), float(x.max())
    assert min(lo0, 0.0) <= lo <= 0.0 <= hi <= max(hi0, 0.0) or symmetric
    assert _sse(x, lo, hi, bits, symmetric) <= _sse(x, lo0, hi0, bits, symmetric) * (1 + 1e-9) + 1e-12


def test_denormal_range_gets_scale_one():
    from bitvert.pipeline.quantize import _range_from, fake_quantize, mse_range

    x = torch.tensor([1e-45, 0.0])  # a scale of 1e-45 / 3 is 0 in float32
    for symmetric in (False, True):
        lo, hi = mse_range(x, 2, symmetric)
        r = _range_from(lo, hi, 2, symmetric)
        assert r.scale == 1.0 and torch.isfinite(fake_quantize(x, r)).all()
        assert _sse(x, lo, hi, 2, symmetric) < 1e-80


def test_mse_range_bad_input():
    from bitvert.pipeline.quantize import mse_range

    with pytest.raises(InputError, match="at least one"):
        mse_range(torch.zeros(0), 8, False)
    with pytest.raises(InputError, match="NaN or inf"):
        mse_range(torch.tensor([1.0, float("nan")]), 8, False)


def test_bounded_sample_keeps_quantiles_under_its_cap():
    from bitvert.pipeline.quantize import _BoundedSample

    gen = torch.Generator().manual_seed(1)
    batches = [torch.randn(3000, generator=gen) * (1 + i % 3) for i in range(10)]
    small = _BoundedSample(cap=1 << 20)
    capped = _BoundedSample(cap=4096)
    for b in batches:
        small.add(b)
        capped.add(b)
    assert torch.equal(small.values(), torch.cat(batches).sort().values)  # below the cap: every value
    kept = capped.values()
    assert kept.numel() <= 4096 and capped.stride > 1
    full = torch.cat(batches)
    q = torch.tensor([0.01, 0.1, 0.5, 0.9, 0.99])
    torch.testing.assert_close(torch.quantile(kept, q), torch.quantile(full, q), atol=0.05, rtol=0.02)


def test_mse_observer_calibrates_and_round_trips():
    model = nn.Sequential(nn.Linear(4, 3), nn.GELU(), nn.Linear(3, 2))
    gen = torch.Generator().manual_seed(2)
    lap = torch.distributions.Laplace(0.0, 1.0)
    batches = [lap.icdf(torch.rand(64, 4, generator=gen) * 0.9998 + 1e-4) for _ in range(3)]
    top = max(float(b.max()) for b in batches)
    cfg = QuantConfig(act_observer="mse", act_bits=4)
    aq = ActivationQuantizer(select_layers(model, cfg))
    ranges = aq.calibrate(model, batches)
    r = ranges["0"]
    assert (r.qmax - r.zero_point) * r.scale < 0.9 * top  # the long tail is clipped at 4 bits
    x = torch.randn(8, 4, generator=gen)
    out = model(x)
    aq.remove()
    # the ranges are the checkpoint's plain numbers: loading them reproduces the quantized model
    again = ActivationQuantizer(select_layers(model, cfg))
    again.load_ranges({k: ActivationRange(**r.to_dict()) for k, r in ranges.items()})
    assert torch.equal(model(x), out)
    again.remove()
    with pytest.raises(ConfigError, match="act_observer"):
        get_preset("int8", quant={"act_observer": "histogram"})
    assert get_preset("int8", quant={"act_observer": "mse"}).quant.act_observer == "mse"


def test_output_observer_keeps_the_range_that_moves_the_output_less():
    torch.manual_seed(3)
    model = nn.Sequential(nn.Linear(6, 6), nn.Linear(6, 6), nn.Linear(6, 3)).eval()
    with torch.no_grad():
        model[1].weight[:, 0] *= 20.0  # channel 0 of layer 1's input carries a lot of the output
    gen = torch.Generator().manual_seed(4)
    lap = torch.distributions.Laplace(0.0, 1.0)
    batches = [lap.icdf(torch.rand(128, 6, generator=gen) * 0.9998 + 1e-4) for _ in range(2)]
    with torch.no_grad():
        ref = [model(b) for b in batches]

    def calibrate(observer: str) -> dict[str, ActivationRange]:
        aq = ActivationQuantizer(select_layers(model, QuantConfig(act_observer=observer, act_bits=4),
                                               first_layer="prune", last_layer="prune"))
        ranges = aq.calibrate(model, batches)
        aq.remove()
        return ranges

    def output_sse(name: str, r: ActivationRange) -> float:
        aq = ActivationQuantizer([l for l in select_layers(model, QuantConfig(act_bits=4)) if l.name == name])
        aq.load_ranges({name: r})
        with torch.no_grad():
            sse = sum(float(((model(b) - f).double() ** 2).sum()) for b, f in zip(batches, ref))
        aq.remove()
        return sse

    minmax, mse, chosen = calibrate("minmax"), calibrate("mse"), calibrate("output")
    assert chosen.keys() == minmax.keys() == {"0", "1", "2"}
    for name in chosen:
        assert minmax[name] != mse[name], name  # 4-bit Laplace inputs: the mse range clips
        errors = [output_sse(name, minmax[name]), output_sse(name, mse[name])]
        assert chosen[name] == (minmax, mse)[int(np.argmin(errors))][name], (name, errors)
    with torch.no_grad():
        assert all(torch.equal(model(b), f) for b, f in zip(batches, ref))  # every hook removed: float again


def test_subnormal_channel_gets_scale_one_and_zero_integers():
    """A channel whose absmax / qmax underflows float32 (hypothesis found 1e-45) is quantized like a zero
    channel (scale 1, integers 0) instead of dividing by a zero scale."""
    w = torch.tensor([[1e-45, 0.0, -1e-45], [0.5, -1.0, 0.25]], dtype=torch.float32)
    q, s = quantize_weight(w, bits=8, axis=0)
    assert s[0].item() == 1.0 and torch.equal(q[0], torch.zeros(3, dtype=torch.int16))
    assert torch.equal(q[1], torch.tensor([64, -127, 32], dtype=torch.int16))
