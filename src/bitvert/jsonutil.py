"""JSON helpers shared by the writers of ``summary.json`` / ``results.json``."""

from __future__ import annotations

from typing import Any

__all__ = ["json_default"]


def json_default(o: Any) -> Any:
    """``json.dumps(default=...)`` hook: numpy / torch scalars and arrays become Python values."""
    if hasattr(o, "item"):
        return o.item()
    if hasattr(o, "tolist"):
        return o.tolist()
    raise TypeError(f"not JSON serializable: {type(o).__name__}")
