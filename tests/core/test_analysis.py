import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from bitvert.core.analysis import (
    column_ones,
    effectual_bits,
    free_columns,
    redundant_columns,
    sparsity_stats,
    zero_magnitude_columns,
)
from bitvert.core.bitplanes import to_bitplanes
from bitvert.errors import InputError


def test_bbs_worked_example_column_sum():
    # BBS.md §4 / test vector 1
    column = np.array([1, 1, 0, 1, 1, 1, 0, 1])
    a = np.array([3, -1, 4, 1, -5, 9, 2, -6])
    through_ones = a[column == 1].sum()
    sum_a = a.sum()
    through_zeros = sum_a - a[column == 0].sum()
    assert (through_ones, sum_a, through_zeros) == (1, 7, 1)
    # as a 2-bit group whose LSB column is this vector: the hardware inverts it (6 ones > 4)
    eff = effectual_bits(column[None, :], bits=2, subgroup=8)
    assert eff.tolist() == [[0, 2]]


@given(
    data=st.data(),
    bits=st.integers(2, 8),
    width=st.integers(1, 40),
)
def test_effectual_bits_at_most_half(data, bits, width):
    lo, hi = -(1 << (bits - 1)), (1 << (bits - 1)) - 1
    vals = data.draw(arrays(np.int16, (3, width), elements=st.integers(lo, hi)))
    lengths = np.array([width, max(1, width // 2), 1], dtype=np.int32)
    sw = effectual_bits(vals, lengths, bits, subgroup=None)
    assert (sw <= (lengths // 2)[:, None]).all()
    hw = effectual_bits(vals, lengths, bits, subgroup=8)
    # per 8-weight sub-group at most 4 effectual bits per column
    n_sub = -(-lengths // 8)
    assert (hw <= (4 * n_sub)[:, None]).all()
    # brute force of the hardware rule on explicit planes
    for i, length in enumerate(lengths):
        planes = to_bitplanes(vals[i, :length], bits)
        expect = np.zeros(bits, dtype=int)
        for s in range(0, length, 8):
            sub = planes[:, s : s + 8]
            ones = sub.sum(axis=1).astype(int)
            expect += np.where(2 * ones > sub.shape[1], sub.shape[1] - ones, ones)
        assert hw[i].tolist() == expect.tolist()


def test_redundant_columns_fig4_and_cap():
    assert redundant_columns(np.array([[13, -57, 20, -11]])).tolist() == [1]
    assert redundant_columns(np.array([[1, 2, 3, 4]])).tolist() == [3]  # capped at 3
    assert redundant_columns(np.array([[1, 2, 3, 4]]), cap=7).tolist() == [4]
    assert redundant_columns(np.array([[0, 0], [-1, 0], [-128, 127]]), cap=7).tolist() == [7, 7, 0]


@given(data=st.data(), bits=st.integers(2, 8), width=st.integers(1, 12))
def test_free_and_redundant_match_plane_definition(data, bits, width):
    lo, hi = -(1 << (bits - 1)), (1 << (bits - 1)) - 1
    vals = data.draw(arrays(np.int16, (4, width), elements=st.integers(lo, hi)))
    lengths = np.array([width, max(1, width - 1), 1, width], dtype=np.int32)
    cap = data.draw(st.integers(0, bits - 1))
    red = redundant_columns(vals, lengths, bits, cap)
    free = free_columns(vals, lengths, bits, cap)
    for i, length in enumerate(lengths):
        planes = to_bitplanes(vals[i, :length], bits)
        r = 0
        while r < cap and np.array_equal(planes[r + 1], planes[0]):
            r += 1
        t = 0
        while t < bits - 1 - r and len(set(planes[bits - 1 - t].tolist())) == 1:
            t += 1
        assert red[i] == r
        assert free[i] == r + t


def test_column_ones_and_zero_magnitude_columns():
    vals = np.array([[13, -57, 20, -11]])
    assert column_ones(vals).tolist() == [[2, 2, 1, 2, 1, 4, 1, 3]]
    # magnitudes 13, 57, 20, 11 -> plane 64 is zero in every weight
    assert zero_magnitude_columns(vals).tolist() == [1]
    assert zero_magnitude_columns(np.array([[81, -20, 1, -7]])).tolist() == [2]
    with pytest.raises(InputError, match="no 8-bit sign-magnitude code"):
        zero_magnitude_columns(np.array([[-128, 1]]))


def test_sparsity_stats_by_hand():
    # one group of four weights: 0, 0, 1, -1
    s = sparsity_stats(np.array([[0, 0, 1, -1]]), "linear", group_size=4)
    assert s.weights == 4 and s.groups == 1
    assert s.value_sparsity == 0.5
    # two's complement ones: 0, 0, 1 (LSB), 8 (-1) -> 9 of 32 bits
    assert s.zero_bit_sparsity_twos == pytest.approx(1 - 9 / 32)
    # sign-magnitude: 1 has one 1, -1 has sign + LSB -> 3 of 32
    assert s.zero_bit_sparsity_sign_magnitude == pytest.approx(1 - 3 / 32)
    # per column min(ones, zeros): planes 0..6 have one 1 (from -1); LSB has two -> 7 + 2 = 9 ... min
    assert s.bbs_sparsity == pytest.approx(1 - (7 * 1 + 2) / 32)


def test_bad_group_arrays():
    with pytest.raises(InputError, match="non-empty"):
        free_columns(np.zeros((0, 4), dtype=np.int16))
    with pytest.raises(InputError, match="lengths must lie"):
        free_columns(np.zeros((1, 4), dtype=np.int16), np.array([5]))
    with pytest.raises(InputError, match="cap must be"):
        free_columns(np.zeros((1, 4), dtype=np.int16), cap=8)
    with pytest.raises(InputError, match="integers"):
        free_columns(np.zeros((1, 4)))
