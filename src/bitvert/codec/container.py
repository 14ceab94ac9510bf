"""The model-level container: ``*.bbs.safetensors`` (no pickle anywhere).

Tensors (docs/format.md):

* ``bbs.{name}`` -- ``uint8[n]``: one encoded weight tensor (column stream, metadata stream,
  channel-index table, see :meth:`EncodedTensor.to_bytes`);
* ``scale.{name}`` -- ``float32[K]`` per-output-channel scale (``weight = q * scale``), optional;
* ``state.{key}`` -- every other tensor kept alongside as is (biases, norms, embeddings,
  unquantized layers, buffers).

safetensors string metadata: ``format = "bitvert-bbs"``, ``format_version = "1"``,
``bitvert`` = JSON (per encoded tensor its header, and a blake2b-128 checksum of every
stored tensor's bytes; the source checkpoint's description) and ``bitvert_checksum`` =
blake2b-128 of the ``bitvert`` JSON text. Every field is validated on read; any mismatch
raises :class:`~bitvert.errors.FormatError` naming the file and the tensor.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from bitvert.codec.layout import FORMAT_NAME, FORMAT_VERSION
from bitvert.codec.tensor import EncodedTensor, decode
from bitvert.errors import FormatError, InputError
from bitvert.tensorfile import read_safetensors_header, save_tensors, text_checksum, verify_checksums
from bitvert.tensorfile import tensor_checksum as checksum

__all__ = ["EncodedModel", "save_encoded", "load_encoded", "read_header", "tensor_from_stored", "checksum",
           "file_accounting", "STATE_PREFIX"]

log = logging.getLogger(__name__)

_PREFIX_BBS, _PREFIX_SCALE, _PREFIX_STATE = "bbs.", "scale.", "state."
STATE_PREFIX = _PREFIX_STATE
"""Key prefix of the tensors a container keeps as they are (``state.{key}``)."""


@dataclass
class EncodedModel:
    """Contents of a ``*.bbs.safetensors`` file.

    Attributes:
        tensors: encoded weight tensors by name (the weight's ``state_dict`` key for models).
        scales: ``float32[K]`` scales of encoded tensors that have one.
        state: every other tensor, by ``state_dict`` key.
        source: JSON description of where the weights came from (e.g. the pruned checkpoint's
            header: model, preset, layers, activation ranges).
    """

    tensors: dict[str, EncodedTensor]
    scales: dict[str, torch.Tensor] = field(default_factory=dict)
    state: dict[str, torch.Tensor] = field(default_factory=dict)
    source: dict[str, Any] = field(default_factory=dict)

    def decode(self, name: str) -> np.ndarray:
        """Integer weights of tensor ``name`` (``int16``)."""
        if name not in self.tensors:
            raise InputError(f"no encoded tensor {name!r}; the file holds {sorted(self.tensors)[:10]}")
        return decode(self.tensors[name])

    def float_weight(self, name: str) -> torch.Tensor:
        """``q * scale`` of tensor ``name`` as ``float32`` (scale along the output-channel axis)."""
        q = torch.from_numpy(self.decode(name).astype(np.float32))
        if name not in self.scales:
            raise InputError(f"tensor {name!r} has no scale in this file; use decode() for its integers")
        enc = self.tensors[name]
        axis = 1 if enc.kind.value == "linear_in_out" else 0
        shape = [1] * q.ndim
        shape[axis] = -1
        return q * self.scales[name].to(torch.float32).view(shape)

    def stats(self) -> dict[str, Any]:
        """Per-tensor accounting and totals over the encoded tensors."""
        return self.totals({name: enc.stats() for name, enc in self.tensors.items()})

    @staticmethod
    def totals(per: dict[str, dict[str, Any]]) -> dict[str, Any]:
        """Totals over per-tensor :meth:`EncodedTensor.stats` (the ``stats()`` document)."""
        n = sum(s["n_weights"] for s in per.values())
        total = sum(s["total_bytes"] for s in per.values())
        meta = sum(s["metadata_bits"] + s["index_bits"] for s in per.values())
        return {
            "tensors": per,
            "n_weights": n,
            "weight_bytes": total,
            "bits_per_weight": 8.0 * total / n if n else 0.0,
            "compression_vs_int8": n / total if total else 0.0,
            "metadata_overhead_bits_per_weight": meta / n if n else 0.0,
        }


def _check_name(name: str, what: str) -> None:
    if not isinstance(name, str) or not name:
        raise InputError(f"{what} names must be non-empty strings, got {name!r}")


def save_encoded(
    path: str | os.PathLike[str],
    tensors: Mapping[str, EncodedTensor],
    scales: Mapping[str, Any] | None = None,
    state: Mapping[str, torch.Tensor] | None = None,
    source: Mapping[str, Any] | None = None,
    digest: Any = None,
) -> Path:
    """Write encoded tensors (+ scales, other state) to a ``*.bbs.safetensors`` file.

    Args:
        path: output file; its folder must exist.
        tensors: encoded weights by name.
        scales: optional ``float32[K]`` per-channel scale per encoded tensor name.
        state: other tensors to keep alongside (written as is).
        source: JSON-friendly provenance stored in the header.
        digest: optional :mod:`hashlib` object updated with every byte of the file as it is written.

    Returns:
        The path written.
    """
    path = Path(path)
    if not path.parent.is_dir():
        raise InputError(f"output folder {str(path.parent)!r} does not exist; create it first")
    scales = dict(scales or {})
    state = dict(state or {})
    out: dict[str, torch.Tensor] = {}
    headers: dict[str, Any] = {}
    for name, enc in tensors.items():
        _check_name(name, "tensor")
        if not isinstance(enc, EncodedTensor):
            raise InputError(f"tensor {name!r} must be an EncodedTensor (from bitvert.codec.encode), got "
                             f"{type(enc).__name__}")
        blob = torch.from_numpy(np.ascontiguousarray(enc.to_bytes()))
        out[_PREFIX_BBS + name] = blob
        h = enc.header()
        if name in scales:
            s = torch.as_tensor(scales[name]).detach().cpu().to(torch.float32).contiguous()
            if s.shape != (enc.n_channels,):
                raise InputError(f"scale of {name!r} has shape {tuple(s.shape)}, expected ({enc.n_channels},)")
            out[_PREFIX_SCALE + name] = s
        h["scale"] = name in scales
        headers[name] = h
    unknown = set(scales) - set(tensors)
    if unknown:
        raise InputError(f"scales given for tensors that are not encoded: {sorted(unknown)[:5]}")
    for key, value in state.items():
        _check_name(key, "state")
        if not isinstance(value, torch.Tensor):
            raise InputError(f"state entry {key!r} must be a torch.Tensor, got {type(value).__name__}")
        out[_PREFIX_STATE + key] = value.detach().cpu()  # written from its memory, never copied
    doc = {
        "format_version": FORMAT_VERSION,
        "tensors": headers,
        "checksums": {key: checksum(t) for key, t in out.items()},
        "source": dict(source or {}),
    }
    text = json.dumps(doc, sort_keys=True)
    meta = {"format": FORMAT_NAME, "format_version": str(FORMAT_VERSION), "bitvert": text,
            "bitvert_checksum": text_checksum(text)}
    return save_tensors(path, out, meta, digest=digest)


def load_encoded(path: str | os.PathLike[str]) -> EncodedModel:
    """Read and fully validate a ``*.bbs.safetensors`` file.

    Raises:
        InputError: the file does not exist.
        FormatError: not a safetensors file, truncated, corrupted (checksum mismatch), an
            unknown format version, a missing or unexpected tensor, or inconsistent headers;
            the message names the file and the tensor.
    """
    from safetensors.torch import safe_open

    path = Path(path)
    where = repr(str(path))
    if not path.is_file():
        raise InputError(f"{where} does not exist; write one with `bitvert encode`")
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
            stored = {k: f.get_tensor(k) for k in f.keys()}
    except Exception as exc:  # safetensors raises several types (SafetensorError, OSError, panics)
        raise FormatError(f"{where} is not a readable safetensors file ({type(exc).__name__}: {exc}); it is "
                          "truncated or corrupted") from None
    headers, sums, source = read_header(where, meta)
    verify_checksums(where, sums, stored, "re-encode the pruned checkpoint with `bitvert encode`")
    tensors: dict[str, EncodedTensor] = {}
    scales: dict[str, torch.Tensor] = {}
    for name, h in headers.items():
        enc, scale = tensor_from_stored(where, name, h, stored)
        tensors[name] = enc
        if scale is not None:
            scales[name] = scale
    orphans = [k for k in stored if k.startswith(_PREFIX_BBS) and k[len(_PREFIX_BBS):] not in headers]
    orphans += [k for k in stored if k.startswith(_PREFIX_SCALE) and k[len(_PREFIX_SCALE):] not in scales]
    if orphans:
        raise FormatError(f"{where}: tensor {orphans[0]!r} has no header entry")
    state = {k[len(_PREFIX_STATE):]: v for k, v in stored.items() if k.startswith(_PREFIX_STATE)}
    others = [k for k in stored if not k.startswith((_PREFIX_BBS, _PREFIX_SCALE, _PREFIX_STATE))]
    if others:
        raise FormatError(f"{where}: unexpected tensor {others[0]!r}")
    return EncodedModel(tensors=tensors, scales=scales, state=state, source=source)


def read_header(where: str, meta: Mapping[str, str]) -> tuple[dict[str, Any], dict[str, str], dict[str, Any]]:
    """Validate a container's safetensors string metadata; ``(tensor headers, checksums, source)``.

    Args:
        where: the file, for messages.
        meta: the safetensors metadata of the file.

    Raises:
        FormatError: not a BBS file, another format version, a corrupted or malformed header.
    """
    if meta.get("format") != FORMAT_NAME:
        raise FormatError(f"{where} is not a BBS weight file (format={meta.get('format')!r}, expected "
                          f"{FORMAT_NAME!r}); write one with `bitvert encode`")
    if meta.get("format_version") != str(FORMAT_VERSION):
        raise FormatError(f"{where} has format version {meta.get('format_version')!r}; this bitvert reads "
                          f"version {FORMAT_VERSION} (upgrade bitvert, or re-encode the pruned checkpoint)")
    text = meta.get("bitvert", "")
    if meta.get("bitvert_checksum") != text_checksum(text):
        raise FormatError(f"{where}: the header checksum does not match; the file is corrupted")
    try:
        doc = json.loads(text)
        headers = dict(doc["tensors"])
        sums = dict(doc["checksums"])
        source = dict(doc.get("source") or {})
        version = int(doc["format_version"])
    except (KeyError, TypeError, ValueError) as exc:
        raise FormatError(f"{where}: malformed header ({type(exc).__name__}: {exc})") from None
    if version != FORMAT_VERSION:
        raise FormatError(f"{where}: header format version {version}, this bitvert reads {FORMAT_VERSION}")
    return headers, sums, source


def tensor_from_stored(
    where: str, name: str, header: Any, stored: Mapping[str, torch.Tensor]
) -> tuple[EncodedTensor, torch.Tensor | None]:
    """One encoded tensor (and its scale, ``None`` without one) from a container's stored tensors.

    ``stored`` maps the file's tensor keys (``bbs.{name}``, ``scale.{name}``) to their (already
    checksum-verified) values; it may be a lazy mapping that reads only the keys asked for.

    Raises:
        FormatError: a missing or malformed blob or scale, naming the file and the tensor.
    """
    key = _PREFIX_BBS + name
    if key not in stored:
        raise FormatError(f"{where}: encoded tensor {name!r} is missing (no {key!r})")
    blob = stored[key]
    if blob.dtype != torch.uint8 or blob.ndim != 1:
        raise FormatError(f"{where}: {key!r} must be a 1-d uint8 tensor, got {blob.dtype} {tuple(blob.shape)}")
    if not isinstance(header, dict):
        raise FormatError(f"{where}: header of tensor {name!r} is not an object")
    enc = EncodedTensor.from_bytes(blob.numpy(), header, name=name)
    if not header.get("scale"):
        return enc, None
    skey = _PREFIX_SCALE + name
    if skey not in stored:
        raise FormatError(f"{where}: scale of tensor {name!r} is missing (no {skey!r})")
    s = stored[skey]
    if s.dtype != torch.float32 or tuple(s.shape) != (enc.n_channels,):
        raise FormatError(f"{where}: scale of {name!r} has {s.dtype} {tuple(s.shape)}, expected float32 "
                          f"({enc.n_channels},)")
    return enc, s


def file_accounting(path: str | os.PathLike[str]) -> dict[str, int]:
    """Bytes of a container file by part; the parts add up to the file size exactly.

    Returns ``{"file_bytes", "header_bytes", "weight_bytes", "scale_bytes", "state_bytes"}``
    where ``header_bytes`` is the safetensors header (8-byte length + JSON, padding included).
    """
    path = Path(path)
    size = path.stat().st_size
    n, head = read_safetensors_header(path)
    parts = {"weight_bytes": 0, "scale_bytes": 0, "state_bytes": 0}
    for key, info in head.items():
        if key == "__metadata__":
            continue
        start, end = info["data_offsets"]
        part = ("weight_bytes" if key.startswith(_PREFIX_BBS) else
                "scale_bytes" if key.startswith(_PREFIX_SCALE) else "state_bytes")
        parts[part] += int(end) - int(start)
    return {"file_bytes": size, "header_bytes": 8 + n, **parts}
