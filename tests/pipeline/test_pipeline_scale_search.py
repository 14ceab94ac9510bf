"""The ``mse`` scale search of pruned channels: the search itself, the preset field and the pipeline."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st

from bitvert.errors import ConfigError, InputError
from bitvert.pipeline import get_preset, prune_model_
from bitvert.pipeline.quantize import SCALE_SEARCH_FACTORS, quantize_weight, search_channel_scales
from bitvert.pruning import PruneConfig, prune

_ZP4 = PruneConfig("zero_point", columns=4)


def _snap_zp4(q: np.ndarray) -> np.ndarray:
    return prune(q, _ZP4, kind="linear").weights


def _error(rows: np.ndarray, scale: np.ndarray, snap, weights=None) -> np.ndarray:
    """Per-channel error of quantize (absmax-clamped) -> snap -> dequantize at ``scale``, by hand."""
    q = np.clip(np.rint(rows / scale[:, None]), -127, 127).astype(np.int16)
    d = (snap(q).astype(np.float64) * scale[:, None] - rows) ** 2
    return (d if weights is None else d * weights).sum(axis=1)


def _absmax(rows: np.ndarray) -> np.ndarray:
    amax = np.abs(rows).max(axis=1)
    return np.where(amax > 0, amax / 127, 1.0).astype(np.float32)


def test_factors_start_at_one_and_shrink_to_half() -> None:
    assert SCALE_SEARCH_FACTORS[0] == 1.0 and SCALE_SEARCH_FACTORS[-1] == 0.5 and len(SCALE_SEARCH_FACTORS) == 11


def test_one_outlier_channel_gets_a_clipped_scale_and_less_error() -> None:
    rng = np.random.default_rng(0)
    rows = rng.normal(0, 0.02, (4, 64)).astype(np.float32)
    rows[0, 5] = 0.1  # a 5-sigma outlier sets the absmax scale of channel 0
    scale = _absmax(rows)
    chosen = search_channel_scales(rows, scale, 127, _snap_zp4)
    assert chosen.dtype == np.float32 and chosen.shape == (4,)
    assert chosen[0] < scale[0]
    before, after = _error(rows, scale, _snap_zp4), _error(rows, chosen, _snap_zp4)
    assert after[0] < 0.95 * before[0]  # by hand: factor 0.95, error 0.908x
    assert (after <= before).all()
    # the chosen scale is one of the candidates
    np.testing.assert_allclose(chosen / scale, np.round(chosen / scale, 2), atol=1e-6)


def test_long_gaussian_channels_gain_most() -> None:
    """The longer the channel, the further out its absmax lies (3.3 sigma at 1024 weights), and BBS's coarse
    grid (N = 4: 16 levels) gains from clipping the few largest weights (by hand: factors 0.8-0.85 and error
    0.81-0.83x on three of these rows; 0.9-0.95 at 64 weights)."""
    rows = np.random.default_rng(0).normal(0, 0.02, (4, 1024)).astype(np.float32)
    scale = _absmax(rows)
    chosen = search_channel_scales(rows, scale, 127, _snap_zp4)
    assert np.median(chosen / scale) < 0.9  # one row has a 3.9-sigma weight: clipping it costs more
    assert _error(rows, chosen, _snap_zp4).sum() < 0.9 * _error(rows, scale, _snap_zp4).sum()


def test_unsearched_channels_keep_their_scale_exactly() -> None:
    rows = np.random.default_rng(1).normal(0, 1, (6, 1024)).astype(np.float32)
    scale = _absmax(rows)
    mask = np.array([True, False, True, False, False, True])
    chosen = search_channel_scales(rows, scale, 127, _snap_zp4, channels=mask)
    np.testing.assert_array_equal(chosen[~mask], scale[~mask])
    assert (chosen[mask] < scale[mask]).any()
    assert (search_channel_scales(rows, scale, 127, _snap_zp4) < scale)[~mask].any()  # they would have moved


def test_hessian_weights_steer_the_search() -> None:
    """With all weight on the outlier's column, clipping it is worse than any gain elsewhere: scale kept."""
    rng = np.random.default_rng(2)
    rows = rng.normal(0, 0.02, (1, 64)).astype(np.float32)
    rows[0, 7] = 0.3
    scale = _absmax(rows)
    assert search_channel_scales(rows, scale, 127, _snap_zp4)[0] < scale[0]
    only_outlier = np.zeros(64, np.float32)
    only_outlier[7] = 1.0
    assert search_channel_scales(rows, scale, 127, _snap_zp4, weights=only_outlier)[0] == scale[0]


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**31), k=st.integers(1, 6), n=st.sampled_from([8, 32, 40, 96]),
       outliers=st.integers(0, 3), weighted=st.booleans(), pruned=st.booleans())
def test_search_is_never_worse_than_absmax(seed, k, n, outliers, weighted, pruned) -> None:
    rng = np.random.default_rng(seed)
    rows = rng.laplace(0, 0.05, (k, n)).astype(np.float32)
    if outliers:
        rows[rng.integers(0, k, outliers), rng.integers(0, n, outliers)] *= 20
    scale = _absmax(rows)
    weights = rng.random((k, n)).astype(np.float32) if weighted else None
    snap = _snap_zp4 if pruned else (lambda q: q)
    chosen = search_channel_scales(rows, scale, 127, snap if pruned else None, weights)
    assert (chosen <= scale).all() and (chosen >= 0.5 * scale * (1 - 1e-6)).all()
    # float32 accumulation inside the search: compare with a relative tolerance
    assert (_error(rows, chosen, snap, weights) <= _error(rows, scale, snap, weights) * (1 + 1e-5) + 1e-12).all()


def _numpy_sse(v: np.ndarray, scale: np.ndarray, rows: np.ndarray, weights: np.ndarray | None) -> np.ndarray:
    """The search's error as numpy computes it (float32 products, float64 sum): the fused kernel's reference."""
    d = np.asarray(v, dtype=np.float32) * scale[:, None] - rows
    d *= d
    if weights is not None:
        d *= weights
    return d.sum(axis=1, dtype=np.float64)


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 2**31), k=st.integers(1, 9), n=st.sampled_from([1, 7, 8, 33, 129, 576, 1536, 9000]),
       weighted=st.sampled_from(["none", "shared", "per_channel", "zeros"]))
def test_fused_error_equals_numpy_bit_for_bit(seed, k, n, weighted) -> None:
    """``snapped_sse`` makes numpy's float32 roundings and its pairwise float64 summation order (chunks of
    8192), so the search's argmin -- near-ties included -- is what the numpy formulation chose."""
    from bitvert.pipeline._kernels import _snapped_sse_parallel, _snapped_sse_serial, snapped_sse

    rng = np.random.default_rng(seed)
    rows = rng.laplace(0, 0.05, (k, n)).astype(np.float32)
    rows[0, 0] = 0.0
    if k > 1:
        rows[1] = 0.0  # an all-zero channel
    scale = (_absmax(rows) * rng.uniform(0.5, 1.0, k)).astype(np.float32)
    v = np.clip(np.rint(rows / scale[:, None]) + rng.integers(-8, 9, (k, n)), -127, 127).astype(np.int16)
    w = {"none": None, "shared": rng.random(n).astype(np.float32), "zeros": np.zeros(n, np.float32),
         "per_channel": rng.random((k, n)).astype(np.float32)}[weighted]
    ref = _numpy_sse(v, scale, rows, w)
    ww = np.zeros((0, n), np.float32) if w is None else w.reshape(-1, n)
    got = snapped_sse(v, scale, rows, ww)
    assert got.dtype == np.float64 and got.shape == (k,)
    np.testing.assert_array_equal(got, ref)
    for kernel in (_snapped_sse_parallel, _snapped_sse_serial):  # large and small layers
        np.testing.assert_array_equal(kernel(v, scale, rows, ww), ref)


def test_search_keeps_factor_one_on_exact_ties() -> None:
    """Exact ties keep factor 1.0: a channel of zeros (error 0 at every factor), and one whose largest weight is
    exact at its absmax scale while its small weights round to 0 at every factor (f < 1 only clips)."""
    rows = np.array([[0.0, 0.0, 0.0, 0.0], [1.0, 0.001, -0.001, 0.0]], np.float32)
    scale = np.array([1.0, 1.0], np.float32)  # channel 1: 1.0 / 1.0 -> 1 at f = 1; clipped to 1 for f < 1
    got = search_channel_scales(rows, scale, 1)
    assert got[0] == 1.0  # all factors tie at 0: factor 1.0 wins
    assert got[1] == 1.0  # f < 1 clips 1.0 to f: a larger error


@pytest.mark.parametrize("kind,shape,axis", [("linear", (40, 96), 0), ("linear_in_out", (96, 40), 1),
                                             ("conv", (40, 6, 3, 3), 0)])
@pytest.mark.parametrize("with_h", [False, True])
def test_search_returns_the_pruning_at_the_chosen_scales(kind, shape, axis, with_h) -> None:
    """The search's pruning, merged per channel from its own calls, is exactly a fresh pruning of the chosen
    integers (weights and every metadata field), with sensitive channels and two N in one layer (a budget)."""
    from bitvert.pipeline.budget import prune_by_columns
    from bitvert.pipeline.global_prune import _LayerJob, _search_scales
    from bitvert.pipeline.quantize import LayerRole, QuantConfig

    rng = np.random.default_rng(3)
    w = torch.from_numpy(rng.laplace(0, 0.05, shape).astype(np.float32))
    w.view(-1)[rng.integers(0, w.numel(), 12)] *= 15  # outliers: some channels clip
    preset = get_preset("moderate", scale_search="mse")
    job = _LayerJob(name="l", kind=kind, out_axis=axis, role=LayerRole.PRUNE, reason="", config=QuantConfig(),
                    weight=w)
    k = shape[axis]
    sensitive = np.zeros(k, bool)
    sensitive[:3] = True
    cols = np.where(np.arange(k) % 2 == 0, 4, 3)
    n_in = w.numel() // k
    h = torch.from_numpy(rng.random(n_in).astype(np.float32) + 0.1).diag() if with_h else None
    q8, s8 = quantize_weight(w, 8, axis)

    def prune_fn(q_mod):
        return prune_by_columns(q_mod, kind, preset, 8, sensitive, cols, axis)

    q, scale, pruned = _search_scales(job, preset, w, s8, 8, ~sensitive, h, prune_fn)
    assert (scale.numpy() < s8.numpy()).any()
    fresh_w, fresh_md, fresh_lay = prune_fn(q.numpy())
    np.testing.assert_array_equal(pruned[0], fresh_w)
    for name in ("redundant", "constant", "free_columns", "pruned"):
        np.testing.assert_array_equal(getattr(pruned[1], name), getattr(fresh_md, name), err_msg=name)
    assert pruned[2].to_dict() == fresh_lay.to_dict()


def test_bad_search_inputs_give_clear_errors() -> None:
    rows = np.ones((2, 4), np.float32)
    with pytest.raises(InputError, match="one scale per row"):
        search_channel_scales(rows, np.ones(3, np.float32), 127)
    with pytest.raises(ConfigError, match=r"\(0, 1\]"):
        search_channel_scales(rows, np.ones(2, np.float32), 127, factors=[1.0, 1.5])
    with pytest.raises(InputError, match="non-negative"):
        search_channel_scales(rows, np.ones(2, np.float32), 127, weights=-np.ones(4))
    with pytest.raises(InputError, match="channels"):
        search_channel_scales(rows, np.ones(2, np.float32), 127, channels=np.ones(3, bool))
    with pytest.raises(InputError, match="snap must return"):
        search_channel_scales(rows, np.ones(2, np.float32), 127, snap=lambda q: q[:, :2])


def test_preset_field_validates() -> None:
    assert get_preset("moderate").scale_search == "none"
    assert get_preset("moderate", scale_search="mse").scale_search == "mse"
    with pytest.raises(ConfigError, match="scale_search"):
        get_preset("moderate", scale_search="minmax")
    with pytest.raises(ConfigError, match="prunes nothing"):
        get_preset("int8", scale_search="mse")
    with pytest.raises(ConfigError, match="per_channel"):
        get_preset("moderate", scale_search="mse", quant={"weight_granularity": "per_tensor"})


@pytest.mark.parametrize("name", ["llm-moderate", "llm-conservative", "bitwave-llm-moderate", "rtn-llm-moderate"])
def test_greedy_search_lowers_every_layers_weight_error_at_the_same_bits(block, name) -> None:
    base = prune_model_(copy.deepcopy(block), name)
    searched = prune_model_(copy.deepcopy(block), get_preset(name, scale_search="mse"))
    assert searched.effective_bits == base.effective_bits
    for a, b in zip(base.layers, searched.layers):
        assert a.role == b.role and a.n_sensitive == b.n_sensitive
        if a.role == "prune":  # plain squared error, per channel never worse: so per layer neither
            assert b.float_sse <= a.float_sse * (1 + 1e-5)
    assert searched.weight_sqnr_db > base.weight_sqnr_db


def test_sensitive_channels_and_scores_keep_the_absmax_scale(cnn) -> None:
    """Algorithm 2's selection uses the unclipped scales; sensitive channels keep INT8 integers and scale."""
    preset = get_preset("moderate", sensitive_fraction=0.3, quant={"act_bits": None}, last_layer="prune")
    base = prune_model_(copy.deepcopy(cnn), preset)
    searched = prune_model_(copy.deepcopy(cnn), preset.model_copy(update={"scale_search": "mse"}))
    modules = dict(cnn.named_modules())
    clipped = 0
    for a, b in zip(base.layers, searched.layers):
        if b.sensitive is None:
            np.testing.assert_array_equal(a.q, b.q)
            continue
        np.testing.assert_array_equal(a.sensitive, b.sensitive)
        np.testing.assert_array_equal(a.scale[b.sensitive], b.scale[b.sensitive])
        np.testing.assert_array_equal(a.q[b.sensitive], b.q[b.sensitive])
        q8, s8 = quantize_weight(modules[b.name].weight.detach(), 8, b.out_axis)
        np.testing.assert_array_equal(s8.numpy(), a.scale)  # the base run keeps the absmax scales
        assert (b.scale <= a.scale).all()
        clipped += int((b.scale < a.scale).sum())
    assert clipped > 0


@pytest.mark.parametrize("name", ["llm-moderate-gptq", "rtn-llm-moderate-gptq", "bitwave-llm-moderate-gptq"])
def test_gptq_with_search_encodes_bit_exactly_and_runs_on_the_pe_model(block, block_batches, name) -> None:
    from bitvert.codec import decode, encode_report, pe_matmul, reference_matmul

    assert get_preset(name).scale_search == "mse"  # the gptq presets search by default
    base = prune_model_(copy.deepcopy(block), get_preset(name, scale_search="none"), calibration=block_batches)
    model = copy.deepcopy(block)
    rep = prune_model_(model, name, calibration=block_batches)
    assert rep.effective_bits == base.effective_bits
    assert any((r.scale < b.scale).any() for r, b in zip(rep.layers, base.layers) if r.role == "prune")
    modules = dict(model.named_modules())
    for r in rep.layers:  # the module holds exactly q * the chosen scale
        w = modules[r.name].weight.detach()
        expect = torch.from_numpy(r.q.astype(np.float32)) * torch.from_numpy(r.scale).view(
            [-1 if i == r.out_axis else 1 for i in range(w.ndim)])
        torch.testing.assert_close(w, expect, rtol=0, atol=0)
    if name.startswith("rtn"):
        return
    enc_model = encode_report(rep)
    rng = np.random.default_rng(0)
    for rec_name, enc in enc_model.tensors.items():
        rec = next(r for r in rep.layers if f"{r.name}.weight" == rec_name)
        np.testing.assert_array_equal(decode(enc), rec.q)
        np.testing.assert_array_equal(np.asarray(enc_model.scales[rec_name]), rec.scale)
        if name.startswith("bitwave"):  # sign-magnitude columns: not BitVert's PE datapath
            continue
        x = rng.integers(0, 256, (rec.q.size // rec.n_channels, 3))
        np.testing.assert_array_equal(pe_matmul(enc, x).output, reference_matmul(rec.q, x, rec.kind))


def test_checkpoint_round_trip_keeps_the_searched_scales(block, tmp_path) -> None:
    from bitvert.pipeline import apply_checkpoint_, save_pruned

    model = copy.deepcopy(block)
    rep = prune_model_(model, get_preset("llm-moderate", scale_search="mse"))
    save_pruned(tmp_path / "ck.safetensors", model, rep)
    fresh = copy.deepcopy(block)
    apply_checkpoint_(fresh, tmp_path / "ck.safetensors")
    for (n, p), (_, q) in zip(model.named_parameters(), fresh.named_parameters()):
        torch.testing.assert_close(p, q, rtol=0, atol=0, msg=n)


def test_cli_set_scale_search(tmp_path) -> None:
    from bitvert.cli import main

    res = CliRunner().invoke(main, ["prune", "--model", "mnist-cnn", "--preset", "moderate", "--set",
                                    "scale_search=msq", "--no-eval", "--out", str(tmp_path / "o")])
    assert res.exit_code != 0
    assert "'none' or 'mse'" in (res.output + str(res.exception))
