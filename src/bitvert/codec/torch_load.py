"""Run a model from its ``*.bbs.safetensors`` file (weights decoded on load).

* :func:`load_state_dict` -- a float ``state_dict`` (``q * scale`` for every encoded weight,
  every other tensor as stored), loadable with ``model.load_state_dict``.
* :func:`load_model_` -- load the file into a model of the architecture it was pruned from,
  in place, re-attaching the calibrated activation quantization, exactly as
  :func:`bitvert.pipeline.apply_checkpoint_` does for the pruned checkpoint.
"""

from __future__ import annotations

import os

import torch
from torch import nn

from bitvert.codec.checkpoint import to_pruned_checkpoint
from bitvert.codec.container import EncodedModel
from bitvert.codec.stream import ShardedEncodedModel, open_encoded
from bitvert.pipeline.checkpoint import apply_checkpoint_
from bitvert.pipeline.quantize import ActivationQuantizer

__all__ = ["load_state_dict", "load_model_"]


Source = EncodedModel | ShardedEncodedModel | str | os.PathLike[str]
"""An encoded model in memory, a sharded one, a ``*.bbs.safetensors`` file or a sharded model's folder / index."""


def _model(source: Source) -> tuple[EncodedModel | ShardedEncodedModel, str]:
    if isinstance(source, (EncodedModel, ShardedEncodedModel)):
        return source, "encoded model"
    return open_encoded(source), repr(str(source))


def load_state_dict(source: Source) -> dict[str, torch.Tensor]:
    """Float ``state_dict`` of an encoded model: decoded weights times their scales, plus the rest.

    Encoded tensors without a scale are returned as their integer values in ``float32``. A sharded model
    is read and decoded one tensor at a time.
    """
    model, _ = _model(source)
    if isinstance(model, ShardedEncodedModel):
        return dict(model.iter_float_state())
    out: dict[str, torch.Tensor] = dict(model.state)
    for name in model.tensors:
        if name in model.scales:
            out[name] = model.float_weight(name)
        else:
            out[name] = torch.from_numpy(model.decode(name)).to(torch.float32)
    return out


def load_model_(module: nn.Module, source: Source) -> ActivationQuantizer | None:
    """Load an encoded pruned model into ``module`` (same architecture), in place.

    Returns the re-attached activation quantizer (``None`` when the checkpoint quantized no
    activations); call its ``remove()`` to detach it, as with
    :func:`bitvert.pipeline.apply_checkpoint_`.

    Raises:
        FormatError: the file was not encoded from a pruned checkpoint.
        UnsupportedLayerError: ``module`` is not the architecture the file was made from.
    """
    model, where = _model(source)
    return apply_checkpoint_(module, to_pruned_checkpoint(model, where))  # type: ignore[arg-type]
