"""Codec verification of a study's variants: encode, decode, compare bit for bit, reload and rerun."""

from __future__ import annotations

import copy
import logging
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["encode_and_verify"]

logger = logging.getLogger(__name__)


def encode_and_verify(model: Any, report: Any, model_info: dict[str, Any], scratch: Path, encoded_dir: Path,
                      name: str, keep_checkpoint_dir: Path | None, fp32: Any, probe_batch: Any) -> dict[str, Any]:
    """Encode one variant and verify the file.

    ``save_pruned`` -> BBS container ``encoded_dir/<name>.bbs.safetensors`` -> read back: decode every
    tensor and compare it with the pipeline's integers, then load the file into a fresh copy of ``fp32``
    and compare its output on ``probe_batch`` with the pruned ``model``'s. The intermediate
    ``pruned.safetensors`` is written into ``scratch`` and removed, or kept in ``keep_checkpoint_dir``.

    Returns:
        ``encoded_file``, ``file_bytes``, ``weight_bytes``, ``verified`` (integers and output identical),
        ``mismatched_layers`` and ``output_max_abs_diff``.
    """
    from bitvert.codec import encode_checkpoint_file, file_accounting, load_encoded, load_model_
    from bitvert.codec.checkpoint import weight_key
    from bitvert.models import run_module
    from bitvert.pipeline import save_pruned

    ckpt_dir = keep_checkpoint_dir if keep_checkpoint_dir is not None else scratch
    ckpt = save_pruned(ckpt_dir / f"{name}.safetensors", model, report, model_info)
    target = encoded_dir / f"{name}.bbs.safetensors"
    encode_checkpoint_file(ckpt, target)
    if keep_checkpoint_dir is None:
        ckpt.unlink()
    decoded = load_encoded(target)
    mismatched = []
    for rec in report.quantized_layers:
        key = weight_key(rec.name)
        got = decoded.decode(key) if key in decoded.tensors else None
        if got is None or got.shape != rec.q.shape or not np.array_equal(got, rec.q):
            mismatched.append(rec.name)
    if mismatched:
        logger.error("%s: decoded weights differ from the pipeline's in %d layer(s): %s", name, len(mismatched),
                     mismatched[:5])
    restored = copy.deepcopy(fp32)
    quantizer = load_model_(restored, decoded)
    try:
        expected = run_module(model, probe_batch)
        got_out = run_module(restored, probe_batch)
        diff = float((expected.float() - got_out.float()).abs().max()) if expected.shape == got_out.shape \
            else float("inf")
    finally:
        if quantizer is not None:
            quantizer.remove()
        del restored
    if diff != 0.0:
        logger.error("%s: the model loaded from %s differs from the pruned model by %g", name, target.name, diff)
    acc = file_accounting(target)
    return {"encoded_file": target.name, "file_bytes": int(acc["file_bytes"]),
            "weight_bytes": int(acc["weight_bytes"]), "verified": not mismatched and diff == 0.0,
            "mismatched_layers": mismatched, "output_max_abs_diff": diff}
