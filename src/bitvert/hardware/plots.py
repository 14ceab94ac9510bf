"""Figures like the paper's Figs. 12-13, from a ``summary.json`` document.

Functions return a :class:`matplotlib.figure.Figure` built on the Agg
backend (no pyplot state, no ``show``); the caller saves it.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from bitvert.errors import InputError

__all__ = ["speedup_figure", "energy_figure"]

_COMPONENTS = (("dram", "off-chip (DRAM)"), ("sram", "on-chip buffers"), ("core", "core (PEs + schedulers)"))


def _workloads_and_accels(summary: dict[str, Any]) -> tuple[list[str], list[str]]:
    try:
        accs = list(summary["accelerators"])
        wls = list(summary["workloads"])
    except (KeyError, TypeError):
        raise InputError("summary must be a summary.json document with 'accelerators' and 'workloads'") from None
    if not accs or not wls:
        raise InputError("summary has no accelerators or no workloads to plot")
    return wls, accs


def _geo(values: list[float]) -> float:
    return float(math.exp(sum(math.log(v) for v in values) / len(values)))


def _new_figure(width: float) -> Figure:
    fig = Figure(figsize=(width, 3.6), constrained_layout=True)
    FigureCanvasAgg(fig)
    return fig


def speedup_figure(summary: dict[str, Any]) -> Figure:
    """Grouped bars: speedup over Stripes per workload and the geometric mean (Fig. 12 style)."""
    wls, accs = _workloads_and_accels(summary)
    data = np.array(
        [[summary["accelerators"][a]["per_workload"][w]["speedup_vs_stripes"] for w in wls] for a in accs]
    )
    geo = np.array([_geo(list(row)) for row in data])
    data = np.concatenate([data, geo[:, None]], axis=1)
    labels = wls + ["geomean"]
    fig = _new_figure(max(6.0, 1.1 * len(labels) + 2))
    ax = fig.add_subplot(1, 1, 1)
    width = 0.8 / len(accs)
    x = np.arange(len(labels))
    for i, a in enumerate(accs):
        bars = ax.bar(x + (i - (len(accs) - 1) / 2) * width, data[i], width, label=a)
        ax.bar_label(bars, labels=[f"{data[i, -1]:.2f}" if j == len(labels) - 1 else "" for j in range(len(labels))],
                     fontsize=6, rotation=90, padding=2)
    ax.set_xticks(x, labels, rotation=20)
    ax.set_ylabel("speedup over Stripes")
    ax.axhline(1.0, color="black", linewidth=0.6)
    title = "Normalized speedup"
    if summary.get("synthetic_weights"):
        title += " (synthetic weights)"
    ax.set_title(title)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    return fig


def energy_figure(summary: dict[str, Any]) -> Figure:
    """Stacked bars: energy normalized to SparTen, split off-chip / buffers / core (Fig. 13 style)."""
    wls, accs = _workloads_and_accels(summary)
    labels = wls + ["geomean"]
    fig = _new_figure(max(8.0, 1.6 * len(labels) + 2))
    ax = fig.add_subplot(1, 1, 1)
    n = len(accs)
    width = 0.8 / n
    x = np.arange(len(labels))
    colors = {"dram": "#4c72b0", "sram": "#dd8452", "core": "#55a868"}
    for i, a in enumerate(accs):
        parts = {k: [] for k, _ in _COMPONENTS}
        totals = []
        for w in wls:
            t = summary["accelerators"][a]["per_workload"][w]
            ref = t["energy_pj"] / t["energy_vs_sparten"]
            comp = t["energy_by_component_pj"]
            parts["dram"].append(comp["dram"] / ref)
            parts["sram"].append((comp["sram_read"] + comp["sram_write"]) / ref)
            parts["core"].append((comp["pe"] + comp["scheduler"]) / ref)
            totals.append(t["energy_vs_sparten"])
        g = _geo(totals)
        share = {k: sum(v) / sum(totals) for k, v in parts.items()}
        for k in parts:
            parts[k].append(g * share[k])
        bottom = np.zeros(len(labels))
        xs = x + (i - (n - 1) / 2) * width
        for k, name in _COMPONENTS:
            vals = np.array(parts[k])
            ax.bar(xs, vals, width, bottom=bottom, color=colors[k], edgecolor="white", linewidth=0.3,
                   label=name if i == 0 else None)
            bottom += vals
        for xi in xs:
            ax.text(xi, -0.02, a, rotation=90, fontsize=5, ha="center", va="top")
    ax.set_xticks(x, labels)
    ax.tick_params(axis="x", pad=45)
    ax.set_ylabel("energy / SparTen")
    title = "Normalized energy"
    if summary.get("synthetic_weights"):
        title += " (synthetic weights)"
    ax.set_title(title)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    return fig
