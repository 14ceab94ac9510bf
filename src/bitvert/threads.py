"""How many CPU threads bitvert's kernels use: one number for torch and numba.

torch and numba each keep their own thread count, and numba's OpenMP layer sets the OpenMP thread
count to *its* count when it first launches a parallel kernel, which silently undoes
``OMP_NUM_THREADS`` for torch (``OMP_NUM_THREADS=1`` ran torch on 2 threads after the first numba
kernel). :func:`set_threads` sets both, so the first numba launch keeps torch's count; the CLI calls it
at start with ``--threads`` or ``OMP_NUM_THREADS``.
"""

from __future__ import annotations

import logging
import os

from bitvert.errors import ConfigError

__all__ = ["THREADS_ENV", "threads_from_env", "set_threads", "thread_counts"]

logger = logging.getLogger(__name__)

THREADS_ENV = "OMP_NUM_THREADS"
"""The environment variable whose value :func:`threads_from_env` reads."""


def threads_from_env() -> int | None:
    """``OMP_NUM_THREADS`` as a positive integer, ``None`` when unset or empty.

    Raises:
        ConfigError: the variable is set to something other than a positive integer.
    """
    raw = os.environ.get(THREADS_ENV, "").strip()
    if not raw:
        return None
    try:
        n = int(raw)
    except ValueError:
        n = 0
    if n < 1:
        raise ConfigError(f"{THREADS_ENV}={raw!r} is not a positive integer; unset it or set e.g. {THREADS_ENV}=4")
    return n


def set_threads(n: int) -> int:
    """Run torch and numba kernels on ``n`` threads; returns the count numba got.

    numba cannot use more threads than it started with (``NUMBA_NUM_THREADS``, by default the number of
    CPUs); a larger ``n`` gives numba its maximum and torch ``n``.

    Raises:
        ConfigError: ``n`` is not a positive integer.
    """
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ConfigError(f"the thread count must be a positive integer, got {n!r}")
    import numba
    import torch

    numba_n = min(n, int(numba.config.NUMBA_NUM_THREADS))
    if numba_n < n:
        logger.info("numba runs at most %d threads (NUMBA_NUM_THREADS); torch runs %d", numba_n, n)
    numba.set_num_threads(numba_n)
    torch.set_num_threads(n)
    return numba_n


def thread_counts() -> dict[str, int]:
    """The thread counts in force: ``{"torch": ..., "numba": ...}``."""
    import numba
    import torch

    return {"torch": int(torch.get_num_threads()), "numba": int(numba.get_num_threads())}
