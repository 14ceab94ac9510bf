"""Helpers for the hardware tests: tiny hand-made layers and workloads."""

from __future__ import annotations

import numpy as np

from bitvert.hardware.workload import LayerType, LayerWorkload, Workload


def linear(name: str, w: np.ndarray, tokens: int = 1, **kw: object) -> LayerWorkload:
    return LayerWorkload(name=name, kind=LayerType.LINEAR, weights=np.asarray(w, dtype=np.int16), tokens=tokens, **kw)


def conv(
    name: str, w: np.ndarray, out_hw: tuple[int, int], in_hw: tuple[int, int] | None = None, groups: int = 1,
    **kw: object,
) -> LayerWorkload:
    kind = LayerType.DEPTHWISE if groups > 1 and np.asarray(w).shape[1] == 1 else LayerType.CONV
    return LayerWorkload(
        name=name, kind=kind, weights=np.asarray(w, dtype=np.int16), output_hw=out_hw,
        input_hw=in_hw or out_hw, groups=groups, **kw,
    )


def workload(*layers: LayerWorkload, name: str = "tiny") -> Workload:
    return Workload(name=name, layers=tuple(layers))


def encoded(layer: LayerWorkload, method: str, columns: int, sensitive: np.ndarray | None = None,
            n_sensitive_global: int | None = None, **prune_kw: object) -> LayerWorkload:
    """``layer`` running its weights pruned by ``method`` and encoded by the codec (what a variant file holds)."""
    from dataclasses import replace

    from bitvert.codec import encode
    from bitvert.codec.view import weight_encoding
    from bitvert.pruning import PruneConfig, prune

    res = prune(layer.weights, PruneConfig(method=method, columns=columns, **prune_kw),
                kind="conv" if layer.is_conv else "linear", dense_channels=sensitive)
    enc = weight_encoding(encode(res, name=layer.name), layer.name, n_sensitive_global)
    return replace(layer, weights=enc.weights, encoding=enc)
