import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from bitvert.core.grouping import LayerKind, RemainderPolicy, group_weights
from bitvert.errors import InputError


def test_linear_groups_consecutive_inputs():
    w = np.arange(12).reshape(2, 6)  # (out=2, in=6)
    gw = group_weights(w, "linear", group_size=3)
    assert gw.values.tolist() == [[0, 1, 2], [3, 4, 5], [6, 7, 8], [9, 10, 11]]
    assert gw.layout.channel_of_group().tolist() == [0, 0, 1, 1]


def test_linear_in_out_is_transposed_first():
    w = np.arange(12).reshape(6, 2)  # stored (in=6, out=2), e.g. HuggingFace Conv1D
    gw = group_weights(w, "linear_in_out", group_size=3)
    assert gw.values.tolist() == [[0, 2, 4], [6, 8, 10], [1, 3, 5], [7, 9, 11]]
    assert gw.layout.n_channels == 2
    assert np.array_equal(gw.ungroup(), w)


def test_conv_groups_input_channels_at_each_position():
    # K=2, C=4, kh=1, kw=2: w[k, c, 0, x] = 100k + 10c + x
    k, c, x = np.meshgrid(np.arange(2), np.arange(4), np.arange(2), indexing="ij")
    w = (100 * k + 10 * c + x)[:, :, None, :]
    gw = group_weights(w, "conv", group_size=2)
    # order: out channel, then (kh, kw), then channel block
    assert gw.values.tolist() == [
        [0, 10], [20, 30], [1, 11], [21, 31],
        [100, 110], [120, 130], [101, 111], [121, 131],
    ]
    assert np.array_equal(gw.ungroup(), w)


def test_small_c_is_one_short_group():
    w = np.ones((4, 3, 3, 3), dtype=np.int8)  # first RGB conv
    gw = group_weights(w, "conv", group_size=32)
    assert gw.values.shape == (4 * 9, 3)
    assert set(gw.lengths.tolist()) == {3}
    assert gw.prunable.all()


def test_depthwise_groups_along_window():
    w = np.arange(2 * 9).reshape(2, 1, 3, 3)
    gw = group_weights(w, None, group_size=4)
    assert gw.layout.along_window
    assert gw.values.tolist()[:3] == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 0, 0, 0]]
    assert gw.lengths.tolist() == [4, 4, 1, 4, 4, 1]


def test_remainder_policies():
    w = np.arange(10).reshape(1, 10)
    short = group_weights(w, "linear", 4, "short")
    assert short.lengths.tolist() == [4, 4, 2]
    assert short.values[2].tolist() == [8, 9, 0, 0]  # phantom entries, excluded via lengths
    assert short.layout.valid_mask()[2].tolist() == [True, True, False, False]
    dense = group_weights(w, "linear", 4, "dense")
    assert dense.prunable.tolist() == [True, True, False]
    with pytest.raises(InputError, match="not a multiple of group_size=4"):
        group_weights(w, "linear", 4, "error")


@given(
    kind=st.sampled_from(list(LayerKind)),
    dims=st.lists(st.integers(1, 7), min_size=4, max_size=4),
    g=st.integers(2, 9),
    remainder=st.sampled_from([RemainderPolicy.SHORT, RemainderPolicy.DENSE]),
    seed=st.integers(0, 2**16),
)
def test_group_round_trip(kind, dims, g, remainder, seed):
    shape = tuple(dims[:2]) if kind is not LayerKind.CONV else tuple(dims)
    w = np.random.default_rng(seed).integers(-128, 128, size=shape)
    gw = group_weights(w, kind, g, remainder)
    assert gw.values.shape[0] == gw.layout.n_groups == gw.lengths.shape[0]
    assert int(gw.lengths.sum()) == w.size
    # phantom entries are zero and the real ones are a permutation of w
    assert np.array_equal(np.sort(gw.values[gw.layout.valid_mask()]), np.sort(w.ravel()))
    assert np.array_equal(gw.ungroup(), w)


def test_torch_tensor_and_errors():
    gw = group_weights(torch.arange(8, dtype=torch.int8).reshape(2, 4), group_size=2)
    assert gw.values.shape == (4, 2)
    with pytest.raises(InputError, match="infer the layer kind"):
        group_weights(np.arange(4))
    with pytest.raises(InputError, match="kind must be one of"):
        group_weights(np.ones((2, 2), dtype=int), "dense")
    with pytest.raises(InputError, match="group_size must be >= 2"):
        group_weights(np.ones((2, 2), dtype=int), group_size=1)
    with pytest.raises(InputError, match="must be 2-d"):
        group_weights(np.ones((2, 2, 2), dtype=int), "linear")
    with pytest.raises(InputError, match="integer"):
        group_weights(torch.ones(2, 2))
