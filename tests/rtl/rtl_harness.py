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
        pytest.skip("cocotb is not installed (pip install 'bitvert[rtl]'; `make setup` installs it)")
    for tool in tools or (_SIM_BINARY.get(SIM, SIM),):
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} is not installed (Debian: apt-get install {tool}; "
                        "`make setup` as root does it)")


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


def stripes_inputs(weights: np.ndarray, acts: np.ndarray, wbits: int = 8,
                   act_bits: int = 8) -> dict[str, np.ndarray]:
    """The stripes_unit port values: ``weights`` / ``acts`` are ``[P, LANES]`` signed integers."""
    w = np.asarray(weights, dtype=np.int64) & ((1 << wbits) - 1)
    planes = (w[:, None, :] >> (wbits - 1 - np.arange(wbits))[None, :, None]) & 1  # [P, column j, lane]
    return {
        "in_cols": _bytes_le(planes.reshape(w.shape[0], -1)),
        "in_acts_in": _bytes_le(_twos(acts, act_bits)),
    }


def _build(top: str, sources: list[Path], params: dict[str, int], work: Path) -> tuple[object, Path]:
    from cocotb_tools.runner import get_runner

    tag = "_".join(f"{k}{v}" for k, v in sorted(params.items()))
    build = work / f"build_{top}_{SIM}_{tag}"
    runner = get_runner(SIM)
    runner.build(sources=sources, hdl_toplevel=top, parameters=params, build_dir=build,
                 build_args=["-Wall"] if SIM == "verilator" else [], always=SIM == "icarus",
                 timescale=("1ns", "1ps"), log_file=build / "build.log")
    return runner, build


def _test(runner, top: str, testcase: str, build: Path, env: dict[str, str],
          plusargs: list[str] = ()) -> None:
    from cocotb_tools.check_results import get_results

    results_xml = runner.test(hdl_toplevel=top, test_module="rtl_tb_pe", testcase=testcase, test_dir=TB_DIR,
                              build_dir=build, extra_env=env, plusargs=list(plusargs),
                              results_xml=str(build / "results.xml"), log_file=build / "sim.log")
    _, failed = get_results(results_xml)
    assert failed == 0, f"the cocotb run failed; see {build / 'sim.log'}"


def _hex_lines(path: Path, bits: int) -> np.ndarray:
    lines = (line.strip() for line in path.read_text().splitlines())
    vals = [int(t, 16) for t in lines if t and not t.startswith("//")]
    v = np.array(vals, dtype=np.int64)
    return np.where(v >> (bits - 1) & 1, v - (1 << bits), v) if bits < 64 else v


def run_feeder(params: dict[str, int], passes: PEPasses, work: Path, act_bits: int = 8,
               acc_bits: int = 24) -> tuple[np.ndarray, np.ndarray]:
    """Run ``passes`` back to back through bitvert_unit inside tests/rtl/tb_bitvert_feeder.sv.

    Returns per-pass ``(y, cycles)``; cycles run from the edge that loaded a pass to the
    edge of its last step.
    """
    require_tools()
    work.mkdir(parents=True, exist_ok=True)
    n = len(passes)
    wbits = passes.weight_bits
    cols = passes.columns.reshape(n, -1)
    files = {k: work / f"{k.lower()}.hex" for k in ("COLS", "ACTS", "CTRL", "Y", "CYCLES")}

    def write_hex(path: Path, bits: np.ndarray) -> None:
        words = _bytes_le(bits)[:, ::-1]  # most significant byte first
        path.write_text("\n".join(row.tobytes().hex() for row in words) + "\n")

    write_hex(files["COLS"], cols)
    write_hex(files["ACTS"], _twos(passes.activations, act_bits))
    ncw = int(wbits).bit_length()
    ctrl = (passes.n_columns.astype(np.int64) | passes.metadata.astype(np.int64) << ncw
            | passes.has_metadata.astype(np.int64) << (ncw + 8) | int(passes.zero_point) << (ncw + 9))
    files["CTRL"].write_text("\n".join(f"{v:x}" for v in ctrl) + "\n")
    for k in ("Y", "CYCLES"):
        if files[k].exists():
            files[k].unlink()
    top = "tb_bitvert_feeder"
    runner, build = _build(top, [RTL_DIR / s for s in BITVERT_SOURCES] + [TB_DIR / f"{top}.sv"],
                           {**params, "N_MAX": max(n, 1), "WBITS": wbits, "W": passes.lanes}, work)
    plus = [f"+{k}={p}" for k, p in files.items()] + [f"+COUNT={n}"]
    _test(runner, top, "run_feeder", build, {}, plus)
    return _hex_lines(files["Y"], acc_bits), _hex_lines(files["CYCLES"], 64)


def run_unit(top: str, params: dict[str, int], inputs: dict[str, np.ndarray], work: Path,
             stream: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Simulate ``top`` on the passes in ``inputs``.

    Returns ``(y, cycles)``: per-pass outputs and, per pass, the cycles from the load edge
    to the edge that finished it; with ``stream`` the passes run back to back and
    ``cycles[0]`` is the total from the first load to the end of the last pass.
    """
    require_tools()
    work.mkdir(parents=True, exist_ok=True)
    sources = BITVERT_SOURCES if top == "bitvert_unit" else STRIPES_SOURCES
    vec, res = work / "vectors.npz", work / "results.npz"
    np.savez(vec, **inputs)
    if res.exists():
        res.unlink()
    runner, build = _build(top, [RTL_DIR / s for s in sources], params, work)
    _test(runner, top, "run_passes", build,
          {"RTL_VECTORS": str(vec), "RTL_RESULTS": str(res), "RTL_STREAM": "1" if stream else "0"})
    with np.load(res) as r:
        return r["y"], r["cycles"]


def simulator_pass_cost(enc, passes: PEPasses, name: str = "layer") -> np.ndarray:
    """Cycles that ``hardware/accelerators/bitvert.py`` charges for the PE slice of each pass.

    The simulator reads, per metadata group, the bit columns the encoder stored
    (:func:`bitvert.codec.view.weight_encoding`: ``stored_columns``), spreads them over the
    group's weights (``WeightEncoding.per_weight_columns``), cuts the layer into ``lanes``-wide
    slices with its own ``per_weight_slices`` and charges each slice the maximum, at least
    ``min_cycles_per_tile``. This applies exactly that to ``enc`` and returns, per pass, the charge
    of the slice holding the pass's weights (``-1`` if the pass's weights fall in more than one slice).
    """
    from bitvert.codec.view import weight_encoding
    from bitvert.hardware.config import BitVertConfig
    from bitvert.hardware.tiling import per_weight_slices
    from bitvert.hardware.workload import LayerType, LayerWorkload

    view = weight_encoding(enc, name)
    w = view.weights
    kind = LayerType.CONV if w.ndim == 4 else LayerType.LINEAR
    layer = LayerWorkload(name, kind, w.astype(np.int16))
    lanes = passes.lanes
    cost = per_weight_slices(view.per_weight_columns(), layer, lanes).max(axis=2)  # [cout, n_slices]
    ids = per_weight_slices(np.arange(1, w.size + 1, dtype=np.int64).reshape(w.shape), layer, lanes)
    flat_slice = np.zeros(w.size, dtype=np.int64)
    hit = ids > 0
    slice_id = np.broadcast_to(np.arange(cost.size).reshape(cost.shape)[:, :, None], ids.shape)
    flat_slice[ids[hit] - 1] = slice_id[hit]
    wi = passes.weight_index
    lane_slice = np.where(wi >= 0, flat_slice[np.maximum(wi, 0)], -1)
    first = lane_slice.max(axis=1)
    same = ((lane_slice == first[:, None]) | (lane_slice < 0)).all(axis=1)
    floor = BitVertConfig.model_fields["min_cycles_per_tile"].default
    return np.where(same, np.maximum(cost.ravel()[first], floor), -1)
