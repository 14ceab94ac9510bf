"""codec.rtl_vectors: PE passes read from the column stream, with pe_model's outputs (no RTL tools needed)."""

from __future__ import annotations

import numpy as np
import pytest
from corner_tensors import metadata_corners, plain_corners
from hypothesis import given
from hypothesis import strategies as st

from bitvert.codec import decode, encode, encode_plain
from bitvert.codec.rtl_vectors import pe_passes
from bitvert.errors import InputError, UnsupportedLayerError
from bitvert.pruning import PruneConfig, prune


def _fields(p) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per pass: stored columns, first plane r and the constant added per activation."""
    n = p.n_columns.astype(np.int64)
    r = np.where(p.has_metadata, p.metadata >> 6, p.weight_bits - n).astype(np.int64)
    f = (p.metadata & 63).astype(np.int64)
    const = np.where(p.has_metadata, np.where(p.zero_point, -np.where(f > 31, f - 64, f), f), 0)
    return n, r, const


def _column_arithmetic(p) -> np.ndarray:
    """Each pass's dot product computed plainly from its columns and metadata byte (the PE's contract)."""
    b = p.weight_bits
    n, r, const = _fields(p)
    total = const * p.activations.sum(axis=1)
    for j in range(b):
        col = (p.columns[:, j, :].astype(np.int64) * p.activations).sum(axis=1)
        sig = np.left_shift(col, np.maximum(b - 1 - r - j, 0))
        total += np.where(j < n, np.where(j == 0, -sig, sig), 0)
    return total


@pytest.mark.parametrize("case", range(7))
def test_passes_of_corner_tensors(case):
    name, enc = (metadata_corners() + plain_corners())[case]
    p = pe_passes(enc, seed=case)
    assert len(p) == enc.group_layout.n_groups * 2  # 32-weight groups, 16-lane passes
    np.testing.assert_array_equal(_column_arithmetic(p), p.expected)


@given(seed=st.integers(0, 2**16), method=st.sampled_from(["zero_point", "rounded_avg"]),
       columns=st.sampled_from([2, 4, 6]), k=st.integers(1, 6), c=st.integers(1, 80))
def test_passes_of_pruned_tensors(seed, method, columns, k, c):
    """Remainder groups (c not a multiple of 32), both layouts: the columns and the metadata
    reproduce pe_model's output, and the lanes name the decoded weights."""
    rng = np.random.default_rng(seed)
    w = np.clip(np.round(rng.normal(0, 30, size=(k, c))), -127, 127).astype(np.int64)
    enc = encode(prune(w, PruneConfig(method, group_size=32, columns=columns)))
    p = pe_passes(enc, seed=seed)
    np.testing.assert_array_equal(_column_arithmetic(p), p.expected)
    dec = decode(enc).reshape(-1)
    live = p.weight_index >= 0
    assert (p.activations[~live] == 0).all()
    assert (p.columns[np.broadcast_to(~live[:, None, :], p.columns.shape)] == 0).all()
    # the weight value of each lane, rebuilt from its column bits, is the decoded weight
    b = p.weight_bits
    n, r, const = _fields(p)
    val = np.zeros(p.weight_index.shape, dtype=np.int64) + const[:, None]
    for j in range(b):
        bit = p.columns[:, j, :].astype(np.int64) << np.maximum(b - 1 - r - j, 0)[:, None]
        val += np.where((j < n)[:, None], np.where(j == 0, -bit, bit), 0)
    np.testing.assert_array_equal(val[live], dec[p.weight_index[live]])


def test_group_subset_activation_pool_and_take():
    w = np.arange(-64, 64).reshape(2, 64)
    enc = encode_plain(w, kind="linear")
    p = pe_passes(enc, groups=[3, 0], activation_values=[-128, 127])
    assert p.group.tolist() == [3, 3, 0, 0] and p.channel.tolist() == [1, 1, 0, 0]
    assert set(np.unique(p.activations).tolist()) <= {-128, 127}
    np.testing.assert_array_equal(p.expected, (w.reshape(-1)[p.weight_index] * p.activations).sum(axis=1))
    q = p.take(np.array([1, 2]))
    assert len(q) == 2 and q.group.tolist() == [3, 0]


def test_bad_input_is_named():
    enc = encode_plain(np.zeros((1, 32), dtype=np.int64), kind="linear")
    with pytest.raises(InputError, match="groups must index"):
        pe_passes(enc, groups=[5])
    with pytest.raises(InputError, match="activation_values"):
        pe_passes(enc, activation_values=[300])
    with pytest.raises(InputError, match="activation_bits"):
        pe_passes(enc, activation_bits=1)
    with pytest.raises(InputError, match="EncodedTensor"):
        pe_passes(np.zeros(3))
    bw = encode(prune(np.ones((1, 32), dtype=np.int64), PruneConfig("bitflip", group_size=32, columns=3)))
    with pytest.raises(UnsupportedLayerError):
        pe_passes(bw)
