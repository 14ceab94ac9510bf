"""The :class:`LoadedModel` bundle that every loader returns."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, TypeAlias

import torch
from torch import nn

from bitvert.errors import InputError

#: What kind of model a loader returned; decides which evaluation tasks apply.
Family: TypeAlias = Literal["vision", "text-embedding", "causal-lm", "text-classifier"]
FAMILIES: tuple[str, ...] = ("vision", "text-embedding", "causal-lm", "text-classifier")

#: One model input: an image tensor ``(N, C, H, W)`` or a dict of keyword tensors (``input_ids``, ...).
Batch: TypeAlias = torch.Tensor | Mapping[str, torch.Tensor]


def output_tensor(out: Any) -> torch.Tensor:
    """The primary tensor of a model's output: the tensor itself, ``.logits``, ``.last_hidden_state`` or ``[0]``."""
    if isinstance(out, torch.Tensor):
        return out
    for attr in ("logits", "sentence_embedding", "last_hidden_state"):
        value = getattr(out, attr, None)
        if isinstance(value, torch.Tensor):
            return value
    if isinstance(out, Mapping):
        for key in ("logits", "sentence_embedding", "last_hidden_state"):
            if isinstance(out.get(key), torch.Tensor):
                return out[key]
    if isinstance(out, (tuple, list)) and out and isinstance(out[0], torch.Tensor):
        return out[0]
    raise InputError(f"cannot find the output tensor in a model output of type {type(out).__name__}; "
                     "return a tensor or an object with .logits")


def run_module(module: nn.Module, batch: Batch) -> torch.Tensor:
    """Run ``module`` on one batch in inference mode and return its primary output tensor."""
    with torch.inference_mode():
        out = module(**batch) if isinstance(batch, Mapping) else module(batch)
    return output_tensor(out)


@dataclass
class LoadedModel:
    """A real model plus everything needed to feed, calibrate and evaluate it.

    Attributes:
        model: the PyTorch module, in eval mode, FP32 on CPU. Quantizers/pruners rewrite its weights.
        name: the short name or path it was loaded from.
        family: ``"vision"``, ``"text-embedding"``, ``"causal-lm"`` or ``"text-classifier"``.
        calibration_batches: ``calibration_batches(n_samples)`` yields batches (see :data:`Batch`) of real
            calibration inputs, ``n_samples`` samples in all, disjoint from the default task's test data
            where the data allow it.
        default_task: the :mod:`bitvert.evaluation` task this model is evaluated on by default.
        extra: loader-specific items: ``tokenizer``, ``preprocess`` (a pinned preprocessing config),
            ``feature_module`` (name of the head whose input is the feature vector), ``source`` (where the
            weights came from), ``description``; for :func:`bitvert.models.example.example_input`:
            ``example_texts`` / ``example_images`` (a callable returning ``(texts or uint8 images, source
            description)``) and ``native_resolution_px`` (vision models).
    """

    model: nn.Module
    name: str
    family: Family
    calibration_batches: Callable[[int], Iterable[Batch]]
    default_task: str
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.family not in FAMILIES:
            raise InputError(f"family must be one of {FAMILIES}, got {self.family!r}")
        if not isinstance(self.model, nn.Module):
            raise InputError(f"model must be a torch.nn.Module, got {type(self.model).__name__}")

    def run(self, batch: Batch, module: nn.Module | None = None) -> torch.Tensor:
        """Run ``module`` (default: :attr:`model`) on ``batch`` without gradients; return the output tensor."""
        return run_module(self.model if module is None else module, batch)

    @property
    def n_parameters(self) -> int:
        """Number of parameters of :attr:`model`."""
        return int(sum(p.numel() for p in self.model.parameters()))
