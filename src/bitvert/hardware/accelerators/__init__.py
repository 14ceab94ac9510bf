"""Accelerator cycle models, registered by design name.

Importing this package registers every design: ``stripes``, ``bit-parallel``,
``bitvert``, ``pragmatic``, ``bitlet``, ``bitwave``, ``ant``, ``sparten``.
"""

from bitvert.hardware.accelerators import (  # noqa: F401 - imported for registration
    ant,
    bit_parallel,
    bitlet,
    bitvert,
    bitwave,
    pragmatic,
    sparten,
    stripes,
)
from bitvert.hardware.accelerators.base import REGISTRY, AcceleratorModel, ComputeResult, model_for

__all__ = ["REGISTRY", "AcceleratorModel", "ComputeResult", "model_for"]
