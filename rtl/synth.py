#!/usr/bin/env python3
"""Synthesize the BitVert and Stripes PEs with Yosys to its built-in gate cells and print an area table.

Usage::

    python rtl/synth.py                      # synthesize, print the Markdown table
    python rtl/synth.py --json rtl/synth_table.json   # also write the table (the pinned copy)
    python rtl/synth.py --check rtl/synth_table.json  # exit 1 if the result differs from the pinned copy

Every design is flattened and mapped by ``synth -flatten`` + ``abc -g`` to Yosys's generic
two-input gates (AND, NAND, OR, NOR, XOR, XNOR, ANDNOT, ORNOT, MUX, NOT) and flip-flops. The
area estimate is in NAND2 gate equivalents (GE) with the per-cell weights of ``GE_WEIGHTS``
(typical standard-cell ratios, not a real library), so only ratios are meaningful; the
paper's µm² come from a 28 nm library after Design Compiler optimization (docs/rtl.md).

Per-PE totals add the PE's share of the logic it shares in the array: the row control and
the schedulers serve the 16 PEs of a row, the activation-sum generator the 32 PEs of a
column. Exits 2 when a design infers a latch.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

RTL = Path(__file__).resolve().parent
BITVERT_FILES = ["bv_scheduler.sv", "bv_sum_gen.sv", "bv_control.sv", "bitvert_pe.sv", "bitvert_unit.sv"]
STRIPES_FILES = ["stripes_pe.sv", "stripes_unit.sv"]
PES_PER_ROW = 16  # PE columns: PEs that share one row's control and schedulers
PES_PER_COL = 32  # PE rows: PEs that share one column's activation-sum generator
PE_WEIGHTS = 16   # weights per BitVert PE pass

GE_WEIGHTS = {
    "$_NOT_": 0.67, "$_NAND_": 1.0, "$_NOR_": 1.0, "$_AND_": 1.33, "$_OR_": 1.33, "$_ANDNOT_": 1.33,
    "$_ORNOT_": 1.33, "$_XOR_": 2.33, "$_XNOR_": 2.33, "$_MUX_": 2.33,
}
"""NAND2-equivalent area per combinational cell type."""
FF_GE, FF_ENABLE_GE, FF_RESET_GE = 4.67, 2.33, 0.67
"""A D flip-flop; extra for a clock enable; extra for a set/reset."""

# (name, top module, files, parameters): the designs of the table
DESIGNS: list[tuple[str, str, list[str], dict[str, int]]] = []
for _sg in (4, 8, 16):
    DESIGNS += [
        (f"bitvert_pe_sg{_sg}", "bitvert_pe", BITVERT_FILES, {"SG": _sg}),
        (f"bitvert_pe_sg{_sg}_noopt", "bitvert_pe", BITVERT_FILES, {"SG": _sg, "WINDOWED": 0, "CDIGIT": 6}),
        (f"scheduler_sg{_sg}", "bv_scheduler", BITVERT_FILES, {"SG": _sg}),
        (f"scheduler_sg{_sg}_noopt", "bv_scheduler", BITVERT_FILES, {"SG": _sg, "WINDOWED": 0}),
        (f"sum_gen_sg{_sg}", "bv_sum_gen", BITVERT_FILES, {"SG": _sg}),
    ]
DESIGNS += [
    ("bitvert_control", "bv_control", BITVERT_FILES, {}),
    ("bitvert_control_noopt", "bv_control", BITVERT_FILES, {"CDIGIT": 6}),
    ("stripes_pe_8", "stripes_pe", STRIPES_FILES, {"LANES": 8}),
    ("stripes_unit_8", "stripes_unit", STRIPES_FILES, {"LANES": 8}),
    ("stripes_pe_16", "stripes_pe", STRIPES_FILES, {"LANES": 16}),
    ("stripes_unit_16", "stripes_unit", STRIPES_FILES, {"LANES": 16}),
]


def cell_ge(cell: str) -> float:
    """Gate-equivalent area of one Yosys internal cell type."""
    if cell in GE_WEIGHTS:
        return GE_WEIGHTS[cell]
    m = re.fullmatch(r"\$_([A-Z]*DFF[A-Z]*)_([PN01]+)_", cell)
    if m:  # e.g. $_DFFE_PP_ (enable), $_DFF_PN0_ (async reset), $_SDFFE_PP0P_ (sync reset + enable)
        kind, pol = m.group(1), m.group(2)
        has_reset = "SR" in kind or "0" in pol or "1" in pol
        return FF_GE + (FF_ENABLE_GE if "E" in kind else 0.0) + (FF_RESET_GE if has_reset else 0.0)
    raise ValueError(f"no area weight for Yosys cell {cell!r}; add it to GE_WEIGHTS")


def synthesize(top: str, files: list[str], params: dict[str, int], yosys: str = "yosys") -> dict[str, int]:
    """Cell counts of ``top`` with ``params`` after generic synthesis."""
    chparam = " ".join(f"-chparam {k} {v}" for k, v in sorted(params.items()))
    script = "\n".join([
        "read_verilog -sv " + " ".join(str(RTL / f) for f in files),
        f"hierarchy -check -top {top} {chparam}",
        f"synth -flatten -top {top}",
        "abc -g AND,NAND,OR,NOR,XOR,XNOR,ANDNOT,ORNOT,MUX",
        "opt_clean",
        "tee -o {stat} stat -json",
    ])
    with tempfile.TemporaryDirectory() as tmp:
        stat = Path(tmp) / "stat.json"
        ys = Path(tmp) / "run.ys"
        ys.write_text(script.format(stat=stat))
        proc = subprocess.run([yosys, "-q", "-s", str(ys)], capture_output=True, text=True)
        if proc.returncode != 0:
            raise RuntimeError(f"yosys failed on {top} {params}:\n{proc.stdout[-3000:]}{proc.stderr[-3000:]}")
        text = stat.read_text()
    data = json.loads(text[text.index("{"):])
    return {k: int(v) for k, v in sorted(data["modules"][f"\\{top}"]["num_cells_by_type"].items())}


def summarize(cells: dict[str, int]) -> dict[str, float]:
    """Totals of one design: cells, flip-flops, latches and area in GE."""
    latches = sum(n for c, n in cells.items() if "LATCH" in c.upper())
    ffs = sum(n for c, n in cells.items() if "DFF" in c)
    ge = sum(n * cell_ge(c) for c, n in cells.items() if "LATCH" not in c.upper())
    return {"cells": sum(cells.values()), "flip_flops": ffs, "latches": latches, "area_ge": round(ge, 2)}


def run_all(jobs: int = 2, yosys: str = "yosys", only: list[str] | None = None) -> dict[str, dict]:
    """Synthesize the designs of ``DESIGNS`` (those named in ``only``, default all).

    Returns name -> {top, params, cells, cell/flip-flop/latch counts, area_ge}.
    """
    unknown = set(only or ()) - {d[0] for d in DESIGNS}
    if unknown:
        raise ValueError(f"unknown designs {sorted(unknown)}; choose from {[d[0] for d in DESIGNS]}")
    todo = [d for d in DESIGNS if only is None or d[0] in only]
    with ThreadPoolExecutor(max_workers=jobs) as pool:
        results = list(pool.map(lambda d: synthesize(d[1], d[2], d[3], yosys), todo))
    return {name: {"top": top, "params": params, "cells_by_type": cells, **summarize(cells)}
            for (name, top, _, params), cells in zip(todo, results)}


def per_pe(table: dict[str, dict]) -> dict[str, dict[str, float]]:
    """Per-PE area: the PE itself and with its share of row and column logic."""
    def ge(name: str) -> float:
        return float(table[name]["area_ge"])

    out: dict[str, dict[str, float]] = {}
    for sg in (4, 8, 16):
        for suffix in ("", "_noopt"):
            nsub = PE_WEIGHTS // sg
            row = nsub * ge(f"scheduler_sg{sg}{suffix}") + ge(f"bitvert_control{suffix}")
            pe = ge(f"bitvert_pe_sg{sg}{suffix}")
            col = ge(f"sum_gen_sg{sg}")
            out[f"bitvert_sg{sg}{suffix}"] = {
                "pe_ge": pe, "row_share_ge": row / PES_PER_ROW, "col_share_ge": col / PES_PER_COL,
                "total_ge": pe + row / PES_PER_ROW + col / PES_PER_COL}
    for lanes in (8, 16):
        pe = ge(f"stripes_pe_{lanes}")
        row = ge(f"stripes_unit_{lanes}") - pe
        out[f"stripes_{lanes}"] = {"pe_ge": pe, "row_share_ge": row / PES_PER_ROW, "col_share_ge": 0.0,
                                   "total_ge": pe + row / PES_PER_ROW}
    return {k: {kk: round(vv, 2) for kk, vv in v.items()} for k, v in out.items()}


PAPER_UM2 = {"bitvert_sg8": 739.6, "bitvert_sg4": 786.5, "bitvert_sg16": 971.5, "bitvert_sg8_noopt": 896.6,
             "bitvert_sg4_noopt": 878.7, "bitvert_sg16_noopt": 1342.3, "stripes_8": 532.8}
"""The paper's PE areas at 28 nm (Tables IV and V), µm²."""


def markdown(table: dict[str, dict]) -> str:
    """The designs' cell counts and the per-PE comparison with the paper, as Markdown."""
    lines = ["| design | parameters | cells | flip-flops | latches | area (GE) |",
             "|---|---|---|---|---|---|"]
    for name, r in table.items():
        params = ", ".join(f"{k}={v}" for k, v in r["params"].items()) or "defaults"
        lines.append(f"| {name} | {params} | {r['cells']} | {r['flip_flops']} | {r['latches']} "
                     f"| {r['area_ge']:.0f} |")
    pes = per_pe(table)
    ref = pes["stripes_8"]
    lines += ["", "| PE | PE (GE) | + row share | + column share | total (GE) | vs Stripes-8 (PE only) "
              "| vs Stripes-8 (total) | paper µm² | paper vs Stripes |",
              "|---|---|---|---|---|---|---|---|---|"]
    for name, r in pes.items():
        paper = PAPER_UM2.get(name)
        paper_ratio = f"{paper / PAPER_UM2['stripes_8']:.2f}x" if paper else "-"
        lines.append(
            f"| {name} | {r['pe_ge']:.0f} | {r['row_share_ge']:.1f} | {r['col_share_ge']:.1f} "
            f"| {r['total_ge']:.0f} "
            f"| {r['pe_ge'] / ref['pe_ge']:.2f}x | {r['total_ge'] / ref['total_ge']:.2f}x "
            f"| {paper if paper else '-'} | {paper_ratio} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", type=Path, help="write the table here")
    ap.add_argument("--check", type=Path, help="compare with this pinned table; exit 1 on a difference")
    ap.add_argument("--jobs", type=int, default=2, help="parallel Yosys runs")
    ap.add_argument("--yosys", default="yosys", help="Yosys executable")
    ap.add_argument("--only", nargs="+",
                    help="synthesize only these designs (with --check: compare only them)")
    args = ap.parse_args(argv)
    if shutil.which(args.yosys) is None:
        print(f"{args.yosys} is not installed (Debian: apt-get install yosys)", file=sys.stderr)
        return 2
    table = run_all(args.jobs, args.yosys, args.only)
    print(markdown(table) if args.only is None else json.dumps(table, indent=1))
    bad = [n for n, r in table.items() if r["latches"]]
    if bad:
        print(f"latches inferred in {bad}", file=sys.stderr)
        return 2
    if args.only is not None:
        if args.json:
            print("--json writes the whole table; drop --only", file=sys.stderr)
            return 2
        if args.check:
            pinned = json.loads(args.check.read_text())["designs"]
            diff = [n for n in table if pinned.get(n) != json.loads(json.dumps(table[n]))]
            if diff:
                print(f"synthesis result differs from {args.check} in {diff}", file=sys.stderr)
                return 1
        return 0
    doc = {"designs": table, "per_pe": per_pe(table)}
    if args.json:
        args.json.write_text(json.dumps(doc, indent=1, sort_keys=True) + "\n")
    if args.check:
        pinned = json.loads(args.check.read_text())
        if pinned != json.loads(json.dumps(doc, sort_keys=True)):
            diff = [n for n in table if pinned["designs"].get(n) != json.loads(json.dumps(table[n]))]
            print(f"synthesis result differs from {args.check} in {diff}; if the RTL change is intended, "
                  f"regenerate it with: python rtl/synth.py --json {args.check}", file=sys.stderr)
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
