"""Bit-column packing: hand-computed bytes and agreement with a bit-by-bit reference."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from bitvert.codec.pack import pack_columns, plane_count, stream_offsets, unpack_columns


def _reference_stream(codes, order, lengths, planes, bits):
    """Readable reference: list every stored bit in stream order, then np.packbits."""
    out = []
    for s, row in enumerate(order):
        for p in range(bits):
            if (int(planes[s]) >> p) & 1:
                out += [(int(codes[row, i]) >> (bits - 1 - p)) & 1 for i in range(int(lengths[row]))]
    return np.packbits(np.array(out, dtype=np.uint8)) if out else np.zeros(0, np.uint8)


def test_golden_bytes_two_groups():
    # group 0: 4-bit codes [0b1010, 0b0110], both planes 0 and 3 stored (mask bits 0 and 3)
    # column plane 0 (MSB): bits of 8 -> [1, 0]; column plane 3 (LSB): [0, 0]
    # group 1 (stored first): codes [0b1111, 0b0001], plane 3 only -> [1, 1]
    codes = np.array([[0b1010, 0b0110], [0b1111, 0b0001]], dtype=np.uint8)
    lengths = np.array([2, 2], dtype=np.int32)
    order = np.array([1, 0])
    planes = np.array([0b1000, 0b1001], dtype=np.uint16)
    out = pack_columns(codes, order, lengths, planes, 4)
    # stream: 1 1 | 1 0 | 0 0 -> 111000 padded -> 0b11100000
    assert out.tolist() == [0b11100000]


def test_fast_path_byte_layout():
    # 8 weights, 8-bit codes 0..7 -> plane 7 (LSB) column is 0,1,0,1,0,1,0,1 = 0x55
    codes = np.arange(8, dtype=np.uint8)[None, :]
    out = pack_columns(codes, np.array([0]), np.array([8], np.int32), np.array([1 << 7], np.uint16), 8)
    assert out.tolist() == [0x55]
    out = pack_columns(codes, np.array([0]), np.array([8], np.int32), np.array([1 << 6], np.uint16), 8)
    assert out.tolist() == [0b00110011]


@settings(max_examples=60, deadline=None)
@given(st.data())
def test_matches_reference_and_inverts(data):
    bits = data.draw(st.integers(2, 8))
    width = data.draw(st.sampled_from([1, 3, 8, 16, 24, 32]))
    n = data.draw(st.integers(1, 12))
    rng = np.random.default_rng(data.draw(st.integers(0, 2**31)))
    lengths = rng.integers(1, width + 1, n).astype(np.int32)
    if data.draw(st.booleans()):
        lengths[:] = width
    codes = rng.integers(0, 1 << bits, (n, width)).astype(np.uint8)
    planes = rng.integers(1, 1 << bits, n).astype(np.uint16)
    order = rng.permutation(n)
    out = pack_columns(codes, order, lengths, planes, bits)
    ref = _reference_stream(codes, order, lengths, planes, bits)
    assert out.tolist() == ref.tolist()
    # two's complement finish: sign-extend from the first stored plane, then add a constant
    row_planes = planes[np.argsort(order)].astype(np.int64)  # plane mask of each row
    first = np.array([min(p for p in range(bits) if (m >> p) & 1) for m in row_planes])
    sign_pos = (bits - 1 - first)[order].astype(np.int32)
    add = rng.integers(-40, 40, n).astype(np.int32)
    back = unpack_columns(out, order, lengths, planes, bits, width, sign_pos, add)
    mask = np.arange(width)[None, :] < lengths[:, None]
    keep = np.zeros(n, dtype=np.int64)
    for p in range(bits):
        keep |= ((row_planes >> p) & 1) << (bits - 1 - p)
    kept = codes.astype(np.int64) & keep[:, None]
    sb = (bits - 1 - first)[:, None]
    expected = kept - (((kept >> sb) & 1) << (sb + 1)) + add[np.argsort(order)][:, None]
    assert (back[mask] == expected[mask]).all()
    assert (back[~mask] == 0).all()


def test_sign_extension_and_offset_in_both_paths():
    # 16 weights (fast path) and 5 weights (bit path) of 4-bit two's complement, planes 4..7 of 8
    rng = np.random.default_rng(0)
    for width, n_w in ((16, 16), (5, 5)):
        v = rng.integers(-8, 8, (3, width))
        codes = (v & 0xFF).astype(np.uint8)
        lengths = np.full(3, n_w, np.int32)
        planes = np.full(3, 0b11110000, np.uint16)
        s = pack_columns(codes, np.arange(3), lengths, planes, 8)
        add = np.array([0, -7, 3], np.int32)
        out = unpack_columns(s, np.arange(3), lengths, planes, 8, width, np.full(3, 3, np.int32), add)
        assert (out == v + add[:, None]).all()


def test_offsets_and_counts():
    off, total = stream_offsets(np.array([32, 32, 5]), np.array([4, 8, 3]))
    assert off.tolist() == [0, 128, 384] and total == 399
    assert plane_count(np.array([0, 1, 0b1011, 0xFF], np.uint16)).tolist() == [0, 1, 3, 8]
