"""The paper's seven workloads and Llama-style decoders, built from their architecture definitions.

No model library is needed: every layer shape is written out here from the
published architectures (torchvision VGG-16 / ResNet-34 / ResNet-50, timm
ViT-S/16 and ViT-B/16 at 224x224, HuggingFace BERT-base). Layer names follow
those libraries' qualified names so a workload imported from a real model and
one built here line up.

Weights are **synthetic** (shape-only mode): per output channel a Laplace
distribution whose standard deviation is ``sqrt(2 / fan_in)`` times a
log-normal channel factor, quantized per channel, symmetric INT8 to
``[-127, 127]``. Every output of such a workload says ``synthetic_weights: true``.

Sequence lengths ([OPEN] in the spec; docs/simulator.md): ViT 197 tokens
(196 patches + class token); BERT-MRPC 128 and BERT-SST-2 64 tokens (the
longest tokenized sentence pair / sentence of each task rounded up to a power
of two); batch 1.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from bitvert.errors import ConfigError, InputError
from bitvert.hardware.workload import LayerGeometry, LayerType, LayerWorkload, Workload

__all__ = [
    "PAPER_WORKLOADS",
    "LayerSpec",
    "LlamaConfig",
    "available_workloads",
    "build_workload",
    "llama_specs",
    "synthesize_weights",
    "workload_from_specs",
]

MAX_SYNTHETIC_WEIGHTS = 1_500_000_000
"""Largest workload :func:`build_workload` materializes (int16 weights plus temporaries must fit in memory)."""

RELU_DENSITY = 0.5
"""Assumed non-zero fraction of post-ReLU CNN activations in shape-only mode ([OPEN], docs/simulator.md)."""


@dataclass(frozen=True, eq=False)
class LayerSpec(LayerGeometry):
    """Shape of one layer before weights are attached: its geometry plus the weight shape."""

    weight_shape: tuple[int, ...]


def _conv_out(size: int, k: int, stride: int, pad: int) -> int:
    return (size + 2 * pad - k) // stride + 1


class _Net:
    """Tiny helper that tracks the spatial size while layers are appended."""

    def __init__(self) -> None:
        self.specs: list[LayerSpec] = []

    def conv(
        self,
        name: str,
        cin: int,
        cout: int,
        k: int,
        stride: int,
        pad: int,
        hw: int,
        density: float,
        from_previous: bool = True,
        groups: int = 1,
    ) -> int:
        out = _conv_out(hw, k, stride, pad)
        kind = LayerType.DEPTHWISE if groups == cin and groups > 1 else LayerType.CONV
        self.specs.append(
            LayerSpec(
                name=name,
                kind=kind,
                weight_shape=(cout, cin // groups, k, k),
                input_hw=(hw, hw),
                output_hw=(out, out),
                stride=(stride, stride),
                padding=(pad, pad),
                groups=groups,
                input_density=density,
                input_from_previous=from_previous,
            )
        )
        return out

    def linear(
        self, name: str, cin: int, cout: int, tokens: int, density: float, from_previous: bool = True
    ) -> None:
        self.specs.append(
            LayerSpec(
                name=name,
                kind=LayerType.LINEAR,
                weight_shape=(cout, cin),
                tokens=tokens,
                input_density=density,
                input_from_previous=from_previous,
            )
        )

    def matmul(self, name: str, k: int, n: int, tokens: int, repeats: int) -> None:
        self.specs.append(
            LayerSpec(
                name=name,
                kind=LayerType.MATMUL,
                weight_shape=(n, k),
                tokens=tokens,
                repeats=repeats,
                input_density=1.0,
                input_from_previous=True,
            )
        )


def vgg16_specs() -> list[LayerSpec]:
    """torchvision ``vgg16`` at 224x224: 13 convolutions and 3 linear layers."""
    net = _Net()
    cfg: list[int | str] = [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"]
    hw, cin, idx = 224, 3, 0
    for item in cfg:
        if item == "M":
            hw //= 2
            idx += 1
            continue
        cout = int(item)
        hw = net.conv(f"features.{idx}", cin, cout, 3, 1, 1, hw, 1.0 if idx == 0 else RELU_DENSITY, idx != 0)
        cin = cout
        idx += 2  # conv + ReLU
    net.linear("classifier.0", 512 * 7 * 7, 4096, 1, RELU_DENSITY)
    net.linear("classifier.3", 4096, 4096, 1, RELU_DENSITY)
    net.linear("classifier.6", 4096, 1000, 1, RELU_DENSITY)
    return net.specs


def _resnet_specs(blocks: list[int], bottleneck: bool) -> list[LayerSpec]:
    net = _Net()
    hw = net.conv("conv1", 3, 64, 7, 2, 3, 224, 1.0, from_previous=False)
    hw = _conv_out(hw, 3, 2, 1)  # max pool
    inplanes = 64
    expansion = 4 if bottleneck else 1
    for stage, (planes, n_blocks) in enumerate(zip([64, 128, 256, 512], blocks), start=1):
        for b in range(n_blocks):
            stride = 2 if (b == 0 and stage > 1) else 1
            prefix = f"layer{stage}.{b}"
            hw_in = hw
            if bottleneck:
                h1 = net.conv(f"{prefix}.conv1", inplanes, planes, 1, 1, 0, hw_in, RELU_DENSITY)
                h2 = net.conv(f"{prefix}.conv2", planes, planes, 3, stride, 1, h1, RELU_DENSITY)
                hw = net.conv(f"{prefix}.conv3", planes, planes * expansion, 1, 1, 0, h2, RELU_DENSITY)
            else:
                h1 = net.conv(f"{prefix}.conv1", inplanes, planes, 3, stride, 1, hw_in, RELU_DENSITY)
                hw = net.conv(f"{prefix}.conv2", planes, planes, 3, 1, 1, h1, RELU_DENSITY)
            if b == 0 and (stride != 1 or inplanes != planes * expansion):
                net.conv(
                    f"{prefix}.downsample.0", inplanes, planes * expansion, 1, stride, 0, hw_in,
                    RELU_DENSITY, from_previous=False,
                )
            inplanes = planes * expansion
    net.linear("fc", 512 * expansion, 1000, 1, RELU_DENSITY)
    return net.specs


def resnet34_specs() -> list[LayerSpec]:
    """torchvision ``resnet34`` at 224x224."""
    return _resnet_specs([3, 4, 6, 3], bottleneck=False)


def resnet50_specs() -> list[LayerSpec]:
    """torchvision ``resnet50`` (v1.5: stride on the 3x3 convolution) at 224x224."""
    return _resnet_specs([3, 4, 6, 3], bottleneck=True)


def _vit_specs(dim: int, depth: int, heads: int, mlp: int, attention: bool) -> list[LayerSpec]:
    net = _Net()
    patches = net.conv("patch_embed.proj", 3, dim, 16, 16, 0, 224, 1.0, from_previous=False)
    tokens = patches * patches + 1
    head_dim = dim // heads
    for i in range(depth):
        p = f"blocks.{i}"
        net.linear(f"{p}.attn.qkv", dim, 3 * dim, tokens, 1.0)
        if attention:
            net.matmul(f"{p}.attn.q_kt", head_dim, tokens, tokens, heads)
            net.matmul(f"{p}.attn.attn_v", tokens, head_dim, tokens, heads)
        net.linear(f"{p}.attn.proj", dim, dim, tokens, 1.0)
        net.linear(f"{p}.mlp.fc1", dim, mlp, tokens, 1.0)
        net.linear(f"{p}.mlp.fc2", mlp, dim, tokens, 1.0)
    net.linear("head", dim, 1000, 1, 1.0)
    return net.specs


def _bert_specs(seq_len: int, attention: bool, n_labels: int = 2) -> list[LayerSpec]:
    net = _Net()
    dim, heads, inter = 768, 12, 3072
    for i in range(12):
        p = f"bert.encoder.layer.{i}"
        first = i > 0
        net.linear(f"{p}.attention.self.query", dim, dim, seq_len, 1.0, first)
        net.linear(f"{p}.attention.self.key", dim, dim, seq_len, 1.0, False)
        net.linear(f"{p}.attention.self.value", dim, dim, seq_len, 1.0, False)
        if attention:
            net.matmul(f"{p}.attention.self.q_kt", dim // heads, seq_len, seq_len, heads)
            net.matmul(f"{p}.attention.self.attn_v", seq_len, dim // heads, seq_len, heads)
        net.linear(f"{p}.attention.output.dense", dim, dim, seq_len, 1.0)
        net.linear(f"{p}.intermediate.dense", dim, inter, seq_len, 1.0)
        net.linear(f"{p}.output.dense", inter, dim, seq_len, 1.0)
    net.linear("bert.pooler.dense", dim, dim, 1, 1.0)
    net.linear("classifier", dim, n_labels, 1, 1.0)
    return net.specs


class LlamaConfig(BaseModel):
    """Shape of a Llama-style decoder (HuggingFace ``LlamaConfig`` field names)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    hidden_size: int = Field(4096, gt=0)
    intermediate_size: int = Field(14336, gt=0)
    num_hidden_layers: int = Field(32, gt=0)
    num_attention_heads: int = Field(32, gt=0)
    num_key_value_heads: int = Field(8, gt=0)
    vocab_size: int = Field(128256, gt=0)
    seq_len: int = Field(2048, gt=0, description="tokens processed (prefill)")
    include_lm_head: bool = True


def llama_specs(config: LlamaConfig | dict[str, Any], attention: bool = False) -> list[LayerSpec]:
    """Layers of a Llama-style decoder (prefill of ``seq_len`` tokens)."""
    try:
        cfg = config if isinstance(config, LlamaConfig) else LlamaConfig(**config)
    except Exception as exc:
        raise ConfigError(f"invalid Llama config: {exc}") from None
    if cfg.hidden_size % cfg.num_attention_heads or cfg.num_attention_heads % cfg.num_key_value_heads:
        raise ConfigError(
            "hidden_size must be divisible by num_attention_heads, and num_attention_heads by num_key_value_heads"
        )
    net = _Net()
    h, s = cfg.hidden_size, cfg.seq_len
    hd = h // cfg.num_attention_heads
    kv = hd * cfg.num_key_value_heads
    for i in range(cfg.num_hidden_layers):
        p = f"model.layers.{i}"
        net.linear(f"{p}.self_attn.q_proj", h, h, s, 1.0, i > 0)
        net.linear(f"{p}.self_attn.k_proj", h, kv, s, 1.0, False)
        net.linear(f"{p}.self_attn.v_proj", h, kv, s, 1.0, False)
        if attention:
            net.matmul(f"{p}.self_attn.q_kt", hd, s, s, cfg.num_attention_heads)
            net.matmul(f"{p}.self_attn.attn_v", s, hd, s, cfg.num_attention_heads)
        net.linear(f"{p}.self_attn.o_proj", h, h, s, 1.0)
        net.linear(f"{p}.mlp.gate_proj", h, cfg.intermediate_size, s, 1.0)
        net.linear(f"{p}.mlp.up_proj", h, cfg.intermediate_size, s, 1.0, False)
        net.linear(f"{p}.mlp.down_proj", cfg.intermediate_size, h, s, 1.0)
    if cfg.include_lm_head:
        net.linear("lm_head", h, cfg.vocab_size, s, 1.0)
    return net.specs


_ZOO: dict[str, tuple[Callable[[bool], list[LayerSpec]], int | None]] = {
    "vgg16": (lambda att: vgg16_specs(), None),
    "resnet34": (lambda att: resnet34_specs(), None),
    "resnet50": (lambda att: resnet50_specs(), None),
    "vit-small": (lambda att: _vit_specs(384, 12, 6, 1536, att), 197),
    "vit-base": (lambda att: _vit_specs(768, 12, 12, 3072, att), 197),
    "bert-mrpc": (lambda att: _bert_specs(128, att), 128),
    "bert-sst2": (lambda att: _bert_specs(64, att), 64),
    "llama3-8b": (lambda att: llama_specs(LlamaConfig(), att), 2048),
}

PAPER_WORKLOADS: tuple[str, ...] = (
    "vgg16", "resnet34", "resnet50", "vit-small", "vit-base", "bert-mrpc", "bert-sst2",
)
"""The seven workloads of the paper's Figs. 12-13, in the paper's order."""


def available_workloads() -> list[str]:
    """Names accepted by :func:`build_workload`."""
    return list(_ZOO)


def synthesize_weights(
    shape: tuple[int, ...], rng: np.random.Generator, channel_spread: float = 0.35
) -> tuple[np.ndarray, np.ndarray]:
    """Draw realistic INT8 weights: Laplace per output channel, quantized by the pipeline's quantizer.

    Returns ``(int16 weights in [-127, 127], per-channel float scale)``. The
    channel standard deviation is ``sqrt(2/fan_in) * exp(N(0, channel_spread))``.
    """
    import torch

    from bitvert.pipeline.quantize import quantize_weight

    cout = int(shape[0])
    fan_in = int(np.prod(shape[1:]))
    std = np.sqrt(2.0 / fan_in) * np.exp(rng.normal(0.0, channel_spread, size=cout))
    b = (std / np.sqrt(2.0)).astype(np.float32)  # Laplace scale
    x = rng.standard_exponential(size=(cout, fan_in), dtype=np.float32)
    sign = rng.integers(0, 2, size=(cout, fan_in), dtype=np.int8) * 2 - 1
    x *= sign
    x *= b[:, None]
    q, scale = quantize_weight(torch.from_numpy(x))  # the pipeline's quantizer: symmetric INT8 per channel
    del x
    return q.numpy().reshape(shape), scale.numpy().astype(np.float64)


def workload_from_specs(
    name: str,
    specs: list[LayerSpec],
    batch: int = 1,
    seq_len: int | None = None,
    seed: int = 0,
    notes: dict[str, Any] | None = None,
) -> Workload:
    """Attach synthetic weights (seeded, one independent stream per layer) to layer shapes."""
    if isinstance(batch, bool) or not isinstance(batch, int) or batch < 1:
        raise InputError(f"batch must be a positive integer, got {batch!r}")
    n_weights = sum(int(np.prod(s.weight_shape)) for s in specs)
    if n_weights > MAX_SYNTHETIC_WEIGHTS:
        raise InputError(
            f"workload {name!r} has {n_weights / 1e9:.2f} G weights, more than the {MAX_SYNTHETIC_WEIGHTS / 1e9:.1f} G "
            "that synthetic weights can be drawn for in memory; simulate fewer decoder layers "
            "(e.g. llama={..., 'num_hidden_layers': 4}) -- identical layers cost the same, so totals scale linearly"
        )
    streams = np.random.SeedSequence(seed).spawn(len(specs))
    layers = []
    for spec, ss in zip(specs, streams):
        w, scale = synthesize_weights(spec.weight_shape, np.random.default_rng(ss))
        layers.append(
            LayerWorkload(
                **{**spec.geometry(), "repeats": spec.repeats * (batch if spec.kind is LayerType.MATMUL else 1)},
                weights=w,
                batch=batch,
                synthetic=True,
                channel_scale=scale,
            )
        )
    return Workload(
        name=name,
        layers=tuple(layers),
        batch=batch,
        seq_len=seq_len,
        synthetic_weights=True,
        seed=seed,
        notes=dict(notes or {}),
    )


def build_workload(
    name: str,
    batch: int = 1,
    seed: int = 0,
    include_attention: bool = False,
    llama: LlamaConfig | dict[str, Any] | None = None,
) -> Workload:
    """Build a named workload with synthetic weights.

    Args:
        name: one of :func:`available_workloads` (``llama`` with ``llama=`` for a custom decoder).
        batch: batch size.
        seed: seed of the synthetic weights.
        include_attention: also cost the attention matmuls ``Q Kᵀ`` and ``A V`` (transformers).
        llama: config of a Llama-style decoder when ``name == "llama"``.
    """
    key = name.lower()
    if key == "llama":
        if llama is None:
            raise InputError("workload 'llama' needs a config: build_workload('llama', llama={...})")
        try:
            cfg = llama if isinstance(llama, LlamaConfig) else LlamaConfig(**llama)
        except Exception as exc:
            raise ConfigError(f"invalid Llama config: {exc}") from None
        specs, seq = llama_specs(cfg, include_attention), cfg.seq_len
    elif key in _ZOO:
        fn, seq = _ZOO[key]
        specs = fn(include_attention)
    else:
        raise InputError(f"unknown workload {name!r}; choose one of {available_workloads() + ['llama']}")
    return workload_from_specs(
        key,
        specs,
        batch=batch,
        seq_len=seq,
        seed=seed,
        notes={"source": "architecture definition (bitvert.hardware.workloads_zoo)",
               "include_attention": include_attention},
    )
