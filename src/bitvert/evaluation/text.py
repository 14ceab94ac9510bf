"""Text tasks: GLUE-style sentence classification from local files, causal-LM perplexity.

* ``glue``: a GLUE ``.tsv`` file (or a folder holding ``dev.tsv``) in the MRPC layout
  (``Quality  #1 ID  #2 ID  #1 String  #2 String``), the SST-2 layout (``sentence  label``) or a
  generic pair layout (``sentence1  sentence2  label``). Inputs are truncated to 128 tokens; metrics are
  accuracy and, for two classes, F1 of class 1 (MRPC's official pair).
* ``news-perplexity``: gensim's Lee background corpus (300 news articles) joined with blank lines,
  cut into non-overlapping windows of the model's context (256 tokens for SmolLM2), first 8 windows.
* ``text-perplexity``: the same on any UTF-8 text file.

Perplexity is ``exp(mean next-token negative log-likelihood)`` over every predicted token of every
window (the first token of each window has no context and is not scored). Fidelity against FP32: the
perplexity ratio, the mean per-token KL(FP32 || model) and next-token top-1 agreement.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field
from torch import nn

from bitvert.errors import FormatError, InputError
from bitvert.evaluation._common import check_limit, progress_iter, require_extra, with_fp32
from bitvert.evaluation.metrics import agreement, binary_f1, mean_kl_from_logits
from bitvert.models import data as offline_data
from bitvert.models.embedded import token_windows
from bitvert.models.types import LoadedModel, run_module

__all__ = ["GlueConfig", "PerplexityConfig", "GLUE", "PERPLEXITY", "GlueData", "read_glue_tsv", "glue",
           "perplexity_on_windows", "news_perplexity", "text_perplexity"]


class GlueConfig(BaseModel):
    """Pinned GLUE preprocessing."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    max_length_tokens: int = Field(default=128, ge=8)
    batch_size: int = Field(default=32, ge=1)


class PerplexityConfig(BaseModel):
    """Pinned perplexity set-up: windows of ``context_tokens`` (model default when ``None``), ``max_windows``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    context_tokens: int | None = Field(default=None, ge=8)
    max_windows: int = Field(default=8, ge=1)
    batch_windows: int = Field(default=2, ge=1)


GLUE = GlueConfig()
PERPLEXITY = PerplexityConfig()


@dataclass(frozen=True)
class GlueData:
    """Sentences (one or two per example) and integer labels read from a GLUE file."""

    first: tuple[str, ...]
    second: tuple[str, ...] | None
    labels: np.ndarray
    layout: str


def read_glue_tsv(path: str | Path) -> GlueData:
    """Read a GLUE MRPC / SST-2 / sentence-pair ``.tsv`` (tab-separated, header line, no quoting)."""
    path = Path(path)
    if path.is_dir():
        path = path / "dev.tsv"
    if not path.is_file():
        raise InputError(f"GLUE file {path} does not exist; pass a .tsv file or a folder with dev.tsv")
    lines = [ln for ln in path.read_text(encoding="utf-8-sig").splitlines() if ln.strip()]
    if len(lines) < 2:
        raise FormatError(f"{path} has no data rows after the header")
    header = [h.strip().lower() for h in lines[0].split("\t")]
    rows = [ln.split("\t") for ln in lines[1:]]
    if header[:1] == ["quality"] and "#1 string" in header and "#2 string" in header:
        layout, cols = "mrpc", (header.index("#1 string"), header.index("#2 string"), 0)
    elif "sentence1" in header and "sentence2" in header and "label" in header:
        layout, cols = "pair", (header.index("sentence1"), header.index("sentence2"), header.index("label"))
    elif "sentence" in header and "label" in header:
        layout, cols = "sst2", (header.index("sentence"), -1, header.index("label"))
    else:
        raise FormatError(f"{path}: unknown GLUE header {lines[0]!r}; expected MRPC (Quality, #1 ID, #2 ID, #1 String, "
                          "#2 String), SST-2 (sentence, label) or sentence1/sentence2/label columns")
    width = len(header)
    bad = [i + 2 for i, r in enumerate(rows) if len(r) != width]
    if bad:
        raise FormatError(f"{path}: line {bad[0]} has a different number of tab-separated fields than the header "
                          f"({width})")
    try:
        labels = np.array([int(r[cols[2]]) for r in rows], dtype=np.int64)
    except ValueError as exc:
        raise FormatError(f"{path}: labels must be integers ({exc})") from exc
    first = tuple(r[cols[0]] for r in rows)
    second = tuple(r[cols[1]] for r in rows) if cols[1] >= 0 else None
    return GlueData(first, second, labels, layout)


def _glue_logits(model: LoadedModel, module: nn.Module, data: GlueData, n: int) -> torch.Tensor:
    tokenizer = require_extra(model, "tokenizer", "glue")
    parts = []
    starts = range(0, n, GLUE.batch_size)
    for start in progress_iter(starts, total=len(starts)):
        stop = min(n, start + GLUE.batch_size)
        args = [list(data.first[start:stop])]
        if data.second is not None:
            args.append(list(data.second[start:stop]))
        enc = tokenizer(*args, padding=True, truncation=True, max_length=GLUE.max_length_tokens,
                        return_tensors="pt")  # type: ignore[operator]
        batch = {k: v for k, v in enc.items() if k in ("input_ids", "attention_mask", "token_type_ids")}
        parts.append(run_module(module, batch).float())
    return torch.cat(parts)


def glue(model: LoadedModel, reference: nn.Module | None, limit: int | None, data_path: Path) -> dict[str, float]:
    """Accuracy (and F1 for two classes) of a sequence classifier on a GLUE ``.tsv`` file."""
    data = read_glue_tsv(data_path)
    n = check_limit(limit, len(data.labels), "examples")
    labels = torch.from_numpy(data.labels[:n])
    logits = _glue_logits(model, model.model, data, n)
    if int(labels.max()) >= logits.shape[1] or int(labels.min()) < 0:
        raise InputError(f"labels in {data_path} range over {int(labels.min())}..{int(labels.max())} but the model "
                         f"has {logits.shape[1]} outputs")

    def scores(lg: torch.Tensor) -> dict[str, float]:
        pred = lg.argmax(1)
        res = {"accuracy": float((pred == labels).float().mean())}
        if lg.shape[1] == 2:
            res["f1"] = binary_f1(pred.numpy(), labels.numpy())
        return res

    out = scores(logits)
    if reference is None:
        return {**out, "n_examples": float(n)}
    ref_logits = _glue_logits(model, reference, data, n)
    return {**with_fp32(out, scores(ref_logits)), "prediction_agreement": agreement(logits.argmax(1),
                                                                                     ref_logits.argmax(1)),
            "logit_kl": mean_kl_from_logits(ref_logits, logits), "n_examples": float(n)}


def perplexity_on_windows(model: LoadedModel, reference: nn.Module | None, windows: torch.Tensor
                          ) -> dict[str, float]:
    """Perplexity of ``model`` on token ``windows`` ``(n, L)`` plus fidelity against ``reference``."""
    if windows.ndim != 2 or windows.shape[1] < 2:
        raise InputError(f"windows must be (n, L) with L >= 2, got {tuple(windows.shape)}")
    nll_sum = 0.0
    ref_nll_sum = 0.0
    kl_sum = 0.0
    agree_sum = 0.0
    count = 0
    starts = range(0, windows.shape[0], PERPLEXITY.batch_windows)
    for start in progress_iter(starts, total=len(starts)):
        ids = windows[start:start + PERPLEXITY.batch_windows]
        batch = {"input_ids": ids, "attention_mask": torch.ones_like(ids)}
        targets = ids[:, 1:].reshape(-1)
        out = run_module(model.model, batch)
        logits = out[:, :-1].reshape(-1, out.shape[-1]).float()
        nll_sum += float(torch.nn.functional.cross_entropy(logits, targets, reduction="sum"))
        count += targets.numel()
        if reference is not None:
            ref = run_module(reference, batch)[:, :-1].reshape(logits.shape).float()
            ref_nll_sum += float(torch.nn.functional.cross_entropy(ref, targets, reduction="sum"))
            kl_sum += mean_kl_from_logits(ref, logits) * targets.numel()
            agree_sum += agreement(logits.argmax(1), ref.argmax(1)) * targets.numel()
    ppl = float(np.exp(nll_sum / count))
    out = {"perplexity": ppl}
    if reference is None:
        return {**out, "n_tokens": float(count)}
    ref_ppl = float(np.exp(ref_nll_sum / count))
    return {**with_fp32(out, {"perplexity": ref_ppl}), "perplexity_ratio": ppl / ref_ppl,
            "token_kl": kl_sum / count, "next_token_agreement": agree_sum / count, "n_tokens": float(count)}


def _windows_from_texts(model: LoadedModel, texts: list[str], limit: int | None) -> torch.Tensor:
    tokenizer = require_extra(model, "tokenizer", "perplexity")
    context = PERPLEXITY.context_tokens or int(model.extra.get("context_tokens", 512))
    max_windows = PERPLEXITY.max_windows if limit is None else check_limit(limit, 1 << 30, "windows")
    return token_windows(tokenizer, texts, context, max_windows)


def news_perplexity(model: LoadedModel, reference: nn.Module | None, limit: int | None) -> dict[str, float]:
    """Perplexity on gensim's Lee background news corpus (``limit`` = number of windows, default 8)."""
    return perplexity_on_windows(model, reference,
                                 _windows_from_texts(model, list(offline_data.lee_background_corpus()), limit))


def text_perplexity(model: LoadedModel, reference: nn.Module | None, limit: int | None, data_path: Path
                    ) -> dict[str, float]:
    """Perplexity on a UTF-8 text file (WikiText-style; blank-line separated paragraphs are kept)."""
    path = Path(data_path)
    if not path.is_file():
        raise InputError(f"text file {path} does not exist; pass a UTF-8 text file")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise FormatError(f"{path} is not UTF-8 text ({exc})") from exc
    if not text.strip():
        raise InputError(f"text file {path} is empty")
    return perplexity_on_windows(model, reference, _windows_from_texts(model, [text], limit))
