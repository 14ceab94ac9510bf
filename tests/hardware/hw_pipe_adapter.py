"""THROWAWAY adapter until branch `pipe` lands on main: IntLayer, prune_int_layers, encode_report, bitwave-w5/w6.

Installs the lead's announced API into the pipeline / codec modules when they lack it. Deleted after `git merge main`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

import bitvert.codec.checkpoint as ck
import bitvert.pipeline.global_prune as gp
import bitvert.pipeline.presets as pr
from bitvert.codec.container import EncodedModel
from bitvert.codec.tensor import encode, encode_plain
from bitvert.core.grouping import make_layout
from bitvert.pipeline.quantize import LayerRole
from bitvert.pruning import GroupMetadata, PruneResult, prune


@dataclass(frozen=True)
class IntLayer:
    name: str
    kind: str
    q: np.ndarray
    scale: np.ndarray
    out_axis: int = 0
    weight: np.ndarray | None = None


def prune_int_layers(layers, preset):
    preset = pr.get_preset(preset)
    roles = []
    for i, l in enumerate(layers):
        role, reason = LayerRole.PRUNE, "default"
        if i == 0:
            role, reason = preset.first_layer, "first_layer"
        elif i == len(layers) - 1:
            role, reason = preset.last_layer, "last_layer"
        for pat, r in preset.rules.items():
            if re.fullmatch(pat, l.name):
                role, reason = (r if r is not None else LayerRole.FP32), f"rule {pat!r}"
                break
        if role is LayerRole.PRUNE and preset.method != "none":
            lay = make_layout(l.q.shape, l.kind, preset.group_size, preset.remainder)
            if preset.columns * lay.width <= preset.metadata_bits_per_group:
                role, reason = LayerRole.INT8, "short groups"
        roles.append((role, reason))
    pruned = [i for i, (r, _) in enumerate(roles) if r is LayerRole.PRUNE and preset.method != "none"]
    sens = preset.sensitivity if preset.sensitivity != "auto" else "scale"
    scores = []
    for i in pruned:
        l = layers[i]
        w = torch.from_numpy(l.weight if l.weight is not None else l.q * l.scale.reshape((-1,) + (1,) * (l.q.ndim - 1)))
        scores.append(gp.channel_scores(w, torch.from_numpy(np.asarray(l.scale)), l.out_axis, sens))
    masks = gp.select_sensitive(scores, preset.sensitive_fraction, preset.channel_multiple)
    counts = gp._global_counts(scores, preset.sensitive_fraction)
    mask_of = {i: m for i, m in zip(pruned, masks)}
    count_of = {i: c for i, c in zip(pruned, counts)}
    records = []
    for i, l in enumerate(layers):
        role, reason = roles[i]
        k = l.q.shape[0]
        rec = gp.LayerPruneRecord(name=l.name, kind=l.kind, shape=tuple(l.q.shape), out_axis=0, role=role.value,
                                  reason=reason, n_weights=int(l.q.size), n_channels=k)
        rec.q = np.asarray(l.q, dtype=np.int16)
        rec.scale = np.asarray(l.scale, dtype=np.float32)
        rec.channel_bits = np.full(k, 8, dtype=np.uint8)
        rec.weight_bits_total = rec.n_weights * 8
        if i in mask_of:
            m = mask_of[i]
            res = prune(rec.q, gp._prune_config(preset, 8), kind=l.kind, dense_channels=m)
            rec.q = res.weights.astype(np.int16)
            md = res.metadata
            rec.metadata = {"redundant": md.redundant, "constant": md.constant, "free_columns": md.free_columns,
                            "pruned": md.pruned}
            rec.layout = res.layout.to_dict()
            rec.sensitive = m
            rec.n_sensitive = int(m.sum())
            rec.n_sensitive_global = count_of[i]
            rec.channel_bits[~m] = 8 - preset.columns
        records.append(rec)
    return gp.ModelPruneReport(preset=preset, layers=records)


def encode_report(report) -> EncodedModel:
    preset = report.preset
    cfg = gp._prune_config(preset, 8)
    tensors = {}
    for rec in report.quantized_layers:
        name = ck.weight_key(rec.name)
        if rec.metadata is not None:
            md = rec.metadata
            meta = GroupMetadata(redundant=md["redundant"].astype(np.uint8), constant=md["constant"].astype(np.int16),
                                 free_columns=md["free_columns"].astype(np.uint8), pruned=md["pruned"].astype(bool))
            lay = make_layout(rec.shape, rec.kind, preset.group_size, preset.remainder)
            tensors[name] = encode(PruneResult(weights=rec.q, original=rec.q, metadata=meta, layout=lay, config=cfg),
                                   name=name)
        else:
            tensors[name] = encode_plain(rec.q, kind=rec.kind, group_size=preset.group_size,
                                         channel_bits=rec.channel_bits.astype(np.int64), name=name)
    return EncodedModel(tensors=tensors, source={"preset": preset.to_dict(),
                                                 "layer_summary": [l.to_dict() for l in report.layers]})


def install() -> None:
    if not hasattr(gp, "prune_int_layers"):
        gp.IntLayer = IntLayer
        gp.prune_int_layers = prune_int_layers
    if not hasattr(ck, "encode_report"):
        ck.encode_report = encode_report
    for n, w in (("bitwave-w5", 5), ("bitwave-w6", 6)):
        if n not in pr.PRESETS:
            pr.PRESETS[n] = pr.PipelinePreset(name=n, description=f"BitWave w_prec {w}", method="bitflip",
                                              semantics="code", columns=8 - w, group_size=32)


install()
