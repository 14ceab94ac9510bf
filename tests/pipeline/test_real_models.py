"""The issue's "what must hold" checks on a real offline model (slow: loads data and evaluates)."""

from __future__ import annotations

import copy
import dataclasses

import pytest

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def mnist():
    models = pytest.importorskip("bitvert.models")
    pytest.importorskip("bitvert.evaluation")
    info = models.model_info("mnist-cnn")
    if not info.available:
        pytest.skip(f"mnist-cnn needs: {info.install_hint}")
    return models.load_model("mnist-cnn")


def test_moderate_beats_baselines_and_conservative_beats_moderate(mnist, tmp_path):
    """Weight fidelity (SQNR vs FP32, deterministic) orders the variants as the issue requires; the task
    metric stays high and a saved checkpoint evaluates identically. The logit KL of this very confident
    model is ~1e-5 and its ordering depends on which images are scored (docs/pipeline.md), so it is only
    recorded, not asserted."""
    from bitvert.evaluation import evaluate
    from bitvert.pipeline import apply_checkpoint_, prune_model_, save_pruned

    fp32 = mnist.model.eval()
    sqnr, bits = {}, {}
    for name in ("conservative", "moderate", "bitwave-moderate", "rtn-moderate"):
        model = copy.deepcopy(fp32)
        report = prune_model_(model, name, calibration=mnist.calibration_batches(128))
        sqnr[name], bits[name] = report.weight_sqnr_db, report.effective_bits
        if name == "moderate":
            m = evaluate(dataclasses.replace(mnist, model=model), "mnist-top1", reference=fp32, limit=500)
            assert m["top1"] > 0.98 and m["top1_agreement"] > 0.99
            path = save_pruned(tmp_path / "pruned.safetensors", model, report, {"name": "mnist-cnn"})
            restored = copy.deepcopy(fp32)
            apply_checkpoint_(restored, path)
            again = evaluate(dataclasses.replace(mnist, model=restored), "mnist-top1", reference=fp32, limit=500)
            assert again == pytest.approx(m, rel=1e-6)
    assert bits["moderate"] == pytest.approx(bits["bitwave-moderate"])
    assert bits["rtn-moderate"] < bits["moderate"] < bits["conservative"] < 8
    assert sqnr["moderate"] > sqnr["bitwave-moderate"]
    assert sqnr["moderate"] > sqnr["rtn-moderate"]
    assert sqnr["conservative"] > sqnr["moderate"]
