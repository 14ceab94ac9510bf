"""Argument validation shared by the public entry points."""

from __future__ import annotations

from typing import Any

import numpy as np

from bitvert.errors import InputError

MIN_BITS = 2
MAX_BITS = 8


def check_bits(bits: Any, name: str = "bits") -> int:
    """Return ``bits`` as an int after checking it lies in the supported range 2..8."""
    if isinstance(bits, bool) or not isinstance(bits, (int, np.integer)):
        raise InputError(f"{name} must be an integer between {MIN_BITS} and {MAX_BITS}, got {bits!r}")
    if not MIN_BITS <= int(bits) <= MAX_BITS:
        raise InputError(f"{name} must be between {MIN_BITS} and {MAX_BITS}, got {bits}")
    return int(bits)


def check_positive_int(value: Any, name: str, minimum: int = 1) -> int:
    """Return ``value`` as an int after checking ``value >= minimum``."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise InputError(f"{name} must be an integer >= {minimum}, got {value!r}")
    if int(value) < minimum:
        raise InputError(f"{name} must be >= {minimum}, got {value}")
    return int(value)


def as_int_array(x: Any, name: str = "weights", bits: int | None = None, allow_empty: bool = False) -> np.ndarray:
    """Convert a torch tensor, numpy array or nested list of integers to a numpy integer array.

    Float input is rejected (quantize first), as are empty arrays and, when
    ``bits`` is given, values outside the signed ``bits``-bit range.
    The result is ``int16`` (a view is avoided only when a cast is needed).
    """
    arr: np.ndarray
    if hasattr(x, "detach") and hasattr(x, "cpu"):  # torch.Tensor without importing torch
        t = x.detach().cpu()
        if t.is_floating_point() or t.is_complex():
            raise InputError(
                f"{name} must be an integer tensor, got dtype {t.dtype}; quantize it first "
                "(e.g. bitvert.pipeline.quantize_weight) or cast integral values with .round().to(torch.int8)"
            )
        if t.dtype == __import__("torch").bool:
            raise InputError(f"{name} must be an integer tensor, got dtype torch.bool")
        arr = t.numpy()
    elif isinstance(x, np.ndarray):
        arr = x
    else:
        try:
            arr = np.asarray(x)
        except Exception as exc:  # pragma: no cover - numpy raises many types here
            raise InputError(f"{name} could not be converted to an array: {exc}") from exc
    if arr.dtype.kind in "fc":
        if arr.size and np.isnan(arr).any():
            raise InputError(f"{name} contains NaN; pass quantized integer weights")
        raise InputError(
            f"{name} must hold integers, got dtype {arr.dtype}; quantize it first or cast integral values"
        )
    if arr.dtype.kind not in "iu":
        raise InputError(f"{name} must hold integers, got dtype {arr.dtype}")
    if arr.size == 0 and not allow_empty:
        raise InputError(f"{name} is empty (shape {tuple(arr.shape)}); pass at least one weight")
    info = np.iinfo(arr.dtype)
    lo, hi = (-(1 << (bits - 1)), (1 << (bits - 1)) - 1) if bits is not None else (-32768, 32767)
    if arr.size and (info.min < lo or info.max > hi):  # the dtype alone does not guarantee the range
        amin, amax = int(arr.min()), int(arr.max())
        if amin < lo or amax > hi:
            if bits is None:
                raise InputError(f"{name} holds values outside int16; bitvert handles at most 8-bit weights")
            raise InputError(
                f"{name} holds values in [{amin}, {amax}], outside the signed {bits}-bit range [{lo}, {hi}]; "
                "quantize to that range or raise weight_bits"
            )
    if arr.dtype != np.int16:
        arr = arr.astype(np.int16)
    return arr
