"""Accuracy and fidelity evaluation of (pruned) real models on real data with pinned preprocessing.

>>> from bitvert.models import load_model
>>> from bitvert.evaluation import evaluate
>>> lm = load_model("mnist-cnn")                      # doctest: +SKIP
>>> evaluate(lm, "mnist-top1", reference=fp32_copy)   # doctest: +SKIP
{'top1': 0.99, 'top1_fp32': 0.99, 'top1_agreement': 1.0, 'logit_kl': 0.0, 'n_images': 4000.0}
"""

from __future__ import annotations

from bitvert.evaluation.metrics import (
    agreement,
    binary_f1,
    mean_kl_from_logits,
    pearson,
    rankdata,
    rowwise_cosine,
    spearman,
    topk_accuracy,
)
from bitvert.evaluation._common import LimitUse, batch_progress, limit_unused, limit_uses
from bitvert.evaluation.tasks import TASKS, TaskInfo, evaluate, list_tasks, resolve_task, task_info

__all__ = [
    "LimitUse",
    "TASKS",
    "batch_progress",
    "limit_unused",
    "limit_uses",
    "TaskInfo",
    "evaluate",
    "list_tasks",
    "resolve_task",
    "task_info",
    "agreement",
    "binary_f1",
    "mean_kl_from_logits",
    "pearson",
    "rankdata",
    "rowwise_cosine",
    "spearman",
    "topk_accuracy",
]
