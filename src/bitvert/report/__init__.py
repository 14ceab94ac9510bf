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
"""

from __future__ import annotations

from bitvert.report.study import (
    REPORT_STATUS_FILE,
    StageTimer,
    StudyConfig,
    StudyResult,
    VariantResult,
    is_complete_report,
    run_study,
)

__all__ = [
    "REPORT_STATUS_FILE",
    "StageTimer",
    "StudyConfig",
    "StudyResult",
    "VariantResult",
    "is_complete_report",
    "run_study",
]
