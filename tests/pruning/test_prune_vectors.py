"""BBS.md §6.6 test vectors (b = 8, g = 4): the paper's Fig. 4 and Fig. 5 plus hand-derived cases."""

import numpy as np
import pytest

from bitvert.core.bitplanes import to_bitplanes
from bitvert.pruning import PruneConfig, prune
from bitvert.pruning import _kernels
from bitvert.pruning.methods import _zero_point_tables


def run(w, method, semantics="paper", columns=4, **kw):
    r = prune([w], PruneConfig(method, semantics, group_size=4, columns=columns, **kw))
    return r, r.weights[0].tolist(), int(r.metadata.redundant[0]), int(r.metadata.constant[0])


def test_vector2_fig4_rounded_averaging():
    for semantics in ("paper", "code"):
        r, w, red, c = run([13, -57, 20, -11], "rounded_avg", semantics)
        assert w == [13, -59, 21, -11]
        assert (red, c) == (1, 0b101)
        # the 3 low columns are all-1, all-0, all-1 (pattern 101) and plane 1 repeats the sign
        planes = to_bitplanes(np.array(w), 8)
        assert planes[5:].tolist() == [[1] * 4, [0] * 4, [1] * 4]
        assert np.array_equal(planes[1], planes[0])
        assert int(r.free_columns[0]) == 4


def test_vector3_fig5_zero_point_fixed_constant():
    vals = np.array([[81, -20, 1, -7]], dtype=np.int16)
    one = np.ones(1, dtype=np.int32) * 4
    tables = _zero_point_tables(8, 4, 4, -14, -14, False)  # one candidate
    out, red, const, _ = _kernels.zero_point(vals, one, np.ones(1, bool), *tables, 8, 4, 3, -14, -14, False,
                                             np.empty((1, 4), np.int16))
    assert out[0].tolist() == [78, -18, -2, -2]
    assert (int(red[0]), int(const[0])) == (0, -14)  # the figure prints the added-back value 14
    stored = out[0] + const[0]
    assert stored.tolist() == [64, -32, -16, -16]
    assert int(((out[0] - vals[0]) ** 2).sum()) == 47


def test_vector4_zero_point_paper_search():
    r, w, red, c = run([81, -20, 1, -7], "zero_point")
    assert (w, red, c, r.sse) == ([82, -22, 2, -6], 1, -26, 7)
    assert r.stored_groups()[0].tolist() == [56, -48, -24, -32]


def test_vector5_zero_point_code_tie_most_negative():
    r, w, red, c = run([81, -20, 1, -7], "zero_point", "code")
    assert (w, red, c, r.sse) == ([78, -18, -2, -2], 0, -14, 47)


def test_vector6_zero_point_code():
    r, w, red, c = run([13, -57, 20, -11], "zero_point", "code")
    assert (w, red, c, r.sse) == ([13, -59, 21, -11], 1, 3, 5)


def test_vector7_zero_point_paper_tie():
    r, w, red, c = run([13, -57, 20, -11], "zero_point")
    assert (w, red, c, r.sse) == ([13, -59, 21, -11], 1, -5, 5)


def test_vector8_half_to_even():
    r, w, red, c = run([1, 2, 3, 4], "rounded_avg")
    assert (w, red, c) == ([0, 2, 2, 4], 3, 0)
    r, w, red, c = run([1, 2, 3, 4], "rounded_avg", mean_rounding="half_up")
    assert (w, red, c) == ([1, 3, 3, 5], 3, 1)


def test_vector9_already_free():
    r, w, red, c = run([1, 2, 3, 4], "rounded_avg", columns=2)
    assert (w, red) == ([1, 2, 3, 4], 3)
    assert r.sse == 0


def test_vector10_and_11_rounded_averaging():
    r, w, red, c = run([81, -20, 1, -7], "rounded_avg", columns=4)
    assert (w, red, c, r.sse) == ([86, -26, 6, -10], 0, 6, 95)
    r, w, red, c = run([81, -20, 1, -7], "rounded_avg", columns=2)
    assert (w, red, c) == ([81, -19, 1, -7], 0, 1)


def test_vector12_and_13_bitflip():
    r, w, _, _ = run([13, -57, 20, -11], "bitflip", "code")
    assert (w, r.sse) == ([16, -56, 16, -8], 35)
    r, w, _, _ = run([81, -20, 1, -7], "bitflip", "code")
    assert (w, r.sse) == ([80, -20, 0, -4], 11)
    assert int(r.free_columns[0]) >= 4


@pytest.mark.parametrize("semantics", ["paper", "code"])
def test_zero_point_beats_figure_constant(semantics):
    # the searched constant is never worse than the figure's hand-picked -14
    r, *_ = run([81, -20, 1, -7], "zero_point", semantics)
    assert r.sse <= 47
