"""Fixtures of the RTL tests: real ``*.bbs.safetensors`` files made here from small real models."""

from __future__ import annotations

import copy
import sys
from pathlib import Path

import pytest

# The test modules import rtl_harness (next to this file) by name.
sys.path.insert(0, str(Path(__file__).resolve().parent))


def _encoded_files(tmp: Path, model_name: str) -> dict[str, object]:
    """Prune ``model_name`` with both presets, encode, write and read back the ``.bbs`` files."""
    from bitvert.codec import encode_checkpoint_file, load_encoded
    from bitvert.models import load_model
    from bitvert.pipeline import get_preset, prune_model_, save_pruned

    try:
        loaded = load_model(model_name)
    except Exception as exc:  # the models extra is installed by `make test`
        pytest.skip(f"{model_name} unavailable: {exc}")
    out = {}
    for preset_name in ("moderate", "conservative"):
        model = copy.deepcopy(loaded.model).eval()
        preset = get_preset(preset_name, quant={"act_bits": None})
        report = prune_model_(model, preset)
        ckpt = save_pruned(tmp / f"{model_name}-{preset_name}.pruned.safetensors", model, report,
                           {"name": loaded.name, "default_task": loaded.default_task})
        bbs = tmp / f"{model_name}-{preset_name}.bbs.safetensors"
        encode_checkpoint_file(ckpt, bbs)
        out[preset_name] = load_encoded(bbs)
    return out


@pytest.fixture(scope="session")
def mnist_files(tmp_path_factory):
    """``{"moderate": EncodedModel, "conservative": EncodedModel}`` of mnist-cnn, read from disk."""
    return _encoded_files(tmp_path_factory.mktemp("rtl_mnist"), "mnist-cnn")


@pytest.fixture(scope="session")
def minilm_files(tmp_path_factory):
    """The same for MiniLM-L6 (slow tests)."""
    return _encoded_files(tmp_path_factory.mktemp("rtl_minilm"), "minilm-l6")


def pytest_collection_modifyitems(config, items):
    """The slow RTL tests (100,000 simulated groups, the whole synthesis table) run only when
    the marker expression asks for slow tests (``-m slow``, ``make rtl``), not in ``make test``."""
    if "slow" in (config.getoption("markexpr") or ""):
        return
    here = Path(__file__).resolve().parent
    skip = pytest.mark.skip(reason="slow RTL run: select it with -m slow (make rtl)")
    for item in items:
        if "slow" in item.keywords and Path(str(item.fspath)).resolve().parent == here:
            item.add_marker(skip)
