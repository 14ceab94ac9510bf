"""Accelerator configs: every preset loads; bad configs fail with the offending key named."""

from __future__ import annotations

import numpy as np
import pytest

from bitvert.errors import ConfigError
from bitvert.hardware.config import available_presets, load_accelerator, parse_accelerator
from bitvert.hardware.simulate import simulate
from bitvert.hardware.targets import DEFAULT_TARGETS, NAMED_TARGETS, resolve_targets
from hw_helpers import linear, workload


def test_every_shipped_preset_loads():
    names = available_presets()
    assert set(DEFAULT_TARGETS) - set(NAMED_TARGETS) <= set(names)
    assert {hw for hw, _, _ in NAMED_TARGETS.values()} <= set(names)
    for n in names:
        cfg = load_accelerator(n)
        assert cfg.name == n and cfg.version == 1


def test_iso_lane_array_sizes():
    lanes = {}
    for t in resolve_targets("all"):
        c = t.config
        lanes[t.label] = (c.array_rows, c.array_cols, c.lanes_per_pe)
    assert lanes["stripes"] == (16, 16, 16)
    assert lanes["bitvert-moderate"] == (32, 16, 16)
    assert lanes["pragmatic"] == (32, 16, 8)
    assert lanes["bitlet"] == (32, 16, 32)
    assert lanes["bitwave"] == (32, 16, 8)
    assert lanes["ant"] == (16, 20, 16)
    assert lanes["sparten"] == (32, 16, 128)


def _base(**kw):
    d = {"design": "stripes", "name": "s", "array_rows": 16, "array_cols": 16, "lanes_per_pe": 16,
         "energy_key": "stripes"}
    d.update(kw)
    return d


def test_unknown_key_is_named():
    with pytest.raises(ConfigError, match="'colour'"):
        parse_accelerator(_base(colour="red"))


def test_wrong_unit_key_is_named():
    with pytest.raises(ConfigError, match="weight_sram_kb.*unknown key"):
        parse_accelerator(_base(weight_sram_kb=256))


def test_negative_size_is_named():
    with pytest.raises(ConfigError, match="'array_rows'"):
        parse_accelerator(_base(array_rows=-4))
    with pytest.raises(ConfigError, match="'input_sram_kib'"):
        parse_accelerator(_base(input_sram_kib=-1))


def test_missing_and_unknown_design():
    d = _base()
    del d["design"]
    with pytest.raises(ConfigError, match="'design'"):
        parse_accelerator(d)
    with pytest.raises(ConfigError, match="design"):
        parse_accelerator(_base(design="tpu"))


def test_design_specific_key_validation():
    with pytest.raises(ConfigError, match="'group_size'"):
        load_accelerator("bitvert", overrides={"group_size": 1})
    with pytest.raises(ConfigError, match="'min_cycles_per_tile'"):
        load_accelerator("bitwave", overrides={"min_cycles_per_tile": 0})


@pytest.mark.parametrize("design,key,value", [
    ("bitvert", "sensitive_fraction", 0.2), ("bitvert", "method", "zero_point"), ("bitvert", "pruned_columns", 4),
    ("bitwave", "weight_precision_bits", 5), ("bitwave", "weight_precision_bits_by_workload", {"vgg16": 5}),
])
def test_pruning_keys_in_a_hardware_yaml_point_to_the_preset(design, key, value):
    with pytest.raises(ConfigError, match=f"'{key}'.*not the hardware.*'bitvert:moderate'"):
        load_accelerator(design, overrides={key: value})


def test_targets_pair_hardware_and_variant(tmp_path):
    t = {x.label: x for x in resolve_targets("all")}
    assert list(t) == list(DEFAULT_TARGETS)
    assert t["bitvert-moderate"].preset == "moderate" and t["bitvert-conservative"].preset == "conservative"
    assert t["bitvert-moderate"].config.name == "bitvert"
    assert t["stripes"].preset == "int8"
    bw = t["bitwave"]
    assert [bw.preset_for(w) for w in ("vit-small", "bert-mrpc", "resnet34", "vgg16", "resnet50")] == \
        ["bitwave-w6"] * 3 + ["bitwave-w5"] * 2
    (llm,) = resolve_targets("bitvert:llm-moderate")
    assert llm.label == "bitvert-llm-moderate" and llm.preset == "llm-moderate"
    p = tmp_path / "wide.yaml"
    p.write_text("design: bitvert\nname: wide\narray_rows: 64\narray_cols: 16\nlanes_per_pe: 16\n"
                 "energy_key: bitvert\n")
    (mine,) = resolve_targets(f"{p}:conservative")
    assert mine.label == "wide-conservative" and mine.config.array_rows == 64
    with pytest.raises(ConfigError, match="name its pipeline preset.*bitvert:moderate"):
        resolve_targets("bitvert")
    with pytest.raises(ConfigError, match="cannot run preset 'bitwave-moderate'"):
        resolve_targets("bitvert:bitwave-moderate")
    with pytest.raises(ConfigError, match="unknown preset"):
        resolve_targets("bitvert:nonsense")


def test_duplicate_yaml_key_rejected(tmp_path):
    p = tmp_path / "acc.yaml"
    p.write_text("design: stripes\nname: a\nname: b\narray_rows: 16\narray_cols: 16\nlanes_per_pe: 16\n"
                 "energy_key: stripes\n")
    with pytest.raises(ConfigError, match="duplicate key 'name'"):
        load_accelerator(str(p))


def test_yaml_file_roundtrip(tmp_path):
    p = tmp_path / "mine.yaml"
    p.write_text("version: 1\ndesign: pragmatic\nname: prag-64\narray_rows: 64\narray_cols: 16\nlanes_per_pe: 8\n"
                 "energy_key: pragmatic\n")
    cfg = load_accelerator(str(p))
    assert cfg.array_rows == 64 and cfg.name == "prag-64"


def test_unknown_preset_and_missing_file():
    with pytest.raises(ConfigError, match="unknown accelerator 'nope'"):
        load_accelerator("nope")
    with pytest.raises(ConfigError, match="does not exist"):
        load_accelerator("missing.yaml")


def test_array_that_cannot_map_a_layer_names_the_key():
    cfg = load_accelerator("stripes", overrides={"weight_sram_kib": 0.1})  # 819 bits < one 2048-bit tile
    with pytest.raises(ConfigError, match="'weight_sram_kib'"):
        simulate(workload(linear("fc", np.ones((16, 16), dtype=np.int16))), [cfg])


def test_unknown_energy_key_is_named():
    cfg = load_accelerator("stripes", overrides={"energy_key": "nothing"})
    with pytest.raises(ConfigError, match="'energy_key'"):
        simulate(workload(linear("fc", np.ones((16, 16), dtype=np.int16))), [cfg])


def test_duplicate_accelerator_names_rejected():
    with pytest.raises(ConfigError, match="twice"):
        resolve_targets("stripes,stripes")
