"""Energy and area tables (versioned YAML, every entry with its ``source``) and the energy model.

Table: ``bitvert/data/hardware/energy_28nm_v1.yaml``. Each design entry gives
per-component energies; the model turns a layer's activity counts into
energy per component:

* ``pe``: every PE is charged every compute cycle (``pe_energy_pj_per_pe_cycle``
  x PEs x compute cycles), as in the published model; SparTen is charged per
  effectual MAC plus its local-buffer reads;
* ``scheduler``: weight registers / schedulers per row per cycle plus the
  input registers per column per tile;
* ``sram_read``: the bits actually read (compressed weights included)
  times the per-bit cost of one full-width access of that design's bank
  organisation (``read_energy_pj_per_access / access_width_bits``);
* ``sram_write``: the bits actually written (compressed, metadata included)
  at the 64-bit partial-write cost;
* ``dram``: bits moved times ``energy_pj_per_bit``.

Area: PEs x ``pe_area_um2`` plus the SRAM macro areas (``None`` where no
published number exists).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from bitvert.errors import ConfigError, validation_message
from bitvert.hardware.config import load_yaml

__all__ = ["EnergyTable", "DesignEnergy", "Entry", "load_energy_table", "EnergyBreakdown", "ENERGY_COMPONENTS"]

ENERGY_COMPONENTS: tuple[str, ...] = ("pe", "scheduler", "sram_read", "sram_write", "dram")


class Entry(BaseModel):
    """One number and where it comes from."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    value: float | None
    source: str = Field(..., min_length=3)


class SramEntry(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    read_energy_pj_per_access: Entry
    access_width_bits: Entry
    write_energy_pj_per_64b: Entry
    area_mm2: Entry

    @property
    def read_pj_per_bit(self) -> float:
        return float(self.read_energy_pj_per_access.value or 0.0) / float(self.access_width_bits.value or 1.0)

    @property
    def write_pj_per_bit(self) -> float:
        return float(self.write_energy_pj_per_64b.value or 0.0) / 64.0


class DesignEnergy(BaseModel):
    """Energy/area entries of one design."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    pe_energy_pj_per_pe_cycle: Entry | None = None
    pe_energy_pj_per_effectual_mac: Entry | None = None
    scheduler_energy_pj_per_row_cycle: Entry | None = None
    input_register_energy_pj_per_column_tile: Entry | None = None
    local_buffer_read_energy_pj_per_mac: Entry | None = None
    local_buffer_write_energy_pj_per_bit: Entry | None = None
    local_buffer_area_mm2: Entry | None = None
    pe_area_um2: Entry
    weight_sram: SramEntry
    input_sram: SramEntry

    def value(self, key: str) -> float:
        entry = getattr(self, key)
        return 0.0 if entry is None or entry.value is None else float(entry.value)


class DramEntry(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    energy_pj_per_bit: Entry


class EnergyTable(BaseModel):
    """A versioned energy/area reference table."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    version: int = Field(..., ge=1)
    technology: str
    freq_mhz: Entry
    dram: DramEntry
    designs: dict[str, DesignEnergy]

    def design(self, key: str) -> DesignEnergy:
        if key not in self.designs:
            raise ConfigError(
                f"key 'energy_key': {key!r} is not in the energy table; choose one of {sorted(self.designs)}"
            )
        return self.designs[key]


@lru_cache(maxsize=4)
def load_energy_table(name: str = "energy_28nm_v1") -> EnergyTable:
    """Load a shipped energy table by name (validated; duplicate keys rejected)."""
    entry = resources.files("bitvert") / "data" / "hardware" / f"{name}.yaml"
    if not entry.is_file():
        raise ConfigError(f"unknown energy table {name!r}; the shipped table is 'energy_28nm_v1'")
    data = load_yaml(entry.read_text(encoding="utf-8"), f"energy table {name}")
    try:
        return EnergyTable.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(f"energy table {name}: {validation_message(exc)}") from None


@dataclass(frozen=True)
class EnergyBreakdown:
    """Energy of one layer on one accelerator, in pJ per component."""

    pe: float
    scheduler: float
    sram_read: float
    sram_write: float
    dram: float

    @property
    def total(self) -> float:
        return self.pe + self.scheduler + self.sram_read + self.sram_write + self.dram

    @property
    def on_chip(self) -> float:
        return self.pe + self.scheduler + self.sram_read + self.sram_write

    def as_dict(self) -> dict[str, float]:
        return {f"energy_{k}_pj": float(getattr(self, k)) for k in ENERGY_COMPONENTS} | {
            "energy_total_pj": float(self.total)
        }


def area_mm2(design: DesignEnergy, n_pes: int) -> dict[str, Any]:
    """PE-array and buffer areas in mm² (``None`` where unpublished)."""
    pe = design.pe_area_um2.value
    pe_mm2 = None if pe is None else pe * n_pes / 1e6
    sram = float(design.weight_sram.area_mm2.value or 0.0) + float(design.input_sram.area_mm2.value or 0.0)
    sram += design.value("local_buffer_area_mm2")
    return {
        "area_pe_array_mm2": pe_mm2,
        "area_sram_mm2": sram,
        "area_total_mm2": None if pe_mm2 is None else pe_mm2 + sram,
    }


def layer_energy(
    design: DesignEnergy,
    config: Any,
    compute: Any,
    traffic: Any,
    dram_pj_per_bit: float,
) -> EnergyBreakdown:
    """Energy of one layer (pJ per component) from its activity counts.

    Args:
        design: the accelerator's energy entries.
        config: the accelerator config (array size).
        compute: its :class:`~bitvert.hardware.accelerators.base.ComputeResult`.
        traffic: its :class:`~bitvert.hardware.memory.LayerTraffic`.
        dram_pj_per_bit: DRAM energy per bit.
    """
    cycles = float(compute.compute_cycles)
    tiles = float(compute.mapping.tiles)
    sram_read = (
        traffic.sram_read_weight_bits * design.weight_sram.read_pj_per_bit
        + traffic.sram_read_input_bits * design.input_sram.read_pj_per_bit
    )
    sram_write = (
        traffic.weight_dram_bits * design.weight_sram.write_pj_per_bit
        + (traffic.input_dram_bits + traffic.output_footprint_bits) * design.input_sram.write_pj_per_bit
    )
    if design.pe_energy_pj_per_effectual_mac is not None:
        pe = float(compute.effectual_macs) * design.value("pe_energy_pj_per_effectual_mac")
        sram_read += float(compute.effectual_macs) * design.value("local_buffer_read_energy_pj_per_mac")
        sram_write += (traffic.sram_read_weight_bits + traffic.sram_read_input_bits) * design.value(
            "local_buffer_write_energy_pj_per_bit"
        )
    else:
        pe = design.value("pe_energy_pj_per_pe_cycle") * config.n_pes * cycles
    scheduler = (
        design.value("scheduler_energy_pj_per_row_cycle") * config.array_rows * cycles
        + design.value("input_register_energy_pj_per_column_tile") * config.array_cols * tiles
    )
    dram = traffic.dram_bits * dram_pj_per_bit
    return EnergyBreakdown(pe=pe, scheduler=scheduler, sram_read=sram_read, sram_write=sram_write, dram=dram)
