"""Loaders for models that are not embedded: transformers folders / hub ids, torchvision, timm, ONNX.

Name syntax accepted by :func:`bitvert.models.load_model`:

* a folder with a transformers ``config.json`` -> the Auto class its ``architectures`` names;
* ``hf:<org>/<name>`` -> a Hugging Face hub id (needs a reachable hub or a filled local cache);
* ``torchvision:<name>`` -> ``torchvision.models.get_model(name, weights="DEFAULT")``;
* ``timm:<name>`` -> ``timm.create_model(name, pretrained=True)``;
* a ``.onnx`` file -> converted to PyTorch with ``onnx2torch``.

Vision models need real calibration images: pass ``calibration_path`` (an ImageNet-style folder).
Text models calibrate on gensim's movie-review sentences.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from torch import nn

from bitvert.errors import ConfigError, FormatError, InputError
from bitvert.models import data as offline_data
from bitvert.models._deps import MODELS_EXTRA_HINT, quiet_transformers, require
from bitvert.models.embedded import SentenceEmbedder, _text_batches, token_windows
from bitvert.models.preprocess import IMAGENET_PREPROCESS, ImagePreprocessConfig, TextPreprocessConfig
from bitvert.models.types import Batch, Family, LoadedModel

logger = logging.getLogger(__name__)

__all__ = ["load_transformers", "load_torchvision", "load_timm", "load_onnx", "image_folder_files"]

_TRANSFORMERS_HINT = f"pip install 'transformers>=5,<6'  (or {MODELS_EXTRA_HINT})"
_IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".ppm", ".pgm", ".tif", ".tiff", ".webp"}


def image_folder_files(root: str | Path) -> tuple[list[Path], list[int], list[str]]:
    """List an ImageNet-style folder ``root/<class>/<image>``.

    Classes are the sub-folder names in sorted order (class index = position), as torchvision's
    ``ImageFolder`` does. Returns ``(files, labels, class_names)`` with files sorted within each class.
    """
    root = Path(root)
    if not root.is_dir():
        raise InputError(f"image folder {root} does not exist; pass a folder laid out as <root>/<class>/<image>")
    classes = sorted(p.name for p in root.iterdir() if p.is_dir())
    if not classes:
        raise InputError(f"image folder {root} has no class sub-folders; lay it out as <root>/<class>/<image>")
    files: list[Path] = []
    labels: list[int] = []
    for index, name in enumerate(classes):
        found = sorted(p for p in (root / name).iterdir() if p.is_file() and p.suffix.lower() in _IMAGE_SUFFIXES)
        files.extend(found)
        labels.extend([index] * len(found))
    if not files:
        raise InputError(f"image folder {root} holds no image files ({sorted(_IMAGE_SUFFIXES)})")
    return files, labels, classes


def _image_calibration(calibration_path: str | Path | None, preprocess: ImagePreprocessConfig, name: str):
    from bitvert.models.preprocess import load_image_files

    def calibration(n_samples: int) -> Iterator[Batch]:
        if calibration_path is None:
            raise ConfigError(f"model {name!r} is a vision model without embedded calibration data; pass "
                              "calibration_path=<ImageNet-style folder> to load_model (CLI: --calibration-data)")
        files, _, _ = image_folder_files(calibration_path)
        if n_samples < 1 or n_samples > len(files):
            raise InputError(f"n_samples={n_samples} must be between 1 and the {len(files)} images in "
                             f"{calibration_path}")
        # spread the picks over all classes deterministically
        step = len(files) / n_samples
        picked = [files[int(i * step)] for i in range(n_samples)]
        for start in range(0, n_samples, 32):
            yield load_image_files(picked[start:start + 32], preprocess)

    return calibration


def _text_calibration(tokenizer: Any, causal: bool):
    text_cfg = TextPreprocessConfig(max_length_tokens=128, batch_size=16)

    def calibration(n_samples: int) -> Iterator[Batch]:
        texts, _ = offline_data.movie_sentences()
        if causal:
            windows = token_windows(tokenizer, list(texts), 128)
            if n_samples < 1 or n_samples > len(windows):
                raise InputError(f"n_samples={n_samples} must be between 1 and {len(windows)}")
            for start in range(0, n_samples, 8):
                chunk = windows[start:min(n_samples, start + 8)]
                yield {"input_ids": chunk, "attention_mask": torch.ones_like(chunk)}
        else:
            yield from _text_batches(tokenizer, texts, n_samples, text_cfg)

    return calibration


def _instantiate(transformers: Any, source: str, local: bool, arch: str) -> tuple[nn.Module, Family, str]:
    """Pick the Auto class from the architecture name and load the weights."""
    kwargs = {"local_files_only": local, "dtype": torch.float32}
    try:
        if arch.endswith("ForCausalLM"):
            return transformers.AutoModelForCausalLM.from_pretrained(source, **kwargs), "causal-lm", "text-perplexity"
        if arch.endswith("ForSequenceClassification"):
            return (transformers.AutoModelForSequenceClassification.from_pretrained(source, **kwargs),
                    "text-classifier", "glue")
        if arch.endswith("ForImageClassification"):
            return (transformers.AutoModelForImageClassification.from_pretrained(source, **kwargs),
                    "vision", "image-folder")
        return (SentenceEmbedder(transformers.AutoModel.from_pretrained(source, **kwargs)), "text-embedding",
                "similarity-suite")
    except (OSError, ValueError, RuntimeError, SafetensorError) as exc:  # random bytes, truncated files
        raise FormatError(f"cannot load the weights of {source!r} ({exc}); check the folder holds a complete "
                          "model.safetensors or pytorch_model.bin") from exc


def load_transformers(source: str, *, local: bool, calibration_path: str | Path | None = None) -> LoadedModel:
    """Load a transformers model from a local folder (``local=True``) or a hub id.

    The Auto class follows ``config.architectures[0]``: ``*ForCausalLM`` -> causal-lm,
    ``*ForSequenceClassification`` -> text-classifier, ``*ForImageClassification`` -> vision, anything
    else -> :class:`AutoModel` wrapped in mean pooling as a text-embedding model.
    """
    transformers = require("transformers", _TRANSFORMERS_HINT, f"loading {source!r}")
    try:
        config = transformers.AutoConfig.from_pretrained(source, local_files_only=local)
    except (OSError, ValueError) as exc:
        where = "the folder" if local else "the Hugging Face hub (is it reachable? is the id right?)"
        raise InputError(f"cannot read a transformers config for {source!r} from {where}: {exc}. For offline use "
                         "download the model once and pass its folder") from exc
    arch = (getattr(config, "architectures", None) or [""])[0]
    family: Family
    with quiet_transformers(transformers):
        model, family, task = _instantiate(transformers, source, local, arch)
    model.eval()
    extra: dict[str, Any] = {"source": source, "architecture": arch, "description": f"transformers {arch or 'model'}"}
    if family == "vision":
        preprocess = IMAGENET_PREPROCESS
        extra["preprocess"] = preprocess
        extra["num_classes"] = int(getattr(config, "num_labels", 0) or 0)
        calibration = _image_calibration(calibration_path, preprocess, source)
    else:
        if calibration_path is not None:
            raise ConfigError(f"--calibration-data {str(calibration_path)!r} does not apply to {source!r}, a {family} "
                              "model that calibrates on its own text; drop --calibration-data")
        try:
            tokenizer = transformers.AutoTokenizer.from_pretrained(source, local_files_only=local)
        except (OSError, ValueError) as exc:
            raise FormatError(f"{source!r} has no usable tokenizer ({exc}); save the tokenizer next to the "
                              "model (tokenizer.save_pretrained(folder))") from exc
        if family == "causal-lm" and tokenizer.pad_token is None:
            tokenizer.pad_token = tokenizer.eos_token
        extra["tokenizer"] = tokenizer
        extra["text"] = TextPreprocessConfig(max_length_tokens=min(512, int(getattr(tokenizer, "model_max_length",
                                                                                      512) or 512)))
        if family == "causal-lm":
            extra["context_tokens"] = min(512, int(getattr(config, "max_position_embeddings", 512) or 512))
        if family == "text-classifier":
            extra["num_classes"] = int(config.num_labels)
        calibration = _text_calibration(tokenizer, causal=family == "causal-lm")
    return LoadedModel(model=model, name=source, family=family, calibration_batches=calibration,
                       default_task=task, extra=extra)


def load_torchvision(name: str, calibration_path: str | Path | None = None) -> LoadedModel:
    """Load ``torchvision.models.get_model(name, weights="DEFAULT")`` (weights must be in torch's cache offline)."""
    tv = require("torchvision", "pip install torchvision (the release built for your torch version)",
                 f"loading torchvision:{name}")
    try:
        model: nn.Module = tv.models.get_model(name, weights="DEFAULT")
    except ValueError as exc:
        raise InputError(f"torchvision has no model {name!r}; see torchvision.models.list_models()") from exc
    model.eval()
    preprocess = IMAGENET_PREPROCESS
    return LoadedModel(model=model, name=f"torchvision:{name}", family="vision",
                       calibration_batches=_image_calibration(calibration_path, preprocess, name),
                       default_task="image-folder",
                       extra={"preprocess": preprocess, "num_classes": 1000, "source": "torchvision",
                              "description": f"torchvision {name}"})


def load_timm(name: str, calibration_path: str | Path | None = None) -> LoadedModel:
    """Load ``timm.create_model(name, pretrained=True)`` with the preprocessing its pretrained config pins."""
    timm = require("timm", "pip install timm", f"loading timm:{name}")
    try:
        model: nn.Module = timm.create_model(name, pretrained=True)
    except RuntimeError as exc:
        raise InputError(f"timm cannot create {name!r} ({exc}); see timm.list_models(pretrained=True)") from exc
    model.eval()
    cfg = timm.data.resolve_data_config({}, model=model)
    size = int(cfg["input_size"][-1])
    crop_pct = float(cfg.get("crop_pct", 0.875))
    interpolation = cfg.get("interpolation", "bilinear")
    preprocess = ImagePreprocessConfig(resize_px=int(size / crop_pct), crop_px=size,
                                       interpolation=interpolation if interpolation in ("bilinear", "bicubic",
                                                                                        "nearest") else "bilinear",
                                       mean=tuple(cfg["mean"]), std=tuple(cfg["std"]))
    return LoadedModel(model=model, name=f"timm:{name}", family="vision",
                       calibration_batches=_image_calibration(calibration_path, preprocess, name),
                       default_task="image-folder",
                       extra={"preprocess": preprocess, "num_classes": int(getattr(model, "num_classes", 0)),
                              "source": "timm", "description": f"timm {name}"})


def load_onnx(path: Path, calibration_path: str | Path | None = None) -> LoadedModel:
    """Convert an ONNX image classifier to PyTorch with ``onnx2torch`` (ImageNet preprocessing assumed)."""
    onnx = require("onnx", "pip install onnx onnx2torch", f"loading {path}")
    onnx2torch = require("onnx2torch", "pip install onnx2torch", f"loading {path}")
    try:
        proto = onnx.load(str(path))
        model: nn.Module = onnx2torch.convert(proto)
    except Exception as exc:  # onnx raises many unrelated types on bad files
        raise FormatError(f"cannot convert ONNX file {path} to PyTorch ({exc})") from exc
    model.eval()
    preprocess = IMAGENET_PREPROCESS
    return LoadedModel(model=model, name=str(path), family="vision",
                       calibration_batches=_image_calibration(calibration_path, preprocess, str(path)),
                       default_task="image-folder",
                       extra={"preprocess": preprocess, "source": str(path), "description": "ONNX model"})


def is_transformers_folder(path: Path) -> bool:
    """Whether ``path`` is a folder holding a transformers ``config.json`` with a ``model_type``."""
    cfg = path / "config.json"
    if not cfg.is_file():
        return False
    try:
        return "model_type" in json.loads(cfg.read_text())
    except (OSError, ValueError):
        return False
