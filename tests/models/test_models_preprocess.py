"""Pinned image preprocessing: hand-computed values, shapes and bad input."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from pydantic import ValidationError

from bitvert.errors import FormatError, InputError
from bitvert.models.preprocess import ImagePreprocessConfig, load_image_files, preprocess_images


def test_normalise_only_grey_golden() -> None:
    cfg = ImagePreprocessConfig(resize_px=None, crop_px=None, channels=1, mean=(0.5,), std=(0.25,))
    img = np.array([[[0, 255], [51, 102]]], dtype=np.uint8)  # (1, 2, 2)
    out = preprocess_images(img, cfg)
    # (x/255 - 0.5) / 0.25: 0 -> -2, 255 -> 2, 51 -> (0.2-0.5)*4 = -1.2, 102 -> (0.4-0.5)*4 = -0.4
    expected = torch.tensor([[[[-2.0, 2.0], [-1.2, -0.4]]]])
    assert out.shape == (1, 1, 2, 2) and out.dtype == torch.float32
    torch.testing.assert_close(out, expected)


def test_grey_to_rgb_and_centre_crop() -> None:
    cfg = ImagePreprocessConfig(resize_px=None, crop_px=2, channels=3, mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0))
    img = np.arange(16, dtype=np.uint8).reshape(1, 4, 4)
    out = preprocess_images(img, cfg)
    assert out.shape == (1, 3, 2, 2)
    # centre 2x2 of a 4x4 starts at row 1, col 1: values 5, 6, 9, 10
    torch.testing.assert_close(out[0, 2], torch.tensor([[5.0, 6.0], [9.0, 10.0]]) / 255.0)
    torch.testing.assert_close(out[0, 0], out[0, 1])


def test_resize_shorter_side_keeps_aspect_and_constant_images_stay_constant() -> None:
    cfg = ImagePreprocessConfig(resize_px=8, crop_px=None, channels=3, mean=(0.0,), std=(1.0,))
    img = np.full((2, 4, 6, 3), 200, dtype=np.uint8)  # NHWC, 4x6
    out = preprocess_images(img, cfg)
    assert out.shape == (2, 3, 8, 12)
    torch.testing.assert_close(out, torch.full_like(out, 200 / 255.0))


def test_rgb_to_grey_averages_channels() -> None:
    cfg = ImagePreprocessConfig(resize_px=None, crop_px=None, channels=1, mean=(0.0,), std=(1.0,))
    img = np.zeros((1, 3, 1, 1), dtype=np.uint8)
    img[0, :, 0, 0] = (30, 60, 90)
    assert float(preprocess_images(img, cfg)) == pytest.approx(60 / 255.0)


@pytest.mark.parametrize("bad", [np.zeros((2, 3, 3), dtype=np.float32), np.zeros((3, 3), dtype=np.uint8),
                                 np.zeros((0, 4, 4), dtype=np.uint8), np.zeros((1, 5, 4, 4, 2), dtype=np.uint8)])
def test_bad_images_rejected(bad: np.ndarray) -> None:
    with pytest.raises(InputError):
        preprocess_images(bad, ImagePreprocessConfig(resize_px=None, crop_px=None, channels=1, mean=(0,), std=(1,)))


def test_crop_larger_than_image_rejected() -> None:
    cfg = ImagePreprocessConfig(resize_px=None, crop_px=8, channels=1, mean=(0,), std=(1,))
    with pytest.raises(InputError, match="crop_px"):
        preprocess_images(np.zeros((1, 4, 4), dtype=np.uint8), cfg)


@pytest.mark.parametrize("kwargs", [{"std": (0.0, 1.0, 1.0)}, {"mean": (0.1, 0.2)}, {"crop_px": 300},
                                    {"unknown_field": 1}, {"resize_px": 0}, {"channels": 2}])
def test_config_validation(kwargs: dict) -> None:
    with pytest.raises(ValidationError):
        ImagePreprocessConfig(**kwargs)


def test_load_image_files_resizes_each_and_reports_bad_files(tmp_path) -> None:
    from PIL import Image

    Image.fromarray(np.full((20, 40, 3), 10, dtype=np.uint8)).save(tmp_path / "a.png")
    Image.fromarray(np.full((30, 30, 3), 250, dtype=np.uint8)).save(tmp_path / "b.png")
    cfg = ImagePreprocessConfig(resize_px=10, crop_px=10, channels=3, mean=(0.0,), std=(1.0,))
    out = load_image_files([tmp_path / "a.png", tmp_path / "b.png"], cfg)
    assert out.shape == (2, 3, 10, 10)
    torch.testing.assert_close(out[0], torch.full((3, 10, 10), 10 / 255.0))
    torch.testing.assert_close(out[1], torch.full((3, 10, 10), 250 / 255.0))
    (tmp_path / "c.png").write_bytes(b"not an image")
    with pytest.raises(FormatError, match="c.png"):
        load_image_files([tmp_path / "c.png"], cfg)
