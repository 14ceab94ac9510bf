"""Small torch models for the pipeline tests (no model package needed)."""

from __future__ import annotations

import torch
from torch import nn


class HFConv1D(nn.Module):
    """HuggingFace-style ``Conv1D``: weight stored ``(in, out)``, ``y = x @ W + b``."""

    def __init__(self, nf: int, nx: int) -> None:
        super().__init__()
        self.nf = nf
        self.weight = nn.Parameter(torch.randn(nx, nf) * 0.05)
        self.bias = nn.Parameter(torch.zeros(nf))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x @ self.weight + self.bias


# The pipeline detects it by class name, as it does transformers' own Conv1D.
HFConv1D.__name__ = "Conv1D"


class TinyCNN(nn.Module):
    """RGB conv -> depthwise conv -> pointwise conv -> linear head."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 32, 3, padding=1)
        self.bn = nn.BatchNorm2d(32)
        self.dw = nn.Conv2d(32, 32, 3, padding=1, groups=32)
        self.pw = nn.Conv2d(32, 64, 1)
        self.head = nn.Linear(64, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.bn(self.stem(x)))
        x = torch.relu(self.pw(torch.relu(self.dw(x))))
        return self.head(x.mean(dim=(2, 3)))


class TinyBlock(nn.Module):
    """A transformer-like block: attention projections and an MLP of nn.Linear, plus a GPT-2 style Conv1D."""

    def __init__(self, d: int = 64) -> None:
        super().__init__()
        self.embed = nn.Embedding(50, d)
        self.qkv = nn.Linear(d, 3 * d)
        self.proj = nn.Linear(d, d)
        self.fc1 = nn.Linear(d, 4 * d)
        self.fc2 = HFConv1D(d, 4 * d)
        self.norm = nn.LayerNorm(d)
        self.lm_head = nn.Linear(d, 50, bias=False)
        self.lm_head.weight = self.embed.weight  # tied, as in many LMs

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        x = self.embed(ids)
        q, k, v = self.qkv(x).chunk(3, dim=-1)
        att = torch.softmax(q @ k.transpose(-1, -2) / 8.0, dim=-1)
        x = x + self.proj(att @ v)
        x = x + self.fc2(torch.nn.functional.gelu(self.fc1(self.norm(x))))
        return self.lm_head(x)
