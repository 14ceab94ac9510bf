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
from bitvert.codec.container import EncodedModel, load_encoded
from bitvert.pipeline.checkpoint import apply_checkpoint_
from bitvert.pipeline.quantize import ActivationQuantizer

__all__ = ["load_state_dict", "load_model_"]


def _model(source: EncodedModel | str | os.PathLike[str]) -> tuple[EncodedModel, str]:
    if isinstance(source, EncodedModel):
        return source, "encoded model"
    return load_encoded(source), repr(str(source))


def load_state_dict(source: EncodedModel | str | os.PathLike[str]) -> dict[str, torch.Tensor]:
    """Float ``state_dict`` of an encoded model: decoded weights times their scales, plus the rest.

    Encoded tensors without a scale are returned as their integer values in ``float32``.
    """
    model, _ = _model(source)
    out: dict[str, torch.Tensor] = dict(model.state)
    for name in model.tensors:
        if name in model.scales:
            out[name] = model.float_weight(name)
        else:
            out[name] = torch.from_numpy(model.decode(name)).to(torch.float32)
    return out


def load_model_(module: nn.Module, source: EncodedModel | str | os.PathLike[str]) -> ActivationQuantizer | None:
    """Load an encoded pruned model into ``module`` (same architecture), in place.

    Returns the re-attached activation quantizer (``None`` when the checkpoint quantized no
    activations); call its ``remove()`` to detach it, as with
    :func:`bitvert.pipeline.apply_checkpoint_`.

    Raises:
        FormatError: the file was not encoded from a pruned checkpoint.
        UnsupportedLayerError: ``module`` is not the architecture the file was made from.
    """
    model, where = _model(source)
    return apply_checkpoint_(module, to_pruned_checkpoint(model, where))
