"""Simulation targets: a label, a hardware config and the variant (pipeline preset) it runs.

Accelerator YAMLs describe hardware only. What the hardware runs is a *variant* of the model,
named by a pipeline preset (:mod:`bitvert.pipeline.presets`):

* the dense designs (Stripes, bit-parallel, Pragmatic, Bitlet, ANT, SparTen) run ``int8``;
* BitVert runs a BBS preset (``moderate``, ``conservative``, ``llm-moderate``...);
* BitWave runs a bit-flip preset (``bitwave-w5``, ``bitwave-moderate``...).

Names :func:`resolve_targets` accepts (comma list or list):

* ``all`` -- :data:`DEFAULT_TARGETS`, the paper's line-up;
* a label of :data:`NAMED_TARGETS` (``bitvert-moderate``, ``bitvert-conservative``, ``bitwave``);
* a shipped hardware preset or a YAML path: dense designs run ``int8``;
* ``HARDWARE:PRESET`` -- any hardware with any preset it can run, e.g. ``bitvert:llm-moderate``
  (label ``bitvert-llm-moderate``) or ``my_bitvert.yaml:moderate``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

from bitvert.errors import ConfigError
from bitvert.hardware.config import load_accelerator
from bitvert.pruning.methods import HARDWARE_DESIGNS, REGISTRY, methods_for_hardware

__all__ = [
    "SimTarget",
    "DENSE_PRESET",
    "DEFAULT_TARGETS",
    "NAMED_TARGETS",
    "PAPER_BITWAVE_PRESETS",
    "PAPER_BITWAVE_DEFAULT",
    "resolve_targets",
    "target_for",
    "can_run",
    "runs_method",
    "native",
    "native_method",
    "resolve_hardware",
    "accelerator_catalog",
]

DENSE_PRESET = "int8"
"""The variant the dense designs run."""

PAPER_BITWAVE_PRESETS: Mapping[str, str] = MappingProxyType({
    "vit-small": "bitwave-w6",
    "bert-mrpc": "bitwave-w6",
    "resnet34": "bitwave-w6",
})
"""The paper's BitWave setting per workload (w_prec 6 on these, :data:`PAPER_BITWAVE_DEFAULT` elsewhere)."""

PAPER_BITWAVE_DEFAULT = "bitwave-w5"
"""BitWave preset of the paper workloads not in :data:`PAPER_BITWAVE_PRESETS`."""

DEFAULT_TARGETS: tuple[str, ...] = (
    "bitvert-moderate",
    "bitvert-conservative",
    "stripes",
    "pragmatic",
    "bitlet",
    "bitwave",
    "ant",
    "sparten",
    "bit-parallel",
)
"""The labels ``all`` resolves to, in report order."""


@dataclass(frozen=True)
class SimTarget:
    """One simulated accelerator: a report label, its hardware and the variant it runs.

    Attributes:
        label: the name in reports (``summary.json`` ``accelerators`` keys, ``layers.csv``).
        config: the hardware config (:mod:`bitvert.hardware.config`).
        preset: the pipeline preset of the variant it runs.
        preset_by_workload: per-workload presets overriding ``preset`` (the paper's BitWave table).
    """

    label: str
    config: Any
    preset: str
    preset_by_workload: Mapping[str, str] = field(default_factory=dict)

    @property
    def design(self) -> str:
        return str(self.config.design)

    def preset_for(self, workload: str) -> str:
        """The preset this target runs on workload ``workload``."""
        return str(self.preset_by_workload.get(workload, self.preset))

    def describe(self) -> dict[str, Any]:
        """The config dump plus the target's label and variant presets (``summary.json`` ``configs``)."""
        return {**self.config.model_dump(), "label": self.label, "variant_preset": self.preset,
                "variant_preset_by_workload": dict(self.preset_by_workload)}


NAMED_TARGETS: Mapping[str, tuple[str, str, Mapping[str, str]]] = MappingProxyType({
    "bitvert-moderate": ("bitvert", "moderate", {}),
    "bitvert-conservative": ("bitvert", "conservative", {}),
    "bitwave": ("bitwave", PAPER_BITWAVE_DEFAULT, PAPER_BITWAVE_PRESETS),
})
"""Labels that name a hardware preset and a variant together: label -> (hardware, preset, per workload)."""


def _method(preset: str) -> str:
    from bitvert.pipeline.presets import get_preset

    return str(get_preset(preset).method)


def runs_method(design: str, method: str) -> bool:
    """Whether hardware of ``design`` runs variants pruned by preset method ``method``.

    BitVert and BitWave run the registered pruning methods that name them as their hardware
    (:attr:`bitvert.pruning.methods.MethodSpec.hardware`: rounded averaging and zero-point shifting
    on BitVert, the bit flip on BitWave); the dense designs run every variant's integers except
    fewer-bit RTN ones (they live on another scale than INT8 hardware runs).
    """
    if design in HARDWARE_DESIGNS:
        return method in REGISTRY and REGISTRY[method].hardware == design
    return method != "rtn"


def can_run(design: str, preset: str) -> bool:
    """Whether hardware of ``design`` can run the variant of pipeline preset ``preset`` (:func:`runs_method`)."""
    return runs_method(design, _method(preset))


def native(design: str, preset: str) -> bool:
    """Whether ``preset`` is the kind of variant ``design`` is built for (its registered methods for
    BitVert and BitWave, INT8 for the dense designs)."""
    return native_method(design, _method(preset))


def native_method(design: str, method: str) -> bool:
    """Whether variants of preset method ``method`` are what ``design`` is built for (:func:`native` of a
    resolved preset, e.g. one with overrides)."""
    if design in HARDWARE_DESIGNS:
        return runs_method(design, method)
    return method == "none"


def _needs(design: str) -> str:
    """What a design runs, for error messages."""
    if design in HARDWARE_DESIGNS:
        return f"a preset whose method is one of {methods_for_hardware(design)}"
    return "any non-RTN preset"


def target_for(config: Any, preset: str | None = None, label: str | None = None,
               method: str | None = None) -> SimTarget:
    """A :class:`SimTarget` for a hardware config and the preset it runs (validated).

    ``preset`` defaults to ``int8`` for the dense designs; BitVert and BitWave need one. The
    label defaults to the config's name, or ``<name>-<preset>`` when a non-default preset is
    given (the preset alone when it already starts with ``<name>-``).

    ``method`` is the variant's preset method when it is not the named preset's (a preset with
    overrides, e.g. ``moderate`` with ``method=rounded_avg``); ``None``: the named preset's.

    Raises:
        ConfigError: no preset for BitVert / BitWave, an unknown preset, or one the design
            cannot run.
    """
    design = str(config.design)
    if preset is None:
        if design in HARDWARE_DESIGNS:
            example = "moderate" if design == "bitvert" else "bitwave-w5"
            raise ConfigError(
                f"accelerator {config.name!r} ({design}) runs a pruned variant: name its pipeline preset, e.g. "
                f"'{config.name}:{example}' (or 'bitvert-moderate', 'bitvert-conservative', 'bitwave')"
            )
        preset = DENSE_PRESET
    if not (runs_method(design, method) if method is not None else can_run(design, preset)):
        raise ConfigError(f"accelerator {config.name!r} ({design}) cannot run preset {preset!r}; it needs "
                          f"{_needs(design)}")
    if label is None:
        if preset == DENSE_PRESET and design not in HARDWARE_DESIGNS:
            label = str(config.name)
        elif preset.startswith(f"{config.name}-"):
            label = preset
        else:
            label = f"{config.name}-{preset}"
    return SimTarget(label=label, config=config, preset=preset)


def _one(item: str) -> SimTarget:
    item = item.strip()
    if item in NAMED_TARGETS:
        hw, preset, table = NAMED_TARGETS[item]
        t = target_for(load_accelerator(hw), preset, label=item)
        return SimTarget(t.label, t.config, t.preset, dict(table))
    hw, sep, preset = item.rpartition(":")
    if not sep:
        hw, preset = item, ""
    return target_for(load_accelerator(hw), preset or None)


def resolve_hardware(items: str | list[Any] | tuple[Any, ...]) -> list[Any]:
    """The hardware configs named by accelerator items, one per config name, in order.

    Accepts everything :func:`resolve_targets` does and also a bare BitVert / BitWave hardware preset or
    YAML path (``bitvert``, ``my_bitvert.yaml``): a study pairs each hardware with every variant it is
    built for, so the preset of a target only selects its hardware.

    Raises:
        ConfigError: nothing given, an unknown accelerator or preset.
    """
    if isinstance(items, str):
        items = [s.strip() for s in items.split(",") if s.strip()]
    configs: dict[str, Any] = {}
    for item in items:
        if isinstance(item, (str, Path)) and str(item) != "all" and str(item) not in NAMED_TARGETS \
                and ":" not in str(item):
            cfg = load_accelerator(str(item).strip())
            configs.setdefault(str(cfg.name), cfg)
        else:
            for t in resolve_targets([item]):
                configs.setdefault(str(t.config.name), t.config)
    if not configs:
        raise ConfigError("no accelerator given; pass 'all' or names such as 'stripes,bitvert-moderate'")
    return list(configs.values())


def resolve_targets(spec: str | list[Any] | tuple[Any, ...]) -> list[SimTarget]:
    """``"all"``, a comma list or a list of names / ``HW:PRESET`` / YAML paths / targets -> targets.

    Raises:
        ConfigError: nothing given, an unknown accelerator or preset, or a label twice.
    """
    items: list[Any]
    if isinstance(spec, str):
        items = list(DEFAULT_TARGETS) if spec.strip() == "all" else [s.strip() for s in spec.split(",") if s.strip()]
    else:
        items = []
        for item in spec:
            items.extend(DEFAULT_TARGETS if item == "all" else [item])
    if not items:
        raise ConfigError("no accelerator given; pass 'all' or names such as 'stripes,bitvert-moderate'")
    targets = []
    for item in items:
        if isinstance(item, SimTarget):
            targets.append(item)
        elif isinstance(item, (str, Path)):
            targets.append(_one(str(item)))
        else:
            targets.append(target_for(item))
    seen: set[str] = set()
    for t in targets:
        if t.label in seen:
            raise ConfigError(f"accelerator name {t.label!r} appears twice")
        seen.add(t.label)
    return targets


def accelerator_catalog() -> list[dict[str, Any]]:
    """What ``--accelerators all`` simulates, one row per target in report order.

    Each row: ``label``, ``hardware`` (the shipped YAML preset), ``design``, ``variant`` (the pipeline preset
    it runs; per-workload exceptions after it), ``pes`` (``rows x cols``), ``lanes_per_pe``, ``freq_mhz``
    and ``runs`` (which presets the hardware accepts with ``HARDWARE:PRESET``).
    """
    rows = []
    for t in resolve_targets("all"):
        variant = t.preset
        if t.preset_by_workload:
            variant += " (" + ", ".join(f"{w}: {p}" for w, p in sorted(t.preset_by_workload.items())) + ")"
        design = t.design
        runs = ("presets of method " + ", ".join(methods_for_hardware(design))) if design in HARDWARE_DESIGNS \
            else DENSE_PRESET
        rows.append({"label": t.label, "hardware": str(t.config.name), "design": design, "variant": variant,
                     "pes": f"{t.config.array_rows} x {t.config.array_cols}", "lanes_per_pe": t.config.lanes_per_pe,
                     "freq_mhz": t.config.freq_mhz, "runs": runs})
    return rows
