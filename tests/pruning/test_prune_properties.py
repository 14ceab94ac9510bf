"""Property tests of the pruning methods (hypothesis)."""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from bitvert.core.analysis import redundant_columns
from bitvert.core.bitplanes import from_bitplanes, to_bitplanes
from bitvert.core.grouping import group_weights
from bitvert.pruning import PruneConfig, PruneMethod, Semantics, prune
from bitvert.pruning import reference
from bitvert.pruning.methods import reference_group

METHODS = [
    ("rounded_avg", "paper"),
    ("rounded_avg", "code"),
    ("zero_point", "paper"),
    ("zero_point", "code"),
    ("bitflip", "code"),
]


@st.composite
def pruning_case(draw, max_groups=12):
    method, semantics = draw(st.sampled_from(METHODS))
    bits = draw(st.integers(3, 8)) if method != "zero_point" or semantics == "paper" else 8
    columns = draw(st.integers(1, bits - 1))
    g = draw(st.integers(2, 12))
    kind = draw(st.sampled_from(["linear", "conv"]))
    if kind == "linear":
        shape = (draw(st.integers(1, 4)), draw(st.integers(1, 2 * g + 3)))
    else:
        shape = (draw(st.integers(1, 3)), draw(st.integers(1, g + 3)), draw(st.integers(1, 2)), 1)
    lo = -(1 << (bits - 1)) + (0 if (method, semantics) in [("rounded_avg", "paper"), ("rounded_avg", "code"),
                                                           ("zero_point", "paper")] else 1)
    hi = (1 << (bits - 1)) - 1
    scale = draw(st.sampled_from([1, 4, 16, hi]))
    seed = draw(st.integers(0, 2**20))
    rng = np.random.default_rng(seed)
    w = np.clip(np.round(rng.laplace(0, scale, size=shape)), lo, hi).astype(np.int16)
    cfg = PruneConfig(method, semantics, weight_bits=bits, group_size=g, columns=columns,
                      constant_bits=draw(st.integers(2, min(6, bits))) if method == "zero_point" else None)
    return w, cfg, kind


@given(pruning_case())
def test_fast_path_equals_reference(case):
    w, cfg, kind = case
    res = prune(w, cfg, kind)
    gw = group_weights(w, kind, cfg.group_size)
    out = res.groups()
    for i in range(gw.values.shape[0]):
        length = gw.lengths[i]
        ref_w, ref_count, ref_const = reference_group(gw.values[i, :length], cfg)
        assert out[i, :length].tolist() == ref_w.tolist(), (i, gw.values[i, :length])
        assert int(res.metadata.redundant[i]) == ref_count
        assert int(res.metadata.constant[i]) == ref_const


@given(pruning_case())
def test_every_group_gets_at_least_n_free_columns(case):
    w, cfg, kind = case
    res = prune(w, cfg, kind)
    assert res.weights.shape == w.shape
    assert (res.metadata.free_columns[res.metadata.pruned] >= cfg.columns).all()


@given(pruning_case())
def test_values_stay_in_range(case):
    w, cfg, kind = case
    res = prune(w, cfg, kind)
    b = cfg.weight_bits
    lo, hi = -(1 << (b - 1)), (1 << (b - 1)) - 1
    stored = res.stored_groups()
    if cfg.method is PruneMethod.ZERO_POINT and cfg.semantics is Semantics.CODE:
        # published semantics: stored values are sign-magnitude, decoded weights may leave
        # the b-bit range by at most the offset range (documented in docs/pruning.md)
        assert stored.min() >= lo + 1 and stored.max() <= hi
        cmin, cmax = cfg.constant_range
        assert res.weights.min() >= lo + 1 - cmax and res.weights.max() <= hi - cmin
    else:
        assert stored.min() >= lo and stored.max() <= hi
        assert res.weights.min() >= lo and res.weights.max() <= hi


@given(pruning_case())
def test_stored_columns_and_metadata_reconstruct_weights(case):
    """Drop the free columns, keep metadata, rebuild: must give the pruned weights back."""
    w, cfg, kind = case
    if cfg.method is PruneMethod.BITFLIP:
        return  # sign-magnitude zero columns; covered by test_bitflip_zero_columns
    res = prune(w, cfg, kind)
    b = cfg.weight_bits
    stored = res.stored_groups()
    lengths = res.layout.lengths()
    for i in range(stored.shape[0]):
        if not res.metadata.pruned[i]:
            continue
        v = stored[i, : lengths[i]]
        planes = to_bitplanes(v, b)
        free = int(res.metadata.free_columns[i])
        r = int(redundant_columns(v[None, :], bits=b, cap=cfg.redundant_cap)[0])
        assert r <= free
        trailing = free - r
        kept = planes[r : b - trailing]  # what the format stores: b - free columns
        # rebuild: sign-extend r columns, then the constant trailing columns
        low_bits = [int(planes[b - 1 - t, 0]) for t in range(trailing)][::-1]
        if cfg.method is PruneMethod.ROUNDED_AVG:
            # the recorded constant is the bit pattern of the averaged low columns
            k_low = max(0, cfg.columns - int(res.metadata.redundant[i]))
            pattern = int(res.metadata.constant[i])
            for t in range(min(k_low, trailing)):
                assert low_bits[trailing - 1 - t] == (pattern >> t) & 1
        rebuilt = np.concatenate(
            [np.repeat(kept[:1], r, axis=0), kept, np.array(low_bits, dtype=np.uint8)[:, None].repeat(v.size, 1)]
        )
        assert np.array_equal(from_bitplanes(rebuilt), v)
        offset = int(res.metadata.constant[i]) if cfg.method is PruneMethod.ZERO_POINT else 0
        assert np.array_equal(v - offset, res.groups()[i, : lengths[i]])


@given(pruning_case())
def test_dense_channels_untouched(case):
    w, cfg, kind = case
    k = w.shape[0]
    dense = np.zeros(k, dtype=bool)
    dense[::2] = True
    res = prune(w, cfg, kind, dense_channels=dense)
    assert np.array_equal(res.weights[dense], w[dense])
    assert not res.metadata.pruned[dense[res.layout.channel_of_group()]].any()


@given(
    st.lists(st.integers(-128, 127), min_size=2, max_size=10),
    st.integers(1, 6),
    st.sampled_from(["half_even", "half_up"]),
)
def test_rounded_average_constant_is_mse_optimal(values, columns, rounding):
    w = np.array([values], dtype=np.int16)
    res = prune(w, PruneConfig("rounded_avg", group_size=len(values), columns=columns, mean_rounding=rounding))
    k_low = columns - int(res.metadata.redundant[0])
    if k_low <= 0:
        assert res.sse == 0
        return
    mask = (1 << k_low) - 1
    high = w[0].astype(np.int64) & ~mask
    sse_by_c = [int(((high | c) - w[0]) @ ((high | c) - w[0])) for c in range(1 << k_low)]
    assert res.sse == min(sse_by_c)


@given(st.lists(st.integers(-127, 127), min_size=2, max_size=8), st.sampled_from(["paper", "code"]))
def test_zero_point_offset_is_brute_force_optimum(values, semantics):
    w = np.array([values], dtype=np.int16)
    cfg = PruneConfig("zero_point", semantics, group_size=len(values), columns=4)
    res = prune(w, cfg)
    fn = reference.zero_point_paper_group if semantics == "paper" else reference.zero_point_code_group
    cmin, cmax = cfg.constant_range
    sse = {}
    for c in range(cmin, cmax + 1):  # one candidate at a time
        new, _, const = fn(w[0], 8, 4, constants=[c])
        assert const == c
        sse[c] = int(((new.astype(int) - w[0]) ** 2).sum())
    best = min(sse.values())
    first = min(c for c, v in sse.items() if v == best)  # ties: most negative constant
    assert (res.sse, int(res.metadata.constant[0])) == (best, first)


def test_bitflip_zero_columns():
    rng = np.random.default_rng(0)
    w = np.clip(np.round(rng.laplace(0, 20, size=(16, 64))), -127, 127).astype(np.int16)
    for n in range(1, 8):
        res = prune(w, PruneConfig("bitflip", "code", group_size=32, columns=n))
        mags = np.abs(res.groups().astype(int))
        for i in range(mags.shape[0]):
            zero_planes = sum(1 for k in range(7) if not (np.bitwise_or.reduce(mags[i]) >> k) & 1)
            assert zero_planes >= n


def test_remainder_phantoms_do_not_bias_mean():
    # 5 weights, g = 4: last group has one real weight; its mean must not include phantom zeros
    w = np.array([[7, 7, 7, 7, 7]], dtype=np.int16)
    res = prune(w, PruneConfig("rounded_avg", group_size=4, columns=4))
    assert res.weights.tolist() == [[7, 7, 7, 7, 7]]
    res = prune(w, PruneConfig("rounded_avg", group_size=4, columns=4, remainder="dense"))
    assert res.metadata.pruned.tolist() == [True, False]


def test_large_tensor_matches_reference_sample():
    rng = np.random.default_rng(1)
    w = np.clip(np.round(rng.laplace(0, 12, size=(64, 256))), -127, 127).astype(np.int16)
    for method, semantics in METHODS:
        cfg = PruneConfig(method, semantics, group_size=32, columns=4)
        res = prune(w, cfg)
        gw = group_weights(w, "linear", 32)
        for i in rng.choice(gw.values.shape[0], 20, replace=False):
            ref_w, _, ref_c = reference_group(gw.values[i], cfg)
            assert res.groups()[i].tolist() == ref_w.tolist()
            assert int(res.metadata.constant[i]) == ref_c


@pytest.mark.parametrize("n", [2, 3, 4])
def test_published_mse_ballpark(n):
    """BBS.md §6.4: zero-point < rounded averaging in MSE on Laplace(0, 12) weights, g = 16."""
    rng = np.random.default_rng(0)
    w = np.clip(np.round(rng.laplace(0, 12, size=(256, 1024))), -127, 127).astype(np.int16)
    mse = {m: prune(w, PruneConfig(m, s, group_size=16, columns=n)).mse for m, s in
           [("rounded_avg", "code"), ("zero_point", "code"), ("bitflip", "code")]}
    published = {2: (0.36, 0.24, 0.41), 3: (1.34, 0.84, 1.50), 4: (5.66, 3.09, 5.14)}[n]
    for got, want in zip(mse.values(), published):
        assert got == pytest.approx(want, rel=0.25)
    assert mse["zero_point"] < mse["rounded_avg"]
