"""Atomic publishing of a report folder.

Everything is written into a hidden sibling folder ``.<out>.partial-<pid>`` (:func:`partial_folder`)
which is renamed to ``out`` only when complete (:func:`publish` writes ``status.json`` saying
``"complete"`` first); an interrupted or failed run removes it, so a half-written report is never
presented as complete, and a previous complete report is replaced only by a complete one. A run
killed too hard to clean up (SIGKILL) leaves its partial folder; the next run for the same output
removes it (:func:`remove_stale_partials`), leaving alone the folders of processes that still run.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from bitvert.errors import InputError
from bitvert.outputs import check_output_folder

__all__ = ["REPORT_STATUS_FILE", "check_out_dir", "is_complete_report", "partial_folder", "publish",
           "remove_stale_partials", "remove_active_partials"]

logger = logging.getLogger(__name__)

_ACTIVE: set[Path] = set()
"""Partial folders of this process that are being written (removed by :func:`remove_active_partials`)."""

REPORT_STATUS_FILE = "status.json"
"""Written last into a report folder; ``{"status": "complete", ...}`` marks a finished report."""


def is_complete_report(path: str | os.PathLike[str]) -> bool:
    """True when ``path`` is a report folder whose ``status.json`` says ``complete``."""
    status = Path(path) / REPORT_STATUS_FILE
    try:
        return json.loads(status.read_text(encoding="utf-8")).get("status") == "complete"
    except (OSError, ValueError, AttributeError):
        return False


def check_out_dir(out_dir: Path) -> None:
    """Refuse an ``out_dir`` that is a file, lies below a file, cannot be written
    (:func:`bitvert.outputs.check_output_folder`) or is a non-empty folder that is not a complete report."""
    check_output_folder(out_dir, "--out", published=True)
    if out_dir.is_dir() and any(out_dir.iterdir()) and not is_complete_report(out_dir):
        raise InputError(
            f"--out {str(out_dir)!r} is a non-empty folder that is not a bitvert report; choose a new or "
            "empty folder (a previous complete report there is replaced)"
        )


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # a process of another user holds that pid
        return True
    return True


def remove_stale_partials(out_dir: Path) -> list[Path]:
    """Remove ``.<out>.partial-<pid>`` / ``.<out>.old-<pid>`` folders whose process no longer runs.

    A run killed hard (SIGKILL, power loss) cannot clean up after itself; the next run for the same
    ``out_dir`` does. Folders of a process that still runs are left alone (a concurrent run).

    Returns:
        The folders removed (each logged); folders that could not be removed are logged as such.
    """
    removed = []
    for kind in ("partial", "old"):
        for folder in sorted(out_dir.parent.glob(f".{out_dir.name}.{kind}-*")):
            pid = folder.name.rsplit("-", 1)[-1]
            if not pid.isdigit() or int(pid) == os.getpid() or _running(int(pid)) or not folder.is_dir():
                continue
            shutil.rmtree(folder, ignore_errors=True)
            if folder.exists():
                logger.warning("could not remove the stale %s folder %s of an earlier run (process %s); delete it "
                               "by hand", kind, folder, pid)
            else:
                logger.info("removed the stale %s folder %s of an earlier run (process %s)", kind, folder, pid)
                removed.append(folder)
    return removed


def remove_active_partials() -> list[Path]:
    """Remove the partial folders this process is writing (the CLI's SIGTERM handler calls it)."""
    removed = []
    for folder in sorted(_ACTIVE):
        shutil.rmtree(folder, ignore_errors=True)
        if not folder.exists():
            removed.append(folder)
    _ACTIVE.clear()
    return removed


def _remove_tree(folder: Path) -> None:
    """``rmtree`` that also removes read-only sub-folders of our own (a folder made unwritable mid-run)."""

    def retry(func: Any, path: str, exc: BaseException) -> None:
        parent = os.path.dirname(path)
        try:
            os.chmod(parent, 0o700)
            func(path)
        except OSError:
            pass

    if sys.version_info >= (3, 12):
        shutil.rmtree(folder, onexc=retry)
    else:
        shutil.rmtree(folder, onerror=lambda f, p, e: retry(f, p, e[1]))


@contextmanager
def partial_folder(out_dir: Path) -> Iterator[Path]:
    """Create and yield the hidden partial folder of ``out_dir``; remove it if the block raises
    (including ``KeyboardInterrupt``), then re-raise."""
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_partials(out_dir)
    tmp = out_dir.parent / f".{out_dir.name}.partial-{os.getpid()}"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir()
    _ACTIVE.add(tmp)
    try:
        yield tmp
    except BaseException:
        _remove_tree(tmp)
        if tmp.exists():
            logger.warning("the study did not finish; could NOT remove the partial report folder %s: delete it "
                           "by hand", tmp)
        else:
            logger.warning("the study did not finish; removed the partial report folder %s", tmp)
        raise
    finally:
        _ACTIVE.discard(tmp)


def publish(tmp: Path, out_dir: Path, status: dict[str, Any]) -> None:
    """Mark ``tmp`` complete and move it to ``out_dir`` (replacing an old report there)."""
    (tmp / REPORT_STATUS_FILE).write_text(json.dumps(status, indent=2) + "\n", encoding="utf-8")
    old: Path | None = None
    if out_dir.exists():
        old = out_dir.parent / f".{out_dir.name}.old-{os.getpid()}"
        if old.exists():
            shutil.rmtree(old)
        out_dir.rename(old)
    tmp.rename(out_dir)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
