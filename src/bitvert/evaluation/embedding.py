"""Sentence-embedding tasks on gensim's real data: Lee document similarity, SimLex-999, WordSim-353.

* ``lee-similarity``: the 50 Lee news documents are embedded (truncated to the model's pinned token
  limit); the cosine similarity of each of the 1,225 document pairs is correlated (Pearson) with the
  mean human rating.
* ``simlex999`` / ``wordsim353``: every word is embedded alone; the cosine of each pair is correlated
  (Spearman) with the human score.
* ``similarity-suite``: all three, plus embedding cosine against FP32 over every embedded text.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

from bitvert.errors import InputError
from bitvert.evaluation._common import check_limit, require_extra, run_batches, with_fp32
from bitvert.evaluation.metrics import pearson, rowwise_cosine, spearman
from bitvert.models import data as offline_data
from bitvert.models.embedded import tokenize
from bitvert.models.preprocess import TextPreprocessConfig
from bitvert.models.types import LoadedModel

__all__ = ["embed_texts", "lee_similarity", "word_similarity", "similarity_suite"]


def embed_texts(model: LoadedModel, module: nn.Module, texts: Sequence[str],
                max_batch_tokens: int = 8192) -> torch.Tensor:
    """Embed ``texts`` with ``module`` using ``model``'s tokenizer and pinned text config; ``(N, D)`` float32.

    Texts are grouped by token length (at most ``max_batch_tokens`` padded tokens per batch) so short
    texts such as single words are not padded to the longest document; rows come back in input order.
    """
    tokenizer = require_extra(model, "tokenizer", "embedding")
    cfg = model.extra.get("text", TextPreprocessConfig())
    assert isinstance(cfg, TextPreprocessConfig)
    if not texts:
        raise InputError("no texts to embed")
    ids = tokenizer(list(texts), truncation=True, max_length=cfg.max_length_tokens)["input_ids"]  # type: ignore
    lengths = np.array([len(x) for x in ids], dtype=np.int64)
    order = np.argsort(lengths, kind="stable")
    # cut the length-sorted list where the padded size (count x longest) would exceed the budget
    groups: list[np.ndarray] = []
    start = 0
    while start < len(order):
        longest = lengths[order[start:]]
        fits = np.flatnonzero((np.arange(1, len(longest) + 1) * longest) <= max_batch_tokens)
        stop = start + max(1, int(fits[-1]) + 1 if fits.size else 1)
        groups.append(order[start:stop])
        start = stop
    batches = (tokenize(tokenizer, [texts[i] for i in g], cfg.max_length_tokens) for g in groups)
    emb = run_batches(module, batches)
    out = torch.empty_like(emb)
    out[torch.from_numpy(order)] = emb
    return out


def _pair_cosines(emb: torch.Tensor, left: np.ndarray, right: np.ndarray) -> np.ndarray:
    return rowwise_cosine(emb[torch.from_numpy(left)], emb[torch.from_numpy(right)]).numpy()


def _lee_score(emb: torch.Tensor, human: np.ndarray) -> float:
    n = emb.shape[0]
    unit = torch.nn.functional.normalize(emb.double(), dim=1)
    sims = (unit @ unit.T).numpy()
    iu = np.triu_indices(n, k=1)
    return pearson(sims[iu], human[:n, :n][iu])


def _lee_inputs(limit: int | None) -> tuple[list[str], np.ndarray]:
    docs = offline_data.lee_corpus()
    n = check_limit(limit, len(docs), "documents")
    if n < 3:
        n = 3  # fewer than 3 documents give at most one pair: no correlation
    return list(docs[:n]), offline_data.lee_similarities()


def _word_inputs(name: str, limit: int | None) -> tuple[list[str], np.ndarray, np.ndarray, np.ndarray]:
    first, second, scores = offline_data.word_pairs(name)  # type: ignore[arg-type]
    n = max(3, check_limit(limit, len(scores), "pairs"))
    vocab = sorted(set(first[:n]) | set(second[:n]))
    index = {w: i for i, w in enumerate(vocab)}
    left = np.array([index[w] for w in first[:n]], dtype=np.int64)
    right = np.array([index[w] for w in second[:n]], dtype=np.int64)
    return vocab, left, right, scores[:n]


def _fidelity(emb: torch.Tensor, ref: torch.Tensor) -> dict[str, float]:
    cos = rowwise_cosine(emb, ref)
    return {"embedding_cosine": float(cos.mean()), "embedding_cosine_min": float(cos.min())}


def lee_similarity(model: LoadedModel, reference: nn.Module | None, limit: int | None) -> dict[str, float]:
    """Pearson correlation of document-embedding cosine with human Lee ratings (+ FP32 fidelity)."""
    docs, human = _lee_inputs(limit)
    emb = embed_texts(model, model.model, docs)
    out = {"lee_pearson": _lee_score(emb, human)}
    ref_metrics = None
    fid: dict[str, float] = {}
    if reference is not None:
        ref = embed_texts(model, reference, docs)
        ref_metrics = {"lee_pearson": _lee_score(ref, human)}
        fid = _fidelity(emb, ref)
    return {**with_fp32(out, ref_metrics), **fid, "n_documents": float(len(docs))}


def word_similarity(name: str, model: LoadedModel, reference: nn.Module | None, limit: int | None
                    ) -> dict[str, float]:
    """Spearman correlation of word-embedding cosine with human scores of ``name`` (simlex999/wordsim353)."""
    vocab, left, right, scores = _word_inputs(name, limit)
    emb = embed_texts(model, model.model, vocab)
    key = f"{name}_spearman"
    out = {key: spearman(_pair_cosines(emb, left, right), scores)}
    ref_metrics = None
    fid: dict[str, float] = {}
    if reference is not None:
        ref = embed_texts(model, reference, vocab)
        ref_metrics = {key: spearman(_pair_cosines(ref, left, right), scores)}
        fid = _fidelity(emb, ref)
    return {**with_fp32(out, ref_metrics), **fid, "n_pairs": float(len(scores))}


def similarity_suite(model: LoadedModel, reference: nn.Module | None, limit: int | None) -> dict[str, float]:
    """Lee (Pearson), SimLex-999 and WordSim-353 (Spearman), and embedding cosine against FP32 over all texts."""
    docs, human = _lee_inputs(limit)
    words = {name: _word_inputs(name, limit) for name in ("simlex999", "wordsim353")}
    texts = docs + sorted(set(words["simlex999"][0]) | set(words["wordsim353"][0]))
    position = {t: i for i, t in enumerate(texts)}  # documents never equal a single word

    def scores(emb: torch.Tensor) -> dict[str, float]:
        result = {"lee_pearson": _lee_score(emb[: len(docs)], human)}
        for name, (vocab, left, right, target) in words.items():
            remap = np.array([position[w] for w in vocab], dtype=np.int64)
            result[f"{name}_spearman"] = spearman(_pair_cosines(emb, remap[left], remap[right]), target)
        return result

    emb = embed_texts(model, model.model, texts)
    out = scores(emb)
    ref_metrics = None
    fid: dict[str, float] = {}
    if reference is not None:
        ref = embed_texts(model, reference, texts)
        ref_metrics = scores(ref)
        fid = _fidelity(emb, ref)
    return {**with_fp32(out, ref_metrics), **fid, "n_texts": float(len(texts))}
