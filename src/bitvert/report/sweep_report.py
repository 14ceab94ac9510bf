"""The report of a sweep folder: ``report.html`` (self-contained) and ``plots/*.png`` from its results table.

Figures (one panel per model):

* ``pareto_metric`` / ``pareto_fidelity`` -- the task metric and the fidelity to FP32 against effective
  weight bits, every finished point coloured by method, each method's Pareto front drawn as a step line
  (fewer bits and a higher value are better);
* ``pareto_speedup`` -- speedup over Stripes against fidelity, per accelerator, with each accelerator's front;
* ``axis_<name>`` -- fidelity (or the task metric) and effective bits along each swept axis (N, g, β,
  array rows...), one line per combination of the other parameters, as in the paper's sensitivity figures.

``bitvert sweep --report-only DIR`` redraws it from ``results.parquet``.
"""

from __future__ import annotations

import io
import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from bitvert.errors import InputError

__all__ = ["pareto_mask", "sweep_figures", "write_sweep_report"]

_NOT_AXES = frozenset({"point_id", "status", "error", "model", "task", "eval_limit", "preset", "method",
                       "accelerator", "design", "headline_metric", "fidelity_metric", "metric", "fidelity",
                       "fp32_metric", "int8_metric", "effective_bits", "compression_vs_int8", "weight_sqnr_db",
                       "sensitive_channel_fraction", "file_bytes", "weight_bytes", "file_ratio_vs_int8", "verified",
                       "cycles", "compute_cycles", "dram_cycles", "speedup_vs_stripes", "energy_pj",
                       "energy_vs_sparten", "wall_s", "cpu_s", "finished_utc", "seed", "batch", "seq_len"})
_ACC_COLORS = ("#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#17becf")


def pareto_mask(x: Sequence[float], y: Sequence[float], minimize_x: bool = True) -> np.ndarray:
    """Which points are Pareto-optimal for (smaller ``x`` when ``minimize_x``, else larger) and larger ``y``:
    no other point is at least as good in both and better in one."""
    xs = np.asarray(x, dtype=float) * (1.0 if minimize_x else -1.0)
    ys = np.asarray(y, dtype=float)
    if xs.size == 0:
        return np.zeros(0, dtype=bool)
    order = np.lexsort((-ys, xs))  # by x ascending, ties: best y first
    best_before = np.concatenate(([-np.inf], np.maximum.accumulate(ys[order])[:-1]))
    keep = ys[order] > best_before
    mask = np.zeros(xs.size, dtype=bool)
    mask[order[keep]] = True
    return mask


def _ok(rows: Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    return [r for r in rows if r.get("status") == "ok"]


def _by(rows: Sequence[Mapping[str, Any]], key: str) -> dict[Any, list[Mapping[str, Any]]]:
    out: dict[Any, list[Mapping[str, Any]]] = {}
    for r in rows:
        out.setdefault(r.get(key), []).append(r)
    return out


def _pareto_panel(ax: Any, rows: Sequence[Mapping[str, Any]], xkey: str, ykey: str, group: str,
                  minimize_x: bool) -> bool:
    from bitvert.pipeline.presets import method_label
    from bitvert.report.plots import _style

    drawn = False
    for i, (name, grp) in enumerate(sorted(_by(rows, group).items(), key=lambda kv: str(kv[0]))):
        pts = [(float(r[xkey]), float(r[ykey])) for r in grp if r.get(xkey) is not None and r.get(ykey) is not None]
        if not pts:
            continue
        xs, ys = np.array(pts).T
        if group == "method":
            color, marker = _style(str(name))
            label = method_label(str(name))
        else:
            color, marker = _ACC_COLORS[i % len(_ACC_COLORS)], "o"
            label = str(name) if name is not None else "no hardware"
        ax.scatter(xs, ys, color=color, marker=marker, s=22, alpha=0.45, linewidths=0)
        front = pareto_mask(xs, ys, minimize_x)
        order = np.argsort(xs[front])
        ax.step(xs[front][order], ys[front][order], where="post" if minimize_x else "pre", color=color,
                linewidth=1.4, marker=marker, markersize=5, label=f"{label} (front)")
        drawn = True
    return drawn


def _figure(width: float, height: float) -> Any:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), constrained_layout=True)
    FigureCanvasAgg(fig)
    return fig


def _pareto_figure(rows: Sequence[Mapping[str, Any]], xkey: str, ykey: str, group: str, title: str,
                   xlabel: str, minimize_x: bool) -> Any | None:
    models = _by(rows, "model")
    fig = _figure(5.2 * len(models), 4.0)
    any_drawn = False
    for j, (model, mrows) in enumerate(sorted(models.items())):
        ax = fig.add_subplot(1, len(models), j + 1)
        metric = next((r.get("fidelity_metric" if ykey == "fidelity" else "headline_metric") for r in mrows), ykey)
        if _pareto_panel(ax, mrows, xkey, ykey, group, minimize_x):
            any_drawn = True
        ax.set_xlabel(xlabel)
        ax.set_ylabel(str(metric if ykey in ("metric", "fidelity") else ykey))
        ax.set_title(f"{model}: {title}", fontsize=10)
        if minimize_x:
            ax.invert_xaxis()
        ax.grid(True, linewidth=0.3)
        ax.legend(fontsize=7, loc="best")
    return fig if any_drawn else None


def swept_axes(rows: Sequence[Mapping[str, Any]]) -> list[str]:
    """Parameter columns with more than one value among the finished points (the swept axes)."""
    axes = []
    for key in dict.fromkeys(k for r in rows for k in r):
        if key in _NOT_AXES:
            continue
        values = {json.dumps(r.get(key), sort_keys=True) for r in rows}
        if len(values) > 1:
            axes.append(key)
    return axes


def _axis_figure(rows: Sequence[Mapping[str, Any]], axis: str, others: Sequence[str]) -> Any | None:
    models = _by(rows, "model")
    fig = _figure(10.0, 3.4 * len(models))
    drawn = False
    for j, (model, mrows) in enumerate(sorted(models.items())):
        yk = "fidelity" if any(r.get("fidelity") is not None for r in mrows) else "metric"
        ylabel = next((r.get("fidelity_metric" if yk == "fidelity" else "headline_metric") for r in mrows), yk)
        numeric = all(isinstance(r.get(axis), (int, float)) and not isinstance(r.get(axis), bool) for r in mrows)
        if not numeric:
            continue
        left = fig.add_subplot(len(models), 2, 2 * j + 1)
        right = fig.add_subplot(len(models), 2, 2 * j + 2)
        keys = [k for k in ("method", *others, "accelerator") if k != axis]
        lines = _by([{**r, "_k": tuple(str(r.get(k)) for k in keys)} for r in mrows], "_k")
        n = 0
        for key, grp in sorted(lines.items()):
            pts = sorted((float(r[axis]), r.get(yk), r.get("effective_bits")) for r in grp if r.get(yk) is not None)
            if len({p[0] for p in pts}) < 2:
                continue
            label = ", ".join(f"{k}={v}" for k, v in zip(keys, key) if v != "None")
            xs = [p[0] for p in pts]
            left.plot(xs, [p[1] for p in pts], marker="o", markersize=3, linewidth=1,
                      label=label if n < 10 else None)
            right.plot(xs, [p[2] for p in pts], marker="o", markersize=3, linewidth=1)
            n += 1
        if n:
            drawn = True
        left.set_xlabel(axis)
        left.set_ylabel(str(ylabel))
        left.set_title(f"{model}: {ylabel} along {axis}", fontsize=10)
        right.set_xlabel(axis)
        right.set_ylabel("effective bits")
        right.set_title(f"{model}: effective bits along {axis}", fontsize=10)
        for ax in (left, right):
            ax.grid(True, linewidth=0.3)
        if n:
            left.legend(fontsize=6, loc="best")
    return fig if drawn else None


def sweep_figures(rows: Sequence[Mapping[str, Any]]) -> dict[str, tuple[str, Any]]:
    """The report's figures by file stem: (caption, matplotlib figure), from the finished points."""
    ok = _ok(rows)
    figs: dict[str, tuple[str, Any]] = {}
    specs = (
        ("pareto_metric", "effective_bits", "metric", "method", "task metric vs effective bits",
         "Task metric vs effective weight bits, per method (lines: Pareto fronts)"),
        ("pareto_fidelity", "effective_bits", "fidelity", "method", "fidelity vs effective bits",
         "Fidelity to FP32 vs effective weight bits, per method (lines: Pareto fronts)"),
    )
    for stem, xk, yk, group, title, caption in specs:
        fig = _pareto_figure(ok, xk, yk, group, title, "effective weight bits", True)
        if fig is not None:
            figs[stem] = (caption, fig)
    hw = [r for r in ok if r.get("speedup_vs_stripes") is not None]
    if hw:
        yk = "fidelity" if any(r.get("fidelity") is not None for r in hw) else "metric"
        fig = _pareto_figure(hw, yk, "speedup_vs_stripes", "accelerator", f"speedup vs {yk}", yk, False)
        if fig is not None:
            figs["pareto_speedup"] = (f"Speedup over Stripes vs {yk}, per accelerator (lines: Pareto fronts)", fig)
    axes = swept_axes(ok)
    for axis in axes:
        fig = _axis_figure(ok, axis, [a for a in axes if a != axis])
        if fig is not None:
            figs[f"axis_{axis}"] = (f"Along {axis}: fidelity and effective bits (one line per setting of the "
                                    "other parameters)", fig)
    return figs


def _fmt(v: Any) -> str:
    if v is None:
        return "–"
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)


def write_sweep_report(out_dir: str | os.PathLike[str], dpi: int = 100) -> Path:
    """Write ``report.html`` and ``plots/*.png`` of a sweep folder from its results table.

    Raises:
        InputError: ``out_dir`` holds no sweep results.
    """
    from bitvert.report.render import Block, render_html
    from bitvert.report.sweep_table import SWEEP_FILE, read_results

    out = Path(out_dir)
    rows = read_results(out)
    if not rows:
        raise InputError(f"{str(out)!r} has no sweep results (results.parquet / results.csv); run "
                         "`bitvert sweep SPEC.yaml --out DIR` first")
    try:
        spec = json.loads((out / SWEEP_FILE).read_text(encoding="utf-8")).get("spec", {})
    except (OSError, ValueError):
        spec = {}
    ok, failed = _ok(rows), [r for r in rows if r.get("status") != "ok"]
    plots = out / "plots"
    plots.mkdir(exist_ok=True)
    images: dict[str, bytes] = {}
    blocks = [Block("h1", f"Sweep: {spec.get('name', out.name)}")]
    if spec.get("description"):
        blocks.append(Block("p", str(spec["description"])))
    cpu = sum(float(r["cpu_s"]) for r in rows if r.get("cpu_s") is not None)
    blocks.append(Block("p", f"{len(rows)} points: {len(ok)} finished, {len(failed)} failed. Swept axes: "
                             f"{', '.join(swept_axes(ok)) or 'none'}. Worker CPU time of the recorded jobs: "
                             f"{cpu:.0f} s (a job's time is on each of its points)."))
    figures = sweep_figures(rows)
    blocks.append(Block("h2", "Plots"))
    for stem, (caption, fig) in figures.items():
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=dpi, metadata={"Software": None})
        images[stem] = buf.getvalue()
        (plots / f"{stem}.png").write_bytes(images[stem])
        blocks.append(Block("figure", caption, figure=stem))
    cols = ["model", "preset", "method", "columns", "group_size", "sensitive_fraction", "accelerator",
            "headline_metric", "metric", "fidelity", "effective_bits", "file_bytes", "speedup_vs_stripes",
            "energy_vs_sparten", "wall_s"]
    extra = [a for a in swept_axes(ok) if a not in cols]
    cols = cols[:6] + extra + cols[6:]
    blocks += [Block("h2", "Points"),
               Block("table", headers=cols, rows=[[_fmt(r.get(c)) for c in cols] for r in ok])]
    if failed:
        blocks += [Block("h2", "Failed points"),
                   Block("table", headers=["point", "model", "preset", "parameters", "error"],
                         rows=[[str(r["point_id"]), str(r.get("model")), str(r.get("preset")),
                                ", ".join(f"{a}={_fmt(r.get(a))}" for a in ("method", "columns", "group_size",
                                                                             "sensitive_fraction")),
                                str(r.get("error"))] for r in failed])]
    blocks += [Block("h2", "Spec"), Block("code", json.dumps(spec, indent=2)),
               Block("p", "The full table is `results.parquet` / `results.csv` in this folder.")]
    page = out / "report.html"
    tmp = out / f".report.html.tmp-{os.getpid()}"
    tmp.write_text(render_html(blocks, images), encoding="utf-8")
    os.replace(tmp, page)
    return page
