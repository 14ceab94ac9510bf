"""concat_channels: a tensor encoded a block of output channels at a time is byte for byte the whole encoding."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bitvert.codec import decode, encode, encode_plain
from bitvert.codec.tensor import EncodedTensor, concat_channels
from bitvert.errors import InputError
from bitvert.pruning import PruneConfig, prune


def _same(a: EncodedTensor, b: EncodedTensor) -> None:
    assert a.header() == b.header()
    assert np.array_equal(a.channel_order, b.channel_order)
    assert np.array_equal(a.to_bytes(), b.to_bytes())


def _blocks(k: int, step: int) -> list[tuple[int, int]]:
    return [(a, min(k, a + step)) for a in range(0, k, step)]


def _weights(rng, shape, bits, scale):
    lo, hi = -(1 << (bits - 1)), (1 << (bits - 1)) - 1
    return np.clip(np.round(rng.laplace(0, scale * (1 << bits) / 256, shape)), lo + 1, hi).astype(np.int16)


@pytest.mark.parametrize("step", [1, 3, 7, 16, 25, 40])
@pytest.mark.parametrize("method,columns", [("zero_point", 4), ("rounded_avg", 2)])
def test_blocked_encode_equals_one_shot(step, method, columns):
    """Several block sizes, most not dividing K = 40; sensitive channels spread over the blocks."""
    rng = np.random.default_rng(step)
    w = _weights(rng, (40, 100), 8, 12.0)  # 100 = 3 groups of 32 + a short group of 4
    dense = np.zeros(40, dtype=bool)
    dense[[0, 9, 10, 33]] = True
    cfg = PruneConfig(method, columns=columns)
    whole = encode(prune(w, cfg, dense_channels=dense))
    parts = [encode(prune(w[a:b], cfg, dense_channels=dense[a:b])) for a, b in _blocks(40, step)]
    _same(concat_channels(parts), whole)


@settings(max_examples=60, deadline=None)
@given(st.data())
def test_blocked_encode_equals_one_shot_any_setting(data):
    kind = data.draw(st.sampled_from(["linear", "conv"]))
    shape = data.draw(st.sampled_from([(9, 64), (13, 40), (6, 7)] if kind == "linear"
                                      else [(7, 3, 3, 3), (10, 48, 1, 1), (5, 1, 3, 3)]))
    bits = data.draw(st.integers(2, 8))
    method = data.draw(st.sampled_from(["rounded_avg", "zero_point"]))
    semantics = data.draw(st.sampled_from(["paper", "code"]))
    columns = data.draw(st.integers(1, bits - 1))
    group_size = data.draw(st.sampled_from([2, 4, 8, 16, 32]))
    remainder = data.draw(st.sampled_from(["short", "dense"]))
    rng = np.random.default_rng(data.draw(st.integers(0, 2**31)))
    w = _weights(rng, shape, bits, data.draw(st.sampled_from([0.5, 3.0, 12.0, 200.0])))
    k = shape[0]
    dense = rng.random(k) < data.draw(st.sampled_from([0.0, 0.3, 1.0]))
    step = data.draw(st.integers(1, k))
    cfg = PruneConfig(method, semantics=semantics, weight_bits=bits, group_size=group_size, columns=columns,
                      remainder=remainder)
    whole_res = prune(w, cfg, kind=kind, dense_channels=dense)
    whole = encode(whole_res)
    parts = [encode(prune(w[a:b], cfg, kind=kind, dense_channels=dense[a:b])) for a, b in _blocks(k, step)]
    joined = concat_channels(parts)
    _same(joined, whole)
    assert (decode(joined) == whole_res.weights).all()


def test_blocked_plain_encode_equals_one_shot():
    rng = np.random.default_rng(3)
    widths = rng.integers(1, 9, 21)
    w = np.concatenate([rng.integers(-(1 << (b - 1)), 1 << (b - 1), (1, 45)) for b in widths])
    whole = encode_plain(w, group_size=8, channel_bits=widths)
    for step in (2, 5, 21):
        parts = [encode_plain(w[a:b], group_size=8, channel_bits=widths[a:b]) for a, b in _blocks(21, step)]
        _same(concat_channels(parts), whole)


def test_per_channel_columns_need_the_whole_tensors_columns():
    """Blocks encoded with different per-channel N record their own minimum N; the caller gives the whole's."""
    rng = np.random.default_rng(4)
    w = _weights(rng, (12, 64), 8, 12.0)
    ch_cols = np.array([4] * 6 + [3] * 6)
    cfg4, cfg3 = PruneConfig("zero_point", columns=4), PruneConfig("zero_point", columns=3)
    whole = encode(dataclasses.replace(prune(w, cfg4), config=cfg3), channel_columns=ch_cols)
    parts = [encode(prune(w[:6], cfg4), channel_columns=ch_cols[:6]),
             encode(dataclasses.replace(prune(w[6:], cfg4), config=cfg3), channel_columns=ch_cols[6:])]
    assert [p.columns for p in parts] == [4, 3]
    with pytest.raises(InputError, match="differ in columns"):
        concat_channels(parts)
    _same(concat_channels(parts, columns=whole.columns, source=whole.source), whole)


def test_rejects_bitwave_blocks_mixed_parts_and_in_out_layers():
    rng = np.random.default_rng(5)
    w = _weights(rng, (8, 64), 8, 12.0)
    bw = [encode(prune(w[a:b], PruneConfig("bitflip", columns=4))) for a, b in _blocks(8, 4)]
    with pytest.raises(InputError, match="BitWave"):
        concat_channels(bw)
    single = encode(prune(w, PruneConfig("bitflip", columns=4)))
    _same(concat_channels([single]), single)
    zp = encode(prune(w, PruneConfig("zero_point", columns=4)))
    with pytest.raises(InputError, match="part 1"):
        concat_channels([zp, encode(prune(w, PruneConfig("rounded_avg", columns=4)))])
    t = encode(prune(w.T.copy(), PruneConfig("zero_point", columns=4), kind="linear_in_out"))
    with pytest.raises(InputError, match="axis 1"):
        concat_channels([t, t])
    with pytest.raises(InputError, match="non-empty"):
        concat_channels([])
