"""Report figures built from a ``results.json`` document (Agg backend, no pyplot state).

* :func:`accuracy_figure` -- the task metric against effective weight bits, every variant;
* :func:`energy_breakdown_figure` -- absolute energy per accelerator split into its five components;
* :func:`layer_sparsity_figure` -- per layer: bit sparsity and BBS sparsity of the INT8 weights, and
  each BBS preset's effective bits.

The normalized speedup and energy bars come from :mod:`bitvert.hardware.plots`;
:func:`all_figures` returns every figure of the report by file stem.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from bitvert.errors import InputError
from bitvert.pruning.methods import get_method, method_names

__all__ = ["FIGURE_TITLES", "accuracy_figure", "all_figures", "energy_breakdown_figure", "layer_sparsity_figure"]

FIGURE_TITLES: dict[str, str] = {
    "accuracy_vs_bits": "Task metric vs effective weight bits",
    "speedup": "Speedup over Stripes",
    "energy": "Energy normalized to SparTen (off-chip / buffers / core)",
    "energy_breakdown": "Energy breakdown by component",
    "layer_sparsity": "Per-layer bit sparsity, BBS sparsity and effective bits",
}
"""Caption of every report figure, by file stem (in report order)."""

_PIPELINE_STYLE = {
    "fp32": ("black", "*"),
    "none": ("#333333", "s"),
    "rtn": ("#9467bd", "v"),
}
_METHOD_COLORS = ("#1f77b4", "#2ca02c", "#d62728", "#ff7f0e", "#8c564b", "#e377c2", "#17becf", "#bcbd22")
"""Colour of the i-th registered pruning method (:func:`bitvert.pruning.methods.method_names`)."""
_HARDWARE_MARKERS = {"bitvert": "o", "bitwave": "^"}
_ENERGY_PARTS = (("pe", "PEs"), ("scheduler", "schedulers"), ("sram_read", "SRAM read"),
                 ("sram_write", "SRAM write"), ("dram", "DRAM"))


def _style(method: str) -> tuple[str, str]:
    """Colour and marker of a variant's method: fixed for the pipeline-level ones, by registry position
    and hardware for the pruning methods, grey for a name this process does not know."""
    if method in _PIPELINE_STYLE:
        return _PIPELINE_STYLE[method]
    names = method_names()
    if method not in names:
        return "gray", "x"
    return _METHOD_COLORS[names.index(method) % len(_METHOD_COLORS)], _HARDWARE_MARKERS[get_method(method).hardware]


def _figure(width: float, height: float = 3.8) -> Figure:
    fig = Figure(figsize=(width, height), constrained_layout=True)
    FigureCanvasAgg(fig)
    return fig


def _variants(results: dict[str, Any]) -> dict[str, Any]:
    try:
        variants = results["variants"]
        results["headline_metric"]
    except (KeyError, TypeError):
        raise InputError("results must be a results.json document with 'variants' and 'headline_metric'") from None
    if not variants:
        raise InputError("results has no variants to plot")
    return variants


def accuracy_figure(results: dict[str, Any]) -> Figure:
    """Headline task metric (left) and the FP32-fidelity metric (right, when the task has one) vs
    effective weight bits; FP32 as a dashed line, each variant a labelled point."""
    from bitvert.pipeline.presets import method_label  # lazily: the pipeline imports torch

    variants = _variants(results)
    metrics = [results["headline_metric"]]
    if results.get("fidelity_metric"):
        metrics.append(results["fidelity_metric"])
    fig = _figure(6.0 * len(metrics), 4.0)
    for j, metric in enumerate(metrics):
        ax = fig.add_subplot(1, len(metrics), j + 1)
        fp32 = variants.get("fp32", {}).get("metrics", {}).get(metric)
        if fp32 is not None:
            ax.axhline(fp32, color="black", linestyle="--", linewidth=0.8, label=f"FP32 ({fp32:.4g})")
        labelled: set[str] = set()
        placed: list[tuple[float, float]] = []
        values = [v["metrics"].get(metric) for v in variants.values() if v["method"] != "fp32"]
        finite_vals = [float(x) for x in values if x is not None] + ([float(fp32)] if fp32 is not None else [])
        span = (max(finite_vals) - min(finite_vals)) if finite_vals else 0.0
        xs = [float(v["effective_bits"]) for v in variants.values() if v["method"] != "fp32"]
        xspan = max(xs) - min(xs) if xs else 0.0
        for name, v in variants.items():
            y = v["metrics"].get(metric)
            if v["method"] == "fp32" or y is None:
                continue
            color, marker = _style(v["method"])
            label = method_label(v["method"])
            ax.scatter([v["effective_bits"]], [y], color=color, marker=marker, s=46, zorder=3,
                       label=None if label in labelled else label)
            labelled.add(label)
            # stack the labels of points that (nearly) coincide instead of printing them on top of each other
            near = sum(1 for px, py in placed if abs(px - v["effective_bits"]) < 0.25 * xspan + 1e-9
                       and abs(py - y) <= 0.04 * span + 1e-12)
            placed.append((v["effective_bits"], y))
            ax.annotate(name, (v["effective_bits"], y), textcoords="offset points", xytext=(5, 4 + 9 * near),
                        fontsize=7)
        ax.set_xlabel("effective weight bits (quantized layers, metadata included)")
        ax.set_ylabel(metric)
        kind = "task metric" if j == 0 else "fidelity to FP32"
        ax.set_title(f"{results.get('model', {}).get('name', '')}: {metric} ({kind})", fontsize=10)
        ax.invert_xaxis()
        ax.grid(True, linewidth=0.3)
        ax.legend(fontsize=7, loc="best")
    return fig


def energy_breakdown_figure(results: dict[str, Any]) -> Figure:
    """Horizontal stacked bars: each accelerator's energy (µJ) split into PEs, schedulers, SRAM, DRAM."""
    try:
        accs = results["simulation"]["accelerators"]
    except (KeyError, TypeError):
        raise InputError("results has no simulation.accelerators to plot") from None
    if not accs:
        raise InputError("results has no simulated accelerator to plot")
    names = list(accs)
    parts = {k: np.array([_component(accs[a], k) for a in names]) / 1e6 for k, _ in _ENERGY_PARTS}
    fig = _figure(7.0, 0.45 * len(names) + 1.4)
    ax = fig.add_subplot(1, 1, 1)
    left = np.zeros(len(names))
    y = np.arange(len(names))
    for k, label in _ENERGY_PARTS:
        ax.barh(y, parts[k], left=left, label=label, height=0.65)
        left += parts[k]
    for yi, total in zip(y, left):
        ax.text(total, yi, f" {total:.4g}", va="center", fontsize=7)
    ax.set_xlim(0, float(left.max()) * 1.15 if left.max() > 0 else 1.0)
    ax.set_yticks(y, names, fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel("energy per inference (µJ)")
    ax.set_title("Energy breakdown")
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    return fig


def _component(acc: dict[str, Any], key: str) -> float:
    per = acc.get("per_workload") or {}
    return float(sum(w["energy_by_component_pj"][key] for w in per.values()))


def layer_sparsity_figure(results: dict[str, Any]) -> Figure:
    """Per layer: INT8 zero-bit sparsity (two's complement, sign-magnitude) and BBS sparsity (top);
    effective bits of every variant that prunes (bottom)."""
    layers = results.get("layers") if isinstance(results, dict) else None
    if not layers:
        raise InputError("results has no per-layer data ('layers') to plot")
    n = len(layers)
    x = np.arange(n)
    fig = _figure(max(7.0, 0.18 * n + 3.0), 6.2)
    top = fig.add_subplot(2, 1, 1)
    series = (("zero_bit_sparsity_twos", "zero bits, two's complement"),
              ("zero_bit_sparsity_sign_magnitude", "zero bits, sign-magnitude"),
              ("bbs_sparsity", "BBS (bi-directional)"))
    w = 0.8 / len(series)
    for i, (key, label) in enumerate(series):
        vals = [layer["int8_sparsity"][key] for layer in layers]
        top.bar(x + (i - 1) * w, vals, w, label=label)
    top.set_ylabel("fraction of bits")
    top.set_ylim(0, 1)
    top.set_title("INT8 weights: bit sparsity vs BBS sparsity per layer")
    top.legend(fontsize=7, loc="upper right", ncols=3)
    bottom = fig.add_subplot(2, 1, 2, sharex=top)
    top.tick_params(axis="x", labelbottom=False)
    variants = results.get("variants", {})
    for name, v in variants.items():
        if v.get("method") in ("fp32",):
            continue
        bits = [layer["effective_bits"].get(name) for layer in layers]
        ys = np.array([np.nan if b is None else b for b in bits], dtype=float)
        color, marker = _style(v.get("method", ""))
        if v.get("method") == "none":
            bottom.plot(x, ys, color=color, linestyle="--", linewidth=0.8, label=name)
        else:
            bottom.plot(x, ys, marker=marker, markersize=3, linewidth=0.8, label=name)
    bottom.set_ylabel("effective bits")
    bottom.set_ylim(0, 8.8)
    labels = [_short(layer["name"]) for layer in layers]
    bottom.set_xticks(x, labels, rotation=90, fontsize=5 if n > 40 else 7)
    bottom.legend(fontsize=6, loc="lower right", ncols=3)
    return fig


def _short(name: str, width: int = 28) -> str:
    return name if len(name) <= width else "…" + name[-(width - 1):]


def all_figures(results: dict[str, Any]) -> dict[str, Figure]:
    """Every report figure by file stem (keys of :data:`FIGURE_TITLES`, in that order)."""
    from bitvert.hardware.plots import energy_figure, speedup_figure

    figs: dict[str, Figure] = {"accuracy_vs_bits": accuracy_figure(results)}
    sim = results.get("simulation")
    if sim and sim.get("accelerators"):
        figs["speedup"] = speedup_figure(sim)
        figs["energy"] = energy_figure(sim)
        figs["energy_breakdown"] = energy_breakdown_figure(results)
    if results.get("layers"):
        figs["layer_sparsity"] = layer_sparsity_figure(results)
    return figs
