"""The functional BitVert PE: exact Y = W·X from the encoded columns, effectual-bit counts."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bitvert.codec import decode, encode, encode_plain
from bitvert.codec.tensor import plan_groups
from bitvert.codec.pe_model import input_positions, pe_matmul, reference_matmul
from bitvert.core.analysis import effectual_bits
from bitvert.errors import InputError, UnsupportedLayerError
from bitvert.pruning import PruneConfig, prune


def test_worked_example_inverted_column():
    # BBS.md §4: LSB column [1,1,0,1,1,1,0,1] (six ones) against A = [3,-1,4,1,-5,9,2,-6]:
    # popcount 6 > 4 -> inverted; 2 effectual bits; result ΣA - (4 + 2) = 7 - 6 = 1
    w = np.array([[1, 1, 0, 1, 1, 1, 0, 1]], dtype=np.int16)
    x = np.array([3, -1, 4, 1, -5, 9, 2, -6])
    res = pe_matmul(encode_plain(w, group_size=8), x)
    assert res.output.tolist() == [[1]]
    assert res.effectual_bits.tolist() == [[0, 0, 0, 0, 0, 0, 0, 2]]
    assert res.inverted_subgroup_columns == 1
    assert res.stored_columns.all()


def test_msb_negation_and_tie_rule():
    # -128 = 10000000: only the MSB column is set (1 one out of 2 -> tie -> through the ones)
    w = np.array([[-128, 0]], dtype=np.int16)
    res = pe_matmul(encode_plain(w, group_size=2), np.array([[3], [5]]))
    assert res.output.tolist() == [[-384]]
    assert res.inverted_subgroup_columns == 0
    assert res.effectual_bits[0].tolist() == [1, 0, 0, 0, 0, 0, 0, 0]


def test_constant_paths_by_hand():
    # Fig. 4 group: stored planes 1..4 + pattern 5 in the 3 free low columns; A = [1, 2, 3, 4]
    r = prune([[13, -57, 20, -11]], PruneConfig("rounded_avg", group_size=4, columns=4))
    x = np.array([1, 2, 3, 4])
    assert pe_matmul(encode(r), x).output.tolist() == [[13 - 118 + 63 - 44]]
    # Fig. 5 group, zero point c = -26: Σ stored·A - c·ΣA
    r = prune([[81, -20, 1, -7]], PruneConfig("zero_point", group_size=4, columns=4))
    res = pe_matmul(encode(r), x)
    assert res.output.tolist() == [[56 - 96 - 72 - 128 + 26 * 10]] == [[82 - 44 + 6 - 24]]


_SHAPES = {"linear": [(12, 40), (33, 64), (5, 7)], "linear_in_out": [(40, 9)],
           "conv": [(8, 20, 3, 3), (6, 3, 3, 3), (9, 1, 3, 3), (4, 64, 1, 1)]}


@settings(max_examples=40, deadline=None)
@given(st.data())
def test_equals_integer_matmul_on_random_layers(data):
    kind = data.draw(st.sampled_from(sorted(_SHAPES)))
    shape = data.draw(st.sampled_from(_SHAPES[kind]))
    bits = data.draw(st.integers(2, 8))
    method = data.draw(st.sampled_from(["rounded_avg", "zero_point", "plain"]))
    semantics = data.draw(st.sampled_from(["paper", "code"]))
    columns = data.draw(st.integers(1, bits - 1))
    g = data.draw(st.sampled_from([4, 8, 16, 32]))
    rng = np.random.default_rng(data.draw(st.integers(0, 2**31)))
    lo, hi = -(1 << (bits - 1)), (1 << (bits - 1)) - 1
    w = np.clip(np.round(rng.laplace(0, (1 << bits) / 20, shape)), lo + 1, hi).astype(np.int16)
    k = shape[1] if kind == "linear_in_out" else shape[0]
    if method == "plain":
        enc = encode_plain(w, kind=kind, group_size=g, weight_bits=bits)
        stored_vals = None
    else:
        res = prune(w, PruneConfig(method, semantics=semantics, weight_bits=bits, group_size=g, columns=columns),
                    kind=kind, dense_channels=rng.random(k) < 0.3)
        enc = encode(res)
    x = rng.integers(data.draw(st.sampled_from([-128, 0])), 256 if data.draw(st.booleans()) else 128,
                     (w.size // k, data.draw(st.integers(1, 6))))
    pe = pe_matmul(enc, x)
    assert np.array_equal(pe.output, reference_matmul(decode(enc), x, kind))
    # every 8-weight sub-group column costs at most 4 additions
    lay = enc.group_layout
    assert (pe.effectual_bits <= 4 * -(-lay.width // 8)).all()
    # stored columns hold exactly the planes of the stored values: counts agree with the analysis
    if method != "plain":
        plan = plan_groups(enc)
        meta = np.zeros(lay.n_groups, bool)
        meta[plan.order] = plan.has_metadata
        stored_vals = np.where(meta[:, None] & (method == "zero_point"), res.stored_groups(), res.groups())
    else:
        stored_vals = lay.group(w)
    ref = effectual_bits(stored_vals, lay.lengths(), bits, subgroup=8)
    assert np.array_equal(np.where(pe.stored_columns, ref, 0), pe.effectual_bits)


def test_real_layer_from_a_pruned_model():
    torch = pytest.importorskip("torch")
    from bitvert.pipeline import quantize_weight

    torch.manual_seed(0)
    layer = torch.nn.Linear(96, 64)
    q, _ = quantize_weight(layer.weight.detach(), 8, 0, "per_channel")
    dense = np.zeros(64, bool)
    dense[:32] = True
    res = prune(q.numpy(), PruneConfig("zero_point", columns=4), dense_channels=dense)
    x = np.random.default_rng(0).integers(0, 256, (96, 16))
    pe = pe_matmul(encode(res), x)
    assert np.array_equal(pe.output, res.weights.astype(np.int64) @ x)


def test_input_positions_follow_torch_order():
    from bitvert.core.grouping import make_layout

    lay = make_layout((2, 3, 1, 2), "conv", group_size=2)  # rows = 2 kernel positions x 3 channels
    # torch flat index of (c, kw) is c*2 + kw; group (kw=0, channels 0-1), (kw=0, channel 2 + phantom), ...
    assert input_positions(lay).tolist() == [[0, 2], [4, -1], [1, 3], [5, -1]]


def test_bad_input():
    enc = encode_plain(np.ones((2, 8), np.int16))
    with pytest.raises(InputError, match="shape \\(8, T\\)"):
        pe_matmul(enc, np.ones((7, 2), np.int64))
    with pytest.raises(InputError, match="integer"):
        pe_matmul(enc, np.ones((8, 2)))
    with pytest.raises(InputError, match="EncodedTensor"):
        pe_matmul(np.ones((2, 8)), np.ones((8, 1), np.int64))
    bw = encode(prune(np.ones((2, 32), np.int16), PruneConfig("bitflip", columns=4)))
    with pytest.raises(UnsupportedLayerError, match="two's complement"):
        pe_matmul(bw, np.ones((32, 1), np.int64))
