"""Helpers shared by the pipeline tests."""

from __future__ import annotations

import json
import struct
from pathlib import Path
from typing import Any


def read_header(path: Path) -> tuple[dict[str, Any], dict[str, str]]:
    """The raw safetensors JSON header and its ``__metadata__`` (read by hand, not via the library)."""
    raw = Path(path).read_bytes()
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8 : 8 + n])
    return header, header.get("__metadata__", {})
