"""Writing and checksumming safetensors files: byte-reproducible, atomic, ``0644``-style permissions.

Every file bitvert writes in the safetensors format (``pruned.safetensors``, ``*.bbs.safetensors``)
goes through :func:`save_tensors`:

* **reproducible**: the safetensors library stores the string metadata in a hash map whose
  iteration order changes from run to run, so two identical runs wrote different bytes. The header
  is re-serialized here as canonical JSON (sorted keys, no spaces, UTF-8), padded with spaces to a
  multiple of 8 bytes as the format asks; the data section is the library's own (its order is
  deterministic). Same tensors and metadata -> identical bytes;
* **atomic**: written to a hidden temporary file in the same folder and renamed over the target, so
  a crash or a full disk never leaves a truncated file under the final name;
* **permissions**: created with mode ``0666`` minus the process umask (``0644`` under the usual
  umask ``022``), like any other file a user's tool writes -- not ``0600``.

:func:`tensor_checksum` (blake2b-128 over dtype, shape and raw bytes) and :func:`text_checksum` are
the checksums both file formats store and verify.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

from bitvert.errors import FormatError, InputError

__all__ = ["read_safetensors_header", "tensor_checksum", "text_checksum", "verify_checksums", "canonical_safetensors",
           "save_tensors"]


def tensor_checksum(t: torch.Tensor) -> str:
    """blake2b-128 (hex) of a tensor's dtype, shape and raw bytes (C order, little-endian)."""
    flat = t.detach().cpu().contiguous().reshape(-1)
    raw = flat.view(torch.uint8).numpy() if flat.numel() else np.zeros(0, np.uint8)
    h = hashlib.blake2b(digest_size=16)
    h.update(f"{str(t.dtype)}|{list(t.shape)}|".encode())
    h.update(raw)  # hashed from the tensor's memory: no copy of its bytes
    return h.hexdigest()


def text_checksum(text: str) -> str:
    """blake2b-128 (hex) of a UTF-8 text."""
    return hashlib.blake2b(text.encode("utf-8"), digest_size=16).hexdigest()


def verify_checksums(where: str, sums: Mapping[str, str], tensors: Mapping[str, torch.Tensor], fix: str) -> None:
    """Check a file's tensors against its checksum table: none missing, none extra, every one intact.

    Args:
        where: the file, for messages (e.g. ``"'model.bbs.safetensors'"``).
        sums: tensor name -> :func:`tensor_checksum` as stored in the file.
        tensors: the tensors read from the file.
        fix: what the user should do, appended to the corruption message.

    Raises:
        FormatError: naming the file and the first offending tensor.
    """
    missing = sorted(set(sums) - set(tensors))
    if missing:
        raise FormatError(f"{where}: tensor {missing[0]!r} is missing ({len(missing)} missing in all)")
    extra = sorted(set(tensors) - set(sums))
    if extra:
        raise FormatError(f"{where}: unexpected tensor {extra[0]!r} not listed in the checksum table")
    for key, t in tensors.items():
        if tensor_checksum(t) != sums[key]:
            raise FormatError(f"{where}: tensor {key!r} fails its checksum; the file is corrupted or was edited "
                              f"({fix})")


def canonical_safetensors(blob: bytes) -> bytes:
    """The same safetensors file with its JSON header in canonical form (sorted keys, compact, UTF-8).

    >>> import safetensors.torch as st
    >>> b = canonical_safetensors(st.save({"w": torch.zeros(2)}, metadata={"b": "2", "a": "1"}))
    >>> b[8:8 + int.from_bytes(b[:8], "little")].decode().rstrip()
    '{"__metadata__":{"a":"1","b":"2"},"w":{"data_offsets":[0,8],"dtype":"F32","shape":[2]}}'
    """
    n = int.from_bytes(blob[:8], "little")
    header = json.loads(blob[8:8 + n].decode("utf-8"))
    text = json.dumps(header, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    text += b" " * (-len(text) % 8)
    return len(text).to_bytes(8, "little") + text + blob[8 + n:]


def _layout(tensors: Mapping[str, torch.Tensor], metadata: Mapping[str, str] | None) -> tuple[dict, list[str]]:
    """The safetensors header the library would write for ``tensors`` and their order in its data section.

    The library decides the order (by dtype alignment, then name) and the dtype names; it is asked with
    one-element stand-ins of the same dtypes, so no tensor data is copied.
    """
    from safetensors.torch import save

    probe = save({k: torch.zeros(1, dtype=v.dtype) for k, v in tensors.items()},
                 metadata=None if metadata is None else dict(metadata))
    n = int.from_bytes(probe[:8], "little")
    head = json.loads(probe[8:8 + n].decode("utf-8"))
    order = sorted((k for k in head if k != "__metadata__"), key=lambda k: head[k]["data_offsets"][0])
    header: dict = {"__metadata__": head["__metadata__"]} if "__metadata__" in head else {}
    offset = 0
    for k in order:
        t = tensors[k]
        nbytes = t.numel() * t.element_size()
        header[k] = {"dtype": head[k]["dtype"], "shape": list(t.shape), "data_offsets": [offset, offset + nbytes]}
        offset += nbytes
    return header, order


def save_tensors(path: str | os.PathLike[str], tensors: Mapping[str, torch.Tensor],
                 metadata: Mapping[str, str] | None = None, digest: Any = None) -> Path:
    """Write ``tensors`` (and string ``metadata``) to ``path`` as a canonical safetensors file, atomically.

    The bytes are those of :func:`canonical_safetensors` applied to the safetensors library's own output;
    they are written tensor by tensor from the tensors' memory, so saving needs no copy of the data.
    ``digest``: an optional :mod:`hashlib` object updated with every byte of the file as it is written
    (the file's checksum without reading it back).

    Raises:
        InputError: the folder of ``path`` does not exist, or a value is not a tensor.
        OSError: the folder is not writable or the disk is full (nothing is left under ``path``).
    """
    path = Path(path)
    if not path.parent.is_dir():
        raise InputError(f"output folder {str(path.parent)!r} does not exist; create it first")
    bad = [k for k, v in tensors.items() if not isinstance(v, torch.Tensor)]
    if bad:
        raise InputError(f"tensor {bad[0]!r} is a {type(tensors[bad[0]]).__name__}, not a torch.Tensor")
    flat = {k: v.detach().cpu().contiguous() for k, v in tensors.items()}
    header, order = _layout(flat, metadata)
    text = json.dumps(header, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    text += b" " * (-len(text) % 8)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o666)
        with os.fdopen(fd, "wb") as fh:
            head = len(text).to_bytes(8, "little") + text
            fh.write(head)
            if digest is not None:
                digest.update(head)
            for k in order:
                t = flat[k]
                if t.numel():
                    view = memoryview(t.reshape(-1).view(torch.uint8).numpy())
                    fh.write(view)
                    if digest is not None:
                        digest.update(view)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def read_safetensors_header(path: str | os.PathLike[str], fix: str = "") -> tuple[int, dict]:
    """The raw header of a safetensors file without mapping it: ``(header length in bytes, parsed JSON)``.

    The length is checked against the file size before anything is read, so a foreign or damaged file
    is a :class:`~bitvert.errors.FormatError` (naming the path, ending with ``fix``), never a huge read.
    """
    p = Path(path)
    size = p.stat().st_size
    with open(p, "rb") as fh:
        raw = fh.read(8)
        n = int.from_bytes(raw, "little") if len(raw) == 8 else -1
        if n < 0 or n > size - 8:
            raise FormatError(f"{str(p)!r} is not a safetensors file: its {size} bytes cannot hold the header "
                              f"its first 8 bytes announce{fix}")
        try:
            head = json.loads(fh.read(n))
            if not isinstance(head, dict):
                raise ValueError("not a JSON object")
        except ValueError as exc:
            raise FormatError(f"{str(p)!r}: unreadable safetensors header ({exc}){fix}") from None
    return n, head
