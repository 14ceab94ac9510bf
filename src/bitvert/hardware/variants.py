"""Workloads that carry a variant's own encoded weights (one source of truth for the simulator).

A *geometry* workload (:mod:`bitvert.hardware.workloads_zoo`, :mod:`bitvert.hardware.import_torch`)
gives every layer's shapes, activations and INT8 integers. A *variant* is what a pipeline preset
made of the model; :func:`workload_for_variant` swaps each weight layer's integers for the
variant's decoded integers and attaches its :class:`~bitvert.codec.view.WeightEncoding` (stored
columns per group, sensitive channels, exact footprint). Modules called twice (``name#1``)
share their encoding; attention ``matmul`` layers are unchanged (their operands are activations).

Where encodings come from:

* :func:`file_encodings` -- a ``*.bbs.safetensors`` file (:func:`bitvert.codec.load_encoded`) or a
  ``pruned.safetensors`` checkpoint (encoded in memory by
  :func:`bitvert.codec.checkpoint.encode_checkpoint`, the same path ``bitvert encode`` takes);
* :func:`pipeline_encodings` -- a geometry workload's own integers through the pipeline's
  Algorithm 2 (:func:`bitvert.pipeline.global_prune.prune_int_layers`: first/last-layer rule,
  global sensitive channels, short-group rule) and the codec
  (:func:`bitvert.codec.checkpoint.encode_report`). The paper's shape-only workloads take this path.

A variant source (:class:`PipelineVariants`, :class:`FileVariants`) gives the variant workload of
a geometry for a preset name; :func:`bitvert.hardware.simulate.simulate` asks it for one variant
at a time and drops it after use.

A layer the variant did not quantize (role ``fp32``: no encoded tensor) cannot run on integer
hardware: :func:`workload_for_variant` raises :class:`~bitvert.errors.UnsupportedLayerError`
naming it, or, with ``unquantized="drop"``, leaves it out of the workload and lists it in the
workload's ``notes["dropped_fp32_layers"]``.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol

import numpy as np

from bitvert.errors import InputError, UnsupportedLayerError
from bitvert.hardware.workload import LayerType, LayerWorkload, Workload

if TYPE_CHECKING:
    from bitvert.codec.view import WeightEncoding
    from bitvert.pipeline.global_prune import IntLayer

__all__ = [
    "module_name",
    "workload_for_variant",
    "int_layers",
    "pipeline_encodings",
    "file_encodings",
    "VariantSource",
    "PipelineVariants",
    "FileVariants",
    "file_source",
]

log = logging.getLogger(__name__)


def module_name(layer_name: str) -> str:
    """The module of a workload layer (``blocks.0.fc#1`` -> ``blocks.0.fc``: a module's second call)."""
    return layer_name.split("#", 1)[0]


def workload_for_variant(
    geometry: Workload,
    encodings: Mapping[str, WeightEncoding],
    name: str | None = None,
    unquantized: Literal["error", "drop"] = "error",
) -> Workload:
    """``geometry`` with each weight layer's integers and encoding taken from ``encodings``.

    Args:
        geometry: shapes, activations and (INT8) integers of every layer.
        encodings: the variant's encodings keyed by module name (:func:`bitvert.codec.view.model_encodings`).
        name: the variant's name, recorded in ``notes["variant"]``.
        unquantized: what to do with a weight layer that has no encoding (the variant left it in
            FP32): ``error`` raises, ``drop`` leaves it out (listed in ``notes``).

    Raises:
        UnsupportedLayerError: a weight layer has no encoding (``unquantized="error"``).
        InputError: an encoding's shape differs from the layer's.
    """
    layers: list[LayerWorkload] = []
    dropped: list[str] = []
    for layer in geometry.layers:
        if layer.kind is LayerType.MATMUL:
            layers.append(layer)
            continue
        mod = module_name(layer.name)
        enc = encodings.get(mod)
        if enc is None:
            if unquantized == "drop":
                dropped.append(layer.name)
                continue
            raise UnsupportedLayerError(
                f"layer {layer.name!r} of workload {geometry.name!r} has no encoded weights in variant "
                f"{name or '?'!r} (the preset left it in FP32, or the file is of another model); integer "
                "hardware cannot run it -- quantize it (a preset rule) or drop FP32 layers explicitly"
            )
        if enc.weights.shape != layer.weights.shape:
            raise InputError(
                f"layer {layer.name!r}: the variant's weights have shape {enc.weights.shape}, the workload's "
                f"{layer.weights.shape}; the file belongs to another model or input geometry"
            )
        layers.append(replace(layer, weights=enc.weights, encoding=enc))
    notes = {**geometry.notes, "variant": name}
    if dropped:
        notes["dropped_fp32_layers"] = dropped
        log.info("variant %s: %d FP32 layer(s) not simulated: %s", name, len(dropped), dropped[:5])
    return replace(geometry, layers=tuple(layers), notes=notes)


def int_layers(geometry: Workload) -> list[IntLayer]:
    """The pipeline's view of a geometry workload: one :class:`IntLayer` per weight module, in order.

    Scales are the layers' ``channel_scale`` (ones when unknown: every channel scores alike).
    """
    from bitvert.pipeline.global_prune import IntLayer

    out: list[IntLayer] = []
    seen: set[str] = set()
    for layer in geometry.layers:
        mod = module_name(layer.name)
        if layer.kind is LayerType.MATMUL or mod in seen:
            continue
        seen.add(mod)
        scale = layer.channel_scale if layer.channel_scale is not None else np.ones(layer.out_channels)
        out.append(IntLayer(name=mod, kind="conv" if layer.is_conv else "linear", q=layer.weights,
                            scale=np.asarray(scale, dtype=np.float64)))
    return out


def pipeline_encodings(geometry: Workload, preset: Any) -> dict[str, WeightEncoding]:
    """Encodings of ``geometry``'s integers pruned by the pipeline's Algorithm 2 with ``preset``."""
    from bitvert.codec.checkpoint import encode_report
    from bitvert.codec.view import model_encodings
    from bitvert.pipeline.global_prune import prune_int_layers

    report = prune_int_layers(int_layers(geometry), preset)
    model = encode_report(report)
    del report
    return model_encodings(model)


def file_encodings(path: str | os.PathLike[str]) -> tuple[dict[str, WeightEncoding], dict[str, Any]]:
    """Encodings and source header of a ``*.bbs.safetensors`` or a ``pruned.safetensors`` file.

    Raises:
        InputError: the file does not exist.
        FormatError: it is neither format, or it is corrupted.
    """
    from bitvert.codec import encode_checkpoint, load_encoded
    from bitvert.codec.view import model_encodings

    p = Path(path)
    if not p.is_file():
        raise InputError(f"{str(p)!r} does not exist; pass a pruned.safetensors (bitvert prune) or a "
                         "*.bbs.safetensors (bitvert encode) file")
    model = load_encoded(p) if p.name.endswith(".bbs.safetensors") else encode_checkpoint(p)
    return model_encodings(model), dict(model.source)


class VariantSource(Protocol):
    """Gives the workload of a model variant for a geometry workload."""

    def workload(self, geometry: Workload, preset: str) -> Workload:
        """``geometry`` running the variant of pipeline preset ``preset``."""
        ...  # pragma: no cover - protocol


class PipelineVariants:
    """Variants made on the fly by the pipeline's Algorithm 2 from the geometry's own integers.

    ``int8`` is the geometry itself (its integers are the INT8 variant: the synthetic weights of a
    shape-only workload, the per-channel INT8 weights of an imported model).
    """

    def workload(self, geometry: Workload, preset: str) -> Workload:
        from bitvert.pipeline.presets import get_preset

        p = get_preset(preset)
        if p.method == "none":
            return geometry
        return workload_for_variant(geometry, pipeline_encodings(geometry, p), p.name)


class FileVariants:
    """Variants read from encoded files: ``{preset: *.bbs.safetensors or pruned.safetensors}``.

    Args:
        files: file of each variant.
        unquantized: passed to :func:`workload_for_variant`.
    """

    def __init__(self, files: Mapping[str, str | os.PathLike[str]],
                 unquantized: Literal["error", "drop"] = "error") -> None:
        self.files = {str(k): Path(v) for k, v in files.items()}
        self.unquantized = unquantized
        self._last: tuple[Workload, str, Workload] | None = None

    def workload(self, geometry: Workload, preset: str) -> Workload:
        """The variant's workload on ``geometry``, decoded from its file.

        The last workload built is kept, so asking again for the same (geometry, variant) -- e.g. a
        check before the simulation -- does not decode the file twice; asking for another one drops it
        first, so at most one decoded variant is held.
        """
        if preset not in self.files:
            raise InputError(f"no encoded file for variant {preset!r}; this simulation has {sorted(self.files)}")
        if self._last is not None and self._last[0] is geometry and self._last[1] == preset:
            return self._last[2]
        self._last = None
        encodings, _ = file_encodings(self.files[preset])
        built = workload_for_variant(geometry, encodings, preset, self.unquantized)
        self._last = (geometry, preset, built)
        return built


def file_source(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The source header of a ``*.bbs.safetensors`` or ``pruned.safetensors`` (model, preset, layers).

    Reads only the file's metadata. Raises :class:`~bitvert.errors.FormatError` when it has none.
    """
    import json

    from safetensors import safe_open

    from bitvert.errors import FormatError

    p = Path(path)
    try:
        with safe_open(str(p), framework="np") as f:
            meta = f.metadata() or {}
        doc = json.loads(meta["bitvert"])
    except Exception as exc:  # safetensors raises several types; a missing key or bad JSON alike
        raise FormatError(f"{str(p)!r} is not a bitvert pruned.safetensors / *.bbs.safetensors file "
                          f"({type(exc).__name__}: {exc})") from None
    if not isinstance(doc, dict):
        raise FormatError(f"{str(p)!r}: malformed bitvert header")
    return dict(doc.get("source") or {}) if "tensors" in doc and "checksums" in doc else doc
