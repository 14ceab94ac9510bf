"""How much a task metric moves for reasons that are not the variant: the report's noise band.

Two sources are stated for each task metric of a study (``results.json`` ``noise``; the report's
"Noise band" section), so readers do not interpret differences inside them:

* **CPU capability** -- torch picks its kernels by the CPU's instruction set (``default``, ``avx2``,
  ``avx512``; :func:`torch.backends.cpu.get_cpu_capability`, recorded in ``environment``). Different
  kernels sum in different orders, which flips a few INT8 activation roundings and moves the metrics
  of quantized variants. :data:`CPU_CAPABILITY_SPREAD` holds the largest difference measured per
  embedded model and metric over all variants of ``bitvert prune --preset moderate`` (the same
  variants as the default study), with the command and the capabilities compared.
* **Sampling** -- for metrics that are a fraction of independent examples (top-1, accuracy, agreement)
  the 95 % Wilson interval of that fraction over the examples evaluated (closed form, free; the
  bootstrap interval of a mean of 0/1 outcomes converges to it).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

__all__ = ["CapabilitySpread", "CPU_CAPABILITY_SPREAD", "PROPORTION_METRICS", "wilson_interval", "noise_bands"]


@dataclass(frozen=True)
class CapabilitySpread:
    """The largest difference of one metric between CPU capabilities, over every variant.

    Attributes:
        spread: ``max |metric(cap_a) - metric(cap_b)|`` over the variants and capability pairs measured.
        capabilities: the ``ATEN_CPU_CAPABILITY`` values compared.
        measured: how (command, date, machine).
    """

    spread: float
    capabilities: tuple[str, ...]
    measured: str


_MEASURED_PRUNE = ("`ATEN_CPU_CAPABILITY=CAP bitvert prune --model {model} --preset moderate` with CAP default "
                   "and avx2, 2026-12-01, 2-core AVX2 machine (variants fp32, int8, moderate, bitwave-moderate, "
                   "rtn-moderate)")
_MEASURED_MINILM = ("AVX2 vs AVX-512 machines: up to 0.003, reported in issue 14 (flipped INT8 activation "
                    "roundings); default vs AVX2 on the 2-core development machine, 2026-12-01: up to 0.0013 "
                    "(`ATEN_CPU_CAPABILITY=default bitvert prune --model minilm-l6 --preset moderate` against the "
                    "same command's AVX2 values in docs/report.md)")

CPU_CAPABILITY_SPREAD: dict[str, dict[str, CapabilitySpread]] = {
    "mnist-cnn": {
        "top1": CapabilitySpread(0.0, ("default", "avx2"), _MEASURED_PRUNE.format(model="mnist-cnn")),
    },
    "minilm-l6": {
        "lee_pearson": CapabilitySpread(0.003, ("default", "avx2", "avx512"), _MEASURED_MINILM),
    },
}
"""Measured spread per embedded model and task metric (see the module docstring)."""

PROPORTION_METRICS = ("top1", "top5", "probe_top1", "accuracy")
"""Task metrics that are a fraction of independent examples (they get a Wilson interval)."""

_COUNT_KEYS = ("n_images", "n_examples")


def wilson_interval(fraction: float, n: int, z: float = 1.959964) -> tuple[float, float]:
    """The Wilson score interval of a fraction of ``n`` independent 0/1 outcomes (95 % by default),
    rounded to 6 decimals."""
    if n < 1 or not 0.0 <= fraction <= 1.0:
        raise ValueError(f"wilson_interval needs n >= 1 and a fraction in [0, 1], got {fraction!r} of {n!r}")
    z2 = z * z
    centre = (fraction + z2 / (2 * n)) / (1 + z2 / n)
    half = z * math.sqrt(fraction * (1 - fraction) / n + z2 / (4 * n * n)) / (1 + z2 / n)
    return round(max(0.0, centre - half), 6), round(min(1.0, centre + half), 6)


def noise_bands(model: str, task_metrics: list[str], variants: dict[str, dict[str, float]]) -> dict[str, Any]:
    """The ``noise`` entry of ``results.json``.

    Args:
        model: the model's name (the key of :data:`CPU_CAPABILITY_SPREAD`).
        task_metrics: the task's own metrics (not fidelity), e.g. ``["top1"]``.
        variants: metrics by variant name.

    Returns:
        ``{"cpu_capability": {metric: {spread, capabilities, measured} | None},
        "sampling_95": {variant: {metric: [low, high]}}}``: ``None`` where no spread was measured for
        this model; ``sampling_95`` only for :data:`PROPORTION_METRICS` with a known example count.
    """
    measured = CPU_CAPABILITY_SPREAD.get(model, {})
    cpu = {m: (asdict(measured[m]) if m in measured else None) for m in task_metrics}
    sampling: dict[str, dict[str, list[float]]] = {}
    for name, metrics in variants.items():
        n = next((int(metrics[k]) for k in _COUNT_KEYS if metrics.get(k)), 0)
        bands = {m: list(wilson_interval(float(metrics[m]), n)) for m in task_metrics
                 if m in PROPORTION_METRICS and n > 0 and isinstance(metrics.get(m), (int, float))
                 and 0.0 <= float(metrics[m]) <= 1.0}
        if bands:
            sampling[name] = bands
    return {"cpu_capability": cpu, "sampling_95": sampling}
