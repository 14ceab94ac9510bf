"""Small torch models for the codec tests (built here; no model package or download)."""

from __future__ import annotations

import torch
from torch import nn


class ConvNet(nn.Module):
    """RGB stem, depthwise and pointwise convolutions, a linear head (remainder groups included)."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 32, 3, padding=1)
        self.dw = nn.Conv2d(32, 32, 3, padding=1, groups=32)
        self.pw = nn.Conv2d(32, 72, 1)
        self.fc = nn.Linear(72, 40)
        self.head = nn.Linear(40, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.stem(x))
        x = torch.relu(self.pw(torch.relu(self.dw(x))))
        return self.head(torch.relu(self.fc(x.mean(dim=(2, 3)))))


class MLP(nn.Module):
    """Three linear layers with 64-channel multiples (sensitive chunks of 32 fit)."""

    def __init__(self) -> None:
        super().__init__()
        self.fc1 = nn.Linear(64, 128)
        self.fc2 = nn.Linear(128, 96)
        self.fc3 = nn.Linear(96, 64)
        self.out = nn.Linear(64, 8)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(torch.relu(self.fc3(torch.relu(self.fc2(torch.relu(self.fc1(x)))))))


def conv_batches(n: int = 2) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    return [torch.randn(4, 3, 8, 8, generator=g) for _ in range(n)]


def mlp_batches(n: int = 2) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(2)
    return [torch.randn(8, 64, generator=g) for _ in range(n)]
