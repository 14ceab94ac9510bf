"""Build and run the RTL units under cocotb; pack PE passes into the testbench's vectors.

Shared by the tests in tests/rtl (not a test module itself). The simulator is Icarus
Verilog by default (``BITVERT_RTL_SIM`` selects another cocotb simulator); every helper
skips the calling test with the reason when a tool is missing.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from bitvert.codec.rtl_vectors import PEPasses

RTL_DIR = Path(__file__).resolve().parents[2] / "rtl"
TB_DIR = Path(__file__).resolve().parent
SIM = os.environ.get("BITVERT_RTL_SIM", "icarus")
_SIM_BINARY = {"icarus": "iverilog", "verilator": "verilator"}

BITVERT_SOURCES = ["bv_scheduler.sv", "bv_sum_gen.sv", "bv_control.sv", "bitvert_pe.sv", "bitvert_unit.sv"]
STRIPES_SOURCES = ["stripes_pe.sv", "stripes_unit.sv"]


def require_tools(*tools: str) -> None:
    """Skip the calling test unless cocotb and every named executable are installed."""
    try:
        import cocotb  # noqa: F401
        import cocotb_tools.runner  # noqa: F401
    except ImportError:
        pytest.skip("cocotb is not installed (pip install 'bitvert[rtl]', or `make rtl-tools`)")
    for tool in tools or (_SIM_BINARY.get(SIM, SIM),):
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} is not installed (Debian: apt-get install {tool}; `make rtl-tools` as root)")


def _bytes_le(bits: np.ndarray) -> np.ndarray:
    """``[P, n]`` bits (bit k of each row = value bit k) -> ``uint8[P, ceil(n/8)]`` little endian."""
    return np.packbits(bits.astype(np.uint8), axis=1, bitorder="little")


def _twos(values: np.ndarray, bits: int) -> np.ndarray:
    """``[P, n]`` signed values -> ``[P, n*bits]`` two's-complement bits, value ``i`` at ``i*bits``."""
    v = np.asarray(values, dtype=np.int64) & ((1 << bits) - 1)
    return ((v[:, :, None] >> np.arange(bits)) & 1).reshape(v.shape[0], -1)


def bitvert_inputs(p: PEPasses, act_bits: int = 8) -> dict[str, np.ndarray]:
    """The bitvert_unit port values of every pass (``in_<port>``)."""
    n = len(p)
    return {
        "in_cols": _bytes_le(p.columns.reshape(n, -1)),  # column j, lane i -> bit j*W + i
        "in_acts_in": _bytes_le(_twos(p.activations, act_bits)),
        "in_ncols": p.n_columns.astype(np.int64),
        "in_meta": p.metadata.astype(np.int64),
        "in_has_meta": p.has_metadata.astype(np.int64),
        "in_zero_point": np.full(n, int(p.zero_point), dtype=np.int64),
    }


def stripes_inputs(weights: np.ndarray, acts: np.ndarray, wbits: int = 8, act_bits: int = 8) -> dict[str, np.ndarray]:
    """The stripes_unit port values: ``weights`` / ``acts`` are ``[P, LANES]`` signed integers."""
    w = np.asarray(weights, dtype=np.int64) & ((1 << wbits) - 1)
    planes = (w[:, None, :] >> (wbits - 1 - np.arange(wbits))[None, :, None]) & 1  # [P, column j, lane]
    return {
        "in_cols": _bytes_le(planes.reshape(w.shape[0], -1)),
        "in_acts_in": _bytes_le(_twos(acts, act_bits)),
    }


def run_unit(top: str, params: dict[str, int], inputs: dict[str, np.ndarray], work: Path,
             stream: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Simulate ``top`` on the passes in ``inputs``.

    Returns ``(y, cycles)``: per-pass outputs and, per pass, the cycles from the load edge
    to the edge that finished it; with ``stream`` the passes run back to back and
    ``cycles[0]`` is the total from the first load to the end of the last pass.
    """
    require_tools()
    from cocotb_tools.runner import get_runner

    sources = BITVERT_SOURCES if top == "bitvert_unit" else STRIPES_SOURCES
    tag = "_".join(f"{k}{v}" for k, v in sorted(params.items()))
    build = work / f"build_{top}_{SIM}_{tag}"
    vec, res = work / "vectors.npz", work / "results.npz"
    np.savez(vec, **inputs)
    runner = get_runner(SIM)
    runner.build(sources=[RTL_DIR / s for s in sources], hdl_toplevel=top, parameters=params, build_dir=build,
                 build_args=["-Wall"] if SIM == "verilator" else [], always=SIM == "icarus", timescale=("1ns", "1ps"), log_file=build / "build.log")
    if res.exists():
        res.unlink()
    results_xml = runner.test(hdl_toplevel=top, test_module="rtl_tb_pe", test_dir=TB_DIR, build_dir=build,
                              extra_env={"RTL_VECTORS": str(vec), "RTL_RESULTS": str(res),
                                         "RTL_STREAM": "1" if stream else "0"},
                              log_file=build / "sim.log")
    from cocotb_tools.check_results import get_results

    _, failed = get_results(results_xml)
    assert failed == 0 and res.exists(), f"the cocotb run failed; see {build / 'sim.log'}"
    with np.load(res) as r:
        return r["y"], r["cycles"]
