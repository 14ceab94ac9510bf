"""The end-to-end BBS study behind ``bitvert run`` and its report.

>>> from pathlib import Path
>>> from bitvert.report import StudyConfig, run_study
>>> result = run_study(StudyConfig(model="mnist-cnn"), Path("report"))   # doctest: +SKIP
>>> result.variants["moderate"].effective_bits                           # doctest: +SKIP
5.24

:func:`run_study` loads a model, quantizes it to INT8, prunes it with each BBS preset and the
baselines, evaluates every variant, encodes and verifies the weights, simulates the accelerators on
the model's real weights and writes a report folder (``report.md``, ``report.html``,
``results.json``, plots) atomically: the folder appears under its final name only when complete.

Modules, one job each: :mod:`~bitvert.report.variants` (the variant runner shared with ``bitvert prune``),
:mod:`~bitvert.report.memo` (FP32 reference outputs reused across variants),
:mod:`~bitvert.report.verify` (encode / decode / verify each variant), :mod:`~bitvert.report.simulation`
(the accelerators), :mod:`~bitvert.report.results` (configuration and ``results.json``),
:mod:`~bitvert.report.publish` (atomic report folder), :mod:`~bitvert.report.render` and
:mod:`~bitvert.report.plots` (report.md / report.html), :mod:`~bitvert.report.study` (the flow of ``bitvert run``),
:mod:`~bitvert.report.sweep`, :mod:`~bitvert.report.sweep_table` and :mod:`~bitvert.report.sweep_report`
(``bitvert sweep``: design-space sweeps, their results table and Pareto report).
"""

from __future__ import annotations

from bitvert.report.publish import REPORT_STATUS_FILE, is_complete_report
from bitvert.report.results import StudyConfig, StudyResult, VariantResult
from bitvert.report.study import run_study
from bitvert.report.variants import StageTimer

__all__ = [
    "REPORT_STATUS_FILE",
    "StageTimer",
    "StudyConfig",
    "StudyResult",
    "VariantResult",
    "is_complete_report",
    "run_study",
]
