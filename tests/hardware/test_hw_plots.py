"""Plot functions return Agg figures with one bar per accelerator and workload (+ geomean)."""

from __future__ import annotations

import numpy as np
import pytest
from matplotlib.figure import Figure

from bitvert.errors import InputError
from bitvert.hardware.plots import energy_figure, speedup_figure
from bitvert.hardware.simulate import simulate
from hw_helpers import conv, linear, workload


@pytest.fixture(scope="module")
def summary():
    w1 = workload(linear("fc", np.ones((32, 64), dtype=np.int16), tokens=8), name="a")
    w2 = workload(conv("c", np.ones((32, 16, 3, 3), dtype=np.int16), (4, 4)), name="b")
    return simulate([w1, w2], ["stripes", "bit-parallel", "sparten"]).to_json()


def test_speedup_figure(summary, tmp_path):
    fig = speedup_figure(summary)
    assert isinstance(fig, Figure)
    ax = fig.axes[0]
    assert len(ax.patches) == 3 * 3  # 3 accelerators x (2 workloads + geomean)
    assert [t.get_text() for t in ax.get_xticklabels()] == ["a", "b", "geomean"]
    heights = [p.get_height() for p in ax.patches[:3]]  # stripes bars: exactly 1
    assert heights == pytest.approx([1.0, 1.0, 1.0])
    fig.savefig(tmp_path / "s.png")
    assert (tmp_path / "s.png").stat().st_size > 0


def test_energy_figure_stacks_sum_to_ratio(summary):
    fig = energy_figure(summary)
    ax = fig.axes[0]
    assert len(ax.patches) == 3 * 3 * 3  # accelerators x components x (workloads + geomean)
    # sparten (third accelerator), workload "a": its three components stack to exactly 1
    sparten = ax.patches[2 * 9: 3 * 9]
    total_a = sum(p.get_height() for p in sparten[0::3])
    assert total_a == pytest.approx(1.0)


def test_plot_rejects_bad_summary():
    with pytest.raises(InputError):
        speedup_figure({"nothing": 1})
    with pytest.raises(InputError):
        energy_figure({"accelerators": {}, "workloads": {}})
