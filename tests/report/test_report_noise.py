"""The noise band of the report: Wilson intervals and the measured CPU-capability spread."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bitvert.report.noise import CPU_CAPABILITY_SPREAD, noise_bands, wilson_interval


def test_wilson_interval_golden() -> None:
    # by hand: p = 0.5, n = 100, z = 1.96: centre 0.5, half-width 1.96·sqrt(0.0025 + 0.00009604)/1.0384 = 0.0962
    lo, hi = wilson_interval(0.5, 100)
    assert lo == pytest.approx(0.4038, abs=1e-4) and hi == pytest.approx(0.5962, abs=1e-4)
    # p = 1 (every example right): the interval still has width, [n/(n+z²), 1]
    lo, hi = wilson_interval(1.0, 200)
    assert lo == pytest.approx(200 / (200 + 1.959964**2), abs=1e-6) and hi == 1.0


@given(st.integers(1, 100_000), st.floats(0.0, 1.0))
def test_wilson_interval_contains_the_fraction(n: int, p: float) -> None:
    lo, hi = wilson_interval(p, n)
    assert 0.0 <= lo <= p + 1e-6 and p - 1e-6 <= hi <= 1.0


def test_wilson_interval_refuses_nonsense() -> None:
    with pytest.raises(ValueError):
        wilson_interval(1.5, 10)
    with pytest.raises(ValueError):
        wilson_interval(0.5, 0)


def test_noise_bands_document() -> None:
    variants = {"fp32": {"top1": 0.99, "n_images": 4000.0}, "moderate": {"top1": 0.98, "top1_agreement": 0.99,
                                                                         "n_images": 4000.0}}
    doc = noise_bands("mnist-cnn", ["top1"], variants)
    measured = CPU_CAPABILITY_SPREAD["mnist-cnn"]["top1"]
    assert doc["cpu_capability"]["top1"]["spread"] == measured.spread
    assert tuple(doc["cpu_capability"]["top1"]["capabilities"]) == measured.capabilities
    assert set(doc["sampling_95"]) == {"fp32", "moderate"} and list(doc["sampling_95"]["moderate"]) == ["top1"]
    lo, hi = doc["sampling_95"]["moderate"]["top1"]
    assert lo < 0.98 < hi
    unknown = noise_bands("my-model", ["lee_pearson"], {"fp32": {"lee_pearson": 0.6, "n_texts": 50.0}})
    assert unknown == {"cpu_capability": {"lee_pearson": None}, "sampling_95": {}}
