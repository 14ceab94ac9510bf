"""Metrics: hand-computed golden values, invariants (hypothesis) and bad input."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from bitvert.errors import InputError
from bitvert.evaluation.metrics import (
    agreement,
    binary_f1,
    mean_kl_from_logits,
    pearson,
    rankdata,
    rowwise_cosine,
    spearman,
    topk_accuracy,
)


def test_pearson_golden() -> None:
    # x = 1,2,3 ; y = 2,4,7 -> dx = -1,0,1 ; dy = -7/3,-1/3,8/3 ; sum dxdy = 5 ; |dx| = sqrt2 ; |dy|^2 = 114/9
    assert pearson([1, 2, 3], [2, 4, 7]) == pytest.approx(5 / math.sqrt(2 * 114 / 9))
    assert pearson([1, 2, 3], [3, 2, 1]) == pytest.approx(-1.0)


def test_rankdata_ties_golden() -> None:
    np.testing.assert_allclose(rankdata([10, 20, 20, 5]), [2.0, 3.5, 3.5, 1.0])
    np.testing.assert_allclose(rankdata([1, 1, 1]), [2.0, 2.0, 2.0])


def test_spearman_golden() -> None:
    # ranks x = 1,2,3,4 ; y = 1,3,2,4 -> d^2 = 0,1,1,0 -> rho = 1 - 6*2/(4*15) = 0.8
    assert spearman([1, 2, 3, 4], [10, 30, 20, 40]) == pytest.approx(0.8)


@settings(max_examples=40, deadline=None)
@given(st.lists(st.integers(-1000, 1000), min_size=3, max_size=30),
       st.lists(st.integers(-1000, 1000), min_size=3, max_size=30))
def test_spearman_invariant_under_monotone_maps(xs: list[int], ys: list[int]) -> None:
    n = min(len(xs), len(ys))
    x, y = np.array(xs[:n], dtype=np.float64), np.array(ys[:n], dtype=np.float64)
    if np.ptp(x) == 0 or np.ptp(y) == 0:
        with pytest.raises(InputError):
            spearman(x, y)
        return
    rho = spearman(x, y)
    assert -1.0 - 1e-9 <= rho <= 1.0 + 1e-9
    assert spearman(x**3, 3 * y + 7) == pytest.approx(rho, abs=1e-9)  # exact in float64
    assert rankdata(x).sum() == pytest.approx(n * (n + 1) / 2)


def test_topk_golden() -> None:
    logits = torch.tensor([[0.1, 0.9, 0.0], [0.8, 0.1, 0.1], [0.2, 0.3, 0.5]])
    labels = torch.tensor([1, 2, 1])
    assert topk_accuracy(logits, labels, 1) == pytest.approx(1 / 3)
    assert topk_accuracy(logits, labels, 2) == pytest.approx(2 / 3)  # row 2's label is its 2nd best
    assert topk_accuracy(logits, labels, 3) == 1.0


def test_binary_f1_golden() -> None:
    # tp = 2, fp = 1, fn = 1 -> 4 / (4 + 2) = 2/3
    assert binary_f1([1, 1, 1, 0, 0], [1, 1, 0, 1, 0]) == pytest.approx(2 / 3)
    assert binary_f1([0, 0], [0, 0]) == 0.0


def test_kl_and_cosine_golden() -> None:
    ref = torch.log(torch.tensor([[0.5, 0.5]]))
    cur = torch.log(torch.tensor([[0.25, 0.75]]))
    expected = 0.5 * math.log(0.5 / 0.25) + 0.5 * math.log(0.5 / 0.75)
    assert mean_kl_from_logits(ref, cur) == pytest.approx(expected)
    assert mean_kl_from_logits(cur, cur) == pytest.approx(0.0, abs=1e-12)
    cos = rowwise_cosine(torch.tensor([[1.0, 0.0], [1.0, 1.0]]), torch.tensor([[0.0, 2.0], [2.0, 2.0]]))
    torch.testing.assert_close(cos, torch.tensor([0.0, 1.0], dtype=torch.float64))
    assert agreement(torch.tensor([1, 2, 3, 4]), torch.tensor([1, 0, 3, 0])) == 0.5


@pytest.mark.parametrize("call", [
    lambda: pearson([1.0], [2.0]),
    lambda: pearson([1, 2, 3], [1, 2]),
    lambda: pearson([1, 1, 1], [1, 2, 3]),
    lambda: pearson([1, float("nan"), 3], [1, 2, 3]),
    lambda: topk_accuracy(torch.zeros(3, 4), torch.zeros(2), 1),
    lambda: topk_accuracy(torch.zeros(3, 4), torch.zeros(3), 5),
    lambda: topk_accuracy(torch.zeros(0, 4), torch.zeros(0), 1),
    lambda: binary_f1([1, 0], [1]),
    lambda: mean_kl_from_logits(torch.zeros(2, 3), torch.zeros(2, 4)),
    lambda: rowwise_cosine(torch.zeros(2, 3), torch.zeros(3, 3)),
    lambda: agreement(torch.zeros(2), torch.zeros(3)),
])
def test_bad_metric_input(call) -> None:
    with pytest.raises(InputError):
        call()
