"""``report.md`` and a self-contained ``report.html`` with the same content, from one list of blocks.

The report is first built as a list of blocks (headings, paragraphs, tables, figures, code), then
rendered twice: Markdown (figures as ``plots/<stem>.png`` next to it) and HTML (figures embedded as
base64 PNG data URIs, inline CSS, no external asset or script), so both always say the same thing.
"""

from __future__ import annotations

import base64
import html
import io
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bitvert.errors import InputError
from bitvert.pipeline.presets import bbs_methods

__all__ = [
    "Block",
    "build_blocks",
    "format_bytes",
    "render_html",
    "render_markdown",
    "summary_table",
    "simulation_table",
    "bound_sentences",
    "text_table",
    "write_report",
]


@dataclass
class Block:
    """One element of the report: ``kind`` is ``h1``, ``h2``, ``p``, ``list``, ``table``, ``figure`` or ``code``."""

    kind: str
    text: str = ""
    items: list[str] = field(default_factory=list)
    headers: list[str] = field(default_factory=list)
    rows: list[list[str]] = field(default_factory=list)
    figure: str = ""


def _f(v: Any, digits: int = 4) -> str:
    if v is None:
        return "–"
    if isinstance(v, bool):
        return "yes" if v else "NO"
    if isinstance(v, int):
        return f"{v:,}"
    if isinstance(v, float):
        if not math.isfinite(v):
            return "–"
        return f"{v:.{digits}g}"
    return str(v)


def _x(v: float | None, digits: int = 2) -> str:
    return "–" if v is None else f"{v:.{digits}f}×"


def format_bytes(n: int | None) -> str:
    """``1234567`` -> ``"1.18 MiB"``."""
    if n is None:
        return "–"
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{int(value)} B" if unit == "B" else f"{value:.2f} {unit}"
        value /= 1024
    return f"{value:.2f} GiB"


def _summary_rows(results: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    head = results["headline_metric"]
    fid = results.get("fidelity_metric")
    headers = ["variant", head] + ([fid] if fid else []) + [
        "eff. bits", "file size", "weights", "weights vs INT8", "accelerator", "speedup vs Stripes",
        "energy vs SparTen", "verified"]
    rows = []
    for name, v in results["variants"].items():
        row = [name, _f(v["metrics"].get(head))]
        if fid:
            row.append(_f(v["metrics"].get(fid)))
        row += [
            f"{v['effective_bits']:.3f}", format_bytes(v.get("file_bytes")), format_bytes(v.get("weight_bytes")),
            _x(v.get("weight_ratio_vs_int8")), v.get("accelerator") or "–",
            _x(v.get("speedup_vs_stripes")), _f(v.get("energy_vs_sparten"), 3), _f(v.get("verified")),
        ]
        rows.append(row)
    return headers, rows


def summary_table(results: dict[str, Any]) -> str:
    """The summary table as aligned plain text (for the console)."""
    headers, rows = _summary_rows(results)
    keep = [i for i, h in enumerate(headers) if h not in ("weights", "verified")]
    headers = [headers[i] for i in keep]
    rows = [[r[i] for i in keep] for r in rows]
    return text_table(headers, rows)


def text_table(headers: list[str], rows: list[list[str]]) -> str:
    """An aligned plain-text table (first column left-aligned, the others right-aligned)."""
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(headers)]
    line = "  ".join(h.rjust(w) if i else h.ljust(w) for i, (h, w) in enumerate(zip(headers, widths)))
    out = [line, "-" * len(line)]
    for r in rows:
        out.append("  ".join(c.rjust(w) if i else c.ljust(w) for i, (c, w) in enumerate(zip(r, widths))))
    return "\n".join(out)


def _cycles(v: float) -> str:
    return f"{v:,.0f}"


def _bound_word(acc: dict[str, Any]) -> str:
    return "compute" if acc["bound"] == "compute" else "DRAM"


def _simulation_rows(summary: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    headers = ["accelerator", "variant", "compute cycles", "DRAM cycles", "latency cycles", "bound",
               "speedup vs Stripes", "energy vs SparTen"]
    rows = []
    for name, acc in summary["accelerators"].items():
        variants = sorted({t["variant"] for t in acc["per_workload"].values()})
        rows.append([name, ",".join(variants), _cycles(acc["compute_cycles"]), _cycles(acc["dram_cycles"]),
                     _cycles(acc["cycles"]), _bound_word(acc), _x(acc["speedup_vs_stripes"], 3),
                     _f(acc["energy_vs_sparten"], 3)])
    return headers, rows


def simulation_table(summary: dict[str, Any]) -> str:
    """A ``summary.json`` as an aligned table: per accelerator its variant, compute and DRAM cycles side
    by side, latency (sum over layers of max(compute, DRAM)), the bound that sets it, and the ratios."""
    return text_table(*_simulation_rows(summary))


def bound_sentences(summary: dict[str, Any]) -> list[str]:
    """One sentence per accelerator of a ``summary.json`` saying which bound sets its latency."""
    from bitvert.hardware.simulate import bound_sentence

    return [bound_sentence(name, acc) for name, acc in summary["accelerators"].items()]


def _story(results: dict[str, Any]) -> list[str]:
    """One sentence per BBS preset: bits, size, metric change, speedup and energy."""
    head = results["headline_metric"]
    variants = results["variants"]
    fp32 = variants["fp32"]["metrics"].get(head)
    out = []
    for name, v in variants.items():
        if v["method"] not in bbs_methods():
            continue
        parts = [f"**{name}** stores the quantized weights in {v['effective_bits']:.2f} bits per weight "
                 f"({_x(v.get('weight_ratio_vs_int8'))} smaller encoded weights than INT8)"]
        m = v["metrics"].get(head)
        if m is not None and fp32 is not None:
            parts.append(f"{head} {m:.4g} (FP32 {fp32:.4g})")
        if v.get("accelerator"):
            parts.append(f"on {v['accelerator']} it runs {_x(v.get('speedup_vs_stripes'))} faster than Stripes "
                         f"at {_f(v.get('energy_vs_sparten'), 3)}× SparTen's energy")
        out.append("; ".join(parts) + ".")
    return out


def _accelerator_rows(results: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    sim = results["simulation"]
    headers = ["accelerator", "compute cycles", "DRAM cycles", "cycles", "bound", "latency (ms)",
               "speedup vs Stripes", "energy (µJ)", "energy vs SparTen", "weight bits / weight", "area (mm², 28 nm)"]
    rows = []
    for name, acc in sim["accelerators"].items():
        per = list(acc["per_workload"].values())
        latency = sum(p["latency_ms"] for p in per)
        bpw = per[0].get("bits_per_weight") if len(per) == 1 else None
        area = per[0].get("area_total_mm2") if per else None
        rows.append([name, _cycles(acc["compute_cycles"]), _cycles(acc["dram_cycles"]), _cycles(acc["cycles"]),
                     _bound_word(acc), _f(latency, 4), _x(acc["speedup_vs_stripes"]), _f(acc["energy_pj"] / 1e6, 4),
                     _f(acc["energy_vs_sparten"], 3), _f(bpw, 3), _f(area, 3)])
    return headers, rows


def _input_words(simulation: dict[str, Any], cfg: dict[str, Any]) -> str:
    """What the simulated input was, in words (older results without ``example_input`` say the batch)."""
    example = simulation.get("example_input")
    if example and example.get("sentence"):
        return str(example["sentence"])
    return f"one calibration batch (batch {cfg.get('simulate_batch', 1)})"


def _metric_rows(results: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    keys: list[str] = []
    for v in results["variants"].values():
        keys += [k for k in v["metrics"] if k not in keys]
    rows = [[name] + [_f(v["metrics"].get(k), 5) for k in keys] for name, v in results["variants"].items()]
    return ["variant"] + keys, rows


def _noise_blocks(results: dict[str, Any]) -> list[Block]:
    """The "Noise band" section: measured spread over CPU capabilities and sampling intervals."""
    noise = results.get("noise") or {}
    cpu = noise.get("cpu_capability") or {}
    if not cpu:
        return []
    env = results.get("environment") or {}
    rows = []
    for metric, band in cpu.items():
        if band is None:
            rows.append([metric, "not measured for this model", "–"])
        else:
            rows.append([metric, f"±{band['spread']:.4g}", f"{', '.join(band['capabilities'])}: {band['measured']}"])
    blocks = [
        Block("h2", "Noise band"),
        Block("p", f"Differences smaller than these are not meaningful. torch ran with CPU capability "
                   f"`{env.get('cpu_capability', '?')}`; other instruction sets run other kernels, which flip "
                   "a few INT8 activation roundings and move the metrics of quantized variants by up to:"),
        Block("table", headers=["task metric", "spread over CPU capabilities", "measured"], rows=rows),
    ]
    sampling = noise.get("sampling_95") or {}
    if sampling:
        srows = [[name, metric, _f(results["variants"][name]["metrics"].get(metric), 4), f"{lo:.4f} – {hi:.4f}"]
                 for name, bands in sampling.items() for metric, (lo, hi) in bands.items()]
        blocks += [Block("p", "Sampling: 95 % Wilson interval of each fraction over the examples evaluated "
                              "(the variants share the examples, so their differences are less uncertain than "
                              "these intervals; the interval says what another sample of the task could give):"),
                   Block("table", headers=["variant", "metric", "value", "95 % interval"], rows=srows)]
    return blocks


def _layer_rows(results: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    pruning = [n for n, v in results["variants"].items() if v["method"] not in ("fp32",)]
    headers = ["layer", "shape", "zero bits (2's c.)", "zero bits (s.-m.)", "BBS sparsity"] + \
              [f"bits {n}" for n in pruning]
    rows = []
    for layer in results["layers"]:
        s = layer["int8_sparsity"]
        rows.append([layer["name"], "×".join(str(d) for d in layer["shape"]),
                     _f(s["zero_bit_sparsity_twos"], 3), _f(s["zero_bit_sparsity_sign_magnitude"], 3),
                     _f(s["bbs_sparsity"], 3)]
                    + [_f(layer["effective_bits"].get(n), 3) for n in pruning])
    return headers, rows


_GLOSSARY = [
    "**effective bits** (eff. bits): weight storage of the quantized layers divided by their number of weights. A pruned "
    "group of g = 32 weights costs (8 − N)·32 + 8 bits (the 8 bits are its metadata: 2-bit redundant-column "
    "count and 6-bit BBS constant); sensitive channels and INT8 layers cost 8 bits per weight; round-to-nearest "
    "costs 8 − N bits per normal weight and has no metadata. Per-channel scales are not counted.",
    "**file size**: bytes of the encoded `*.bbs.safetensors` file of the variant (in `encoded/`), "
    "including the tensors that are not quantized (embeddings, norms, biases) and the header; **weights**: "
    "bytes of the encoded quantized weight tensors alone (payload + metadata + channel index); "
    "**weights vs INT8**: INT8's weight bytes divided by the variant's.",
    "**verified**: the file was read back, every decoded integer weight equals the pruning "
    "pipeline's bit for bit, and the model loaded from the file gives exactly the pruned model's output "
    "on one input.",
    "**speedup vs Stripes**: cycles of Stripes (dense bit-serial, 8 weight bits) divided by the accelerator's "
    "cycles on this model's layers (layer latency = max(compute, DRAM) cycles); **energy vs SparTen**: the "
    "accelerator's energy per inference divided by SparTen's (28 nm energy table). BitVert applies the same "
    "preset (β, N, method, g) to the model's real INT8 weights; BitWave applies its bit flip.",
    "**fidelity** metrics compare each variant with the FP32 model on the same inputs (cosine of the "
    "embeddings, agreement of the top-1 predictions, KL divergence of the logits); task metrics with a "
    "`_fp32` suffix are the FP32 model's on the same examples.",
    "**BBS sparsity**: the fraction of bits BitVert can skip in the INT8 weights when every 32-weight group "
    "column is processed through its minority bit value (ones or zeros); **zero bits**: the fraction of "
    "zero bits that zero-bit-skipping designs exploit, in two's complement and in sign-magnitude.",
]


def build_blocks(results: dict[str, Any], figures: list[str]) -> list[Block]:
    """The report as blocks (shared by the Markdown and HTML renderers)."""
    try:
        model = results["model"]
        variants = results["variants"]
    except (KeyError, TypeError):
        raise InputError("results must be a results.json document (model, variants, simulation, ...)") from None
    from bitvert.report.plots import FIGURE_TITLES

    cfg = results["config"]
    env = results["environment"]
    blocks = [
        Block("h1", f"BBS study: {model['name']}"),
        Block("p", f"{model.get('description') or model['name']}. Family {model['family']}: "
                   f"{model['n_parameters']:,} parameters, {model['n_weights_quantized']:,} of them in quantized layers. "
                   f"Task `{results['task']}` on {'all' if results['eval_limit'] is None else results['eval_limit']} "
                   f"examples per evaluation; seed {cfg['seed']}; bitvert {env['versions']['bitvert']}."),
    ]
    story = _story(results)
    if story:
        blocks.append(Block("list", items=story))
    headers, rows = _summary_rows(results)
    blocks += [Block("h2", "Summary"), Block("table", headers=headers, rows=rows)]
    described = [f"`{name}`: {v['description']}" for name, v in variants.items()
                 if name != "fp32" and v.get("description")]
    if described:  # what each row is, e.g. whether the INT8 baseline quantizes activations
        blocks += [Block("p", "Variants:"), Block("list", items=described)]
    h, r = _metric_rows(results)
    blocks += [Block("h2", "All metrics"), Block("table", headers=h, rows=r)]
    blocks += _noise_blocks(results)
    if results.get("simulation"):
        h, r = _accelerator_rows(results)
        wl = results["workload_check"]
        blocks += [
            Block("h2", "Accelerators"),
            Block("p", f"Workload: {wl['workload_layers']} layer calls imported with forward hooks from "
                       f"{_input_words(results['simulation'], cfg)}; the simulated weights equal the "
                       f"pipeline's INT8 weights in {wl['layers_equal_to_int8']} of "
                       f"{wl['layers_compared_with_int8']} layers. Layer latency is max(compute, DRAM) cycles; "
                       "**compute cycles** and **DRAM cycles** are the sums of each bound over the layers, "
                       "**cycles** the sum of the layer latencies."),
            Block("table", headers=h, rows=r),
            Block("p", "Which bound sets each design's latency:"),
            Block("list", items=bound_sentences(results["simulation"])),
        ]
    blocks.append(Block("h2", "Plots"))
    for stem in figures:
        blocks.append(Block("figure", FIGURE_TITLES.get(stem, stem), figure=stem))
    h, r = _layer_rows(results)
    blocks += [Block("h2", "Per-layer bits and sparsity"), Block("table", headers=h, rows=r)]
    blocks += [Block("h2", "What the numbers mean"), Block("list", items=list(_GLOSSARY))]
    timings = results.get("timings_s") or {}
    cpu = results.get("cpu_seconds") or {}
    blocks += [Block("h2", "Stage timings"),
               Block("p", "Wall seconds per stage, and the CPU seconds of the process (all threads; on a busy "
                          "machine the wall times grow, the CPU times much less)."),
               Block("table", headers=["stage", "wall seconds", "CPU seconds"],
                     rows=[[k, f"{v:.2f}", f"{cpu[k]:.2f}" if k in cpu else "–"] for k, v in timings.items()])]
    if "write" not in timings:
        blocks.append(Block("p", "The `write` stage (plots and this report) is timed in `results.json`."))
    presets = {n: v["preset"] for n, v in variants.items() if v.get("preset")}
    sim_cfg = (results.get("simulation") or {}).get("configs", {})
    blocks += [
        Block("h2", "Configuration"),
        Block("p", "Study (`bitvert run` options):"), Block("code", json.dumps(cfg, indent=2)),
        Block("p", "Resolved pipeline presets:"), Block("code", json.dumps(presets, indent=2)),
        Block("p", "Accelerator configurations:"), Block("code", json.dumps(sim_cfg, indent=2)),
        Block("h2", "Environment"), Block("code", json.dumps(env, indent=2)),
    ]
    return blocks


def _md_cell(s: str) -> str:
    return s.replace("|", "\\|").replace("\n", " ")


def render_markdown(blocks: list[Block], figure_dir: str = "plots") -> str:
    """Markdown; figures refer to ``<figure_dir>/<stem>.png``."""
    out: list[str] = []
    for b in blocks:
        if b.kind == "h1":
            out.append(f"# {b.text}\n")
        elif b.kind == "h2":
            out.append(f"## {b.text}\n")
        elif b.kind == "p":
            out.append(b.text + "\n")
        elif b.kind == "list":
            out.append("\n".join(f"- {i}" for i in b.items) + "\n")
        elif b.kind == "table":
            out.append("| " + " | ".join(_md_cell(h) for h in b.headers) + " |")
            out.append("|" + "|".join("---" if i == 0 else "---:" for i in range(len(b.headers))) + "|")
            out += ["| " + " | ".join(_md_cell(c) for c in row) + " |" for row in b.rows]
            out.append("")
        elif b.kind == "figure":
            out.append(f"![{b.text}]({figure_dir}/{b.figure}.png)\n")
            out.append(f"*{b.text}*\n")
        elif b.kind == "code":
            out.append("```json\n" + b.text + "\n```\n")
        else:
            raise InputError(f"unknown report block kind {b.kind!r}")
    return "\n".join(out)


_CSS = """
body{font-family:-apple-system,'Segoe UI',Helvetica,Arial,sans-serif;max-width:1260px;margin:2em auto;
padding:0 1em;color:#222;line-height:1.45}
h1{border-bottom:2px solid #ddd;padding-bottom:.2em}h2{border-bottom:1px solid #eee;margin-top:1.6em}
table{border-collapse:collapse;margin:.6em 0;font-size:.8em;display:block;overflow-x:auto}
th,td{border:1px solid #ccc;padding:.2em .45em;text-align:right;white-space:nowrap}
th:first-child,td:first-child{text-align:left}th{background:#f3f3f3}
figure{margin:1em 0}figure img{max-width:100%;border:1px solid #eee}figcaption{font-style:italic;color:#555}
pre{background:#f6f8fa;padding:.7em;overflow-x:auto;font-size:.8em;max-height:28em}
code{background:#f6f8fa;padding:0 .2em}
"""


def _inline(text: str) -> str:
    """Escape, then the two inline Markdown forms the report uses: **bold** and `code`."""
    s = html.escape(text)
    parts = s.split("**")
    s = "".join(f"<strong>{p}</strong>" if i % 2 else p for i, p in enumerate(parts))
    parts = s.split("`")
    return "".join(f"<code>{p}</code>" if i % 2 else p for i, p in enumerate(parts))


def render_html(blocks: list[Block], images: dict[str, bytes]) -> str:
    """Self-contained HTML: inline CSS, figures as base64 PNG data URIs (``images``: stem -> PNG bytes)."""
    title = next((b.text for b in blocks if b.kind == "h1"), "BBS study")
    out = ["<!DOCTYPE html>", "<html lang=\"en\"><head><meta charset=\"utf-8\">",
           f"<title>{html.escape(title)}</title><style>{_CSS}</style></head><body>"]
    for b in blocks:
        if b.kind in ("h1", "h2"):
            out.append(f"<{b.kind}>{_inline(b.text)}</{b.kind}>")
        elif b.kind == "p":
            out.append(f"<p>{_inline(b.text)}</p>")
        elif b.kind == "list":
            out.append("<ul>" + "".join(f"<li>{_inline(i)}</li>" for i in b.items) + "</ul>")
        elif b.kind == "table":
            head = "".join(f"<th>{html.escape(h)}</th>" for h in b.headers)
            body = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>" for row in b.rows)
            out.append(f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>")
        elif b.kind == "figure":
            if b.figure not in images:
                raise InputError(f"figure {b.figure!r} has no image; render every figure before the HTML")
            data = base64.b64encode(images[b.figure]).decode("ascii")
            out.append(f"<figure id=\"fig-{html.escape(b.figure)}\"><img alt=\"{html.escape(b.text)}\" "
                       f"src=\"data:image/png;base64,{data}\"><figcaption>{html.escape(b.text)}</figcaption></figure>")
        elif b.kind == "code":
            out.append(f"<pre><code>{html.escape(b.text)}</code></pre>")
        else:
            raise InputError(f"unknown report block kind {b.kind!r}")
    out.append("</body></html>")
    return "\n".join(out) + "\n"


def write_report(result: Any, folder: Path, dpi: int = 110) -> dict[str, Path]:
    """Write ``plots/*.png``, ``report.md`` and ``report.html`` for ``result`` (a StudyResult or its dict)."""
    from bitvert.report.plots import all_figures
    from bitvert.report.results import finite

    results = finite(result.to_dict() if hasattr(result, "to_dict") else result)
    folder = Path(folder)
    plots = folder / "plots"
    plots.mkdir(parents=True, exist_ok=True)
    images: dict[str, bytes] = {}
    for stem, fig in all_figures(results).items():
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=dpi, metadata={"Software": None})
        images[stem] = buf.getvalue()
        (plots / f"{stem}.png").write_bytes(images[stem])
    blocks = build_blocks(results, list(images))
    md = folder / "report.md"
    md.write_text(render_markdown(blocks), encoding="utf-8")
    page = folder / "report.html"
    page.write_text(render_html(blocks, images), encoding="utf-8")
    return {"report_md": md, "report_html": page, "plots": plots}
