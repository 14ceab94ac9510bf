"""Algorithm 2 on integer layers (prune_int_layers) is the model path's Algorithm 2, rule for rule."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from bitvert.errors import InputError
from bitvert.pipeline import (
    IntLayer,
    get_preset,
    list_presets,
    prune_int_layers,
    prune_model_,
    quantize_weight,
    select_layers,
)
from bitvert.pipeline.quantize import get_weight

_INT_FIELDS = ("name", "kind", "shape", "out_axis", "role", "reason", "n_weights", "n_channels", "n_sensitive",
               "n_sensitive_global", "weight_bits_total", "int_sse", "layout")


def _int_layers(model: torch.nn.Module, with_float: bool = True) -> list[IntLayer]:
    """The INT8 integers of every quantizable layer, as the model path quantizes them."""
    out = []
    for layer in select_layers(model):
        w = get_weight(layer.module).detach()
        q, s = quantize_weight(w, 8, layer.out_axis)
        out.append(IntLayer(name=layer.name, kind=layer.kind, q=q.numpy(), scale=s.numpy(), out_axis=layer.out_axis,
                            weight=w.numpy().copy() if with_float else None))
    return out


def _assert_same_records(a, b, float_exact: bool = True) -> None:
    assert [r.name for r in a.layers] == [r.name for r in b.layers]
    for ra, rb in zip(a.layers, b.layers):
        for f in _INT_FIELDS:
            assert getattr(ra, f) == getattr(rb, f), (ra.name, f)
        for f in ("q", "scale", "channel_bits", "sensitive"):
            va, vb = getattr(ra, f), getattr(rb, f)
            assert (va is None) == (vb is None), (ra.name, f)
            if va is not None:
                np.testing.assert_array_equal(va, vb, err_msg=f"{ra.name}.{f}")
        assert (ra.metadata is None) == (rb.metadata is None)
        if ra.metadata is not None:
            for k in ra.metadata:
                np.testing.assert_array_equal(ra.metadata[k], rb.metadata[k], err_msg=f"{ra.name}.meta.{k}")
        if float_exact:
            assert ra.float_sse == rb.float_sse and ra.float_energy == rb.float_energy, ra.name
    assert a.effective_bits == b.effective_bits


@pytest.mark.parametrize("name", ["int8", "conservative", "moderate", "bitwave-moderate", "rtn-moderate",
                                  "llm-moderate", "bitwave-w5"])
def test_integer_path_equals_model_path(block, block_batches, name: str) -> None:
    preset = get_preset(name, sensitive_fraction=0.3) if get_preset(name).method != "none" else get_preset(name)
    layers = _int_layers(block)
    model = copy.deepcopy(block)
    calib = block_batches if preset.quant.act_bits is not None else None
    via_model = prune_model_(model, preset, calib)
    via_ints = prune_int_layers(layers, preset)
    _assert_same_records(via_model, via_ints)
    assert via_ints.activation_ranges == {}


def test_first_last_rule_and_short_groups_on_a_cnn(cnn) -> None:
    """The RGB stem (groups of 3) and the head keep INT8 under `moderate`, as in the model path."""
    rep = prune_int_layers(_int_layers(cnn), "moderate")
    roles = {r.name: (r.role, r.reason) for r in rep.layers}
    assert roles["stem"] == ("int8", "first_layer")
    assert roles["head"] == ("int8", "last_layer")
    assert roles["pw"][0] == "prune"
    _assert_same_records(prune_model_(copy.deepcopy(cnn), get_preset("moderate", quant={"act_bits": None})),
                         prune_int_layers(_int_layers(cnn), get_preset("moderate", quant={"act_bits": None})))


def test_rules_and_float_weights_optional(block) -> None:
    """Without float weights the integers are the same for BBS methods (they never read the floats)."""
    a = prune_int_layers(_int_layers(block), "moderate", rules={"fc1": "fp32"})
    b = prune_int_layers(_int_layers(block, with_float=False), "moderate", rules={"fc1": "fp32"})
    _assert_same_records(a, b, float_exact=False)
    assert {r.name: r.role for r in a.layers}["fc1"] == "fp32"
    assert b.weight_sqnr_db > 20  # q * scale reproduces the weights up to the pruning error


def test_bad_integer_layers_are_refused() -> None:
    q = np.zeros((4, 32), dtype=np.int16)
    s = np.ones(4, dtype=np.float32)
    ok = IntLayer("a", "linear", q, s)
    with pytest.raises(InputError, match="empty"):
        prune_int_layers([], "moderate")
    with pytest.raises(InputError, match="duplicates"):
        prune_int_layers([ok, ok], "moderate")
    with pytest.raises(InputError, match="integers"):
        prune_int_layers([IntLayer("a", "linear", q.astype(np.float32), s)], "moderate")
    with pytest.raises(InputError, match="4 positive finite"):
        prune_int_layers([IntLayer("a", "linear", q, np.ones(3, dtype=np.float32))], "moderate")
    with pytest.raises(InputError, match="4 positive finite"):
        prune_int_layers([IntLayer("a", "linear", q, -s)], "moderate")
    with pytest.raises(InputError, match="outside the 8-bit weight range"):
        prune_int_layers([IntLayer("a", "linear", q - 128, s)], "moderate")
    with pytest.raises(InputError, match="out_axis"):
        prune_int_layers([IntLayer("a", "linear", q, s, out_axis=2)], "moderate")
    with pytest.raises(InputError, match="IntLayer"):
        prune_int_layers([("a", q, s)], "moderate")  # type: ignore[list-item]


def test_paper_bitwave_presets() -> None:
    assert {"bitwave-w5", "bitwave-w6"} <= set(list_presets())
    assert not any(n.startswith(("bitwave-bitwave", "rtn-bitwave")) for n in list_presets())
    for name, n in (("bitwave-w5", 3), ("bitwave-w6", 2)):
        p = get_preset(name)
        assert (p.method, p.columns, p.group_size, p.sensitive_fraction, p.stored_bits) == ("bitflip", n, 32, 0.0, 8 - n)


def test_report_encodes_like_the_saved_checkpoint(block, tmp_path) -> None:
    """encode_report(report) == encode_checkpoint(save_pruned(...)) tensor for tensor, byte for byte."""
    from bitvert.codec import decode, encode_checkpoint, encode_report
    from bitvert.pipeline import save_pruned

    preset = get_preset("moderate", sensitive_fraction=0.3, quant={"act_bits": None})
    model = copy.deepcopy(block)
    rep = prune_model_(model, preset)
    path = save_pruned(tmp_path / "pruned.safetensors", model, rep, {"name": "tiny-block"})
    from_file = encode_checkpoint(path)
    in_memory = encode_report(rep, {"name": "tiny-block"})
    assert sorted(from_file.tensors) == sorted(in_memory.tensors)
    for name, enc in in_memory.tensors.items():
        np.testing.assert_array_equal(enc.to_bytes(), from_file.tensors[name].to_bytes(), err_msg=name)
        rec = next(r for r in rep.layers if f"{r.name}.weight" == name)
        np.testing.assert_array_equal(decode(enc), rec.q)
    assert in_memory.source["layer_summary"] == from_file.source["layer_summary"]
    # integer layers without a model encode the same way
    ints = prune_int_layers(_int_layers(block), preset)
    for name, enc in encode_report(ints).tensors.items():
        np.testing.assert_array_equal(enc.to_bytes(), in_memory.tensors[name].to_bytes(), err_msg=name)
