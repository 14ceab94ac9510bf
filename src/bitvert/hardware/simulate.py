"""Run accelerators on workloads: per-layer cycles, traffic, energy; totals and paper-style ratios.

``simulate(workload, accelerators)`` returns a :class:`Report`:

* ``report.to_rows()`` -- one dict per (workload, accelerator, layer) (``layers.csv``);
* ``report.to_json()`` -- the ``summary.json`` document (shape documented in
  docs/simulator.md and pinned by tests): a top-level ``accelerators`` object
  keyed by accelerator name, each with ``cycles``, ``energy_pj``,
  ``speedup_vs_stripes`` and ``energy_vs_sparten`` (geomeans over workloads when
  there are several), plus ``workloads``, ``configs`` and provenance.

Layer latency = ``max(compute cycles, DRAM cycles)`` (perfect overlap inside a
layer, none across layers). Speedups are relative to Stripes and energies to
SparTen; when either reference is not among the requested accelerators it is
run anyway and reported under ``references``.
"""

from __future__ import annotations

import csv
import json
import logging
import math
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bitvert import __version__
from bitvert.errors import InputError
from bitvert.hardware import accelerators as _accelerators  # noqa: F401 - registers the designs
from bitvert.hardware.accelerators.base import model_for
from bitvert.hardware.config import load_accelerator, resolve_accelerators
from bitvert.hardware.energy import ENERGY_COMPONENTS, area_mm2, layer_energy, load_energy_table
from bitvert.hardware.memory import layer_traffic
from bitvert.hardware.workload import Workload

__all__ = ["Report", "simulate", "SUMMARY_SCHEMA", "LAYER_COLUMNS"]

log = logging.getLogger(__name__)

SUMMARY_SCHEMA = "bitvert.simulate.summary/1"
SPEEDUP_REFERENCE = "stripes"
ENERGY_REFERENCE = "sparten"

LAYER_COLUMNS: tuple[str, ...] = (
    "workload", "accelerator", "layer", "kind", "synthetic_weights", "macs", "tiles", "utilisation",
    "compute_cycles", "dram_cycles", "cycles", "cycles_fluid", "weight_footprint_bits", "weight_dram_bits",
    "input_dram_bits", "output_dram_bits", "dram_bits", "sram_read_weight_bits", "sram_read_input_bits",
    "sram_write_bits", "energy_pe_pj", "energy_scheduler_pj", "energy_sram_read_pj", "energy_sram_write_pj",
    "energy_dram_pj", "energy_total_pj",
)
"""Columns of ``layers.csv`` (units in the names; cycles in clock cycles)."""


def _geomean(values: Sequence[float]) -> float | None:
    vals = [v for v in values if v is not None]
    if not vals or any(v <= 0 for v in vals):
        return None
    return float(math.exp(sum(math.log(v) for v in vals) / len(vals)))


@dataclass
class Report:
    """Results of :func:`simulate`: layer rows and per-(workload, accelerator) totals."""

    rows: list[dict[str, Any]]
    totals: dict[str, dict[str, dict[str, Any]]]  # workload -> accelerator -> totals
    workloads: dict[str, dict[str, Any]]
    configs: dict[str, dict[str, Any]]
    accelerators: list[str]
    energy_table: dict[str, Any]
    elapsed_s: float = 0.0
    references: dict[str, str] = field(default_factory=dict)

    def to_rows(self) -> list[dict[str, Any]]:
        """One dict per (workload, accelerator, layer), keys :data:`LAYER_COLUMNS`."""
        return [{k: r.get(k) for k in LAYER_COLUMNS} for r in self.rows]

    @property
    def synthetic_weights(self) -> bool:
        return any(w["synthetic_weights"] for w in self.workloads.values())

    def to_json(self) -> dict[str, Any]:
        """The ``summary.json`` document (deterministic: no wall-clock times; see :attr:`elapsed_s`)."""
        accs: dict[str, Any] = {}
        for acc in self.accelerators:
            per_wl = {wl: self.totals[wl][acc] for wl in self.totals}
            accs[acc] = {
                "cycles": sum(t["cycles"] for t in per_wl.values()),
                "compute_cycles": sum(t["compute_cycles"] for t in per_wl.values()),
                "energy_pj": sum(t["energy_pj"] for t in per_wl.values()),
                "speedup_vs_stripes": _geomean([t["speedup_vs_stripes"] for t in per_wl.values()]),
                "energy_vs_sparten": _geomean([t["energy_vs_sparten"] for t in per_wl.values()]),
                "aggregation": "sum over workloads; ratios are geometric means over workloads",
                "per_workload": per_wl,
            }
        return {
            "schema": SUMMARY_SCHEMA,
            "bitvert_version": __version__,
            "synthetic_weights": self.synthetic_weights,
            "units": {"cycles": "clock cycles", "energy": "pJ", "latency": "ms at freq_mhz", "area": "mm2"},
            "speedup_reference": SPEEDUP_REFERENCE,
            "energy_reference": ENERGY_REFERENCE,
            "accelerators": accs,
            "workloads": self.workloads,
            "configs": self.configs,
            "energy_table": self.energy_table,
            "references_run_implicitly": self.references,
        }

    def write(self, out_dir: str | Path) -> dict[str, Path]:
        """Write ``layers.csv`` and ``summary.json`` into ``out_dir``; return their paths."""
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        csv_path = out / "layers.csv"
        with csv_path.open("w", newline="", encoding="utf-8") as fh:
            writer = csv.DictWriter(fh, fieldnames=list(LAYER_COLUMNS))
            writer.writeheader()
            writer.writerows(self.to_rows())
        json_path = out / "summary.json"
        json_path.write_text(json.dumps(self.to_json(), indent=2, sort_keys=False) + "\n", encoding="utf-8")
        return {"layers_csv": csv_path, "summary_json": json_path}


def _as_configs(accelerators: Any) -> list[Any]:
    if isinstance(accelerators, str):
        return resolve_accelerators(accelerators)
    configs = []
    for a in accelerators:
        configs.append(load_accelerator(a) if isinstance(a, (str, Path)) else a)
    if not configs:
        raise InputError("accelerators is empty; pass 'all' or a list of names/configs")
    return configs


def _run_one(workload: Workload, config: Any, table: Any) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    model = model_for(config)
    model.prepare(workload)
    design = table.design(config.energy_key)
    dram_pj = float(table.dram.energy_pj_per_bit.value)
    rows: list[dict[str, Any]] = []
    prev_resident = False
    n = len(workload.layers)
    tot: dict[str, float] = {k: 0.0 for k in ("cycles", "compute_cycles", "dram_cycles", "cycles_fluid", "macs")}
    tot.update({f"energy_{k}_pj": 0.0 for k in ENERGY_COMPONENTS})
    tot.update({"capacity": 0.0, "weight_footprint_bits": 0.0, "dram_bits": 0.0})
    for idx, layer in enumerate(workload.layers):
        model.check_mappable(layer)
        comp = model.layer(layer)
        traffic = layer_traffic(layer, comp, config, prev_resident, idx == n - 1)
        prev_resident = traffic.output_resident
        energy = layer_energy(design, config, comp, traffic, dram_pj)
        cycles = max(comp.compute_cycles, traffic.dram_cycles)
        m = comp.mapping
        row = {
            "workload": workload.name,
            "accelerator": config.name,
            "layer": layer.name,
            "kind": layer.kind.value,
            "synthetic_weights": bool(workload.synthetic_weights),
            "macs": layer.macs,
            "tiles": m.tiles,
            "utilisation": m.utilisation,
            "compute_cycles": comp.compute_cycles,
            "dram_cycles": traffic.dram_cycles,
            "cycles": cycles,
            "cycles_fluid": comp.extra.get("cycles_fluid"),
            **traffic.as_dict(),
            **energy.as_dict(),
            "extra": comp.extra,
        }
        rows.append(row)
        tot["cycles"] += cycles
        tot["compute_cycles"] += comp.compute_cycles
        tot["dram_cycles"] += traffic.dram_cycles
        tot["cycles_fluid"] += float(comp.extra.get("cycles_fluid") or 0.0)
        tot["macs"] += layer.macs
        tot["capacity"] += m.tiles * m.rows * m.cols * m.lanes
        tot["weight_footprint_bits"] += traffic.weight_footprint_bits
        tot["dram_bits"] += traffic.dram_bits
        for k in ENERGY_COMPONENTS:
            tot[f"energy_{k}_pj"] += getattr(energy, k)
    energy_pj = sum(tot[f"energy_{k}_pj"] for k in ENERGY_COMPONENTS)
    totals: dict[str, Any] = {
        "cycles": tot["cycles"],
        "compute_cycles": tot["compute_cycles"],
        "dram_cycles": tot["dram_cycles"],
        "latency_ms": tot["cycles"] / (float(config.freq_mhz) * 1e3),
        "utilisation": tot["macs"] / tot["capacity"],
        "energy_pj": energy_pj,
        "energy_by_component_pj": {k: tot[f"energy_{k}_pj"] for k in ENERGY_COMPONENTS},
        "energy_on_chip_pj": energy_pj - tot["energy_dram_pj"],
        "weight_footprint_bits": tot["weight_footprint_bits"],
        "bits_per_weight": tot["weight_footprint_bits"] / workload.n_weights,
        "dram_bits": tot["dram_bits"],
        **area_mm2(design, config.n_pes),
    }
    if config.design == "bitvert":
        totals["cycles_fluid"] = tot["cycles_fluid"]
    return rows, totals


def simulate(
    workload: Workload | Iterable[Workload],
    accelerators: Any = "all",
    energy_table: str = "energy_28nm_v1",
) -> Report:
    """Simulate one or several workloads on accelerators.

    Args:
        workload: a :class:`~bitvert.hardware.workload.Workload` or several.
        accelerators: ``"all"``, a comma list of preset names, or a list of names, YAML paths
            or config objects (:mod:`bitvert.hardware.config`).
        energy_table: name of the shipped energy/area table.

    Returns:
        A :class:`Report`.
    """
    t0 = time.perf_counter()
    workloads = [workload] if isinstance(workload, Workload) else list(workload)
    if not workloads or not all(isinstance(w, Workload) for w in workloads):
        raise InputError("workload must be a Workload or a non-empty list of Workloads")
    names = [w.name for w in workloads]
    if len(set(names)) != len(names):
        raise InputError(f"workload names must be unique, got {names}")
    configs = _as_configs(accelerators)
    table = load_energy_table(energy_table)
    requested = [c.name for c in configs]
    references: dict[str, str] = {}
    run_configs = list(configs)
    for ref in (SPEEDUP_REFERENCE, ENERGY_REFERENCE):
        if ref not in requested:
            run_configs.append(load_accelerator(ref))
            references[ref] = "run implicitly as the ratio reference"
    rows: list[dict[str, Any]] = []
    totals: dict[str, dict[str, dict[str, Any]]] = {}
    for wl in workloads:
        totals[wl.name] = {}
        for cfg in run_configs:
            log.info("simulating %s on %s", wl.name, cfg.name)
            r, t = _run_one(wl, cfg, table)
            if cfg.name in requested:
                rows.extend(r)
            totals[wl.name][cfg.name] = t
        ref_cycles = totals[wl.name][SPEEDUP_REFERENCE]["cycles"]
        ref_energy = totals[wl.name][ENERGY_REFERENCE]["energy_pj"]
        for name, t in totals[wl.name].items():
            t["speedup_vs_stripes"] = ref_cycles / t["cycles"]
            t["energy_vs_sparten"] = t["energy_pj"] / ref_energy
        totals[wl.name] = {k: v for k, v in totals[wl.name].items() if k in requested}
    return Report(
        rows=rows,
        totals=totals,
        workloads={w.name: w.describe() for w in workloads},
        configs={c.name: c.model_dump() for c in configs},
        accelerators=requested,
        energy_table={"name": energy_table, "version": table.version, "technology": table.technology},
        elapsed_s=time.perf_counter() - t0,
        references=references,
    )
