"""Study configuration, folder handling (atomic publish, interruption, missing dependencies) and the CLI."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

import bitvert.models
from bitvert.cli import main
from bitvert.errors import ConfigError, InputError, MissingDependencyError
from bitvert.pipeline import get_preset
from bitvert.report import REPORT_STATUS_FILE, StageTimer, StudyConfig, is_complete_report, run_study
from bitvert.report import memo as memo_mod
from bitvert.report import publish as publish_mod
from bitvert.report import variants as variants_mod


def test_config_defaults_and_normalisation() -> None:
    c = StudyConfig()
    assert c.model == "minilm-l6"
    assert c.presets == ("conservative", "moderate")
    assert c.baselines == ("bitwave", "rtn")
    assert c.accelerators == ("all",)
    # int8 is always studied, duplicates and aliases collapse
    c = StudyConfig.create(presets=("int8", "moderate", "Moderate", "bitwave_moderate"))
    assert c.presets == ("moderate", "bitwave-moderate")


@pytest.mark.parametrize("kwargs, match", [
    ({"presets": ("modrate",)}, "did you mean 'moderate'"),
    ({"presets": ()}, "at least one preset"),
    ({"baselines": ("ant",)}, "unknown baseline"),
    ({"eval_limit": 0}, "positive integer"),
    ({"eval_limit": "some"}, "eval_limit"),
    ({"accelerators": ()}, "accelerator"),
    ({"seed": -1}, "seed"),
    ({"calibration_samples": 0}, "calibration_samples"),
    ({"colour": "red"}, "colour"),
])
def test_config_rejects_bad_values(kwargs: dict[str, Any], match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        StudyConfig.create(**kwargs)


def test_variants_order_and_baselines() -> None:
    names = [p.name for p in StudyConfig.create(presets=("moderate", "conservative")).variant_presets()]
    assert names == ["int8", "moderate", "bitwave-moderate", "rtn-moderate", "conservative",
                     "bitwave-conservative", "rtn-conservative"]
    names = [p.name for p in StudyConfig.create(presets=("moderate",), baselines=()).variant_presets()]
    assert names == ["int8", "moderate"]
    # a baseline preset given directly gets no baselines of its own
    names = [p.name for p in StudyConfig.create(presets=("rtn-moderate",)).variant_presets()]
    assert names == ["int8", "rtn-moderate"]


def test_accelerator_for_every_variant_on_its_hardware() -> None:
    from bitvert.report import simulation as sim_mod

    variants = ["int8", "moderate", "bitwave-moderate", "rtn-moderate", "conservative", "llm-moderate"]
    targets = sim_mod.study_targets(("all",), variants)
    labels = {t.label: t.preset for t in targets}
    # every BBS variant on BitVert hardware, every bit-flip variant on BitWave, the dense designs on int8
    assert {k: v for k, v in labels.items() if k.startswith(("bitvert", "bitwave"))} == {
        "bitvert-moderate": "moderate", "bitvert-conservative": "conservative",
        "bitvert-llm-moderate": "llm-moderate", "bitwave-moderate": "bitwave-moderate"}
    assert labels["stripes"] == labels["sparten"] == labels["pragmatic"] == "int8"
    configs = {t.label: t.describe() for t in targets}
    af = sim_mod._accelerator_for
    assert af(get_preset("int8"), configs) == "stripes"
    assert af(get_preset("moderate"), configs) == "bitvert-moderate"
    assert af(get_preset("llm-moderate"), configs) == "bitvert-llm-moderate"  # no YAML needed
    assert af(get_preset("bitwave-moderate"), configs) == "bitwave-moderate"
    assert af(get_preset("rtn-moderate"), configs) is None
    # a named target selects its hardware, which then runs every variant it is built for
    only = sim_mod.study_targets(("stripes", "bitvert-moderate"), ["int8", "moderate", "conservative"])
    assert [t.label for t in only] == ["stripes", "bitvert-moderate", "bitvert-conservative"]
    assert af(get_preset("int8"), {t.label: t.describe() for t in only if t.label != "stripes"}) is None


def test_stage_timer_accumulates_in_pipeline_order() -> None:
    t = StageTimer()
    with t.stage("simulate"):
        time.sleep(0.01)
    with t.stage("load"):
        pass
    with t.stage("simulate"):
        time.sleep(0.01)
    with pytest.raises(RuntimeError), t.stage("custom"):
        raise RuntimeError("boom")
    ordered = t.ordered()
    assert list(ordered) == ["load", "simulate", "custom"]
    assert ordered["simulate"] >= 0.02


def test_out_dir_checks(tmp_path: Path) -> None:
    f = tmp_path / "file.txt"
    f.write_text("x")
    with pytest.raises(InputError, match="is a file"):
        run_study(StudyConfig(), f)
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "notes.txt").write_text("mine")
    with pytest.raises(InputError, match="not a bitvert report"):
        run_study(StudyConfig(), busy)
    assert (busy / "notes.txt").read_text() == "mine"


def test_publish_replaces_a_previous_complete_report(tmp_path: Path) -> None:
    out = tmp_path / "rep"
    out.mkdir()
    (out / "old.txt").write_text("old")
    (out / REPORT_STATUS_FILE).write_text(json.dumps({"status": "complete"}))
    assert is_complete_report(out)
    tmp = tmp_path / ".rep.partial-1"
    tmp.mkdir()
    (tmp / "new.txt").write_text("new")
    publish_mod.publish(tmp, out, {"status": "complete", "n": 1})
    assert not tmp.exists()
    assert sorted(p.name for p in out.iterdir()) == ["new.txt", REPORT_STATUS_FILE]
    assert json.loads((out / REPORT_STATUS_FILE).read_text())["n"] == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["rep"]  # no .old / .partial left behind


def test_is_complete_report_rejects_partial_and_garbage(tmp_path: Path) -> None:
    assert not is_complete_report(tmp_path / "missing")
    (tmp_path / REPORT_STATUS_FILE).write_text("{not json")
    assert not is_complete_report(tmp_path)
    (tmp_path / REPORT_STATUS_FILE).write_text(json.dumps({"status": "running"}))
    assert not is_complete_report(tmp_path)
    (tmp_path / REPORT_STATUS_FILE).write_text(json.dumps(["complete"]))
    assert not is_complete_report(tmp_path)


def _interrupt(*args: Any, **kwargs: Any) -> Any:
    raise KeyboardInterrupt


def test_interrupt_leaves_no_report(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(variants_mod, "evaluate_model", _interrupt)
    out = tmp_path / "rep"
    with pytest.raises(KeyboardInterrupt):
        run_study(StudyConfig(model="mnist-cnn"), out)
    assert not out.exists()
    assert list(tmp_path.iterdir()) == []  # the partial folder is gone too


def test_interrupt_keeps_the_previous_report(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    out = tmp_path / "rep"
    out.mkdir()
    (out / REPORT_STATUS_FILE).write_text(json.dumps({"status": "complete", "tag": "previous"}))
    monkeypatch.setattr(variants_mod, "evaluate_model", _interrupt)
    with pytest.raises(KeyboardInterrupt):
        run_study(StudyConfig(model="mnist-cnn"), out)
    assert json.loads((out / REPORT_STATUS_FILE).read_text())["tag"] == "previous"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["rep"]


def test_missing_model_dependency_is_clear(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def missing(name: str, calibration_path: Any = None) -> Any:
        raise MissingDependencyError(f"model {name!r} needs the package 'x'; install it with: pip install x")

    monkeypatch.setattr(bitvert.models, "load_model", missing)
    out = tmp_path / "rep"
    with pytest.raises(MissingDependencyError, match="pip install x"):
        run_study(StudyConfig(model="mnist-cnn"), out)
    assert list(tmp_path.iterdir()) == []


def test_missing_matplotlib_fails_before_any_work(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    with pytest.raises(MissingDependencyError, match="pip install matplotlib"):
        run_study(StudyConfig(model="mnist-cnn"), tmp_path / "rep")
    assert list(tmp_path.iterdir()) == []


def test_cli_rejects_bad_options(tmp_path: Path) -> None:
    runner = CliRunner()
    r = runner.invoke(main, ["run", "--presets", "modrate", "--out", str(tmp_path / "r")])
    assert r.exit_code == 2
    assert "did you mean 'moderate'" in r.output
    r = runner.invoke(main, ["run", "--limit", "0", "--out", str(tmp_path / "r")])
    assert r.exit_code == 2 and "--limit must be a positive integer" in r.output
    r = runner.invoke(main, ["run", "--accelerators", "warp-drive", "--model", "mnist-cnn",
                             "--out", str(tmp_path / "r")])
    assert r.exit_code == 2 and "warp-drive" in r.output and len(r.output.strip().splitlines()) == 1
    assert not (tmp_path / "r").exists()
    for option in ("--seq-len", "--batch"):
        r = runner.invoke(main, ["run", option, "0", "--out", str(tmp_path / "r")])
        assert r.exit_code == 2 and f"Invalid value for '{option}'" in r.output and "x>=1" in r.output
    r = runner.invoke(main, ["run", "--model", "mnist-cnn", "--seq-len", "64", "--out", str(tmp_path / "r")])
    assert r.exit_code == 2 and "--seq-len applies to text models only" in r.output
    assert not (tmp_path / "r").exists()


def test_cli_interrupt_message(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import bitvert.report

    monkeypatch.setattr(bitvert.report, "run_study", _interrupt)
    r = CliRunner().invoke(main, ["run", "--model", "mnist-cnn", "--out", str(tmp_path / "r")])
    assert r.exit_code == 130
    assert "interrupted: no report was written" in r.output


def test_reference_memo_reuses_outputs_only_for_identical_inputs() -> None:
    import copy

    import torch
    from torch import nn

    class Counting(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.lin = nn.Linear(3, 2)
            self.calls = 0

        def forward(self, x: torch.Tensor, scale: Any = 1.0) -> torch.Tensor:
            self.calls += 1
            return self.lin(x) * (scale if not isinstance(scale, list) else scale[0])

    torch.manual_seed(0)
    m = Counting()
    x = torch.arange(6, dtype=torch.float32).reshape(2, 3)
    fresh = m(x)
    m.calls = 0
    memo = memo_mod.ReferenceMemo(m)
    with memo:
        a = m(x)
        b = m(x.clone())                      # same content -> reused
        c = m(x + 1)                          # different content -> computed
        d = m(x, scale=2.0)                   # different scalar argument -> computed
        e = m(x, scale=[2.0])                 # unhashable argument -> computed, not stored
        f = m(x, scale=[2.0])
    assert (memo.misses, memo.hits, m.calls) == (3, 1, 5)
    assert a is b and torch.equal(a, fresh)
    assert not torch.equal(c, a) and torch.equal(d, 2 * a) and torch.equal(e, f)
    assert "forward" not in m.__dict__       # the class forward is back after the with block
    m(x)
    assert m.calls == 6
    copy.deepcopy(m)(x)                      # a copy made afterwards is an ordinary module
    disabled = memo_mod.ReferenceMemo(m, enabled=False)
    with disabled:
        m(x)
        m(x)
    assert m.calls == 8 and disabled.hits == 0


def test_variant_seed_depends_on_the_study_seed_and_the_name_only() -> None:
    s = variants_mod.variant_seed
    assert s(0, "moderate") == s(0, "moderate")
    assert len({s(0, n) for n in ("int8", "moderate", "conservative", "rtn-moderate", "bitwave-moderate")}) == 5
    assert s(1, "moderate") == (s(0, "moderate") + 1) % 2**32
    assert 0 <= s(2**32 - 1, "x") < 2**32
