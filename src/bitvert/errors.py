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
    "validation_message",
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



def validation_message(exc: Exception) -> str:
    """A pydantic ``ValidationError`` as one line: ``field: problem (got value)`` per error, ``; ``-joined."""
    errors = getattr(exc, "errors", None)
    if not callable(errors):
        return " ".join(str(exc).split())
    parts = []
    for err in errors():
        loc = ".".join(str(x) for x in err.get("loc", ())) or "<root>"
        msg = "unknown field" if err.get("type") == "extra_forbidden" else err.get("msg", "invalid")
        parts.append(f"{loc}: {msg} (got {err.get('input')!r})")
    return "; ".join(parts)
