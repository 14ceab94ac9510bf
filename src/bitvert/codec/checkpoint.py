"""Bridge between the pipeline's ``pruned.safetensors`` checkpoint and the BBS container.

* :func:`encode_checkpoint` -- every quantized layer of a pruned checkpoint becomes an
  :class:`~bitvert.codec.tensor.EncodedTensor` (BBS / BitWave layouts for pruned layers,
  ``plain`` for INT8 and fewer-bit RTN layers); scales and every other tensor are kept.
* :func:`encode_report` -- the same for a pruning run held in memory (a
  :class:`~bitvert.pipeline.ModelPruneReport`, e.g. of :func:`~bitvert.pipeline.prune_int_layers`);
* :func:`to_pruned_checkpoint` -- the inverse: a
  :class:`~bitvert.pipeline.PrunedCheckpoint` rebuilt from decoded weights, which
  :func:`bitvert.pipeline.apply_checkpoint_` loads into a model.
"""

from __future__ import annotations

import logging
import os
from typing import Any

import numpy as np
import torch

from bitvert.codec.container import EncodedModel, save_encoded
from bitvert.codec.tensor import EncodedTensor, encode, encode_plain
from bitvert.codec.view import channel_widths, sensitive_channels
from bitvert.core.grouping import make_layout
from bitvert.errors import FormatError, InputError
from bitvert.pipeline.checkpoint import CheckpointLayer, PrunedCheckpoint, load_pruned, to_checkpoint
from bitvert.pipeline.global_prune import ModelPruneReport
from bitvert.pruning import GroupMetadata, PruneResult
from bitvert.pruning.methods import REGISTRY, get_method

__all__ = ["weight_key", "encode_checkpoint", "encode_report", "encode_checkpoint_file", "to_pruned_checkpoint"]

log = logging.getLogger(__name__)


def _has_group_metadata(method: str) -> bool:
    """Whether a preset's method prunes groups with per-group metadata (a registered pruning method)."""
    return method in REGISTRY and get_method(method).metadata


def weight_key(layer_name: str) -> str:
    """``state_dict`` key of a layer's weight (the tensor name used in the container)."""
    return f"{layer_name}.weight" if layer_name else "weight"


def _layer_prune_config(preset: Any, channel_bits: np.ndarray, sensitive: np.ndarray) -> tuple[Any, np.ndarray,
                                                                                          np.ndarray]:
    """A pruned layer's encoding settings from its per-channel bits and sensitive flags: ``(PruneConfig,
    free columns N per channel, normal-channel mask)``; the config's N is the smallest of its normal channels'."""
    columns = int(preset.quant.weight_bits) - np.asarray(channel_bits).astype(np.int64)
    normal = ~np.asarray(sensitive).astype(bool)
    cfg = preset.prune_config(columns=int(columns[normal].min()) if normal.any() else None)
    return cfg, columns, normal


def layer_encoding_source(preset: Any, channel_bits: np.ndarray, sensitive: np.ndarray) -> tuple[int, dict[str, Any]]:
    """``(columns, source)`` that :func:`encode_checkpoint` records for a pruned layer with these per-channel
    bits and sensitive flags: what :func:`~bitvert.codec.tensor.concat_channels` needs to join blocks of the
    layer encoded one at a time into the whole layer's encoding."""
    cfg, _, _ = _layer_prune_config(preset, channel_bits, sensitive)
    return int(cfg.columns), cfg.to_dict()


def _encode_layer(layer: CheckpointLayer, preset: Any, path: str) -> EncodedTensor:
    name = weight_key(layer.name)
    q = layer.q.numpy().astype(np.int16, copy=False)
    bits = int(preset.quant.weight_bits)
    if layer.metadata:
        if not _has_group_metadata(preset.method):
            raise FormatError(f"{path}: layer {layer.name!r} has pruning metadata but the preset's method is "
                              f"{preset.method!r}")
        cfg, columns, normal = _layer_prune_config(preset, layer.channel_bits.numpy(), layer.sensitive.numpy())
        lay = make_layout(layer.shape, layer.kind, cfg.group_size, cfg.remainder)
        if layer.layout is not None and {k: layer.layout.get(k) for k in ("shape", "kind", "group_size")} != \
                {"shape": list(lay.shape), "kind": lay.kind.value, "group_size": lay.group_size}:
            raise FormatError(f"{path}: layer {layer.name!r} records grouping {layer.layout}, which does not match "
                              f"the preset's (group_size={cfg.group_size}, kind={layer.kind})")
        md = {k: layer.metadata[k].numpy() for k in ("redundant", "constant", "free_columns", "pruned")}
        meta = GroupMetadata(redundant=md["redundant"].astype(np.uint8), constant=md["constant"].astype(np.int16),
                             free_columns=md["free_columns"].astype(np.uint8), pruned=md["pruned"].astype(bool))
        if len(meta) != lay.n_groups:
            raise FormatError(f"{path}: layer {layer.name!r} has metadata for {len(meta)} groups, its weight "
                              f"{layer.shape} has {lay.n_groups} at group_size={cfg.group_size}")
        result = PruneResult(weights=q, original=q, metadata=meta, layout=lay, config=cfg)
        return encode(result, name=name, channel_columns=np.where(normal, columns, cfg.columns))
    if layer.role == "prune" and _has_group_metadata(preset.method):
        raise InputError(f"{path}: layer {layer.name!r} has role 'prune' under method {preset.method!r} but no "
                         "pruning metadata: it is not a pruned tensor; re-run `bitvert prune`")
    channel_bits = layer.channel_bits.numpy().astype(np.int64)
    return encode_plain(q, kind=layer.kind, group_size=int(preset.group_size), channel_bits=channel_bits,
                        weight_bits=bits, name=name)


def encode_checkpoint(checkpoint: PrunedCheckpoint | str | os.PathLike[str]) -> EncodedModel:
    """Encode every quantized layer of a pruned checkpoint.

    Args:
        checkpoint: a :class:`~bitvert.pipeline.PrunedCheckpoint` or the path of a
            ``pruned.safetensors`` written by ``bitvert prune``.

    Returns:
        An :class:`~bitvert.codec.container.EncodedModel` whose ``source`` is the checkpoint's
        header (model, preset, layers, activation ranges).
    """
    path = "checkpoint"
    if not isinstance(checkpoint, PrunedCheckpoint):
        path = repr(str(checkpoint))
        checkpoint = load_pruned(checkpoint)
    preset = checkpoint.preset
    tensors: dict[str, EncodedTensor] = {}
    scales: dict[str, torch.Tensor] = {}
    for layer in checkpoint.layers:
        name = weight_key(layer.name)
        tensors[name] = _encode_layer(layer, preset, path)
        scales[name] = layer.scale.to(torch.float32)
    return EncodedModel(tensors=tensors, scales=scales, state=dict(checkpoint.state),
                        source=dict(checkpoint.header))


def encode_report(report: ModelPruneReport, model_info: dict[str, Any] | None = None) -> EncodedModel:
    """Encode every quantized layer of a pruning run held in memory (no model state, no file).

    The same encoder as :func:`encode_checkpoint` on the checkpoint :func:`bitvert.pipeline.save_pruned`
    would write; the result's ``source`` is that checkpoint's header (preset, per-layer summary).
    """
    if not isinstance(report, ModelPruneReport):
        raise InputError(f"encode_report expects a ModelPruneReport, got {type(report).__name__}")
    return encode_checkpoint(to_checkpoint(report, model_info=model_info))


def encode_checkpoint_file(checkpoint: str | os.PathLike[str], out: str | os.PathLike[str]) -> EncodedModel:
    """Encode ``pruned.safetensors`` into ``out`` (``*.bbs.safetensors``); returns what was written."""
    model = encode_checkpoint(checkpoint)
    save_encoded(out, model.tensors, model.scales, model.state, model.source)
    return model


def to_pruned_checkpoint(model: EncodedModel, where: str = "file") -> PrunedCheckpoint:
    """Rebuild the pipeline's :class:`~bitvert.pipeline.PrunedCheckpoint` from an encoded model.

    The integer weights are decoded from the columns; ``sensitive`` marks the channels stored
    without metadata (BBS / BitWave layouts) or at full width among narrower ones (plain);
    ``channel_bits`` is each channel's stored width. Per-group pruning metadata is not
    reconstructed (the encoded metadata is what the hardware reads).

    Raises:
        FormatError: ``model.source`` does not describe a pruned checkpoint, or a layer it
            lists is missing.
    """
    header = model.source
    if not isinstance(header.get("layers"), list) or "preset" not in header:
        raise FormatError(f"{where}: it was not encoded from a pruned checkpoint (no layer list in its source); "
                          "use EncodedModel.decode() for its tensors")
    layers = []
    for d in header["layers"]:
        try:
            lname, kind, shape, out_axis, role = d["name"], d["kind"], tuple(d["shape"]), int(d["out_axis"]), d["role"]
        except (KeyError, TypeError, ValueError) as exc:
            raise FormatError(f"{where}: malformed layer entry {d!r} ({exc})") from None
        name = weight_key(lname)
        if name not in model.tensors or name not in model.scales:
            raise FormatError(f"{where}: layer {lname!r} is listed but its tensor {name!r} or scale is missing")
        enc = model.tensors[name]
        if tuple(enc.shape) != shape:
            raise FormatError(f"{where}: tensor {name!r} has shape {enc.shape}, the layer list says {shape}")
        q = torch.from_numpy(model.decode(name))
        width, _ = channel_widths(enc)
        sensitive = sensitive_channels(enc)
        layers.append(CheckpointLayer(
            name=lname, kind=kind, shape=shape, out_axis=out_axis, role=role, q=q, scale=model.scales[name],
            channel_bits=torch.from_numpy(width.astype(np.uint8)), sensitive=torch.from_numpy(sensitive),
            metadata={}, layout=d.get("layout"),
        ))
    return PrunedCheckpoint(header=header, layers=layers, state=dict(model.state))
