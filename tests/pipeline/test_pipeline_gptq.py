"""The gptq solver in the pipeline: presets, validation, sequential Hessians, encodable results."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from bitvert.errors import ConfigError
from bitvert.pipeline import IntLayer, get_preset, list_presets, prune_int_layers, prune_model_
from bitvert.pipeline.presets import GPTQ_SUFFIX, PRESETS


def test_gptq_presets_mirror_their_parents() -> None:
    for parent in ("conservative", "moderate", "llm-conservative", "llm-moderate", "bitwave-w5", "bitwave-w6"):
        p, q = get_preset(parent), get_preset(parent + GPTQ_SUFFIX)
        assert q.solver == "gptq" and p.solver == "greedy"
        assert q.scale_search == "mse" and p.scale_search == "none"  # greedy presets stay paper-exact
        assert q.gptq_act_order and not p.gptq_act_order
        # the same fields apart from the scale search, act order and the activation observer (output-error
        # ranges when activations are quantized; docs/pipeline.md "Decisions")
        skip = {"name": True, "description": True, "solver": True, "scale_search": True, "gptq_act_order": True,
                "quant": {"act_observer"}}
        assert q.model_dump(exclude=skip) == p.model_dump(exclude=skip)
        assert q.quant.act_observer == ("minmax" if p.quant.act_bits is None else "output")
        assert q.needs_calibration
    names = list_presets()
    for b in ("bitwave", "rtn"):
        for p in ("moderate-gptq", "llm-moderate-gptq", "conservative-gptq"):
            assert f"{b}-{p}" in names
            assert get_preset(f"{b}-{p}").solver == "gptq"
            assert get_preset(f"{b}-{p}").scale_search == "mse"  # the baselines search their scales too
    assert get_preset("rtn-moderate-gptq").method == "rtn"
    assert "GPTQ at 4 bits" in get_preset("rtn-moderate-gptq").description
    assert "int8-gptq" not in PRESETS


def test_bad_solver_values_give_clear_errors() -> None:
    with pytest.raises(ConfigError, match="'greedy' or 'gptq'"):
        get_preset("moderate", solver="gptQ2")
    with pytest.raises(ConfigError, match="needs a pruning method"):
        get_preset("int8", solver="gptq")
    with pytest.raises(ConfigError, match="gptq_damp"):
        get_preset("moderate-gptq", gptq_damp=2.0)
    with pytest.raises(ConfigError, match="gptq_block"):
        get_preset("moderate-gptq", gptq_block=0)


def test_gptq_needs_calibration_and_a_model(block) -> None:
    preset = get_preset("llm-moderate-gptq")
    with pytest.raises(ConfigError, match="calibration"):
        prune_model_(copy.deepcopy(block), preset)
    layer = IntLayer("fc", "linear", np.ones((4, 8), np.int16), np.ones(4, np.float32))
    with pytest.raises(ConfigError, match="prune_int_layers"):
        prune_int_layers([layer], preset)


def _output_error(model, reference, batches) -> float:
    with torch.no_grad():
        return sum(float(((model(b) - reference(b)) ** 2).sum()) for b in batches)


@pytest.mark.parametrize("name", ["llm-moderate", "rtn-llm-moderate", "bitwave-llm-moderate", "llm-conservative"])
def test_gptq_lowers_output_error_at_the_same_bits(block, block_batches, name) -> None:
    from bitvert.codec import decode, encode_report

    greedy_model, gptq_model = copy.deepcopy(block), copy.deepcopy(block)
    greedy = prune_model_(greedy_model, name)
    solved = prune_model_(gptq_model, name + GPTQ_SUFFIX, calibration=block_batches)
    assert solved.effective_bits == greedy.effective_bits
    # the stages split the pruning time: calibration, the solver and the greedy comparison all ran
    assert {"hessians", "factor", "solver", "layers", "other"} <= set(solved.stage_seconds)
    assert ("greedy" in solved.stage_seconds) == (not name.startswith("rtn"))
    assert abs(sum(solved.stage_seconds.values()) - solved.prune_seconds) < 1e-6
    assert set(solved.stage_cpu_seconds) == set(solved.stage_seconds)
    assert ("greedy" in greedy.stage_seconds) == (not name.startswith("rtn"))
    assert "solver" not in greedy.stage_seconds and "hessians" not in greedy.stage_seconds
    assert _output_error(gptq_model, block, block_batches) < _output_error(greedy_model, block, block_batches)
    for a, b in zip(greedy.layers, solved.layers):
        assert a.role == b.role and a.n_sensitive == b.n_sensitive
    if name.startswith("rtn"):
        return
    for rec_name, enc in encode_report(solved).tensors.items():  # every gptq result encodes bit-exactly
        rec = next(r for r in solved.layers if f"{r.name}.weight" == rec_name)
        np.testing.assert_array_equal(decode(enc), rec.q)


def test_gptq_on_convolutions_keeps_sensitive_channels_int8(cnn, cnn_batches) -> None:
    from bitvert.codec import decode, encode_report

    preset = get_preset("moderate-gptq", sensitive_fraction=0.3, quant={"act_bits": None}, last_layer="prune")
    greedy = prune_model_(copy.deepcopy(cnn), preset.model_copy(update={"solver": "greedy"}))
    model = copy.deepcopy(cnn)
    solved = prune_model_(model, preset, calibration=iter(cnn_batches))  # a one-shot iterator is enough
    for a, b in zip(greedy.layers, solved.layers):
        if b.sensitive is not None:
            np.testing.assert_array_equal(a.q[b.sensitive], b.q[b.sensitive])
    assert any(not np.array_equal(a.q, b.q) for a, b in zip(greedy.layers, solved.layers) if b.role == "prune")
    for rec_name, enc in encode_report(solved).tensors.items():
        rec = next(r for r in solved.layers if f"{r.name}.weight" == rec_name)
        np.testing.assert_array_equal(decode(enc), rec.q)


def test_cli_set_solver(tmp_path) -> None:
    from bitvert.cli import main

    res = CliRunner().invoke(main, ["prune", "--model", "mnist-cnn", "--preset", "moderate", "--set", "solver=gptk",
                                    "--no-eval", "--out", str(tmp_path / "o")])
    assert res.exit_code != 0
    assert "'greedy' or 'gptq'" in (res.output + str(res.exception))


@pytest.mark.parametrize("quantized", [True, False])
def test_gptq_quantized_inputs_collects_h_on_fake_quantized_inputs(block, block_batches, monkeypatch,
                                                                   quantized) -> None:
    import bitvert.pipeline.global_prune as gp

    seen: list[torch.Tensor] = []
    original = gp.calibrate_sequentially

    def spy(model, layers, batches, callback, **kw):
        first = layers[0].module
        probe = first.register_forward_pre_hook(lambda m, args: seen.append(args[0].detach().clone()))
        try:
            return original(model, layers, batches, callback, **kw)
        finally:
            probe.remove()

    monkeypatch.setattr(gp, "calibrate_sequentially", spy)
    preset = get_preset("llm-moderate-gptq", quant={"act_bits": 4}, gptq_quantized_inputs=quantized)
    model = copy.deepcopy(block)
    rep = prune_model_(model, preset, calibration=block_batches)
    assert seen
    distinct = max(int(torch.unique(x).numel()) for x in seen)
    assert (distinct <= 16) == quantized  # 4-bit activations: at most 16 values per tensor
    # only the final activation quantizer's hooks stay on the model
    hooks = {name: len(m._forward_pre_hooks) for name, m in model.named_modules() if m._forward_pre_hooks}
    assert set(hooks.values()) == {1} and len(hooks) == len(rep.activation_quantizer.layers)
    assert not get_preset("moderate-gptq").gptq_quantized_inputs
