"""The results table of a sweep folder: ``results.parquet`` and ``results.csv``, one row per point,
rewritten atomically (temporary file, then rename) so a killed sweep never leaves a half-written table."""

from __future__ import annotations

import csv
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

__all__ = ["RESULTS_CSV", "RESULTS_PARQUET", "SWEEP_FILE", "TIMING_COLUMNS", "read_results", "write_table"]

RESULTS_PARQUET = "results.parquet"
RESULTS_CSV = "results.csv"
SWEEP_FILE = "sweep.json"
"""The resolved spec a sweep folder was made with (``{"schema": ..., "spec": ...}``)."""

TIMING_COLUMNS: tuple[str, ...] = ("wall_s", "cpu_s", "finished_utc")
"""Columns that differ between two runs of the same point (everything else is reproducible)."""


def read_results(out_dir: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """The rows of a sweep folder's ``results.parquet`` (``results.csv`` when pyarrow is missing);
    empty when the sweep has no result yet."""
    out = Path(out_dir)
    pq_path, csv_path = out / RESULTS_PARQUET, out / RESULTS_CSV
    if pq_path.is_file():
        import pyarrow.parquet as pq

        return list(pq.read_table(pq_path).to_pylist())
    if csv_path.is_file():
        with csv_path.open(newline="", encoding="utf-8") as fh:
            return [{k: _from_csv(v) for k, v in r.items()} for r in csv.DictReader(fh)]
    return []


def _from_csv(v: str) -> Any:
    if v == "":
        return None
    for cast in (int, float):
        try:
            return cast(v)
        except ValueError:
            continue
    return {"True": True, "False": False}.get(v, v)


def _columns(rows: Iterable[Mapping[str, Any]]) -> list[str]:
    cols: dict[str, None] = {}
    for r in rows:
        cols.update(dict.fromkeys(r))
    timing = [c for c in TIMING_COLUMNS if c in cols]
    return [c for c in cols if c not in TIMING_COLUMNS] + timing


def write_table(out: Path, rows: list[dict[str, Any]]) -> None:
    """Rewrite ``results.parquet`` and ``results.csv`` atomically (temporary file, then rename)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    cols = _columns(rows)
    full = [{c: r.get(c) for c in cols} for r in rows]
    table = pa.Table.from_pylist(full)
    tmp = out / f".{RESULTS_PARQUET}.tmp-{os.getpid()}"
    pq.write_table(table, tmp)
    os.replace(tmp, out / RESULTS_PARQUET)
    tmp = out / f".{RESULTS_CSV}.tmp-{os.getpid()}"
    with tmp.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=cols)
        writer.writeheader()
        writer.writerows({c: "" if v is None else v for c, v in r.items()} for r in full)
    os.replace(tmp, out / RESULTS_CSV)
