"""Where bitvert caches things: ``$BITVERT_CACHE_DIR`` (default ``~/.cache/bitvert``), never the package tree.

Converted models and fitted probes live there (:func:`bitvert.models.cache.cache_dir`), and so do
numba's compiled kernels: importing :mod:`bitvert` points ``NUMBA_CACHE_DIR`` at
``<cache root>/numba`` unless the user set it, so a read-only or shared installation is never
written to.
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["CACHE_ENV", "cache_root", "route_numba_cache"]

#: Environment variable that overrides the cache location.
CACHE_ENV = "BITVERT_CACHE_DIR"


def cache_root() -> Path:
    """``$BITVERT_CACHE_DIR`` or ``~/.cache/bitvert`` (not created here)."""
    root = os.environ.get(CACHE_ENV)
    return Path(root).expanduser() if root else Path.home() / ".cache" / "bitvert"


def route_numba_cache() -> None:
    """Point numba's kernel cache at ``<cache root>/numba`` unless ``NUMBA_CACHE_DIR`` is already set."""
    if os.environ.get("NUMBA_CACHE_DIR"):
        return
    os.environ["NUMBA_CACHE_DIR"] = str(cache_root() / "numba")
    import sys

    if "numba" in sys.modules:  # imported before bitvert: make numba read the variable again
        from numba.core import config

        config.reload_config()
