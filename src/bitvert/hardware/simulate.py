"""Run accelerators on workloads: per-layer cycles, traffic, energy; totals and paper-style ratios.

``simulate(workload, accelerators)`` returns a :class:`Report`:

* ``report.to_rows()`` -- one dict per (workload, accelerator, layer) (``layers.csv``);
* ``report.to_json()`` -- the ``summary.json`` document (shape documented in
  docs/simulator.md and pinned by tests): a top-level ``accelerators`` object
  keyed by accelerator name, each with ``cycles``, ``energy_pj``,
  ``speedup_vs_stripes`` and ``energy_vs_sparten`` (geomeans over workloads when
  there are several), plus ``workloads``, ``configs`` and provenance.

Each accelerator is a simulation target (:mod:`bitvert.hardware.targets`): hardware plus the
variant of the model it runs (dense designs: ``int8``; BitVert: a BBS preset; BitWave: a
bit-flip preset), whose weights and encodings come from a variant source
(:mod:`bitvert.hardware.variants`).

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
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from bitvert import __version__
from bitvert.errors import InputError
from bitvert.hardware import accelerators as _accelerators  # noqa: F401 - registers the designs
from bitvert.hardware.accelerators.base import model_for
from bitvert.hardware.config import load_accelerator
from bitvert.hardware.targets import DENSE_PRESET, SimTarget, resolve_targets, target_for
from bitvert.hardware.variants import PipelineVariants, VariantSource
from bitvert.hardware.energy import ENERGY_COMPONENTS, area_mm2, layer_energy, load_energy_table
from bitvert.hardware.memory import layer_traffic
from bitvert.hardware.workload import Workload

__all__ = ["Report", "simulate", "bound_sentence", "SUMMARY_SCHEMA", "LAYER_COLUMNS"]

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


def _bound(compute_bound_cycles: float, dram_bound_cycles: float) -> str:
    """``"compute"`` when compute-bound layers set at least half the latency, else ``"dram"``."""
    return "compute" if compute_bound_cycles >= dram_bound_cycles else "dram"


def _mega(cycles: float) -> str:
    return f"{cycles / 1e6:.3g} M" if cycles >= 1e5 else f"{cycles:,.0f}"


def bound_sentence(label: str, totals: dict[str, Any]) -> str:
    """Which bound sets an accelerator's latency, in one sentence.

    ``totals`` is an accelerator entry of ``summary.json`` (or one of its ``per_workload`` totals):
    it needs ``cycles``, ``compute_cycles``, ``dram_cycles``, ``compute_bound_cycles``,
    ``dram_bound_cycles`` and ``bound``. Layer latency is ``max(compute, DRAM)``, so the bound is the
    one whose layers hold most of the latency; e.g. ``"bitvert-moderate: compute-bound (compute
    1.2 M cycles > DRAM 0.4 M; compute-bound layers hold 100 % of the 1.2 M latency cycles)"``.
    """
    compute, dram, total = (float(totals[k]) for k in ("compute_cycles", "dram_cycles", "cycles"))
    bound = totals["bound"]
    share = float(totals[f"{bound}_bound_cycles"]) / total if total > 0 else 0.0
    sign = ">" if compute > dram else "<" if compute < dram else "="
    what = "compute-bound" if bound == "compute" else "DRAM-bound"
    return (f"{label}: {what} (compute {_mega(compute)} cycles {sign} DRAM {_mega(dram)}; {what} layers hold "
            f"{100 * share:.0f} % of the {_mega(total)} latency cycles)")


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
                "dram_cycles": sum(t["dram_cycles"] for t in per_wl.values()),
                "compute_bound_cycles": sum(t["compute_bound_cycles"] for t in per_wl.values()),
                "dram_bound_cycles": sum(t["dram_bound_cycles"] for t in per_wl.values()),
                "bound": _bound(sum(t["compute_bound_cycles"] for t in per_wl.values()),
                                sum(t["dram_bound_cycles"] for t in per_wl.values())),
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


def _as_targets(accelerators: Any) -> list[SimTarget]:
    targets = resolve_targets(accelerators)
    if not targets:
        raise InputError("accelerators is empty; pass 'all' or a list of names/configs")
    return targets


def _run_one(workload: Workload, target: SimTarget, table: Any) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    config = target.config
    model = model_for(config)
    model.prepare(workload)
    design = table.design(config.energy_key)
    dram_pj = float(table.dram.energy_pj_per_bit.value)
    rows: list[dict[str, Any]] = []
    prev_resident = False
    n = len(workload.layers)
    tot: dict[str, float] = {k: 0.0 for k in ("cycles", "compute_cycles", "dram_cycles", "cycles_fluid", "macs",
                                              "compute_bound_cycles", "dram_bound_cycles")}
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
            "accelerator": target.label,
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
        tot["compute_bound_cycles" if comp.compute_cycles >= traffic.dram_cycles else "dram_bound_cycles"] += cycles
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
        "compute_bound_cycles": tot["compute_bound_cycles"],
        "dram_bound_cycles": tot["dram_bound_cycles"],
        "bound": _bound(tot["compute_bound_cycles"], tot["dram_bound_cycles"]),
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


def _workloads(workload: Workload | Iterable[Workload]) -> Iterator[Workload]:
    if isinstance(workload, Workload):
        yield workload
        return
    n = 0
    for w in workload:
        if not isinstance(w, Workload):
            raise InputError(f"workload must be a Workload or an iterable of Workloads, got {type(w).__name__}")
        n += 1
        yield w
    if not n:
        raise InputError("workload must be a Workload or a non-empty list of Workloads")


def simulate(
    workload: Workload | Iterable[Workload],
    accelerators: Any = "all",
    energy_table: str = "energy_28nm_v1",
    variants: VariantSource | None = None,
    references: Sequence[SimTarget] | None = None,
    progress: bool = False,
) -> Report:
    """Simulate one or several workloads on accelerators, each running its own variant of the model.

    Workloads are processed one at a time (an iterable may build each one lazily) and, within a
    workload, one variant at a time: the variant's workload is built from ``variants``, run on
    every target that runs it, then dropped -- so memory holds one workload and one variant.

    Args:
        workload: a geometry :class:`~bitvert.hardware.workload.Workload` or several (any iterable).
        accelerators: ``"all"``, a comma list, or a list of names, ``HW:PRESET`` strings, YAML paths,
            configs or :class:`~bitvert.hardware.targets.SimTarget` s (:func:`resolve_targets`).
        energy_table: name of the shipped energy/area table.
        variants: where each target's variant comes from (default
            :class:`~bitvert.hardware.variants.PipelineVariants`: the pipeline's Algorithm 2 on the
            geometry's integers).
        references: the Stripes / SparTen targets run for the ratios when not requested
            (default: both on ``int8``).
        progress: a progress bar per workload over its accelerator runs (stderr); the INFO log names
            every run either way.

    Returns:
        A :class:`Report`.
    """
    t0 = time.perf_counter()
    targets = _as_targets(accelerators)
    source: VariantSource = variants if variants is not None else PipelineVariants()
    table = load_energy_table(energy_table)
    requested = [t.label for t in targets]
    refs = {t.config.name: t for t in (references or [])}
    ref_labels: dict[str, str] = {}
    run_targets = list(targets)
    implicit: dict[str, str] = {}
    for ref in (SPEEDUP_REFERENCE, ENERGY_REFERENCE):
        mine = next((t for t in targets if t.design == ref and t.preset == DENSE_PRESET), None)
        if mine is None:
            mine = next((t for t in targets if t.design == ref), None)
        if mine is None:
            mine = refs.get(ref) or target_for(load_accelerator(ref))
            if mine.label in requested:
                mine = SimTarget(f"{mine.label}-reference", mine.config, mine.preset, mine.preset_by_workload)
            run_targets.append(mine)
            implicit[mine.label] = f"run implicitly as the ratio reference (variant {mine.preset})"
        ref_labels[ref] = mine.label
    rows: list[dict[str, Any]] = []
    totals: dict[str, dict[str, dict[str, Any]]] = {}
    described: dict[str, dict[str, Any]] = {}
    for wl in _workloads(workload):
        if wl.name in totals:
            raise InputError(f"workload names must be unique; {wl.name!r} appears twice")
        totals[wl.name] = {}
        by_preset: dict[str, list[SimTarget]] = {}
        for t in run_targets:
            by_preset.setdefault(t.preset_for(wl.name), []).append(t)
        variant_notes: dict[str, Any] = {}
        bar = tqdm(total=len(run_targets), desc=f"simulate {wl.name}", unit="design", leave=False,
                   disable=not progress)
        for preset, group in by_preset.items():
            log.info("building variant %s of %s", preset, wl.name)
            vw = source.workload(wl, preset)
            if vw.notes.get("dropped_fp32_layers"):
                variant_notes[preset] = {"dropped_fp32_layers": vw.notes["dropped_fp32_layers"]}
            for t in group:
                log.info("simulating %s on %s (%s)", wl.name, t.label, preset)
                r, tot = _run_one(vw, t, table)
                bar.update(1)
                tot["variant"] = preset
                if t.label in requested:
                    rows.extend(r)
                totals[wl.name][t.label] = tot
            del vw
        bar.close()
        ref_cycles = totals[wl.name][ref_labels[SPEEDUP_REFERENCE]]["cycles"]
        ref_energy = totals[wl.name][ref_labels[ENERGY_REFERENCE]]["energy_pj"]
        for tot in totals[wl.name].values():
            tot["speedup_vs_stripes"] = ref_cycles / tot["cycles"]
            tot["energy_vs_sparten"] = tot["energy_pj"] / ref_energy
        totals[wl.name] = {k: v for k, v in totals[wl.name].items() if k in requested}
        described[wl.name] = wl.describe()
        if variant_notes:
            described[wl.name]["variants"] = variant_notes
        del wl  # free this workload before the iterable builds the next one
    return Report(
        rows=rows,
        totals=totals,
        workloads=described,
        configs={t.label: t.describe() for t in targets},
        accelerators=requested,
        energy_table={"name": energy_table, "version": table.version, "technology": table.technology},
        elapsed_s=time.perf_counter() - t0,
        references=implicit,
    )
