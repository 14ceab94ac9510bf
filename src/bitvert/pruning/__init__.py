"""Binary pruning of integer weight tensors (BBS §III-B) and the BitWave bit-flip baseline.

Entry point: :func:`prune` with a :class:`PruneConfig`.
"""

from bitvert.pruning.api import GroupMetadata, PruneResult, prune, prune_groups
from bitvert.pruning.config import MeanRounding, PruneConfig, PruneMethod, Semantics

__all__ = [
    "PruneConfig",
    "PruneMethod",
    "Semantics",
    "MeanRounding",
    "GroupMetadata",
    "PruneResult",
    "prune",
    "prune_groups",
]
