"""The one byte-layout walk shared by the encoder and the decoder, checked by hand."""

from __future__ import annotations

import numpy as np
import pytest

from bitvert.codec import Chunk, TensorLayout
from bitvert.codec import _kernels as K
from bitvert.codec.tensor import _plan, _walk
from bitvert.core.grouping import make_layout
from bitvert.errors import FormatError

# 3 channels of 70 weights, g = 32, dense remainder: groups of 32, 32, 6; the 6-weight group is unprunable
LAY = make_layout((3, 70), "linear", 32, "dense")
CHUNKS = (Chunk(8, 1, False), Chunk(4, 2, True))  # channel 2 sensitive, channels 0 and 1 normal at S = 4
PERM = np.array([2, 0, 1])


def test_walk_order_widths_and_metadata_placement():
    w = _walk(LAY, PERM, CHUNKS, 8)
    assert w.order.tolist() == [6, 7, 8, 0, 1, 2, 3, 4, 5]
    assert w.columns.tolist() == [8, 8, 8, 4, 4, 8, 4, 4, 8]  # dense remainder of a normal channel: b columns
    assert w.has_metadata.tolist() == [False, False, False, True, True, False, True, True, False]
    assert w.metadata_groups == 4


def test_plan_reads_planes_constants_and_offsets_from_the_metadata():
    w = _walk(LAY, PERM, CHUNKS, 8)
    # rounded averaging: r = 1 pattern 101, r = 0 pattern 0, r = 2 pattern 11, r = 3 pattern 1
    md = np.array([(1 << 6) | 0b101, 0, (2 << 6) | 0b11, (3 << 6) | 1], dtype=np.uint8)
    p = _plan(w, LAY.lengths(), md, TensorLayout.BBS_ROUNDED_AVG, 8, "t")
    assert p.planes.tolist() == [0xFF, 0xFF, 0xFF, 0x1E, 0x0F, 0xFF, 0x3C, 0x78, 0xFF]
    assert p.sign_pos.tolist() == [7, 7, 7, 6, 7, 7, 5, 4, 7]
    assert p.msb_plane.tolist() == [0, 0, 0, 1, 0, 0, 2, 3, 0]
    assert p.add.tolist() == [0, 0, 0, 0b101, 0, 0, 0b11, 1, 0]
    # 32, 32, 6 weights at 8 columns; 32, 32 at 4; 6 at 8; 32, 32 at 4; 6 at 8
    assert p.offsets.tolist() == [0, 256, 512, 560, 688, 816, 864, 992, 1120]
    assert p.total_bits == 1168
    # zero-point: field 100110 is c = -26, added back as +26
    zp = _plan(w, LAY.lengths(), np.array([0b01100110, 0, 0, 0], np.uint8), TensorLayout.BBS_ZERO_POINT, 8, "t")
    assert zp.add.tolist()[3:5] == [26, 0]


def _mask_bytes(bits: str) -> np.ndarray:
    return np.packbits(np.array([int(c) for c in bits], np.uint8))


def test_plan_bitwave_masks_and_errors():
    lay = make_layout((2, 8), "linear", 4)
    w = _walk(lay, np.arange(2), (Chunk(4, 2, True),), 8)
    # 7-bit masks per group, MSB first (bit p-1 = 1: magnitude plane p is all zero, not stored)
    md = _mask_bytes("1000111" + "1111111" + "0001111" + "1110001")
    p = _plan(w, lay.lengths(), md, TensorLayout.BITWAVE, 8, "t")
    assert p.planes.tolist() == [0b11101, 0b1, 0b1111, 0b1110001]  # sign + planes 2-4; sign; 1-3; 4-6
    assert p.sign_pos.tolist() == [-1] * 4
    assert p.offsets.tolist() == [0, 16, 20, 36] and p.total_bits == 52
    with pytest.raises(FormatError, match="BitWave group 3 stores 5 columns, more than its chunk's 4"):
        _plan(w, lay.lengths(), _mask_bytes("1000111" + "1111111" + "0001111" + "1110000"), TensorLayout.BITWAVE,
              8, "t")
    with pytest.raises(FormatError, match="records 3 redundant columns, more than the 2 free columns"):
        _plan(_walk(lay, np.arange(2), (Chunk(6, 2, True),), 8), lay.lengths(), np.array([0xC0, 0, 0, 0], np.uint8),
              TensorLayout.BBS_ZERO_POINT, 8, "t")
    with pytest.raises(FormatError, match="too few"):
        _plan(w, lay.lengths(), md[:2], TensorLayout.BITWAVE, 8, "t")


def test_metadata_kernel_writes_what_the_plan_reads():
    lay = make_layout((2, 8), "linear", 4)
    w = _walk(lay, np.array([1, 0]), (Chunk(5, 2, True),), 8)
    red = np.array([2, 0, 5, 1], np.int32)
    first = np.array([0b11, 0, 0b111, 1], np.int32)
    mag_or = np.array([0b0111000, 0x7F, 0, 0b1], np.int32)
    md = np.zeros(4, np.uint8)
    K.metadata_kernel(w.order, w.columns, w.has_metadata, red, first, np.zeros(4, np.int32), mag_or, 8, K.LAYOUT_RA,
                      md)
    # stream order is groups 2, 3, 0, 1; r = min(R, 3, b - S = 3); pattern = low b - S - r bits of the first code
    assert md.tolist() == [(3 << 6) | 0, (1 << 6) | 1, (2 << 6) | 1, 0]
    p = _plan(w, lay.lengths(), md, TensorLayout.BBS_ROUNDED_AVG, 8, "t")
    assert p.msb_plane.tolist() == [3, 1, 2, 0]
    md = np.zeros(4, np.uint8)
    K.metadata_kernel(w.order, w.columns, w.has_metadata, red, first, np.zeros(4, np.int32), mag_or, 8,
                      K.LAYOUT_BITWAVE, md)
    bits = "1111111" + "1111110" + "1000111" + "0000000"  # zero magnitude planes of groups 2, 3, 0, 1
    assert md.tolist() == _mask_bytes(bits).tolist()
