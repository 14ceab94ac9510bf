"""Bit-level core: bit planes, weight grouping and BBS sparsity analysis.

Everything here works on integer numpy arrays (torch tensors are accepted at
the public entry points and converted without copying where possible).
"""

from bitvert.core.bitplanes import (
    NegMinPolicy,
    NumberFormat,
    from_bitplanes,
    int_range,
    to_bitplanes,
)
from bitvert.core.grouping import GroupedWeights, GroupLayout, LayerKind, RemainderPolicy, group_weights

__all__ = [
    "NumberFormat",
    "NegMinPolicy",
    "to_bitplanes",
    "from_bitplanes",
    "int_range",
    "LayerKind",
    "RemainderPolicy",
    "GroupLayout",
    "GroupedWeights",
    "group_weights",
]
