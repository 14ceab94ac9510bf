"""Sweep specs: validation before any work, expansion into content-hashed points, the results table and the
Pareto fronts (fast: nothing here prunes a model)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from bitvert.errors import ConfigError, InputError
from bitvert.report.sweep import SweepSpec, expand, load_spec, run_sweep
from bitvert.report.sweep_table import TIMING_COLUMNS, read_results, write_table
from bitvert.report.sweep_report import pareto_mask, swept_axes

BASE: dict[str, Any] = {"models": ["mnist-cnn"], "presets": ["moderate"]}


def test_expansion_counts_dedupes_and_pairs_hardware() -> None:
    spec = load_spec({**BASE, "presets": ["moderate", "int8"],
                      "grid": [{"columns": [3, 4], "group_size": [16, 32]}, {"columns": [4]}, {"method": ["rtn"]}],
                      "accelerators": ["bitvert", "stripes", {"accelerator": "bitvert", "array_rows": [16, 64]}]})
    jobs = expand(spec)
    # 4 grid points ({columns: 4} is moderate's own N at g = 32: the same resolved preset, once),
    # rtn (no hardware runs it), int8 (the dense design only, no overrides)
    assert len(jobs) == 6
    by = {j.describe(): j for j in jobs}
    rtn = next(j for j in jobs if j.resolved["method"] == "rtn")
    assert rtn.hardware == () and len(rtn.point_ids) == 1
    int8 = next(j for j in jobs if j.preset == "int8")
    assert [h["name"] for h, _ in int8.hardware] == ["stripes"] and int8.overrides == {}
    g16 = next(j for j in jobs if j.overrides == {"columns": 3, "group_size": 16})
    names = [h["name"] for h, _ in g16.hardware]
    assert names == ["bitvert", "bitvert-array_rows16", "bitvert-array_rows64"]
    # a BitVert datapath without an explicit group_size reads the variant's groups
    assert {h["group_size"] for h, _ in g16.hardware} == {16}
    assert [h["array_rows"] for h, _ in g16.hardware] == [32, 16, 64]
    ids = [p for j in jobs for p in j.point_ids]
    assert len(ids) == len(set(ids)) == 4 * 3 + 1 + 1
    assert len(by) == len(jobs)


def test_point_ids_are_content_hashes() -> None:
    a = expand(load_spec({**BASE, "grid": {"group_size": [16]}}))[0]
    b = expand(load_spec({**BASE, "points": [{"group_size": 16, "columns": 4}], "name": "other"}))[0]
    c = expand(load_spec({**BASE, "grid": {"group_size": [16]}, "seed": 1}))[0]
    d = expand(load_spec({**BASE, "grid": {"group_size": [16]}, "accelerators": [{"accelerator": "bitvert",
                                                                                 "array_rows": 16}]}))[0]
    assert a.point_ids == b.point_ids  # same resolved configuration, written differently
    assert len({a.point_ids, c.point_ids, d.point_ids}) == 3


@pytest.mark.parametrize("patch, match", [
    ({"modelz": ["mnist-cnn"]}, r"modelz: unknown key; choose from name, description, models"),
    ({"grid": {}}, r"grid: .*a grid is empty"),
    ({"grid": {"columns": []}}, r"grid axis 'columns' has no values"),
    ({"grid": []}, r"grid is an empty list"),
    ({"points": []}, r"points is an empty list"),
    ({"models": ["no-such-model"]}, r"unknown model 'no-such-model'"),
    ({"models": []}, r"models: List should have at least 1 item"),
    ({"presets": ["modrate"]}, r"unknown preset 'modrate'; did you mean 'moderate'"),
    ({"accelerators": ["tpu"]}, r"unknown accelerator 'tpu'"),
    ({"accelerators": [{"accelerator": "bitvert", "array_rowz": 16}]}, r"key 'array_rowz': unknown key"),
    ({"accelerators": [{"accelerator": "bitvert", "array_rows": "many"}]}, r"array_rows"),
    ({"grid": {"columns": ["four"]}}, r"override \{'columns': 'four'\} of preset 'moderate'.*columns"),
    ({"grid": {"colums": [2]}},
     r"override \{'colums': 2\} of preset 'moderate': colums: unknown key; choose from name, description, method"),
    ({"grid": {"columns": [9]}}, r"columns"),
    ({"batch": "two"}, r"batch: Input should be a valid integer"),
    ({"limit": -3}, r"limit: .*positive integer, 'auto' or 'full'"),
    ({"models": [{"name": "mnist-cnn", "task": "imagenet"}]}, r"unknown task 'imagenet'"),
    ({"grid": {"name": ["x"]}}, r"cannot rename"),
])
def test_bad_specs_fail_before_any_work(tmp_path: Path, patch: dict[str, Any], match: str) -> None:
    spec = {**BASE, **patch}
    with pytest.raises(ConfigError, match=match):
        load_spec(spec)
    out = tmp_path / "out"
    with pytest.raises(ConfigError):
        run_sweep(_write_spec(tmp_path, spec), out)
    assert not out.exists()  # nothing was started


def _write_spec(tmp_path: Path, spec: dict[str, Any]) -> Path:
    import yaml

    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(spec), encoding="utf-8")
    return path


def test_yaml_errors_name_the_file(tmp_path: Path) -> None:
    path = tmp_path / "s.yaml"
    path.write_text("models: [mnist-cnn]\nmodels: [minilm-l6]\npresets: [moderate]\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"s.yaml.*duplicate key 'models'"):
        load_spec(path)
    path.write_text("- just a list\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="a sweep spec is a mapping"):
        load_spec(path)
    with pytest.raises(InputError, match="does not exist"):
        load_spec(tmp_path / "missing.yaml")


def test_run_sweep_refuses_bad_engine_options_and_foreign_folders(tmp_path: Path) -> None:
    spec = load_spec(BASE)
    with pytest.raises(ConfigError, match="--engine must be"):
        run_sweep(spec, tmp_path / "a", engine="dask")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="--workers"):
        run_sweep(spec, tmp_path / "a", workers=0)
    with pytest.raises(ConfigError, match="--address"):
        run_sweep(spec, tmp_path / "a", address="ray://x:10001")
    other = tmp_path / "other"
    other.mkdir()
    (other / "notes.txt").write_text("mine", encoding="utf-8")
    with pytest.raises(InputError, match="not a bitvert sweep"):
        run_sweep(spec, other)
    assert (other / "notes.txt").read_text(encoding="utf-8") == "mine"


def test_results_table_round_trips_and_is_replaced_atomically(tmp_path: Path) -> None:
    rows = [{"point_id": "a", "status": "ok", "error": None, "metric": 0.5, "columns": 4, "verified": True,
             "wall_s": 1.0, "cpu_s": 0.5, "finished_utc": "t"},
            {"point_id": "b", "status": "failed", "error": "InputError: x", "metric": None, "columns": 2,
             "verified": None, "extra": "v", "wall_s": 2.0, "cpu_s": 1.0, "finished_utc": "t"}]
    write_table(tmp_path, rows)
    back = read_results(tmp_path)
    assert [r["point_id"] for r in back] == ["a", "b"]
    assert back[0]["metric"] == 0.5 and back[1]["error"] == "InputError: x" and back[0]["extra"] is None
    assert list(back[0])[-3:] == list(TIMING_COLUMNS)  # timing columns last
    (tmp_path / "results.parquet").unlink()
    from_csv = read_results(tmp_path)
    assert from_csv[0]["metric"] == 0.5 and from_csv[0]["columns"] == 4 and from_csv[0]["verified"] is True
    assert from_csv[1]["error"] == "InputError: x" and from_csv[1]["metric"] is None
    assert not list(tmp_path.glob(".*tmp*"))


def test_swept_axes_are_the_columns_that_vary() -> None:
    rows = [{"columns": 2, "group_size": 32, "metric": 0.1, "model": "m"},
            {"columns": 3, "group_size": 32, "metric": 0.2, "model": "m"}]
    assert swept_axes(rows) == ["columns"]


def test_pareto_mask_golden() -> None:
    # bits (smaller is better), metric (larger is better)
    x = [8.0, 6.0, 5.0, 5.0, 4.0, 7.0]
    y = [0.90, 0.88, 0.80, 0.85, 0.60, 0.70]
    assert pareto_mask(x, y).tolist() == [True, True, False, True, True, False]
    assert pareto_mask([1.0, 2.0], [0.5, 0.6], minimize_x=False).tolist() == [False, True]
    assert pareto_mask([], []).tolist() == []


@given(st.lists(st.tuples(st.integers(0, 20), st.integers(0, 20)), min_size=1, max_size=40))
def test_pareto_mask_is_the_set_of_non_dominated_points(pts: list[tuple[int, int]]) -> None:
    x = np.array([p[0] for p in pts], dtype=float)
    y = np.array([p[1] for p in pts], dtype=float)
    mask = pareto_mask(x, y)
    for i in range(len(pts)):
        dominated = bool(np.any((x <= x[i]) & (y >= y[i]) & ((x < x[i]) | (y > y[i]))))
        duplicate_kept_before = any(mask[j] and x[j] == x[i] and y[j] == y[i] for j in range(len(pts)) if j != i)
        if dominated:
            assert not mask[i]
        else:
            assert mask[i] or duplicate_kept_before
    # one representative of every non-dominated value pair
    front = {(x[i], y[i]) for i in range(len(pts)) if mask[i]}
    assert int(mask.sum()) == len(front)


def test_shipped_specs_validate() -> None:
    root = Path(__file__).resolve().parents[2] / "examples" / "sweeps"
    specs = sorted(root.glob("*.yaml"))
    assert {p.name for p in specs} >= {"paper-sensitivity.yaml", "paper-hardware.yaml"}
    for path in specs:
        spec = load_spec(path)
        assert isinstance(spec, SweepSpec) and expand(spec)


def test_study_config_overrides_and_bare_hardware() -> None:
    """What a sweep job relies on in `bitvert run`'s configuration and target pairing."""
    from bitvert.hardware.targets import resolve_hardware
    from bitvert.report.results import StudyConfig
    from bitvert.report.simulation import study_targets

    cfg = StudyConfig(model="mnist-cnn", presets=("moderate",), baselines=("rtn",),
                      preset_overrides={"group_size": 16, "columns": 4})
    names = [(p.name, p.group_size, p.description) for p in cfg.variant_presets()]
    assert names[1] == ("moderate", 16, "BBS mod: beta 20 %, zero-point shifting, N = 4, g = 32 [group_size=16]")
    assert names[2][:2] == ("rtn-moderate", 16) and names[0][0] == "int8"  # baselines derive from the override
    same = StudyConfig(model="mnist-cnn", presets=("moderate",), preset_overrides={"columns": 4})
    assert same.variant_presets()[1] == StudyConfig(model="mnist-cnn", presets=("moderate",)).variant_presets()[1]
    with pytest.raises(ConfigError, match="columns"):
        StudyConfig.create(model="mnist-cnn", presets=("moderate",), preset_overrides={"columns": 9})
    with pytest.raises(ConfigError, match="cannot rename"):
        StudyConfig.create(model="mnist-cnn", presets=("moderate",), preset_overrides={"name": "x"})
    # a bare BitVert / BitWave preset selects the hardware, as `bitvert-moderate` does
    assert [c.name for c in resolve_hardware(["bitvert", "bitvert-moderate", "stripes", "bitwave"])] == \
        ["bitvert", "stripes", "bitwave"]
    labels = [t.label for t in study_targets(("bitvert", "bitwave", "stripes"), ["int8", "moderate"])]
    assert labels == ["bitvert-moderate", "stripes"]
    # a variant whose overridden method is the bit flip runs on BitWave, not on BitVert
    flipped = study_targets(("bitvert", "bitwave"), {"int8": "none", "moderate": "bitflip"})
    assert [(t.label, t.config.design) for t in flipped] == [("bitwave-moderate", "bitwave")]


def test_a_models_own_seq_len_wins() -> None:
    spec = load_spec({"models": ["mnist-cnn", {"name": "minilm-l6", "seq_len": 64}], "presets": ["moderate"],
                      "seq_len": 32})
    assert {j.model: j.seq_len for j in expand(spec)} == {"mnist-cnn": 32, "minilm-l6": 64}
    plain = load_spec({"models": ["mnist-cnn", {"name": "minilm-l6", "seq_len": 64}], "presets": ["moderate"]})
    assert {j.model: j.seq_len for j in expand(plain)} == {"mnist-cnn": None, "minilm-l6": 64}


def test_all_accelerators_with_overrides() -> None:
    spec = load_spec({**BASE, "presets": ["moderate", "int8"],
                      "accelerators": ["all", {"accelerator": "stripes", "array_rows": [16, 64]}]})
    hw = {j.preset: [h["name"] for h, _ in j.hardware] for j in expand(spec)}
    assert hw["moderate"] == ["bitvert"]  # BitWave runs bit-flip variants only
    assert hw["int8"] == ["stripes", "pragmatic", "bitlet", "ant", "sparten", "bit-parallel",
                          "stripes-array_rows16", "stripes-array_rows64"]
