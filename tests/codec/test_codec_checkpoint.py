"""pruned.safetensors -> *.bbs.safetensors -> a running model with exactly the pruned weights."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from codec_models import MLP, ConvNet, conv_batches, mlp_batches

from bitvert.codec import TensorLayout
from bitvert.codec.checkpoint import encode_checkpoint, encode_checkpoint_file, to_pruned_checkpoint
from bitvert.codec.container import file_accounting, load_encoded, save_encoded
from bitvert.codec.torch_load import load_model_, load_state_dict
from bitvert.errors import FormatError, InputError
from bitvert.pipeline import apply_checkpoint_, load_pruned, prune_model_, save_pruned


def _pruned(tmp_path, model_cls, batches, preset):
    torch.manual_seed(0)
    model = model_cls().eval()
    base = copy.deepcopy(model)
    report = prune_model_(model, preset, calibration=batches())
    path = save_pruned(tmp_path / "pruned.safetensors", model, report, {"name": "test-model"})
    return base, model, report, path


@pytest.mark.parametrize("preset", ["moderate", "conservative", "bitwave-moderate", "rtn-moderate", "int8"])
def test_conv_model_runs_identically_from_the_encoded_file(tmp_path, preset):
    base, model, report, path = _pruned(tmp_path, ConvNet, conv_batches, preset)
    out = tmp_path / "m.bbs.safetensors"
    encoded = encode_checkpoint_file(path, out)
    ckpt = load_pruned(path)
    loaded = load_encoded(out)
    for layer in ckpt.layers:  # integer weights are exact
        assert np.array_equal(loaded.decode(f"{layer.name}.weight"), layer.q.numpy())
    fresh = copy.deepcopy(base)
    aq = load_model_(fresh, out)
    x = conv_batches()[0]
    assert torch.equal(fresh(x), model(x))
    if aq is not None:
        aq.remove()
    # the file's weight bytes are exactly the per-tensor totals
    assert file_accounting(out)["weight_bytes"] == encoded.stats()["weight_bytes"]


def test_effective_bits_match_the_pipeline_plus_index_tables(tmp_path):
    _, _, report, path = _pruned(tmp_path, MLP, mlp_batches, "moderate")
    enc = encode_checkpoint(path)
    for rec in report.layers:
        s = enc.tensors[f"{rec.name}.weight"].stats()
        # the pipeline counts columns + metadata; the file adds the channel-index table
        assert 8 * (s["total_bytes"] - s["index_bytes"]) == pytest.approx(rec.weight_bits_total, abs=7)
        sens = int(rec.sensitive.sum()) if rec.sensitive is not None else 0
        assert s["sensitive_channels"] == (sens if rec.role == "prune" else 0)


def test_llm_preset_is_4_25_bits(tmp_path):
    _, _, report, path = _pruned(tmp_path, MLP, mlp_batches, "llm-moderate")
    enc = encode_checkpoint(path)
    pruned = [l for l in report.layers if l.role == "prune"]
    assert pruned
    for rec in pruned:
        s = enc.tensors[f"{rec.name}.weight"].stats()
        assert s["bits_per_weight"] == 4.25
        assert enc.tensors[f"{rec.name}.weight"].layout is TensorLayout.BBS_ZERO_POINT


def test_float_state_dict(tmp_path):
    base, model, _, path = _pruned(tmp_path, MLP, mlp_batches, "conservative")
    out = tmp_path / "m.bbs.safetensors"
    encode_checkpoint_file(path, out)
    sd = load_state_dict(out)
    ref = model.state_dict()
    assert set(sd) == set(ref)
    for k in ref:
        assert torch.equal(sd[k], ref[k]), k


def test_round_trip_to_pruned_checkpoint(tmp_path):
    base, model, _, path = _pruned(tmp_path, ConvNet, conv_batches, "moderate")
    ckpt = to_pruned_checkpoint(encode_checkpoint(path))
    orig = load_pruned(path)
    for a, b in zip(ckpt.layers, orig.layers):
        assert torch.equal(a.q, b.q) and torch.equal(a.scale, b.scale)
        assert torch.equal(a.sensitive, b.sensitive)
        assert torch.equal(a.channel_bits, b.channel_bits)
    fresh = copy.deepcopy(base)
    apply_checkpoint_(fresh, ckpt)
    x = conv_batches()[0]
    assert torch.equal(fresh(x), model(x))


def test_unpruned_layer_where_a_pruned_one_is_required(tmp_path):
    _, _, _, path = _pruned(tmp_path, MLP, mlp_batches, "moderate")
    ckpt = load_pruned(path)
    layer = next(l for l in ckpt.layers if l.metadata)
    # replace the pruned weights with unpruned ones: metadata says pruned, columns disagree
    layer.q = torch.randint(-90, 90, layer.q.shape, dtype=torch.int16)
    with pytest.raises(InputError, match=f"{layer.name}.weight.*marked pruned"):
        encode_checkpoint(ckpt)
    layer.metadata = {}
    with pytest.raises(InputError, match=f"{layer.name!r} has role 'prune'.*not a pruned tensor"):
        encode_checkpoint(ckpt)


def test_file_not_from_a_checkpoint_cannot_load_a_model(tmp_path):
    from bitvert.codec import encode_plain

    p = save_encoded(tmp_path / "x.bbs.safetensors", {"w": encode_plain(np.ones((2, 4), np.int16))})
    with pytest.raises(FormatError, match="not encoded from a pruned checkpoint"):
        load_model_(MLP(), p)
    sd = load_state_dict(p)
    assert torch.equal(sd["w"], torch.ones(2, 4))
