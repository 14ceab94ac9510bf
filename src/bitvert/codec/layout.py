"""Names and constants of the BBS compressed weight format (see docs/format.md).

The format version is bumped whenever the byte layout of an encoded tensor or of the
container changes; readers reject any other version.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from bitvert.errors import FormatError

__all__ = [
    "FORMAT_NAME",
    "FORMAT_VERSION",
    "METADATA_BITS_BBS",
    "REDUNDANT_FIELD_MAX",
    "CONSTANT_FIELD_BITS",
    "TensorLayout",
    "Chunk",
]

FORMAT_NAME = "bitvert-bbs"
"""Value of the ``format`` key in the container's safetensors metadata."""

FORMAT_VERSION = 1
"""Version of the byte layout described in docs/format.md."""

METADATA_BITS_BBS = 8
"""Metadata per BBS group: 2-bit redundant-column count + 6-bit BBS constant."""

REDUNDANT_FIELD_MAX = 3
"""Largest redundant-column count the 2-bit field can record."""

CONSTANT_FIELD_BITS = 6
"""Width of the BBS-constant field."""


class TensorLayout(str, Enum):
    """How the groups of one weight tensor are stored."""

    BBS_ROUNDED_AVG = "bbs_rounded_avg"
    """Two's complement; free low columns are constant, their bit pattern is the 6-bit field."""
    BBS_ZERO_POINT = "bbs_zero_point"
    """Two's complement of ``weights + c``; free low columns are zero, the 6-bit field holds ``c``."""
    BITWAVE = "bitwave"
    """BitWave baseline: sign-magnitude, sign column + 7-bit zero-column mask + non-zero magnitude columns."""
    PLAIN = "plain"
    """Two's complement at a per-channel width, no metadata (INT8 layers, fewer-bit RTN layers)."""

    @property
    def is_bbs(self) -> bool:
        """True for the two BBS layouts (8-bit metadata per group)."""
        return self in (TensorLayout.BBS_ROUNDED_AVG, TensorLayout.BBS_ZERO_POINT)

    @classmethod
    def parse(cls, value: str, where: str) -> "TensorLayout":
        """``TensorLayout(value)`` raising :class:`FormatError` naming ``where``."""
        try:
            return cls(value)
        except ValueError:
            raise FormatError(
                f"{where}: unknown tensor layout {value!r}; this bitvert knows {[m.value for m in cls]}"
            ) from None


@dataclass(frozen=True)
class Chunk:
    """A run of output channels of equal precision in the reordered (stored) channel order.

    Attributes:
        columns: stored bit columns per weight of every group of these channels (BitWave
            masked chunks: the most columns any group stores, sign column included).
        channels: number of output channels in the chunk.
        metadata: whether the chunk's groups carry per-group metadata (normal channels).
            Chunks without metadata store the weights themselves at ``columns`` bits
            (sensitive channels, plain layers).
    """

    columns: int
    channels: int
    metadata: bool

    def to_list(self) -> list[int]:
        """``[columns, channels, metadata]`` as stored in the container's JSON."""
        return [int(self.columns), int(self.channels), int(bool(self.metadata))]
