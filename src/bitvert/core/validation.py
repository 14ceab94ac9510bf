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
    check = bool(arr.size) and (info.min < lo or info.max > hi)  # the dtype alone does not guarantee the range
    convert = arr.dtype != np.int16
    if check or convert:
        amin, amax, arr = _min_max_int16(arr, check, convert)
        if check and (amin < lo or amax > hi):
            if bits is None:
                raise InputError(f"{name} holds values outside int16; bitvert handles at most 8-bit weights")
            raise InputError(
                f"{name} holds values in [{amin}, {amax}], outside the signed {bits}-bit range [{lo}, {hi}]; "
                "quantize to that range or raise weight_bits"
            )
    return arr


PARALLEL_MIN_WEIGHTS = 1 << 20
"""Tensors of at least this many weights are range-checked and converted to ``int16`` in one parallel
pass (:func:`bitvert.core._kernels.int16_copy_min_max`); smaller ones by numpy (no thread start-up)."""

_PARALLEL_CHUNK = 1 << 16


def _min_max_int16(arr: np.ndarray, check: bool, convert: bool) -> tuple[int, int, np.ndarray]:
    """``(least, greatest, arr as int16)`` of a non-empty integer array; the extremes only when
    ``check`` (else 0, 0), the conversion only when ``convert`` (else ``arr`` itself)."""
    if (arr.size >= PARALLEL_MIN_WEIGHTS and arr.flags.c_contiguous and arr.dtype != np.uint64):
        from bitvert.core._kernels import int16_copy_min_max  # numba: loaded on first large tensor

        out = np.empty(arr.shape if convert else 0, dtype=np.int16)
        amin, amax = int16_copy_min_max(arr.reshape(-1), out.reshape(-1), _PARALLEL_CHUNK)
        return int(amin), int(amax), out if convert else arr
    amin, amax = (int(arr.min()), int(arr.max())) if check else (0, 0)
    return amin, amax, arr.astype(np.int16) if convert else arr
