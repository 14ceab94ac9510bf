"""A pruning method added through the registry alone runs end to end: prune -> encode -> decode -> simulate.

The toy method ("truncate the N low two's-complement columns to zero") is registered here, in the test,
exactly as docs/architecture.md ("How to add a pruning method") tells a contributor: a kernel, a
reference, and one :class:`~bitvert.pruning.methods.MethodSpec`. Nothing else in bitvert names it.
"""

from __future__ import annotations

import numpy as np
import pytest

from bitvert.codec import decode, encode
from bitvert.codec.layout import TensorLayout
from bitvert.codec.view import weight_encoding
from bitvert.errors import ConfigError
from bitvert.hardware.config import load_accelerator
from bitvert.hardware.simulate import simulate
from bitvert.hardware.targets import SimTarget, can_run, runs_method, target_for
from bitvert.hardware.variants import workload_for_variant
from bitvert.hardware.workload import Workload
from bitvert.pipeline import presets as presets_mod
from bitvert.pipeline.presets import PipelinePreset, get_preset, method_label
from bitvert.pipeline.quantize import LayerRole
from bitvert.pruning import PruneConfig, prune
from bitvert.pruning.methods import MethodSpec, get_method, method_names, reference_group, register_method, \
    unregister_method

from hw_helpers import conv, linear, workload

TOY = "toy_truncate"


def _toy_kernel(values, lengths, active, config):
    n = int(config.columns)
    out = np.where(active[:, None], (values >> n) << n, values).astype(np.int16)  # floor to a multiple of 2**N
    return out, np.zeros(values.shape[0], np.uint8), np.zeros(values.shape[0], np.int16)


def _toy_reference(w, config):
    step = 1 << int(config.columns)
    return np.array([(int(x) // step) * step for x in w], dtype=np.int16), 0, 0


def _toy_validate(config):
    if config.semantics != "paper":
        raise ConfigError(f"method {TOY!r} has only paper semantics, got semantics={config.semantics.value!r}")


@pytest.fixture
def toy_method():
    spec = register_method(MethodSpec(
        name=TOY, label="toy truncation", kernel=_toy_kernel, reference=_toy_reference,
        layout="bbs_zero_point", hardware="bitvert", validate=_toy_validate,
    ))
    yield spec
    unregister_method(TOY)


def _geometry() -> Workload:
    rng = np.random.default_rng(7)
    w1 = np.clip(np.round(rng.laplace(0, 20, size=(64, 96))), -127, 127).astype(np.int16)
    w2 = np.clip(np.round(rng.laplace(0, 20, size=(32, 16, 3, 3))), -127, 127).astype(np.int16)
    w3 = np.clip(np.round(rng.laplace(0, 20, size=(40, 64))), -127, 127).astype(np.int16)
    return workload(linear("fc1", w1, tokens=16), conv("conv", w2, out_hw=(8, 8)), linear("fc2", w3, tokens=16),
                    name="toy-net")


def _toy_target() -> SimTarget:
    """BitVert hardware running the toy variant (the design the toy method's registry entry names)."""
    return SimTarget("bitvert-toy", load_accelerator(get_method(TOY).hardware), "toy-variant")


class _ToySource:
    """The variant of each layer: pruned by the toy method, encoded and decoded by the codec."""

    def __init__(self) -> None:
        self.pruned: dict[str, np.ndarray] = {}

    def workload(self, geometry: Workload, preset: str) -> Workload:
        if preset == "int8":
            return geometry
        encodings = {}
        for layer in geometry.layers:
            res = prune(layer.weights, PruneConfig(TOY, columns=3), kind="conv" if layer.is_conv else "linear")
            enc = encode(res, name=layer.name)
            assert enc.layout is TensorLayout.BBS_ZERO_POINT
            assert np.array_equal(decode(enc), res.weights)  # decoded integers are the pruned ones
            self.pruned[layer.name] = res.weights
            encodings[layer.name] = weight_encoding(enc, layer.name)
        return workload_for_variant(geometry, encodings, preset)


def test_toy_method_is_known_everywhere_once_registered(toy_method):
    assert TOY in method_names() and get_method(TOY) is toy_method
    cfg = PruneConfig(TOY, columns=2)
    assert cfg.method == TOY and cfg.method_name == TOY and cfg.spec is toy_method
    assert PruneConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(ConfigError, match="only paper semantics"):
        PruneConfig(TOY, semantics="code")
    assert runs_method("bitvert", TOY) and not runs_method("bitwave", TOY)
    assert runs_method("stripes", TOY)  # dense designs run any variant's integers
    assert method_label(TOY) == "toy truncation"
    assert PipelinePreset(name="toy", method=TOY, columns=3).method == TOY
    w = np.array([[13, -57, 20, -11, 127, -128, 0, 5]], dtype=np.int16)
    res = prune(w, PruneConfig(TOY, group_size=8, columns=3))
    assert res.weights.tolist() == [[8, -64, 16, -16, 120, -128, 0, 0]]  # floor to multiples of 8, by hand
    assert reference_group(w[0], res.config)[0].tolist() == res.weights[0].tolist()
    assert int(res.free_columns[0]) >= 3


def test_toy_method_unknown_after_unregistering():
    assert TOY not in method_names()
    with pytest.raises(ConfigError, match="method must be one of"):
        PruneConfig(TOY)
    with pytest.raises(ValueError, match="method must be one of"):
        PipelinePreset(name="toy", method=TOY, columns=3)


def test_toy_method_prune_encode_decode_simulate(toy_method):
    geometry = _geometry()
    source = _ToySource()
    report = simulate(geometry, [_toy_target()], variants=source)
    rows = [r for r in report.rows if r["accelerator"] == "bitvert-toy"]
    assert [r["layer"] for r in rows] == ["fc1", "conv", "fc2"]
    assert all(r["cycles"] > 0 for r in rows)
    tot = report.totals["toy-net"]["bitvert-toy"]
    assert tot["variant"] == "toy-variant" and tot["speedup_vs_stripes"] > 1.0  # 5 of 8 columns stored
    # the simulator read the toy variant's footprint: 5 stored columns + 8 metadata bits per 32 weights
    assert 5.0 < tot["bits_per_weight"] < 5.6
    for layer in geometry.layers:
        assert source.pruned[layer.name].shape == layer.weights.shape
        assert np.all(source.pruned[layer.name] % 8 == 0)


def test_toy_method_through_a_pipeline_preset(toy_method, monkeypatch):
    """A preset naming the toy method runs on BitVert through the pipeline's own Algorithm 2."""
    preset = PipelinePreset(name="toy-preset", method=TOY, columns=3, first_layer=LayerRole.PRUNE,
                            last_layer=LayerRole.PRUNE)
    monkeypatch.setitem(presets_mod.PRESETS, "toy-preset", preset)
    assert get_preset("toy-preset") is preset and can_run("bitvert", "toy-preset")
    assert not can_run("bitwave", "toy-preset")
    with pytest.raises(ConfigError, match="cannot run preset 'toy-preset'"):
        target_for(load_accelerator("bitwave"), "toy-preset")
    geometry = _geometry()
    report = simulate(geometry, ["bitvert:toy-preset"])
    tot = report.totals["toy-net"]["bitvert-toy-preset"]
    assert tot["variant"] == "toy-preset" and tot["cycles"] > 0
    direct = simulate(geometry, [_toy_target()], variants=_ToySource())
    # same integers, same stored columns: the pipeline's path and the direct path simulate alike
    assert tot["cycles"] == direct.totals["toy-net"]["bitvert-toy"]["cycles"]

