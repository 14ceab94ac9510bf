"""Helpers shared by the task modules."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import TypeVar

import torch
from torch import nn

from bitvert.errors import InputError
from bitvert.models.types import Batch, LoadedModel, run_module

T = TypeVar("T")


_PROGRESS: ContextVar[str | None] = ContextVar("bitvert_eval_progress", default=None)


@contextmanager
def batch_progress(description: str | None) -> Iterator[None]:
    """Show a progress bar (stderr) over the evaluation batches run inside the block, labelled
    ``description`` (e.g. the variant); ``None``: no bar."""
    token = _PROGRESS.set(description)
    try:
        yield
    finally:
        _PROGRESS.reset(token)


def progress_iter(batches: Iterable[T], total: int | None = None) -> Iterable[T]:
    """``batches``, wrapped in a progress bar inside :func:`batch_progress` (unchanged outside)."""
    desc = _PROGRESS.get()
    if desc is None:
        return batches
    from tqdm.auto import tqdm

    return tqdm(batches, desc=desc, total=total, unit="batch", leave=False)


def run_batches(module: nn.Module, batches: Iterable[Batch]) -> torch.Tensor:
    """Run ``module`` on every batch and concatenate the outputs along dim 0 (float32, CPU)."""
    outs = [run_module(module, b).float().cpu() for b in progress_iter(batches)]
    if not outs:
        raise InputError("no input batches to evaluate")
    return torch.cat(outs, dim=0)


@dataclass(frozen=True)
class LimitUse:
    """One application of an evaluation limit: ``used`` of ``available`` ``what`` under ``limit``."""

    what: str
    limit: int
    available: int
    used: int


_LIMIT_USES: ContextVar[list[LimitUse] | None] = ContextVar("bitvert_limit_uses", default=None)


@contextmanager
def limit_uses() -> Iterator[list[LimitUse]]:
    """Collect every :class:`LimitUse` of the evaluations run inside the block (to report a limit above
    what a task can use: :func:`limit_unused`)."""
    token = _LIMIT_USES.set([])
    try:
        yield _LIMIT_USES.get()  # type: ignore[misc]
    finally:
        _LIMIT_USES.reset(token)


def limit_unused(uses: list[LimitUse]) -> str | None:
    """A sentence when the limit exceeded what *every* part of the task could use, else ``None``."""
    if not uses or any(u.used >= u.limit for u in uses):
        return None
    parts = ", ".join(f"{u.available} {u.what}" for u in uses)
    return f"limit {uses[0].limit} is more than the task can use ({parts}); it evaluated all of them"


def check_limit(limit: int | None, available: int, what: str) -> int:
    """Validate ``limit`` and return the number of items to use (``available`` when ``None``)."""
    if limit is None:
        return available
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
        raise InputError(f"limit must be a positive integer or None, got {limit!r}")
    used = min(limit, available)
    uses = _LIMIT_USES.get()
    if uses is not None:
        uses.append(LimitUse(what, limit, available, used))
    return used


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
