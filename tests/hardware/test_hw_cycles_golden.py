"""Golden cycle counts, computed by hand in each test, for every accelerator on small layers."""

from __future__ import annotations

import numpy as np
import pytest

from bitvert.hardware.accelerators import model_for
from bitvert.hardware.config import load_accelerator
from bitvert.hardware.tiling import map_layer
from hw_helpers import conv, linear, workload


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
    # precondition: these weights already have >= 3 zero magnitude columns, so the bit flip keeps them
    assert np.array_equal(model.pruned_weights(layer), w)
    r = model.layer(layer)
    # g=8 -> 4 slices; row 0 slice 0 has magnitudes {8, 24, 16}: 2 columns; all others 1 -> 2+1+1+1
    assert r.compute_cycles == 5
    # storage per 32-weight group: (sign + non-zero magnitude columns) * 32 + 8 bits of mask
    assert r.weight_bits == (3 * 32 + 8) + 31 * (2 * 32 + 8)


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
def _bitvert_layer(sensitive_rows: np.ndarray) -> object:
    # normal rows [1, -1, ...] = 00000001 / 11111111: planes 1..6 repeat the sign -> r = 3 (cap);
    # below them planes 3..6 differ, plane 7 is all ones (constant) -> 4 free columns, 4 stored
    w = np.tile(np.array([1, -1], dtype=np.int16), (64, 16))
    w[sensitive_rows] = np.tile(np.array([100, -99], dtype=np.int16), 16)  # r = 0, no constant column
    scale = np.ones(64)
    scale[sensitive_rows] = 2.0
    return linear("fc", w, tokens=16, channel_scale=scale)


def test_bitvert_cycles_from_pruned_weights_with_reordering():
    even = np.arange(0, 64, 2)
    layer = _bitvert_layer(even)
    # conservative (rounded averaging, N=2) with beta=0.5: the 32 large-scale rows stay dense.
    # normal groups already have r = 3 >= N: unchanged, 4 stored columns (see _bitvert_layer);
    # sensitive groups [100, -99] = 01100100 / 10011101: r = 0, LSB differs -> 8 stored.
    # reordering packs the 32 sensitive rows in one tile: 2 slices x 8 + 2 slices x 4 = 24 cycles
    # (without reordering every tile would hold a sensitive row: 4 x 8 = 32)
    (r,) = run("bitvert-conservative", layer, sensitive_fraction=0.5)
    assert r.compute_cycles == 24
    assert r.extra["sensitive_channels"] == 32
    # fluid model: 4 tiles x (0.5 * 8 + 0.5 * 6) = 28
    assert r.extra["cycles_fluid"] == pytest.approx(28)
    # storage: 32 groups x 8 cols x 32 + 32 x 4 x 32 + 64 x 8 metadata + 64 x 6-bit channel index
    assert r.weight_bits == 32 * 8 * 32 + 32 * 4 * 32 + 64 * 8 + 64 * 6


def test_bitvert_slowest_row_sets_tile_time_without_sensitive():
    layer = _bitvert_layer(np.array([5]))
    # beta = 0: nothing is sensitive. Row 5 [100, -99]: rounded averaging, N=2, r=0, k_low=2:
    # low fields [0, 1], mean 0.5 -> 0 (half to even) -> [100, -100] = 01100100 / 10011100, whose
    # planes 5, 6, 7 are constant -> 3 free, 5 stored. Tile 0 (rows 0..31) waits for row 5:
    # 2 slices x 5; tile 1: 2 slices x 4 -> 18
    (r,) = run("bitvert-conservative", layer, sensitive_fraction=0.0)
    assert r.compute_cycles == 18


def test_bitvert_floor_of_two_cycles():
    (r,) = run("bitvert-moderate", linear("fc", np.zeros((32, 32), dtype=np.int16)), sensitive_fraction=0.0)
    assert r.compute_cycles == 2 * 2  # two slices, all-zero groups store 0 columns, floor 2


def test_bitvert_moderate_normal_groups_store_at_most_four_columns():
    rng = np.random.default_rng(0)
    w = np.clip(np.rint(rng.laplace(0, 15, size=(64, 96))), -127, 127).astype(np.int16)
    from bitvert.hardware.presets import select_sensitive_channels, prune_layer

    layer = linear("fc", w, channel_scale=np.linspace(1, 2, 64))
    mask = select_sensitive_channels([layer], 0.2, 32)[layer.name]
    assert mask.sum() == 32 and mask[32:].all()  # 13 channels rounded up to 32, largest scales
    d = prune_layer(layer, mask, "zero_point", 4, 32)
    normal = ~mask[d.layout.channel_of_group()]
    assert d.stored_columns[normal].max() <= 4
    (r,) = run("bitvert-moderate", layer)
    # 96 inputs = 6 slices; sensitive tile <= 8 per slice, normal tile <= 4 per slice
    assert r.compute_cycles <= 6 * 8 + 6 * 4
    assert r.compute_cycles >= 6 * 2 + 6 * 2
    # fluid model with the unrounded share: 12 tiles x (13/64 x 8 + 51/64 x 4) = 57.75
    assert r.extra["cycles_fluid"] == pytest.approx(12 * (13 / 64 * 8 + 51 / 64 * 4))
    assert r.extra["sensitive_channels"] == 32


def test_bitvert_stored_columns_equal_free_columns_of_stored_groups():
    from bitvert.core.analysis import free_columns
    from bitvert.hardware.presets import prune_layer
    from bitvert.pruning import PruneConfig, prune

    rng = np.random.default_rng(3)
    w = np.clip(np.rint(rng.laplace(0, 20, size=(40, 72))), -127, 127).astype(np.int16)
    layer = linear("fc", w)
    sens = np.zeros(40, dtype=bool)
    sens[:8] = True
    for method, n in (("zero_point", 4), ("rounded_avg", 2)):
        d = prune_layer(layer, sens, method, n, 32)
        res = prune(w, PruneConfig(method=method, columns=n), kind="linear", dense_channels=sens)
        expect = 8 - free_columns(res.stored_groups(), res.layout.lengths(), bits=8, cap=3).astype(int)
        assert np.array_equal(d.stored_columns, expect)


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
    # BitVert conservative, beta 0, groups along the window (9 weights):
    # ch0 = 00000011 x9: r = 3 (cap), planes 4..7 constant -> 7 free, 1 stored -> floor 2;
    # ch1 = [7, 0, ...]: r = 3, LSB column not constant -> 3 free, 5 stored (r >= N: unchanged)
    (r,) = run("bitvert-conservative", layer, sensitive_fraction=0.0)
    assert r.compute_cycles == 2 + 5


def test_depthwise_golden_bitwave():
    from bitvert.hardware.accelerators.bitwave import BitWave

    layer = _dw_layer()
    model = BitWave(load_accelerator("bitwave"))
    model.prepare(workload(layer))
    assert np.array_equal(model.pruned_weights(layer), layer.weights)  # >= 3 zero magnitude columns already
    # g=8: ch0 slices OR = 3 (2 columns), 3 (2); ch1: 7 (3 columns), 0 (floor 1)
    assert model.layer(layer).compute_cycles == 4 + 4


def test_bitvert_window_major_slice_takes_the_largest_group():
    # RGB-stem-like conv: C=3 < k*k=9 -> each 16-lane slice holds the 9 window positions of one input
    # channel, i.e. one weight from each of the 9 metadata groups (a group = the 3 channels at a position)
    w = np.zeros((32, 3, 3, 3), dtype=np.int16)
    w[0, :, 0, 0] = [100, -99, 5]  # group (channel 0, position (0,0))
    # rounded averaging, N=2, beta=0: r=0 (01100100 / 10011101 / 00000101), low 2-bit fields [0, 1, 1],
    # mean 2/3 -> 1 -> [101, -99, 5]; then planes 5, 6, 7 are constant (1, 0, 1) -> 3 free, 5 stored.
    # All-zero groups store 1 column. Every slice of channel 0 touches that group -> 3 slices x 5 cycles
    (r,) = run("bitvert-conservative", conv("stem", w, (1, 1), (3, 3)), sensitive_fraction=0.0)
    assert r.mapping.window_major and r.mapping.n_slices == 3
    assert r.compute_cycles == 3 * 5
