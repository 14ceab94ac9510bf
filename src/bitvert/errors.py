"""Exception hierarchy of bitvert.

Every error raised on bad user input derives from :class:`BitvertError`, so
callers can catch one type; messages name the offending argument and say how
to fix it.
"""

from __future__ import annotations

__all__ = [
    "BitvertError",
    "InputError",
    "ConfigError",
    "FormatError",
    "UnsupportedLayerError",
    "MissingDependencyError",
    "Terminated",
    "interrupt_status",
]


class BitvertError(Exception):
    """Base class of every error bitvert raises on purpose."""


class InputError(BitvertError, ValueError):
    """A tensor or argument passed to a function is invalid (type, dtype, range, shape)."""


class ConfigError(BitvertError, ValueError):
    """A configuration value is invalid or inconsistent."""


class FormatError(BitvertError, ValueError):
    """A file or encoded tensor is malformed, truncated, corrupted or of an unknown version."""


class UnsupportedLayerError(BitvertError, ValueError):
    """A layer or model cannot be handled (unknown module type, unmapped name)."""


class MissingDependencyError(BitvertError, ImportError):
    """An optional dependency is not installed; the message says what to install."""


class Terminated(KeyboardInterrupt):
    """The process received SIGTERM (``timeout``, a job scheduler); raised by the CLI's signal handler.

    A subclass of :class:`KeyboardInterrupt`, so every clean-up path that handles Ctrl-C (removing
    a partial output folder) handles it too; the CLI then exits with status 143 instead of 130.
    """


def interrupt_status(exc: KeyboardInterrupt) -> int:
    """Exit status of an interrupted command: 143 for SIGTERM (:class:`Terminated`), 130 for Ctrl-C."""
    return 143 if isinstance(exc, Terminated) else 130
