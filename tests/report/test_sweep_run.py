"""`bitvert sweep` on the real MNIST CNN: a point's numbers are `bitvert run`'s, the local and Ray engines give
identical tables, an interrupted sweep resumes without recomputing finished points, a failing point is
recorded with its error while the others finish."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from bitvert.report import sweep as sweep_mod
from bitvert.report.sweep import TIMING_COLUMNS, expand, load_spec, read_results, run_sweep

pytestmark = pytest.mark.slow

TINY: dict[str, Any] = {
    "name": "tiny",
    "models": [{"name": "mnist-cnn", "limit": 100}],
    "presets": ["moderate", "int8"],
    "grid": [{"columns": [3, 4], "group_size": [16, 32]}, {"method": ["rtn"]}],
    "accelerators": ["bitvert", "stripes"],
    "calibration_samples": 8,
}
"""Six points: four BBS settings on BitVert, round-to-nearest (no hardware runs it), INT8 on Stripes."""


def _numbers(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return sorted(({k: v for k, v in r.items() if k not in TIMING_COLUMNS} for r in rows),
                  key=lambda r: r["point_id"])


@pytest.fixture(scope="module")
def local_sweep(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("sweep") / "local"
    outcome = run_sweep(load_spec(TINY), out, engine="local", workers=2)
    assert (outcome.points, outcome.skipped, outcome.ran, outcome.failed) == (6, 0, 6, 0)
    return out


def test_table_has_one_row_per_point_with_every_swept_parameter(local_sweep: Path) -> None:
    rows = read_results(local_sweep)
    assert len(rows) == 6 and all(r["status"] == "ok" and r["error"] is None for r in rows)
    assert {r["point_id"] for r in rows} == {p for j in expand(load_spec(TINY)) for p in j.point_ids}
    bbs = [r for r in rows if r["method"] == "zero_point"]
    assert sorted((r["columns"], r["group_size"]) for r in bbs) == [(3, 16), (3, 32), (4, 16), (4, 32)]
    assert all(r["accelerator"] == "bitvert" and r["speedup_vs_stripes"] > 1 and r["verified"] for r in bbs)
    (rtn,) = [r for r in rows if r["method"] == "rtn"]
    assert rtn["accelerator"] is None and rtn["cycles"] is None and rtn["effective_bits"] < 8
    (int8,) = [r for r in rows if r["method"] == "none"]
    assert int8["accelerator"] == "stripes" and int8["speedup_vs_stripes"] == pytest.approx(1.0)
    assert int8["effective_bits"] == 8.0
    for r in rows:
        assert r["headline_metric"] == "top1" and r["fidelity_metric"] == "top1_agreement"
        assert r["wall_s"] > 0 and r["cpu_s"] > 0
    csv_text = (local_sweep / "results.csv").read_text(encoding="utf-8")
    assert csv_text.count("\n") == 7
    page = (local_sweep / "report.html").read_text(encoding="utf-8")
    assert "Pareto" in page and page.count("data:image/png;base64,") >= 4 and "<script" not in page
    assert (local_sweep / "plots" / "pareto_fidelity.png").is_file()


def test_points_equal_bitvert_run(local_sweep: Path, tmp_path: Path) -> None:
    """A point with overrides through the library, one without through the `bitvert run` CLI."""
    from click.testing import CliRunner

    from bitvert.cli import main
    from bitvert.report import StudyConfig, run_study

    rows = {(r["method"], r["columns"], r["group_size"]): r for r in read_results(local_sweep)}
    row = rows[("zero_point", 3, 16)]
    import yaml

    from bitvert.hardware.config import load_accelerator

    hw = tmp_path / "bitvert-g16.yaml"
    hw.write_text(yaml.safe_dump(load_accelerator("bitvert", {"group_size": 16}).model_dump()), encoding="utf-8")
    res = run_study(StudyConfig(model="mnist-cnn", presets=("moderate",), baselines=(), accelerators=(str(hw),),
                                eval_limit=100, calibration_samples=8,
                                preset_overrides={"columns": 3, "group_size": 16}), tmp_path / "r1")
    v = res.variants["moderate"]
    assert (v.metrics["top1"], v.metrics["top1_agreement"]) == (row["metric"], row["fidelity"])
    assert (v.effective_bits, v.file_bytes, v.weight_bytes) == (row["effective_bits"], row["file_bytes"],
                                                                row["weight_bytes"])
    acc = res.simulation["accelerators"][v.accelerator]
    assert (acc["cycles"], acc["speedup_vs_stripes"], acc["energy_pj"]) == (row["cycles"], row["speedup_vs_stripes"],
                                                                            row["energy_pj"])
    assert res.variants["fp32"].metrics["top1"] == row["fp32_metric"]

    row = rows[("zero_point", 4, 32)]  # moderate as it ships: the CLI can name it
    r = CliRunner().invoke(main, ["run", "--model", "mnist-cnn", "--presets", "moderate", "--baselines", "none",
                                  "--accelerators", "bitvert", "--limit", "100", "--calibration-samples", "8",
                                  "-q", "--out", str(tmp_path / "r2")])
    assert r.exit_code == 0, r.output
    doc = json.loads((tmp_path / "r2" / "results.json").read_text(encoding="utf-8"))
    v2 = doc["variants"]["moderate"]
    assert (v2["metrics"]["top1"], v2["metrics"]["top1_agreement"], v2["effective_bits"], v2["file_bytes"]) == \
        (row["metric"], row["fidelity"], row["effective_bits"], row["file_bytes"])
    assert (v2["accelerator"], v2["speedup_vs_stripes"], v2["energy_vs_sparten"]) == \
        ("bitvert-moderate", row["speedup_vs_stripes"], row["energy_vs_sparten"])


def test_interrupted_sweep_resumes_without_recomputing(local_sweep: Path, tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    out = tmp_path / "resume"
    real = sweep_mod.run_job
    calls: list[str] = []

    def killed_after_two(job: Any) -> Any:
        if len(calls) == 2:
            raise KeyboardInterrupt  # the process is killed while the third point runs
        calls.append(job.point_ids[0])
        return real(job)

    monkeypatch.setattr(sweep_mod, "run_job", killed_after_two)
    with pytest.raises(KeyboardInterrupt):
        run_sweep(load_spec(TINY), out, workers=1)
    first = {r["point_id"]: r for r in read_results(out)}
    assert len(first) == 2 and set(first) == set(calls)

    def counting(job: Any) -> Any:
        assert job.point_ids[0] not in first, "a finished point was recomputed"
        calls.append(job.point_ids[0])
        return real(job)

    monkeypatch.setattr(sweep_mod, "run_job", counting)
    outcome = run_sweep(load_spec(TINY), out, workers=1)
    assert (outcome.points, outcome.skipped, outcome.ran, outcome.failed) == (6, 2, 4, 0)
    rows = read_results(out)
    for pid, row in first.items():  # the finished rows are kept as they were, timings included
        assert next(r for r in rows if r["point_id"] == pid) == row
    assert _numbers(rows) == _numbers(read_results(local_sweep))  # in-process == process pool
    again = run_sweep(load_spec(TINY), out, workers=1)
    assert (again.skipped, again.ran) == (6, 0)


def test_failing_point_is_recorded_and_the_others_finish(tmp_path: Path) -> None:
    spec = load_spec({"models": [{"name": "mnist-cnn", "limit": 100}], "presets": ["moderate"],
                      "calibration_samples": 8,
                      "points": [{"group_size": 7, "remainder": "error"}, {"columns": 2}]})
    outcome = run_sweep(spec, tmp_path / "out", workers=1)
    assert (outcome.ran, outcome.failed) == (2, 1)
    rows = {r["status"]: r for r in read_results(tmp_path / "out")}
    bad = rows["failed"]
    assert bad["group_size"] == 7 and bad["metric"] is None and bad["cycles"] is None
    assert bad["error"].startswith("InputError: ") and "not a multiple of group_size=7" in bad["error"]
    assert rows["ok"]["columns"] == 2 and rows["ok"]["metric"] is not None
    page = (tmp_path / "out" / "report.html").read_text(encoding="utf-8")
    assert "Failed points" in page and "not a multiple of group_size=7" in page
    # a failed point is retried by the next run, a finished one is not
    again = run_sweep(spec, tmp_path / "out", workers=1)
    assert (again.skipped, again.ran, again.failed) == (1, 1, 1)


def test_ray_engine_gives_the_local_table(local_sweep: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    import bitvert

    ray = pytest.importorskip("ray", reason='Ray is the optional extra "bitvert[ray]" (make test installs it)')
    # Ray's workers import bitvert from wherever this process did (a relative PYTHONPATH would not do)
    src = str(Path(bitvert.__file__).resolve().parents[1])
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([src, os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep))
    ray.init(num_cpus=2, include_dashboard=False, logging_level="WARNING")
    try:
        outcome = run_sweep(load_spec(TINY), tmp_path / "ray", engine="ray")
    finally:
        ray.shutdown()
    assert (outcome.ran, outcome.failed) == (6, 0)
    assert _numbers(read_results(tmp_path / "ray")) == _numbers(read_results(local_sweep))
