"""Metrics (numpy / torch, vectorized): correlations, top-k accuracy, F1, fidelity against FP32."""

from __future__ import annotations

import numpy as np
import torch

from bitvert.errors import InputError

__all__ = [
    "rankdata",
    "pearson",
    "spearman",
    "topk_accuracy",
    "binary_f1",
    "rowwise_cosine",
    "mean_kl_from_logits",
    "agreement",
]


def _pair(x: np.ndarray | list, y: np.ndarray | list, name: str) -> tuple[np.ndarray, np.ndarray]:
    a = np.asarray(x, dtype=np.float64).ravel()
    b = np.asarray(y, dtype=np.float64).ravel()
    if a.shape != b.shape:
        raise InputError(f"{name}: the two inputs have different lengths ({a.size} vs {b.size})")
    if a.size < 2:
        raise InputError(f"{name} needs at least 2 paired values, got {a.size}")
    if not (np.isfinite(a).all() and np.isfinite(b).all()):
        raise InputError(f"{name}: inputs contain NaN or infinity")
    return a, b


def rankdata(x: np.ndarray | list) -> np.ndarray:
    """Ranks 1..n of ``x``, ties given the mean of the ranks they span (as in Spearman's rho)."""
    a = np.asarray(x, dtype=np.float64).ravel()
    order = np.argsort(a, kind="mergesort")
    sorted_a = a[order]
    new_group = np.empty(a.size, dtype=bool)
    new_group[:1] = True
    new_group[1:] = sorted_a[1:] != sorted_a[:-1]
    group_id = np.cumsum(new_group) - 1
    starts = np.flatnonzero(new_group)
    counts = np.diff(np.append(starts, a.size))
    mean_rank = starts + (counts + 1) / 2.0  # ranks are 1-based: start+1 .. start+count
    ranks = np.empty(a.size, dtype=np.float64)
    ranks[order] = mean_rank[group_id]
    return ranks


def pearson(x: np.ndarray | list, y: np.ndarray | list) -> float:
    """Pearson correlation coefficient; raises :class:`InputError` when either input is constant."""
    a, b = _pair(x, y, "pearson")
    a = a - a.mean()
    b = b - b.mean()
    denom = float(np.sqrt((a * a).sum() * (b * b).sum()))
    if denom == 0.0:
        raise InputError("pearson: an input is constant, the correlation is undefined")
    return float((a * b).sum() / denom)


def spearman(x: np.ndarray | list, y: np.ndarray | list) -> float:
    """Spearman rank correlation (Pearson on tie-averaged ranks)."""
    a, b = _pair(x, y, "spearman")
    return pearson(rankdata(a), rankdata(b))


def topk_accuracy(logits: torch.Tensor | np.ndarray, labels: torch.Tensor | np.ndarray, k: int = 1) -> float:
    """Fraction of rows whose label is among the ``k`` largest logits."""
    scores = torch.as_tensor(logits)
    target = torch.as_tensor(labels).long()
    if scores.ndim != 2 or target.shape != (scores.shape[0],):
        raise InputError(f"topk_accuracy: logits must be (N, classes) and labels (N,), got {tuple(scores.shape)} "
                         f"and {tuple(target.shape)}")
    if scores.shape[0] == 0:
        raise InputError("topk_accuracy: no samples")
    if not 1 <= k <= scores.shape[1]:
        raise InputError(f"topk_accuracy: k must be between 1 and {scores.shape[1]}, got {k}")
    top = scores.topk(k, dim=1).indices
    return float((top == target.unsqueeze(1)).any(dim=1).float().mean())


def binary_f1(pred: np.ndarray | torch.Tensor, labels: np.ndarray | torch.Tensor) -> float:
    """F1 score of the positive class (label 1); 0.0 when there are no true or predicted positives."""
    p = np.asarray(pred).astype(np.int64).ravel()
    y = np.asarray(labels).astype(np.int64).ravel()
    if p.shape != y.shape or p.size == 0:
        raise InputError(f"binary_f1: predictions ({p.size}) and labels ({y.size}) must be equal, non-empty")
    tp = int(((p == 1) & (y == 1)).sum())
    fp = int(((p == 1) & (y != 1)).sum())
    fn = int(((p != 1) & (y == 1)).sum())
    return 0.0 if tp == 0 else 2.0 * tp / (2.0 * tp + fp + fn)


def rowwise_cosine(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Cosine similarity of matching rows of two ``(N, D)`` tensors."""
    if a.shape != b.shape or a.ndim != 2:
        raise InputError(f"rowwise_cosine: inputs must be equal (N, D) tensors, got {tuple(a.shape)}, {tuple(b.shape)}")
    return torch.nn.functional.cosine_similarity(a.double(), b.double(), dim=1, eps=1e-12)


def mean_kl_from_logits(reference_logits: torch.Tensor, logits: torch.Tensor) -> float:
    """Mean over rows of KL(softmax(reference) || softmax(logits)) in nats; logits are ``(..., classes)``."""
    if reference_logits.shape != logits.shape:
        raise InputError(f"KL: logits shapes differ ({tuple(reference_logits.shape)} vs {tuple(logits.shape)})")
    ref = torch.log_softmax(reference_logits.double(), dim=-1)
    cur = torch.log_softmax(logits.double(), dim=-1)
    kl = (ref.exp() * (ref - cur)).sum(dim=-1)
    return float(kl.mean())


def agreement(a: torch.Tensor | np.ndarray, b: torch.Tensor | np.ndarray) -> float:
    """Fraction of equal entries of two equally shaped prediction arrays."""
    x = torch.as_tensor(a)
    y = torch.as_tensor(b)
    if x.shape != y.shape or x.numel() == 0:
        raise InputError(f"agreement: predictions must be equal, non-empty shapes, got {tuple(x.shape)}, "
                         f"{tuple(y.shape)}")
    return float((x == y).float().mean())
