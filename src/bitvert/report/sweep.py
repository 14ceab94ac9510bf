"""Design-space sweeps: ``bitvert sweep SPEC.yaml --out DIR``.

A sweep spec (:class:`SweepSpec`, YAML, validated before any work) names models, presets, a grid or
list of preset overrides and accelerators. :func:`expand` turns it into *jobs*: one pruning
configuration of one model (a preset with its overrides) and the hardware that runs its variant. A job
is exactly one ``bitvert run`` (:func:`bitvert.report.study.measure_study` with
``StudyConfig(presets=(preset,), baselines=(), preset_overrides=..., accelerators=...)``), so a
point's numbers are those of ``bitvert run`` with that configuration.

A *point* is one job on one accelerator (or the job alone when no listed hardware runs its variant,
e.g. ``rtn``); it is identified by a content hash of its resolved configuration (:attr:`SweepJob.point_ids`:
the resolved preset and hardware config, model, task, limit and simulation settings), and its numbers
are one row of the results table (``results.parquet`` and ``results.csv``, rewritten atomically after
every job). Rerunning a spec skips the points whose row says ``ok``; failed points are recorded with
their error and retried by the next run.

Engines: ``local`` (a process pool; each worker keeps loaded FP32 models and their reference outputs
across jobs) and ``ray`` (each job a Ray task with declared resources, on a local instance or a cluster).
"""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import json
import logging
import math
import os
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from bitvert.errors import ConfigError, InputError, MissingDependencyError
from bitvert.report.sweep_table import (RESULTS_CSV, RESULTS_PARQUET, SWEEP_FILE, TIMING_COLUMNS, read_results,
                                        write_table)
from bitvert.report.variants import DEFAULT_CALIBRATION_SAMPLES, parse_eval_limit

__all__ = [
    "RESULTS_CSV",
    "RESULTS_PARQUET",
    "SPEC_SCHEMA",
    "SWEEP_FILE",
    "TIMING_COLUMNS",
    "AcceleratorEntry",
    "ModelEntry",
    "SweepJob",
    "SweepOutcome",
    "SweepSpec",
    "expand",
    "load_spec",
    "read_results",
    "run_job",
    "run_sweep",
]

logger = logging.getLogger(__name__)

SPEC_SCHEMA = "bitvert.sweep/1"
"""``schema`` of ``DIR/sweep.json`` (the resolved spec a sweep folder was made with)."""

RAY_HINT = 'pip install "bitvert[ray]"  (Ray 2.60.0)'

_PRESET_AXES = ("method", "columns", "group_size", "sensitive_fraction")
"""Preset fields every row carries, swept or not (the axes of the paper's sensitivity figures)."""

_MEASURES = ("metric", "fidelity", "fp32_metric", "int8_metric", "effective_bits", "compression_vs_int8",
             "weight_sqnr_db", "sensitive_channel_fraction", "file_bytes", "weight_bytes", "file_ratio_vs_int8",
             "verified", "cycles", "compute_cycles", "dram_cycles", "speedup_vs_stripes", "energy_pj",
             "energy_vs_sparten")
"""What a point measures (``None`` for a failed point)."""


# --------------------------------------------------------------------------------------------- spec


class ModelEntry(BaseModel):
    """One model of a sweep: a name :func:`bitvert.models.load_model` accepts, its task and limit.

    Attributes:
        name: ``mnist-cnn``, ``minilm-l6``, ``hf:<id>``, ``torchvision:<name>``, a folder or ``.onnx`` file.
        task: evaluation task (``None``: the model's default task).
        limit: examples per evaluation (``None``: the spec's ``limit``).
        calibration_path: image folder calibrating vision models without embedded calibration data.
        seq_len: tokens per sequence of this text model's simulated input (``None``: the spec's
            ``seq_len``); vision models run at their native resolution and refuse it.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(min_length=1)
    task: str | None = None
    limit: int | Literal["auto", "full"] | None = None
    calibration_path: str | None = None
    seq_len: int | None = Field(None, ge=1)

    @field_validator("limit", mode="before")
    @classmethod
    def _limit(cls, v: Any) -> Any:
        return None if v is None else _eval_limit(v)

    @field_validator("name")
    @classmethod
    def _known_model(cls, v: str) -> str:
        from bitvert.models.zoo import check_model_name

        try:
            check_model_name(v)
        except InputError as exc:
            raise ValueError(str(exc)) from None
        return v.strip()

    @field_validator("task")
    @classmethod
    def _known_task(cls, v: str | None) -> str | None:
        from bitvert.evaluation import task_info

        if v is not None:
            try:
                task_info(v.partition(":")[0])
            except ConfigError as exc:
                raise ValueError(str(exc)) from None
        return v


class AcceleratorEntry(BaseModel):
    """Hardware of a sweep: a shipped preset, named target or YAML file, with overrides.

    Written in YAML as ``{accelerator: bitvert, array_rows: [16, 32, 64]}``: every key besides
    ``accelerator`` and ``name`` is a config field (validated by the accelerator's own model); a list
    is an axis, so that entry is three hardware configs. A plain string is the entry without overrides.

    Attributes:
        accelerator: ``bitvert``, ``stripes``, ``bitvert-moderate`` (its hardware), a YAML path...
        name: report name of the overridden configs (default: ``<name>-<key><value>...``).
        overrides: config field -> value or list of values.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    accelerator: str = Field(min_length=1)
    name: str | None = Field(None, min_length=1)
    overrides: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="before")
    @classmethod
    def _split_overrides(cls, data: Any) -> Any:
        if isinstance(data, str):
            return {"accelerator": data}
        if isinstance(data, Mapping) and "overrides" not in data:
            own = {k: v for k, v in data.items() if k in ("accelerator", "name")}
            return {**own, "overrides": {k: v for k, v in data.items() if k not in own}}
        return data

    @field_validator("overrides")
    @classmethod
    def _no_empty_axis(cls, v: dict[str, Any]) -> dict[str, Any]:
        for key, value in v.items():
            if key in ("design", "version"):
                raise ValueError(f"override {key!r} cannot change the kind of hardware; name another accelerator")
            if isinstance(value, list) and not value:
                raise ValueError(f"override {key!r} is an empty list; give at least one value")
        return v

    def configs(self) -> list[tuple[Any, dict[str, Any]]]:
        """Every hardware config of this entry with the overrides that made it (validated)."""
        from bitvert.hardware.config import parse_accelerator
        from bitvert.hardware.targets import resolve_hardware

        keys = list(self.overrides)
        axes = [v if isinstance(v, list) else [v] for v in self.overrides.values()]
        out = []
        for base in resolve_hardware([self.accelerator]):  # "all": every design of the paper's line-up
            for combo in itertools.product(*axes):
                ov = dict(zip(keys, combo))
                if not ov:
                    out.append((base, {}))
                    continue
                suffix = [f"{k}{_text(v)}" for k, v in ov.items() if isinstance(self.overrides[k], list)]
                name = "-".join([self.name] + suffix) if self.name else "-".join(
                    [str(base.name)] + [f"{k}{_text(v)}" for k, v in ov.items()])
                source = f"accelerator {self.accelerator!r}"
                out.append((parse_accelerator({**base.model_dump(), **ov, "name": name}, source), ov))
        return out


def _text(v: Any) -> str:
    return json.dumps(v, sort_keys=True) if isinstance(v, (dict, list)) else str(v)


def _eval_limit(v: Any) -> Any:
    try:
        return parse_eval_limit(v, "limit")
    except ConfigError as exc:
        raise ValueError(str(exc)) from None


Grid = dict[str, list[Any]]


class SweepSpec(BaseModel):
    """A design-space sweep (``bitvert sweep SPEC.yaml``); unknown keys are rejected.

    Attributes:
        name, description: title and one line for the report.
        models: model names or :class:`ModelEntry` mappings (``{name, task, limit, calibration_path}``).
        limit: examples per evaluation of every model without its own (``auto``, ``full`` or a number).
        presets: pipeline presets every override is applied to (a ``method: none`` preset such as
            ``int8`` takes no override: it is one point per model, run by the dense designs).
        grid: preset field -> list of values, swept as a cartesian product; a list of such mappings
            is the union of their products (one axis at a time, as in the paper's sensitivity figures).
        points: explicit override mappings, added to the grid's.
        accelerators: hardware (:class:`AcceleratorEntry`); each job is simulated on the listed hardware
            that runs its variant (BitVert: BBS methods, BitWave: the bit flip, the dense designs: INT8).
            A BitVert / BitWave datapath without an explicit ``group_size`` reads the variant's g.
        batch, seq_len: simulated batch and tokens per sequence (``bitvert run --batch/--seq-len``; a
            model's own ``seq_len`` wins: set it on the text models when vision models are swept too).
        seed, calibration_samples: as ``bitvert run``.
        num_gpus: GPUs each Ray task declares (the local engine ignores it).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field("sweep", min_length=1)
    description: str = ""
    models: list[ModelEntry] = Field(min_length=1)
    limit: int | Literal["auto", "full"] = "auto"
    presets: list[str] = Field(min_length=1)
    grid: Grid | list[Grid] | None = None
    points: list[dict[str, Any]] | None = None
    accelerators: list[AcceleratorEntry] = Field(default_factory=lambda: [AcceleratorEntry(accelerator="bitvert")],
                                                 min_length=1)
    batch: int = Field(1, ge=1)
    seq_len: int | None = Field(None, ge=1)
    seed: int = Field(0, ge=0, lt=2**32)
    calibration_samples: int = Field(DEFAULT_CALIBRATION_SAMPLES, ge=1)
    num_gpus: float = Field(0.0, ge=0.0)

    @field_validator("models", mode="before")
    @classmethod
    def _model_names(cls, v: Any) -> Any:
        return [{"name": m} if isinstance(m, str) else m for m in v] if isinstance(v, list) else v

    @field_validator("limit", mode="before")
    @classmethod
    def _limit(cls, v: Any) -> Any:
        return _eval_limit(v)

    @field_validator("presets")
    @classmethod
    def _known_presets(cls, v: list[str]) -> list[str]:
        from bitvert.pipeline import get_preset

        for p in v:
            try:
                get_preset(p)
            except ConfigError as exc:
                raise ValueError(str(exc)) from None
        return v

    @field_validator("grid")
    @classmethod
    def _grid(cls, v: Grid | list[Grid] | None) -> Grid | list[Grid] | None:
        if v is None:
            return v
        grids = v if isinstance(v, list) else [v]
        if not grids:
            raise ValueError("the grid is an empty list; give at least one mapping of field -> values")
        for g in grids:
            if not g:
                raise ValueError("a grid is empty; give at least one preset field with a list of values")
            for key, values in g.items():
                if not values:
                    raise ValueError(f"grid axis {key!r} has no values; give at least one")
                if "name" == key:
                    raise ValueError("the grid cannot rename the preset (remove 'name')")
        return v

    @field_validator("points")
    @classmethod
    def _points(cls, v: list[dict[str, Any]] | None) -> list[dict[str, Any]] | None:
        if v is not None and not v:
            raise ValueError("points is an empty list; give at least one override mapping or remove it")
        for p in v or []:
            if "name" in p:
                raise ValueError("a point cannot rename the preset (remove 'name')")
        return v

    def override_sets(self) -> list[dict[str, Any]]:
        """Every override mapping: the grid's products, then the explicit points (``[{}]`` when neither)."""
        sets: list[dict[str, Any]] = []
        grids = [] if self.grid is None else (self.grid if isinstance(self.grid, list) else [self.grid])
        for g in grids:
            keys = list(g)
            sets += [dict(zip(keys, combo)) for combo in itertools.product(*g.values())]
        sets += [dict(p) for p in self.points or []]
        return sets or [{}]

    def hardware(self) -> list[tuple[Any, dict[str, Any]]]:
        """Every hardware config (unique names) with the overrides that made it."""
        out: dict[str, tuple[Any, dict[str, Any]]] = {}
        for entry in self.accelerators:
            for cfg, ov in entry.configs():
                prev = out.get(str(cfg.name))
                if prev is not None and prev[0] != cfg:
                    raise ConfigError(f"two different accelerator configs are named {cfg.name!r}; give each "
                                      "entry its own name")
                out.setdefault(str(cfg.name), (cfg, ov))
        return list(out.values())


def _errors_text(exc: ValidationError, fields: Sequence[str] = ()) -> str:
    """A pydantic error on one line: ``key: message (got value)`` per error; an unknown top-level key
    lists ``fields``, the keys allowed there."""
    parts = []
    for err in exc.errors():
        loc = ".".join(str(x) for x in err["loc"] if not str(x).startswith(("function-", "str", "list[", "dict[")))
        msg = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            msg = f"unknown key; choose from {', '.join(fields)}" if fields and "." not in loc else "unknown key"
        shown = err["type"] != "extra_forbidden" and not isinstance(err.get("input"), (dict, list))
        parts.append(f"{loc or '<spec>'}: {msg}" + (f" (got {err['input']!r})" if shown else ""))
    return "; ".join(dict.fromkeys(parts))


def load_spec(source: str | os.PathLike[str] | Mapping[str, Any]) -> SweepSpec:
    """Read and validate a sweep spec (a YAML file or a mapping); :func:`expand` it to check every point.

    Raises:
        ConfigError: invalid YAML, unknown key, empty grid, unknown model / preset / task / accelerator,
            a value of the wrong type or an override the preset model rejects -- one message naming it.
        InputError: the file cannot be read.
    """
    from bitvert.hardware.config import load_yaml

    if isinstance(source, Mapping):
        data, name = dict(source), "sweep spec"
    else:
        path = Path(source)
        if not path.is_file():
            raise InputError(f"sweep spec {str(path)!r} does not exist; give a YAML file (see examples/sweeps/)")
        name = str(path)
        data = load_yaml(path.read_text(encoding="utf-8"), name)
    if not isinstance(data, Mapping):
        raise ConfigError(f"{name}: a sweep spec is a mapping of keys (models, presets, grid, ...), got "
                          f"{type(data).__name__}")
    try:
        spec = SweepSpec.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(f"{name}: invalid sweep spec: {_errors_text(exc, list(SweepSpec.model_fields))}") from None
    try:
        expand(spec)
    except ConfigError as exc:
        raise ConfigError(f"{name}: {exc}") from None
    return spec


# --------------------------------------------------------------------------------------------- jobs


@dataclass(frozen=True)
class SweepJob:
    """One ``bitvert run`` of a sweep: a model, one preset with overrides, the hardware running it.

    Attributes:
        model, task, limit, calibration_path: the model entry (``task=None``: the model's default).
        preset: the preset's name; overrides: the fields replaced in it.
        resolved: the resolved preset (``PipelinePreset.to_dict()``).
        hardware: ``(config dump, overrides)`` per accelerator that runs the variant (may be empty).
        batch, seq_len, seed, calibration_samples: as ``bitvert run``.
        num_gpus: GPUs a Ray task declares.
    """

    model: str
    task: str | None
    limit: int | str
    calibration_path: str | None
    preset: str
    overrides: Mapping[str, Any]
    resolved: Mapping[str, Any]
    hardware: tuple[tuple[Mapping[str, Any], Mapping[str, Any]], ...]
    batch: int
    seq_len: int | None
    seed: int
    calibration_samples: int
    num_gpus: float = 0.0
    point_ids: tuple[str, ...] = field(default=())

    def _identity(self) -> dict[str, Any]:
        preset = {k: v for k, v in self.resolved.items() if k != "description"}
        return {"model": self.model, "task": self.task, "limit": self.limit, "calibration_path": self.calibration_path,
                "preset": preset, "batch": self.batch, "seq_len": self.seq_len, "seed": self.seed,
                "calibration_samples": self.calibration_samples}

    def with_ids(self) -> SweepJob:
        """This job with :attr:`point_ids` filled: SHA-256 (16 hex digits) of each point's resolved config."""
        base = self._identity()
        ids = [_digest({**base, "hardware": dict(hw)}) for hw, _ in self.hardware] or [_digest(base)]
        return dataclasses.replace(self, point_ids=tuple(ids))

    def study_config(self, accelerators: Sequence[str]) -> Any:
        """The :class:`~bitvert.report.results.StudyConfig` of this job (``bitvert run`` options)."""
        from bitvert.report.results import StudyConfig

        return StudyConfig.create(
            model=self.model, presets=(self.preset,), baselines=(), accelerators=tuple(accelerators) or ("stripes",),
            seed=self.seed, task=self.task, eval_limit=self.limit, calibration_samples=self.calibration_samples,
            calibration_path=self.calibration_path, simulate_batch=self.batch, simulate_seq_len=self.seq_len,
            preset_overrides=dict(self.overrides), simulate=bool(accelerators))

    def describe(self) -> str:
        """One line: model, preset, overrides, hardware."""
        ov = " ".join(f"{k}={_text(v)}" for k, v in self.overrides.items())
        hw = ",".join(str(h["name"]) for h, _ in self.hardware) or "no hardware"
        return f"{self.model} {self.preset}{' ' + ov if ov else ''} on {hw}"


def _digest(obj: Any) -> str:
    text = json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def expand(spec: SweepSpec) -> list[SweepJob]:
    """Every job of ``spec`` (models x presets x override sets), duplicates once, each override validated.

    Raises:
        ConfigError: an override the preset model rejects (naming the preset and the override), or
            two accelerator configs with one name.
    """
    from bitvert.hardware.targets import native_method
    from bitvert.pipeline import PipelinePreset, get_preset

    hardware = spec.hardware()
    jobs: dict[tuple[str, ...], SweepJob] = {}
    for entry in spec.models:
        for name in spec.presets:
            base = get_preset(name)
            for ov in ([{}] if base.method == "none" else spec.override_sets()):
                try:
                    resolved = PipelinePreset.model_validate({**base.model_dump(), **ov})
                except ValidationError as exc:
                    fields = list(PipelinePreset.model_fields)
                    raise ConfigError(f"override {ov} of preset {base.name!r}: {_errors_text(exc, fields)}") from None
                hw = []
                for cfg, hw_ov in hardware:
                    if not native_method(cfg.design, resolved.method):
                        continue
                    if cfg.design in ("bitvert", "bitwave") and "group_size" not in hw_ov:
                        cfg = cfg.model_copy(update={"group_size": resolved.group_size})
                    hw.append((cfg.model_dump(mode="json"), dict(hw_ov)))
                job = SweepJob(
                    model=entry.name, task=entry.task, limit=entry.limit if entry.limit is not None else spec.limit,
                    calibration_path=entry.calibration_path, preset=base.name, overrides=dict(ov),
                    resolved=resolved.to_dict(), hardware=tuple(hw), batch=spec.batch,
                    seq_len=entry.seq_len if entry.seq_len is not None else spec.seq_len,
                    seed=spec.seed, calibration_samples=spec.calibration_samples, num_gpus=spec.num_gpus,
                ).with_ids()
                jobs.setdefault(job.point_ids, job)
    return list(jobs.values())


# --------------------------------------------------------------------------------------------- one job

_CACHE: dict[tuple[Any, ...], Any] = {}
"""Per worker process: loaded FP32 models by (model, calibration path) and their reference memos by
(model, calibration path, task, limit); at most :data:`_CACHE_MODELS` models are kept."""
_CACHE_MODELS = 2


def _cached(job: SweepJob) -> tuple[Any, Any]:
    from bitvert.models import load_model
    from bitvert.report.memo import ReferenceMemo
    from bitvert.report.variants import resolve_eval_limit, seed_everything

    key = ("model", job.model, job.calibration_path)
    if key not in _CACHE:
        models = [k for k in _CACHE if k[0] == "model"]
        for old in models[: max(0, len(models) - _CACHE_MODELS + 1)]:
            for k in [k for k in _CACHE if k[1:3] == old[1:3]]:
                del _CACHE[k]
        seed_everything(job.seed)
        _CACHE[key] = load_model(job.model, calibration_path=job.calibration_path)
    loaded = _CACHE[key]
    task = job.task or loaded.default_task
    limit = resolve_eval_limit(job.limit, loaded.family)  # type: ignore[arg-type]
    mkey = ("memo", job.model, job.calibration_path, task, limit)
    if mkey not in _CACHE:
        _CACHE[mkey] = ReferenceMemo.for_task(loaded.model, task)
    return loaded, _CACHE[mkey]


def run_job(job: SweepJob) -> list[dict[str, Any]]:
    """Run one job (one ``bitvert run``) and return its rows, one per point; never raises for a failing
    point: its rows say ``status="failed"`` and the error (``KeyboardInterrupt`` is re-raised)."""
    import yaml

    from bitvert.report.study import measure_study

    t0, c0 = time.perf_counter(), time.process_time()
    try:
        loaded, memo = _cached(job)
        with tempfile.TemporaryDirectory(prefix="bitvert-sweep-") as tmp:
            work = Path(tmp)
            items = []
            for cfg, _ in job.hardware:
                path = work / f"{cfg['name']}.yaml"
                path.write_text(yaml.safe_dump(dict(cfg), sort_keys=False), encoding="utf-8")
                items.append(str(path))
            (work / "study").mkdir()
            result = measure_study(job.study_config(items), work / "study", loaded=loaded, memo=memo)
        rows = _rows(job, result)
    except Exception as exc:  # a failing point is a result: record it, the sweep goes on
        logger.debug("point %s failed", job.describe(), exc_info=True)
        rows = _rows(job, None, f"{type(exc).__name__}: {exc}")
    stamp = {"wall_s": round(time.perf_counter() - t0, 3), "cpu_s": round(time.process_time() - c0, 3),
             "finished_utc": datetime.now(timezone.utc).isoformat(timespec="seconds")}
    return [{**r, **stamp} for r in rows]


def _value(v: Any) -> Any:
    if isinstance(v, bool) or v is None or isinstance(v, (int, str)):
        return v
    if isinstance(v, float):
        return v if math.isfinite(v) else None
    return json.dumps(v, sort_keys=True, default=str)


def _rows(job: SweepJob, result: Any, error: str | None = None) -> list[dict[str, Any]]:
    """The rows of ``job``: parameters, then what ``result`` measured (``None``: the job failed)."""
    common: dict[str, Any] = {"status": "ok" if error is None else "failed", "error": error,
                              "model": job.model, "task": job.task, "eval_limit": str(job.limit),
                              "preset": job.preset}
    common.update({k: _value(job.resolved[k]) for k in _PRESET_AXES})
    common.update({k: _value(job.resolved.get(k, v)) for k, v in job.overrides.items() if k not in _PRESET_AXES})
    common.update({"batch": job.batch, "seq_len": job.seq_len, "seed": job.seed})
    measured: dict[str, Any] = {"headline_metric": None, "fidelity_metric": None, **dict.fromkeys(_MEASURES)}
    if result is not None:
        v = result.variants[job.preset]
        head, fid = result.headline_metric, result.fidelity_metric
        common["task"] = result.task
        measured.update(
            headline_metric=head, fidelity_metric=fid, metric=v.metrics.get(head),
            fidelity=v.metrics.get(fid) if fid else None, fp32_metric=result.variants["fp32"].metrics.get(head),
            int8_metric=result.variants["int8"].metrics.get(head), effective_bits=v.effective_bits,
            compression_vs_int8=v.compression_vs_int8, weight_sqnr_db=v.weight_sqnr_db,
            sensitive_channel_fraction=v.sensitive_channel_fraction, file_bytes=v.file_bytes,
            weight_bytes=v.weight_bytes, file_ratio_vs_int8=v.file_ratio_vs_int8, verified=v.verified)
    hardware = list(job.hardware) or [(None, {})]
    rows = []
    for pid, (cfg, hw_ov) in zip(job.point_ids, hardware):
        row = {"point_id": pid, **common}
        row.update(accelerator=None if cfg is None else cfg["name"], design=None if cfg is None else cfg["design"],
                   array_rows=None if cfg is None else cfg["array_rows"],
                   array_cols=None if cfg is None else cfg["array_cols"])
        row.update({f"hw_{k}": _value(cfg[k]) for k in hw_ov if k not in ("array_rows", "array_cols")}
                   if cfg is not None else {})
        row.update({k: _value(v) for k, v in measured.items()})
        if result is not None and cfg is not None:
            row.update(_hardware_numbers(result, cfg["name"], job.preset))
        rows.append(row)
    return rows


def _hardware_numbers(result: Any, hw_name: str, variant: str) -> dict[str, Any]:
    sim = result.simulation
    label = next((lbl for lbl, c in sim["configs"].items() if c["name"] == hw_name
                  and c.get("variant_preset") in (variant, "int8")), None)
    if label is None:
        raise ConfigError(f"the simulation has no accelerator {hw_name!r} running {variant!r}")
    acc = sim["accelerators"][label]
    return {k: _value(acc[k]) for k in ("cycles", "compute_cycles", "dram_cycles", "speedup_vs_stripes",
                                        "energy_pj", "energy_vs_sparten")}


# --------------------------------------------------------------------------------------------- engines

OnRows = Callable[[SweepJob, list[dict[str, Any]]], None]


def _failed(job: SweepJob, exc: BaseException) -> list[dict[str, Any]]:
    stamp = dict.fromkeys(TIMING_COLUMNS)
    return [{**r, **stamp} for r in _rows(job, None, f"{type(exc).__name__}: {exc}")]


def _init_worker(threads: int) -> None:
    import torch

    torch.set_num_threads(threads)


def _local(jobs: Sequence[SweepJob], workers: int, on_rows: OnRows) -> None:
    import multiprocessing
    from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait

    if workers == 1:
        for job in jobs:
            on_rows(job, run_job(job))
        return
    threads = max(1, (os.cpu_count() or 1) // workers)
    pool = ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn"),
                               initializer=_init_worker, initargs=(threads,))
    try:
        futures = {pool.submit(run_job, job): job for job in jobs}
        pending = set(futures)
        while pending:
            done, pending = wait(pending, return_when=FIRST_COMPLETED)
            for fut in done:
                job = futures[fut]
                try:
                    rows = fut.result()
                except Exception as exc:  # the worker died (out of memory, killed)
                    rows = _failed(job, exc)
                on_rows(job, rows)
    except BaseException:
        # interrupted: stop the running jobs too (their points are not recorded and rerun next time)
        for proc in list(getattr(pool, "_processes", {}).values()):
            proc.terminate()
        pool.shutdown(wait=False, cancel_futures=True)
        raise
    pool.shutdown()


def _ray(jobs: Sequence[SweepJob], address: str | None, workers: int | None, on_rows: OnRows) -> None:
    try:
        import ray
    except ImportError:
        raise MissingDependencyError(f"--engine ray needs Ray; install it with: {RAY_HINT}") from None
    started = False
    if not ray.is_initialized():
        kwargs: dict[str, Any] = {"include_dashboard": False, "logging_level": logging.WARNING}
        if address is None:
            kwargs["num_cpus"] = workers or os.cpu_count() or 1
        ray.init(address=address, **kwargs)
        started = True
    refs: dict[Any, SweepJob] = {}
    try:
        task = ray.remote(num_cpus=1, num_gpus=jobs[0].num_gpus)(run_job)
        refs = {task.remote(job): job for job in jobs}
        pending = list(refs)
        while pending:
            done, pending = ray.wait(pending, num_returns=1)
            for ref in done:
                try:
                    rows = ray.get(ref)
                except Exception as exc:  # the task's worker died
                    rows = _failed(refs[ref], exc)
                on_rows(refs[ref], rows)
    except BaseException:
        for ref in refs:
            ray.cancel(ref, force=True)
        raise
    finally:
        if started:
            ray.shutdown()


# --------------------------------------------------------------------------------------------- driver


@dataclass
class SweepOutcome:
    """What :func:`run_sweep` did.

    Attributes:
        out_dir: the sweep folder; points: points of the spec; skipped: finished before this run;
        ran, failed: points run now and how many of them failed; wall_s: seconds of this run;
        report: the ``report.html`` written (``None`` when no point has finished).
    """

    out_dir: Path
    points: int
    skipped: int
    ran: int
    failed: int
    wall_s: float
    report: Path | None


def run_sweep(spec: SweepSpec | str | os.PathLike[str], out_dir: str | os.PathLike[str], *,
              engine: Literal["local", "ray"] = "local", workers: int | None = None, address: str | None = None,
              progress: bool = False, report: bool = True) -> SweepOutcome:
    """Run every point of ``spec`` not finished in ``out_dir``, appending rows as jobs finish.

    Args:
        spec: a :class:`SweepSpec` or a YAML path (validated and expanded before any work).
        out_dir: the sweep folder (created; ``results.parquet``, ``results.csv``, ``sweep.json``,
            ``report.html``). A sweep folder of another spec is reused: its finished points that the new
            spec also has are skipped (same content hash), the others stay in the table.
        engine: ``local`` (process pool) or ``ray``.
        workers: parallel jobs (default: the number of cores); with Ray, the CPUs of a local instance.
        address: Ray cluster address (``ray.init(address=...)``); ``None``: a local instance.
        progress: a progress bar (points done / failed / ETA) on stderr.
        report: write ``report.html`` at the end.

    Raises:
        ConfigError: invalid spec, engine or workers; InputError: ``out_dir`` is a file, not a sweep
        folder or another spec's; MissingDependencyError: Ray or pyarrow missing.
    """
    t0 = time.perf_counter()
    if not isinstance(spec, SweepSpec):
        spec = load_spec(spec)
    if engine not in ("local", "ray"):
        raise ConfigError(f"--engine must be 'local' or 'ray', got {engine!r}")
    if workers is not None and (not isinstance(workers, int) or workers < 1):
        raise ConfigError(f"--workers must be a positive integer, got {workers!r}")
    if address is not None and engine != "ray":
        raise ConfigError("--address names a Ray cluster; use it with --engine ray")
    try:
        import pyarrow  # noqa: F401
    except ImportError:
        raise MissingDependencyError("bitvert sweep writes results.parquet with pyarrow; install it with: "
                                     "pip install 'pyarrow==26.0.1'") from None
    if engine == "ray":
        try:
            import ray  # noqa: F401
        except ImportError:
            raise MissingDependencyError(f"--engine ray needs Ray; install it with: {RAY_HINT}") from None
    jobs = expand(spec)
    out = Path(out_dir).expanduser()
    _prepare_folder(out, spec)
    rows = {r["point_id"]: r for r in read_results(out)}
    done = {pid for pid, r in rows.items() if r.get("status") == "ok"}
    todo = [j for j in jobs if not set(j.point_ids) <= done]
    n_points = sum(len(j.point_ids) for j in jobs)
    skipped = n_points - sum(len(j.point_ids) for j in todo)
    n_todo = n_points - skipped
    workers = workers or os.cpu_count() or 1
    logger.info("sweep %r: %d points in %d jobs; %d finished before, %d to run (engine %s, %d workers)",
                spec.name, n_points, len(jobs), skipped, n_todo, engine, workers)
    from tqdm.auto import tqdm

    bar = tqdm(total=n_todo, desc="points", unit="point", disable=not progress)
    counts = {"ran": 0, "failed": 0}

    def on_rows(job: SweepJob, new: list[dict[str, Any]]) -> None:
        for r in new:
            rows[r["point_id"]] = r
        write_table(out, list(rows.values()))
        for r in new:
            counts["ran"] += 1
            counts["failed"] += r["status"] != "ok"
            logger.info("point %d/%d %s: %s", counts["ran"], n_todo, r["status"], _row_line(job, r))
        bar.update(len(new))
        bar.set_postfix(done=counts["ran"] - counts["failed"], failed=counts["failed"])

    try:
        if todo:
            if engine == "ray":
                _ray(todo, address, workers if address is None else None, on_rows)
            else:
                _local(todo, min(workers, len(todo)), on_rows)
    finally:
        bar.close()
    page = None
    if report and rows:
        from bitvert.report.sweep_report import write_sweep_report

        page = write_sweep_report(out)
    return SweepOutcome(out_dir=out, points=n_points, skipped=skipped, ran=counts["ran"], failed=counts["failed"],
                        wall_s=round(time.perf_counter() - t0, 3), report=page)


def _row_line(job: SweepJob, row: Mapping[str, Any]) -> str:
    where = f" on {row['accelerator']}" if row.get("accelerator") else ""
    head = f"{job.model} {job.preset}" + "".join(f" {k}={_text(v)}" for k, v in job.overrides.items()) + where
    if row["status"] != "ok":
        return f"{head}: {row['error']}"
    parts = [f"{row['headline_metric']} {row['metric']:.4g}" if row.get("metric") is not None else "",
             f"{row['effective_bits']:.3f} bits" if row.get("effective_bits") is not None else "",
             f"speedup {row['speedup_vs_stripes']:.3f}x" if row.get("speedup_vs_stripes") is not None else "",
             f"{row['wall_s']:.1f} s" if row.get("wall_s") is not None else ""]
    return f"{head}: " + ", ".join(p for p in parts if p)



def _prepare_folder(out: Path, spec: SweepSpec) -> None:
    """Create ``out`` with ``sweep.json``, or check that it is this spec's sweep folder."""
    if out.exists() and not out.is_dir():
        raise InputError(f"--out {str(out)!r} is a file; give a folder for the sweep")
    marker = out / SWEEP_FILE
    doc = {"schema": SPEC_SCHEMA, "spec": spec.model_dump(mode="json")}
    if marker.is_file():
        try:
            old = json.loads(marker.read_text(encoding="utf-8"))
        except ValueError:
            raise InputError(f"{marker} is not a sweep file; choose a new folder") from None
        if old.get("spec") != doc["spec"]:
            logger.warning("%s holds a sweep of another spec; its finished points are reused where the new "
                           "spec has them (content hashes) and the spec is updated", out)
    elif out.is_dir() and any(out.iterdir()):
        raise InputError(f"--out {str(out)!r} is a non-empty folder that is not a bitvert sweep; choose a new or "
                         "empty folder")
    out.mkdir(parents=True, exist_ok=True)
    tmp = out / f".{SWEEP_FILE}.tmp-{os.getpid()}"
    tmp.write_text(json.dumps(doc, indent=2) + "\n", encoding="utf-8")
    os.replace(tmp, marker)
