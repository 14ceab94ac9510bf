"""output_error sensitivity and the target_bits bit budget (bitvert.pipeline.budget)."""

from __future__ import annotations

import copy
import json
import re

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from safetensors import safe_open

from bitvert.codec import decode
from bitvert.codec.checkpoint import encode_checkpoint
from bitvert.core.grouping import make_layout
from bitvert.errors import ConfigError, FormatError
from bitvert.pipeline import (
    IntLayer,
    get_preset,
    load_pruned,
    prune_int_layers,
    prune_model_,
    quantize_weight,
    save_pruned,
    to_checkpoint,
    select_layers,
)
from bitvert.pipeline.budget import (
    LayerBudget,
    allocate_columns,
    allowed_columns,
    budget_range,
    channel_output_errors,
    layer_budget,
)
from bitvert.pipeline.calibration import collect_hessians
from bitvert.pipeline.global_prune import select_sensitive
from bitvert.pruning import prune
from bitvert.tensorfile import save_tensors


def _hessian(rng: np.random.Generator, n: int) -> torch.Tensor:
    x = rng.standard_normal((4 * n, n)) * rng.uniform(0.2, 3.0, n)
    return torch.from_numpy(x.T @ x)


def test_output_error_is_e_h_et_by_hand() -> None:
    rng = np.random.default_rng(0)
    w = torch.from_numpy(rng.laplace(size=(6, 64)).astype(np.float32))
    q, s = quantize_weight(w)
    h = _hessian(rng, 64)
    preset = get_preset("moderate")
    got = channel_output_errors(q, s, w, "linear", 0, h, preset, 8, [2, 4])
    for n in (2, 4):
        pq = prune(q.numpy(), preset.prune_config(8, columns=n), kind="linear").weights
        e = (q.numpy() - pq) * s.numpy()[:, None].astype(np.float64)
        want = np.einsum("ki,ij,kj->k", e, h.numpy(), e)
        np.testing.assert_allclose(got[n], want, rtol=1e-10)
    assert (got[4] >= got[2]).all()


def _int_layers(seed: int = 0) -> list[IntLayer]:
    rng = np.random.default_rng(seed)
    out = []
    for i, (k, n) in enumerate([(64, 96), (96, 64), (128, 96), (32, 128), (48, 64)]):
        w = torch.from_numpy((rng.laplace(size=(k, n)) * rng.uniform(0.2, 2.0, (k, 1))).astype(np.float32))
        q, s = quantize_weight(w)
        out.append(IntLayer(f"l{i}", "linear", q.numpy(), s.numpy(), 0, w.numpy()))
    return out


def _hessians(layers: list[IntLayer], seed: int = 1) -> dict[str, torch.Tensor]:
    rng = np.random.default_rng(seed)
    return {l.name: _hessian(rng, l.q.shape[1]) for l in layers}


def test_output_error_selects_the_globally_worst_channels() -> None:
    layers = _int_layers()
    hs = _hessians(layers)
    preset = get_preset("moderate", sensitivity="output_error", channel_multiple=1, first_layer="prune",
                        last_layer="prune")
    rep = prune_int_layers(layers, preset, hessians=hs)
    scores = np.concatenate([channel_output_errors(torch.from_numpy(l.q.astype(np.int16)), torch.from_numpy(l.scale),
                                                   torch.from_numpy(l.weight), "linear", 0, hs[l.name], preset, 8,
                                                   [4])[4] for l in layers])
    chosen = np.concatenate([r.sensitive for r in rep.layers])
    n = chosen.sum()
    assert n == int(np.ceil(0.2 * scores.size))
    assert set(np.flatnonzero(chosen)) == set(np.argsort(-scores, kind="stable")[:n])
    # per-layer rounding to 32 still applies with the default multiple
    rounded = prune_int_layers(layers, get_preset(preset, channel_multiple=32), hessians=hs)
    assert all(r.n_sensitive % 32 == 0 or r.n_sensitive == r.n_channels for r in rounded.layers)
    with pytest.raises(ConfigError, match="needs the layers' input Hessians"):
        prune_int_layers(layers, preset)


@pytest.mark.parametrize("preset_name", ["llm-moderate", "moderate", "rtn-moderate", "bitwave-moderate",
                                         "conservative"])
def test_target_bits_is_reached_on_int_layers(preset_name: str) -> None:
    layers = _int_layers()
    hs = _hessians(layers)
    base = get_preset(preset_name, first_layer="prune", last_layer="prune")
    ref = prune_int_layers(layers, base)
    for target in (4.1, 5.0, ref.effective_bits, 6.3):
        try:
            rep = prune_int_layers(layers, get_preset(base, target_bits=target), hessians=hs)
        except ConfigError as exc:  # outside this model's range: the message says so
            assert "outside" in str(exc) and f"target_bits={target:g}" in str(exc)
            continue
        assert target - 0.02 <= rep.effective_bits <= target + 1e-12
        split = [r for r in rep.layers if len(r.columns) > 1]
        assert len(split) <= 1 and all(len(r.columns) <= 3 for r in split)
        for r in rep.layers:
            assert set(r.columns) <= {1, 2, 3, 4, 5}
            assert sum(r.columns.values()) == r.n_channels - r.n_sensitive


def _total_error(rep, hs) -> float:
    """Σ tr(E H Eᵀ) over layers, E the float change of the INT8 weights (rows in grouping order)."""
    total = 0.0
    for r, l in zip(rep.layers, _int_layers()):
        e = (l.q.astype(np.float64) - r.q) * l.scale[:, None]
        total += float(np.einsum("ki,ij,kj->", e, hs[l.name].numpy(), e))
    return total


def test_budget_at_moderates_bits_loses_no_more_than_uniform_n() -> None:
    layers = _int_layers()
    hs = _hessians(layers)
    base = get_preset("llm-moderate")
    uniform = prune_int_layers(layers, base)
    budget = prune_int_layers(layers, get_preset(base, target_bits=uniform.effective_bits), hessians=hs)
    assert budget.effective_bits <= uniform.effective_bits + 1e-12
    assert _total_error(budget, hs) <= _total_error(uniform, hs)


def test_allocation_is_optimal_on_a_toy_problem() -> None:
    """Two layers of 2 channels, N in {1, 2}: the budget goes to the cheapest error per bit."""
    a = LayerBudget("a", [1, 2], errors=np.array([[1.0, 1.0], [3.0, 2.0]]), bits=np.array([[70, 70], [60, 60]]))
    b = LayerBudget("b", [1, 2], errors=np.array([[0.0, 0.0], [10.0, 10.0]]), bits=np.array([[70, 70], [60, 60]]))
    got = allocate_columns([a, b], fixed_bits=0, n_weights=40, target_bits=260 / 40)
    assert got["a"].tolist() == [2, 2] and got["b"].tolist() == [1, 1]
    got = allocate_columns([a, b], fixed_bits=0, n_weights=40, target_bits=270 / 40)
    assert got["a"].tolist() == [1, 2] and got["b"].tolist() == [1, 1]  # channel 1 is cheaper per bit
    with pytest.raises(ConfigError, match=r"outside \[6.0000, 7.0000\]"):
        allocate_columns([a, b], fixed_bits=0, n_weights=40, target_bits=7.5)


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 10_000), frac=st.floats(0.0, 1.0))
def test_budget_property_within_tolerance(seed: int, frac: float) -> None:
    rng = np.random.default_rng(seed)
    budgets = []
    for i in range(int(rng.integers(1, 5))):
        k = int(rng.integers(1, 40))
        cols = [1, 2, 3, 4, 5]
        per_ch = int(rng.integers(8, 200))
        bits = np.stack([np.full(k, per_ch * (8 - n) + 8, dtype=np.int64) for n in cols])
        err = np.cumsum(rng.exponential(size=(5, k)), axis=0)
        budgets.append(LayerBudget(f"l{i}", cols, err, bits))
    n_w = int(sum(b.bits.shape[1] * ((b.bits[0, 0] - 8) // 7) for b in budgets))
    hi = sum(int(b.bits[0].sum()) for b in budgets) / n_w
    lo = sum(int(b.bits[-1].sum()) for b in budgets) / n_w
    target = lo + frac * (hi - lo)
    got = allocate_columns(budgets, 0, n_w, target)
    total = sum(int(b.bits[np.searchsorted(b.columns, got[b.name]), np.arange(b.bits.shape[1])].sum())
                for b in budgets) / n_w
    step = max(int((b.bits[i] - b.bits[i + 1]).max()) for b in budgets for i in range(4)) / n_w
    assert target - step - 1e-9 <= total <= target + 1e-9


def test_model_budget_checkpoint_codec_round_trip(block, block_batches, tmp_path) -> None:
    preset = get_preset("llm-moderate", target_bits=5.0)
    model = copy.deepcopy(block)
    rep = prune_model_(model, preset, calibration=block_batches)
    assert 4.98 <= rep.effective_bits <= 5.0
    assert len({n for r in rep.layers for n in r.columns}) > 1  # layers got different N
    assert "N" in rep.table().splitlines()[0]
    summary = rep.to_dict()
    assert all("columns" in d for d in summary["layers"])
    path = save_pruned(tmp_path / "p.safetensors", model, rep, {"name": "tiny"})
    ckpt = load_pruned(path)
    enc = encode_checkpoint(ckpt)
    for layer, rec in zip(ckpt.layers, rep.quantized_layers):
        t = enc.tensors[f"{layer.name}.weight"]
        np.testing.assert_array_equal(decode(t), rec.q)
        # the encoder stores each normal channel at 8 - N columns: exact bits = the effective-bits count
        layout = make_layout(rec.shape, rec.kind, 32)
        width = np.zeros(rec.n_channels, dtype=np.int64)
        width[t.channel_order] = np.repeat([c.columns for c in t.chunks], [c.channels for c in t.chunks])
        np.testing.assert_array_equal(width, rec.channel_bits)
        assert layout.n_channels == rec.n_channels
    # a version-2 reader's view: N must be the preset's; this file has other N, so claiming v2 is refused
    with safe_open(str(path), framework="pt") as f:
        meta = f.metadata()
        tensors = {k: f.get_tensor(k) for k in f.keys()}
    save_tensors(tmp_path / "v2.safetensors", tensors, dict(meta, format_version="2"))
    with pytest.raises(FormatError, match="stores normal channels with N"):
        load_pruned(tmp_path / "v2.safetensors")
    header = json.loads(meta["bitvert"])
    assert header["layers"][0]["columns"]


def test_cnn_budget_with_sensitive_channels(cnn, cnn_batches) -> None:
    base = get_preset("moderate")
    ref = prune_model_(copy.deepcopy(cnn), base, calibration=cnn_batches)
    rep = prune_model_(copy.deepcopy(cnn), get_preset(base, target_bits=ref.effective_bits), calibration=cnn_batches)
    assert ref.effective_bits - 0.02 <= rep.effective_bits <= ref.effective_bits + 1e-12
    assert [r.n_sensitive for r in rep.layers] == [r.n_sensitive for r in ref.layers]
    dw = next(r for r in rep.layers if r.name == "dw")  # depthwise: groups of 9, N >= 1 saves bits
    assert dw.role == "prune" and set(dw.columns) <= {1, 2, 3, 4, 5}
    oe = prune_model_(copy.deepcopy(cnn), get_preset(base, sensitivity="output_error"), calibration=cnn_batches)
    assert oe.sensitive_channel_fraction >= 0.2


def test_bad_budget_values(cnn, cnn_batches) -> None:
    for bad, msg in [(-1, "greater than 0"), ("abc", "valid number"), (True, "must be a number"),
                     (9.0, r"target_bits=9.0 is outside \[3.25, 8\]"), (2.0, "is outside"),
                     (float("nan"), "finite")]:
        with pytest.raises(ConfigError, match=msg):
            get_preset("moderate", target_bits=bad)
    with pytest.raises(ConfigError, match="needs a pruning method"):
        get_preset("int8", target_bits=6.0)
    with pytest.raises(ConfigError, match="output_error"):
        get_preset("moderate", sensitivity="outputerror")
    with pytest.raises(ConfigError, match="no calibration batches"):
        prune_model_(copy.deepcopy(cnn), get_preset("llm-moderate", target_bits=5.0))
    with pytest.raises(ConfigError, match=r"target_bits=3.3 is outside \[\d\.\d{4}, \d\.\d{4}\]"):
        prune_model_(copy.deepcopy(cnn), get_preset("moderate", target_bits=3.3), calibration=cnn_batches)
    assert get_preset("moderate", target_bits=5.0).needs_calibration
    assert not get_preset("llm-moderate").needs_calibration
    assert select_layers(cnn)  # the fixture model is intact
    assert collect_hessians  # imported for the docs' example


@pytest.mark.parametrize("name", ["llm-moderate-gptq", "rtn-llm-moderate-gptq"])
def test_budget_with_the_gptq_solver_encodes(block, block_batches, name) -> None:
    """Per-channel N through the gptq solver (one solve per N, merged by channel) is exact and encodable."""
    model = copy.deepcopy(block)
    rep = prune_model_(model, get_preset(name, target_bits=5.0), calibration=block_batches)
    assert 4.98 <= rep.effective_bits <= 5.0
    ckpt_layers = encode_checkpoint(to_checkpoint(rep))
    for rec in rep.quantized_layers:
        np.testing.assert_array_equal(decode(ckpt_layers.tensors[f"{rec.name}.weight"]), rec.q)


def _range_of(exc: pytest.ExceptionInfo) -> tuple[float, float]:
    lo, hi = re.search(r"outside \[(\d+\.\d+), (\d+\.\d+)\]", str(exc.value)).groups()
    return float(lo), float(hi)


@pytest.mark.parametrize("sensitivity", ["scale", "output_error"])
def test_unreachable_budget_is_rejected_before_any_hessian(cnn, cnn_batches, monkeypatch, sensitivity) -> None:
    import bitvert.pipeline.global_prune as gp

    def no_hessians(*args, **kwargs):
        raise AssertionError("Hessians collected for an unreachable target_bits")

    with monkeypatch.context() as m:
        for name in ("collect_hessians", "output_gains", "calibrate_sequentially"):
            m.setattr(gp, name, no_hessians)
        for base in ("moderate", "moderate-gptq"):
            for bad in ((3.3, 7.9) if sensitivity == "scale" else (3.3,)):  # the bound is wide at the top
                with pytest.raises(ConfigError, match=rf"target_bits={bad} is outside") as exc:
                    prune_model_(copy.deepcopy(cnn), get_preset(base, target_bits=bad, sensitivity=sensitivity),
                                 calibration=cnn_batches)
                assert "choose a target in that range" in str(exc.value)
    lo, hi = _range_of(exc)
    assert lo < hi
    if sensitivity == "scale":
        # the early range is the exact one: both ends are reached (within one column of one channel)
        for target in (lo, hi):
            rep = prune_model_(copy.deepcopy(cnn), get_preset("moderate", target_bits=target), calibration=cnn_batches)
            assert target - 0.02 <= rep.effective_bits <= target + 1e-4
    else:
        assert "a range holding every effective bits" in str(exc.value)


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 10_000), fraction=st.sampled_from([0.0, 0.1, 0.2, 0.5]))
def test_budget_range_bound_holds_the_exact_range(seed: int, fraction: float) -> None:
    """With the sensitive channels unknown, the bound contains the range of every selection Algorithm 2 can make."""
    rng = np.random.default_rng(seed)
    preset = get_preset("moderate", sensitive_fraction=fraction, channel_multiple=4)
    layouts = [make_layout((int(k), int(n)), "linear", 32) for k, n in rng.integers([4, 20], [40, 200], (4, 2))]
    cols = [allowed_columns(preset, 8, lay) for lay in layouts]
    n_w = sum(lay.n_weights for lay in layouts) + 500
    free = [layer_budget(f"l{i}", lay, preset, 8, np.zeros(lay.n_channels, bool), None, c)
            for i, (lay, c) in enumerate(zip(layouts, cols))]
    n_total = sum(lay.n_channels for lay in layouts)
    n_keep = min(n_total, int(np.ceil(round(fraction * n_total, 9))))
    bound = budget_range(free, 500 * 8, n_w, (n_keep, min(n_total, n_keep + 3 * len(layouts))))
    masks = select_sensitive([rng.standard_normal(lay.n_channels) for lay in layouts], fraction, 4)
    exact = budget_range([layer_budget(f"l{i}", lay, preset, 8, mk, None, c)
                          for i, (lay, mk, c) in enumerate(zip(layouts, masks, cols))], 500 * 8, n_w)
    assert bound[0] - 1e-12 <= exact[0] <= exact[1] <= bound[1] + 1e-12
    # and the exact range is what allocate_columns reaches at its ends
    budgets = [layer_budget(f"l{i}", lay, preset, 8, mk, {n: rng.random(lay.n_channels) for n in c}, c)
               for i, (lay, mk, c) in enumerate(zip(layouts, masks, cols))]
    for target in exact:
        allocate_columns(budgets, 500 * 8, n_w, target)
    with pytest.raises(ConfigError, match="outside"):
        allocate_columns(budgets, 500 * 8, n_w, exact[0] - 0.01)
