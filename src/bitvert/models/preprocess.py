"""Pinned input preprocessing (validated configs) and its vectorized implementation.

Accuracy figures depend on details such as ``Resize(256)`` versus ``Resize((256, 256))``, so every
model carries its preprocessing as a config rather than as code in a script.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict, Field, model_validator

from bitvert.errors import FormatError, InputError

__all__ = [
    "ImagePreprocessConfig",
    "TextPreprocessConfig",
    "IMAGENET_PREPROCESS",
    "preprocess_images",
    "load_image_files",
]


class ImagePreprocessConfig(BaseModel):
    """How raw ``uint8`` images become a model input tensor.

    Steps, in order: resize so the *shorter* side is ``resize_px`` (aspect ratio kept; ``None`` skips),
    centre crop to ``crop_px`` x ``crop_px`` (``None`` skips), scale to [0, 1], convert to
    ``channels`` channels (grey replicated to RGB or RGB averaged to grey), normalise with
    ``(x - mean) / std`` per channel.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    resize_px: int | None = Field(default=256, ge=1)
    crop_px: int | None = Field(default=224, ge=1)
    interpolation: Literal["bilinear", "bicubic", "nearest"] = "bilinear"
    channels: Literal[1, 3] = 3
    mean: tuple[float, ...] = (0.485, 0.456, 0.406)
    std: tuple[float, ...] = (0.229, 0.224, 0.225)

    @model_validator(mode="after")
    def _check(self) -> "ImagePreprocessConfig":
        for name in ("mean", "std"):
            value = getattr(self, name)
            if len(value) not in (1, self.channels):
                raise ValueError(f"{name} must have 1 or {self.channels} entries, got {len(value)}")
        if any(s <= 0 for s in self.std):
            raise ValueError(f"std entries must be > 0, got {self.std}")
        if self.resize_px is not None and self.crop_px is not None and self.crop_px > self.resize_px:
            raise ValueError(f"crop_px ({self.crop_px}) must not exceed resize_px ({self.resize_px})")
        return self


class TextPreprocessConfig(BaseModel):
    """How text becomes token ids: truncation length (tokens) and padding side."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    max_length_tokens: int = Field(default=256, ge=2)
    batch_size: int = Field(default=32, ge=1)


#: The standard ImageNet evaluation preprocessing (torchvision's ``Resize(256)`` + ``CenterCrop(224)``).
IMAGENET_PREPROCESS = ImagePreprocessConfig()


def _as_nchw(images: np.ndarray | torch.Tensor) -> torch.Tensor:
    arr = images if isinstance(images, torch.Tensor) else torch.from_numpy(np.ascontiguousarray(images))
    if arr.dtype != torch.uint8:
        raise InputError(f"images must be uint8 (0..255), got dtype {arr.dtype}; pass raw pixel values")
    if arr.ndim == 3:  # (N, H, W) grey
        return arr.unsqueeze(1)
    if arr.ndim == 4 and arr.shape[-1] in (1, 3, 4) and arr.shape[1] not in (1, 3):
        return arr[..., :3].permute(0, 3, 1, 2) if arr.shape[-1] == 4 else arr.permute(0, 3, 1, 2)
    if arr.ndim == 4 and arr.shape[1] in (1, 3):
        return arr
    raise InputError(f"images must have shape (N, H, W), (N, H, W, C) or (N, C, H, W) with C in 1/3, "
                     f"got {tuple(arr.shape)}")


def preprocess_images(images: np.ndarray | torch.Tensor, config: ImagePreprocessConfig) -> torch.Tensor:
    """Apply ``config`` to a batch of equally sized ``uint8`` images; return float32 ``(N, C, H, W)``.

    Resizing uses :func:`torch.nn.functional.interpolate` with anti-aliasing when shrinking.
    """
    x = _as_nchw(images).float().div_(255.0)
    n, c, h, w = x.shape
    if n == 0:
        raise InputError("images is empty; pass at least one image")
    if config.resize_px is not None:
        scale = config.resize_px / min(h, w)
        size = (max(1, round(h * scale)), max(1, round(w * scale)))
        if size != (h, w):
            kwargs: dict[str, object] = {"mode": config.interpolation}
            if config.interpolation != "nearest":
                kwargs["align_corners"] = False
                kwargs["antialias"] = scale < 1.0
            x = F.interpolate(x, size=size, **kwargs)  # type: ignore[arg-type]
            if config.interpolation == "bicubic":
                x = x.clamp_(0.0, 1.0)
        h, w = size
    if config.crop_px is not None:
        crop = config.crop_px
        if crop > min(h, w):
            raise InputError(f"crop_px={crop} exceeds the image size {h}x{w}; lower crop_px or raise resize_px")
        top = int(round((h - crop) / 2.0))
        left = int(round((w - crop) / 2.0))
        x = x[:, :, top:top + crop, left:left + crop]
    if c != config.channels:
        x = x.expand(-1, 3, -1, -1) if config.channels == 3 else x.mean(dim=1, keepdim=True)
    mean = torch.tensor(config.mean, dtype=torch.float32).view(1, -1, 1, 1)
    std = torch.tensor(config.std, dtype=torch.float32).view(1, -1, 1, 1)
    return ((x - mean) / std).contiguous()


def load_image_files(paths: list[Path], config: ImagePreprocessConfig) -> torch.Tensor:
    """Decode image files with Pillow and preprocess them with ``config`` into one ``(N, C, H, W)`` tensor.

    Files of different sizes are resized one by one (shorter side to ``resize_px`` with Pillow's
    resampling, as torchvision does for PIL images), then cropped and normalised together.
    """
    from bitvert.models._deps import require

    image_mod = require("PIL.Image", "pip install pillow", "reading image files")
    resample = {"bilinear": image_mod.Resampling.BILINEAR, "bicubic": image_mod.Resampling.BICUBIC,
                "nearest": image_mod.Resampling.NEAREST}[config.interpolation]
    mode = "RGB" if config.channels == 3 else "L"
    arrays = []
    for path in paths:  # decoding is per file by nature
        try:
            with image_mod.open(path) as img:
                img = img.convert(mode)
                if config.resize_px is not None:
                    w, h = img.size
                    scale = config.resize_px / min(w, h)
                    size = (max(1, round(w * scale)), max(1, round(h * scale)))
                    if size != (w, h):
                        img = img.resize(size, resample)
                arr = np.asarray(img, dtype=np.uint8)
        except (OSError, ValueError) as exc:
            raise FormatError(f"cannot decode image file {path} ({exc}); remove or replace it") from exc
        if config.crop_px is not None:
            crop = config.crop_px
            h, w = arr.shape[:2]
            if crop > min(h, w):
                raise InputError(f"image {path} is {w}x{h}, smaller than crop_px={crop}; set resize_px")
            top, left = int(round((h - crop) / 2.0)), int(round((w - crop) / 2.0))
            arr = arr[top:top + crop, left:left + crop]
        arrays.append(arr)
    if not arrays:
        raise InputError("no image files to load")
    shapes = {a.shape for a in arrays}
    if len(shapes) != 1:
        raise InputError(f"images have different sizes after preprocessing ({sorted(shapes)}); set crop_px so "
                         "all images end up the same size")
    stacked = np.stack(arrays)
    no_resize = config.model_copy(update={"resize_px": None, "crop_px": None})
    return preprocess_images(stacked, no_resize)
