"""The whole `bitvert run` pipeline on the real MNIST CNN, checked against the components.

* sizes in the report equal the encoded files on disk (and their tensor payloads);
* the decoded weights equal the pruned checkpoint's integers;
* the simulator ran each variant's own encoded file (integers, stored columns, bits per weight);
* metrics equal ``bitvert eval`` of the kept checkpoints;
* the same configuration twice gives identical numbers;
* the HTML renders in headless Chromium with every plot visible (skipped without Chromium).
"""

from __future__ import annotations

import base64
import importlib.util
import json
import struct
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from click.testing import CliRunner

from bitvert.cli import main
from bitvert.report import REPORT_STATUS_FILE, StudyConfig, StudyResult, is_complete_report, run_study
from bitvert.report.plots import FIGURE_TITLES

pytestmark = pytest.mark.slow

LIMIT = 200


@pytest.fixture(scope="module")
def study(tmp_path_factory: pytest.TempPathFactory) -> StudyResult:
    out = tmp_path_factory.mktemp("study") / "report"
    return run_study(StudyConfig(model="mnist-cnn", eval_limit=LIMIT, keep_checkpoints=True, seed=3), out)


def _safetensors_parts(path: Path) -> dict[str, int]:
    """Bytes per tensor-name prefix, read straight from the safetensors header."""
    raw = path.read_bytes()
    (n,) = struct.unpack("<Q", raw[:8])
    head = json.loads(raw[8:8 + n])
    parts: dict[str, int] = {}
    for key, info in head.items():
        if key == "__metadata__":
            continue
        start, end = info["data_offsets"]
        prefix = key.split(".", 1)[0]
        parts[prefix] = parts.get(prefix, 0) + end - start
    parts["header"] = 8 + n
    return parts


def test_report_folder_is_complete(study: StudyResult) -> None:
    out = study.out_dir
    assert is_complete_report(out)
    status = json.loads((out / REPORT_STATUS_FILE).read_text())
    for name in ("report.md", "report.html", "results.json", "timings.json", "simulation/summary.json",
                 "simulation/layers.csv"):
        assert (out / name).is_file() and name in status["files"]
    assert sorted(p.stem for p in (out / "plots").glob("*.png")) == sorted(FIGURE_TITLES)
    assert not list(out.parent.glob(".report.partial-*"))
    assert not (out / ".scratch").exists()
    doc = json.loads((out / "results.json").read_text())
    assert list(doc["variants"]) == ["fp32", "int8", "conservative", "bitwave-conservative", "rtn-conservative",
                                     "moderate", "bitwave-moderate", "rtn-moderate"]
    timings = json.loads((out / "timings.json").read_text())
    assert set(timings["timings_s"]) >= {"load", "prune", "evaluate", "encode", "analyze", "simulate", "write",
                                         "total"}
    assert "timings_s" not in doc and "cpu_seconds" not in doc  # results.json: the same bytes on every run
    assert doc["eval_limit"] == LIMIT and doc["task"] == "mnist-top1"
    assert doc["environment"]["seed"] == 3 and doc["environment"]["cpu_capability"]
    assert doc["noise"]["cpu_capability"]["top1"]["spread"] == 0.0
    assert doc["noise"]["sampling_95"]["moderate"]["top1"][1] <= 1.0


def test_sizes_equal_the_encoded_files(study: StudyResult) -> None:
    n = study.model["n_weights_quantized"]
    for name, v in study.variants.items():
        if name == "fp32":
            assert v.encoded_file is None
            continue
        path = study.out_dir / "encoded" / v.encoded_file
        assert v.file_bytes == path.stat().st_size
        parts = _safetensors_parts(path)
        assert v.weight_bytes == parts["bbs"]
        assert sum(parts.values()) == v.file_bytes  # header + bbs + scale + state = the file
        # the encoded weights cost about the effective bits (the codec adds channel-index bits)
        assert 8 * v.weight_bytes / n == pytest.approx(v.effective_bits, abs=0.3)
        assert v.weight_ratio_vs_int8 == pytest.approx(study.variants["int8"].weight_bytes / v.weight_bytes)
        assert v.verified is True
        assert v.output_max_abs_diff == 0.0  # the model loaded from the file runs exactly like the pruned one
    assert study.variants["moderate"].weight_bytes < study.variants["conservative"].weight_bytes \
        < study.variants["int8"].weight_bytes


def test_decoded_weights_equal_the_checkpoint(study: StudyResult) -> None:
    from bitvert.codec.container import load_encoded
    from bitvert.pipeline import load_pruned

    for name in ("int8", "moderate", "bitwave-conservative", "rtn-moderate"):
        ckpt = load_pruned(study.out_dir / "checkpoints" / f"{name}.safetensors")
        enc = load_encoded(study.out_dir / "encoded" / f"{name}.bbs.safetensors")
        for layer in ckpt.layers:
            got = enc.decode(f"{layer.name}.weight")
            np.testing.assert_array_equal(got, layer.q.numpy().astype(np.int16))
        assert ckpt.effective_bits == pytest.approx(study.variants[name].effective_bits)


def _simulated_variants_are_the_files(study: StudyResult) -> list[str]:
    """For every variant with an accelerator: the simulator's per-layer integers, stored columns per group and
    bits per weight equal those decoded from the variant's *.bbs.safetensors; returns the checked variants."""
    import csv

    from bitvert.codec.container import load_encoded
    from bitvert.core.bitplanes import plane_count
    from bitvert.codec.tensor import decode, plan_groups
    from bitvert.hardware.simulate import simulate
    from bitvert.hardware.variants import FileVariants, module_name
    from bitvert.models import load_model
    from bitvert.report.simulation import model_geometry, study_targets

    sim = study.simulation
    files = {p.name[: -len(".bbs.safetensors")]: p for p in (study.out_dir / "encoded").glob("*.bbs.safetensors")}
    loaded = load_model(study.config.model)
    loaded.model.eval()
    geometry, _ = model_geometry(loaded, study.config.simulate_batch, study.config.simulate_seq_len,
                                 name=study.config.model.replace("/", "_"))
    with (study.out_dir / "simulation" / "layers.csv").open() as fh:
        rows = {(r["accelerator"], r["layer"]): r for r in csv.DictReader(fh)}
    source = FileVariants(files, unquantized="drop")
    checked = []
    for name, v in study.variants.items():
        if v.accelerator is None:
            continue
        target = sim["configs"][v.accelerator]
        assert target["variant_preset"] == name or (name == "int8" and target["design"] == "stripes")
        vw = source.workload(geometry, name)
        model = load_encoded(files[name])
        for layer in vw.layers:
            enc = model.tensors[f"{module_name(layer.name)}.weight"]
            ints = decode(enc)
            np.testing.assert_array_equal(layer.weights, ints.T if enc.kind.value == "linear_in_out" else ints)
            plan = plan_groups(enc)
            stored = np.empty(len(plan.order), dtype=np.int64)
            stored[plan.order] = plane_count(plan.planes)
            np.testing.assert_array_equal(layer.encoding.stored_columns, stored)
            if target["design"] != "bitwave" or enc.layout.value == "bitwave":
                bits = float(rows[(v.accelerator, layer.name)]["weight_footprint_bits"]) / layer.n_weights
                assert bits == pytest.approx(enc.stats()["bits_per_weight"], rel=1e-12)
        # the study simulated exactly these weights: simulating them again gives its cycles
        (target,) = [t for t in study_targets(study.config.accelerators, list(files)) if t.label == v.accelerator]
        again = simulate(geometry, [target], variants=source).to_json()
        assert again["accelerators"][v.accelerator]["cycles"] == sim["accelerators"][v.accelerator]["cycles"]
        checked.append(name)
    return checked


def test_simulator_runs_each_variants_encoded_file(study: StudyResult) -> None:
    checked = _simulated_variants_are_the_files(study)
    assert checked == ["int8", "conservative", "bitwave-conservative", "moderate", "bitwave-moderate"]
    assert study.variants["moderate"].accelerator == "bitvert-moderate"
    assert study.variants["bitwave-moderate"].accelerator == "bitwave-moderate"
    assert study.variants["rtn-moderate"].accelerator is None
    acc = study.simulation["accelerators"]
    for name in ("conservative", "moderate", "bitwave-moderate"):
        v = study.variants[name]
        assert v.speedup_vs_stripes == acc[v.accelerator]["speedup_vs_stripes"]
        assert v.energy_vs_sparten == acc[v.accelerator]["energy_vs_sparten"]
    # the first and last layers stay INT8 in the paper presets: BitVert runs them at 8 columns
    rows = [r for r in study.layers if r["role"].get("moderate") == "int8"]
    assert rows and all(r["effective_bits"]["moderate"] == 8.0 for r in rows)
    # the dense designs ran the pipeline's INT8 weights
    wc = study.workload_check
    assert wc["layers_compared_with_int8"] == 4 and wc["layers_equal_to_int8"] == 4


def test_text_model_simulator_runs_each_variants_encoded_file(tmp_path: Path) -> None:
    cfg = StudyConfig(model="minilm-l6", presets=("moderate",), baselines=("bitwave",), eval_limit=8, seed=2)
    study = run_study(cfg, tmp_path / "minilm")
    assert _simulated_variants_are_the_files(study) == ["int8", "moderate", "bitwave-moderate"]


@pytest.mark.parametrize("variant", ["fp32", "moderate", "rtn-conservative"])
def test_metrics_equal_bitvert_eval(study: StudyResult, variant: str) -> None:
    target = "mnist-cnn" if variant == "fp32" else str(study.out_dir / "checkpoints" / f"{variant}.safetensors")
    r = CliRunner().invoke(main, ["eval", target, "--limit", str(LIMIT), "--json"])
    assert r.exit_code == 0, r.output
    res = json.loads(r.output.strip().splitlines()[-1])
    assert res["metrics"] == study.variants[variant].metrics


def test_report_shows_the_measured_numbers(study: StudyResult) -> None:
    md = (study.out_dir / "report.md").read_text(encoding="utf-8")
    page = (study.out_dir / "report.html").read_text(encoding="utf-8")
    for v in study.variants.values():
        row = next(line for line in md.splitlines() if line.startswith(f"| {v.name} |"))
        assert f"{v.effective_bits:.3f}" in row
        if v.speedup_vs_stripes is not None:
            assert f"{v.speedup_vs_stripes:.2f}×" in row
        assert f"<td>{v.name}</td>" in page
    assert page.count("data:image/png;base64,") == len(FIGURE_TITLES)


def _differences(x: Any, y: Any, path: str = "") -> list[str]:
    if isinstance(x, dict) and isinstance(y, dict):
        return [d for k in sorted(set(x) | set(y), key=str) for d in _differences(x.get(k), y.get(k), f"{path}/{k}")]
    if isinstance(x, list) and isinstance(y, list) and len(x) == len(y):
        return [d for i, (u, v) in enumerate(zip(x, y)) for d in _differences(u, v, f"{path}[{i}]")]
    return [] if x == y else [f"{path}: {x!r} != {y!r}"]


def test_same_configuration_twice_gives_identical_numbers(tmp_path: Path) -> None:
    from bitvert.codec.container import load_encoded

    cfg = StudyConfig(model="mnist-cnn", presets=("moderate",), baselines=("bitwave",), eval_limit=64,
                      accelerators=("stripes", "sparten", "bitvert-moderate", "bitwave"), seed=11)
    a = run_study(cfg, tmp_path / "a")
    b = run_study(cfg, tmp_path / "b")
    assert _differences(a.numbers(), b.numbers()) == []
    assert (tmp_path / "a" / "report.md").read_text().split("## Stage timings")[0] == \
        (tmp_path / "b" / "report.md").read_text().split("## Stage timings")[0]
    for name in ("int8", "moderate", "bitwave-moderate"):
        fa = load_encoded(tmp_path / "a" / "encoded" / f"{name}.bbs.safetensors")
        fb = load_encoded(tmp_path / "b" / "encoded" / f"{name}.bbs.safetensors")
        assert sorted(fa.tensors) == sorted(fb.tensors)
        for key in fa.tensors:
            np.testing.assert_array_equal(fa.decode(key), fb.decode(key))


def _screenshot_module() -> Any:
    path = Path(__file__).resolve().parents[2] / "scripts" / "screenshot_report.py"
    spec = importlib.util.spec_from_file_location("bitvert_screenshot_report", path)
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_html_renders_in_chromium_with_every_plot_visible(study: StudyResult, tmp_path: Path) -> None:
    shot = _screenshot_module()
    chromium = shot.find_chromium()
    if chromium is None:
        pytest.skip("Chromium is not installed (apt-get install -y chromium); cannot screenshot the HTML report")
    records = shot.check_report(study.out_dir / "report.html", tmp_path, chromium)
    assert [r["figure"] for r in records] == list(FIGURE_TITLES)
    assert all(r["visible"] for r in records), records
    assert (tmp_path / "page.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # negative control: a figure whose image data is broken is reported as not visible
    page = (study.out_dir / "report.html").read_text(encoding="utf-8")
    bad = page.replace("data:image/png;base64,", "data:image/png;base64," + base64.b64encode(b"junk").decode(), 1)
    broken = tmp_path / "broken.html"
    broken.write_text(bad, encoding="utf-8")
    (tmp_path / "broken").mkdir()
    records = shot.check_report(broken, tmp_path / "broken", chromium)
    assert [r["visible"] for r in records] == [False] + [True] * (len(FIGURE_TITLES) - 1)
