"""`bitvert prune` and `bitvert run` share one variant runner and one set of defaults: on the real MNIST CNN
they report the same numbers for the same preset."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from bitvert.cli import main

pytestmark = pytest.mark.slow


def test_prune_and_run_print_identical_metrics(tmp_path: Path) -> None:
    runner = CliRunner()
    # default calibration samples and seeds on both sides; a small explicit limit keeps it quick
    r = runner.invoke(main, ["run", "--model", "mnist-cnn", "--presets", "moderate", "--baselines", "rtn",
                             "--accelerators", "stripes", "--limit", "150", "--seed", "4", "-q",
                             "--out", str(tmp_path / "run")])
    assert r.exit_code == 0, r.output
    p = runner.invoke(main, ["prune", "--model", "mnist-cnn", "--preset", "moderate", "--limit", "150",
                             "--seed", "4", "--out", str(tmp_path / "prune")])
    assert p.exit_code == 0, p.output
    results = json.loads((tmp_path / "run" / "results.json").read_text())
    summary = json.loads((tmp_path / "prune" / "summary.json").read_text())
    assert results["eval_limit"] == summary["limit"] == 150 and results["task"] == summary["task"]
    assert results["config"]["calibration_samples"] == summary["calibration_samples"]
    assert list(summary["metrics"]) == ["fp32", "int8", "moderate", "bitwave-moderate", "rtn-moderate"]
    shared = ["fp32", "int8", "moderate", "rtn-moderate"]
    assert [v for v in results["variants"] if v in summary["metrics"]] == shared
    for name in shared:
        run_metrics = results["variants"][name]["metrics"]
        # prune adds the output SQNR measures on top of the task's metrics
        assert {k: summary["metrics"][name][k] for k in run_metrics} == run_metrics, name
        assert results["variants"][name]["effective_bits"] == summary["effective_bits_by_variant"][name]
        if name != "fp32":
            assert results["variants"][name]["description"] == summary["variant_descriptions"][name]
    assert {"top1", "top1_agreement"} <= set(results["variants"]["moderate"]["metrics"])
