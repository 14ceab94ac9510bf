"""Memoized outputs of the FP32 reference while the variants are evaluated against it."""

from __future__ import annotations

from typing import Any

__all__ = ["MEMO_TASKS", "ReferenceMemo"]


MEMO_TASKS = frozenset({"similarity-suite", "lee-similarity", "simlex999", "wordsim353", "mnist-top1",
                         "news-perplexity", "text-perplexity", "glue", "image-folder"})
"""Tasks that call the FP32 reference only through its forward (no hooks on its submodules), so its
outputs may be memoized across the variants' evaluations."""


class ReferenceMemo:
    """While active (``with memo:``), ``module.forward`` returns the stored output for inputs it has seen.

    The FP32 model is evaluated once for its own metrics and then once more as the reference of every
    variant, on the same inputs; it is never modified, so its outputs can be reused. Inputs are keyed by
    the SHA-1 of every tensor argument (with its name, dtype and shape) and the ``repr`` of scalar
    arguments; a call with any other argument type is not memoized. Only installed for tasks in
    :data:`MEMO_TASKS`, whose evaluation uses the reference's plain forward.
    """

    def __init__(self, module: Any, enabled: bool = True) -> None:
        self.module = module
        self.enabled = enabled
        self.cache: dict[tuple[Any, ...], Any] = {}
        self.hits = 0
        self.misses = 0
        self._orig: Any = None

    @classmethod
    def for_task(cls, module: Any, task: str) -> ReferenceMemo:
        """The memo of ``module`` for evaluations on ``task``: enabled for the tasks of :data:`MEMO_TASKS`."""
        return cls(module, enabled=task.partition(":")[0] in MEMO_TASKS)

    def __enter__(self) -> ReferenceMemo:
        if self.enabled:
            self._orig = self.module.forward
            self.module.forward = self._forward
        return self

    def __exit__(self, *exc: object) -> None:
        if self.enabled and self._orig is not None:
            del self.module.forward  # the instance attribute; the class's forward is visible again
            self._orig = None

    @staticmethod
    def _key(args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[Any, ...] | None:
        import hashlib

        import torch

        parts: list[Any] = []
        for name, value in [(str(i), a) for i, a in enumerate(args)] + sorted(kwargs.items()):
            if isinstance(value, torch.Tensor):
                t = value.detach().cpu().contiguous()
                digest = hashlib.sha1(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"").hexdigest()
                parts.append((name, str(t.dtype), tuple(t.shape), digest))
            elif value is None or isinstance(value, (bool, int, float, str)):
                parts.append((name, repr(value)))
            else:
                return None
        return tuple(parts)

    def _forward(self, *args: Any, **kwargs: Any) -> Any:
        key = self._key(args, kwargs)
        if key is None:
            return self._orig(*args, **kwargs)
        if key in self.cache:
            self.hits += 1
            return self.cache[key]
        self.misses += 1
        out = self._orig(*args, **kwargs)
        self.cache[key] = out
        return out
