"""bitvert.tensorfile: canonical (byte-reproducible), atomic safetensors files."""

from __future__ import annotations

import json

import pytest
import safetensors.torch as st
import torch

from bitvert.errors import InputError
from bitvert.tensorfile import canonical_safetensors, save_tensors, tensor_checksum, text_checksum


def _tensors() -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return {"b.w": torch.randn(3, 4, generator=g), "a": torch.arange(7, dtype=torch.int8),
            "z": torch.zeros(0, dtype=torch.int16)}


META = {"format": "x", "format_version": "1", "bitvert": json.dumps({"é": "\"quoted\"\n"}), "k": "v"}


def test_same_content_same_bytes_and_readable(tmp_path) -> None:
    """The library's own bytes vary with hash-map order; canonical bytes never do, and load back exactly."""
    outs = {save_tensors(tmp_path / f"f{i}.safetensors", _tensors(), META).read_bytes() for i in range(8)}
    assert len(outs) == 1
    blob = outs.pop()
    n = int.from_bytes(blob[:8], "little")
    assert n % 8 == 0
    header = json.loads(blob[8:8 + n])
    assert list(header["__metadata__"]) == sorted(META)
    loaded = st.load(blob)
    for k, v in _tensors().items():
        assert torch.equal(loaded[k], v)
    from safetensors import safe_open

    with safe_open(str(tmp_path / "f0.safetensors"), framework="pt") as f:
        assert f.metadata() == META
    # canonical form is a fixed point, and independent of the input's header order
    assert canonical_safetensors(blob) == blob
    assert canonical_safetensors(st.save(_tensors(), metadata=META)) == blob


def test_atomic_write_leaves_no_temporary(tmp_path) -> None:
    save_tensors(tmp_path / "x.safetensors", _tensors())
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.safetensors"]
    with pytest.raises(InputError, match="does not exist"):
        save_tensors(tmp_path / "missing" / "x.safetensors", _tensors())


def test_digest_sees_every_byte_written(tmp_path) -> None:
    import hashlib

    h = hashlib.blake2b(digest_size=16)
    path = save_tensors(tmp_path / "x.safetensors", _tensors(), META, digest=h)
    assert h.hexdigest() == hashlib.blake2b(path.read_bytes(), digest_size=16).hexdigest()


def test_checksum_of_a_view_hashes_its_values_in_c_order() -> None:
    t = torch.arange(12, dtype=torch.int16).reshape(3, 4)
    assert tensor_checksum(t.t()) == tensor_checksum(t.t().contiguous())
    assert tensor_checksum(t[:, 1:3]) == tensor_checksum(t[:, 1:3].clone())


def test_checksums_see_dtype_shape_and_bytes() -> None:
    t = torch.arange(6, dtype=torch.int16)
    assert tensor_checksum(t) == tensor_checksum(t.clone())
    assert tensor_checksum(t) != tensor_checksum(t.reshape(2, 3))
    assert tensor_checksum(t) != tensor_checksum(t.to(torch.int32))
    u = t.clone()
    u[3] += 1
    assert tensor_checksum(t) != tensor_checksum(u)
    assert text_checksum("a") != text_checksum("b") and len(text_checksum("a")) == 32


def test_numba_kernels_are_cached_in_the_user_cache_folder(tmp_path) -> None:
    """Importing bitvert routes numba's cache to $BITVERT_CACHE_DIR/numba (never the package tree)."""
    import os
    import subprocess
    import sys

    code = ("import numpy as np, bitvert, os; from bitvert.pipeline._kernels import channel_absmax; "
            "channel_absmax(np.ones((2, 3), np.float32)); print(os.environ['NUMBA_CACHE_DIR'])")
    env = {k: v for k, v in os.environ.items() if k != "NUMBA_CACHE_DIR"}
    env["BITVERT_CACHE_DIR"] = str(tmp_path)
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == str(tmp_path / "numba")
    assert list((tmp_path / "numba").rglob("*.nbi")), "numba wrote no cache index into the user cache folder"
    env["NUMBA_CACHE_DIR"] = str(tmp_path / "mine")  # a user's own setting wins
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == str(tmp_path / "mine")


def test_streamed_bytes_equal_the_library_output_for_every_dtype(tmp_path) -> None:
    """save_tensors writes tensor by tensor from memory; the bytes are the library's, canonicalized."""
    g = torch.Generator().manual_seed(1)
    tensors = {
        "f32": torch.randn(5, 3, generator=g), "bf16": torch.randn(4, 7, generator=g).to(torch.bfloat16),
        "f16": torch.randn(9, generator=g).to(torch.float16), "f64": torch.randn(2, 2, generator=g).double(),
        "i64": torch.arange(5), "u8": torch.arange(11, dtype=torch.uint8), "bool": torch.rand(6, generator=g) > 0.5,
        "scalar": torch.tensor(3.5), "empty": torch.zeros(0, 4), "strided": torch.randn(6, 4, generator=g).t(),
        "f8": torch.randn(8, generator=g).to(torch.float8_e4m3fn), "a.b": torch.arange(3, dtype=torch.int32),
    }
    for meta in (None, {}, META):
        blob = save_tensors(tmp_path / "t.safetensors", tensors, meta).read_bytes()
        ref = {k: v.contiguous() for k, v in tensors.items()}
        assert blob == canonical_safetensors(st.save(ref, metadata=meta))
        loaded = st.load(blob)
        for k, v in tensors.items():
            assert torch.equal(loaded[k].float(), v.float()) and loaded[k].dtype == v.dtype, k
    with pytest.raises(InputError, match="'x' is a list"):
        save_tensors(tmp_path / "bad.safetensors", {"x": [1, 2]})  # type: ignore[dict-item]


def test_read_header_refuses_foreign_files_before_reading_them(tmp_path):
    import pytest

    from bitvert.errors import FormatError
    from bitvert.tensorfile import read_safetensors_header, save_tensors

    good = tmp_path / "good.safetensors"
    save_tensors(good, {"w": torch.arange(4, dtype=torch.float32)}, {"a": "1"})
    n, head = read_safetensors_header(good)
    assert head["w"]["shape"] == [4] and head["__metadata__"] == {"a": "1"} and n % 8 == 0
    cases = {
        "short": b"\x01\x02",
        "huge_length": (2**60).to_bytes(8, "little") + b"{}",  # would be a MemoryError if read
        "bad_json": (4).to_bytes(8, "little") + b"{{{{",
        "not_object": (2).to_bytes(8, "little") + b"[]",
    }
    for name, blob in cases.items():
        f = tmp_path / f"{name}.safetensors"
        f.write_bytes(blob)
        with pytest.raises(FormatError, match=f"{name}.safetensors.*fix it"):
            read_safetensors_header(f, "; fix it")
