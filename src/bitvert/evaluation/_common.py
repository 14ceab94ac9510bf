"""Helpers shared by the task modules."""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import nn

from bitvert.errors import InputError
from bitvert.models.types import Batch, LoadedModel, run_module


def run_batches(module: nn.Module, batches: Iterable[Batch]) -> torch.Tensor:
    """Run ``module`` on every batch and concatenate the outputs along dim 0 (float32, CPU)."""
    outs = [run_module(module, b).float().cpu() for b in batches]
    if not outs:
        raise InputError("no input batches to evaluate")
    return torch.cat(outs, dim=0)


def check_limit(limit: int | None, available: int, what: str) -> int:
    """Validate ``limit`` and return the number of items to use (``available`` when ``None``)."""
    if limit is None:
        return available
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
        raise InputError(f"limit must be a positive integer or None, got {limit!r}")
    return min(limit, available)


def with_fp32(metrics: dict[str, float], reference_metrics: dict[str, float] | None) -> dict[str, float]:
    """Add ``<name>_fp32`` entries for every task metric computed on the FP32 reference."""
    out = dict(metrics)
    if reference_metrics is not None:
        for key, value in reference_metrics.items():
            out[f"{key}_fp32"] = value
    return out


def require_extra(model: LoadedModel, key: str, task: str) -> object:
    """``model.extra[key]`` or an :class:`InputError` saying the task cannot run on this model."""
    if key not in model.extra:
        raise InputError(f"task {task!r} needs model.extra[{key!r}], which model {model.name!r} lacks; load the "
                         "model with bitvert.models.load_model")
    return model.extra[key]
