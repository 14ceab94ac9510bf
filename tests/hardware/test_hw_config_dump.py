"""Accelerator templates and listing: ``config_yaml`` round trips, ``bitvert simulate --list-accelerators`` and
``--dump-config``."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from bitvert.cli import main
from bitvert.hardware.config import available_presets, config_yaml, load_accelerator, load_yaml
from bitvert.hardware.targets import DEFAULT_TARGETS, accelerator_catalog, resolve_targets


@pytest.mark.parametrize("name", available_presets())
def test_config_yaml_reads_back_equal(name, tmp_path):
    cfg = load_accelerator(name)
    text = config_yaml(cfg)
    path = tmp_path / f"{name}.yaml"
    path.write_text(text, encoding="utf-8")
    assert load_accelerator(path) == cfg
    # every field is written, defaults included, and described where the model describes it
    data = load_yaml(text, "dump")
    assert set(data) == set(cfg.model_dump())
    for key, info in type(cfg).model_fields.items():
        if info.description:
            assert f"# {info.description}\n{key}:" in text


def test_config_yaml_keeps_edited_values(tmp_path):
    cfg = load_accelerator("bitvert", {"name": "big_bitvert", "array_rows": 64, "freq_mhz": 1000.5})
    path = tmp_path / "big.yaml"
    path.write_text(config_yaml(cfg), encoding="utf-8")
    back = load_accelerator(path)
    assert back == cfg and back.array_rows == 64 and back.freq_mhz == 1000.5
    assert "'big_bitvert.yaml:moderate'" in config_yaml(cfg)


def test_catalog_is_what_all_resolves_to():
    rows = accelerator_catalog()
    targets = resolve_targets("all")
    assert [r["label"] for r in rows] == list(DEFAULT_TARGETS) == [t.label for t in targets]
    by_label = {r["label"]: r for r in rows}
    assert by_label["bitvert-moderate"]["variant"] == "moderate"
    assert by_label["bitvert-moderate"]["pes"] == "32 x 16"
    assert by_label["stripes"]["variant"] == "int8" and by_label["stripes"]["pes"] == "16 x 16"
    assert by_label["bitwave"]["variant"].startswith("bitwave-w5 (") and "vit-small: bitwave-w6" in \
        by_label["bitwave"]["variant"]
    assert "zero_point" in by_label["bitvert-conservative"]["runs"]


def test_cli_list_accelerators_needs_no_workload():
    r = CliRunner().invoke(main, ["simulate", "--list-accelerators"])
    assert r.exit_code == 0, r.output
    lines = r.output.splitlines()
    assert lines[0].split()[:3] == ["label", "hardware", "variant"]
    listed = [line.split()[0] for line in lines[1:1 + len(DEFAULT_TARGETS)]]
    assert listed == list(DEFAULT_TARGETS)
    assert "--dump-config" in r.output


@pytest.mark.parametrize("name, hardware", [("bitvert", "bitvert"), ("bitvert-moderate", "bitvert"),
                                            ("sparten", "sparten")])
def test_cli_dump_config_is_a_loadable_template(name, hardware, tmp_path):
    r = CliRunner().invoke(main, ["simulate", "--dump-config", name])
    assert r.exit_code == 0, r.output
    path = tmp_path / "mine.yaml"
    path.write_text(r.output, encoding="utf-8")
    assert load_accelerator(path) == load_accelerator(hardware)


def test_cli_dump_config_of_a_yaml_file(tmp_path):
    path = tmp_path / "fast.yaml"
    path.write_text(config_yaml(load_accelerator("stripes", {"name": "fast", "freq_mhz": 1200.0})), encoding="utf-8")
    r = CliRunner().invoke(main, ["simulate", "--dump-config", str(path)])
    assert r.exit_code == 0, r.output
    assert "freq_mhz: 1200.0" in r.output and "name: fast" in r.output


def test_cli_dump_config_unknown_names_the_choices():
    r = CliRunner().invoke(main, ["simulate", "--dump-config", "bitvret"])
    assert r.exit_code != 0
    assert "bitvret" in r.output and "bitvert" in r.output
