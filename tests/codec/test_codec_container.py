"""The *.bbs.safetensors container: round trip, exact accounting, and every kind of bad file."""

from __future__ import annotations

import json
import struct

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from safetensors.torch import load_file, save_file

from bitvert.codec import encode, encode_plain
from bitvert.codec.container import file_accounting, load_encoded, save_encoded
from bitvert.errors import FormatError, InputError
from bitvert.pruning import PruneConfig, prune


def _tensors():
    rng = np.random.default_rng(0)
    w1 = np.clip(np.round(rng.laplace(0, 12, (64, 96))), -127, 127).astype(np.int16)
    w2 = np.clip(np.round(rng.laplace(0, 12, (32, 16, 3, 3))), -127, 127).astype(np.int16)
    dense = np.zeros(64, bool)
    dense[:3] = True
    r1 = prune(w1, PruneConfig("zero_point", columns=4), dense_channels=dense)
    r2 = prune(w2, PruneConfig("rounded_avg", columns=2, group_size=16))
    w3 = rng.integers(-127, 128, (10, 40)).astype(np.int16)
    tensors = {"fc.weight": encode(r1), "conv.weight": encode(r2), "head.weight": encode_plain(w3)}
    ints = {"fc.weight": r1.weights, "conv.weight": r2.weights, "head.weight": w3}
    scales = {"fc.weight": torch.rand(64) + 0.5, "head.weight": torch.rand(10)}
    state = {"fc.bias": torch.randn(64), "norm.weight": torch.randn(8).to(torch.bfloat16),
             "step": torch.tensor(3)}
    return tensors, ints, scales, state


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    tensors, ints, scales, state = _tensors()
    path = tmp_path_factory.mktemp("c") / "m.bbs.safetensors"
    save_encoded(path, tensors, scales, state, source={"note": "test"})
    return path, tensors, ints, scales, state


def test_round_trip(saved):
    path, tensors, ints, scales, state = saved
    m = load_encoded(path)
    assert set(m.tensors) == set(tensors) and m.source == {"note": "test"}
    for name, w in ints.items():
        assert np.array_equal(m.decode(name), w)
    for name, s in scales.items():
        assert torch.equal(m.scales[name], s)
        expected = torch.from_numpy(ints[name].astype(np.float32)) * s.view(-1, *([1] * (ints[name].ndim - 1)))
        assert torch.equal(m.float_weight(name), expected)
    for key, v in state.items():
        assert torch.equal(m.state[key], v) and m.state[key].dtype == v.dtype
    with pytest.raises(InputError, match="no scale"):
        m.float_weight("conv.weight")


def test_same_content_writes_identical_bytes(saved, tmp_path):
    """Byte-reproducible: a second save of the same content equals the first, byte for byte."""
    path, tensors, _, scales, state = saved
    again = save_encoded(tmp_path / "again.bbs.safetensors", tensors, scales, state, source={"note": "test"})
    assert again.read_bytes() == path.read_bytes()
    assert not [p.name for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary left behind


def test_accounting_adds_up_to_the_file_size(saved):
    path, tensors, *_ = saved
    acc = file_accounting(path)
    assert acc["file_bytes"] == path.stat().st_size
    assert acc["header_bytes"] + acc["weight_bytes"] + acc["scale_bytes"] + acc["state_bytes"] == acc["file_bytes"]
    assert acc["weight_bytes"] == sum(e.stats()["total_bytes"] for e in tensors.values())
    assert acc["scale_bytes"] == (64 + 10) * 4
    stats = load_encoded(path).stats()
    assert stats["weight_bytes"] == acc["weight_bytes"]
    n = 64 * 96 + 32 * 16 * 9 + 10 * 40
    assert stats["n_weights"] == n
    assert stats["bits_per_weight"] == pytest.approx(8 * acc["weight_bytes"] / n)


def _rewrite(path, out, tensors=None, meta=None):
    """Rewrite a container with changed tensors / metadata (checksums left as they were)."""
    with open(path, "rb") as fh:
        n = struct.unpack("<Q", fh.read(8))[0]
        header = json.loads(fh.read(n))
    t = load_file(str(path))
    if tensors is not None:
        t = tensors(t)
    m = dict(header["__metadata__"])
    if meta is not None:
        m = meta(m)
    save_file(t, str(out), metadata=m)
    return out


def _doc_edit(fn):
    """Edit the bitvert JSON and recompute its checksum, so only the deeper checks can catch it."""
    import hashlib

    def edit(m):
        doc = json.loads(m["bitvert"])
        fn(doc)
        text = json.dumps(doc, sort_keys=True)
        return {**m, "bitvert": text,
                "bitvert_checksum": hashlib.blake2b(text.encode(), digest_size=16).hexdigest()}
    return edit


def test_wrong_version_and_format(saved, tmp_path):
    path = saved[0]
    p = _rewrite(path, tmp_path / "v.safetensors", meta=lambda m: {**m, "format_version": "2"})
    with pytest.raises(FormatError, match="format version '2'"):
        load_encoded(p)
    p = _rewrite(path, tmp_path / "f.safetensors", meta=lambda m: {**m, "format": "bitvert-pruned"})
    with pytest.raises(FormatError, match="not a BBS weight file"):
        load_encoded(p)
    p = _rewrite(path, tmp_path / "h.safetensors", meta=_doc_edit(lambda d: d.update(format_version=9)))
    with pytest.raises(FormatError, match="header format version 9"):
        load_encoded(p)


def test_missing_and_unexpected_tensors(saved, tmp_path):
    path = saved[0]
    p = _rewrite(path, tmp_path / "m.safetensors", tensors=lambda t: {k: v for k, v in t.items()
                                                                      if k != "bbs.conv.weight"})
    with pytest.raises(FormatError, match="'bbs.conv.weight' is missing"):
        load_encoded(p)
    p = _rewrite(path, tmp_path / "x.safetensors", tensors=lambda t: {**t, "bbs.extra": torch.zeros(3, dtype=torch.uint8)})
    with pytest.raises(FormatError, match="unexpected tensor 'bbs.extra'"):
        load_encoded(p)


def test_tampered_data_and_header(saved, tmp_path):
    path = saved[0]

    def flip(t):
        b = t["bbs.fc.weight"].clone()
        b[10] ^= 1
        return {**t, "bbs.fc.weight": b}
    p = _rewrite(path, tmp_path / "c.safetensors", tensors=flip)
    with pytest.raises(FormatError, match="'bbs.fc.weight' fails its checksum"):
        load_encoded(p)
    p = _rewrite(path, tmp_path / "j.safetensors", meta=lambda m: {**m, "bitvert": m["bitvert"].replace("64", "65", 1)})
    with pytest.raises(FormatError, match="header checksum"):
        load_encoded(p)
    # a consistent header with the wrong shape: the byte count no longer matches
    p = _rewrite(path, tmp_path / "s.safetensors",
                 meta=_doc_edit(lambda d: d["tensors"]["fc.weight"].update(shape=[64, 100])))
    with pytest.raises(FormatError, match="tensor 'fc.weight'"):
        load_encoded(p)
    p = _rewrite(path, tmp_path / "k.safetensors",
                 meta=_doc_edit(lambda d: d["tensors"]["fc.weight"].update(scale=False)))
    with pytest.raises(FormatError, match="'scale.fc.weight' has no header entry"):
        load_encoded(p)


def test_same_bytes_with_another_dtype_or_shape_fail_the_checksum(saved, tmp_path):
    path = saved[0]
    p = _rewrite(path, tmp_path / "d.safetensors",
                 tensors=lambda t: {**t, "state.fc.bias": t["state.fc.bias"].view(torch.int32)})
    with pytest.raises(FormatError, match="'state.fc.bias' fails its checksum"):
        load_encoded(p)
    p = _rewrite(path, tmp_path / "r.safetensors",
                 tensors=lambda t: {**t, "state.fc.bias": t["state.fc.bias"].reshape(8, 8)})
    with pytest.raises(FormatError, match="'state.fc.bias' fails its checksum"):
        load_encoded(p)


def test_not_a_file_or_not_safetensors(tmp_path):
    with pytest.raises(InputError, match="does not exist"):
        load_encoded(tmp_path / "nope.bbs.safetensors")
    junk = tmp_path / "junk.bbs.safetensors"
    junk.write_bytes(b"\x00" * 5)
    with pytest.raises(FormatError, match="not a readable safetensors"):
        load_encoded(junk)


def test_save_validates(tmp_path):
    tensors, _, scales, state = _tensors()
    with pytest.raises(InputError, match="does not exist"):
        save_encoded(tmp_path / "no" / "x.safetensors", tensors)
    with pytest.raises(InputError, match="EncodedTensor"):
        save_encoded(tmp_path / "x.safetensors", {"a": np.zeros(3)})
    with pytest.raises(InputError, match="scale of 'fc.weight'"):
        save_encoded(tmp_path / "x.safetensors", tensors, {"fc.weight": torch.ones(3)})
    with pytest.raises(InputError, match="not encoded"):
        save_encoded(tmp_path / "x.safetensors", tensors, {"zzz": torch.ones(3)})


@pytest.fixture(scope="module")
def raw_file(saved):
    return saved[0].read_bytes(), saved[2], saved[3], saved[4]


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(cut=st.floats(0.0, 0.9999))
def test_fuzz_truncation(raw_file, tmp_path_factory, cut):
    data = raw_file[0]
    p = tmp_path_factory.mktemp("t") / "t.bbs.safetensors"
    p.write_bytes(data[: int(len(data) * cut)])
    with pytest.raises(FormatError):
        load_encoded(p)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(flips=st.lists(st.tuples(st.floats(0.0, 0.9999), st.integers(1, 255)), min_size=1, max_size=3))
def test_fuzz_byte_flips_never_give_silently_wrong_weights(raw_file, tmp_path_factory, flips):
    data, ints, scales, state = raw_file
    buf = bytearray(data)
    for pos, x in flips:
        buf[int(pos * len(buf))] ^= x
    p = tmp_path_factory.mktemp("f") / "f.bbs.safetensors"
    p.write_bytes(bytes(buf))
    try:
        m = load_encoded(p)
    except FormatError:
        return
    # the flip hit something harmless (e.g. header padding): every weight must be exact
    for name, w in ints.items():
        assert np.array_equal(m.decode(name), w)
    for name, s in scales.items():
        assert torch.equal(m.scales[name], s)
    for key, v in state.items():
        assert torch.equal(m.state[key], v)
