"""Streaming prune + encode of sharded HuggingFace checkpoints, tensor by tensor, with bounded memory.

:func:`stream_prune` reads a HuggingFace causal-LM folder (``config.json`` plus ``model.safetensors`` or
``model-0000k-of-0000n.safetensors`` + ``model.safetensors.index.json``; float32, float16 or bfloat16
weights) through safetensors' memory map, one tensor at a time, and writes the BBS-encoded model as shards
(``model-0000k-of-0000n.bbs.safetensors``, each a normal container, docs/format.md) plus
``model.bbs.safetensors.index.json`` (written last: a folder without it is not a finished model).

The rules are the in-memory pipeline's, not a copy of them:

* **which tensors are quantized, and their roles**: the architecture is instantiated from ``config.json``
  on PyTorch's ``meta`` device (no weight memory) and :func:`bitvert.pipeline.quantize.select_layers` --
  the function ``prune_model_`` uses -- lists the quantizable modules in registration order, with the
  preset's first/last-layer and regex rules (:func:`~bitvert.pipeline.quantize.assign_roles`). A tied
  LM head absent from the files is read from the tensor it is tied to (and quantized, as the in-memory
  pipeline unties it); the embedding table itself stays as stored.
* **Algorithm 2**: a first pass computes each pruned layer's channel scores tensor by tensor (skipped
  when ``sensitive_fraction`` is 0: no channel can be selected), the global selection runs on the scores,
  and a second pass quantizes, prunes and encodes each tensor with the same per-layer function as
  :func:`bitvert.pipeline.prune_model_` and the same encoder as :func:`bitvert.codec.encode_report`.

Every other tensor (embeddings, norms, biases) is copied unchanged, in its stored dtype.

**Resuming**: finished output shards are recorded, with a blake2b checksum of the file, in
``stream_state.json`` in the output folder, together with a fingerprint of the input and of the settings;
a rerun into the same folder checks both and skips the shards whose files still match. The pass-1 scores
are kept in ``stream_scores.safetensors``. Both files are removed once the index is written.

:class:`ShardedEncodedModel` reads such a folder lazily: a tensor at a time, each checked against its
checksum when read; :func:`open_encoded` opens a single file or a sharded folder.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import time
from contextlib import contextmanager
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from bitvert.codec.checkpoint import _encode_layer, layer_encoding_source, weight_key
from bitvert.codec.container import (
    STATE_PREFIX,
    EncodedModel,
    file_accounting,
    load_encoded,
    read_header,
    save_encoded,
    tensor_from_stored,
)
from bitvert.codec.layout import TensorLayout
from bitvert.codec.tensor import EncodedTensor, concat_channels
from bitvert.core.grouping import make_layout
from bitvert.errors import ConfigError, FormatError, InputError, UnsupportedLayerError
from bitvert.pipeline.checkpoint import checkpoint_header, checkpoint_layer
from bitvert.pipeline.global_prune import (
    LayerPruneRecord,
    ModelPruneReport,
    _jobs_from_model,
    _LayerJob,
    _prepare_jobs,
    _process_layer,
    _scored_jobs,
    _select_for_jobs,
    _sensitivity_kind,
    channel_scores,
)
from bitvert.pipeline.presets import PipelinePreset, get_preset
from bitvert.pipeline.quantize import LayerRole, LayerRule, quantize_weight, select_layers
from bitvert.pruning.methods import REGISTRY, get_method
from bitvert.tensorfile import read_safetensors_header, save_tensors, tensor_checksum, text_checksum
from bitvert.timing import StageTimer

__all__ = [
    "INDEX_NAME", "SHARDED_FORMAT", "SHARDED_FORMAT_VERSION", "SUPPORTED_DTYPES", "SourceTensor",
    "HFCheckpoint", "StreamResult", "stream_prune", "ShardedEncodedModel", "open_encoded", "parse_size",
    "DEFAULT_SHARD_SIZE_BYTES", "STREAM_STAGES",
]

log = logging.getLogger(__name__)

INDEX_NAME = "model.bbs.safetensors.index.json"
"""The index of a sharded BBS model; written last, so its presence marks a finished model."""
SHARDED_FORMAT = "bitvert-bbs-sharded"
SHARDED_FORMAT_VERSION = 1
STATE_NAME = "stream_state.json"
SCORES_NAME = "stream_scores.safetensors"
DEFAULT_SHARD_SIZE_BYTES = 256 * 2**20
"""Target size of an output shard (a single larger tensor gets a shard of its own)."""
STREAM_STAGES = ("setup", "read", "quantize", "score", "prune", "encode", "write", "checksum")
"""The stages :attr:`StreamResult.stage_seconds` reports, in order."""
SUPPORTED_DTYPES: dict[str, torch.dtype] = {"F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16}
"""safetensors dtypes of weights that can be quantized."""
_CONVERT_BLOCK_ELEMENTS = 1 << 24
"""Elements converted to float32 at a time when reading a 16-bit weight."""
_HF_INDEX = "model.safetensors.index.json"
_HF_SINGLE = "model.safetensors"
_ITEMSIZE = {"F64": 8, "F32": 4, "F16": 2, "BF16": 2, "I64": 8, "I32": 4, "I16": 2, "I8": 1, "U8": 1, "BOOL": 1,
             "F8_E4M3": 1, "F8_E5M2": 1, "U16": 2, "U32": 4, "U64": 8}


def parse_size(text: str | int) -> int:
    """``"8GB"``, ``"512MiB"``, ``"1.5G"`` or a number of bytes -> bytes (decimal ``GB``, binary ``GiB``).

    Raises:
        InputError: the text is not a size.
    """
    if isinstance(text, int) and not isinstance(text, bool):
        if text <= 0:
            raise InputError(f"a size must be positive, got {text}")
        return text
    s = str(text).strip().upper().replace(" ", "")
    units = {"TIB": 2**40, "GIB": 2**30, "MIB": 2**20, "KIB": 2**10, "TB": 10**12, "GB": 10**9, "MB": 10**6,
             "KB": 10**3, "T": 10**12, "G": 10**9, "M": 10**6, "K": 10**3, "B": 1}
    for unit, mult in units.items():
        if s.endswith(unit):
            number = s[: -len(unit)]
            break
    else:
        number, mult = s, 1
    try:
        value = float(number)
    except ValueError:
        raise InputError(f"cannot read {text!r} as a size; write e.g. 8GB, 512MiB or 1000000") from None
    if not value > 0:
        raise InputError(f"a size must be positive, got {text!r}")
    return int(value * mult)


# --------------------------------------------------------------------------- reading the input


@dataclass(frozen=True)
class SourceTensor:
    """One tensor of the input checkpoint: where it is and what it is (read from the shard headers)."""

    name: str
    file: str
    dtype: str
    shape: tuple[int, ...]

    @property
    def n_elements(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64)) if self.shape else 1


class HFCheckpoint:
    """A HuggingFace model folder, read one tensor at a time through safetensors' memory map.

    Opening checks the folder completely without reading any weight: ``config.json``, the index (if any),
    that every shard exists and is a readable safetensors file whose header fits its size, and that every
    tensor the index names is in the shard it names.

    Raises:
        InputError: the folder, ``config.json`` or a shard is missing.
        FormatError: an unreadable or truncated shard, or an index naming a tensor its shard does not hold;
            the message names the file and the tensor.
    """

    def __init__(self, folder: str | os.PathLike[str]) -> None:
        from safetensors import safe_open

        self.folder = Path(folder)
        if not self.folder.is_dir():
            raise InputError(f"model folder {str(self.folder)!r} does not exist or is not a folder")
        cfg = self.folder / "config.json"
        if not cfg.is_file():
            raise InputError(f"{str(cfg)!r} is missing; a HuggingFace model folder needs its config.json")
        try:
            self.config: dict[str, Any] = json.loads(cfg.read_text(encoding="utf-8"))
        except ValueError as exc:
            raise FormatError(f"{str(cfg)!r} is not valid JSON ({exc})") from None
        index = self.folder / _HF_INDEX
        if index.is_file():
            try:
                weight_map = dict(json.loads(index.read_text(encoding="utf-8"))["weight_map"])
            except (ValueError, KeyError, TypeError) as exc:
                raise FormatError(f"{str(index)!r} is not a safetensors index (no weight_map: {exc})") from None
        elif (self.folder / _HF_SINGLE).is_file():
            weight_map = None
        else:
            raise InputError(f"{str(self.folder)!r} holds neither {_HF_SINGLE} nor {_HF_INDEX}; save the model "
                             "with save_pretrained(..., safe_serialization=True)")
        files = sorted(set(weight_map.values())) if weight_map is not None else [_HF_SINGLE]
        self.tensors: dict[str, SourceTensor] = {}
        self._ranges: dict[str, tuple[int, int]] = {}  # tensor -> (first byte in its shard, byte count)
        for fname in files:
            path = self.folder / fname
            if not path.is_file():
                first = next(k for k, v in (weight_map or {}).items() if v == fname)
                raise InputError(f"shard {str(path)!r} is missing (the index puts tensor {first!r} there); "
                                 "download the complete model")
            ranges = self._check_size(path)
            try:
                handle = safe_open(str(path), framework="pt")
                keys = list(handle.keys())
                infos = {k: (handle.get_slice(k).get_dtype(), tuple(handle.get_slice(k).get_shape())) for k in keys}
            except Exception as exc:  # safetensors raises several types (SafetensorError, OSError, panics)
                raise FormatError(f"shard {str(path)!r} is not a readable safetensors file ({type(exc).__name__}: "
                                  f"{exc}); it is truncated or corrupted: download it again") from None
            del handle  # reads open the shard again: its memory map lives only while a tensor is read
            wanted = [k for k, v in weight_map.items() if v == fname] if weight_map is not None else keys
            for k in wanted:
                if k not in infos:
                    raise FormatError(f"{_HF_INDEX} puts tensor {k!r} in shard {str(path)!r}, which does not hold "
                                      "it; the index and the shards do not belong together")
                dtype, shape = infos[k]
                self.tensors[k] = SourceTensor(name=k, file=fname, dtype=str(dtype), shape=shape)
                self._ranges[k] = ranges[k]
        self.files = files

    @staticmethod
    def _check_size(path: Path) -> dict[str, tuple[int, int]]:
        """A shard whose data section is shorter than its header says is truncated (safetensors maps it lazily).
        Returns every tensor's ``(first byte in the file, byte count)``."""
        size = path.stat().st_size
        n, head = read_safetensors_header(path, "; download it again")
        try:
            spans = {k: (int(v["data_offsets"][0]), int(v["data_offsets"][1]))
                     for k, v in head.items() if k != "__metadata__"}
        except (ValueError, TypeError, KeyError, AttributeError, IndexError) as exc:
            raise FormatError(f"shard {str(path)!r} has an unreadable header ({exc}); download it again") from None
        ends = {k: b for k, (_, b) in spans.items()}
        end = max(ends.values(), default=0)
        if size < 8 + n + end:
            last = max(ends, key=lambda k: ends[k])
            raise FormatError(f"shard {str(path)!r} is truncated: {size} bytes, its header needs {8 + n + end} "
                              f"(tensor {last!r} ends beyond the file); download it again")
        return {k: (8 + n + a, max(0, b - a)) for k, (a, b) in spans.items()}

    def prefetch(self, name: str) -> None:
        """Ask the operating system to start reading tensor ``name`` from disk in the background
        (``posix_fadvise(WILLNEED)``), so that it is in the page cache when read; a no-op where that call
        does not exist. Returns at once."""
        if not hasattr(os, "posix_fadvise") or name not in self._ranges:
            return
        start, length = self._ranges[name]
        try:
            fd = os.open(self.folder / self.tensors[name].file, os.O_RDONLY)
        except OSError:
            return  # the read itself reports a missing file
        try:
            os.posix_fadvise(fd, start, length, os.POSIX_FADV_WILLNEED)
        except OSError as exc:  # advice only: reading works without it
            log.debug("posix_fadvise on %s failed: %s", self.tensors[name].file, exc)
        finally:
            os.close(fd)

    @property
    def fp32_bytes(self) -> int:
        """Bytes of every tensor at 4 bytes per element: what loading the model in float32 needs."""
        return 4 * sum(t.n_elements for t in self.tensors.values())

    def fingerprint(self) -> str:
        """blake2b-128 over every tensor's name, file, dtype and shape and every shard's size."""
        h = hashlib.blake2b(digest_size=16)
        for t in self.tensors.values():
            h.update(f"{t.name}|{t.file}|{t.dtype}|{list(t.shape)}\n".encode())
        for f in self.files:
            h.update(f"{f}|{(self.folder / f).stat().st_size}\n".encode())
        return h.hexdigest()

    @contextmanager
    def _slice(self, name: str) -> Iterator[Any]:
        """safetensors' lazy slice of tensor ``name``; the shard's memory map is closed afterwards, so pages
        read through it do not stay mapped (and counted in the resident set) while other tensors are read."""
        from safetensors import safe_open

        t = self.tensors[name]
        try:
            with safe_open(str(self.folder / t.file), framework="pt") as handle:
                yield handle.get_slice(name)
        except (FormatError, InputError):
            raise
        except Exception as exc:
            raise FormatError(f"cannot read tensor {name!r} from shard {str(self.folder / t.file)!r} "
                              f"({type(exc).__name__}: {exc}); the file is corrupted") from None

    def read(self, name: str) -> torch.Tensor:
        """Tensor ``name`` as stored (a copy out of the memory map)."""
        with self._slice(name) as sl:
            return sl[...]

    def read_float(self, name: str, start: int = 0, stop: int | None = None) -> torch.Tensor:
        """Rows ``start:stop`` (all by default) of tensor ``name`` as ``float32`` (exact for float16/bfloat16),
        converted a block of rows at a time (no full-size copy in the stored dtype)."""
        t = self.tensors[name]
        if t.dtype not in SUPPORTED_DTYPES:
            raise InputError(f"tensor {name!r} in shard {str(self.folder / t.file)!r} has dtype {t.dtype}; "
                             f"only {sorted(SUPPORTED_DTYPES)} weights can be quantized (convert the checkpoint "
                             "to bfloat16/float16/float32 first)")
        if not t.shape:
            return self.read(name).to(torch.float32)
        stop = t.shape[0] if stop is None else stop
        out = torch.empty((stop - start,) + t.shape[1:], dtype=torch.float32)
        step = max(1, _CONVERT_BLOCK_ELEMENTS // max(1, t.n_elements // max(t.shape[0], 1)))
        with self._slice(name) as sl:
            for a in range(start, stop, step):
                b = min(stop, a + step)
                out[a - start:b - start] = sl[a:b]
        return out


def _skeleton(folder: Path) -> torch.nn.Module:
    """The architecture of ``config.json`` on the ``meta`` device (shapes and module order, no weights)."""
    from bitvert.models._deps import quiet_transformers, require

    transformers = require("transformers", "pip install 'transformers>=5,<6'", f"streaming {str(folder)!r}")
    try:
        config = transformers.AutoConfig.from_pretrained(str(folder), local_files_only=True)
    except (OSError, ValueError) as exc:
        raise InputError(f"cannot read the transformers config of {str(folder)!r}: {exc}") from None
    arch = (getattr(config, "architectures", None) or [""])[0]
    hint = "streaming handles causal LMs (*ForCausalLM); prune other models in memory (bitvert prune without --stream)"
    if arch and not arch.endswith("ForCausalLM"):
        raise UnsupportedLayerError(f"{str(folder)!r} is a {arch}; {hint}")
    try:
        with quiet_transformers(transformers), torch.device("meta"):
            return transformers.AutoModelForCausalLM.from_config(config)
    except (ValueError, KeyError) as exc:
        raise UnsupportedLayerError(f"{str(folder)!r}: no causal-LM architecture for its config ({exc}); {hint}") \
            from None


def _tie_sources(model: torch.nn.Module) -> dict[str, list[str]]:
    """Parameter name -> every name sharing that parameter (tied weights), registration order."""
    by_id: dict[int, list[str]] = {}
    for name, p in model.named_parameters(remove_duplicate=False):
        by_id.setdefault(id(p), []).append(name)
    return {n: names for names in by_id.values() for n in names}


# --------------------------------------------------------------------------- planning


@dataclass
class _Unit:
    """One entry of an output shard: a quantized layer's weight (``job``) or a tensor copied as is."""

    key: str
    source: str
    n_elements: int
    est_bytes: int
    job: _LayerJob | None = None


@dataclass(frozen=True)
class StreamResult:
    """What :func:`stream_prune` wrote.

    Attributes:
        out_dir: the output folder; ``index``: its index file.
        report: the pruning report (per-layer records; their integer arrays are not kept).
        n_weights_quantized: weights of the quantized layers; ``n_tensors_copied``: tensors copied unchanged.
        output_bytes: bytes of every output shard together; ``bits_per_weight``: encoded bytes of the
            quantized layers (columns, metadata, channel index; no scales) × 8 / their weights.
        seconds: wall time of this call; ``resumed_shards``: shards found finished and kept.
        stage_seconds: wall seconds per stage (:data:`STREAM_STAGES`: ``read`` the input and convert it to
            float32, ``quantize``, ``score`` the channels (pass 1), ``prune``, ``encode``, ``write`` the
            shards (hashing them as they are written), ``checksum`` the finished shards a resumed run finds,
            and ``setup``: opening the input and planning); ``stage_cpu_seconds``:
            process CPU seconds (all threads) of the same stages.
    """

    out_dir: Path
    index: Path
    report: ModelPruneReport
    n_weights_quantized: int
    n_tensors_copied: int
    output_bytes: int
    bits_per_weight: float
    seconds: float
    resumed_shards: int
    stage_seconds: dict[str, float] = field(default_factory=dict)
    stage_cpu_seconds: dict[str, float] = field(default_factory=dict)


_FILE_DIGEST_BYTES = 16
"""blake2b digest size of an output shard's checksum."""


def _file_checksum(path: Path, timer: StageTimer | None = None) -> str:
    with (timer or StageTimer()).stage("checksum"):
        h = hashlib.blake2b(digest_size=_FILE_DIGEST_BYTES)
        with open(path, "rb") as fh:
            while chunk := fh.read(1 << 24):
                h.update(chunk)
        return h.hexdigest()


def _write_json_atomic(path: Path, doc: Any) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        tmp.write_text(json.dumps(doc, indent=1, sort_keys=True, allow_nan=False) + "\n", encoding="utf-8")
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


_RECORD_SCALARS = ("name", "kind", "shape", "out_axis", "role", "reason", "n_weights", "n_channels", "n_sensitive",
                   "n_sensitive_global", "weight_bits_total", "int_sse", "float_sse", "float_energy", "layout")


def _record_json(rec: LayerPruneRecord) -> dict[str, Any]:
    d = {k: getattr(rec, k) for k in _RECORD_SCALARS}
    d["shape"] = list(rec.shape)
    d["has_metadata"] = rec.metadata is not None
    d["columns"] = {str(n): c for n, c in sorted(rec.columns.items())}
    return d


def _record_from_json(d: Mapping[str, Any]) -> LayerPruneRecord:
    kw = {k: d[k] for k in _RECORD_SCALARS}
    kw["shape"] = tuple(kw["shape"])
    columns = {int(n): int(c) for n, c in d.get("columns", {}).items()}
    return LayerPruneRecord(**kw, columns=columns, metadata={} if d["has_metadata"] else None)


def _strip(rec: LayerPruneRecord) -> LayerPruneRecord:
    """The record without its arrays (what the report keeps once the layer is encoded)."""
    return _record_from_json(_record_json(rec))


def stream_prune(
    model_dir: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    preset: PipelinePreset | str,
    rules: Mapping[str, LayerRule] | None = None,
    shard_size_bytes: int = DEFAULT_SHARD_SIZE_BYTES,
    model_info: Mapping[str, Any] | None = None,
    progress: bool = False,
) -> StreamResult:
    """Prune and encode a HuggingFace causal-LM folder tensor by tensor into sharded BBS files.

    Args:
        model_dir: the HuggingFace folder (config.json + safetensors shards).
        out_dir: output folder; created if missing. An unfinished run of the same input and settings
            there is resumed (finished shards are kept); anything else there is refused.
        preset: a :class:`PipelinePreset` or a preset name; weight-only presets only (activation ranges
            need calibration batches through the whole model, which streaming does not run).
        rules: extra regex -> role rules, applied before ``preset.rules`` (as :func:`prune_model_`).
        shard_size_bytes: target size of an output shard.
        model_info: JSON-friendly description of the model stored in the index (default: its folder name).
        progress: show progress bars (weights/s and ETA) on stderr.

    Returns:
        A :class:`StreamResult`.

    Raises:
        InputError, FormatError: a missing or unreadable shard, an index naming a tensor no shard holds, a
            weight in an unsupported dtype, a tensor whose shape disagrees with config.json, a non-empty
            ``out_dir`` that is not an unfinished run of the same job.
        ConfigError: the preset needs calibration (activation quantization, gptq, Hessians).
    """
    t_start = time.perf_counter()
    timer = StageTimer(order=STREAM_STAGES)
    with timer.stage("setup"):
        preset = get_preset(preset)
        if preset.needs_calibration:
            why = ("quantizes activations" if preset.quant.act_bits is not None else
                   "uses the gptq solver" if preset.solver == "gptq" else
                   "needs the layers' input Hessians (sensitivity=output_error or target_bits)")
            raise ConfigError(f"preset {preset.name!r} {why}, which needs calibration batches through the whole "
                              "model; streaming is weight-only and calibration-free: use a greedy weight-only preset "
                              "(e.g. llm-moderate) or prune in memory without --stream")
        if isinstance(shard_size_bytes, bool) or not isinstance(shard_size_bytes, int) or shard_size_bytes < 1:
            raise InputError(f"shard_size_bytes must be a positive integer, got {shard_size_bytes!r}")
        src = HFCheckpoint(model_dir)
        out = Path(out_dir)
        model = _skeleton(src.folder)
        all_rules: dict[str, Any] = {**(rules or {}), **preset.rules}
        layers = select_layers(model, preset.quant, all_rules, preset.first_layer, preset.last_layer)
        jobs = _jobs_from_model(layers)
        for job in jobs:
            job.module = None  # results are encoded, never written back into a module
            job.scratch_weight = True  # each weight is read for this job alone: dequantize in place, no second copy
        _prepare_jobs(jobs, preset)
        units = _plan_units(src, model, jobs)
        shards = _pack_shards(units, shard_size_bytes)
        names = [f"model-{i + 1:05d}-of-{len(shards):05d}.bbs.safetensors" for i in range(len(shards))]
        fingerprint = text_checksum(json.dumps({
            "source": src.fingerprint(), "preset": preset.to_dict(), "rules": {k: str(v) for k, v in all_rules.items()},
            "shard_size_bytes": shard_size_bytes, "format": SHARDED_FORMAT_VERSION,
        }, sort_keys=True, default=str))
        state = _open_state(out, fingerprint)

    kind = _sensitivity_kind(preset)
    scored = _scored_jobs(jobs, preset)
    source_of = {u.job.name: u.source for u in units if u.job is not None}
    scores = _pass1_scores(src, scored, source_of, kind, preset, out, state, progress, timer)
    mask_of, count_of = _select_for_jobs(scores, preset)

    n_total = sum(u.n_elements for u in units)
    bar = tqdm(total=n_total, desc=f"prune+encode ({preset.name})", unit="w", unit_scale=True,
               disable=not progress, leave=False, smoothing=0.1)
    resumed = 0
    next_source = {id(u): v.source for u, v in zip(units, units[1:])}  # read ahead one tensor
    for sname, shard in zip(names, shards):
        done = state["shards"].get(sname)
        path = out / sname
        if done is not None and path.is_file() and path.stat().st_size == done["size_bytes"] \
                and _file_checksum(path, timer) == done["blake2b"]:
            resumed += 1
            bar.update(sum(u.n_elements for u in shard))
            continue
        state["shards"].pop(sname, None)
        tensors: dict[str, EncodedTensor] = {}
        scales: dict[str, torch.Tensor] = {}
        copied: dict[str, torch.Tensor] = {}
        records: list[dict[str, Any]] = []
        for unit in shard:
            if id(unit) in next_source:
                src.prefetch(next_source[id(unit)])
            if unit.job is None:
                with timer.stage("read"):
                    copied[unit.key] = src.read(unit.source)
            else:
                rec, enc, scale = _prune_encode(src, unit, preset, mask_of, count_of, timer)
                records.append(_record_json(rec))
                if enc is not None and scale is not None:
                    tensors[unit.key], scales[unit.key] = enc, scale
                else:  # role fp32: copied as stored
                    with timer.stage("read"):
                        copied[unit.key] = src.read(unit.source)
            bar.update(unit.n_elements)
        digest = hashlib.blake2b(digest_size=_FILE_DIGEST_BYTES)  # the shard's checksum, hashed as it is written
        with timer.stage("write"):
            save_encoded(path, tensors, scales, copied, {"sharded_index": INDEX_NAME, "shard": sname}, digest=digest)
        del tensors, scales, copied
        state["shards"][sname] = {"size_bytes": path.stat().st_size, "blake2b": digest.hexdigest(),
                                  "records": records, "encoded": [u.key for u in shard if u.job is not None
                                                                  and u.job.role is not LayerRole.FP32],
                                  "keys": [u.key for u in shard]}
        _write_json_atomic(out / STATE_NAME, state)
    bar.close()

    by_name = {r["name"]: r for s in names for r in state["shards"][s]["records"]}
    report = ModelPruneReport(preset=preset, layers=[_record_from_json(by_name[j.name]) for j in jobs],
                              prune_seconds=time.perf_counter() - t_start)
    info = dict(model_info or {"name": src.folder.name})
    with timer.stage("write"):
        index = _write_index(out, src, names, state, report, info)
    for extra in (STATE_NAME, SCORES_NAME):
        (out / extra).unlink(missing_ok=True)
    output_bytes = sum(state["shards"][s]["size_bytes"] for s in names)
    model_out = ShardedEncodedModel(index)
    enc_bytes = sum(model_out.header(n)["payload_bytes"] + model_out.header(n)["metadata_bytes"]
                    + model_out.header(n)["index_bytes"] for n in model_out.encoded_names)
    nq = report.n_weights
    seconds = time.perf_counter() - t_start
    log.info("streamed %s: %d quantized weights, %.3f bits/weight, %d shards (%d resumed), %.1f s", src.folder, nq,
             8 * enc_bytes / nq if nq else 0.0, len(names), resumed, seconds)
    return StreamResult(out_dir=out, index=index, report=report, n_weights_quantized=nq,
                        n_tensors_copied=sum(1 for u in units if u.job is None), output_bytes=output_bytes,
                        bits_per_weight=8 * enc_bytes / nq if nq else 0.0, seconds=seconds, resumed_shards=resumed,
                        stage_seconds=timer.ordered(), stage_cpu_seconds=timer.ordered_cpu())


def _plan_units(src: HFCheckpoint, model: torch.nn.Module, jobs: Sequence[_LayerJob]) -> list[_Unit]:
    """Every output tensor in the architecture's order, checked against the files (presence, dtype, shape)."""
    ties = _tie_sources(model)
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    job_of = {weight_key(j.name): j for j in jobs}
    units: list[_Unit] = []
    for key, shape in expected.items():
        source = key
        if key not in src.tensors:
            partners = [n for n in ties.get(key, []) if n in src.tensors]
            if key in job_of and partners:
                source = partners[0]
            elif partners:
                continue  # a tied copy of a tensor the files hold and that is not quantized: stored once
            else:
                raise FormatError(f"tensor {key!r}, which the architecture of {str(src.folder / 'config.json')!r} "
                                  f"needs, is in no shard of {str(src.folder)!r}")
        t = src.tensors[source]
        if t.shape != shape:
            raise FormatError(f"tensor {source!r} in shard {str(src.folder / t.file)!r} has shape {list(t.shape)}, "
                              f"but config.json gives {key!r} the shape {list(shape)}; the config and the weights do "
                              "not belong together")
        job = job_of.get(key)
        if job is not None and job.role is not LayerRole.FP32 and t.dtype not in SUPPORTED_DTYPES:
            raise InputError(f"tensor {source!r} in shard {str(src.folder / t.file)!r} has dtype {t.dtype}; only "
                             f"{sorted(SUPPORTED_DTYPES)} weights can be quantized (convert the checkpoint first)")
        est = t.n_elements * _ITEMSIZE.get(t.dtype, 4) if job is None or job.role is LayerRole.FP32 else t.n_elements
        units.append(_Unit(key=key, source=source, n_elements=t.n_elements, est_bytes=est, job=job))
    known = set(expected)
    for name, t in src.tensors.items():
        if name not in known:
            log.warning("tensor %r of %s is not part of the architecture; it is copied unchanged", name, t.file)
            units.append(_Unit(key=name, source=name, n_elements=t.n_elements,
                               est_bytes=t.n_elements * _ITEMSIZE.get(t.dtype, 4)))
    return units


def _pack_shards(units: Sequence[_Unit], target: int) -> list[list[_Unit]]:
    """Consecutive units into shards of about ``target`` bytes (a larger unit gets a shard of its own)."""
    shards: list[list[_Unit]] = [[]]
    size = 0
    for u in units:
        if shards[-1] and size + u.est_bytes > target:
            shards.append([])
            size = 0
        shards[-1].append(u)
        size += u.est_bytes
    return [s for s in shards if s]


def _open_state(out: Path, fingerprint: str) -> dict[str, Any]:
    """The resume state of ``out``: a fresh one for a new or empty folder, the stored one for the same job."""
    if out.exists() and not out.is_dir():
        raise InputError(f"output {str(out)!r} is a file; give a folder")
    if (out / INDEX_NAME).exists():
        raise InputError(f"{str(out)!r} already holds a finished sharded model ({INDEX_NAME}); choose a new folder")
    state_path = out / STATE_NAME
    if state_path.is_file():
        try:
            state = json.loads(state_path.read_text(encoding="utf-8"))
        except ValueError:
            state = {}
        if state.get("fingerprint") == fingerprint:
            log.info("resuming the unfinished run in %s (%d shards done)", out, len(state.get("shards", {})))
            return state
        raise InputError(f"{str(out)!r} holds an unfinished run of another input or other settings; choose a new "
                         "folder or delete it")
    if out.is_dir() and any(out.iterdir()):
        raise InputError(f"output folder {str(out)!r} is not empty; choose a new or empty folder")
    out.mkdir(parents=True, exist_ok=True)
    state = {"fingerprint": fingerprint, "shards": {}}
    _write_json_atomic(state_path, state)
    return state


def _pass1_scores(src: HFCheckpoint, scored: Sequence[_LayerJob], source_of: Mapping[str, str], kind: str,
                  preset: PipelinePreset, out: Path, state: dict[str, Any], progress: bool,
                  timer: StageTimer | None = None) -> dict[str, np.ndarray]:
    """Channel scores of every pruned layer, in layer order (read once, kept for a resume)."""
    timer = timer or StageTimer()
    if not scored:
        return {}
    if float(preset.sensitive_fraction) == 0.0:  # nothing can be selected: the scores cannot matter
        return {j.name: np.zeros(int(j.weight.shape[j.out_axis])) for j in scored}
    path = out / SCORES_NAME
    if state.get("scores") and path.is_file():
        from safetensors.torch import load_file

        stored = load_file(str(path))
        if tensor_checksum(torch.cat([stored[j.name] for j in scored])) == state["scores"]:
            return {j.name: stored[j.name].numpy() for j in scored}
    scores: dict[str, np.ndarray] = {}
    total = sum(int(j.weight.numel()) for j in scored)
    for j in tqdm(scored, desc="channel scores", unit="layer", disable=not progress, leave=False, total=len(scored)):
        t = src.tensors[source_of[j.name]]
        parts = []
        for a, b in _row_blocks(j, t):
            with timer.stage("read"):
                w = src.read_float(t.name, a, b)
            try:
                with timer.stage("quantize"):
                    _, scale = quantize_weight(w, j.config.weight_bits, j.out_axis, j.config.weight_granularity)
            except InputError as exc:
                raise InputError(f"tensor {t.name!r} in shard {str(src.folder / t.file)!r}: {exc}") from None
            with timer.stage("score"):
                parts.append(channel_scores(w, scale, j.out_axis, kind))
            del w
        scores[j.name] = np.concatenate(parts)
    tensors = {n: torch.from_numpy(np.ascontiguousarray(s, dtype=np.float64)) for n, s in scores.items()}
    save_tensors(path, tensors)
    state["scores"] = tensor_checksum(torch.cat([tensors[j.name] for j in scored]))
    _write_json_atomic(out / STATE_NAME, state)
    log.info("channel scores of %d layers (%d weights) computed", len(scored), total)
    return scores


_BLOCK_ELEMENTS = 1 << 23
"""Layers larger than this are quantized and pruned a block of output channels at a time (about this many
weights per block), so a vocabulary-sized LM head never exists as one float32 array."""


def _row_blocks(job: _LayerJob, t: SourceTensor) -> list[tuple[int, int]]:
    """``(start, stop)`` blocks of output channels a layer is processed in: one block, or about
    ``_BLOCK_ELEMENTS`` weights each for a large ``linear`` layer with per-channel scales (rows independent)."""
    rows = t.shape[0]
    blocked = (job.kind == "linear" and job.out_axis == 0 and job.config.weight_granularity == "per_channel"
               and t.n_elements > _BLOCK_ELEMENTS and rows > 1)
    step = max(1, _BLOCK_ELEMENTS // max(1, t.n_elements // rows)) if blocked else rows
    return [(a, min(rows, a + step)) for a in range(0, rows, step)]


def _joinable(preset: PipelinePreset) -> bool:
    """Whether blocks of a layer's output channels are encoded one at a time and joined
    (:func:`~bitvert.codec.tensor.concat_channels`): every layout but BitWave's, whose stored width is a
    whole-tensor maximum."""
    return not (preset.method in REGISTRY and get_method(preset.method).layout == TensorLayout.BITWAVE.value)


def _prune_encode(src: HFCheckpoint, unit: _Unit, preset: PipelinePreset, mask_of: Mapping[str, np.ndarray],
                  count_of: Mapping[str, int], timer: StageTimer | None = None,
                  ) -> tuple[LayerPruneRecord, EncodedTensor | None, torch.Tensor | None]:
    """Quantize, prune and encode one layer as the in-memory pipeline does: ``(record without arrays, encoded
    tensor, scale)``; both ``None`` for an fp32 layer.

    A large layer goes a block of output channels at a time through reading, quantizing, pruning and
    encoding; the encoded blocks are joined into the layer's encoding (byte for byte the one-shot encoding),
    so no whole-layer integer, per-group or code array exists (BitWave: the integers are assembled and
    encoded whole)."""
    job = unit.job
    assert job is not None
    timer = timer or StageTimer()
    if job.role is LayerRole.FP32:
        return _process_layer(job, preset, None, None, 0), None, None
    t = src.tensors[unit.source]
    mask = mask_of.get(job.name)
    parts: list[LayerPruneRecord] = []
    encs: list[EncodedTensor] = []
    blocks = _row_blocks(job, t)
    apart = len(blocks) == 1 or _joinable(preset)
    q_full = None if apart else np.empty(t.shape, dtype=np.int16)
    where = repr(str(src.folder))
    try:
        for a, b in blocks:
            with timer.stage("read"):
                block = replace(job, weight=src.read_float(unit.source, a, b))
            with timer.stage("quantize"):
                qs = quantize_weight(block.weight, job.config.weight_bits, job.out_axis, job.config.weight_granularity)
            with timer.stage("prune"):
                part = _process_layer(block, preset, qs, None if mask is None else mask[a:b],
                                      count_of.get(job.name, 0))
            del block, qs
            if apart:
                with timer.stage("encode"):
                    encs.append(_encode_layer(checkpoint_layer(part), preset, where))
                part.q = None
                if part.metadata is not None:
                    part.metadata = {}
            else:  # the block's integers go straight into the layer's array
                q_full[a:b] = part.q  # type: ignore[index]
                part.q = None
            parts.append(part)
    except InputError as exc:
        raise InputError(f"tensor {unit.source!r} in shard {str(src.folder / t.file)!r}: {exc}") from None
    rec = parts[0] if len(parts) == 1 else _merge_blocks(parts, t.shape, preset, q_full)
    del parts, q_full
    scale = torch.from_numpy(np.ascontiguousarray(rec.scale, dtype=np.float32))
    with timer.stage("encode"):
        if not apart:
            enc = _encode_layer(checkpoint_layer(rec), preset, where)
        elif len(encs) == 1:
            enc = encs[0]
        else:
            columns, source = (None, None) if encs[0].layout is TensorLayout.PLAIN else layer_encoding_source(
                preset, rec.channel_bits, rec.sensitive if rec.sensitive is not None
                else np.zeros(rec.n_channels, dtype=bool))
            enc = concat_channels(encs, weight_key(job.name), columns=columns, source=source)
    return _strip(rec), enc, scale


def _merge_blocks(parts: Sequence[LayerPruneRecord], shape: tuple[int, ...], preset: PipelinePreset,
                  q: np.ndarray | None) -> LayerPruneRecord:
    """One layer's record from the records of its blocks of output channels (``linear``: groups run along
    rows, so the group arrays of consecutive blocks concatenate in the layer's group order). Integer results
    are exactly those of the whole layer; the float error sums are added block by block (a different
    summation order than one pass, so they may differ in the last bits). ``q``: the layer's integers, already
    assembled from the blocks (``None`` when the blocks were encoded apart)."""
    first = parts[0]
    cat = (lambda attr: None if getattr(first, attr) is None
           else np.concatenate([getattr(p, attr) for p in parts], axis=0))
    metadata = None
    if first.metadata is not None:
        metadata = {k: np.concatenate([p.metadata[k] for p in parts]) for k in first.metadata}  # type: ignore[index]
    columns: dict[int, int] = {}
    for p in parts:
        for n, c in p.columns.items():
            columns[n] = columns.get(n, 0) + c
    layout = None
    if first.layout is not None:
        layout = make_layout(shape, first.kind, preset.group_size, preset.remainder).to_dict()
    return LayerPruneRecord(
        name=first.name, kind=first.kind, shape=tuple(shape), out_axis=first.out_axis, role=first.role,
        reason=first.reason, n_weights=sum(p.n_weights for p in parts), n_channels=sum(p.n_channels for p in parts),
        n_sensitive=sum(p.n_sensitive for p in parts), n_sensitive_global=first.n_sensitive_global,
        weight_bits_total=sum(p.weight_bits_total for p in parts), int_sse=sum(p.int_sse for p in parts),
        float_sse=sum(p.float_sse for p in parts), float_energy=sum(p.float_energy for p in parts),
        q=q, scale=cat("scale"), channel_bits=cat("channel_bits"), sensitive=cat("sensitive"),
        metadata=metadata, layout=layout, columns=dict(sorted(columns.items())),
    )


def _write_index(out: Path, src: HFCheckpoint, names: Sequence[str], state: Mapping[str, Any],
                 report: ModelPruneReport, model_info: Mapping[str, Any]) -> Path:
    weight_map: dict[str, str] = {}
    encoded: list[str] = []
    for s in names:
        for key in state["shards"][s]["keys"]:
            weight_map[key] = s
        encoded += state["shards"][s]["encoded"]
    doc = {
        "format": SHARDED_FORMAT,
        "format_version": SHARDED_FORMAT_VERSION,
        "weight_map": weight_map,
        "encoded_tensors": encoded,
        "shards": {s: {"size_bytes": state["shards"][s]["size_bytes"], "blake2b": state["shards"][s]["blake2b"]}
                   for s in names},
        "source": checkpoint_header(report, model_info),
    }
    text = json.dumps(doc, sort_keys=True, allow_nan=False)
    shutil.copyfile(src.folder / "config.json", out / "config.json")
    _write_json_atomic(out / INDEX_NAME, {**doc, "index_checksum": text_checksum(text)})
    return out / INDEX_NAME


# --------------------------------------------------------------------------- reading the output lazily


class _ShardReader(Mapping[str, torch.Tensor]):
    """One output shard: its validated header, and its tensors read (and checksum-verified) one at a time."""

    def __init__(self, path: Path, expected: Mapping[str, Any]) -> None:
        from safetensors import safe_open

        self.where = repr(str(path))
        if not path.is_file():
            raise FormatError(f"shard {self.where} named by the index is missing; the model is incomplete")
        if path.stat().st_size != int(expected["size_bytes"]):
            raise FormatError(f"shard {self.where} has {path.stat().st_size} bytes, the index says "
                              f"{expected['size_bytes']}; it is truncated or was replaced")
        self.path = path
        try:
            with safe_open(str(path), framework="pt") as handle:
                meta = handle.metadata() or {}
                self._keys = set(handle.keys())
        except Exception as exc:
            raise FormatError(f"shard {self.where} is not a readable safetensors file ({type(exc).__name__}: "
                              f"{exc})") from None
        self.headers, self.sums, _ = read_header(self.where, meta)
        missing = sorted(set(self.sums) ^ self._keys)
        if missing:
            raise FormatError(f"{self.where}: tensor {missing[0]!r} is missing or not in its checksum table")

    def __getitem__(self, key: str) -> torch.Tensor:
        if key not in self._keys:
            raise KeyError(key)
        from safetensors import safe_open

        with safe_open(str(self.path), framework="pt") as handle:  # mapped only while the tensor is read
            t = handle.get_tensor(key)
        if tensor_checksum(t) != self.sums[key]:
            raise FormatError(f"{self.where}: tensor {key!r} fails its checksum; the file is corrupted or was edited")
        return t

    def __iter__(self) -> Iterator[str]:
        return iter(sorted(self._keys))

    def __len__(self) -> int:
        return len(self._keys)


class _LazyView(Mapping[str, Any]):
    def __init__(self, keys: Sequence[str], get: Any) -> None:
        self._keys, self._get = list(keys), get
        self._set = set(self._keys)

    def __getitem__(self, key: str) -> Any:
        if key not in self._set:
            raise KeyError(key)
        return self._get(key)

    def __iter__(self) -> Iterator[str]:
        return iter(self._keys)

    def __len__(self) -> int:
        return len(self._keys)


class ShardedEncodedModel:
    """A sharded BBS model (``model.bbs.safetensors.index.json`` + shards), read lazily.

    Opening reads the index and every shard's header (validated, checksummed); tensors are read one at a
    time when asked for, each verified against its checksum. ``tensors``, ``scales`` and ``state`` are
    read-only mappings with the interface of :class:`~bitvert.codec.container.EncodedModel`'s dicts, so
    :func:`bitvert.codec.load_state_dict`, :func:`bitvert.codec.load_model_` and
    :func:`bitvert.codec.to_pruned_checkpoint` accept this object too.

    Raises:
        InputError: the path is neither an index file nor a folder holding one.
        FormatError: a malformed or edited index, a missing or truncated shard, a corrupted tensor.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        p = Path(path)
        index = p / INDEX_NAME if p.is_dir() else p
        if not index.is_file():
            raise InputError(f"{str(p)!r} is not a sharded BBS model (no {INDEX_NAME}); an unfinished streaming run "
                             "is resumed by running `bitvert prune --stream` again")
        self.index_path = index
        self.folder = index.parent
        where = repr(str(index))
        try:
            doc = json.loads(index.read_text(encoding="utf-8"))
            stored_sum = doc.pop("index_checksum")
        except (ValueError, KeyError, AttributeError) as exc:
            raise FormatError(f"{where} is not a sharded BBS index ({type(exc).__name__}: {exc})") from None
        if doc.get("format") != SHARDED_FORMAT or doc.get("format_version") != SHARDED_FORMAT_VERSION:
            raise FormatError(f"{where}: format {doc.get('format')!r} version {doc.get('format_version')!r}; this "
                              f"bitvert reads {SHARDED_FORMAT!r} version {SHARDED_FORMAT_VERSION}")
        if text_checksum(json.dumps(doc, sort_keys=True, allow_nan=False)) != stored_sum:
            raise FormatError(f"{where}: the index checksum does not match; the index was edited or corrupted")
        self.weight_map: dict[str, str] = dict(doc["weight_map"])
        self.encoded_names: list[str] = list(doc["encoded_tensors"])
        self.shard_info: dict[str, dict[str, Any]] = dict(doc["shards"])
        self.source: dict[str, Any] = dict(doc["source"])
        self._shards = {s: _ShardReader(self.folder / s, info) for s, info in self.shard_info.items()}
        enc = set(self.encoded_names)
        for name in self.encoded_names:
            if name not in self._shards[self.weight_map[name]].headers:
                raise FormatError(f"{where}: tensor {name!r} is not encoded in shard {self.weight_map[name]!r}")
        self.state_names = [k for k in self.weight_map if k not in enc]
        self.tensors: Mapping[str, EncodedTensor] = _LazyView(self.encoded_names, lambda n: self._read(n)[0])
        self.scales: Mapping[str, torch.Tensor] = _LazyView(
            [n for n in self.encoded_names if self.header(n).get("scale")], self._scale)
        self.state: Mapping[str, torch.Tensor] = _LazyView(
            self.state_names, lambda k: self._shards[self.weight_map[k]][STATE_PREFIX + k])

    def header(self, name: str) -> dict[str, Any]:
        """The stored header of encoded tensor ``name`` (layout, shape, chunks, byte counts); reads no weights."""
        return dict(self._shards[self.weight_map[name]].headers[name])

    def _read(self, name: str) -> tuple[EncodedTensor, torch.Tensor | None]:
        shard = self._shards[self.weight_map[name]]
        return tensor_from_stored(shard.where, name, shard.headers[name], shard)

    def _scale(self, name: str) -> torch.Tensor:
        s = self._read(name)[1]
        assert s is not None
        return s

    def encoded(self, name: str) -> EncodedTensor:
        """Encoded tensor ``name`` (read from its shard, verified)."""
        if name not in self.tensors:
            raise InputError(f"no encoded tensor {name!r}; the model holds {self.encoded_names[:10]}")
        return self.tensors[name]

    def _single(self, name: str) -> EncodedModel:
        enc, scale = self._read(name) if name in self.tensors else (self.encoded(name), None)
        return EncodedModel(tensors={name: enc}, scales={} if scale is None else {name: scale})

    def decode(self, name: str) -> np.ndarray:
        """Integer weights of tensor ``name`` (``int16``)."""
        return self._single(name).decode(name)

    def float_weight(self, name: str) -> torch.Tensor:
        """``q * scale`` of tensor ``name`` as ``float32``."""
        return self._single(name).float_weight(name)

    def iter_float_state(self) -> Iterator[tuple[str, torch.Tensor]]:
        """Every tensor of the model as a float ``state_dict`` entry, one at a time, in index order."""
        for key in self.weight_map:
            if key in self.tensors:
                single = self._single(key)
                yield key, (single.float_weight(key) if key in single.scales else
                            torch.from_numpy(single.decode(key)).to(torch.float32))
            else:
                yield key, self.state[key]

    def stats(self) -> dict[str, Any]:
        """Per-tensor accounting and totals, as :meth:`EncodedModel.stats`, reading one tensor at a time
        (no weight is decoded)."""
        per: dict[str, Any] = {}
        for name in self.encoded_names:
            per[name] = self.tensors[name].stats()
        return EncodedModel.totals(per)

    def file_accounting(self) -> dict[str, int]:
        """:func:`~bitvert.codec.container.file_accounting` summed over the shards (plus the index file)."""
        total = {"file_bytes": 0, "header_bytes": 0, "weight_bytes": 0, "scale_bytes": 0, "state_bytes": 0}
        for s in self._shards:
            for k, v in file_accounting(self.folder / s).items():
                total[k] += v
        total["index_bytes"] = self.index_path.stat().st_size
        total["shards"] = len(self._shards)
        return total

    def verify_files(self) -> None:
        """Check every shard's file checksum against the index (reads every byte).

        Raises:
            FormatError: naming the first shard that differs.
        """
        for s, info in self.shard_info.items():
            if _file_checksum(self.folder / s) != info["blake2b"]:
                raise FormatError(f"shard {str(self.folder / s)!r} does not match the checksum in the index; it is "
                                  "corrupted or was replaced")


def open_encoded(path: str | os.PathLike[str]) -> EncodedModel | ShardedEncodedModel:
    """A ``*.bbs.safetensors`` file (read whole) or a sharded model's folder / index (read lazily)."""
    p = Path(path)
    if p.is_dir() or p.name.endswith(".index.json"):
        return ShardedEncodedModel(p)
    return load_encoded(p)
