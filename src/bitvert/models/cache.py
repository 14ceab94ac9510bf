"""The user cache directory of bitvert (converted models, fitted probes); never inside the repository."""

from __future__ import annotations

from pathlib import Path

from bitvert.cachedir import CACHE_ENV, cache_root
from bitvert.errors import ConfigError

__all__ = ["CACHE_ENV", "cache_dir"]


def cache_dir(*parts: str, create: bool = True) -> Path:
    """Return ``$BITVERT_CACHE_DIR/<parts>`` (default ``~/.cache/bitvert/<parts>``), created if asked.

    Raises :class:`ConfigError` when the directory cannot be created.
    """
    path = cache_root().joinpath(*parts)
    if create:
        try:
            path.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ConfigError(f"cannot create the bitvert cache directory {path} ({exc}); set {CACHE_ENV} to a "
                              "writable folder") from exc
    return path
