"""cocotb testbench for rtl/bitvert_unit.sv and rtl/stripes_unit.sv (driven by test_rtl_sim.py).

Reads the passes from the ``.npz`` named by ``RTL_VECTORS`` (packed integers, one per
pass), offers them to the unit one after another, and writes every output ``y`` and the
cycles each pass took (from the load edge to the edge that finished it) to ``RTL_RESULTS``.
With ``RTL_STREAM=1`` the next pass is offered as soon as ``ready`` allows, so passes run
back to back and the total cycle count is the sum of the per-pass costs.
"""

from __future__ import annotations

import os

import numpy as np

import cocotb
from cocotb.clock import Clock
from cocotb.triggers import FallingEdge, ReadOnly, RisingEdge

PERIOD_NS = 10


def _load() -> dict[str, np.ndarray]:
    with np.load(os.environ["RTL_VECTORS"], allow_pickle=False) as f:
        return {k: f[k] for k in f.files}


def _to_ints(words: np.ndarray) -> list[int]:
    """``uint8[P, n]`` little-endian bytes -> P Python integers."""
    return [int.from_bytes(row.tobytes(), "little") for row in words]


def _signed(v: int, bits: int) -> int:
    return v - (1 << bits) if v >> (bits - 1) else v


async def _reset(dut) -> None:
    cocotb.start_soon(Clock(dut.clk, PERIOD_NS, unit="ns").start())
    dut.start.value = 0
    dut.rst_n.value = 0
    await FallingEdge(dut.clk)
    await FallingEdge(dut.clk)
    dut.rst_n.value = 1
    await FallingEdge(dut.clk)


async def _run(dut, fields: dict[str, list[int]]) -> None:
    n = len(fields["cols"])
    width = len(dut.y)
    ys = np.zeros(n, dtype=np.int64)
    cycles = np.zeros(n, dtype=np.int64)
    stream = os.environ.get("RTL_STREAM") == "1"
    await _reset(dut)

    def offer(k: int) -> None:
        for name, vals in fields.items():
            getattr(dut, name).value = vals[k]
        dut.start.value = 1

    if not stream:
        for k in range(n):
            offer(k)
            await RisingEdge(dut.clk)
            t0 = cocotb.utils.get_sim_time("ns")
            dut.start.value = 0
            await RisingEdge(dut.done)
            t1 = cocotb.utils.get_sim_time("ns")
            await ReadOnly()
            ys[k] = _signed(int(dut.y.value), width)
            cycles[k] = round((t1 - t0) / PERIOD_NS)
            await FallingEdge(dut.clk)
    else:
        # offer pass k whenever ready; collect y in order on every done cycle. ready depends on
        # registers only, so its value at the falling edge decides whether the next rising edge
        # takes the offered pass.
        sent = got = 0
        t_first = t_last = 0.0
        offer(0)
        offering = True
        while got < n:
            will_take = offering and bool(int(dut.ready.value))
            await RisingEdge(dut.clk)
            await ReadOnly()
            now = cocotb.utils.get_sim_time("ns")
            if will_take and sent == 0:
                t_first = now
            if int(dut.done.value):
                ys[got] = _signed(int(dut.y.value), width)
                got += 1
                t_last = now
            await FallingEdge(dut.clk)
            if will_take:
                sent += 1
                if sent < n:
                    offer(sent)
                else:
                    dut.start.value = 0
                    offering = False
        cycles[:] = 0
        # from the first load edge to the edge that ends the last pass
        cycles[0] = round((t_last - t_first) / PERIOD_NS)
    np.savez(os.environ["RTL_RESULTS"], y=ys, cycles=cycles)


@cocotb.test()
async def run_passes(dut) -> None:
    """Drive every pass of RTL_VECTORS through the unit under test."""
    v = _load()
    fields = {k[len("in_"):]: (_to_ints(a) if a.ndim == 2 else [int(x) for x in a])
              for k, a in v.items() if k.startswith("in_")}
    await _run(dut, fields)


@cocotb.test()
async def run_feeder(dut) -> None:
    """Start the clock, reset tb_bitvert_feeder and wait until it has written its results."""
    cocotb.start_soon(Clock(dut.clk, PERIOD_NS, unit="ns").start())
    dut.rst_n.value = 0
    await FallingEdge(dut.clk)
    await FallingEdge(dut.clk)
    dut.rst_n.value = 1
    await RisingEdge(dut.finished)
    await FallingEdge(dut.clk)
