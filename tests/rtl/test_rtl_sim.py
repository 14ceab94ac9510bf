"""The RTL PEs (rtl/) against the functional PE model and the cycle model, simulated with cocotb.

Every BitVert output is compared bit for bit with ``codec.pe_model.pe_matmul`` (through
``codec.rtl_vectors.pe_passes``) and every pass's cycle count with one cycle per stored
column, at least the 6/CDIGIT cycles of the time-multiplexed constant. The groups come from
real ``*.bbs.safetensors`` files (mnist-cnn, both presets; MiniLM in the slow test) and from
hand-built corner tensors. Skips when cocotb or Icarus Verilog is missing.
"""

from __future__ import annotations

import os

import numpy as np
import pytest
from corner_tensors import metadata_corners, plain_corners
from rtl_harness import (
    bitvert_inputs,
    require_tools,
    run_feeder,
    run_unit,
    simulator_pass_cost,
    stripes_inputs,
)

from bitvert.codec import decode
from bitvert.codec.rtl_vectors import PEPasses, pe_passes

GROUPS_PER_TENSOR = int(os.environ.get("BITVERT_RTL_GROUPS", "64"))
"""Groups sampled per tensor of the real files in the default run (the slow test takes 100,000+)."""


@pytest.fixture(autouse=True)
def _tools():
    require_tools()


def _concat(parts: list[PEPasses]) -> PEPasses:
    """Passes of several tensors in one batch (the zero-point flag must agree)."""
    first = parts[0]
    assert all(p.zero_point == first.zero_point and p.lanes == first.lanes for p in parts)
    cat = {f: np.concatenate([getattr(p, f) for p in parts]) for f in
           ("columns", "n_columns", "metadata", "has_metadata", "activations", "expected", "group", "channel",
            "weight_index")}
    return PEPasses(first.lanes, first.weight_bits, first.zero_point, **cat)


def _sample(model, per_tensor: int | None, seed: int) -> tuple[list[tuple[str, object, PEPasses]], PEPasses]:
    rng = np.random.default_rng(seed)
    found = []
    for i, (name, enc) in enumerate(sorted(model.tensors.items())):
        n = enc.group_layout.n_groups
        pick = None
        if per_tensor is not None and n > per_tensor:
            pick = np.sort(rng.choice(n, per_tensor, replace=False))
        found.append((name, enc, pe_passes(enc, seed=seed + i, groups=pick)))
    # plain tensors carry no constant: run them with the model's zero-point flag
    zp = any(p.zero_point for _, _, p in found)
    batch = _concat([PEPasses(p.lanes, p.weight_bits, zp, *[getattr(p, f) for f in (
        "columns", "n_columns", "metadata", "has_metadata", "activations", "expected", "group", "channel",
        "weight_index")]) for _, _, p in found])
    return found, batch


def _cycles(p: PEPasses, cdigit: int = 3) -> np.ndarray:
    """The cycle model of the PE: one cycle per stored column, at least the constant's digits."""
    return np.maximum(p.n_columns.astype(np.int64), 6 // cdigit)


@pytest.fixture(scope="module")
def real_run(mnist_files, tmp_path_factory):
    """The sampled mnist-cnn groups of both presets, run through the RTL."""
    out = {}
    for preset, model in mnist_files.items():
        found, batch = _sample(model, GROUPS_PER_TENSOR, seed=11)
        y, cycles = run_feeder({}, batch, tmp_path_factory.mktemp(f"rtl_real_{preset}"))
        out[preset] = (found, batch, y, cycles)
    return out


@pytest.mark.parametrize("preset", ["moderate", "conservative"])
def test_bitvert_real_groups_match_pe_model(real_run, preset):
    found, batch, y, cycles = real_run[preset]
    assert len(batch) > 300 and batch.has_metadata.any() and (~batch.has_metadata).any()
    bad = np.flatnonzero(y != batch.expected)
    assert bad.size == 0, f"{bad.size} of {len(batch)} outputs differ, first pass {bad[:1]}: " \
                          f"rtl {y[bad[:1]]} pe_model {batch.expected[bad[:1]]}"
    np.testing.assert_array_equal(cycles, _cycles(batch))


@pytest.mark.parametrize("preset", ["moderate", "conservative"])
def test_bitvert_simulator_charges_rtl_cycles(real_run, preset):
    """The simulator's per-slice charge (the encoder's stored columns of each group, floored at
    ``min_cycles_per_tile``) equals the RTL's cycles on every pass of the real files."""
    found, batch, _, cycles = real_run[preset]
    start = 0
    for name, enc, p in found:
        sim = simulator_pass_cost(enc, p, name)
        assert (sim > 0).all(), f"{name}: a pass spans two simulator slices"
        np.testing.assert_array_equal(sim, cycles[start:start + len(p)], err_msg=name)
        start += len(p)


def _corner_cases(every_pass: bool) -> list[tuple[str, PEPasses]]:
    """Every corner group; by default only the first pass of each (the second repeats its
    metadata with other columns) and extreme activations on every fourth group."""
    cases = []
    for i, (name, enc) in enumerate(metadata_corners() + plain_corners()):
        p = pe_passes(enc, seed=100 + i)
        x = pe_passes(enc, seed=200 + i, activation_values=[-128, 127, -1, 0, 1])
        if not every_pass:
            p = p.take(np.arange(0, len(p), 2))
            x = x.take(np.arange(0, len(x), 8))
        cases += [(name, p), (name + "-extreme-activations", x)]
    return cases


@pytest.fixture(scope="module")
def corners() -> list[tuple[str, PEPasses]]:
    return _corner_cases(every_pass=False)


def _by_zero_point(cases: list[tuple[str, PEPasses]]) -> list[PEPasses]:
    return [_concat([p for _, p in cases if p.zero_point == zp]) for zp in (True, False)]


def _check_corners(cases: list[tuple[str, PEPasses]], tmp_path) -> None:
    for i, batch in enumerate(_by_zero_point(cases)):
        y, cycles = run_feeder({}, batch, tmp_path / f"b{i}")
        bad = np.flatnonzero(y != batch.expected)
        first = bad[0] if bad.size else 0
        assert bad.size == 0, (f"{bad.size} corner outputs differ; first: metadata "
                               f"{batch.metadata[first]:#04x} columns {batch.n_columns[first]} "
                               f"rtl {y[first]} pe_model {batch.expected[first]}")
        np.testing.assert_array_equal(cycles, _cycles(batch))
    assert {1, 2, 4, 6, 8} <= set(np.concatenate([p.n_columns for _, p in cases]).tolist())


def test_bitvert_corner_cases(corners, tmp_path):
    """Every metadata byte of both layouts at N = 2, 4, 6; special columns; plain INT8 extremes;
    1-, 2- and 4-bit plain channels (1 column: the 2-cycle floor)."""
    _check_corners(corners, tmp_path)


@pytest.mark.slow
def test_bitvert_corner_cases_every_pass(tmp_path):
    _check_corners(_corner_cases(every_pass=True), tmp_path)


@pytest.mark.parametrize("params", [{"SG": 4}, {"SG": 16}, {"SG": 8, "WINDOWED": 0},
                                    {"SG": 16, "WINDOWED": 0, "CDIGIT": 6},
                                    {"SG": 4, "WINDOWED": 0, "CDIGIT": 6}],
                         ids=lambda p: "-".join(f"{k}{v}" for k, v in p.items()))
def test_bitvert_variants(corners, params, tmp_path):
    """The sub-group sizes and unoptimized variants that rtl/synth.py reports compute the same."""
    batch = _by_zero_point(corners)[0]
    batch = batch.take(np.arange(0, len(batch), 4))
    y, cycles = run_feeder(params, batch, tmp_path)
    np.testing.assert_array_equal(y, batch.expected)
    np.testing.assert_array_equal(cycles, _cycles(batch, params.get("CDIGIT", 3)))


def test_bitvert_handshake_with_idle_cycles_and_streaming(corners, tmp_path):
    """Driven pass by pass from Python (idle cycles between passes), then back to back."""
    batch = _by_zero_point(corners)[0]
    batch = batch.take(np.arange(0, len(batch), 12))
    y, cycles = run_unit("bitvert_unit", {}, bitvert_inputs(batch), tmp_path / "gaps")
    np.testing.assert_array_equal(y, batch.expected)
    np.testing.assert_array_equal(cycles, _cycles(batch))
    y, total = run_unit("bitvert_unit", {}, bitvert_inputs(batch), tmp_path / "stream", stream=True)
    np.testing.assert_array_equal(y, batch.expected)
    assert total[0] == _cycles(batch).sum()


def test_stripes_pe(mnist_files, tmp_path):
    """Stripes (8 lanes, every column): real weights and INT8 extremes against a dot product."""
    rng = np.random.default_rng(3)
    enc = mnist_files["moderate"].tensors["features.3.weight"]
    w = decode(enc).reshape(-1)
    w = w[rng.choice(w.size, 8 * 100, replace=False)].reshape(100, 8).astype(np.int64)
    extremes = rng.choice(np.array([-128, 127, -127, -1, 0, 1]), size=(30, 8))
    w = np.concatenate([w, extremes])
    a = np.concatenate([rng.integers(-128, 128, size=(100, 8)),
                        rng.choice(np.array([-128, 127]), size=(30, 8))])
    y, cycles = run_unit("stripes_unit", {"LANES": 8}, stripes_inputs(w, a), tmp_path)
    np.testing.assert_array_equal(y, (w * a).sum(axis=1))
    assert (cycles == 8).all()


@pytest.mark.slow
def test_bitvert_100k_real_groups(mnist_files, minilm_files, tmp_path):
    """At least 100,000 groups of real encoded layers: all of mnist-cnn and about 40,000 MiniLM
    groups per preset."""
    n_groups = 0
    for name, files, per_tensor in (("mnist", mnist_files, None), ("minilm", minilm_files, 40_000 // 38)):
        for preset, model in files.items():
            found, batch = _sample(model, per_tensor, seed=21)
            y, cycles = run_feeder({}, batch, tmp_path / f"{name}-{preset}")
            bad = np.flatnonzero(y != batch.expected)
            assert bad.size == 0, f"{name} {preset}: {bad.size} of {len(batch)} outputs differ"
            np.testing.assert_array_equal(cycles, _cycles(batch))
            n_groups += sum(len(np.unique(p.group)) for _, _, p in found)
    assert n_groups >= 100_000
