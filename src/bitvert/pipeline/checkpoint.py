"""The pruned checkpoint: ``pruned.safetensors`` (no pickle anywhere).

Tensors, for the ``i``-th quantized layer (its module name is in the header):

* ``layer.{i}.q`` -- integer weights in the module's own weight layout (``int8`` when every
  value fits, else ``int16``: zero-point shifting can move a weight just outside INT8);
* ``layer.{i}.scale`` -- ``float32[K]`` per-output-channel scale, ``weight = q * scale``;
* ``layer.{i}.channel_bits`` -- ``uint8[K]`` stored bits per channel (8 sensitive, 8 - N normal; N may
  differ per layer, and within the one layer a bit budget splits, ``target_bits``);
* ``layer.{i}.sensitive`` -- ``uint8[K]`` (1 = sensitive, kept at full precision);
* ``layer.{i}.meta.{redundant,constant,free_columns,pruned}`` -- per-group pruning metadata
  (present for BBS and bit-flip layers);
* ``state.{key}`` -- every other entry of the model's ``state_dict`` (biases, norms,
  embeddings, FP32 layers, buffers) so the file restores the full model.

Header metadata (safetensors string metadata): ``format = "bitvert-pruned"``,
``format_version = "3"``, ``bitvert`` = JSON with the model description, the preset,
the per-layer descriptions (name, kind, shape, out_axis, role, layout, ``columns``: N -> number of
normal channels with it, which :func:`load_pruned` checks against ``channel_bits``), the calibrated
activation ranges, ``weight_int_range`` and the report summary; ``bitvert_checksums`` = JSON
``{tensor name: blake2b-128}`` of every tensor (:func:`bitvert.tensorfile.tensor_checksum`) and
``bitvert_checksum`` = blake2b-128 of the ``bitvert`` text followed by the ``bitvert_checksums``
text. :func:`load_pruned` verifies all of them (version-1 files, which have none, load with a
warning). Files are written canonically (:func:`bitvert.tensorfile.save_tensors`): the same
run gives the same bytes.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from bitvert.errors import ConfigError, FormatError, InputError, UnsupportedLayerError
from bitvert.pipeline.global_prune import LayerPruneRecord, ModelPruneReport
from bitvert.pipeline.presets import PipelinePreset
from bitvert.pipeline.quantize import (
    ActivationQuantizer,
    ActivationRange,
    LayerRole,
    QuantLayer,
    _untie_shared_weights,
    dequantize_weight,
    get_weight,
    layer_kind,
    set_weight_,
)
from bitvert.tensorfile import save_tensors, tensor_checksum, text_checksum, verify_checksums

__all__ = ["FORMAT_NAME", "FORMAT_VERSION", "CheckpointLayer", "PrunedCheckpoint", "to_checkpoint",
           "checkpoint_header", "checkpoint_layer", "save_pruned",
           "load_pruned", "apply_checkpoint_"]

logger = logging.getLogger(__name__)

FORMAT_NAME = "bitvert-pruned"
FORMAT_VERSION = 3
"""Version 2 adds checksums (every tensor and the header); version-1 files are still read, with a warning.
Version 3: the free columns N of a pruned layer's normal channels are ``weight_bits - channel_bits`` per
channel and may differ between layers (and within one layer, a bit budget's split layer); the header's
``layers[].columns`` says how many channels have each N. In versions 1 and 2 every normal channel has the
preset's N (checked on reading)."""
_READABLE_VERSIONS = ("1", "2", str(FORMAT_VERSION))
_META_KEYS = ("redundant", "constant", "free_columns", "pruned")


@dataclass
class CheckpointLayer:
    """One quantized layer read back from a checkpoint."""

    name: str
    kind: str
    shape: tuple[int, ...]
    out_axis: int
    role: str
    q: torch.Tensor
    scale: torch.Tensor
    channel_bits: torch.Tensor
    sensitive: torch.Tensor
    metadata: dict[str, torch.Tensor] = field(default_factory=dict)
    layout: dict[str, Any] | None = None

    def channel_columns(self, weight_bits: int) -> np.ndarray:
        """Free columns N per output channel: ``weight_bits - channel_bits`` (0 for sensitive and INT8 channels)."""
        return weight_bits - self.channel_bits.numpy().astype(np.int64)

    def dequantized(self) -> torch.Tensor:
        """``q * scale`` as ``float32`` in the module's weight layout."""
        return dequantize_weight(self.q, self.scale, self.out_axis)


@dataclass
class PrunedCheckpoint:
    """Contents of a ``pruned.safetensors`` file."""

    header: dict[str, Any]
    layers: list[CheckpointLayer]
    state: dict[str, torch.Tensor]

    @property
    def preset(self) -> PipelinePreset:
        return PipelinePreset.from_dict(self.header["preset"])

    @property
    def model_info(self) -> dict[str, Any]:
        return dict(self.header.get("model", {}))

    @property
    def activation_ranges(self) -> dict[str, ActivationRange]:
        return {k: ActivationRange(**v) for k, v in self.header.get("activation_ranges", {}).items()}

    @property
    def effective_bits(self) -> float:
        return float(self.header["summary"]["effective_bits"])


def _int_tensor(a: np.ndarray) -> torch.Tensor:
    a = np.ascontiguousarray(a)
    if a.size and a.min() >= -128 and a.max() <= 127:
        return torch.from_numpy(a.astype(np.int8))
    return torch.from_numpy(a.astype(np.int16))


def checkpoint_layer(rec: LayerPruneRecord) -> CheckpointLayer:
    """One quantized layer of a pruning run as the checkpoint holds it (integers, scale, metadata).

    Raises:
        InputError: the record holds no integer weights (an ``fp32`` layer, or arrays already dropped).
    """
    if rec.q is None or rec.scale is None or rec.channel_bits is None:
        raise InputError(f"layer {rec.name!r} of the report has no integer weights; it was not quantized")
    sens = rec.sensitive if rec.sensitive is not None else np.zeros(rec.n_channels, dtype=bool)
    md = {}
    if rec.metadata is not None:
        md = {k: torch.from_numpy(np.ascontiguousarray(rec.metadata[k])) for k in _META_KEYS}
    return CheckpointLayer(
        name=rec.name, kind=rec.kind, shape=tuple(rec.shape), out_axis=rec.out_axis, role=rec.role,
        q=torch.from_numpy(np.ascontiguousarray(rec.q, dtype=np.int16)),
        scale=torch.from_numpy(np.ascontiguousarray(rec.scale, dtype=np.float32)),
        channel_bits=torch.from_numpy(np.ascontiguousarray(rec.channel_bits)),
        sensitive=torch.from_numpy(np.ascontiguousarray(sens, dtype=bool)), metadata=md, layout=rec.layout,
    )


def to_checkpoint(
    report: ModelPruneReport,
    model: nn.Module | None = None,
    model_info: Mapping[str, Any] | None = None,
) -> PrunedCheckpoint:
    """The in-memory checkpoint of a pruning run: what :func:`save_pruned` writes and :func:`load_pruned` reads.

    Args:
        report: the :class:`ModelPruneReport` of :func:`prune_model_` or :func:`prune_int_layers`.
        model: the model :func:`prune_model_` rewrote; its tensors other than the quantized weights
            become ``state`` (``None``, e.g. for integer layers without a model: empty state).
        model_info: JSON-friendly description of the base model (e.g. ``{"name": "mnist-cnn"}``).
    """
    layers: list[CheckpointLayer] = []
    skip_keys = set()
    for rec in report.quantized_layers:
        layers.append(checkpoint_layer(rec))
        skip_keys.add(f"{rec.name}.weight" if rec.name else "weight")
    state: dict[str, torch.Tensor] = {}
    if model is not None:
        for key, value in model.state_dict().items():
            if key in skip_keys or not isinstance(value, torch.Tensor):
                continue
            state[key] = value.detach().cpu().contiguous().clone()
    return PrunedCheckpoint(header=checkpoint_header(report, model_info), layers=layers, state=state)


def checkpoint_header(report: ModelPruneReport, model_info: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The JSON header of a pruning run's checkpoint (model, preset, quantized layers, summary).

    Needs only the report's scalar fields, so a streaming run that dropped each layer's integers after
    encoding them describes its output with the same header as :func:`to_checkpoint`.
    """
    layers_meta = [{
        "index": i, "name": rec.name, "kind": rec.kind, "shape": list(rec.shape), "out_axis": rec.out_axis,
        "role": rec.role, "layout": rec.layout, "has_metadata": rec.metadata is not None,
        "columns": {str(n): c for n, c in sorted(rec.columns.items())},
    } for i, rec in enumerate(report.quantized_layers)]
    summary = report.to_dict()
    summary.pop("layers")
    summary.pop("preset")
    return {
        "model": dict(model_info or {}),
        "preset": report.preset.to_dict(),
        "layers": layers_meta,
        "activation_ranges": report.activation_ranges,
        "weight_int_range": summary["weight_int_range"],
        "summary": summary,
        "layer_summary": [l.to_dict() for l in report.layers],
    }


def save_pruned(
    path: str | Path,
    model: nn.Module,
    report: ModelPruneReport,
    model_info: Mapping[str, Any] | None = None,
) -> Path:
    """Write ``model`` pruned by ``report`` to ``path`` (a ``.safetensors`` file; see :func:`to_checkpoint`).

    Args:
        path: output file; its folder must exist.
        model: the model :func:`prune_model_` rewrote (its non-quantized tensors are saved too).
        report: the :class:`ModelPruneReport` of that run (integer weights, scales, metadata).
        model_info: JSON-friendly description of the base model (e.g. ``{"name": "mnist-cnn"}``),
            used by ``bitvert eval`` to rebuild the architecture.

    Returns:
        The path written.
    """
    path = Path(path)
    if not path.parent.is_dir():
        raise InputError(f"output folder {str(path.parent)!r} does not exist; create it first")
    ckpt = to_checkpoint(report, model, model_info)
    tensors: dict[str, torch.Tensor] = {}
    for i, layer in enumerate(ckpt.layers):
        tensors[f"layer.{i}.q"] = _int_tensor(layer.q.numpy())
        tensors[f"layer.{i}.scale"] = layer.scale
        tensors[f"layer.{i}.channel_bits"] = layer.channel_bits
        tensors[f"layer.{i}.sensitive"] = layer.sensitive.to(torch.uint8)
        for key, arr in layer.metadata.items():
            tensors[f"layer.{i}.meta.{key}"] = arr.to(torch.uint8) if arr.dtype == torch.bool else arr
    for key, value in ckpt.state.items():
        tensors[f"state.{key}"] = value
    text = json.dumps(ckpt.header)
    sums = json.dumps({key: tensor_checksum(t) for key, t in sorted(tensors.items())}, sort_keys=True)
    metadata = {"format": FORMAT_NAME, "format_version": str(FORMAT_VERSION), "bitvert": text,
                "bitvert_checksums": sums, "bitvert_checksum": text_checksum(text + sums)}
    return save_tensors(path, tensors, metadata)


def _verify_checksums(path: Path, meta: Mapping[str, str], tensors: Mapping[str, torch.Tensor]) -> None:
    where = repr(str(path))
    text, sums_text = meta.get("bitvert", ""), meta.get("bitvert_checksums", "")
    if meta.get("bitvert_checksum") != text_checksum(text + sums_text):
        raise FormatError(f"{where}: the header checksum does not match; the file is corrupted or was edited "
                          "(re-run `bitvert prune`)")
    try:
        sums = dict(json.loads(sums_text))
    except (TypeError, ValueError) as exc:
        raise FormatError(f"{where}: malformed checksum table ({exc})") from None
    verify_checksums(where, sums, tensors, "re-run `bitvert prune`")

def load_pruned(path: str | Path) -> PrunedCheckpoint:
    """Read a checkpoint written by :func:`save_pruned`.

    Raises:
        InputError: the file does not exist.
        FormatError: not a safetensors file, not a bitvert checkpoint, an unknown format
            version, or missing tensors.
    """
    from safetensors import SafetensorError, safe_open

    path = Path(path)
    if not path.is_file():
        raise InputError(f"checkpoint {str(path)!r} does not exist; pass the pruned.safetensors written by "
                         "`bitvert prune`")
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
            tensors = {k: f.get_tensor(k) for k in f.keys()}
    except (SafetensorError, OSError, ValueError) as exc:
        raise FormatError(f"{str(path)!r} is not a readable safetensors file: {exc}") from None
    if meta.get("format") != FORMAT_NAME or "bitvert" not in meta:
        raise FormatError(f"{str(path)!r} is not a bitvert pruned checkpoint (format={meta.get('format')!r}); "
                          "write one with `bitvert prune`")
    version = meta.get("format_version")
    if version not in _READABLE_VERSIONS:
        raise FormatError(f"{str(path)!r} has format version {version!r}; this bitvert reads versions "
                          f"{', '.join(_READABLE_VERSIONS)} (upgrade bitvert or re-run `bitvert prune`)")
    if version == "1":
        logger.warning("%s is a version-1 pruned checkpoint without checksums: its integrity cannot be verified "
                       "(re-run `bitvert prune` to write a verified one)", path)
    else:
        _verify_checksums(path, meta, tensors)
    try:
        header = json.loads(meta["bitvert"])
        layers = []
        for d in header["layers"]:
            i = d["index"]
            md = {k: tensors[f"layer.{i}.meta.{k}"] for k in _META_KEYS} if d.get("has_metadata") else {}
            layers.append(CheckpointLayer(
                name=d["name"], kind=d["kind"], shape=tuple(d["shape"]), out_axis=int(d["out_axis"]),
                role=d["role"], q=tensors[f"layer.{i}.q"].to(torch.int16), scale=tensors[f"layer.{i}.scale"],
                channel_bits=tensors[f"layer.{i}.channel_bits"], sensitive=tensors[f"layer.{i}.sensitive"].bool(),
                metadata=md, layout=d.get("layout"),
            ))
    except (KeyError, TypeError, ValueError, json.JSONDecodeError) as exc:
        raise FormatError(f"{str(path)!r}: malformed bitvert checkpoint ({type(exc).__name__}: {exc})") from None
    for layer in layers:
        if tuple(layer.q.shape) != layer.shape or layer.scale.shape != (layer.shape[layer.out_axis],):
            raise FormatError(f"{str(path)!r}: layer {layer.name!r} has inconsistent tensor shapes")
    _check_columns(path, version, header, layers)
    state = {k[len("state."):]: v for k, v in tensors.items() if k.startswith("state.")}
    return PrunedCheckpoint(header=header, layers=layers, state=state)


def _check_columns(path: Path, version: str, header: Mapping[str, Any], layers: Sequence[CheckpointLayer]) -> None:
    """Normal channels' N (from ``channel_bits``) agree with the header (v3) or the preset's N (v1, v2)."""
    try:
        preset = PipelinePreset.from_dict(header["preset"])
    except (KeyError, ConfigError) as exc:
        raise FormatError(f"{str(path)!r}: malformed preset in the header ({exc})") from None
    if preset.method == "none":
        return
    bits = preset.quant.weight_bits
    for d, layer in zip(header["layers"], layers):
        if layer.role != LayerRole.PRUNE.value:
            continue
        normal = ~layer.sensitive.numpy().astype(bool)
        cols = layer.channel_columns(bits)[normal]
        values, counts = np.unique(cols, return_counts=True)
        found = {str(int(v)): int(c) for v, c in zip(values, counts)}
        if version in ("1", "2"):
            expected = {str(preset.columns): int(normal.sum())} if normal.any() else {}
        else:
            expected = dict(d.get("columns", {}))
        if found != expected or (cols.size and (cols.min() < 1 or cols.max() >= bits)):
            raise FormatError(f"{str(path)!r}: layer {layer.name!r} stores normal channels with N {found} "
                              f"(from channel_bits), the header says {expected}; the file is inconsistent "
                              "(re-run `bitvert prune`)")


def apply_checkpoint_(model: nn.Module, checkpoint: PrunedCheckpoint | str | Path) -> ActivationQuantizer | None:
    """Load a pruned checkpoint into a model of the same architecture, in place.

    Weights of the quantized layers become ``q * scale``; every other tensor is loaded from
    the checkpoint's state; activation fake-quantization is re-attached with the stored
    ranges (returned, or ``None`` when the checkpoint quantizes no activations).

    Raises:
        UnsupportedLayerError: a checkpoint layer is missing from ``model`` or has another
            shape or type (the checkpoint was made from a different model).
    """
    ckpt = checkpoint if isinstance(checkpoint, PrunedCheckpoint) else load_pruned(checkpoint)
    model_name = ckpt.model_info.get("name", "?")
    targets: list[QuantLayer] = []
    preset = ckpt.preset
    for layer in ckpt.layers:
        try:
            module = model.get_submodule(layer.name)
        except AttributeError:
            raise UnsupportedLayerError(
                f"checkpoint layer {layer.name!r} does not exist in {type(model).__name__}; the checkpoint was "
                f"made from model {model_name!r}: load that model (e.g. `bitvert eval --model {model_name}`)"
            ) from None
        kind = layer_kind(module)
        if kind is None or kind[0] != layer.kind or tuple(get_weight(module).shape) != layer.shape:
            raise UnsupportedLayerError(
                f"checkpoint layer {layer.name!r} ({layer.kind}, shape {layer.shape}) does not match the model's "
                f"{type(module).__name__} with weight {tuple(get_weight(module).shape) if kind else '-'}; "
                f"the checkpoint was made from model {model_name!r}"
            )
        targets.append(QuantLayer(name=layer.name, module=module, kind=kind[0], out_axis=kind[1],
                                  role=LayerRole(layer.role), config=preset.quant))
    _untie_shared_weights(model, targets)
    for layer, target in zip(ckpt.layers, targets):
        set_weight_(target.module, layer.dequantized())
    weight_keys = {f"{t.name}.weight" if t.name else "weight" for t in targets}
    missing, unexpected = model.load_state_dict(ckpt.state, strict=False)
    unexpected = [k for k in unexpected]
    missing = [k for k in missing if k not in weight_keys]
    if unexpected or missing:
        raise UnsupportedLayerError(
            f"checkpoint state does not match {type(model).__name__} (missing {missing[:5]}, unexpected "
            f"{unexpected[:5]}); the checkpoint was made from model {model_name!r}"
        )
    ranges = ckpt.activation_ranges
    if not ranges:
        return None
    aq = ActivationQuantizer([t for t in targets if t.name in ranges])
    aq.load_ranges(ranges)
    return aq
