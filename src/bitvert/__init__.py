"""bitvert: BBS (bi-directional bit-level sparsity) for deep-learning acceleration.

Implements the MICRO 2024 paper "BBS: Bi-directional Bit-level Sparsity for
Deep Learning Acceleration" (Chen, Meng, Seo, Abdelfattah) and its accelerator
BitVert: bit-level analysis, binary pruning, a compressed weight format, an
accelerator simulator with baselines, and accuracy evaluation.
"""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["__version__"]
