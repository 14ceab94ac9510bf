"""Input validation and the int16 conversion: the parallel pass for large tensors equals numpy's."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from bitvert.core import validation
from bitvert.core._kernels import int16_copy_min_max
from bitvert.core.validation import PARALLEL_MIN_WEIGHTS, as_int_array
from bitvert.errors import InputError

INT_DTYPES = [np.int8, np.uint8, np.int16, np.uint16, np.int32, np.uint32, np.int64, np.uint64]


@settings(max_examples=80, deadline=None)
@given(
    src=hnp.arrays(st.sampled_from([np.int8, np.uint8, np.int16, np.int32, np.int64]),
                   st.integers(1, 40)),
    chunk=st.integers(1, 9),
    copy=st.booleans(),
)
def test_int16_copy_min_max_equals_numpy(src, chunk, copy):
    out = np.full(src.size if copy else 0, 7, dtype=np.int16)
    mn, mx = int16_copy_min_max(src, out, chunk)
    assert (int(mn), int(mx)) == (int(src.min()), int(src.max()))
    if copy:
        assert np.array_equal(out, src.astype(np.int16))


def _large(dtype, rng):
    info = np.iinfo(dtype)
    lo, hi = max(int(info.min), -128), min(int(info.max), 127)
    return rng.integers(lo, hi, size=(PARALLEL_MIN_WEIGHTS // 256 + 3, 256), endpoint=True).astype(dtype)


@pytest.mark.parametrize("dtype", INT_DTYPES)
def test_large_tensors_convert_like_small_ones(dtype):
    rng = np.random.default_rng(3)
    w = _large(dtype, rng)
    assert w.size >= PARALLEL_MIN_WEIGHTS
    got = as_int_array(w, "weights", bits=8)
    assert got.dtype == np.int16 and got.shape == w.shape
    assert np.array_equal(got, w.astype(np.int16))
    if dtype == np.int16:
        assert got is w  # no copy when nothing needs converting
    # non-contiguous input takes numpy's path and gives the same values
    assert np.array_equal(as_int_array(w[:, ::2], "weights", bits=8), w[:, ::2].astype(np.int16))


@pytest.mark.parametrize("dtype, bad", [(np.int16, 128), (np.int16, -129), (np.int32, 40000), (np.int64, -129)])
@pytest.mark.parametrize("where", [0, PARALLEL_MIN_WEIGHTS // 2, (1 << 16) - 1, 1 << 16, -1])
def test_out_of_range_value_in_a_large_tensor_raises_the_same_error(dtype, where, bad):
    """The range check moved into the parallel pass: an offending value anywhere (first, last, at a
    chunk border) gives the message of the small-tensor path, naming the range found and the fix."""
    rng = np.random.default_rng(5)
    w = _large(dtype, rng)
    w.reshape(-1)[where] = bad
    small = w.reshape(-1)[: 1000].copy()
    small[0] = bad
    with pytest.raises(InputError) as big_err:
        as_int_array(w, "weights", bits=8)
    with pytest.raises(InputError) as small_err:
        as_int_array(small, "weights", bits=8)
    assert str(big_err.value) == str(small_err.value)
    lo, hi = min(bad, -128), max(bad, 127)
    assert f"[{lo}, {hi}]" in str(big_err.value) and "signed 8-bit range [-128, 127]" in str(big_err.value)


def test_values_outside_int16_raise_without_bits(monkeypatch):
    w = np.zeros(PARALLEL_MIN_WEIGHTS, dtype=np.int32)
    w[-1] = 1 << 20
    with pytest.raises(InputError, match="outside int16"):
        as_int_array(w, "weights")
    # the numpy path (small tensors) says the same
    monkeypatch.setattr(validation, "PARALLEL_MIN_WEIGHTS", 1 << 40)
    with pytest.raises(InputError, match="outside int16"):
        as_int_array(w, "weights")
