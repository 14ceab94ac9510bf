"""evaluate() on generated data with hand-built models: golden metrics, loaders and every bad input."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from bitvert.errors import ConfigError, FormatError, InputError
from bitvert.evaluation import evaluate, list_tasks, task_info
from bitvert.evaluation.text import read_glue_tsv
from bitvert.models import ImagePreprocessConfig, LoadedModel


def _loaded(model: nn.Module, family: str, task: str, **extra) -> LoadedModel:
    return LoadedModel(model=model, name="test-model", family=family,  # type: ignore[arg-type]
                       calibration_batches=lambda n: iter(()), default_task=task, extra=extra)


# ----------------------------------------------------------------------------------------- image folders
class ColourNet(nn.Module):
    """Logits = mean of R, G, B plus three constant low scores: predicts the dominant colour."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        means = x.mean(dim=(2, 3))
        low = torch.tensor([-5.0, -6.0, -7.0]).expand(x.shape[0], 3)
        return torch.cat([means, low], dim=1)


def _write_folder(root, counts: dict[str, list[tuple[int, int, int]]]) -> None:
    from PIL import Image

    for cls, colours in counts.items():
        (root / cls).mkdir(parents=True)
        for i, colour in enumerate(colours):
            Image.fromarray(np.full((24, 32, 3), colour, dtype=np.uint8)).save(root / cls / f"{i}.png")


IMG_CFG = ImagePreprocessConfig(resize_px=16, crop_px=16, channels=3, mean=(0.0,), std=(1.0,))


def test_image_folder_golden(tmp_path) -> None:
    red, green, blue = (200, 0, 0), (0, 200, 0), (0, 0, 200)
    # class "a" = red, "b" = green, "c" = blue; one green image is filed under "a"
    _write_folder(tmp_path, {"a": [red, red, green], "b": [green, green], "c": [blue, blue, blue]})
    lm = _loaded(ColourNet(), "vision", "image-folder", preprocess=IMG_CFG)
    out = evaluate(lm, "image-folder", reference=ColourNet(), data_path=tmp_path)
    assert out["top1"] == pytest.approx(7 / 8)
    assert out["top5"] == 1.0  # the true class is always among 5 of the 6 logits
    assert out["top1_fp32"] == pytest.approx(7 / 8)
    assert out["top1_agreement"] == 1.0 and out["logit_kl"] == pytest.approx(0.0, abs=1e-12)
    assert out["n_images"] == 8
    # "task:PATH" syntax and a limit spread over classes
    out = evaluate(lm, f"image-folder:{tmp_path}", fidelity=False, limit=4)
    assert out["n_images"] == 4 and "top1_fp32" not in out


def test_image_folder_bad_layouts(tmp_path) -> None:
    lm = _loaded(ColourNet(), "vision", "image-folder", preprocess=IMG_CFG)
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="class sub-folders"):
        evaluate(lm, "image-folder", data_path=tmp_path / "empty", fidelity=False)
    (tmp_path / "noimg" / "cls").mkdir(parents=True)
    (tmp_path / "noimg" / "cls" / "readme.txt").write_text("x")
    with pytest.raises(InputError, match="no image files"):
        evaluate(lm, "image-folder", data_path=tmp_path / "noimg", fidelity=False)
    many = {f"c{i}": [(i, i, i)] for i in range(8)}  # 8 classes, the model has 6 outputs
    _write_folder(tmp_path / "many", many)
    with pytest.raises(InputError, match="6 outputs"):
        evaluate(lm, "image-folder", data_path=tmp_path / "many", fidelity=False)


# ------------------------------------------------------------------------------------------------ GLUE
class WordCountTokenizer:
    """input_ids[:, 0] = number of words of sentence 1 (+ sentence 2 when given)."""

    def __call__(self, first, second=None, **kwargs):
        counts = [len(s.split()) + (len(second[i].split()) if second is not None else 0) for i, s in enumerate(first)]
        ids = torch.tensor(counts, dtype=torch.long).unsqueeze(1)
        return {"input_ids": ids, "attention_mask": torch.ones_like(ids)}


class LengthClassifier(nn.Module):
    """Class 1 when the word count exceeds ``threshold``."""

    def __init__(self, threshold: float) -> None:
        super().__init__()
        self.threshold = threshold

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        x = input_ids[:, 0].float() - self.threshold
        return torch.stack([-x, x], dim=1)


def test_glue_sst2_golden(tmp_path) -> None:
    rows = [("a b", 0), ("a b c d e", 1), ("a b c d", 0), ("a", 1), ("a b c d e f", 1)]
    path = tmp_path / "dev.tsv"
    path.write_text("sentence\tlabel\n" + "".join(f"{s}\t{y}\n" for s, y in rows))
    lm = _loaded(LengthClassifier(3.5), "text-classifier", "glue", tokenizer=WordCountTokenizer())
    out = evaluate(lm, "glue", reference=LengthClassifier(4.5), data_path=tmp_path)  # folder -> dev.tsv
    # predictions (threshold 3.5): 0,1,1,0,1 -> correct 1,1,0,0,1 = 3/5 ; tp=2 fp=1 fn=1 -> F1 2/3
    assert out["accuracy"] == pytest.approx(3 / 5) and out["f1"] == pytest.approx(2 / 3)
    # reference (threshold 4.5): 0,1,0,0,1 -> 4/5 correct ; tp=2 fp=0 fn=1 -> F1 4/5
    assert out["accuracy_fp32"] == pytest.approx(4 / 5) and out["f1_fp32"] == pytest.approx(4 / 5)
    assert out["prediction_agreement"] == pytest.approx(4 / 5)
    assert out["logit_kl"] > 0 and out["n_examples"] == 5


def test_glue_mrpc_layout_pairs(tmp_path) -> None:
    path = tmp_path / "msr.tsv"
    path.write_text("Quality\t#1 ID\t#2 ID\t#1 String\t#2 String\n"
                    "1\t1\t2\tA quick \"quoted\" fox\tjumps high\n0\t3\t4\tno\tyes\n")
    data = read_glue_tsv(path)
    assert data.layout == "mrpc" and data.first[0] == 'A quick "quoted" fox' and data.second == ("jumps high", "yes")
    np.testing.assert_array_equal(data.labels, [1, 0])
    lm = _loaded(LengthClassifier(3.0), "text-classifier", "glue", tokenizer=WordCountTokenizer())
    out = evaluate(lm, "glue", data_path=path, fidelity=False)
    assert out["accuracy"] == 1.0 and out["f1"] == 1.0  # 6 words -> 1, 2 words -> 0


@pytest.mark.parametrize("content, match", [
    ("text\tscore\nhello\t1\n", "unknown GLUE header"),
    ("sentence\tlabel\n", "no data rows"),
    ("sentence\tlabel\nhello\n", "number of tab-separated fields"),
    ("sentence\tlabel\nhello\tpositive\n", "labels must be integers"),
])
def test_glue_bad_files(tmp_path, content: str, match: str) -> None:
    path = tmp_path / "bad.tsv"
    path.write_text(content)
    with pytest.raises(FormatError, match=match):
        read_glue_tsv(path)


def test_glue_label_out_of_range(tmp_path) -> None:
    path = tmp_path / "dev.tsv"
    path.write_text("sentence\tlabel\na b\t2\n")
    lm = _loaded(LengthClassifier(1.0), "text-classifier", "glue", tokenizer=WordCountTokenizer())
    with pytest.raises(InputError, match="2 outputs"):
        evaluate(lm, "glue", data_path=path, fidelity=False)


# ------------------------------------------------------------------------------------------ perplexity
class CharTokenizer:
    """Maps the letters a..d to ids 0..3 and drops everything else."""

    def __call__(self, text, return_tensors=None, add_special_tokens=False):
        ids = [ord(c) - ord("a") for c in text if c in "abcd"]
        return {"input_ids": torch.tensor([ids], dtype=torch.long)}


class ConstantLM(nn.Module):
    """Predicts the same next-token logits at every position."""

    def __init__(self, logits: list[float]) -> None:
        super().__init__()
        self.register_buffer("logits", torch.tensor(logits))

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return self.logits.expand(*input_ids.shape, -1)


def test_text_perplexity_golden(tmp_path) -> None:
    path = tmp_path / "wiki.txt"
    path.write_text("abcd" * 64 + "\n\nzzz")  # 256 tokens cycling through all 4 ids
    lm = _loaded(ConstantLM([0.0, 0.0, 0.0, 0.0]), "causal-lm", "text-perplexity", tokenizer=CharTokenizer(),
                 context_tokens=16)
    reference = ConstantLM([math.log(2.0), 0.0, 0.0, 0.0])  # p = (0.4, 0.2, 0.2, 0.2)
    out = evaluate(lm, "text-perplexity", reference=reference, data_path=path)
    assert out["perplexity"] == pytest.approx(4.0)  # uniform over 4 tokens
    # the pinned default scores 8 windows x 15 targets; in each window of "abcd..." the targets are b,c,d,a,...
    # -> a 3 times, b/c/d 4 times each
    n_a, n_other = 8 * 3, 8 * 12
    ref_nll = -(n_a * math.log(0.4) + n_other * math.log(0.2)) / (n_a + n_other)
    assert out["perplexity_fp32"] == pytest.approx(math.exp(ref_nll))
    assert out["perplexity_ratio"] == pytest.approx(4.0 / math.exp(ref_nll))
    entropy = -(0.4 * math.log(0.4) + 3 * 0.2 * math.log(0.2))
    assert out["token_kl"] == pytest.approx(math.log(4.0) - entropy)
    assert out["next_token_agreement"] == 1.0  # both argmax to id 0 (ties break to the first)
    assert out["n_tokens"] == 8 * 15
    assert evaluate(lm, "text-perplexity", data_path=path, limit=2, fidelity=False)["n_tokens"] == 2 * 15
    # a limit above the 16 windows the text holds uses all of them
    assert evaluate(lm, "text-perplexity", data_path=path, limit=100, fidelity=False)["n_tokens"] == 16 * 15


def test_text_perplexity_bad_files(tmp_path) -> None:
    lm = _loaded(ConstantLM([0.0] * 4), "causal-lm", "text-perplexity", tokenizer=CharTokenizer(), context_tokens=16)
    (tmp_path / "short.txt").write_text("abc")
    with pytest.raises(InputError, match="fewer than one window"):
        evaluate(lm, "text-perplexity", data_path=tmp_path / "short.txt", fidelity=False)
    (tmp_path / "latin.txt").write_bytes(b"caf\xe9 " * 40)
    with pytest.raises(FormatError, match="UTF-8"):
        evaluate(lm, "text-perplexity", data_path=tmp_path / "latin.txt", fidelity=False)
    (tmp_path / "empty.txt").write_text("  \n")
    with pytest.raises(InputError, match="empty"):
        evaluate(lm, "text-perplexity", data_path=tmp_path / "empty.txt", fidelity=False)


# ------------------------------------------------------------------------------------------ bad requests
def test_bad_evaluate_requests(tmp_path) -> None:
    lm = _loaded(ColourNet(), "vision", "image-folder", preprocess=IMG_CFG)
    with pytest.raises(InputError, match="LoadedModel"):
        evaluate(ColourNet(), "image-folder")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="unknown task"):
        evaluate(lm, "imagenet-top1")
    with pytest.raises(ConfigError, match="for causal-lm models"):
        evaluate(lm, "text-perplexity", data_path=tmp_path)
    with pytest.raises(ConfigError, match="needs data"):
        evaluate(lm, "image-folder")
    with pytest.raises(InputError, match="does not exist"):
        evaluate(lm, "image-folder", data_path=tmp_path / "missing")
    with pytest.raises(ConfigError, match="takes no data_path"):
        evaluate(lm, "mnist-top1", data_path=tmp_path)
    with pytest.raises(ConfigError, match="pass one"):
        evaluate(lm, f"image-folder:{tmp_path}", data_path=tmp_path)
    for bad in (0, -3, 2.5, True):
        with pytest.raises(InputError, match="limit"):
            evaluate(lm, "image-folder", data_path=tmp_path, limit=bad)  # type: ignore[arg-type]
    with pytest.raises(InputError, match="reference"):
        evaluate(lm, "image-folder", data_path=tmp_path, reference="fp32")  # type: ignore[arg-type]


def test_task_registry() -> None:
    names = [t.name for t in list_tasks()]
    assert {"similarity-suite", "mnist-top1", "fashion-mnist-probe", "news-perplexity", "image-folder", "glue",
            "text-perplexity"} <= set(names)
    assert task_info("glue").needs_data and not task_info("mnist-top1").needs_data
    with pytest.raises(ConfigError):
        task_info("nope")
