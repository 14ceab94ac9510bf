"""Helpers shared by the ``bitvert`` subcommands: one-line I/O errors, thread setup, progress and
output checks (:mod:`bitvert.outputs`, re-exported here)."""

from __future__ import annotations

import logging
import sys

from bitvert.outputs import check_output_file, check_output_folder

__all__ = ["os_error_message", "apply_threads", "show_progress", "check_output_file", "check_output_folder"]

logger = logging.getLogger(__name__)


def os_error_message(exc: OSError) -> str:
    """One line for a failed read or write: what failed, on which path, and what to check."""
    path = exc.filename if exc.filename is not None else "a file"
    what = exc.strerror or str(exc)
    if exc.filename2 is not None:
        path = f"{path} -> {exc.filename2}"
    return (f"error: {what}: {path!s}; check that the path exists, is a folder where one is expected, "
            "is writable and the disk is not full")


def apply_threads(threads: int | None) -> None:
    """Run torch and numba on ``--threads`` threads, else on ``OMP_NUM_THREADS`` when set (else their
    defaults); see :mod:`bitvert.threads`."""
    from bitvert.threads import set_threads, threads_from_env

    n = threads if threads is not None else threads_from_env()
    if n is not None:
        set_threads(n)
        logger.debug("running on %d threads", n)


def show_progress(quiet: bool = False) -> bool:
    """Progress bars only on a terminal (stderr) and without ``-q``; otherwise INFO lines tell the steps."""
    return sys.stderr.isatty() and not quiet and logging.getLogger("bitvert").getEffectiveLevel() <= logging.INFO
