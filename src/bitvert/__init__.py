"""bitvert: BBS (bi-directional bit-level sparsity) for deep-learning acceleration.

Implements the MICRO 2024 paper "BBS: Bi-directional Bit-level Sparsity for
Deep Learning Acceleration" (Chen, Meng, Seo, Abdelfattah) and its accelerator
BitVert: bit-level analysis, binary pruning, a compressed weight format, an
accelerator simulator with baselines, and accuracy evaluation.
"""

from __future__ import annotations

from bitvert.cachedir import route_numba_cache

__version__ = "0.1.0"

route_numba_cache()  # compiled kernels go to the user cache folder, never into the installed package

__all__ = ["__version__"]
