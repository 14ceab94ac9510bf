"""Running ``python -m bitvert`` in a subprocess on the bitvert being tested."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import bitvert


def bitvert_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """The environment of a child ``python -m bitvert``: it imports this bitvert (not another install),
    whatever its working folder."""
    src = str(Path(bitvert.__file__).resolve().parents[1])
    path = os.environ.get("PYTHONPATH", "")
    return {**os.environ, "PYTHONPATH": src + (os.pathsep + path if path else ""), **(extra or {})}


def bitvert_argv(*args: str) -> list[str]:
    """``python -m bitvert -q ARGS``."""
    return [sys.executable, "-m", "bitvert", "-q", *args]


def run_bitvert(*args: str, cwd: Path, env: dict[str, str] | None = None,
                timeout: float = 600) -> subprocess.CompletedProcess[str]:
    """Run ``bitvert -q ARGS`` in ``cwd`` and capture its output."""
    return subprocess.run(bitvert_argv(*args), cwd=cwd, capture_output=True, text=True, timeout=timeout,
                          env=bitvert_env(env))
