"""Integer tensors <-> bit planes, in two's complement and in sign-magnitude.

Layout: a tensor ``w`` of any shape becomes planes of shape ``[bits, *w.shape]``
with **plane 0 first**. Plane 0 is the MSB in two's complement (weight
``-2**(bits-1)``) and the sign in sign-magnitude; the last plane is the LSB.
Plane ``k`` has significance ``2**(bits-1-k)``.

Worked example (8 bits, two's complement, BBS paper Fig. 4)::

    >>> import numpy as np
    >>> to_bitplanes(np.array([-57]), 8)[:, 0].tolist()
    [1, 1, 0, 0, 0, 1, 1, 1]
    >>> int(from_bitplanes(to_bitplanes(np.array([-57]), 8))[0])
    -57

The value ``-2**(bits-1)`` (``-128`` at 8 bits) has no sign-magnitude code.
bitvert never clamps it silently: :class:`NegMinPolicy` says whether to reject
it (default) or clamp it to ``-(2**(bits-1) - 1)`` and report the count.
"""

from __future__ import annotations

from enum import Enum
from typing import Any

import numpy as np

from bitvert.core.validation import as_int_array, check_bits
from bitvert.errors import InputError

__all__ = [
    "NumberFormat",
    "NegMinPolicy",
    "int_range",
    "to_bitplanes",
    "from_bitplanes",
    "apply_neg_min_policy",
    "plane_count",
    "nonzero_magnitude_planes",
    "zero_magnitude_planes",
]


class NumberFormat(str, Enum):
    """How a signed integer is laid out in bit planes."""

    TWOS_COMPLEMENT = "twos_complement"
    """Plane 0 weighs ``-2**(bits-1)``; covers ``[-2**(bits-1), 2**(bits-1)-1]``."""
    SIGN_MAGNITUDE = "sign_magnitude"
    """Plane 0 is the sign, planes 1.. the magnitude MSB first; covers ``[-(2**(bits-1)-1), 2**(bits-1)-1]``."""


class NegMinPolicy(str, Enum):
    """What to do with ``-2**(bits-1)`` (e.g. -128), which sign-magnitude cannot encode."""

    REJECT = "reject"
    """Raise :class:`~bitvert.errors.InputError` naming how many weights are affected."""
    CLAMP = "clamp"
    """Replace it by ``-(2**(bits-1)-1)`` and report the number of clamped weights."""


def int_range(bits: int, fmt: NumberFormat | str = NumberFormat.TWOS_COMPLEMENT) -> tuple[int, int]:
    """Return the inclusive ``(min, max)`` integer range of a signed ``bits``-bit format."""
    bits = check_bits(bits)
    fmt = NumberFormat(fmt)
    hi = (1 << (bits - 1)) - 1
    lo = -hi if fmt is NumberFormat.SIGN_MAGNITUDE else -(1 << (bits - 1))
    return lo, hi


def apply_neg_min_policy(
    w: np.ndarray, bits: int, policy: NegMinPolicy | str, name: str = "weights"
) -> tuple[np.ndarray, int]:
    """Apply ``policy`` to the values ``-2**(bits-1)`` of ``w``; return ``(w, n_clamped)``.

    ``w`` is returned unchanged (not copied) when it holds no such value.
    """
    policy = NegMinPolicy(policy)
    neg_min = -(1 << (bits - 1))
    hits = w == neg_min
    count = int(np.count_nonzero(hits))
    if count == 0:
        return w, 0
    if policy is NegMinPolicy.REJECT:
        raise InputError(
            f"{name} holds {count} value(s) equal to {neg_min}, which sign-magnitude cannot encode; "
            f"quantize symmetrically to [{neg_min + 1}, {-neg_min - 1}] or pass neg_min='clamp' "
            "to clamp them (the count is then reported)"
        )
    out = w.copy()
    out[hits] = neg_min + 1
    return out, count


def to_bitplanes(
    w: Any,
    bits: int = 8,
    fmt: NumberFormat | str = NumberFormat.TWOS_COMPLEMENT,
    neg_min: NegMinPolicy | str = NegMinPolicy.REJECT,
) -> np.ndarray:
    """Split integers into bit planes: returns ``uint8`` of shape ``[bits, *w.shape]``, plane 0 first.

    Args:
        w: integer tensor or array whose values fit the signed ``bits``-bit range.
        bits: bit width, 2..8.
        fmt: two's complement or sign-magnitude.
        neg_min: policy for ``-2**(bits-1)`` in sign-magnitude (ignored in two's complement).
    """
    bits = check_bits(bits)
    fmt = NumberFormat(fmt)
    arr = as_int_array(w, "w", bits=bits)
    shifts = np.arange(bits - 1, -1, -1, dtype=np.int16).reshape((bits,) + (1,) * arr.ndim)
    if fmt is NumberFormat.TWOS_COMPLEMENT:
        code = arr & np.int16((1 << bits) - 1)  # low `bits` bits of w mod 2**bits
        return ((code[None] >> shifts) & 1).astype(np.uint8)
    arr, _ = apply_neg_min_policy(arr, bits, neg_min, name="w")
    mag = np.abs(arr)
    planes = ((mag[None] >> shifts) & 1).astype(np.uint8)
    planes[0] = arr < 0
    return planes


def from_bitplanes(planes: Any, fmt: NumberFormat | str = NumberFormat.TWOS_COMPLEMENT) -> np.ndarray:
    """Inverse of :func:`to_bitplanes`: planes ``[bits, *shape]`` (0/1, plane 0 first) -> ``int16`` values."""
    fmt = NumberFormat(fmt)
    p = np.asarray(planes.numpy() if hasattr(planes, "numpy") else planes)
    if p.ndim < 1:
        raise InputError("planes must have a leading bit-plane axis, got a scalar")
    bits = check_bits(p.shape[0], "planes.shape[0] (number of bit planes)")
    if p.size and (p.min() < 0 or p.max() > 1):
        raise InputError("planes must hold only 0 and 1")
    p = p.astype(np.int16)
    weights = (1 << np.arange(bits - 1, -1, -1, dtype=np.int32)).astype(np.int16)
    weights = weights.reshape((bits,) + (1,) * (p.ndim - 1))
    if fmt is NumberFormat.TWOS_COMPLEMENT:
        signed = weights.copy()
        signed[0] = -signed[0]
        return (p * signed).sum(axis=0, dtype=np.int16)
    mag = (p[1:] * weights[1:]).sum(axis=0, dtype=np.int16)
    return np.where(p[0] == 1, -mag, mag).astype(np.int16)


def plane_count(masks: Any) -> np.ndarray:
    """Number of planes named by each plane mask (bit ``p`` set = plane ``p``): ``int64``, same shape.

    >>> plane_count(np.array([0, 0b1011, 0xFF])).tolist()
    [0, 3, 8]
    """
    return np.bitwise_count(np.asarray(masks)).astype(np.int64)


def nonzero_magnitude_planes(magnitude_or: Any, bits: int = 8) -> np.ndarray:
    """Magnitude planes (sign-magnitude planes ``1..bits-1``) holding a 1 in some weight of a group.

    Args:
        magnitude_or: per group, the bitwise OR of the magnitudes ``|w|`` of its weights
            (plane ``k`` of a weight is bit ``bits-1-k`` of its magnitude, so a plane is all
            zero over the group iff that bit of the OR is 0). Any shape; bits at or above
            ``bits-1`` are ignored.
        bits: the sign-magnitude width ``b``.

    Returns:
        ``int64`` counts in ``[0, bits-1]``, the shape of ``magnitude_or``.

    >>> nonzero_magnitude_planes(np.array([16 | 56 | 8]), 8).tolist()  # magnitudes 16, 56, 8 (BBS.md vector 12): planes 32, 16, 8
    [3]
    """
    bits = check_bits(bits)
    return plane_count(np.asarray(magnitude_or, dtype=np.int64) & ((1 << (bits - 1)) - 1))


def zero_magnitude_planes(magnitude_or: Any, bits: int = 8) -> np.ndarray:
    """All-zero magnitude planes of a group: ``bits - 1 -`` :func:`nonzero_magnitude_planes` (``int64``).

    These are the columns BitWave skips and BBS bit flipping frees.

    >>> zero_magnitude_planes(np.array([16 | 56 | 8]), 8).tolist()
    [4]
    """
    return (check_bits(bits) - 1) - nonzero_magnitude_planes(magnitude_or, bits)
