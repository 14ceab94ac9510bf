"""Fixtures of the pipeline tests: small torch models built here, no model package needed."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

# The test modules import the helper modules next to this file by name.
sys.path.insert(0, str(Path(__file__).resolve().parent))

from pipeline_models import TinyBlock, TinyCNN  # noqa: E402


@pytest.fixture
def cnn() -> TinyCNN:
    torch.manual_seed(0)
    return TinyCNN().eval()


@pytest.fixture
def cnn_batches() -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    return [torch.randn(4, 3, 8, 8, generator=g) for _ in range(2)]


@pytest.fixture
def block() -> TinyBlock:
    torch.manual_seed(0)
    return TinyBlock().eval()


@pytest.fixture
def block_batches() -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(2)
    return [torch.randint(0, 50, (2, 12), generator=g) for _ in range(2)]
