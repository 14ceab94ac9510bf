"""The compiled kernels against the readable reference (the oracle), group by group.

The zero-point kernel searches by residues (docs/pruning.md, "How the fast path works"); these
tests pin it to :mod:`bitvert.pruning.reference` on groups with the edge values, short groups and
inactive groups, and check the two facts the residue search rests on for every configuration.
"""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bitvert.core.analysis import free_columns
from bitvert.errors import InputError
from bitvert.pruning import PruneConfig, prune
from bitvert.pruning import _kernels, reference
from bitvert.pruning.methods import _zero_point_tables, reference_group

METHODS = [(name, semantics) for name in ("rounded_avg", "zero_point", "bitflip")
           for semantics in ("paper", "code")]


@st.composite
def group_batch(draw):
    """A padded group array with short and inactive groups, values biased to the range edges."""
    method, semantics = draw(st.sampled_from(METHODS))
    bits = 8 if (method, semantics) == ("zero_point", "code") else draw(st.integers(2, 8))
    columns = draw(st.integers(1, bits - 1))
    cfg = PruneConfig(method, semantics, weight_bits=bits, group_size=2, columns=columns,
                      constant_bits=draw(st.integers(1, bits)) if method == "zero_point" else None)
    sign_magnitude = cfg.number_format.value == "sign_magnitude"
    lo, hi = -(1 << (bits - 1)) + (1 if sign_magnitude else 0), (1 << (bits - 1)) - 1
    value = st.one_of(st.sampled_from(sorted({lo, lo + 1, -1, 0, 1, hi - 1, hi})), st.integers(lo, hi))
    width = draw(st.integers(1, 12))
    n = draw(st.integers(1, 6))
    lengths = np.array(draw(st.lists(st.integers(1, width), min_size=n, max_size=n)), dtype=np.int32)
    active = np.array(draw(st.lists(st.booleans(), min_size=n, max_size=n)), dtype=bool)
    vals = np.zeros((n, width), dtype=np.int16)
    for i in range(n):
        vals[i, : lengths[i]] = draw(st.lists(value, min_size=int(lengths[i]), max_size=int(lengths[i])))
    return cfg, vals, lengths, active


@settings(max_examples=150, deadline=None)
@given(group_batch())
def test_kernel_equals_reference_on_edge_short_and_inactive_groups(batch):
    cfg, vals, lengths, active = batch
    out, red, const, free = cfg.spec.kernel(vals, lengths, active, cfg)
    assert out.dtype == np.int16 and red.dtype == np.uint8 and const.dtype == np.int16
    assert free.dtype == np.uint8
    # the free columns the kernel counted in its own pass are the registry's count of its output
    counted = cfg.spec.count_free(out, const, lengths, int(cfg.weight_bits), cfg.redundant_cap)
    assert free.tolist() == counted.tolist()
    for i in range(vals.shape[0]):
        length = lengths[i]
        assert not out[i, length:].any(), "phantom entries must be written as 0"
        if not active[i]:
            assert out[i, :length].tolist() == vals[i, :length].tolist()
            assert int(const[i]) == 0
            continue
        ref_w, ref_count, ref_const = reference_group(vals[i, :length], cfg)
        assert out[i, :length].tolist() == ref_w.tolist(), (i, vals[i, :length].tolist())
        assert (int(red[i]), int(const[i])) == (ref_count, ref_const)


@pytest.mark.parametrize("semantics", ["paper", "code"])
def test_zero_point_wide_groups_of_32_equal_reference(semantics):
    """The speed-critical configuration (N = 4, g = 32) on wide groups, where clipping and
    clamping make many candidates' residue errors mere lower bounds."""
    rng = np.random.default_rng(11)
    w = np.clip(np.round(rng.laplace(0, 45, size=(6, 96))), -127, 127).astype(np.int8)
    w[0, :4] = [-127, 127, 127, -127]
    if semantics == "paper":
        w[1, :3] = -128
    cfg = PruneConfig("zero_point", semantics, group_size=32, columns=4)
    res = prune(w, cfg)
    groups = res.layout.group(w)
    for i in range(groups.shape[0]):
        ref_w, ref_count, ref_const = reference_group(groups[i], cfg)
        assert res.groups()[i].tolist() == ref_w.tolist()
        assert (int(res.metadata.redundant[i]), int(res.metadata.constant[i])) == (ref_count, ref_const)


@pytest.mark.parametrize(("method", "semantics"), METHODS)
@pytest.mark.parametrize("columns", [2, 4, 6])
def test_free_columns_counted_in_the_kernel_pass_equal_the_registry_count(method, semantics, columns):
    """Rounded averaging derives its output's free columns from the input's statistics and
    zero-point shifting from the rounding loop: both must equal a recount of the output, on
    groups of 32 with edge values, a short remainder group and inactive (dense) channels."""
    rng = np.random.default_rng(columns)
    w = np.clip(np.round(rng.laplace(0, 30, size=(12, 80))), -127, 127).astype(np.int8)
    w[0, :4] = [-127, 127, 127, -127]
    w[1, :] = 127
    w[2, :] = -127
    w[3, :40] = 0
    cfg = PruneConfig(method, semantics, group_size=32, columns=columns)
    res = prune(w, cfg, dense_channels=np.arange(12) % 4 == 1)
    counted = cfg.spec.count_free(res.groups(), res.metadata.constant, res.layout.lengths(), 8,
                                  cfg.redundant_cap)
    assert cfg.spec.kernel_free_columns
    assert res.metadata.free_columns.tolist() == counted.tolist()


def _configs():
    for semantics in ("paper", "code"):
        for bits in range(2, 9):
            for columns in range(1, bits):
                for cb in range(1, bits + 1):
                    yield PruneConfig("zero_point", semantics, weight_bits=bits, columns=columns,
                                      constant_bits=cb)


def test_residue_error_is_a_lower_bound_and_exact_inside_the_agreement_interval():
    """For every configuration: at level ``lev`` the squared error of each weight is at least
    its residue error ``min(m, step - m)**2`` (``m = (v + c) mod 2**(N - lev)``), with equality
    for every weight value inside the candidate's agreement interval."""
    for cfg in _configs():
        b, n_cols = cfg.weight_bits, cfg.columns
        cmin, cmax = cfg.constant_range
        sm = cfg.semantics.value == "code"
        n_levels = b if sm else cfg.redundant_cap + 1
        table, agree_lo, agree_hi = _zero_point_tables(b, n_cols, n_levels, cmin, cmax, sm)
        v = np.arange(-(1 << (b - 1)), 1 << (b - 1))[:, None]
        c = np.arange(cmin, cmax + 1)[None, :]
        for lev in range(n_levels):
            step = 1 << max(n_cols - lev, 0)
            m = (v + c) % step
            resid = np.minimum(m, step - m) ** 2
            exact = table[lev].astype(np.int64)
            assert (exact >= resid).all(), (cfg, lev)
            inside = (v >= agree_lo[lev][None, :]) & (v <= agree_hi[lev][None, :])
            assert (exact[inside] == resid[inside]).all(), (cfg, lev)


def test_agreement_interval_covers_the_middle_of_the_range():
    """Sanity of the fast path: at 8 bits, N = 4, every constant agrees with plain rounding on
    the weights that clipping and clamping cannot reach (so the residue error is usually exact)."""
    for semantics, n_levels, sm in (("paper", 4, False), ("code", 8, True)):
        cfg = PruneConfig("zero_point", semantics, columns=4)
        cmin, cmax = cfg.constant_range
        _, agree_lo, agree_hi = _zero_point_tables(8, 4, n_levels, cmin, cmax, sm)
        assert (agree_lo[0] <= -80).all() and (agree_hi[0] >= 80).all()


def test_zero_point_kernel_with_a_single_candidate():
    """A single-candidate range (``cmin == cmax``) returns that candidate's rounding."""
    vals = np.array([[81, -20, 1, -7], [0, 0, 0, 0]], dtype=np.int16)
    tables = _zero_point_tables(8, 4, 4, 5, 5, False)
    out, red, const, _ = _kernels.zero_point(vals, np.full(2, 4, np.int32), np.ones(2, bool), *tables,
                                             8, 4, 3, 5, 5, False, np.empty(vals.shape, np.int16))
    assert const.tolist() == [5, 5]
    for i in range(2):
        ref_w, ref_count, _ = reference.zero_point_paper_group(vals[i], 8, 4, constants=[5])
        assert out[i].tolist() == ref_w.tolist() and int(red[i]) == ref_count
    assert out[1].tolist() == [-1, -1, -1, -1]  # 0 + 5 rounds (tie toward zero) to 4: decoded -1


@given(st.integers(0, 2**20), st.integers(1, 7), st.integers(1, 9))
def test_free_columns_with_offsets_equal_free_columns_of_shifted_values(seed, n, width):
    rng = np.random.default_rng(seed)
    vals = rng.integers(-96, 96, size=(n, width)).astype(np.int16)
    lengths = rng.integers(1, width + 1, size=n).astype(np.int32)
    offsets = rng.integers(-32, 32, size=n).astype(np.int16)
    shifted = (vals + offsets[:, None]).astype(np.int16)
    assert free_columns(vals, lengths, offsets=offsets).tolist() == free_columns(shifted, lengths).tolist()


def test_free_columns_offsets_shape_is_checked():
    with pytest.raises(InputError, match="offsets must have shape"):
        free_columns(np.zeros((3, 4), np.int16), offsets=[1, 2])
