"""Hardware-aware global binary pruning (Algorithm 2): selection, effective bits, fidelity order."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from bitvert.core.analysis import free_columns
from bitvert.core.grouping import make_layout
from bitvert.errors import ConfigError, InputError
from bitvert.pipeline import LayerRole, get_preset, prune_model_, quantize_weight, select_sensitive

WEIGHT_ONLY = {"quant": {"act_bits": None}}


def test_select_sensitive_golden_rounding_up():
    l0 = np.array([9, 1, 8, 2, 7, 3, 6, 4], float)
    l1 = np.array([5, 0.5, 0.4, 0.3])
    # beta 0.25 of 12 channels = 3: 9, 8, 7 (all layer 0) -> 3 rounded up to 4: add 6
    m0, m1 = select_sensitive([l0, l1], 0.25, multiple=4)
    assert m0.tolist() == [True, False, True, False, True, False, True, False]
    assert m1.tolist() == [False] * 4
    # beta 0.5 = 6: 9, 8, 7, 6, 5, 4 -> layer 0 has 5 -> 8 (all), layer 1 has 1 -> 4 (all)
    m0, m1 = select_sensitive([l0, l1], 0.5, multiple=4)
    assert m0.all() and m1.all()
    # no rounding: exactly the global top 6
    m0, m1 = select_sensitive([l0, l1], 0.5, multiple=1)
    assert m0.tolist() == [True, False, True, False, True, False, True, True]
    assert m1.tolist() == [True, False, False, False]


def test_small_layer_all_or_none():
    small = np.full(10, 5.0)  # fewer than 32 channels, all large
    big = np.linspace(0, 1, 100)
    # ceil(0.05 * 110) = 6 channels, all in the small layer -> rounded to 32, capped at 10: all
    ms, mb = select_sensitive([small, big], 0.05, 32)
    assert ms.all() and not mb.any()
    # ceil(0.01 * 110) = 2, both the top of `big` once small scores are low -> small keeps none
    ms, mb = select_sensitive([np.zeros(10), big], 0.01, 32)
    assert not ms.any() and mb.sum() == 32 and mb[-32:].all()


def test_ties_and_extremes():
    m0, m1 = select_sensitive([np.ones(3), np.ones(3)], 0.5, 1)  # ties: earlier layer, lower index
    assert m0.tolist() == [True, True, True] and not m1.any()
    assert not any(m.any() for m in select_sensitive([np.ones(40), np.ones(7)], 0.0, 32))
    assert all(m.all() for m in select_sensitive([np.ones(40), np.ones(7)], 1.0, 32))
    # 0.2 * 100 is 20.000000000000004 in floating point: must still select 20
    (m,) = select_sensitive([np.arange(100.0)], 0.2, 1)
    assert m.sum() == 20
    assert select_sensitive([], 0.5) == []


def test_select_sensitive_rejects():
    with pytest.raises(ConfigError, match="fraction"):
        select_sensitive([np.ones(3)], 1.2)
    with pytest.raises(ConfigError, match="multiple"):
        select_sensitive([np.ones(3)], 0.5, 0)
    with pytest.raises(InputError, match="NaN"):
        select_sensitive([np.array([1.0, np.nan])], 0.5)
    with pytest.raises(InputError, match="at least one"):
        select_sensitive([np.ones(0)], 0.5)


@settings(max_examples=80, deadline=None)
@given(
    st.lists(st.lists(st.integers(0, 20), min_size=1, max_size=70), min_size=1, max_size=5),
    st.floats(0, 1),
    st.sampled_from([1, 4, 32]),
)
def test_select_sensitive_properties(raw, beta, multiple):
    scores = [np.array(r, float) for r in raw]
    masks = select_sensitive(scores, beta, multiple)
    exact = select_sensitive(scores, beta, 1)
    n_total = sum(len(r) for r in raw)
    assert sum(int(m.sum()) for m in exact) == min(n_total, int(np.ceil(round(beta * n_total, 9))))
    for s, m, e in zip(scores, masks, exact):
        assert (m | ~e).all()  # contains the global top-beta channels
        k, ke = int(m.sum()), int(e.sum())
        assert k == len(s) or k % multiple == 0  # a multiple of C_H, or the whole layer
        assert k == min(len(s), -(-ke // multiple) * multiple)  # rounded up, no more
        if m.any() and (~m).any():
            assert s[m].min() >= s[~m].max()  # filled with the layer's next-highest scores


def _mlp() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 96), nn.ReLU(), nn.Linear(96, 10))


def test_effective_bits_golden_moderate():
    model = _mlp()
    w_mid = model[2].weight.detach().clone()
    report = prune_model_(model, get_preset("moderate", **WEIGHT_ONLY))
    roles = [(r.name, r.role) for r in report.layers]
    assert roles == [("0", "int8"), ("2", "prune"), ("4", "int8")]
    mid = report.layers[1]
    # beta 0.2 of the 96 channels of the only pruned layer: ceil(19.2) = 20 -> 32
    assert (mid.n_sensitive_global, mid.n_sensitive) == (20, 32)
    # 32 sensitive rows x 64 x 8 bits + 64 normal rows x 2 groups x (32 x 4 + 8) bits
    assert mid.weight_bits_total == 32 * 64 * 8 + 64 * 2 * (32 * 4 + 8)
    assert mid.effective_bits == pytest.approx(33792 / 6144)
    assert report.effective_bits == pytest.approx((4096 * 8 + 33792 + 960 * 8) / (4096 + 6144 + 960))
    # the sensitive channels are the 32 with the largest scale (max |w|) and stay exactly INT8
    amax = w_mid.abs().amax(dim=1)
    assert set(np.flatnonzero(mid.sensitive)) == set(torch.argsort(amax, descending=True)[:32].tolist())
    q8, _ = quantize_weight(w_mid)
    assert np.array_equal(mid.q[mid.sensitive], q8.numpy()[mid.sensitive])
    assert not np.array_equal(mid.q[~mid.sensitive], q8.numpy()[~mid.sensitive])
    # every normal group really has >= N = 4 free columns once the offset is added
    layout = make_layout(mid.shape, "linear", 32)
    stored = layout.group(mid.q) + mid.metadata["constant"][:, None]
    fc = free_columns(stored.astype(np.int16), layout.lengths(), 8, cap=3)
    assert (fc[mid.metadata["pruned"]] >= 4).all()
    assert not mid.metadata["pruned"][np.repeat(mid.sensitive, 2)].any()
    # the module now holds q * scale
    assert torch.allclose(model[2].weight.detach(), torch.from_numpy(mid.q).float() * torch.from_numpy(mid.scale)[:, None])


@pytest.mark.parametrize("name, bits", [("llm-moderate", 4.25), ("llm-conservative", 6.25)])
def test_llm_presets_have_the_paper_bits(name, bits):
    torch.manual_seed(1)
    model = nn.Sequential(nn.Linear(128, 64), nn.Linear(64, 32))
    report = prune_model_(model, get_preset(name, **WEIGHT_ONLY))
    assert report.effective_bits == pytest.approx(bits)
    assert report.sensitive_channel_fraction == 0


def test_remainder_dense_policy_bits():
    model = nn.Sequential(nn.Linear(40, 8), nn.Linear(8, 8))
    report = prune_model_(model, get_preset("llm-moderate", remainder="dense", **WEIGHT_ONLY))
    first = report.layers[0]
    assert first.weight_bits_total == 8 * (32 * 4 + 8 + 8 * 8)  # per row: one pruned group + 8 dense weights
    # the second layer's rows are single 8-weight groups: 4 x 8 + 8 = 40 bits < 64 dense bits
    assert report.layers[1].weight_bits_total == 8 * 40


def test_unprofitable_layers_stay_int8(cnn):
    report = prune_model_(cnn, get_preset("conservative", rules={"stem": "prune"}, **WEIGHT_ONLY))
    stem = report.layers[0]
    # groups of 3 weights: 6 x 3 + 8 = 26 bits > 24 dense bits, so the stem is not pruned
    assert stem.role == "int8" and "too short" in stem.reason and stem.effective_bits == 8
    # depthwise 3x3 filters are grouped along the window: 9 weights per group
    dw = report.layers[1]
    assert dw.layout is None or dw.layout["along_window"]


def test_conv1d_and_tied_head(block, block_batches):
    ref = block(block_batches[0])
    report = prune_model_(block, get_preset("llm-moderate", quant={"act_bits": 8}), calibration=block_batches)
    by = {r.name: r for r in report.layers}
    fc2 = by["fc2"]
    assert fc2.kind == "linear_in_out" and fc2.shape == (256, 64) and fc2.n_channels == 64
    assert fc2.effective_bits == pytest.approx(4.25)
    assert torch.allclose(block.fc2.weight.detach(), torch.from_numpy(fc2.q).float() * torch.from_numpy(fc2.scale))
    assert block.lm_head.weight is not block.embed.weight  # untied: the embedding table is untouched
    assert report.effective_bits == pytest.approx(4.25)
    out = block(block_batches[0])
    rel = float(((out - ref).norm() / ref.norm()).detach())
    assert 0 < rel < 0.5
    assert set(report.activation_ranges) == set(by)


def test_rtn_baseline_uses_fewer_bits_on_normal_channels():
    model = _mlp()
    report = prune_model_(model, get_preset("rtn-moderate", **WEIGHT_ONLY))
    mid = report.layers[1]
    assert mid.n_sensitive == 32
    assert int(np.abs(mid.q[~mid.sensitive]).max()) == 7  # 4-bit symmetric: [-7, 7]
    assert int(np.abs(mid.q[mid.sensitive]).max()) == 127
    assert mid.weight_bits_total == 64 * (32 * 8 + 64 * 4)
    assert set(np.unique(mid.channel_bits)) == {4, 8}


def _laplace_model(seed: int) -> nn.Module:
    g = torch.Generator().manual_seed(seed)
    model = nn.Sequential(nn.Linear(256, 128), nn.Linear(128, 256), nn.Linear(256, 128), nn.Linear(128, 64))
    lap = torch.distributions.Laplace(0.0, 0.02)
    with torch.no_grad():
        for i, layer in enumerate(model):
            torch.manual_seed(seed * 10 + i)
            w = lap.sample(layer.weight.shape)
            # a few channels with outliers (large scale), as in real models
            rows = torch.randint(0, w.shape[0], (4,), generator=g)
            w[rows] *= 4
            layer.weight.copy_(w)
    return model


@pytest.mark.parametrize("seed", [0, 1])
def test_fidelity_order_on_weights(seed):
    """moderate beats BitWave and RTN at its bits; conservative loses less than moderate."""
    sq = {}
    for name in ("conservative", "moderate", "bitwave-moderate", "rtn-moderate"):
        model = _laplace_model(seed)
        sq[name] = prune_model_(model, get_preset(name, **WEIGHT_ONLY)).weight_sqnr_db
    assert sq["conservative"] > sq["moderate"] > sq["bitwave-moderate"]
    assert sq["moderate"] > sq["rtn-moderate"]


def test_errors(cnn):
    with pytest.raises(ConfigError, match="did you mean"):
        prune_model_(cnn, "moderat")
    with pytest.raises(ConfigError, match="calibration"):
        prune_model_(cnn, "moderate")
    with pytest.raises(InputError, match="nn.Module"):
        prune_model_("model", "moderate")  # type: ignore[arg-type]


def test_int8_preset_and_table(cnn, cnn_batches):
    report = prune_model_(cnn, "int8", calibration=cnn_batches, progress=True)
    assert report.effective_bits == 8.0 and report.compression_vs_int8 == 1.0
    assert all(r.role == "int8" or r.metadata is None for r in report.layers)
    text = report.table()
    assert "model (int8)" in text and "stem" in text
    d = report.to_dict()
    assert d["weight_int_range"] == [-127, 127] and len(d["layers"]) == 4


def test_fp32_rule_leaves_layer_untouched(cnn):
    before = cnn.head.weight.detach().clone()
    report = prune_model_(cnn, get_preset("moderate", **WEIGHT_ONLY), rules={"head": None})
    assert torch.equal(cnn.head.weight.detach(), before)
    head = report.layers[-1]
    assert head.role == "fp32" and head.effective_bits is None
    assert report.to_dict()["n_weights_fp32"] == 640
    assert report.n_weights == sum(r.n_weights for r in report.layers[:-1])
    assert copy.deepcopy(report.preset) == report.preset
    assert LayerRole(head.role) is LayerRole.FP32
