"""THROWAWAY: installs the pipeline API announced on branch `pipe` until it lands (see hw_pipe_adapter)."""

import hw_pipe_adapter  # noqa: F401
