"""simulate(): report shape, summary.json contract, CSV rows, CLI."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
from click.testing import CliRunner

from bitvert.cli import main
from bitvert.errors import InputError
from bitvert.hardware.simulate import LAYER_COLUMNS, simulate
from bitvert.hardware.targets import DEFAULT_TARGETS as DEFAULT_ACCELERATORS
from bitvert.hardware.workloads_zoo import build_workload
from hw_helpers import conv, linear, workload

TINY_LLAMA = {"hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 1, "num_attention_heads": 4,
              "num_key_value_heads": 2, "vocab_size": 96, "seq_len": 20}


@pytest.fixture(scope="module")
def tiny_report():
    wl = build_workload("llama", llama=TINY_LLAMA, seed=1)
    return wl, simulate(wl, "all")


def test_summary_json_contract(tiny_report):
    wl, rep = tiny_report
    s = rep.to_json()
    assert s["schema"] == "bitvert.simulate.summary/1"
    assert s["synthetic_weights"] is True
    assert list(s["accelerators"]) == list(DEFAULT_ACCELERATORS)
    for name, acc in s["accelerators"].items():
        for key in ("cycles", "energy_pj", "speedup_vs_stripes", "energy_vs_sparten"):
            assert isinstance(acc[key], float) and acc[key] > 0, (name, key)
        t = acc["per_workload"]["llama"]
        assert set(t["energy_by_component_pj"]) == {"pe", "scheduler", "sram_read", "sram_write", "dram"}
        assert t["energy_pj"] == pytest.approx(sum(t["energy_by_component_pj"].values()))
    assert s["accelerators"]["stripes"]["speedup_vs_stripes"] == 1.0
    assert s["accelerators"]["sparten"]["energy_vs_sparten"] == 1.0
    st = s["accelerators"]["stripes"]
    bv = s["accelerators"]["bitvert-moderate"]
    assert bv["speedup_vs_stripes"] == pytest.approx(st["cycles"] / bv["cycles"])
    assert set(s["configs"]) == set(DEFAULT_ACCELERATORS)
    assert s["configs"]["bitvert-moderate"]["variant_preset"] == "moderate"
    assert s["configs"]["bitvert-moderate"]["design"] == "bitvert"
    assert bv["per_workload"]["llama"]["variant"] == "moderate"
    assert s["accelerators"]["bitwave"]["per_workload"]["llama"]["variant"] == "bitwave-w5"
    assert st["per_workload"]["llama"]["variant"] == "int8"
    assert s["workloads"]["llama"]["synthetic_weights"] is True
    json.dumps(s)  # serialisable


def test_layer_rows_one_per_accelerator_and_layer(tiny_report):
    wl, rep = tiny_report
    rows = rep.to_rows()
    assert len(rows) == len(DEFAULT_ACCELERATORS) * len(wl.layers)
    for r in rows:
        assert set(r) == set(LAYER_COLUMNS)
        assert r["cycles"] == max(r["compute_cycles"], r["dram_cycles"])
        assert r["compute_cycles"] > 0 and r["synthetic_weights"] is True
        assert 0 < r["utilisation"] <= 1


def test_references_run_implicitly():
    wl = workload(linear("fc", np.ones((32, 32), dtype=np.int16), tokens=4))
    rep = simulate(wl, ["pragmatic"])
    s = rep.to_json()
    assert list(s["accelerators"]) == ["pragmatic"]
    assert set(s["references_run_implicitly"]) == {"stripes", "sparten"}
    assert all(r["accelerator"] == "pragmatic" for r in rep.to_rows())


def test_multiple_workloads_use_geomean():
    w1 = workload(linear("fc", np.ones((32, 32), dtype=np.int16), tokens=4), name="a")
    w2 = workload(conv("c", np.ones((32, 32, 3, 3), dtype=np.int16), (4, 4)), name="b")
    s = simulate([w1, w2], ["stripes", "bit-parallel"]).to_json()
    per = s["accelerators"]["bit-parallel"]["per_workload"]
    g = (per["a"]["speedup_vs_stripes"] * per["b"]["speedup_vs_stripes"]) ** 0.5
    assert s["accelerators"]["bit-parallel"]["speedup_vs_stripes"] == pytest.approx(g)
    assert s["accelerators"]["bit-parallel"]["cycles"] == pytest.approx(per["a"]["cycles"] + per["b"]["cycles"])


def test_simulate_input_errors():
    with pytest.raises(InputError):
        simulate([], "all")
    with pytest.raises(InputError, match="unique"):
        wl = workload(linear("fc", np.ones((4, 4), dtype=np.int16)))
        simulate([wl, wl], ["stripes"])


def test_report_write_and_cli(tmp_path):
    cfg = tmp_path / "llama.yaml"
    cfg.write_text("\n".join(f"{k}: {v}" for k, v in TINY_LLAMA.items()) + "\n")
    out = tmp_path / "out"
    res = CliRunner().invoke(main, ["-q", "simulate", "--llama-config", str(cfg), "--accelerators", "all",
                                    "--out", str(out)])
    assert res.exit_code == 0, res.output
    assert "synthetic weights" in res.output
    for f in ("layers.csv", "summary.json", "speedup.png", "energy.png"):
        assert (out / f).is_file()
    s = json.loads((out / "summary.json").read_text())
    assert s["synthetic_weights"] is True and "bitvert-conservative" in s["accelerators"]
    with (out / "layers.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 9 * 8 and rows[0]["synthetic_weights"] == "True"


def test_cli_errors(tmp_path):
    r = CliRunner().invoke(main, ["simulate", "--out", str(tmp_path)])
    assert r.exit_code == 2 and "--workload" in r.output
    r = CliRunner().invoke(main, ["simulate", "--workload", "alexnet", "--out", str(tmp_path)])
    assert r.exit_code == 2 and "unknown workload" in r.output
    r = CliRunner().invoke(main, ["simulate", "--workload", "resnet34", "--accelerators", "tpu", "--out",
                                  str(tmp_path)])
    assert r.exit_code == 2 and "unknown accelerator 'tpu'" in r.output


def test_summary_is_deterministic():
    w = build_workload("llama", llama=TINY_LLAMA, seed=1)
    a = json.dumps(simulate(w, "bitvert-moderate,bitwave,sparten").to_json())
    b = json.dumps(simulate(build_workload("llama", llama=TINY_LLAMA, seed=1), "bitvert-moderate,bitwave,sparten").to_json())
    assert a == b
