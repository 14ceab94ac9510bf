import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from bitvert.core.bitplanes import (
    NumberFormat,
    from_bitplanes,
    int_range,
    nonzero_magnitude_planes,
    plane_count,
    to_bitplanes,
    zero_magnitude_planes,
)
from bitvert.errors import InputError


def test_fig4_example_twos_complement():
    # BBS paper Fig. 4: -57 = 11000111, 13 = 00001101
    planes = to_bitplanes(np.array([-57, 13]), 8)
    assert planes[:, 0].tolist() == [1, 1, 0, 0, 0, 1, 1, 1]
    assert planes[:, 1].tolist() == [0, 0, 0, 0, 1, 1, 0, 1]
    assert planes.shape == (8, 2) and planes.dtype == np.uint8


def test_minus_128_twos_complement_and_plane_weights():
    planes = to_bitplanes(np.array([-128, 127, -1]), 8)
    assert planes[:, 0].tolist() == [1, 0, 0, 0, 0, 0, 0, 0]
    assert planes[:, 1].tolist() == [0, 1, 1, 1, 1, 1, 1, 1]
    assert planes[:, 2].tolist() == [1] * 8
    # value = -128*b0 + sum b_k 2^(7-k)
    w = np.array([-128, 127, -1, 37, -57])
    p = to_bitplanes(w, 8).astype(int)
    sig = np.array([-128, 64, 32, 16, 8, 4, 2, 1])
    assert (sig @ p).tolist() == w.tolist()


def test_sign_magnitude_layout():
    planes = to_bitplanes(np.array([-57, 57, 0]), 8, "sign_magnitude")
    assert planes[:, 0].tolist() == [1, 0, 1, 1, 1, 0, 0, 1]  # sign then 0111001
    assert planes[:, 1].tolist() == [0, 0, 1, 1, 1, 0, 0, 1]
    assert planes[:, 2].tolist() == [0] * 8


def test_neg_min_sign_magnitude_policy():
    with pytest.raises(InputError, match="sign-magnitude cannot encode"):
        to_bitplanes(np.array([-128, 3]), 8, "sign_magnitude")
    planes = to_bitplanes(np.array([-128, 3]), 8, "sign_magnitude", neg_min="clamp")
    assert from_bitplanes(planes, "sign_magnitude").tolist() == [-127, 3]


@given(
    bits=st.integers(2, 8),
    fmt=st.sampled_from(list(NumberFormat)),
    data=st.data(),
)
def test_round_trip(bits, fmt, data):
    lo, hi = int_range(bits, fmt)
    shape = data.draw(st.lists(st.integers(1, 5), min_size=1, max_size=3).map(tuple))
    w = data.draw(arrays(np.int16, shape, elements=st.integers(lo, hi)))
    planes = to_bitplanes(w, bits, fmt)
    assert planes.shape == (bits,) + shape
    assert set(np.unique(planes)) <= {0, 1}
    assert np.array_equal(from_bitplanes(planes, fmt), w)


def test_torch_input_accepted():
    t = torch.tensor([[-3, 4]], dtype=torch.int8)
    assert from_bitplanes(to_bitplanes(t)).tolist() == [[-3, 4]]


@pytest.mark.parametrize(
    "w, kwargs, match",
    [
        (np.array([1.5]), {}, "must hold integers"),
        (torch.tensor([1.0]), {}, "integer tensor"),
        (np.array([np.nan]), {}, "NaN"),
        (np.array([128]), {}, "outside the signed 8-bit range"),
        (np.array([8]), {"bits": 4}, "outside the signed 4-bit range"),
        (np.array([1]), {"bits": 1}, "bits must be between 2 and 8"),
        (np.array([1]), {"bits": 9}, "bits must be between 2 and 8"),
        (np.zeros((0, 3), dtype=np.int8), {}, "empty"),
        (np.array([1]), {"fmt": "ones_complement"}, "ones_complement"),
    ],
)
def test_bad_input(w, kwargs, match):
    with pytest.raises((InputError, ValueError), match=match):
        to_bitplanes(w, **kwargs)


def test_from_bitplanes_rejects_non_binary():
    with pytest.raises(InputError, match="only 0 and 1"):
        from_bitplanes(np.full((8, 2), 2))


def test_plane_count_and_magnitude_planes_by_hand():
    assert plane_count(np.array([0, 1, 0b1011, 0xFF], np.uint16)).tolist() == [0, 1, 3, 8]
    # BBS.md vector 12 after the bit flip: magnitudes 16, 56, 16, 8 -> planes of 32, 16, 8 are non-zero
    orv = np.array([16 | 56 | 16 | 8, 0, 127, 0x80 | 1])
    assert nonzero_magnitude_planes(orv, 8).tolist() == [3, 0, 7, 1]  # bit 7 (the sign plane) is ignored
    assert zero_magnitude_planes(orv, 8).tolist() == [4, 7, 0, 6]
    assert zero_magnitude_planes(np.array([[0b101]]), 4).tolist() == [[1]]  # shape kept
    with pytest.raises(InputError):
        zero_magnitude_planes(np.array([1]), 9)


@given(arrays(np.int16, (5, 7), elements=st.integers(-127, 127)), st.integers(2, 8))
def test_zero_magnitude_planes_equal_all_zero_sign_magnitude_planes(w, bits):
    lim = (1 << (bits - 1)) - 1
    w = np.clip(w, -lim, lim)
    planes = to_bitplanes(w, bits, NumberFormat.SIGN_MAGNITUDE)  # [bits, 5, 7]
    expected = (planes[1:].max(axis=2) == 0).sum(axis=0)
    orv = np.bitwise_or.reduce(np.abs(w.astype(np.int64)), axis=1)
    assert zero_magnitude_planes(orv, bits).tolist() == expected.tolist()
