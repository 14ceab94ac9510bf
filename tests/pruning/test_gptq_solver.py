"""The error-feedback (GPTQ-style) solver: output error vs greedy, grids, fallback, codec round trips."""

from __future__ import annotations

import logging

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bitvert.codec import decode, encode
from bitvert.codec.pe_model import pe_matmul, reference_matmul
from bitvert.core.grouping import make_layout
from bitvert.errors import ConfigError, InputError
from bitvert.pruning import PruneConfig, prune, prune_groups
from bitvert.pruning.gptq import gptq_prune, gptq_round, output_error

METHODS = [("zero_point", "paper", 4), ("rounded_avg", "paper", 2), ("zero_point", "code", 4),
           ("bitflip", "code", 3), ("rounded_avg", "code", 4)]


def _layer(seed: int, k: int = 16, n: int = 96) -> tuple[np.ndarray, np.ndarray]:
    """Float weights in INT8 units (per-channel max 127) and a correlated input Hessian."""
    rng = np.random.default_rng(seed)
    w = rng.laplace(size=(k, n))
    w = w / np.abs(w).max(axis=1, keepdims=True) * 127
    x = rng.normal(size=(4 * n, n)) @ (np.eye(n) + 0.4 * rng.normal(size=(n, n)) / np.sqrt(n))
    return w, x.T @ x


def _greedy(w: np.ndarray, cfg: PruneConfig, **kw) -> np.ndarray:
    return prune(np.clip(np.rint(w), -127, 127).astype(np.int16), cfg, **kw).weights


@pytest.mark.parametrize("damp", [0.01, 0.0])
def test_output_error_never_above_greedy_on_100_layers(damp: float) -> None:
    cfg = PruneConfig("zero_point", columns=4)
    ratios = []
    for seed in range(100):
        w, h = _layer(seed, k=4, n=64)
        res = gptq_prune(w, cfg, h, damp=damp)
        new, old = output_error(w, res.weights, h), output_error(w, _greedy(w, cfg), h)
        assert (new <= old * (1 + 1e-9)).all(), seed  # per output channel, hence per layer
        ratios.append(new.sum() / old.sum())
    # the solver itself does the work, not the per-channel fallback to greedy
    assert np.mean(ratios) < 0.9


@pytest.mark.parametrize("method,semantics,n", METHODS)
def test_every_method_gains_and_stays_encodable(method: str, semantics: str, n: int) -> None:
    cfg = PruneConfig(method, semantics=semantics, columns=n)
    ratios = []
    for seed in range(6):
        w, h = _layer(100 + seed)
        dense = np.zeros(16, bool)
        dense[seed % 16] = True
        res = gptq_prune(w, cfg, h, dense_channels=dense)
        new = output_error(w, res.weights, h)
        old = output_error(w, _greedy(w, cfg, dense_channels=dense), h)
        assert (new <= old * (1 + 1e-9)).all()
        ratios.append(new.sum() / old.sum())
        # sensitive channels stay the exact INT8 rounding; every pruned group keeps N free columns
        assert np.array_equal(res.weights[dense], np.rint(w[dense]).astype(np.int16))
        assert (res.metadata.free_columns[res.metadata.pruned] >= n).all()
        assert res.weights.min() >= -128 and res.weights.max() <= 127
        enc = encode(res)
        assert np.array_equal(decode(enc), res.weights)
        if cfg.spec.hardware == "bitvert":  # the BitVert PE model runs the BBS layouts
            x = np.random.default_rng(seed).integers(-128, 128, (w.shape[1], 5))
            assert np.array_equal(pe_matmul(enc, x).output, reference_matmul(res.weights, x, "linear"))
    assert np.mean(ratios) < 0.85


@pytest.mark.parametrize("shape,kind,groups", [((8, 12, 3, 3), "conv", 1), ((16, 1, 3, 3), "conv", 16),
                                               ((16, 4, 3, 3), "conv", 4), ((40, 24), "linear_in_out", 1)])
def test_layer_kinds_and_per_group_hessians(shape, kind, groups) -> None:
    rng = np.random.default_rng(7)
    w = np.clip(rng.laplace(size=shape) * 30, -127, 127)
    lay = make_layout(shape, kind, 32)
    n = lay.rows_per_channel * lay.row_length
    x = rng.normal(size=(groups, 3 * n, n))
    h = np.einsum("gtn,gtm->gnm", x, x)
    h = h[0] if groups == 1 else h
    cfg = PruneConfig("zero_point", columns=4, group_size=32)
    res = gptq_prune(w, cfg, h, kind=kind)
    rows_w = lay.to_rows(w).reshape(lay.n_channels, -1)
    rows_new = lay.to_rows(res.weights).reshape(lay.n_channels, -1)
    rows_old = lay.to_rows(_greedy(w, cfg, kind=kind)).reshape(lay.n_channels, -1)
    assert output_error(rows_w, rows_new, h).sum() < output_error(rows_w, rows_old, h).sum()
    assert np.array_equal(decode(encode(res)), res.weights)


def test_singular_hessian_falls_back_to_greedy_with_a_warning(caplog) -> None:
    w, _ = _layer(3, k=8, n=64)
    x = np.random.default_rng(0).normal(size=(10, 64))  # rank 10 < 64
    cfg = PruneConfig("rounded_avg", columns=2)
    with caplog.at_level(logging.WARNING, logger="bitvert.pruning.gptq"):
        res = gptq_prune(w, cfg, x.T @ x, damp=0.0)
    assert "not positive definite" in caplog.text
    assert np.array_equal(res.weights, _greedy(w, cfg))
    with caplog.at_level(logging.WARNING, logger="bitvert.pruning.gptq"):
        q = gptq_round(w / 16, 4, x.T @ x, damp=0.0)
    assert np.array_equal(q, np.clip(np.rint(w / 16), -7, 7))


def test_dead_inputs_and_zero_hessian() -> None:
    w, h = _layer(5, k=8, n=64)
    h[:, 3] = h[3, :] = 0.0  # an input that never fires
    res = gptq_prune(w, PruneConfig("zero_point", columns=4), h)
    assert (output_error(w, res.weights, h) <= output_error(w, _greedy(w, PruneConfig("zero_point", columns=4)), h)
            * (1 + 1e-9)).all()
    res0 = gptq_prune(w, PruneConfig("zero_point", columns=4), np.zeros((64, 64)))  # a layer that never ran
    assert np.array_equal(decode(encode(res0)), res0.weights)


def test_gptq_round_beats_round_to_nearest() -> None:
    w, h = _layer(11, k=12, n=64)
    units = w / 127 * 7
    q = gptq_round(units, 4, h)
    plain = np.clip(np.rint(units), -7, 7)
    assert q.dtype == np.int16 and q.min() >= -7 and q.max() <= 7
    new, old = output_error(units, q, h), output_error(units, plain, h)
    assert (new <= old * (1 + 1e-9)).all() and new.sum() < 0.9 * old.sum()
    dense = np.arange(12) < 3
    assert np.array_equal(gptq_round(units, 4, h, dense_channels=dense)[dense], plain[dense])


def test_bad_inputs_give_clear_errors() -> None:
    w, h = _layer(0, k=4, n=32)
    cfg = PruneConfig("zero_point", columns=4)
    with pytest.raises(ConfigError, match="damp"):
        gptq_prune(w, cfg, h, damp=-0.1)
    with pytest.raises(ConfigError, match="block_size"):
        gptq_prune(w, cfg, h, block_size=0)
    with pytest.raises(InputError, match=r"hessian must be \[32, 32\]"):
        gptq_prune(w, cfg, h[:16, :16])
    with pytest.raises(InputError, match="NaN"):
        gptq_prune(w, cfg, np.full((32, 32), np.nan))
    with pytest.raises(InputError, match="NaN"):
        gptq_prune(np.full((4, 32), np.inf), cfg, h)
    with pytest.raises(ConfigError, match="bits"):
        gptq_round(w, 9, h)


@settings(max_examples=60, deadline=None)
@given(st.data())
def test_kernel_outputs_lie_on_their_grid(data) -> None:
    """The greedy kernel's output is on the grid its own metadata describes (within the b-bit range)."""
    method = data.draw(st.sampled_from(["rounded_avg", "zero_point", "bitflip"]))
    semantics = data.draw(st.sampled_from(["paper", "code"]))
    bits = data.draw(st.integers(3, 8))
    n = data.draw(st.integers(1, bits - 1))
    g = data.draw(st.sampled_from([4, 16, 32]))
    rng = np.random.default_rng(data.draw(st.integers(0, 2**31)))
    q = (1 << (bits - 1)) - 1
    vals = np.clip(np.rint(rng.laplace(size=(64, g)) * rng.choice([1, 4, 16, 40], (64, 1))), -q, q).astype(np.int16)
    lengths = rng.integers(1, g + 1, 64).astype(np.int32)
    vals[np.arange(g)[None, :] >= lengths[:, None]] = 0
    cfg = PruneConfig(method, semantics=semantics, weight_bits=bits, columns=n, group_size=g)
    out, md = prune_groups(vals, lengths, np.ones(64, bool), cfg)
    grid = cfg.spec.grid(vals, out, lengths, md.redundant, md.constant, cfg)
    assert grid.shape == (64, 1 << bits) and grid.any(axis=1).all()
    valid = (np.arange(g)[None, :] < lengths[:, None]) & (out >= -(q + 1)) & (out <= q)
    col = np.clip(out.astype(np.int64) + q + 1, 0, 2 * q + 1)
    assert grid[np.arange(64)[:, None], col][valid].all()


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**31), rows=st.sampled_from([1, 5, 300]), density=st.sampled_from([0.02, 0.1, 0.5]))
def test_compiled_snap_is_the_nearest_grid_value_ties_to_the_smaller(seed, rows, density) -> None:
    """With ``U = I`` no error moves, so the kernel snaps every weight to its row's nearest grid value (ties,
    at half-way points, to the smaller; outside the range to the extreme grid value), serial and parallel."""
    from bitvert.pruning import _gptq_kernels

    rng = np.random.default_rng(seed)
    bits, n = 6, 9
    off, nv = 1 << (bits - 1), 1 << bits
    grid = rng.random((rows, nv)) < density
    grid[np.arange(rows), rng.integers(0, nv, rows)] = True  # at least one value per row
    w = (rng.integers(-off - 3, off + 3, (rows, n)) + rng.choice([0.0, 0.5, 0.25, -0.25], (rows, n)))
    values = np.arange(nv) - off
    dist = np.abs(w[:, :, None] - values[None, None, :])
    dist = np.where(grid[:, None, :], dist, np.inf)
    expect = values[np.argmin(dist, axis=2)]  # argmin: the first (smaller) value on ties
    for kernel in (_gptq_kernels.snap_columns, _gptq_kernels.snap_columns_serial):
        wk = w.astype(np.float32)
        q = np.empty((rows, n), np.int16)
        err = np.empty((rows, n), np.float32)
        kernel(wk, np.eye(n, dtype=np.float32)[None], 0, n, 0, n, grid, False, 0, 0, off, q, err)
        np.testing.assert_array_equal(q, expect)
        np.testing.assert_array_equal(err, w.astype(np.float32) - q.astype(np.float32))


def test_a_given_greedy_result_is_used_as_computed() -> None:
    w, h = _layer(5)
    cfg = PruneConfig("zero_point", columns=4)
    dense = np.zeros(16, bool)
    dense[:2] = True
    rounded = np.clip(np.rint(w), -127, 127).astype(np.int16)
    own = gptq_prune(w, cfg, h, dense_channels=dense)
    given = gptq_prune(w, cfg, h, dense_channels=dense, rounded=rounded,
                       greedy=prune(rounded, cfg, dense_channels=dense))
    np.testing.assert_array_equal(own.weights, given.weights)
    for name in ("redundant", "constant", "free_columns", "pruned"):
        np.testing.assert_array_equal(getattr(own.metadata, name), getattr(given.metadata, name))
    with pytest.raises(InputError, match="greedy"):
        gptq_prune(w, cfg, h, greedy=prune(rounded[:, :64], cfg))


def test_grid_by_row_chunks_equals_one_call(monkeypatch) -> None:
    from bitvert.pruning import gptq

    cfg = PruneConfig("zero_point", columns=4)
    rng = np.random.default_rng(0)
    vals = np.clip(np.rint(rng.laplace(size=(50, 32)) * 30), -127, 127).astype(np.int16)
    lengths = np.full(50, 32, np.int32)
    out, md = prune_groups(vals, lengths, np.ones(50, bool), cfg)
    whole = cfg.spec.grid(vals, out, lengths, md.redundant, md.constant, cfg)
    monkeypatch.setattr(gptq, "_GRID_ROWS", 7)
    np.testing.assert_array_equal(gptq._grid_by_chunks(cfg.spec.grid, vals, out, lengths, md.redundant,
                                                       md.constant, cfg), whole)


def _outlier_layer(seed: int) -> tuple[np.ndarray, np.ndarray]:
    """A layer whose last group of inputs carries most of the energy (as a transformer's outlier features)."""
    w, _ = _layer(seed, k=8, n=128)
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(512, 128)) @ (np.eye(128) + 0.3 * rng.normal(size=(128, 128)) / np.sqrt(128))
    x[:, 96:] *= 8.0
    return w, x.T @ x


def test_act_order_walks_high_energy_groups_first() -> None:
    cfg = PruneConfig("zero_point", columns=4)
    plain, ordered = [], []
    for seed in range(12):
        w, h = _outlier_layer(seed)
        a = gptq_prune(w, cfg, h)
        b = gptq_prune(w, cfg, h, act_order=True)
        plain.append(output_error(w, a.weights, h).sum())
        ordered.append(output_error(w, b.weights, h).sum())
        greedy = output_error(w, _greedy(w, cfg), h)
        assert (output_error(w, b.weights, h) <= greedy * (1 + 1e-9)).all()
        assert (b.metadata.free_columns[b.metadata.pruned] >= 4).all()
        assert np.array_equal(decode(encode(b)), b.weights)
    assert np.mean(np.array(ordered) / np.array(plain)) < 0.97  # the outlier group's error is compensated
    # groups already in decreasing energy: the same walk, the same result
    w, h = _layer(1, k=8, n=96)
    h = h * np.repeat([3.0, 2.0, 1.0], 32)[:, None] ** 0.5 * np.repeat([3.0, 2.0, 1.0], 32)[None, :] ** 0.5
    assert np.array_equal(gptq_prune(w, cfg, h, act_order=True).weights, gptq_prune(w, cfg, h).weights)
    # GPTQ proper on a uniform grid takes the same order
    units = w / 127 * 7
    assert (output_error(units, gptq_round(units, 4, h, act_order=True), h).sum()
            <= output_error(units, np.clip(np.rint(units), -7, 7), h).sum())


@pytest.mark.parametrize("shape,kind,groups", [((8, 12, 3, 3), "conv", 1), ((16, 4, 3, 3), "conv", 4)])
def test_act_order_on_convolutions_keeps_groups_intact(shape, kind, groups) -> None:
    rng = np.random.default_rng(8)
    w = np.clip(rng.laplace(size=shape) * 30, -127, 127)
    lay = make_layout(shape, kind, 32)
    n = lay.rows_per_channel * lay.row_length
    x = rng.normal(size=(groups, 3 * n, n)) * rng.uniform(0.2, 4.0, n)
    h = np.einsum("gtn,gtm->gnm", x, x)
    h = h[0] if groups == 1 else h
    cfg = PruneConfig("zero_point", columns=4, group_size=32)
    res = gptq_prune(w, cfg, h, kind=kind, act_order=True)
    rows_w = lay.to_rows(w).reshape(lay.n_channels, -1)
    rows_new = lay.to_rows(res.weights).reshape(lay.n_channels, -1)
    rows_old = lay.to_rows(_greedy(w, cfg, kind=kind)).reshape(lay.n_channels, -1)
    assert output_error(rows_w, rows_new, h).sum() < output_error(rows_w, rows_old, h).sum()
    assert np.array_equal(decode(encode(res)), res.weights)  # every group on the grid of its own metadata
