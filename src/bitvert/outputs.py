"""Checks on output paths, run before any work: a command that will fail to write says so at once.

Every command validates its outputs with :func:`check_output_folder` / :func:`check_output_file`
before it loads a model, simulates or creates anything on disk, so a bad ``--out`` costs nothing
and leaves nothing behind.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

from bitvert.errors import InputError

__all__ = ["check_output_folder", "check_output_file"]


def _nearest_existing(path: Path) -> Path:
    p = path
    while not p.exists() and p != p.parent:
        p = p.parent
    return p


def _check_creatable(path: Path, option: str, what: str) -> None:
    """``path`` (absent) can be created: its nearest existing ancestor is a writable folder."""
    base = _nearest_existing(path.parent if path.parent != path else path)
    if not base.is_dir():
        raise InputError(f"{option} {str(path)!r}: {str(base)!r} is a file, not a folder; give a {what} path "
                         "below a folder")
    if not os.access(base, os.W_OK | os.X_OK):
        raise InputError(f"{option} {str(path)!r}: the folder {str(base)!r} is not writable; choose a {what} "
                         "in a folder you can write to")


def check_output_folder(path: str | os.PathLike[str], option: str = "--out", published: bool = False) -> Path:
    """Check that the output folder ``path`` can be written: an existing writable folder, or an absent one
    whose nearest existing ancestor is a writable folder. Creates nothing.

    ``published=True``: the folder is written beside it and renamed into place
    (:mod:`bitvert.report.publish`), so its parent must be writable even when it exists.

    Raises:
        InputError: naming ``option`` and the path: it is a file, lies below a file, or is not writable.
    """
    out = Path(path).expanduser()
    if not str(path).strip():
        raise InputError(f"{option} is empty; give a folder path")
    if out.exists():
        if not out.is_dir():
            raise InputError(f"{option} {str(out)!r} is a file; give a folder path")
        if not os.access(out, os.W_OK | os.X_OK):
            raise InputError(f"{option} {str(out)!r} is not writable; choose a folder you can write to")
        if published:
            _check_creatable(out, option, "folder")
        return out
    _check_creatable(out, option, "folder")
    return out


def check_output_file(path: str | os.PathLike[str], option: str = "--out",
                      inputs: Iterable[str | os.PathLike[str]] = ()) -> Path:
    """Check that the output file ``path`` can be written and is none of ``inputs``. Creates nothing.

    Raises:
        InputError: naming ``option`` and the path: it is a folder, lies below a file, is not writable,
            or would overwrite an input.
    """
    out = Path(path).expanduser()
    if not str(path).strip():
        raise InputError(f"{option} is empty; give a file path")
    if out.is_dir():
        raise InputError(f"{option} {str(out)!r} is a folder; give a file path such as model.bbs.safetensors")
    for src in inputs:
        s = Path(src).expanduser()
        if s.exists() and out.exists() and os.path.samefile(s, out):
            raise InputError(f"{option} {str(out)!r} is the input file itself; write to another file")
    if out.exists() and not os.access(out, os.W_OK):
        raise InputError(f"{option} {str(out)!r} exists and is not writable; choose another file")
    _check_creatable(out, option, "file")
    return out
