"""The variant runner shared by `bitvert prune` and `bitvert run`: variant lists, the INT8 baseline's
footing, the evaluation-limit rule and the runner itself on a small in-test model."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest
import torch
from click.testing import CliRunner
from torch import nn

from bitvert.cli import main
from bitvert.errors import ConfigError
from bitvert.pipeline import get_preset
from bitvert.report import StudyConfig
from bitvert.report import variants as variants_mod
from bitvert.report.variants import (
    AUTO_EVAL_LIMITS,
    int8_baseline,
    parse_eval_limit,
    resolve_eval_limit,
    run_variants,
    variant_presets,
)


def _names(presets: list[Any]) -> list[str]:
    return [p.name for p in presets]


def test_variant_presets_order_int8_first_and_baselines_of_bbs_presets_only() -> None:
    got = variant_presets([get_preset("moderate"), get_preset("conservative")])
    assert _names(got) == ["int8", "moderate", "bitwave-moderate", "rtn-moderate", "conservative",
                           "bitwave-conservative", "rtn-conservative"]
    assert got[0] == get_preset("int8")  # paper presets: the INT8 baseline of the preset table, unchanged
    assert _names(variant_presets([get_preset("moderate")], ())) == ["int8", "moderate"]
    assert _names(variant_presets([get_preset("bitwave-moderate")])) == ["int8", "bitwave-moderate"]
    int8_only = get_preset("int8", quant={"act_bits": None})
    assert variant_presets([int8_only]) == [int8_only]  # a requested INT8 preset is the INT8 row itself
    assert _names(variant_presets([get_preset("moderate"), get_preset("moderate")], ("rtn",))) == [
        "int8", "moderate", "rtn-moderate"]
    with pytest.raises(ConfigError, match="at least one preset"):
        variant_presets([])


def test_int8_of_weight_only_presets_is_weight_only_and_says_so() -> None:
    got = variant_presets([get_preset("llm-conservative"), get_preset("llm-moderate")])
    int8 = got[0]
    assert int8.name == "int8" and int8.method == "none"
    assert int8.quant.act_bits is None and int8.quant == get_preset("llm-moderate").quant
    assert "weight-only" in int8.description and "8-bit activations" not in int8.description
    assert "8-bit activations" in variant_presets([get_preset("moderate")])[0].description
    # the preset's other quantization fields and layer rules follow too
    custom = get_preset("moderate", quant={"act_bits": 6, "weight_granularity": "per_tensor"},
                        rules={"head": "fp32"})
    b = int8_baseline(custom)
    assert b.quant == custom.quant and b.rules == custom.rules
    assert b.description == "per-tensor symmetric INT8 weights, 6-bit activations (baseline)"


@pytest.mark.parametrize("presets, what", [
    (("moderate", "llm-moderate"), "activations"),
    (("llm-conservative", "conservative"), "activations"),
])
def test_presets_on_different_footing_are_refused(presets: tuple[str, ...], what: str) -> None:
    with pytest.raises(ConfigError, match=f"differ in {what}.*separate runs"):
        variant_presets([get_preset(p) for p in presets])
    with pytest.raises(ConfigError, match="no single INT8 baseline"):
        StudyConfig.create(presets=presets)
    with pytest.raises(ConfigError, match="differ in quantization"):
        variant_presets([get_preset("moderate"), get_preset("conservative", quant={"weight_granularity":
                                                                                   "per_tensor"})])
    with pytest.raises(ConfigError, match="differ in layer rules"):
        variant_presets([get_preset("moderate"), get_preset("conservative", rules={"x": "fp32"})])


def test_run_refuses_mixed_footing_before_any_work(tmp_path: Any) -> None:
    out = tmp_path / "r"
    r = CliRunner().invoke(main, ["run", "--model", "mnist-cnn", "--presets", "moderate,llm-moderate",
                                  "--out", str(out)])
    assert r.exit_code == 2 and "no single INT8 baseline" in r.output
    assert not out.exists()


@pytest.mark.parametrize("value, expected", [(3, 3), ("12", 12), (" AUTO ", "auto"), ("full", "full")])
def test_parse_eval_limit(value: Any, expected: Any) -> None:
    assert parse_eval_limit(value) == expected


@pytest.mark.parametrize("value", [0, -1, "0", "some", True, 2.5, None])
def test_parse_eval_limit_rejects(value: Any) -> None:
    with pytest.raises(ConfigError, match="--limit must be a positive integer, 'auto' or 'full'"):
        parse_eval_limit(value, "--limit")


def test_resolve_eval_limit() -> None:
    assert resolve_eval_limit("auto", "vision") == AUTO_EVAL_LIMITS["vision"] == 4000
    assert resolve_eval_limit("auto", "text-embedding") == 120
    assert resolve_eval_limit("auto", "unknown-family") is None
    assert resolve_eval_limit("full", "vision") is None and resolve_eval_limit(None, "vision") is None
    assert resolve_eval_limit(7, "vision") == 7


def _tiny() -> SimpleNamespace:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(16, 64), nn.ReLU(), nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 8)).eval()
    x = torch.randn(40, 16, generator=torch.Generator().manual_seed(1))
    return SimpleNamespace(model=model, name="tiny", family="vision", default_task="agreement",
                           calibration_batches=lambda n: [x[:n]])


def _fake_evaluate(loaded: Any, module: Any, task: str, reference: Any = None, limit: Any = None,
                   memo: Any = None, **_: Any) -> dict[str, float]:
    x = torch.randn(8, 16, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        out = module(x)
        res = {"mean": float(out.mean()), "limit": float(limit or -1)}
        if reference is not None:
            res["rel_error"] = float((out - reference(x)).norm() / reference(x).norm())
    return res


def test_runner_prunes_evaluates_and_hands_over_every_variant(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(variants_mod, "evaluate_model", _fake_evaluate)
    loaded = _tiny()
    fp32_before = {k: v.clone() for k, v in loaded.model.state_dict().items()}
    seen: list[tuple[str, bool]] = []

    def hook(preset: Any, model: Any, report: Any) -> dict[str, Any]:
        assert model is not loaded.model
        seen.append((preset.name, report.activation_quantizer is not None))
        return {"bits": report.effective_bits}

    presets = variant_presets([get_preset("llm-moderate")])
    runs = run_variants(loaded, presets, on_variant=hook, fidelity_samples=8)
    assert list(runs.variants) == ["int8", "llm-moderate", "bitwave-llm-moderate", "rtn-llm-moderate"]
    assert seen == [(n, False) for n in runs.variants]  # weight-only preset -> weight-only INT8 too
    assert runs.task == "agreement" and runs.eval_limit == 4000 and runs.fp32_metrics["limit"] == 4000
    assert "rel_error" not in runs.fp32_metrics
    for name, run in runs.variants.items():
        assert run.outputs == {"bits": run.report.effective_bits}
        assert {"rel_error", "output_sqnr_db", "output_rel_error"} <= set(run.metrics)
        assert run.report.activation_quantizer is None  # removed once the hook has run
    assert runs.variants["int8"].metrics["rel_error"] < runs.variants["llm-moderate"].metrics["rel_error"]
    assert all(torch.equal(v, fp32_before[k]) for k, v in loaded.model.state_dict().items())

    # 8-bit activation presets: INT8 calibrates activations too
    seen.clear()
    run_variants(loaded, variant_presets([get_preset("moderate")], ()), on_variant=hook, evaluate=False)
    assert seen == [("int8", True), ("moderate", True)]


def test_runner_numbers_do_not_depend_on_the_other_variants(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(variants_mod, "evaluate_model", _fake_evaluate)
    both = run_variants(_tiny(), variant_presets([get_preset("conservative"), get_preset("moderate")], ()))
    alone = run_variants(_tiny(), variant_presets([get_preset("moderate")], ()), eval_limit=None)
    assert both.variants["moderate"].metrics["rel_error"] == alone.variants["moderate"].metrics["rel_error"]
    assert alone.eval_limit is None and alone.fp32_metrics["limit"] == -1
    no_eval = run_variants(_tiny(), variant_presets([get_preset("moderate")], ()), evaluate=False)
    assert no_eval.fp32_metrics == {} and all(r.metrics == {} for r in no_eval.variants.values())


def test_runner_needs_int8_first() -> None:
    with pytest.raises(ConfigError, match="INT8 baseline first"):
        run_variants(_tiny(), [get_preset("moderate")])
    with pytest.raises(ConfigError, match="INT8 baseline first"):
        run_variants(_tiny(), [])
