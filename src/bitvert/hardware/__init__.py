"""Accelerator simulation: workloads, BitVert and six baselines, memory, energy and area.

Entry points:

* :func:`bitvert.hardware.workloads_zoo.build_workload` -- the paper's workloads by name;
* :func:`bitvert.hardware.import_torch.import_workload` -- a workload from a PyTorch model;
* :func:`bitvert.hardware.targets.resolve_targets` -- accelerator configs (YAML, hardware only) paired
  with the variant (pipeline preset) each runs;
* :mod:`bitvert.hardware.variants` -- a workload carrying a variant's encoded weights;
* :func:`bitvert.hardware.simulate.simulate` -- run them, get a :class:`~bitvert.hardware.simulate.Report`.
"""

from __future__ import annotations

__all__ = ["simulate", "build_workload", "import_workload", "resolve_targets", "Workload", "LayerWorkload"]


def __getattr__(name: str) -> object:
    if name == "simulate":
        from bitvert.hardware.simulate import simulate

        return simulate
    if name == "build_workload":
        from bitvert.hardware.workloads_zoo import build_workload

        return build_workload
    if name == "import_workload":
        from bitvert.hardware.import_torch import import_workload

        return import_workload
    if name == "resolve_targets":
        from bitvert.hardware.targets import resolve_targets

        return resolve_targets
    if name in ("Workload", "LayerWorkload"):
        from bitvert.hardware import workload

        return getattr(workload, name)
    raise AttributeError(f"module 'bitvert.hardware' has no attribute {name!r}")
