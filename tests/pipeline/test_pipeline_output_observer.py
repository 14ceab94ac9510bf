"""The ``output`` activation observer's fast scoring (:class:`bitvert.pipeline.quantize._OutputScorer`): the same
errors, hence the same chosen ranges, as full forward passes of the model with one layer's input quantized."""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import pytest
import torch
from torch import nn

from bitvert.pipeline.quantize import (
    ActivationQuantizer,
    ActivationRange,
    QuantConfig,
    _OutputScorer,
    _trimmed_batches,
    call_model,
    model_output,
    output_padding_mask,
    padding_mask,
    select_layers,
)

transformers = pytest.importorskip("transformers")

CFG = QuantConfig(act_observer="output", act_bits=4)  # 4-bit inputs: the mse range clips, the candidates differ


def _quantizer(model: nn.Module, observer: str = "output") -> ActivationQuantizer:
    return ActivationQuantizer(select_layers(model, CFG.model_copy(update={"act_observer": observer}),
                                             first_layer="prune", last_layer="prune"))


def _candidates(model: nn.Module, batches: list[Any], names: list[str] | None = None
                ) -> dict[str, list[ActivationRange]]:
    """The ``minmax`` and ``mse`` ranges of the layers ``names`` (all layers: ``None``)."""
    out: dict[str, list[ActivationRange]] = {}
    for observer in ("minmax", "mse"):
        aq = _quantizer(model, observer)
        for name, r in aq.calibrate(model, batches).items():
            if names is None or name in names:
                out.setdefault(name, []).append(r)
        aq.remove()
    return out


def _full_errors(model: nn.Module, batches: list[Any], cands: dict[str, list[ActivationRange]]
                 ) -> dict[str, list[float]]:
    """The definition: whole-model passes with only one layer's input quantized, padded outputs left out."""
    aq = ActivationQuantizer([l for l in select_layers(model, CFG) if l.name in cands])
    out: dict[str, list[float]] = {name: [0.0] * len(rs) for name, rs in cands.items()}
    with torch.no_grad():
        for batch in batches:
            aq.enable(False)
            ref = model_output(call_model(model, batch))
            mask = output_padding_mask(ref, padding_mask(batch))
            for name, rs in cands.items():
                for i, r in enumerate(rs):
                    aq.load_ranges({name: r})
                    f = model_output(call_model(model, batch))
                    d = (f - ref) if mask is None else (f[mask] - ref[mask])
                    out[name][i] += float((d.double() ** 2).sum())
    aq.remove()
    return out


def _scored(model: nn.Module, batches: list[Any], cands: dict[str, list[ActivationRange]]
            ) -> tuple[_OutputScorer, dict[str, list[float]]]:
    aq = _quantizer(model)
    aq.enable(False)
    with torch.no_grad():
        scorer = _OutputScorer(model, batches, aq.layers)
        errors = {}
        for name, rs in cands.items():
            errors[name] = []
            for r in rs:
                aq.load_ranges({name: r})
                errors[name].append(scorer.error(name))
    aq.remove()
    return scorer, errors


def _bert() -> nn.Module:
    from bitvert.models.embedded import SentenceEmbedder

    torch.manual_seed(0)
    cfg = transformers.BertConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64,
                                  vocab_size=60, max_position_embeddings=64)
    return SentenceEmbedder(transformers.BertModel(cfg)).eval()


def _text_batches(lengths: list[list[int]], vocab: int = 60, seed: int = 1) -> list[dict[str, torch.Tensor]]:
    """Right-padded batches (pad id 0, which embeds like any token) with the given sample lengths."""
    gen = torch.Generator().manual_seed(seed)
    out = []
    for lens in lengths:
        width = max(lens)
        ids = torch.zeros(len(lens), width, dtype=torch.long)
        mask = torch.zeros(len(lens), width, dtype=torch.long)
        for i, n in enumerate(lens):
            ids[i, :n], mask[i, :n] = torch.randint(1, vocab, (n,), generator=gen), 1
        out.append({"input_ids": ids, "attention_mask": mask})
    return out


def _llama() -> nn.Module:
    torch.manual_seed(0)
    cfg = transformers.LlamaConfig(hidden_size=32, intermediate_size=48, num_hidden_layers=2, num_attention_heads=4,
                                   num_key_value_heads=2, vocab_size=80, max_position_embeddings=64)
    return transformers.LlamaForCausalLM(cfg).eval()


def test_llm_blocks_are_replayed_and_errors_equal_full_passes_bit_for_bit() -> None:
    model = _llama()
    gen = torch.Generator().manual_seed(2)
    batches = [{"input_ids": (ids := torch.randint(0, 80, (2, 12), generator=gen)),
                "attention_mask": torch.ones_like(ids)} for _ in range(2)]
    cands = _candidates(model, batches, ["model.layers.0.self_attn.k_proj", "model.layers.1.self_attn.v_proj",
                                         "model.layers.1.mlp.down_proj", "lm_head"])
    scorer, errors = _scored(model, batches, cands)
    n = len(model.model.layers)
    assert len(scorer.blocks) == n
    assert scorer.start["model.layers.1.mlp.down_proj"] == 1 and scorer.start["model.layers.0.self_attn.k_proj"] == 0
    assert scorer.start["lm_head"] == n  # after the stack: every block replayed, the final norm and head run
    assert errors == _full_errors(model, batches, cands)
    assert all("forward" not in b.__dict__ for b in model.model.layers)  # the blocks compute again


def test_bert_with_padding_chooses_the_ranges_of_full_passes() -> None:
    model = _bert()
    batches = _text_batches([[12, 3, 7, 9, 5, 11, 2, 8, 10, 4], [6, 6, 2, 9]])
    names = ["encoder.encoder.layer.0.attention.self.key", "encoder.encoder.layer.1.attention.self.value",
             "encoder.encoder.layer.1.output.dense", "encoder.pooler.dense"]
    cands = _candidates(model, batches, names)
    assert all(rs[0] != rs[1] for rs in cands.values())
    scorer, errors = _scored(model, batches, cands)
    assert len(scorer.batches) == 3  # the first batch re-cut into 8 + 2 samples
    assert scorer.start["encoder.encoder.layer.1.output.dense"] == 1 and scorer.start["encoder.pooler.dense"] == 2
    full = _full_errors(model, batches, cands)
    for name in cands:
        np.testing.assert_allclose(errors[name], full[name], rtol=1e-4, atol=1e-12, err_msg=name)
    assert errors["encoder.pooler.dense"] == [0.0, 0.0]  # the pooler does not reach the mean-pooled output
    aq = ActivationQuantizer([l for l in select_layers(model, CFG, first_layer="prune", last_layer="prune")
                              if l.name in names])
    chosen = aq.calibrate(model, batches)
    aq.remove()
    for name, rs in cands.items():
        assert chosen[name] == rs[int(np.argmin(full[name]))], (name, full[name])


def test_plain_sequential_runs_the_whole_model_and_chooses_like_full_passes() -> None:
    torch.manual_seed(3)
    model = nn.Sequential(nn.Linear(6, 6), nn.ReLU(), nn.Linear(6, 6), nn.Linear(6, 3)).eval()
    with torch.no_grad():
        model[2].weight[:, 0] *= 20.0
    gen = torch.Generator().manual_seed(4)
    batches = [torch.randn(64, 6, generator=gen) ** 3 for _ in range(2)]
    cands = _candidates(model, batches)
    scorer, errors = _scored(model, batches, cands)
    assert scorer.blocks == [] and not any(scorer.start.values())
    assert errors == _full_errors(model, batches, cands)


def test_a_later_candidate_stops_once_it_cannot_win() -> None:
    model = _llama()
    batches = [{"input_ids": torch.randint(0, 80, (2, 8), generator=torch.Generator().manual_seed(i))}
               for i in range(3)]
    name = "model.layers.1.mlp.up_proj"
    cands = _candidates(model, batches, [name])
    aq = _quantizer(model)
    aq.enable(False)
    with torch.no_grad():
        scorer = _OutputScorer(model, batches, aq.layers)
        aq.load_ranges({name: cands[name][0]})
        full = scorer.error(name)
        first = scorer.error(name, stop_at=1e-30)  # reached after the first batch
    aq.remove()
    assert 1e-30 <= first < full
    assert first == _full_errors(model, batches[:1], {name: cands[name][:1]})[name][0]


class _InPlaceBlock(nn.Module):
    def __init__(self, d: int) -> None:
        super().__init__()
        self.fc = nn.Linear(d, d)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x += 0.0  # changes its input (the previous block's recorded output) in place
        return torch.tanh(self.fc(x)) + x


class _InPlaceStack(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(_InPlaceBlock(5) for _ in range(3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for b in self.blocks:
            x = b(x)
        return x


def test_outputs_changed_in_place_are_not_replayed(caplog: pytest.LogCaptureFixture) -> None:
    torch.manual_seed(6)
    model = _InPlaceStack().eval()
    batches = [torch.randn(16, 5, generator=torch.Generator().manual_seed(7)) * 3]
    cands = _candidates(model, batches)
    with caplog.at_level(logging.WARNING, logger="bitvert.pipeline.quantize"):
        scorer, errors = _scored(model, batches, cands)
    assert "whole model" in caplog.text and scorer.blocks == []
    assert errors == _full_errors(model, batches, cands)


def test_trimmed_batches_recut_only_right_padded_text_batches() -> None:
    right = _text_batches([[3, 5, 1, 5, 2, 4, 4, 2, 3]])[0]
    left = {k: v.flip(1) for k, v in right.items()}
    full = {"input_ids": torch.ones(2, 4, dtype=torch.long), "attention_mask": torch.ones(2, 4, dtype=torch.long)}
    other = dict(right, pixel_values=torch.zeros(9, 3))
    plain = torch.zeros(4, 3)
    got = _trimmed_batches([right, left, full, other, plain])
    assert got[2:] == [left, full, other, plain] and all(a is b for a, b in zip(got[2:], [left, full, other, plain]))
    first, second = got[0], got[1]
    assert first["attention_mask"].sum(1).tolist() == [5, 5, 4, 4, 3, 3, 2, 2] and first["input_ids"].shape == (8, 5)
    assert second["attention_mask"].tolist() == [[1]] and second["input_ids"][0, 0] == right["input_ids"][2, 0]
    assert torch.equal(first["input_ids"][0], right["input_ids"][1])  # stable: the first of the longest first
