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


# ------------------------------------------------------------- compute / DRAM bound ---------
def _ones(shape):
    return np.ones(shape, dtype=np.int16)


def test_bound_fields_and_sentence_golden():
    from bitvert.hardware.simulate import bound_sentence

    # Stripes (16x16 PEs, 16 lanes, 8 weight bits, 128 DRAM bits / cycle), by hand:
    # conv 64->64 3x3 on 16x16 out: 9*4 slices x 4 row tiles x 16 spatial = 2304 tiles x 8 = 18432 compute cycles;
    #   DRAM (294912 weight + 131072 input bits; output stays on chip) / 128 = 3328 -> compute-bound.
    # fc 64x64, 1 token: 4 x 4 tiles x 8 = 128 compute cycles; DRAM (32768 + 512 + 512) / 128 = 264 -> DRAM-bound.
    wl = workload(conv("c", _ones((64, 64, 3, 3)), (16, 16)), linear("fc", _ones((64, 64)), tokens=1))
    st = simulate(wl, ["stripes"]).to_json()["accelerators"]["stripes"]
    assert (st["compute_cycles"], st["dram_cycles"], st["cycles"]) == (18560.0, 3592.0, 18696.0)
    assert (st["compute_bound_cycles"], st["dram_bound_cycles"], st["bound"]) == (18432.0, 264.0, "compute")
    assert st["per_workload"]["tiny"]["dram_cycles"] == 3592.0
    assert bound_sentence("stripes", st) == ("stripes: compute-bound (compute 18,560 cycles > DRAM 3,592; "
                                             "compute-bound layers hold 99 % of the 18,696 latency cycles)")
    fc = simulate(workload(linear("fc", _ones((64, 64)), tokens=1)), ["stripes"]).to_json()["accelerators"]["stripes"]
    assert (fc["compute_cycles"], fc["dram_cycles"], fc["bound"]) == (128.0, 264.0, "dram")
    assert bound_sentence("stripes", fc) == ("stripes: DRAM-bound (compute 128 cycles < DRAM 264; "
                                             "DRAM-bound layers hold 100 % of the 264 latency cycles)")


def test_bound_cycles_partition_the_latency(tiny_report):
    _, rep = tiny_report
    for acc in rep.to_json()["accelerators"].values():
        assert acc["compute_bound_cycles"] + acc["dram_bound_cycles"] == pytest.approx(acc["cycles"])
        assert acc["cycles"] >= max(acc["compute_cycles"], acc["dram_cycles"]) - 1e-6
        assert acc["bound"] in ("compute", "dram")


def test_cli_table_shows_compute_and_dram_side_by_side(tmp_path):
    r = CliRunner().invoke(main, ["simulate", "--llama-config", str(_llama_yaml(tmp_path)), "--accelerators",
                                  "stripes,bitvert-moderate", "--out", str(tmp_path / "o"), "--no-plots"])
    assert r.exit_code == 0, r.output
    header = next(line for line in r.output.splitlines() if line.startswith("accelerator"))
    assert header.split()[:8] == ["accelerator", "variant", "compute", "cycles", "DRAM", "cycles", "latency", "cycles"]
    assert "{" not in r.output  # a table and sentences, not a JSON dict
    assert any(line.startswith("bitvert-moderate: ") and "-bound (compute " in line for line in r.output.splitlines())


def _llama_yaml(tmp_path):
    path = tmp_path / "llama.yaml"
    path.write_text(json.dumps(TINY_LLAMA))
    return path


def test_cli_seq_len_and_batch_are_validated(tmp_path):
    out = str(tmp_path / "o")
    r = CliRunner().invoke(main, ["simulate", "--model", "mnist-cnn", "--seq-len", "0", "--out", out])
    assert r.exit_code == 2 and "--seq-len must be >= 1" in r.output
    r = CliRunner().invoke(main, ["simulate", "--model", "mnist-cnn", "--batch", "0", "--out", out])
    assert r.exit_code == 2 and "--batch must be >= 1" in r.output
    r = CliRunner().invoke(main, ["simulate", "--workload", "resnet50", "--seq-len", "64", "--out", out])
    assert r.exit_code == 2 and "--seq-len sets the input of --model" in r.output
