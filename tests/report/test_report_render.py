"""Report rendering: Markdown / HTML from blocks, the console table, number formatting, bad input."""

from __future__ import annotations

import base64
import copy
import json
import math
import re
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bitvert.errors import InputError
from bitvert.report.plots import FIGURE_TITLES, accuracy_figure, all_figures, layer_sparsity_figure
from bitvert.report.render import (
    Block,
    build_blocks,
    format_bytes,
    render_html,
    render_markdown,
    summary_table,
    write_report,
)
from bitvert.report.results import finite


def _acc(cycles: float, energy: float, speedup: float, vs_sparten: float, dram: float = 300.0) -> dict[str, Any]:
    """One accelerator entry; one layer whose latency is max(compute = cycles, DRAM = dram)."""
    comp = {"pe": energy * 0.4, "scheduler": energy * 0.1, "sram_read": energy * 0.2, "sram_write": energy * 0.1,
            "dram": energy * 0.2}
    latency = max(cycles, dram)
    cyc = {"cycles": latency, "compute_cycles": cycles, "dram_cycles": dram,
           "compute_bound_cycles": latency if cycles >= dram else 0.0,
           "dram_bound_cycles": 0.0 if cycles >= dram else latency, "bound": "compute" if cycles >= dram else "dram"}
    per = {**cyc, "latency_ms": latency / 8e5, "energy_pj": energy, "energy_by_component_pj": comp,
           "speedup_vs_stripes": speedup, "energy_vs_sparten": vs_sparten, "bits_per_weight": 8.0,
           "area_total_mm2": 1.5, "variant": "int8"}
    return {**cyc, "energy_pj": energy, "speedup_vs_stripes": speedup, "energy_vs_sparten": vs_sparten,
            "per_workload": {"toy": per}}


def _variant(name: str, method: str, bits: float, top1: float, **kw: Any) -> dict[str, Any]:
    base = {"name": name, "method": method, "description": "", "metrics": {"top1": top1, "n_images": 100.0},
            "effective_bits": bits, "compression_vs_int8": 8 / bits, "weight_sqnr_db": None,
            "sensitive_channel_fraction": 0.0, "encoded_file": None, "file_bytes": None, "weight_bytes": None,
            "file_ratio_vs_int8": None, "weight_ratio_vs_int8": None, "verified": None, "accelerator": None,
            "speedup_vs_stripes": None, "energy_vs_sparten": None, "preset": None}
    base.update(kw)
    return base


def results_doc() -> dict[str, Any]:
    """A small, hand-written results.json document."""
    return {
        "schema": "bitvert.report.results/1",
        "config": {"model": "toy", "seed": 7, "simulate_batch": 1},
        "model": {"name": "toy", "family": "vision", "requested": "toy", "n_parameters": 1000,
                  "n_weights_quantized": 960, "description": "a toy CNN"},
        "task": "mnist-top1", "eval_limit": 100, "headline_metric": "top1", "fidelity_metric": None,
        "variants": {
            "fp32": _variant("fp32", "fp32", 32.0, 0.99),
            "int8": _variant("int8", "none", 8.0, 0.98, file_bytes=2048, weight_bytes=1024, weight_ratio_vs_int8=1.0,
                             verified=True, accelerator="stripes", speedup_vs_stripes=1.0, energy_vs_sparten=0.9,
                             description="per-channel symmetric INT8 weights, weight-only: activations in "
                                         "floating point (baseline)"),
            "moderate": _variant("moderate", "zero_point", 4.25, 0.97, file_bytes=1536, weight_bytes=512,
                                 weight_ratio_vs_int8=2.0, verified=True, accelerator="bitvert-moderate",
                                 speedup_vs_stripes=2.5, energy_vs_sparten=0.5),
        },
        "layers": [
            {"name": "conv1", "kind": "conv", "shape": [8, 1, 3, 3], "n_weights": 72,
             "int8_sparsity": {"value_sparsity": 0.1, "zero_bit_sparsity_twos": 0.5,
                               "zero_bit_sparsity_sign_magnitude": 0.6, "bbs_sparsity": 0.7,
                               "bbs_sparsity_hardware": 0.68, "free_column_fraction": 0.3},
             "effective_bits": {"int8": 8.0, "moderate": 8.0}, "role": {"int8": "int8", "moderate": "int8"}},
            {"name": "fc", "kind": "linear", "shape": [10, 88], "n_weights": 880,
             "int8_sparsity": {"value_sparsity": 0.2, "zero_bit_sparsity_twos": 0.55,
                               "zero_bit_sparsity_sign_magnitude": 0.65, "bbs_sparsity": 0.72,
                               "bbs_sparsity_hardware": 0.7, "free_column_fraction": 0.35},
             "effective_bits": {"int8": 8.0, "moderate": 4.25}, "role": {"int8": "int8", "moderate": "prune"}},
        ],
        "simulation": {
            "accelerators": {"stripes": _acc(1000.0, 2e6, 1.0, 1.25), "bitvert-moderate": _acc(400.0, 8e5, 2.5, 0.5),
                             "sparten": _acc(900.0, 1.6e6, 1.11, 1.0)},
            "workloads": {"toy": {}}, "configs": {"stripes": {"design": "stripes"}}, "synthetic_weights": False,
        },
        "workload_check": {"workload_layers": 2, "layers_compared_with_int8": 2, "layers_equal_to_int8": 2,
                           "differing_layers": [], "layers_not_quantized_by_pipeline": []},
        "timings_s": {"load": 0.5, "prune": 1.25, "total": 2.0},
        "environment": {"versions": {"bitvert": "0.1.0", "python": "3.11"}, "seed": 7},
    }


def test_format_bytes_golden() -> None:
    assert format_bytes(None) == "–"
    assert format_bytes(0) == "0 B"
    assert format_bytes(1023) == "1023 B"
    assert format_bytes(1024) == "1.00 KiB"
    assert format_bytes(1536) == "1.50 KiB"
    assert format_bytes(3 * 1024 * 1024) == "3.00 MiB"
    assert format_bytes(5 * 1024 ** 3) == "5.00 GiB"


def test_summary_table_has_every_variant_and_the_hand_formatted_numbers() -> None:
    text = summary_table(results_doc())
    lines = text.splitlines()
    assert lines[0].split()[:4] == ["variant", "top1", "eff.", "bits"]
    assert len(lines) == 2 + 3
    mod = next(line for line in lines if line.startswith("moderate"))
    # 4.25 bits, 1536 B file, 2.00x smaller weights, 2.50x faster, 0.5 of SparTen's energy
    for cell in ("4.250", "1.50 KiB", "2.00×", "bitvert-moderate", "2.50×", "0.5"):
        assert cell in mod
    fp32 = next(line for line in lines if line.startswith("fp32"))
    assert "32.000" in fp32 and "0.99" in fp32


def test_markdown_has_tables_figures_and_the_story() -> None:
    doc = results_doc()
    md = render_markdown(build_blocks(doc, ["accuracy_vs_bits", "speedup"]))
    assert md.startswith("# BBS study: toy\n")
    assert "## Summary" in md and "## Stage timings" in md and "## Configuration" in md
    assert "![" + FIGURE_TITLES["speedup"] + "](plots/speedup.png)" in md
    # the one-sentence story of the BBS preset, numbers formatted by hand
    assert "**moderate** stores the quantized weights in 4.25 bits per weight (2.00× smaller" in md
    assert "runs 2.50× faster than Stripes at 0.5× SparTen's energy" in md
    # summary table: header + separator + 3 rows, every row with the same number of cells
    table = [line for line in md.splitlines() if line.startswith("| ") or line.startswith("|---")]
    summary = table[: 2 + 3]
    assert len({line.count(" | ") for line in summary if line.startswith("| ")}) == 1
    assert "| prune | 1.25 | – |" in md  # timings table (no CPU seconds in this document)
    # what each variant is: the INT8 baseline says it is weight-only; variants without a description are left out
    assert ("Variants:\n\n- `int8`: per-channel symmetric INT8 weights, weight-only: activations in floating "
            "point (baseline)\n") in md
    assert "- `moderate`:" not in md and "- `fp32`:" not in md
    assert json.dumps(doc["config"], indent=2) in md
    # accelerator table: 400 cycles at 2.5x, 0.8 uJ, 1.5 mm2
    assert "| bitvert-moderate | 400 | 300 | 400 | compute | 0.0005 | 2.50× | 0.8 | 0.5 | 8 | 1.5 |" in md
    # compute and DRAM side by side, and one sentence per design saying which bound sets its latency
    assert ("- bitvert-moderate: compute-bound (compute 400 cycles > DRAM 300; compute-bound layers hold 100 % "
            "of the 400 latency cycles)\n") in md


def test_html_is_self_contained_and_matches_markdown_content() -> None:
    doc = results_doc()
    png = base64.b64decode(
        "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8DwHwAFBQIAX8jx0gAAAABJRU5ErkJggg==")
    blocks = build_blocks(doc, ["speedup"])
    page = render_html(blocks, {"speedup": png})
    assert page.startswith("<!DOCTYPE html>")
    assert not re.search(r"""(src|href)=["']?(https?:|//)""", page), "external asset in the HTML"
    assert "<script" not in page
    assert page.count("data:image/png;base64,") == 1
    assert '<figure id="fig-speedup">' in page
    # every table cell of the Markdown appears in the HTML too (same blocks)
    for b in blocks:
        if b.kind == "table":
            for row in b.rows:
                for cell in row:
                    assert f"<td>{cell}</td>" in page.replace("&#x27;", "'")


def test_html_escapes_text() -> None:
    blocks = [Block("h1", "a <b> & c"), Block("p", "x < y **bold** `code`")]
    page = render_html(blocks, {})
    assert "a &lt;b&gt; &amp; c" in page
    assert "x &lt; y <strong>bold</strong> <code>code</code>" in page


def test_bad_input_is_reported() -> None:
    with pytest.raises(InputError, match="results.json"):
        build_blocks({"nothing": 1}, [])
    with pytest.raises(InputError, match="unknown report block kind"):
        render_markdown([Block("marquee", "x")])
    with pytest.raises(InputError, match="unknown report block kind"):
        render_html([Block("marquee", "x")], {})
    with pytest.raises(InputError, match="has no image"):
        render_html([Block("figure", "t", figure="speedup")], {})
    with pytest.raises(InputError, match="variants"):
        accuracy_figure({"model": {}})
    with pytest.raises(InputError, match="layers"):
        layer_sparsity_figure({"variants": {}})


def test_write_report_writes_every_figure(tmp_path: Path) -> None:
    doc = results_doc()
    paths = write_report(doc, tmp_path)
    stems = sorted(p.stem for p in (tmp_path / "plots").glob("*.png"))
    assert stems == sorted(FIGURE_TITLES)
    page = paths["report_html"].read_text(encoding="utf-8")
    assert page.count("data:image/png;base64,") == len(FIGURE_TITLES)
    md = paths["report_md"].read_text(encoding="utf-8")
    for stem in FIGURE_TITLES:
        assert f"(plots/{stem}.png)" in md
        assert (tmp_path / "plots" / f"{stem}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_figures_without_simulation_or_layers() -> None:
    doc = results_doc()
    doc["simulation"] = {}
    doc["layers"] = []
    assert list(all_figures(doc)) == ["accuracy_vs_bits"]


_json_leaf = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=True, allow_infinity=True),
                       st.text(max_size=5))


@settings(max_examples=60, deadline=None)
@given(st.recursive(_json_leaf, lambda c: st.lists(c, max_size=4) | st.dictionaries(st.text(max_size=4), c,
                                                                                     max_size=4), max_leaves=20))
def test_finite_makes_any_nested_document_strict_json(doc: Any) -> None:
    clean = finite(doc)
    text = json.dumps(clean, allow_nan=False)  # raises on NaN / inf
    back = json.loads(text)
    # finite floats and every other leaf survive unchanged
    def leaves(x: Any) -> list[Any]:
        if isinstance(x, dict):
            return [y for v in x.values() for y in leaves(v)]
        if isinstance(x, list):
            return [y for v in x for y in leaves(v)]
        return [x]
    for a, b in zip(leaves(doc if not isinstance(doc, tuple) else list(doc)), leaves(back)):
        if isinstance(a, float) and not math.isfinite(a):
            assert b is None
        else:
            assert a == b


def test_story_mentions_only_bbs_presets() -> None:
    doc = copy.deepcopy(results_doc())
    doc["variants"]["rtn-moderate"] = _variant("rtn-moderate", "rtn", 4.0, 0.9)
    md = render_markdown(build_blocks(doc, []))
    assert "**rtn-moderate**" not in md and "**moderate**" in md
