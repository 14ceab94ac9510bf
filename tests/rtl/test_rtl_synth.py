"""Lint and synthesis of the RTL: Verilator -Wall clean, no latches, the area table pinned.

rtl/synth_table.json is the pinned result of ``python rtl/synth.py``; a change of the RTL
that changes any design's cells shows up here (regenerate it with ``--json`` when intended).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
RTL = ROOT / "rtl"
PINNED = RTL / "synth_table.json"
sys.path.insert(0, str(RTL))

import synth  # noqa: E402  (rtl/synth.py)

LINT_CASES = [
    ("bitvert_unit", synth.BITVERT_FILES, {}),
    ("bitvert_unit", synth.BITVERT_FILES, {"SG": 4}),
    ("bitvert_unit", synth.BITVERT_FILES, {"SG": 16}),
    ("bitvert_unit", synth.BITVERT_FILES, {"WINDOWED": 0, "CDIGIT": 6}),
    ("stripes_unit", synth.STRIPES_FILES, {}),
    ("stripes_unit", synth.STRIPES_FILES, {"LANES": 16}),
]
CORE = ["bitvert_pe_sg8", "scheduler_sg8", "bitvert_control", "sum_gen_sg8", "stripes_pe_8", "stripes_unit_8"]


def _need(tool: str) -> None:
    if shutil.which(tool) is None:
        pytest.skip(f"{tool} is not installed (Debian: apt-get install {tool}; `make setup` as root does it)")


@pytest.mark.parametrize("top,files,params", LINT_CASES,
                         ids=[t + "-" + ("-".join(f"{k}{v}" for k, v in p.items()) or "default")
                              for t, _, p in LINT_CASES])
def test_verilator_lint_clean(top, files, params):
    _need("verilator")
    cmd = ["verilator", "--lint-only", "-Wall", "--top-module", top]
    cmd += [f"-G{k}={v}" for k, v in params.items()]
    proc = subprocess.run(cmd + [str(RTL / f) for f in files], capture_output=True, text=True)
    assert proc.returncode == 0 and "%Warning" not in proc.stderr, proc.stderr


def test_synth_core_designs_match_pinned_table():
    """The BitVert (sub-group 8) and Stripes designs synthesize to the pinned cells, without latches."""
    _need("yosys")
    table = synth.run_all(jobs=2, only=CORE)
    pinned = json.loads(PINNED.read_text())["designs"]
    for name, got in table.items():
        assert got["latches"] == 0, name
        assert json.loads(json.dumps(got)) == pinned[name], \
            f"{name} synthesizes differently from rtl/synth_table.json; if intended: " \
            f"python rtl/synth.py --json {PINNED}"


@pytest.mark.slow
def test_synth_whole_table_matches_pinned():
    _need("yosys")
    table = synth.run_all(jobs=2)
    doc = json.loads(json.dumps({"designs": table, "per_pe": synth.per_pe(table)}, sort_keys=True))
    assert doc == json.loads(PINNED.read_text())
    assert not any(r["latches"] for r in table.values())


def test_area_weights_and_per_pe_shares():
    """Hand-checked: a DFF with enable and async reset; shares of row (16 PEs) and column (32 PEs) logic."""
    assert synth.cell_ge("$_DFFE_PN0P_") == pytest.approx(4.67 + 2.33 + 0.67)
    assert synth.cell_ge("$_DFF_P_") == pytest.approx(4.67)
    assert synth.cell_ge("$_DFFE_PP_") == pytest.approx(4.67 + 2.33)
    assert synth.cell_ge("$_DFF_PN0_") == pytest.approx(4.67 + 0.67)
    assert synth.cell_ge("$_NAND_") == 1.0
    with pytest.raises(ValueError, match="no area weight"):
        synth.cell_ge("$_FOO_")
    pinned = json.loads(PINNED.read_text())
    d, pe = pinned["designs"], pinned["per_pe"]["bitvert_sg8"]
    row = 2 * d["scheduler_sg8"]["area_ge"] + d["bitvert_control"]["area_ge"]
    assert pe["row_share_ge"] == pytest.approx(row / 16, abs=0.01)
    assert pe["col_share_ge"] == pytest.approx(d["sum_gen_sg8"]["area_ge"] / 32, abs=0.01)
    assert synth.summarize({"$_NAND_": 2, "$_DFF_P_": 1}) == {"cells": 3, "flip_flops": 1, "latches": 0,
                                                              "area_ge": 6.67}
