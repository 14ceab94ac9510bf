"""Memory traffic, DRAM latency and energy: hand-computed values and the published bugs fixed."""

from __future__ import annotations

import numpy as np
import pytest

from bitvert.hardware.accelerators import model_for
from bitvert.hardware.config import load_accelerator
from bitvert.hardware.energy import layer_energy, load_energy_table
from bitvert.hardware.memory import layer_traffic
from bitvert.hardware.simulate import simulate
from hw_helpers import encoded, linear, workload


def _run(name, layer, prev_resident=False, is_last=True, **overrides):
    cfg = load_accelerator(name, overrides=overrides or None)
    model = model_for(cfg)
    model.prepare(workload(layer))
    comp = model.layer(layer)
    return cfg, comp, layer_traffic(layer, comp, cfg, prev_resident, is_last)


def test_stripes_single_layer_traffic_and_latency():
    layer = linear("fc", np.ones((64, 64), dtype=np.int16))
    cfg, comp, t = _run("stripes", layer)
    # W = 64*64*8 = 32768 bits, I = 64*8 = 512, O = 512; nothing resident -> 33792 bits
    assert (t.weight_dram_bits, t.input_dram_bits, t.output_dram_bits) == (32768, 512, 512)
    assert t.dram_cycles == pytest.approx(33792 / 128)  # 264 cycles at 128 bits/cycle
    assert comp.compute_cycles == 4 * 4 * 8  # 4 slices x 4 row tiles x 8 bits = 128
    rep = simulate(workload(layer), ["stripes"])
    assert rep.totals["tiny"]["stripes"]["cycles"] == pytest.approx(264)  # max(compute, DRAM)


def test_refetch_picks_the_cheaper_operand():
    layer = linear("fc", np.ones((64, 64), dtype=np.int16), tokens=128)
    cfg, comp, t = _run("stripes", layer, weight_sram_kib=1, input_sram_kib=0.5)
    # W = 32768 > 8192 and I = 128*64*8 = 65536 > 4096:
    # refetch weights ceil(65536/4096)=16x: 16*32768 + 65536 = 589824
    # refetch inputs  ceil(32768/8192)=4x:  32768 + 4*65536  = 294912  <- cheaper
    assert (t.weight_fetches, t.input_fetches) == (1, 4)
    assert t.dram_bits == 32768 + 4 * 65536 + 65536  # + outputs (128*64*8)
    assert t.dram_cycles == pytest.approx(360448 / 128)


def test_residency_skips_the_next_input_read():
    layer = linear("fc", np.ones((64, 64), dtype=np.int16), input_from_previous=True)
    _, _, t = _run("stripes", layer, prev_resident=True, is_last=False)
    assert t.input_dram_bits == 0 and t.output_resident and t.output_dram_bits == 0


def test_dram_cycles_scale_linearly_with_bits_not_precision_squared():
    # published bug: cycles = bytes * prec / 128 with bytes already scaled by prec.
    layer = linear("fc", np.ones((64, 64), dtype=np.int16))
    _, comp, t = _run("ant", layer)
    bits = 64 * 64 * 6.1 + 2 * 64 * 6.1  # weights, inputs, outputs at 6.1 bits
    assert t.dram_cycles == pytest.approx(bits / 128)


def test_bitvert_footprint_counts_metadata_and_index_table():
    # moderate (N = 4) with channel 5 sensitive: the footprint is the encoded file's bytes
    w = np.zeros((32, 64), dtype=np.int16)
    sens = np.zeros(32, dtype=bool)
    sens[5] = True
    layer = encoded(linear("fc", w), "zero_point", 4, sens)
    _, comp, t = _run("bitvert", layer)
    # channel 5: 2 groups x 32 weights x 8 columns, no metadata; 31 normal channels: 2 groups x 32 x 4 columns
    # + 8 metadata bits per group; channel 5 is stored first, so the 32-entry uint16 channel-index table is kept
    assert comp.weight_bits == 2 * 32 * 8 + 62 * 32 * 4 + 62 * 8 + 32 * 16
    assert comp.weight_bits == layer.encoding.footprint_bits
    assert t.weight_dram_bits == comp.weight_bits


def test_write_energy_follows_compression():
    rng = np.random.default_rng(1)
    w = np.clip(np.rint(rng.laplace(0, 12, size=(64, 256))), -127, 127).astype(np.int16)
    table = load_energy_table()
    res = {}
    for name, method, n in (("bitvert-moderate", "zero_point", 4), ("bitvert-conservative", "rounded_avg", 2)):
        cfg, comp, t = _run("bitvert", encoded(linear("fc", w), method, n))
        e = layer_energy(table.design(cfg.energy_key), cfg, comp, t, 15.625)
        res[name] = (t, e)
    t_mod, e_mod = res["bitvert-moderate"]
    t_con, e_con = res["bitvert-conservative"]
    # the SRAM write energy is charged on the compressed bits: 4.25 vs 6.25 bits per weight
    assert t_mod.weight_dram_bits < t_con.weight_dram_bits < 64 * 256 * 8
    assert e_mod.sram_write < e_con.sram_write
    wpb = table.design("bitvert").weight_sram.write_pj_per_bit
    ipb = table.design("bitvert").input_sram.write_pj_per_bit
    assert e_mod.sram_write == pytest.approx(t_mod.weight_dram_bits * wpb + (256 + 64) * 8 * ipb)


def test_stripes_energy_by_hand():
    layer = linear("fc", np.ones((64, 64), dtype=np.int16))
    cfg, comp, t = _run("stripes", layer)
    e = layer_energy(load_energy_table().design("stripes"), cfg, comp, t, 15.625)
    # PE: 0.421875 pJ x 256 PEs x 128 cycles
    assert e.pe == pytest.approx(0.421875 * 256 * 128)
    # schedulers: 0.69 x 16 rows x 128 cycles + input registers 0.9039 x 16 columns x 16 tiles
    assert e.scheduler == pytest.approx(0.69 * 16 * 128 + 0.9039 * 16 * 16)
    # SRAM read: 32768 weight bits at 139.0/2048 pJ/bit + 16 tiles x 16 x 16 x 8 input bits at 97.3/2048
    assert e.sram_read == pytest.approx(32768 * 139.0 / 2048 + 32768 * 97.3 / 2048)
    # SRAM write: weights 32768 bits at 4.94/64 + inputs and outputs 1024 bits at 5.84/64
    assert e.sram_write == pytest.approx(32768 * 4.94 / 64 + 1024 * 5.84 / 64)
    assert e.dram == pytest.approx(33792 * 15.625)


def test_sparten_energy_per_effectual_mac():
    w = np.zeros((32, 128), dtype=np.int16)
    w[:, :64] = 1
    layer = linear("fc", w, tokens=16, input_density=0.5)
    cfg, comp, t = _run("sparten", layer)
    e = layer_energy(load_energy_table().design("sparten"), cfg, comp, t, 15.625)
    assert comp.effectual_macs == pytest.approx(32 * 64 * 0.5 * 16)
    assert e.pe == pytest.approx(comp.effectual_macs * 1.3)
    # weights: 2048 non-zeros x 8 bits + 4096 mask bits
    assert comp.weight_bits == 2048 * 8 + 4096
    assert comp.input_bits_per_element == pytest.approx(0.5 * 8 + 1)


def test_every_energy_entry_cites_a_source():
    table = load_energy_table()
    assert table.dram.energy_pj_per_bit.source
    for name, design in table.designs.items():
        for field, value in design:
            if value is None:
                continue
            entries = [value] if hasattr(value, "source") else [v for _, v in value]
            for entry in entries:
                assert len(entry.source) > 10, (name, field)


def test_attention_operand_on_chip_when_input_is():
    from bitvert.hardware.workload import LayerType, LayerWorkload

    layer = LayerWorkload("qk", LayerType.MATMUL, np.ones((16, 8), dtype=np.int16), tokens=16, repeats=2,
                          input_from_previous=True)
    _, _, on = _run("stripes", layer, prev_resident=True, is_last=False)
    assert on.weight_dram_bits == 0 and on.input_dram_bits == 0
    _, _, off = _run("stripes", layer, prev_resident=False, is_last=False)
    # two instances (heads): two 16 x 8 second operands and two 16 x 8 first operands
    assert off.weight_dram_bits == 2 * 16 * 8 * 8 and off.input_dram_bits == 2 * 16 * 8 * 8
