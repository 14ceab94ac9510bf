"""Binary pruning of integer weight tensors (BBS §III-B) and the BitWave bit-flip baseline.

Entry point: :func:`prune` with a :class:`PruneConfig`. Every method is defined once, in the
registry of :mod:`bitvert.pruning.methods` (:func:`register_method`, :func:`get_method`).
"""

from bitvert.pruning.api import GroupMetadata, PruneResult, prune, prune_groups
from bitvert.pruning.config import MeanRounding, PruneConfig, PruneMethod, Semantics
from bitvert.pruning.methods import MethodSpec, get_method, method_names, register_method, unregister_method

__all__ = [
    "PruneConfig",
    "PruneMethod",
    "Semantics",
    "MeanRounding",
    "GroupMetadata",
    "PruneResult",
    "prune",
    "prune_groups",
    "MethodSpec",
    "get_method",
    "method_names",
    "register_method",
    "unregister_method",
]
