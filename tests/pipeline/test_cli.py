"""`bitvert prune` and `bitvert eval` on small in-test models (model loading and evaluation are stubbed
with real computations on those models, so no model package or data set is needed)."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest
import torch
from click.testing import CliRunner
from pipeline_models import TinyBlock, TinyCNN

import bitvert.cli.prune as prune_cli
import bitvert.report.variants as variants_mod
from bitvert.cli import main

_X = torch.randn(16, 3, 8, 8, generator=torch.Generator().manual_seed(5))


def _load(name: str) -> SimpleNamespace:
    if name not in ("tiny-cnn", "tiny-block"):
        from bitvert.errors import InputError

        raise InputError(f"unknown model {name!r}")
    torch.manual_seed(0)
    if name == "tiny-cnn":
        model = TinyCNN().eval()
        batches = lambda n: [_X[:n]]  # noqa: E731
    else:
        model = TinyBlock().eval()
        batches = lambda n: [torch.randint(0, 50, (2, 8), generator=torch.Generator().manual_seed(n))]  # noqa: E731
    return SimpleNamespace(model=model, name=name, family="vision", default_task="agreement",
                           calibration_batches=batches)


def _evaluate(loaded, model, task, reference=None, limit=None, memo=None, **_):
    x = _X[: limit or 16]
    with torch.no_grad():
        out = model(x)
        if reference is None:
            return {"mean_logit": float(out.mean())}
        ref = reference(x)
    return {"mean_logit": float(out.mean()), "rel_error": float((out - ref).norm() / ref.norm()),
            "top1_agreement": float((out.argmax(1) == ref.argmax(1)).float().mean())}


@pytest.fixture(autouse=True)
def _stub(monkeypatch):
    monkeypatch.setattr(prune_cli, "load_model", _load)
    monkeypatch.setattr(variants_mod, "evaluate_model", _evaluate)


def test_prune_writes_checkpoint_summary_and_table(tmp_path):
    out = tmp_path / "run"
    res = CliRunner().invoke(main, ["prune", "--model", "tiny-cnn", "--preset", "moderate", "--out", str(out)])
    assert res.exit_code == 0, res.output
    assert {p.name for p in out.iterdir()} == {"pruned.safetensors", "summary.json", "table.txt", "timings.json"}
    summary = json.loads((out / "summary.json").read_text())
    assert list(summary["metrics"]) == ["fp32", "int8", "moderate", "bitwave-moderate", "rtn-moderate"]
    assert summary["metrics"]["int8"]["rel_error"] < summary["metrics"]["moderate"]["rel_error"]
    out_sq = {k: v["output_sqnr_db"] for k, v in summary["metrics"].items() if k != "fp32"}
    assert out_sq["int8"] > out_sq["moderate"] > 0 and "output_sqnr_db" not in summary["metrics"]["fp32"]
    assert summary["preset"]["name"] == "moderate" and summary["weight_int_range"] == [-127, 127]
    eb = summary["effective_bits"]
    assert summary["effective_bits_by_variant"]["moderate"] == eb < 8
    assert summary["effective_bits_by_variant"]["int8"] == 8
    sq = summary["weight_sqnr_db_by_variant"]
    assert sq["int8"] > sq["moderate"] > sq["bitwave-moderate"]
    assert summary["checkpoint"]["size_bytes"] == (out / "pruned.safetensors").stat().st_size
    assert len(summary["report"]["layers"]) == 4
    table = (out / "table.txt").read_text()
    for name in ("fp32", "int8", "moderate", "bitwave-moderate", "rtn-moderate", "rel_error"):
        assert name in table and name in res.output

    # `bitvert eval` on the checkpoint reproduces the preset's metrics exactly
    res = CliRunner().invoke(main, ["eval", str(out / "pruned.safetensors"), "--json"])
    assert res.exit_code == 0, res.output
    got = json.loads(res.output)
    assert got["model"] == "tiny-cnn" and got["variant"] == "moderate"
    assert got["effective_bits"] == pytest.approx(eb)
    assert got["metrics"] == pytest.approx({k: summary["metrics"]["moderate"][k] for k in got["metrics"]})
    res = CliRunner().invoke(main, ["eval", str(out)])  # the folder works too
    assert res.exit_code == 0 and "rel_error" in res.output


def test_overrides_rules_and_no_eval(tmp_path):
    out = tmp_path / "r"
    res = CliRunner().invoke(main, [
        "prune", "--model", "tiny-block", "--preset", "llm-moderate", "--out", str(out), "--no-eval",
        "--no-baselines", "--set", "quant.act_bits=none", "--set", "sensitive_fraction=0.5",
        "--rule", "lm_head=fp32",
    ])
    assert res.exit_code == 0, res.output
    s = json.loads((out / "summary.json").read_text())
    assert s["metrics"] == {} and s["variants"] == ["int8", "llm-moderate"]
    assert s["preset"]["sensitive_fraction"] == 0.5 and s["preset"]["quant"]["act_bits"] is None
    roles = {l["name"]: l["role"] for l in s["report"]["layers"]}
    assert roles["lm_head"] == "fp32" and roles["qkv"] == "prune"


@pytest.mark.parametrize(
    "args, msg",
    [
        (["prune", "--model", "tiny-cnn", "--preset", "moderat", "--out", "{tmp}"], "did you mean 'moderate'"),
        (["prune", "--model", "nope", "--out", "{tmp}"], "unknown model 'nope'"),
        (["prune", "--model", "tiny-cnn", "--out", "{tmp}", "--set", "beta"], "key=value"),
        (["prune", "--model", "tiny-cnn", "--out", "{tmp}", "--set", "beta=0.2"], "beta"),
        (["prune", "--model", "tiny-cnn", "--out", "{tmp}", "--rule", "head=dense"], "role must be"),
        (["eval", "{tmp}/missing.safetensors"], "does not exist"),
    ],
)
def test_clear_errors(tmp_path, args, msg):
    res = CliRunner().invoke(main, [a.replace("{tmp}", str(tmp_path)) for a in args])
    assert res.exit_code == 2
    assert msg in res.output


def test_eval_checkpoint_into_wrong_model(tmp_path):
    out = tmp_path / "run"
    res = CliRunner().invoke(main, ["prune", "--model", "tiny-cnn", "--preset", "conservative", "--out", str(out),
                                    "--no-eval", "--no-baselines"])
    assert res.exit_code == 0, res.output
    res = CliRunner().invoke(main, ["eval", str(out / "pruned.safetensors"), "--model", "tiny-block"])
    assert res.exit_code == 2 and "made from model 'tiny-cnn'" in res.output


def test_eval_plain_model():
    res = CliRunner().invoke(main, ["eval", "tiny-cnn", "--json"])
    assert res.exit_code == 0, res.output
    got = json.loads(res.output)
    assert got["variant"] == "fp32" and "mean_logit" in got["metrics"]


def test_prune_creates_no_folder_when_an_input_is_wrong(tmp_path):
    for args in (["--model", "nope"], ["--model", "tiny-cnn", "--preset", "moderat"],
                 ["--model", "tiny-cnn", "--limit", "0"]):
        out = tmp_path / "new"
        res = CliRunner().invoke(main, ["prune", *args, "--out", str(out)])
        assert res.exit_code == 2, res.output
        assert not out.exists()


def test_prune_defaults_are_those_of_bitvert_run(tmp_path, monkeypatch):
    from bitvert.report import StudyConfig

    limits = []

    def recording(loaded, model, task, reference=None, limit=None, memo=None, **_):
        limits.append(limit)
        return _evaluate(loaded, model, task, reference, limit)

    monkeypatch.setattr(variants_mod, "evaluate_model", recording)
    out = tmp_path / "run"
    res = CliRunner().invoke(main, ["prune", "--model", "tiny-cnn", "--out", str(out), "--no-baselines"])
    assert res.exit_code == 0, res.output
    s = json.loads((out / "summary.json").read_text())
    assert s["calibration_samples"] == StudyConfig().calibration_samples == 32
    assert s["limit_rule"] == "auto" and s["limit"] == 4000  # the "vision" family of the stub
    assert s["seed"] == 0 and s["variants"] == ["int8", "moderate"]
    assert s["variant_descriptions"]["int8"] == "per-channel symmetric INT8 weights, 8-bit activations (baseline)"
    res = CliRunner().invoke(main, ["eval", str(out), "--json"])  # `bitvert eval` follows the same rule
    assert res.exit_code == 0, res.output
    assert limits == [4000, 4000, 4000, 4000]  # fp32, int8, moderate, then eval
    res = CliRunner().invoke(main, ["eval", str(out), "--limit", "full"])
    assert res.exit_code == 0 and limits[-1] is None
