"""THROWAWAY: installs the pipeline API announced on branch `pipe` until it lands (see tests/hardware/hw_pipe_adapter)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "hardware"))
import hw_pipe_adapter  # noqa: E402,F401
