"""The user cache directory of bitvert (converted models, fitted probes); never inside the repository."""

from __future__ import annotations

import os
from pathlib import Path

from bitvert.errors import ConfigError

#: Environment variable that overrides the cache location.
CACHE_ENV = "BITVERT_CACHE_DIR"


def cache_dir(*parts: str, create: bool = True) -> Path:
    """Return ``$BITVERT_CACHE_DIR/<parts>`` (default ``~/.cache/bitvert/<parts>``), created if asked.

    Raises :class:`ConfigError` when the directory cannot be created.
    """
    root = os.environ.get(CACHE_ENV)
    base = Path(root).expanduser() if root else Path.home() / ".cache" / "bitvert"
    path = base.joinpath(*parts)
    if create:
        try:
            path.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ConfigError(f"cannot create the bitvert cache directory {path} ({exc}); set {CACHE_ENV} to a "
                              "writable folder") from exc
    return path
