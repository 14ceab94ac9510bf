"""Named presets, baselines and their validation."""

from __future__ import annotations

import pytest

from bitvert.errors import ConfigError
from bitvert.pipeline import PRESETS, LayerRole, PipelinePreset, baseline_of, get_preset, list_presets


def test_paper_presets():
    c, m = get_preset("conservative"), get_preset("moderate")
    assert (c.method, c.sensitive_fraction, c.columns, c.group_size, c.stored_bits) == ("rounded_avg", 0.1, 2, 32, 6)
    assert (m.method, m.sensitive_fraction, m.columns, m.group_size, m.stored_bits) == ("zero_point", 0.2, 4, 32, 4)
    for name, cols in (("llm-conservative", 2), ("llm-moderate", 4)):
        p = get_preset(name)
        assert p.sensitive_fraction == 0 and p.columns == cols
        assert p.first_layer is LayerRole.PRUNE and p.last_layer is LayerRole.PRUNE
        assert p.quant.act_bits is None  # weight-only: per-tensor 8-bit activations break LLMs
    assert c.first_layer is LayerRole.INT8 and c.last_layer is LayerRole.INT8
    assert get_preset("int8").method == "none"


def test_baselines_keep_beta_and_columns():
    m = get_preset("moderate")
    bw, rtn = baseline_of(m, "bitwave"), baseline_of(m, "rtn")
    assert (bw.name, bw.method, bw.sensitive_fraction, bw.columns) == ("bitwave-moderate", "bitflip", 0.2, 4)
    assert (rtn.name, rtn.method, rtn.sensitive_fraction, rtn.columns) == ("rtn-moderate", "rtn", 0.2, 4)
    assert get_preset("rtn-conservative").stored_bits == 6
    assert get_preset("BitWave_Moderate") == bw
    with pytest.raises(ConfigError, match="baseline"):
        baseline_of(m, "ant")
    with pytest.raises(ConfigError, match="not a BBS pruning preset"):
        baseline_of(get_preset("int8"), "rtn")
    assert set(list_presets()) >= {"int8", "moderate", "bitwave-llm-moderate", "rtn-conservative"}


def test_typo_suggests_the_name():
    with pytest.raises(ConfigError, match="did you mean 'moderate'") as exc:
        get_preset("moderat")
    assert "valid presets" in str(exc.value)
    with pytest.raises(ConfigError, match="unknown preset"):
        get_preset("xyz")
    with pytest.raises(ConfigError, match="name or a PipelinePreset"):
        get_preset(3)  # type: ignore[arg-type]


def test_overrides_are_validated():
    p = get_preset("moderate", sensitive_fraction=0.3, quant={"act_bits": None})
    assert p.sensitive_fraction == 0.3 and p.quant.act_bits is None and p.columns == 4
    with pytest.raises(ConfigError, match="sensitive_fraction"):
        get_preset("moderate", sensitive_fraction=1.5)
    with pytest.raises(ConfigError, match="beta: unknown field"):
        get_preset("moderate", beta=0.3)


@pytest.mark.parametrize(
    "kw, msg",
    [
        ({"method": "none", "columns": 2}, "prunes nothing"),
        ({"method": "zero_point", "columns": 0}, "columns >= 1"),
        ({"method": "rtn", "columns": 6, "quant": {"weight_bits": 7}}, "at least 2 bits"),
        ({"method": "zero_point", "columns": 4, "quant": {"weight_bits": 4}}, "no stored bit"),
        ({"method": "zero_point", "columns": 4, "unknown": 1}, "unknown: unknown field"),
    ],
)
def test_invalid_presets(kw, msg):
    with pytest.raises(ConfigError, match=msg):
        PipelinePreset.from_dict({"name": "x", **kw})


def test_round_trip():
    for p in PRESETS.values():
        assert PipelinePreset.from_dict(p.to_dict()) == p


def test_preset_methods_come_from_the_pipeline_and_the_registry():
    from bitvert.pipeline.presets import PIPELINE_METHODS, bbs_methods, method_label, preset_methods
    from bitvert.pruning.methods import method_names

    assert preset_methods() == [*PIPELINE_METHODS, *method_names()]
    assert {"none", "rtn", "rounded_avg", "zero_point", "bitflip"} <= set(preset_methods())
    assert bbs_methods()[:2] == ["rounded_avg", "zero_point"] and "bitflip" not in bbs_methods()
    assert [method_label(m) for m in ("none", "rtn", "zero_point")] == ["INT8", "round-to-nearest",
                                                                        "BBS zero-point shifting"]
    assert method_label("from_another_process") == "from_another_process"
    with pytest.raises(ConfigError, match=r"method must be one of \['none', 'rtn', 'rounded_avg'"):
        PipelinePreset.from_dict({"name": "x", "method": "rounded_average", "columns": 2})
    assert all(PRESETS[n].method in preset_methods() for n in PRESETS)


def test_gptq_presets_choose_activation_ranges_by_output_error():
    from bitvert.pipeline import get_preset
    from bitvert.report.variants import int8_baseline

    for name in ("conservative-gptq", "moderate-gptq", "bitwave-moderate-gptq", "rtn-moderate-gptq",
                 "bitwave-w5-gptq"):
        p = get_preset(name)
        assert (p.quant.act_bits, p.quant.act_observer) == (8, "output"), name
        assert "output error" in p.description or name.startswith(("bitwave-moderate", "rtn-"))
        parent = get_preset(name.removesuffix("-gptq"))
        assert parent.quant.act_observer == "minmax"  # the paper's presets keep min/max
        assert p.quant.model_copy(update={"act_observer": "minmax"}) == parent.quant
    assert int8_baseline(get_preset("moderate-gptq")).quant.act_observer == "output"  # its INT8 row alike
    assert get_preset("llm-moderate-gptq").quant == get_preset("llm-moderate").quant  # weight-only: unchanged
    assert get_preset("moderate-gptq", quant={"act_bits": 8, "act_observer": "minmax"}).quant.act_observer == "minmax"


def test_gptq_presets_walk_groups_in_act_order():
    """The -gptq presets and their baselines default to act order (SmolLM2 llm-moderate-gptq: perplexity 47.07
    in column order, 39.87 in act order, docs/pipeline.md); the paper's presets keep the greedy solver."""
    from bitvert.pipeline import PRESETS, get_preset

    gptq = [n for n in PRESETS if n.endswith("-gptq")]
    assert {"conservative-gptq", "moderate-gptq", "llm-conservative-gptq", "llm-moderate-gptq",
            "bitwave-w5-gptq"} <= set(gptq)
    for name in gptq + ["rtn-llm-moderate-gptq", "bitwave-llm-moderate-gptq", "rtn-moderate-gptq"]:
        p = get_preset(name)
        assert p.solver == "gptq" and p.gptq_act_order is True, name
        assert get_preset(name.removesuffix("-gptq")).gptq_act_order is False, name
    assert get_preset("llm-moderate-gptq", gptq_act_order=False).gptq_act_order is False
