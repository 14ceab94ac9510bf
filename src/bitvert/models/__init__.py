"""Model zoo: load real models by short name or path, with calibration data and pinned preprocessing.

>>> from bitvert.models import load_model
>>> lm = load_model("minilm-l6")          # doctest: +SKIP
>>> lm.family, lm.default_task           # doctest: +SKIP
('text-embedding', 'similarity-suite')
"""

from __future__ import annotations

from bitvert.models.cache import cache_dir
from bitvert.models.example import DEFAULT_SEQ_LEN_TOKENS, ExampleInput, example_input
from bitvert.models.preprocess import ImagePreprocessConfig, TextPreprocessConfig, preprocess_images
from bitvert.models.types import FAMILIES, Batch, Family, LoadedModel, output_tensor, run_module
from bitvert.models.zoo import (
    EMBEDDED_MODELS,
    GENERIC_SOURCES,
    ModelInfo,
    check_calibration_path,
    list_models,
    load_model,
    model_info,
)

__all__ = [
    "FAMILIES",
    "Batch",
    "DEFAULT_SEQ_LEN_TOKENS",
    "ExampleInput",
    "Family",
    "LoadedModel",
    "ModelInfo",
    "EMBEDDED_MODELS",
    "GENERIC_SOURCES",
    "ImagePreprocessConfig",
    "TextPreprocessConfig",
    "cache_dir",
    "check_calibration_path",
    "example_input",
    "list_models",
    "load_model",
    "model_info",
    "output_tensor",
    "preprocess_images",
    "run_module",
]
