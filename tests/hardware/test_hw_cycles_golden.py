"""Golden cycle counts, computed by hand in each test, for every accelerator on small layers."""

from __future__ import annotations

import numpy as np
import pytest

from bitvert.hardware.accelerators import model_for
from bitvert.hardware.config import load_accelerator
from bitvert.hardware.tiling import map_layer
from hw_helpers import conv, encoded, linear, workload


def run(name: str, *layers, wl_name: str = "tiny", **overrides):
    cfg = load_accelerator(name, overrides=overrides or None)
    model = model_for(cfg)
    model.prepare(workload(*layers, name=wl_name))
    return [model.layer(layer) for layer in layers]


def ones(shape):
    return np.ones(shape, dtype=np.int16)


# ---------------------------------------------------------------- tiling ---------------
def test_tiling_linear_ragged():
    # out=20, in=40, 5 tokens on 16x16, g=16: slices ceil(40/16)=3, row tiles ceil(20/16)=2, spatial 1
    m = map_layer(linear("fc", ones((20, 40)), tokens=5), 16, 16, 16)
    assert (m.n_slices, m.row_tiles, m.spatial_tiles, m.tiles) == (3, 2, 1, 6)
    assert m.utilisation == pytest.approx(20 * 40 * 5 / (6 * 16 * 16 * 16))


def test_tiling_conv_channel_major_and_ragged_width():
    # 3x3 conv, C=40 -> 9*ceil(40/16)=27 slices; ow=18 -> ceil(18/16)=2 column tiles x oh=5
    m = map_layer(conv("c", ones((20, 40, 3, 3)), (5, 18)), 16, 16, 16)
    assert (m.n_slices, m.row_tiles, m.spatial_tiles, m.tiles) == (27, 2, 10, 540)


def test_tiling_first_conv_window_major():
    # C=3 < k*k=49: per input channel the window is cut: 3 * ceil(49/16) = 12 slices
    m = map_layer(conv("c1", ones((64, 3, 7, 7)), (112, 112), (224, 224)), 16, 16, 16)
    assert m.window_major and m.n_slices == 12
    assert m.tiles == 12 * 4 * (7 * 112)


def test_tiling_depthwise_one_channel_per_tile():
    # depthwise 4 channels, 3x3, out 2x2: window slices 1; one output channel per tile -> 4 row tiles
    m = map_layer(conv("dw", ones((4, 1, 3, 3)), (2, 2), groups=4), 16, 16, 16)
    assert (m.n_slices, m.row_tiles, m.spatial_tiles, m.tiles) == (1, 4, 2, 8)


def test_batch_multiplies_spatial_tiles():
    m1 = map_layer(conv("c", ones((16, 16, 1, 1)), (4, 4), batch=1), 16, 16, 16)
    m3 = map_layer(conv("c", ones((16, 16, 1, 1)), (4, 4), batch=3), 16, 16, 16)
    assert m3.tiles == 3 * m1.tiles == 12


# ---------------------------------------------------------------- Stripes, bit-parallel, ANT ------
def test_stripes_linear_conv_depthwise():
    (r,) = run("stripes", linear("fc", ones((20, 40)), tokens=5))
    assert r.compute_cycles == 6 * 8
    (r,) = run("stripes", conv("c", ones((20, 40, 3, 3)), (5, 18)))
    assert r.compute_cycles == 540 * 8
    (r,) = run("stripes", conv("dw", ones((4, 1, 3, 3)), (2, 2), groups=4))
    assert r.compute_cycles == 8 * 8


def test_bit_parallel_one_cycle_per_tile():
    # 32x16, one MAC per PE: out=33 -> 2 row tiles, in=3 -> 3 slices, 17 tokens -> 2 column tiles
    (r,) = run("bit-parallel", linear("fc", ones((33, 3)), tokens=17))
    assert r.compute_cycles == 2 * 3 * 2


def test_ant_fractional_precision_per_workload():
    # 16x20, g=16: out=20 -> 2, in=20 -> 2, 25 tokens -> ceil(25/20)=2: 8 tiles
    layer = linear("fc", ones((20, 20)), tokens=25)
    (r,) = run("ant", layer)
    assert r.compute_cycles == pytest.approx(8 * 6.1)
    (r,) = run("ant", layer, wl_name="resnet50")
    assert r.compute_cycles == pytest.approx(8 * 6.2)
    assert r.weight_bits == pytest.approx(400 * 6.2)


# ---------------------------------------------------------------- Pragmatic -----------------------
def test_pragmatic_magnitude_bits_ragged_rows_and_lanes():
    w = ones((33, 10))
    w[0, 0] = 127  # 7 magnitude one-bits
    w[32, 9] = -96  # |96| = 0b1100000: 2 bits; the sign bit is not essential
    # g=8: slices [0..7], [8..9 + 6 phantom]; rows: tile 0 = 0..31, tile 1 = row 32 (+31 padding rows)
    # (t0,s0)=7, (t0,s1)=1, (t1,s0)=1, (t1,s1)=2 -> 11 cycles, 1 column tile
    (r,) = run("pragmatic", linear("fc", w))
    assert r.compute_cycles == 11


def test_pragmatic_sign_bit_not_counted_and_zero_floor():
    (r,) = run("pragmatic", linear("fc", -ones((32, 8))))
    assert r.compute_cycles == 1  # |-1| has one essential bit; the published code would give 2
    (r,) = run("pragmatic", linear("fc", np.zeros((32, 8), dtype=np.int16)))
    assert r.compute_cycles == 1  # all-zero tile: documented floor of one cycle


# ---------------------------------------------------------------- Bitlet --------------------------
def test_bitlet_busiest_plane():
    w = np.zeros((2, 40), dtype=np.int16)
    w[0, :32] = -1  # every two's-complement plane has 32 ones
    w[0, 32:] = 3  # last slice: 8 weights with planes 6 and 7 set -> 8 ones
    # g=32: slices [0..31], [32..39 + phantom]; one row tile -> 32 + 8 = 40 cycles
    (r,) = run("bitlet", linear("fc", w))
    assert r.compute_cycles == 40
    w2 = np.zeros((2, 32), dtype=np.int16)
    w2[1, :10] = 5  # planes of 4 and 1: 10 ones each
    (r,) = run("bitlet", linear("fc", w2, tokens=17))
    assert r.compute_cycles == 10 * 2  # two column tiles (17 tokens on 16 columns)


# ---------------------------------------------------------------- BitWave -------------------------
def test_bitwave_nonzero_magnitude_columns():
    w = np.full((32, 32), 8, dtype=np.int16)  # magnitude plane 8 only
    w[0, 0] = 24  # planes 16 and 8
    w[0, 1] = -16  # plane 16; the sign is not a magnitude column
    from bitvert.hardware.accelerators.bitwave import BitWave

    cfg = load_accelerator("bitwave")
    model = BitWave(cfg)
    layer = linear("fc", w)
    model.prepare(workload(layer))
    r = model.layer(layer)
    # g=8 -> 4 slices; row 0 slice 0 has magnitudes {8, 24, 16}: 2 columns; all others 1 -> 2+1+1+1
    assert r.compute_cycles == 5
    # no encoding: per 32-weight group (sign + non-zero magnitude columns) * 32 + 8 bits of mask
    assert r.weight_bits == (3 * 32 + 8) + 31 * (2 * 32 + 8)
    # the bitwave-* variant's encoding (these weights already have >= 3 zero magnitude columns, so the bit
    # flip keeps them): storage = the file's bytes, sign + stored magnitude columns and a 7-bit mask per group
    flipped = encoded(layer, "bitflip", 3, semantics="code")
    assert np.array_equal(flipped.weights, w)
    r = model.layer(flipped)
    assert r.compute_cycles == 5
    assert r.weight_bits == flipped.encoding.footprint_bits == 3 * 32 + 31 * 2 * 32 + 32 * 7


def test_bitwave_all_zero_tile_never_negative():
    (r,) = run("bitwave", linear("fc", np.zeros((32, 8), dtype=np.int16)))
    assert r.compute_cycles == 1  # the published "(planes incl. sign) - 1" gave -1


# ---------------------------------------------------------------- SparTen -------------------------
def test_sparten_dense_activations_max_and_floor():
    w = np.zeros((2, 130), dtype=np.int16)
    w[0, :] = 1  # chunk 0: 128 non-zeros, chunk 1: 2
    w[1, :20] = 1
    # density 1: effectual = non-zero weights; chunk 0 max 128, chunk 1 max 2 -> floor 16
    (r,) = run("sparten", linear("fc", w))
    assert r.compute_cycles == pytest.approx(128 + 16)
    assert r.effectual_macs == pytest.approx(150)


def test_sparten_uses_full_token_count():
    # 197 tokens on 16 columns: 12 full column tiles + one with 5 columns; density 1 -> 16-cycle floor each
    (r,) = run("sparten", linear("fc", ones((32, 128)), tokens=197))
    assert r.compute_cycles == pytest.approx(13 * 128)


# ---------------------------------------------------------------- BitVert -------------------------
# BitVert reads the layer's encoding (hw_helpers.encoded: prune -> codec.encode -> codec.view). The encoder
# stores exactly 8 - N columns for every group of a normal channel (docs/format.md, fixed width) and 8 for a
# sensitive channel; these are the columns the PE processes.
def _bitvert_layer(sensitive_rows: np.ndarray) -> object:
    # normal rows [1, -1, ...] = 00000001 / 11111111: r = 3 (cap) >= N, unchanged by pruning;
    # sensitive rows [100, -99]: kept at 8 bits
    w = np.tile(np.array([1, -1], dtype=np.int16), (64, 16))
    w[sensitive_rows] = np.tile(np.array([100, -99], dtype=np.int16), 16)
    return linear("fc", w, tokens=16)


def _mask(rows: np.ndarray, n: int = 64) -> np.ndarray:
    m = np.zeros(n, dtype=bool)
    m[rows] = True
    return m


def test_bitvert_cycles_from_encoded_columns_with_reordering():
    even = np.arange(0, 64, 2)
    layer = encoded(_bitvert_layer(even), "rounded_avg", 2, _mask(even))
    # conservative (rounded averaging, N=2): normal groups store 8-2 = 6 columns, sensitive ones 8.
    # reordering packs the 32 sensitive rows in one tile: 2 slices x 8 + 2 slices x 6 = 28 cycles
    # (without reordering every tile would hold a sensitive row: 4 x 8 = 32)
    (r,) = run("bitvert", layer)
    assert r.compute_cycles == 28
    assert r.extra["sensitive_channels"] == 32
    # fluid model, p_l = 8 - N = 6: 4 tiles x (0.5 * 8 + 0.5 * 6) = 28
    assert r.extra["cycles_fluid"] == pytest.approx(28)
    # storage = the file's bytes: 32 x 32 x 8 + 32 x 32 x 6 column bits, 32 normal groups x 8 metadata bits,
    # a 64-entry uint16 channel-index table
    assert r.weight_bits == 32 * 32 * 8 + 32 * 32 * 6 + 32 * 8 + 64 * 16
    assert r.weight_bits == layer.encoding.footprint_bits


def test_bitvert_slowest_row_sets_tile_time():
    # one sensitive row (5): reordered first, it shares tile 0 with 31 normal rows, all of which wait for
    # its 8 columns: tile 0 = 2 slices x 8, tile 1 = 2 slices x 6 -> 28 (all normal would be 24)
    layer = encoded(_bitvert_layer(np.array([5])), "rounded_avg", 2, _mask(np.array([5])))
    (r,) = run("bitvert", layer)
    assert r.compute_cycles == 28
    (r,) = run("bitvert", encoded(_bitvert_layer(np.array([5])), "rounded_avg", 2))
    assert r.compute_cycles == 24


def test_bitvert_floor_of_two_cycles():
    from dataclasses import replace

    layer = encoded(linear("fc", np.zeros((32, 32), dtype=np.int16)), "zero_point", 4)
    assert (layer.encoding.stored_columns == 4).all()
    (r,) = run("bitvert", layer)
    assert r.compute_cycles == 2 * 4  # two slices of 4 columns
    # a (hypothetical) encoding storing 1 column per group still costs the 2-cycle floor per tile
    one = replace(layer.encoding, stored_columns=np.ones_like(layer.encoding.stored_columns))
    (r,) = run("bitvert", replace(layer, encoding=one))
    assert r.compute_cycles == 2 * 2


def test_bitvert_moderate_normal_groups_store_four_columns():
    from bitvert.pipeline.global_prune import select_sensitive

    rng = np.random.default_rng(0)
    w = np.clip(np.rint(rng.laplace(0, 15, size=(64, 96))), -127, 127).astype(np.int16)
    (mask,) = select_sensitive([np.linspace(1, 2, 64)], 0.2, 32)
    assert mask.sum() == 32 and mask[32:].all()  # ceil(12.8) = 13 channels rounded up to 32, largest scales
    layer = encoded(linear("fc", w), "zero_point", 4, mask, n_sensitive_global=13)
    normal = ~mask[layer.encoding.group_layout.channel_of_group()]
    assert (layer.encoding.stored_columns[normal] == 4).all() and (layer.encoding.stored_columns[~normal] == 8).all()
    (r,) = run("bitvert", layer)
    # 96 inputs = 6 slices; sensitive tile 8 per slice, normal tile 4 per slice
    assert r.compute_cycles == 6 * 8 + 6 * 4
    # fluid model with the unrounded share: 12 tiles x (13/64 x 8 + 51/64 x 4) = 57.75
    assert r.extra["cycles_fluid"] == pytest.approx(12 * (13 / 64 * 8 + 51 / 64 * 4))
    assert r.extra["sensitive_channels"] == 32


def test_bitvert_rejects_layers_without_bbs_encoding_and_other_group_sizes():
    from bitvert.errors import ConfigError, UnsupportedLayerError

    w = np.ones((32, 64), dtype=np.int16)
    with pytest.raises(UnsupportedLayerError, match="'fc' has no encoding.*'bitvert:moderate'"):
        run("bitvert", linear("fc", w))
    with pytest.raises(UnsupportedLayerError, match="'fc' has a 'bitwave' encoding"):
        run("bitvert", encoded(linear("fc", w), "bitflip", 3, semantics="code"))
    with pytest.raises(ConfigError, match="'group_size' = 32.*groups of 16"):
        run("bitvert", encoded(linear("fc", w), "zero_point", 4, group_size=16))


# ---------------------------------------------------------------- depthwise on every design -------
def _dw_layer():
    # 2 channels, 3x3 window, one output pixel; channel 0: nine 3s (0b11), channel 1: one 7, eight 0s
    w = np.zeros((2, 1, 3, 3), dtype=np.int16)
    w[0] = 3
    w[1, 0, 0, 0] = 7
    return conv("dw", w, (1, 1), (3, 3), groups=2)


def test_depthwise_golden_every_design():
    layer = _dw_layer()
    # window-major, one channel per tile: 2 row tiles, 1 column tile
    (r,) = run("stripes", layer)
    assert r.compute_cycles == 2 * 1 * 8  # ceil(9/16) = 1 slice
    (r,) = run("bit-parallel", layer)
    assert r.compute_cycles == 2 * 9  # 9 one-weight slices
    (r,) = run("ant", layer)
    assert r.compute_cycles == pytest.approx(2 * 6.1)
    # Pragmatic, g=8: slices [8 weights], [1 weight]; ch0: 2 + 2; ch1: 3 (the 7) + floor 1
    (r,) = run("pragmatic", layer)
    assert r.compute_cycles == 8
    # Bitlet, g=32: ch0 planes 6 and 7 hold nine ones; ch1 every plane of 7 holds one one
    (r,) = run("bitlet", layer)
    assert r.compute_cycles == 9 + 1
    # SparTen, density 1: effectual 9 and 1, depthwise floor 8 per chunk -> 9 + 8
    (r,) = run("sparten", layer)
    assert r.compute_cycles == pytest.approx(17)
    # BitVert conservative, no sensitive channel, groups along the window (9 weights): every group of a
    # normal channel stores 8 - 2 = 6 columns -> 6 + 6
    (r,) = run("bitvert", encoded(layer, "rounded_avg", 2))
    assert r.compute_cycles == 6 + 6


def test_depthwise_golden_bitwave():
    from bitvert.hardware.accelerators.bitwave import BitWave

    layer = _dw_layer()
    model = BitWave(load_accelerator("bitwave"))
    model.prepare(workload(layer))
    # BitWave runs the weights as given (a bitwave-* variant's are already flipped); g=8: ch0 slices OR = 3 (2 columns), 3 (2); ch1: 7 (3 columns), 0 (floor 1)
    assert model.layer(layer).compute_cycles == 4 + 4


def test_bitvert_window_major_slice_takes_the_largest_group():
    # RGB-stem-like conv: C=3 < k*k=9 -> each 16-lane slice holds the 9 window positions of one input
    # channel, i.e. one weight from each of the 9 metadata groups (a group = the 3 channels at a position)
    w = np.zeros((32, 3, 3, 3), dtype=np.int16)
    w[0, :, 0, 0] = [100, -99, 5]  # group (channel 0, position (0,0))
    # rounded averaging, N=2, no sensitive channel: every group stores 6 columns; channel 0's row tile
    # (all 32 channels) takes 6 cycles in each of its 3 slices
    layer = encoded(conv("stem", w, (1, 1), (3, 3)), "rounded_avg", 2)
    assert layer.weights[0, :, 0, 0].tolist() == [101, -99, 5]  # the pruned values the PE runs
    (r,) = run("bitvert", layer)
    assert r.mapping.window_major and r.mapping.n_slices == 3
    assert r.compute_cycles == 3 * 6
