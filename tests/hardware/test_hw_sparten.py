"""SparTen: PE columns share their activation vector (golden values by hand, brute force, properties)."""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bitvert.errors import InputError
from bitvert.hardware.accelerators import model_for
from bitvert.hardware.accelerators.sparten import STAT_TILES, activation_slices, pack_lanes
from bitvert.hardware.config import load_accelerator
from bitvert.hardware.tiling import per_weight_slices
from bitvert.hardware.workload import LayerType, LayerWorkload, Workload
from hw_helpers import conv, linear


def sparten(layer: LayerWorkload, **overrides: object):
    cfg = load_accelerator("sparten", overrides=overrides or None)
    model = model_for(cfg)
    model.prepare(Workload("t", (layer,)))
    return model.layer(layer)


# ------------------------------------------------------------ real masks, by hand ------------------------
def test_linear_real_mask_golden():
    # weight masks: row0 {0,1,3}, row1 {1,2,3}; token0 mask [1,0,1,1], token1 [0,1,1,0]
    # PE(row0, tok0) = |{0,3}| = 2, PE(row1, tok0) = |{2,3}| = 2,
    # PE(row0, tok1) = |{1}| = 1,   PE(row1, tok1) = |{1,2}| = 2
    # one tile (2 rows, 2 columns, 1 chunk): max = 2; effectual = 2 + 2 + 1 + 2 = 7
    w = np.array([[1, 2, 0, 3], [0, 1, 1, 1]])
    mask = np.array([[1, 0, 1, 1], [0, 1, 1, 0]], dtype=bool)
    layer = linear("fc", w, tokens=2, input_mask=mask)
    r = sparten(layer, min_cycles_per_chunk=0)
    assert r.compute_cycles == 2
    assert r.effectual_macs == 7
    assert r.extra["activations"] == "mask"
    assert r.extra["input_density"] == pytest.approx(5 / 8)
    assert sparten(layer).compute_cycles == 16  # buffer-load floor of the one chunk


def test_conv_real_mask_golden_windows_and_row_tiles():
    # 2x2 kernel, weight mask [[1,0],[1,1]]; input 3x3 mask, stride 1, no padding -> 2x2 output
    #   [[1,1,0],
    #    [0,1,1],
    #    [1,0,1]]
    # out(0,0): window [[1,1],[0,1]] -> (0,0)+(1,1) = 2;  out(0,1): [[1,0],[1,1]] -> 3
    # out(1,0): [[0,1],[1,0]] -> (1,0) = 1;               out(1,1): [[1,1],[0,1]] -> 2
    # one column tile per output row: max(2, 3) + max(1, 2) = 5 cycles; effectual 8
    w = np.array([[[[1, 0], [1, 1]]]])
    x = np.array([[[[1, 1, 0], [0, 1, 1], [1, 0, 1]]]], dtype=bool)
    layer = conv("c", w, (2, 2), (3, 3), input_mask=x)
    r = sparten(layer, min_cycles_per_chunk=0)
    assert (r.compute_cycles, r.effectual_macs) == (5, 8)
    assert sparten(layer).compute_cycles == 2 * 16


def test_conv_real_mask_padding_counts_as_zero():
    # 3x3 all-ones kernel, 2x2 all-ones input, padding 1 -> 2x2 output; every window covers the 4 real
    # pixels (the 5 padded positions are zero activations): 4 effectual MACs per PE, 2 output rows = 2 tiles
    x = np.ones((1, 1, 2, 2), bool)
    layer = conv("c", np.ones((1, 1, 3, 3)), (2, 2), (2, 2), padding=(1, 1), input_mask=x)
    r = sparten(layer, min_cycles_per_chunk=0)
    assert (r.compute_cycles, r.effectual_macs) == (2 * 4, 4 * 4)


def test_depthwise_real_mask_each_group_reads_its_channel():
    # 2 channels, 1x1 depthwise kernels of ones; channel 0 input non-zero, channel 1 zero:
    # row tile 0 (channel 0) does 1 MAC, row tile 1 (channel 1) none; depthwise floor 8 per tile
    x = np.array([[[[True]], [[False]]]])
    layer = conv("dw", np.ones((2, 1, 1, 1)), (1, 1), groups=2, input_mask=x)
    assert sparten(layer, min_cycles_per_chunk_depthwise=0).compute_cycles == 1
    assert sparten(layer).compute_cycles == 2 * 8


def _brute_force(layer: LayerWorkload, x: np.ndarray, rows: int = 32, cols: int = 16, chunk: int = 128
                 ) -> int:
    """Cycles with floor 0 by explicit loops over output pixels / tokens, channels and chunks."""
    w = per_weight_slices(layer.weights != 0, layer, chunk)  # [cout, K, chunk]
    cout = w.shape[0]
    groups = layer.groups if layer.is_conv else 1
    cout_g, cpg = cout // groups, layer.in_channels_per_group
    runs = []  # per run of columns (conv: image x output row; linear: all rows), the activation chunks
    if layer.is_conv:
        (kh, kw), (sh, sw), (ph, pw) = layer.kernel, layer.stride, layer.padding
        oh, ow = layer.output_hw
        for b in range(layer.batch):
            for oy in range(oh):
                run = []
                for ox in range(ow):
                    patch = np.zeros((groups, cpg, kh, kw), dtype=bool)
                    for g in range(groups):
                        for ci in range(cpg):
                            for ky in range(kh):
                                for kx in range(kw):
                                    iy, ix = oy * sh - ph + ky, ox * sw - pw + kx
                                    if 0 <= iy < x.shape[2] and 0 <= ix < x.shape[3]:
                                        patch[g, ci, ky, kx] = x[b, g * cpg + ci, iy, ix]
                    run.append(per_weight_slices(patch, layer, chunk))  # [groups, K, chunk]
                runs.append(run)
    else:
        flat = x.reshape(-1, cpg)
        runs.append([per_weight_slices(flat[i:i + 1], layer, chunk) for i in range(flat.shape[0])])
    total = 0
    for run in runs:
        for c0 in range(0, len(run), cols):
            tile_cols = run[c0:c0 + cols]
            for g in range(groups):
                for r0 in range(0, cout_g, rows):
                    for k in range(w.shape[1]):
                        best = 0
                        for a in tile_cols:
                            for o in range(g * cout_g + r0, g * cout_g + min(cout_g, r0 + rows)):
                                best = max(best, int(np.sum(w[o, k] & a[g if layer.is_conv else 0, k])))
                        total += best
    return total


@st.composite
def masked_layers(draw):
    kind = draw(st.sampled_from(["linear", "conv", "depthwise", "grouped"]))
    seed = draw(st.integers(0, 2**31 - 1))
    rng = np.random.default_rng(seed)
    zero_w = draw(st.floats(0.0, 0.9))
    batch = draw(st.integers(1, 2))
    if kind == "linear":
        shape = (draw(st.integers(1, 40)), draw(st.integers(1, 300)))
        tokens = draw(st.integers(1, 20))
        x_shape: tuple[int, ...] = (batch * tokens, shape[1])
        geo: dict = {"tokens": tokens}
    else:
        groups = {"conv": 1, "depthwise": 3, "grouped": 2}[kind]
        cpg = 1 if kind == "depthwise" else draw(st.integers(1, 6))
        k = draw(st.sampled_from([1, 2, 3]))
        s, p = draw(st.integers(1, 2)), draw(st.integers(0, 1))
        ih, iw = draw(st.integers(k, 6)), draw(st.integers(k, 20))
        oh, ow = (ih + 2 * p - k) // s + 1, (iw + 2 * p - k) // s + 1
        cout = groups * (1 if kind == "depthwise" else draw(st.integers(1, 3)))
        shape = (cout, cpg, k, k)
        x_shape = (batch, groups * cpg, ih, iw)
        geo = {"input_hw": (ih, iw), "output_hw": (oh, ow), "stride": (s, s), "padding": (p, p),
               "groups": groups}
    w = np.where(rng.random(shape) < zero_w, 0, rng.integers(-127, 128, size=shape)).astype(np.int16)
    x = rng.random(x_shape) < draw(st.floats(0.05, 1.0))
    if kind == "depthwise":
        kind_t = LayerType.DEPTHWISE
    else:
        kind_t = LayerType.LINEAR if kind == "linear" else LayerType.CONV
    return LayerWorkload(name="l", kind=kind_t, weights=w, batch=batch, input_mask=x, **geo)


@settings(max_examples=25, deadline=None)
@given(masked_layers())
def test_real_mask_equals_brute_force(layer):
    r = sparten(layer, min_cycles_per_chunk=0, min_cycles_per_chunk_depthwise=0)
    assert r.compute_cycles == _brute_force(layer, layer.input_mask)


def test_real_mask_bad_shape_is_rejected():
    layer = linear("fc", np.ones((2, 4)), tokens=3, input_mask=np.ones((2, 4), bool))
    with pytest.raises(InputError, match="input_mask"):
        sparten(layer)
    with pytest.raises(InputError, match="input_mask"):
        conv("c", np.ones((1, 1, 3, 3)), (2, 2), (4, 4), input_mask=np.ones((1, 1, 4, 4), dtype=np.int8))
    # geometry that cannot produce the output (e.g. "same" padding applied inside the module, not recorded)
    for in_hw in ((4, 4), (2, 2)):
        layer = conv("c", np.ones((1, 1, 3, 3)), (4, 4), in_hw, input_mask=np.ones((1, 1, *in_hw), bool))
        with pytest.raises(InputError, match="padding"):
            sparten(layer)


# ------------------------------------------------------------ statistical model --------------------------
def _binomial_cdf(n: int, p: float) -> np.ndarray:
    return np.cumsum([math.comb(n, k) * p**k * (1 - p) ** (n - k) for k in range(n + 1)])


def test_statistical_rows_share_the_activation_draw():
    # 32 identical rows of 128 non-zero weights, one token (1 column), d = 0.5, floor 0.
    # Shared activation: every row counts the same Binomial(128, .5) ones -> E[max over rows] = 64.
    # Independent rows (the former model) would give E[max of 32 Binomial(128, .5)] ~ 75.7.
    layer = linear("fc", np.ones((32, 128)), tokens=1, input_density=0.5)
    r = sparten(layer, min_cycles_per_chunk=0)
    sd = math.sqrt(128 * 0.25 / STAT_TILES)  # standard error of the mean of STAT_TILES draws
    assert abs(r.compute_cycles - 64) < 4 * sd
    cdf = _binomial_cdf(128, 0.5)
    independent = float(np.sum(1 - cdf[:-1] ** 32))  # E[max] = sum_m P(max > m)
    assert independent == pytest.approx(75.7, abs=0.1)
    assert r.compute_cycles < independent - 6
    assert r.effectual_macs == pytest.approx(32 * 128 * 0.5)  # exact expectation nnz * d per row
    assert r.extra["activations"] == "density"


def test_statistical_dense_activations_are_exact():
    # d = 1: every column sees every weight: per chunk the max over rows of the non-zero count.
    # rows: 128 + 2 non-zeros (chunks 0 and 1) and 20 + 0 -> chunk maxima 128 and 2 -> floor 16: 144 per tile;
    # 40 tokens = 2 full column tiles + one of 8 columns -> 3 * 144
    w = np.zeros((2, 130), dtype=np.int16)
    w[0, :] = 1
    w[1, :20] = 1
    r = sparten(linear("fc", w, tokens=40))
    assert r.compute_cycles == 3 * 144


def test_statistical_scales_with_spatial_tiles():
    # the expected cost of a tile does not depend on how many tiles there are: 2 batch images = 2x the cycles
    rng = np.random.default_rng(3)
    w = rng.integers(-3, 4, size=(40, 20, 3, 3)).astype(np.int16)
    one = conv("c", w, (5, 21), input_density=0.4)
    assert sparten(replace(one, batch=2)).compute_cycles == pytest.approx(2 * sparten(one).compute_cycles)


@st.composite
def density_layers(draw):
    seed = draw(st.integers(0, 2**31 - 1))
    rng = np.random.default_rng(seed)
    kind = draw(st.sampled_from(["linear", "conv", "depthwise"]))
    cout = draw(st.integers(1, 70))
    if kind == "linear":
        shape: tuple[int, ...] = (cout, draw(st.integers(1, 300)))
    elif kind == "conv":
        shape = (cout, draw(st.integers(1, 40)), 3, 3)
    else:
        shape = (cout, 1, 3, 3)
    w = np.clip(np.rint(rng.laplace(0, draw(st.floats(0.3, 20)), size=shape)), -127, 127).astype(np.int16)
    hw = (draw(st.integers(1, 6)), draw(st.integers(1, 40)))
    conv_like = kind != "linear"
    return LayerWorkload(
        name="l", kind=LayerType(kind), weights=w, output_hw=hw if conv_like else (1, 1),
        input_hw=hw if conv_like else (1, 1), groups=cout if kind == "depthwise" else 1,
        tokens=1 if conv_like else draw(st.integers(1, 50)), batch=draw(st.integers(1, 2)),
    )


@settings(max_examples=30, deadline=None)
@given(density_layers(), st.floats(0.01, 1.0), st.floats(0.01, 1.0))
def test_statistical_floor_dense_bound_and_monotone(layer, d1, d2):
    lo, hi = sorted((d1, d2))
    sparse, dense = sparten(replace(layer, input_density=lo)), sparten(replace(layer, input_density=hi))
    full = sparten(replace(layer, input_density=1.0))
    tiles = sparse.mapping.tiles
    floor = 8 if layer.kind is LayerType.DEPTHWISE else 16
    assert floor * tiles <= sparse.compute_cycles  # buffer-load floor of every chunk
    assert sparse.compute_cycles <= dense.compute_cycles + 1e-9  # denser activations are never faster
    assert dense.compute_cycles <= full.compute_cycles + 1e-9  # ... nor d = 1 (every weight effectual)
    assert full.compute_cycles <= 128 * tiles  # at most one chunk of MACs per tile (the dense count)


@settings(max_examples=20, deadline=None)
@given(masked_layers(), st.integers(0, 2**31 - 1))
def test_real_mask_subset_never_slower(layer, seed):
    mask = layer.input_mask
    sub = mask & (np.random.default_rng(seed).random(mask.shape) < 0.5)
    full = sparten(replace(layer, input_mask=np.ones_like(mask)))
    a, b = sparten(replace(layer, input_mask=sub)), sparten(layer)
    floor = 8 if layer.kind is LayerType.DEPTHWISE else 16
    assert floor * a.mapping.tiles <= a.compute_cycles <= b.compute_cycles <= full.compute_cycles
    assert full.compute_cycles <= 128 * a.mapping.tiles
    # an all-ones mask is the statistical model at d = 1, except that a conv's zero padding stays zero
    dense = sparten(replace(layer, input_mask=None, input_density=1.0)).compute_cycles
    assert full.compute_cycles <= dense
    if layer.padding == (0, 0):
        assert full.compute_cycles == dense


def test_pack_lanes_and_slices_layout():
    m = np.zeros((1, 130), dtype=bool)
    m[0, [0, 64, 129]] = True
    packed = pack_lanes(m)
    assert packed.shape == (1, 3) and packed.dtype == np.uint64
    assert [int(np.bitwise_count(p)) for p in packed[0]] == [1, 1, 1]
    # a linear layer's 2 x 3 input becomes 1 group x 1 chunk x 16 columns (2 real + 14 padding) x 4 lanes
    layer = linear("fc", np.ones((1, 3)), tokens=2)
    sl = activation_slices(layer, np.array([[1, 0, 1], [0, 1, 0]], bool), chunk=4, cols=16)
    assert sl.shape == (1, 1, 16, 4)
    assert sl[0, 0, :2].tolist() == [[True, False, True, False], [False, True, False, False]]
    assert not sl[0, 0, 2:].any()
