"""`bitvert sweep` on the command line: bad specs and options fail with one line before any work,
`--report-only` redraws the report from a table (fast: no model is pruned here)."""

from __future__ import annotations

import builtins
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from bitvert.cli import main
from bitvert.report.sweep_table import write_table


def _rows() -> list[dict[str, Any]]:
    rows = []
    for method in ("rounded_avg", "zero_point"):
        for n in (1, 2, 3, 4, 5):
            rows.append({"point_id": f"{method}{n}", "status": "ok", "error": None, "model": "mnist-cnn",
                         "preset": "moderate", "method": method, "columns": n, "group_size": 32,
                         "sensitive_fraction": 0.2, "accelerator": "bitvert", "headline_metric": "top1",
                         "fidelity_metric": "top1_agreement", "metric": 1.0 - 0.01 * n,
                         "fidelity": 1.0 - 0.02 * n - (0.01 if method == "rounded_avg" else 0.0),
                         "effective_bits": 8.0 - n + 0.25, "speedup_vs_stripes": 1.0 + 0.2 * n,
                         "wall_s": 1.0, "cpu_s": 1.0, "finished_utc": "2026-12-01T00:00:00+00:00"})
    rows.append({"point_id": "bad", "status": "failed", "error": "InputError: group_size=7 does not divide 32",
                 "model": "mnist-cnn", "preset": "moderate", "method": "zero_point", "columns": 4, "group_size": 7,
                 "sensitive_fraction": 0.2})
    return rows


def test_report_only_redraws_from_the_table(tmp_path: Path) -> None:
    write_table(tmp_path, _rows())
    r = CliRunner().invoke(main, ["sweep", "--report-only", str(tmp_path)])
    assert r.exit_code == 0, r.output
    page = (tmp_path / "report.html").read_text(encoding="utf-8")
    assert page.startswith("<!DOCTYPE html>") and "<script" not in page and "src=\"http" not in page
    for stem in ("pareto_metric", "pareto_fidelity", "pareto_speedup", "axis_columns"):
        assert f'id="fig-{stem}"' in page and (tmp_path / "plots" / f"{stem}.png").is_file()
    assert "Failed points" in page and "group_size=7 does not divide 32" in page
    assert "11 points: 10 finished, 1 failed" in page


def test_report_only_on_an_empty_folder_is_one_line(tmp_path: Path) -> None:
    r = CliRunner().invoke(main, ["sweep", "--report-only", str(tmp_path)])
    assert r.exit_code == 2 and r.output.startswith("error: ") and "has no sweep results" in r.output


@pytest.mark.parametrize("args, match", [
    (["sweep"], "give SPEC.yaml and --out DIR"),
    (["sweep", "spec.yaml"], "give SPEC.yaml and --out DIR"),
    (["sweep", "spec.yaml", "--out", "o", "--report-only", "."], "--report-only DIR takes no SPEC"),
    (["sweep", "spec.yaml", "--out", "o", "--workers", "0"], "--workers"),
    (["sweep", "spec.yaml", "--out", "o", "--engine", "dask"], "--engine"),
])
def test_usage_errors(args: list[str], match: str) -> None:
    r = CliRunner().invoke(main, args)
    assert r.exit_code == 2 and match in r.output


def test_bad_spec_is_one_line_and_nothing_is_created(tmp_path: Path) -> None:
    spec = tmp_path / "spec.yaml"
    spec.write_text("models: [mnist-cnn]\npresets: [moderate]\ngrid: {columns: []}\n", encoding="utf-8")
    out = tmp_path / "out"
    r = CliRunner().invoke(main, ["sweep", str(spec), "--out", str(out)])
    assert r.exit_code == 2
    assert r.output.count("\n") == 1 and r.output.startswith("error: ") and "grid axis 'columns' has no values" in r.output
    assert not out.exists()


def test_engine_ray_without_ray_says_how_to_install(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    spec = tmp_path / "spec.yaml"
    spec.write_text("models: [mnist-cnn]\npresets: [moderate]\n", encoding="utf-8")
    real_import = builtins.__import__

    def no_ray(name: str, *args: Any, **kwargs: Any) -> Any:
        if name == "ray" or name.startswith("ray."):
            raise ImportError("No module named 'ray'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_ray)
    r = CliRunner().invoke(main, ["sweep", str(spec), "--out", str(tmp_path / "out"), "--engine", "ray"])
    assert r.exit_code == 2 and 'pip install "bitvert[ray]"' in r.output
    assert not (tmp_path / "out").exists()
