"""One tensor: golden encodings by hand, round trip over every PruneResult kind, accounting, errors."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bitvert.codec import Chunk, TensorLayout, decode, encode, encode_plain
from bitvert.codec.tensor import EncodedTensor
from bitvert.errors import ConfigError, FormatError, InputError
from bitvert.pruning import PruneConfig, prune


def test_golden_rounded_average_fig4():
    # BBS Fig. 4: [13, -57, 20, -11], N = 4 -> [13, -59, 21, -11]; r = 1, low 3 columns = 101
    r = prune([[13, -57, 20, -11]], PruneConfig("rounded_avg", group_size=4, columns=4))
    enc = encode(r)
    # stored planes 1..4 of 13=00001101, -59=11000101, 21=00010101, -11=11110101:
    # plane1 0101, plane2 0001, plane3 0011, plane4 1000
    assert enc.payload.tolist() == [0b01010001, 0b00111000]
    assert enc.metadata.tolist() == [(1 << 6) | 0b101]
    assert enc.layout is TensorLayout.BBS_ROUNDED_AVG
    assert enc.chunks == (Chunk(4, 1, True),)
    assert enc.to_bytes().tolist() == [0x51, 0x38, 0x45]
    assert decode(enc).tolist() == [[13, -59, 21, -11]]
    assert enc.stats()["bits_per_weight"] == 6.0  # 16 column bits + 8 metadata bits over 4 weights


def test_golden_zero_point_fig5():
    # paper search finds c = -26: W' = [82, -22, 2, -6], stored W' + c = [56, -48, -24, -32]
    r = prune([[81, -20, 1, -7]], PruneConfig("zero_point", group_size=4, columns=4))
    assert int(r.metadata.constant[0]) == -26
    enc = encode(r)
    # 56=00111000 -48=11010000 -24=11101000 -32=11100000; r = 1; planes 1..4:
    # plane1 0111, plane2 1011, plane3 1100, plane4 1010
    assert enc.payload.tolist() == [0b01111011, 0b11001010]
    # 2-bit r = 1, 6-bit two's complement of c = -26 -> 100110
    assert enc.metadata.tolist() == [0b01100110]
    assert decode(enc).tolist() == [[82, -22, 2, -6]]


def test_golden_bitwave():
    # BBS.md vector 12: bit flip of [13, -57, 20, -11], N = 4 -> [16, -56, 16, -8]
    r = prune([[13, -57, 20, -11]], PruneConfig("bitflip", group_size=4, columns=4))
    assert r.weights.tolist() == [[16, -56, 16, -8]]
    enc = encode(r)
    # magnitudes 16=0010000, 56=0111000, 16, 8=0001000: zero magnitude planes 1 (64), 5, 6, 7
    assert enc.metadata.tolist() == [0b10001110]  # 7-bit mask 1000111, padded with a zero bit
    # sign column 0101, magnitude planes 2 (32) 0100, 3 (16) 1110, 4 (8) 0101
    assert enc.payload.tolist() == [0b01010100, 0b11100101]
    assert decode(enc).tolist() == [[16, -56, 16, -8]]


def test_exact_bits_per_weight_no_sensitive():
    rng = np.random.default_rng(0)
    w = np.clip(np.round(rng.laplace(0, 12, (64, 256))), -127, 127).astype(np.int16)
    for method, n, expected in (("zero_point", 4, 4.25), ("rounded_avg", 2, 6.25)):
        enc = encode(prune(w, PruneConfig(method, columns=n)))
        s = enc.stats()
        assert s["bits_per_weight"] == expected
        assert s["compression_vs_int8"] == pytest.approx(8 / expected)
        assert s["metadata_overhead_bits_per_weight"] == 0.25
        assert s["total_bytes"] == enc.to_bytes().shape[0] == 64 * 256 * expected / 8
        assert enc.identity_order and enc.index_table().size == 0


def test_exact_bits_with_sensitive_channels_and_reordering():
    rng = np.random.default_rng(1)
    w = np.clip(np.round(rng.laplace(0, 12, (96, 64))), -127, 127).astype(np.int16)
    dense = np.zeros(96, dtype=bool)
    dense[[5, 40, 90]] = True
    enc = encode(prune(w, PruneConfig("zero_point", columns=4), dense_channels=dense))
    assert enc.chunks == (Chunk(8, 3, False), Chunk(4, 93, True))
    assert enc.channel_order[:3].tolist() == [5, 40, 90]
    # 3 sensitive x 64 x 8 bits + 93 x 64 x 4 bits + 93 x 2 groups x 8 bits + 96 uint16 indices
    expected_bytes = (3 * 64 * 8 + 93 * 64 * 4 + 93 * 2 * 8) // 8 + 96 * 2
    assert enc.to_bytes().shape[0] == expected_bytes
    assert enc.stats()["total_bytes"] == expected_bytes
    assert (decode(enc) == prune(w, PruneConfig("zero_point", columns=4), dense_channels=dense).weights).all()


_KINDS = {
    "linear": [(8, 64), (5, 40), (3, 7)],
    "linear_in_out": [(40, 6), (64, 4)],
    "conv": [(6, 3, 3, 3), (4, 48, 1, 1), (5, 20, 3, 3), (6, 1, 3, 3), (4, 1, 5, 5)],
}


@settings(max_examples=80, deadline=None)
@given(st.data())
def test_round_trip_every_pruning_kind(data):
    kind = data.draw(st.sampled_from(sorted(_KINDS)))
    shape = data.draw(st.sampled_from(_KINDS[kind]))
    bits = data.draw(st.integers(2, 8))
    method = data.draw(st.sampled_from(["rounded_avg", "zero_point", "bitflip"]))
    semantics = data.draw(st.sampled_from(["paper", "code"]))
    columns = data.draw(st.integers(1, bits - 1))
    group_size = data.draw(st.sampled_from([2, 4, 8, 16, 32]))
    remainder = data.draw(st.sampled_from(["short", "dense"]))
    rng = np.random.default_rng(data.draw(st.integers(0, 2**31)))
    lo, hi = -(1 << (bits - 1)), (1 << (bits - 1)) - 1
    scale = data.draw(st.sampled_from([0.5, 3.0, 12.0, 200.0]))
    w = np.clip(np.round(rng.laplace(0, scale * (1 << bits) / 256, shape)), lo + 1, hi).astype(np.int16)
    k = shape[1] if kind == "linear_in_out" else shape[0]
    dense = rng.random(k) < data.draw(st.sampled_from([0.0, 0.3, 1.0]))
    cfg = PruneConfig(method, semantics=semantics, weight_bits=bits, group_size=group_size, columns=columns,
                      remainder=remainder)
    res = prune(w, cfg, kind=kind, dense_channels=dense)
    enc = encode(res)
    out = decode(enc)
    assert out.dtype == np.int16 and out.shape == w.shape
    assert (out == res.weights).all()
    # the stored bytes re-read through the validating reader give the same weights
    again = EncodedTensor.from_bytes(enc.to_bytes(), enc.header())
    assert (decode(again) == res.weights).all()
    # accounting: the bytes are the stored columns, metadata and index table, to the byte
    s = enc.stats()
    assert s["payload_bytes"] == -(-s["column_bits"] // 8)
    assert s["metadata_bytes"] == -(-s["metadata_bits"] // 8)
    assert s["total_bytes"] == enc.to_bytes().shape[0]
    # phantom weights are never stored: column bits count only real weights
    n_sens = int(dense.sum()) if method else 0
    assert s["sensitive_channels"] + s["normal_channels"] == k
    assert s["column_bits"] <= w.size * bits
    if n_sens == 0 and method != "bitflip" and remainder == "short" and s["escaped_channels"] == 0:
        assert s["column_bits"] == w.size * (bits - columns)


@settings(max_examples=40, deadline=None)
@given(st.data())
def test_plain_round_trip(data):
    bits = data.draw(st.integers(2, 8))
    shape = data.draw(st.sampled_from([(4, 33), (7, 5, 3, 3), (3, 1, 3, 3)]))
    rng = np.random.default_rng(data.draw(st.integers(0, 2**31)))
    widths = rng.integers(1, bits + 1, shape[0])
    w = np.concatenate([rng.integers(-(1 << (b - 1)), 1 << (b - 1), (1,) + shape[1:]) for b in widths])
    enc = encode_plain(w, group_size=8, channel_bits=widths, weight_bits=bits)
    assert (decode(enc) == w).all()
    per_channel = int(np.prod(shape[1:]))
    assert enc.stats()["column_bits"] == int(widths.sum()) * per_channel


def test_fixed_width_ignores_extra_natural_redundancy():
    # all weights tiny: 6 redundant columns, but a normal group still stores exactly b - N columns
    w = np.tile(np.array([[1, -1, 0, 1]], dtype=np.int16), (2, 8))
    enc = encode(prune(w, PruneConfig("rounded_avg", columns=2)))
    assert enc.chunks == (Chunk(6, 2, True),)
    assert enc.stats()["column_bits"] == w.size * 6
    assert (decode(enc) == w).all()


def test_code_zero_point_groups_beyond_the_redundant_cap_escape_to_wider_chunks():
    # small weights: published zero-point shifting sees >= 4 leading zero magnitude planes, no rounding
    w = np.array([[3, -5, 1, 7, -2, 6, 0, -7]] * 2 + [[90, -100, 40, 7, -66, 12, 100, -30]] * 2, dtype=np.int16)
    res = prune(w, PruneConfig("zero_point", semantics="code", group_size=8, columns=4))
    enc = encode(res)
    assert (decode(enc) == res.weights).all()
    assert enc.stats()["escaped_channels"] >= 1
    assert max(c.columns for c in enc.chunks if c.metadata) > 4


def test_rounded_average_n7_pattern_wider_than_the_field_escapes():
    rng = np.random.default_rng(3)
    w = rng.integers(-127, 128, (4, 32)).astype(np.int16)
    res = prune(w, PruneConfig("rounded_avg", columns=7))
    enc = encode(res)
    assert (decode(enc) == res.weights).all()
    assert all(c.columns >= 2 for c in enc.chunks)


# ---------------------------------------------------------------------------- bad input
def test_unpruned_input_is_rejected():
    w = np.arange(-16, 16, dtype=np.int16).reshape(1, 32)
    with pytest.raises(InputError, match="PruneResult"):
        encode(w)  # type: ignore[arg-type]
    res = prune(w, PruneConfig("zero_point", columns=4))
    forged = dataclasses.replace(res, weights=res.original)  # metadata says pruned, weights are not
    with pytest.raises(InputError, match="marked pruned"):
        encode(forged, name="layer1.weight")
    with pytest.raises(InputError, match="EncodedTensor"):
        decode(w)  # type: ignore[arg-type]


def test_weights_outside_int16_are_rejected_not_wrapped():
    res = prune(np.zeros((1, 4), np.int16), PruneConfig("rounded_avg", group_size=4, columns=2))
    bad = dataclasses.replace(res, weights=np.array([[65536 + 5, 0, 0, 0]], dtype=np.int64))
    with pytest.raises(InputError, match="int16 range"):
        encode(bad)


def test_wide_zero_point_constants_do_not_fit_the_field():
    w = np.array([[100, 101, 102, 103]], dtype=np.int16)
    res = prune(w, PruneConfig("zero_point", group_size=4, columns=5, constant_bits=8))
    if np.abs(res.metadata.constant).max() > 31:
        with pytest.raises(ConfigError, match="6-bit"):
            encode(res)
    bad = dataclasses.replace(res, metadata=dataclasses.replace(res.metadata, constant=np.array([-60], np.int16)))
    with pytest.raises(ConfigError, match="6-bit"):
        encode(bad)


def test_metadata_shape_mismatch_is_rejected():
    res = prune(np.zeros((2, 32), np.int16), PruneConfig("rounded_avg", columns=2))
    bad = dataclasses.replace(res, metadata=dataclasses.replace(res.metadata, pruned=np.ones(3, bool)))
    with pytest.raises(InputError, match="metadata.pruned"):
        encode(bad)


def test_plain_rejects_values_wider_than_their_channel():
    with pytest.raises(InputError, match="channel 1 needs 5 bits"):
        encode_plain(np.array([[1, 2], [-16, 3]]), channel_bits=np.array([4, 4]))
    with pytest.raises(InputError, match="channel_bits"):
        encode_plain(np.array([[1, 2], [3, 4]]), channel_bits=np.array([4, 9]))


def _enc():
    rng = np.random.default_rng(5)
    w = np.clip(np.round(rng.laplace(0, 12, (40, 64))), -127, 127).astype(np.int16)
    dense = np.zeros(40, bool)
    dense[7] = True
    return encode(prune(w, PruneConfig("rounded_avg", columns=2), dense_channels=dense))


@pytest.mark.parametrize(
    ("change", "match"),
    [
        (lambda h, b: (h, b[:-1]), "holds .* bytes"),
        (lambda h, b: ({**h, "payload_bytes": h["payload_bytes"] - 1, "metadata_bytes": h["metadata_bytes"] + 1},
                       b), "metadata holds"),
        (lambda h, b: ({**h, "shape": [40, 63]}, b), "column stream holds"),
        (lambda h, b: ({**h, "chunks": [[8, 1, 0], [6, 38, 1]]}, b), "chunks cover"),
        (lambda h, b: ({**h, "chunks": [[8, 1, 0], [9, 39, 1]]}, b), "width outside"),
        (lambda h, b: ({**h, "layout": "bbs_v9"}, b), "unknown tensor layout"),
        (lambda h, b: ({k: v for k, v in h.items() if k != "kind"}, b), "malformed header"),
        (lambda h, b: ({**h, "kind": "conv"}, b), "impossible tensor"),
    ],
)
def test_from_bytes_validates(change, match):
    enc = _enc()
    header, blob = change(enc.header(), enc.to_bytes())
    with pytest.raises(FormatError, match=match):
        EncodedTensor.from_bytes(blob, header, name="fc.weight")


def test_from_bytes_checks_metadata_values_and_index_table():
    enc = _enc()
    blob = enc.to_bytes().copy()
    p = enc.payload.shape[0]
    blob[p] = (3 << 6) | 0  # r = 3 > the 2 free columns of a 6-column chunk
    with pytest.raises(FormatError, match="redundant columns"):
        EncodedTensor.from_bytes(blob, enc.header(), name="fc.weight")
    blob = enc.to_bytes().copy()
    blob[p] = (0 << 6) | 63  # pattern 63 does not fit 2 free low columns
    with pytest.raises(FormatError, match="wider than"):
        EncodedTensor.from_bytes(blob, enc.header(), name="fc.weight")
    blob = enc.to_bytes().copy()
    blob[-2:] = blob[-4:-2]  # duplicate channel index
    with pytest.raises(FormatError, match="permutation"):
        EncodedTensor.from_bytes(blob, enc.header(), name="fc.weight")


@settings(max_examples=50, deadline=None)
@given(st.data())
def test_fuzz_unchecked_bytes_never_crash(data):
    # without the container's checksums, corrupted bytes must still either be rejected or decode to a
    # tensor of the right shape (every read and write of the kernels stays inside its arrays)
    method = data.draw(st.sampled_from(["rounded_avg", "zero_point", "bitflip"]))
    rng = np.random.default_rng(data.draw(st.integers(0, 2**31)))
    w = np.clip(np.round(rng.laplace(0, 12, (12, 40))), -127, 127).astype(np.int16)
    res = prune(w, PruneConfig(method, columns=data.draw(st.integers(1, 6)), group_size=16),
                dense_channels=rng.random(12) < 0.3)
    enc = encode(res)
    blob = enc.to_bytes().copy()
    for _ in range(data.draw(st.integers(1, 4))):
        blob[data.draw(st.integers(0, blob.shape[0] - 1))] ^= data.draw(st.integers(1, 255))
    try:
        out = decode(EncodedTensor.from_bytes(blob, enc.header(), name="w"))
    except FormatError:
        return
    assert out.shape == w.shape and out.dtype == np.int16


def test_every_registered_method_encodes_to_the_layout_it_declares():
    from bitvert.pruning.methods import LAYOUTS, REGISTRY

    assert set(LAYOUTS) == {m.value for m in TensorLayout if m is not TensorLayout.PLAIN}
    w = np.random.default_rng(3).integers(-100, 101, size=(6, 70)).astype(np.int16)
    for name, spec in REGISTRY.items():
        semantics = "code" if name == "bitflip" else "paper"
        res = prune(w, PruneConfig(name, semantics, columns=3))
        enc = encode(res)
        assert enc.layout is TensorLayout(spec.layout)
        assert enc.source["method"] == name
        assert np.array_equal(decode(enc), res.weights)
