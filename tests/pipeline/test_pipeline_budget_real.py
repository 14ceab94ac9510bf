"""target_bits on the real mnist-cnn (slow: loads the model and its calibration images)."""

from __future__ import annotations

import copy

import pytest

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def mnist():
    models = pytest.importorskip("bitvert.models")
    info = models.model_info("mnist-cnn")
    if not info.available:
        pytest.skip(f"mnist-cnn needs: {info.install_hint}")
    return models.load_model("mnist-cnn")


def test_target_bits_reached_on_mnist(mnist) -> None:
    """Two pruned layers only (conv 18k weights, FC 401k): a per-layer N alone could not come within 0.02
    bits; the per-channel split of one layer does."""
    from bitvert.pipeline import get_preset, prune_model_

    batches = list(mnist.calibration_batches(32))
    ref = prune_model_(copy.deepcopy(mnist.model), "moderate", calibration=batches)
    for target in (ref.effective_bits, 5.0, 6.37):
        rep = prune_model_(copy.deepcopy(mnist.model), get_preset("moderate", target_bits=target),
                           calibration=batches)
        assert target - 0.02 <= rep.effective_bits <= target + 1e-12
        assert [r.n_sensitive for r in rep.layers] == [r.n_sensitive for r in ref.layers]
