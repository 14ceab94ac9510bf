"""Input Hessians (bitvert.pipeline.calibration): column order, conv im2col, sequential mode."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import torch
from torch import nn
from torch.nn import functional as F

from bitvert.core.grouping import make_layout
from bitvert.errors import InputError, UnsupportedLayerError
from bitvert.pipeline import select_layers
from bitvert.pipeline.calibration import (
    calibrate_sequentially,
    channel_hessians,
    collect_hessians,
    grouping_permutation,
    hessian_shape,
)
from bitvert.pipeline.quantize import layer_kind
from pipeline_models import HFConv1D


def _layers(model: nn.Module):
    return select_layers(model, first_layer="prune", last_layer="prune")


def _output_error(module: nn.Module, x: torch.Tensor, delta: torch.Tensor) -> float:
    """Σ‖ΔW x‖² over every output of the layer (no bias), computed by running the layer."""
    with torch.no_grad():
        w = module.weight.detach().clone()
        b = getattr(module, "bias", None)
        saved_b = None if b is None else b.detach().clone()
        module.weight.copy_(delta)
        if b is not None:
            b.zero_()
        y = module(x)
        module.weight.copy_(w)
        if b is not None:
            b.copy_(saved_b)
    return float((y.double() ** 2).sum())


def _quadratic(module: nn.Module, h: torch.Tensor, delta: torch.Tensor) -> float:
    """Σ_k e_k H_k e_kᵀ with e_k the k-th row of ΔW in the grouping's column order."""
    kind, axis = layer_kind(module)
    layout = make_layout(tuple(delta.shape), kind, 4)
    rows = layout.to_rows(delta.double().numpy()).reshape(layout.n_channels, -1)
    hk = channel_hessians(h, layout.n_channels).numpy()
    return float(np.einsum("ki,kij,kj->", rows, hk, rows))


def test_linear_hessian_is_xtx(block, block_batches) -> None:
    layers = _layers(block)
    hs = collect_hessians(block, layers, block_batches)
    xs = [block.embed(b).reshape(-1, 64).double() for b in block_batches]
    want = sum(x.T @ x for x in xs)
    assert hs["qkv"].dtype == torch.float64 and hs["qkv"].shape == (64, 64)
    torch.testing.assert_close(hs["qkv"], want, rtol=1e-10, atol=1e-9)
    assert hs.n_samples["qkv"] == 2 * 2 * 12
    assert set(hs) == {l.name for l in layers}


def test_hf_conv1d_hessian_is_xtx() -> None:
    torch.manual_seed(0)
    m = nn.Sequential(nn.Linear(6, 16), HFConv1D(5, 16))
    xs = [torch.randn(3, 7, 6) for _ in range(2)]
    hs = collect_hessians(m, _layers(m), xs)
    ins = [m[0](x).reshape(-1, 16).double() for x in xs]
    torch.testing.assert_close(hs["1"], sum(x.T @ x for x in ins), rtol=1e-10, atol=1e-9)
    assert hessian_shape(m[1]) == (16, 16)
    delta = torch.randn(16, 5)  # (in, out) storage
    x = m[0](xs[0]).detach()
    h0 = collect_hessians(m, _layers(m), [xs[0]])["1"]
    assert _quadratic(m[1], h0, delta) == pytest.approx(_output_error(m[1], x, delta), rel=1e-6)


CONVS = [
    lambda: nn.Conv2d(6, 8, 3),
    lambda: nn.Conv2d(6, 8, 3, stride=2, padding=1),
    lambda: nn.Conv2d(6, 8, (3, 2), dilation=(2, 1), padding=(1, 2)),
    lambda: nn.Conv2d(6, 8, 3, padding=1, padding_mode="reflect"),
    lambda: nn.Conv2d(6, 8, 3, padding="same"),
    lambda: nn.Conv2d(6, 8, 3, groups=2, padding=1),
    lambda: nn.Conv2d(6, 6, 3, groups=6, padding=1),  # depthwise
    lambda: nn.Conv2d(6, 12, 3, groups=6),  # depthwise, channel multiplier 2
    lambda: nn.Conv2d(6, 8, 1),
    lambda: nn.Conv1d(6, 8, 3, padding=1),
    lambda: nn.Conv3d(4, 8, (2, 3, 3), padding=(0, 1, 1)),
    lambda: _StaticSameConv(6, 8, 5, stride=2, pad=nn.ZeroPad2d((1, 2, 1, 2))),
    lambda: _StaticSameConv(6, 6, 5, stride=2, groups=6, pad=nn.ZeroPad2d((2, 2, 1, 3))),
    lambda: _StaticSameConv(6, 8, 3, pad=nn.Identity()),
    lambda: _StaticSameConv(6, 8, 3, pad=Identity()),
]


class Identity(nn.Module):
    """A package's own identity module, as efficientnet_lite_pytorch's ``utils.Identity``."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x


class _StaticSameConv(nn.Conv2d):
    """EfficientNet's ``Conv2dStaticSamePadding``: pads its input in ``forward`` (TensorFlow "same")."""

    def __init__(self, cin: int, cout: int, k: int, stride: int = 1, groups: int = 1,
                 pad: nn.Module | None = None) -> None:
        super().__init__(cin, cout, k, stride=stride, groups=groups)
        self.static_padding = pad

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(self.static_padding(x), self.weight, self.bias, self.stride, self.padding, self.dilation,
                        self.groups)


def test_other_padding_in_forward_is_refused() -> None:
    conv = _StaticSameConv(4, 8, 3, pad=nn.ReflectionPad2d(1))
    m = nn.Sequential(conv)
    with pytest.raises(UnsupportedLayerError, match="only zero padding"):
        collect_hessians(m, _layers(m), [torch.randn(1, 4, 6, 6)])


@pytest.mark.parametrize("make", CONVS)
def test_conv_hessian_gives_output_error(make) -> None:
    """tr(E H Eᵀ) in the grouping order equals the output energy of the weight change ΔW."""
    torch.manual_seed(1)
    conv = make()
    nd = conv.weight.ndim - 2
    spatial = {1: (9,), 2: (7, 6), 3: (3, 5, 5)}[nd]
    xs = [torch.randn((2, conv.in_channels) + spatial) for _ in range(2)]
    m = nn.Sequential(conv)
    hs = collect_hessians(m, _layers(m), xs)
    h = hs["0"]
    assert tuple(h.shape) == hessian_shape(conv)
    delta = torch.randn_like(conv.weight)
    want = sum(_output_error(conv, x, delta) for x in xs)
    assert _quadratic(conv, h, delta) == pytest.approx(want, rel=1e-6)


def test_conv2d_hessian_equals_unfold_xtx() -> None:
    torch.manual_seed(2)
    conv = nn.Conv2d(4, 5, 3, padding=1, stride=2)
    x = torch.randn(3, 4, 9, 9)
    m = nn.Sequential(conv)
    cols = F.unfold(x, 3, padding=1, stride=2).transpose(1, 2).reshape(-1, 4 * 9).double()  # (C, kh, kw) order
    want = cols.T @ cols
    hw = collect_hessians(m, _layers(m), [x], order="weight")["0"]
    torch.testing.assert_close(hw, want, rtol=1e-10, atol=1e-9)
    hg = collect_hessians(m, _layers(m), [x])["0"]
    p = torch.from_numpy(grouping_permutation(conv))
    torch.testing.assert_close(hg, want[p][:, p], rtol=1e-10, atol=1e-9)
    assert hg.n_samples if hasattr(hg, "n_samples") else True


def test_depthwise_hessian_is_per_channel() -> None:
    torch.manual_seed(3)
    conv = nn.Conv2d(3, 3, 3, groups=3, padding=1)
    x = torch.randn(2, 3, 5, 5)
    h = collect_hessians(nn.Sequential(conv), _layers(nn.Sequential(conv)), [x])["0"]
    assert h.shape == (3, 9, 9)
    for c in range(3):
        cols = F.unfold(x[:, c:c + 1], 3, padding=1).transpose(1, 2).reshape(-1, 9).double()
        torch.testing.assert_close(h[c], cols.T @ cols, rtol=1e-10, atol=1e-9)
    assert channel_hessians(h, 6).shape == (6, 9, 9)
    with pytest.raises(InputError, match="does not fit 4 output channels"):
        channel_hessians(h, 4)


class _Chain(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Linear(8, 8)
        self.b = nn.Linear(8, 8)
        self.c = nn.Linear(8, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.c(torch.relu(self.b(torch.relu(self.a(x)))))


def test_sequential_sees_pruned_earlier_layers() -> None:
    torch.manual_seed(4)
    model = _Chain().eval()
    xs = [torch.randn(5, 8) for _ in range(3)]
    seen: dict[str, torch.Tensor] = {}

    def prune(layer, h) -> None:
        seen[layer.name] = h.clone()
        with torch.no_grad():
            layer.module.weight.mul_(0.5).round_()  # a crude "pruning" that changes later inputs

    counts = calibrate_sequentially(model, _layers(model), xs, prune)
    assert list(seen) == ["a", "b", "c"] and counts == {"a": 15, "b": 15, "c": 15}
    # by hand, with the already-changed weights (which the callback changed in order)
    with torch.no_grad():
        xb = [torch.relu(model.a(x)).double() for x in xs]
        xc = [torch.relu(model.b(torch.relu(model.a(x)))).double() for x in xs]
    torch.testing.assert_close(seen["b"], sum(x.T @ x for x in xb), rtol=1e-10, atol=1e-9)
    torch.testing.assert_close(seen["c"], sum(x.T @ x for x in xc), rtol=1e-10, atol=1e-9)


def test_sequential_passes_stop_once_the_step_has_its_inputs() -> None:
    """Each pass ends at the step's last layer: a step's own products (and the rest of the model) are
    never computed, so the last layer never runs forward and layer a runs once per later step."""
    torch.manual_seed(4)
    model = _Chain().eval()
    xs = [torch.randn(5, 8) for _ in range(3)]
    ran = {name: 0 for name in "abc"}
    hooks = [getattr(model, n).register_forward_hook(lambda m, a, o, n=n: ran.__setitem__(n, ran[n] + 1))
             for n in "abc"]
    ref = collect_hessians(model, _layers(model), xs)
    ran.update({n: 0 for n in "abc"})
    seen: dict[str, torch.Tensor] = {}
    calibrate_sequentially(model, _layers(model), xs, lambda layer, h: seen.__setitem__(layer.name, h))
    for h in hooks:
        h.remove()
    n = len(xs)  # plus one whole pass on the first batch that finds the execution order
    assert ran == {"a": 2 * n + 1, "b": n + 1, "c": 1}
    for name in "abc":  # weights unchanged by the callback: the one-pass Hessians
        torch.testing.assert_close(seen[name], ref[name], rtol=1e-10, atol=1e-9)


def test_a_step_of_layers_sharing_an_input_stops_at_its_first_layer() -> None:
    torch.manual_seed(5)
    model = _Stack(n=1).eval()
    xs = [torch.randn(2, 6, 4, generator=torch.Generator().manual_seed(i)) for i in range(3)]
    ran = {name: 0 for name in ("q", "k", "v", "o")}
    hooks = [getattr(model.layers[0], n).register_forward_hook(lambda m, a, o, n=n: ran.__setitem__(n, ran[n] + 1))
             for n in ran]
    ref = collect_hessians(model, _layers(model), xs)
    ran.update({n: 0 for n in ran})
    seen: dict[str, torch.Tensor] = {}
    counts = calibrate_sequentially(model, _layers(model), xs, lambda layer, h: seen.__setitem__(layer.name, h))
    for h in hooks:
        h.remove()
    # q/k/v ran for the o, up and down steps and the block's final pass (+1 pass on the first batch that
    # finds the order), never for their own step; o ran for the up and down steps and the final pass
    assert ran == {"q": 4 * 3 + 1, "k": 4 * 3 + 1, "v": 4 * 3 + 1, "o": 3 * 3 + 1}
    assert counts["layers.0.k"] == counts["layers.0.q"] == 36
    for name in ref:
        torch.testing.assert_close(seen[name], ref[name], rtol=1e-10, atol=1e-9)


def test_a_layer_called_twice_sums_both_calls_sequentially() -> None:
    class Twice(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.a, self.b = nn.Linear(6, 6), nn.Linear(6, 2)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.b(self.a(torch.relu(self.a(x))))

    torch.manual_seed(7)
    model = Twice().eval()
    xs = [torch.randn(4, 6) for _ in range(2)]
    ref = collect_hessians(model, _layers(model), xs)
    seen: dict[str, torch.Tensor] = {}
    counts = calibrate_sequentially(model, _layers(model), xs, lambda layer, h: seen.__setitem__(layer.name, h))
    assert counts["a"] == 16  # both calls of every batch
    torch.testing.assert_close(seen["a"], ref["a"], rtol=1e-10, atol=1e-9)


class _Block(nn.Module):
    def __init__(self, d: int) -> None:
        super().__init__()
        self.q, self.k, self.v = nn.Linear(d, d), nn.Linear(d, d), nn.Linear(d, d)
        self.o = nn.Linear(d, d)
        self.up = nn.Linear(d, 2 * d)
        self.down = HFConv1D(d, 2 * d)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None, scale: float = 1.0) -> tuple[torch.Tensor]:
        att = torch.softmax(self.q(x) @ self.k(x).transpose(-1, -2) * scale + mask, dim=-1)
        x = x + self.o(att @ self.v(x))
        return (x + self.down(torch.relu(self.up(x))),)


class _Stack(nn.Module):
    def __init__(self, d: int = 8, n: int = 3) -> None:
        super().__init__()
        self.inp = nn.Linear(4, d)
        self.layers = nn.ModuleList(_Block(d) for _ in range(n))
        self.head = nn.Linear(d, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.inp(x)
        mask = torch.zeros(h.shape[1], h.shape[1])
        for blk in self.layers:
            h = blk(h, mask=mask, scale=0.3)[0]
        return self.head(h)


def _run(blocks: bool, calls: list[str]) -> dict[str, torch.Tensor]:
    torch.manual_seed(5)
    model = _Stack().eval()
    xs = [torch.randn(2, 6, 4, generator=torch.Generator().manual_seed(i)) for i in range(3)]
    seen: dict[str, torch.Tensor] = {}

    def prune(layer, h) -> None:
        calls.append(layer.name)
        seen[layer.name] = h.clone()
        with torch.no_grad():
            layer.module.weight.copy_((layer.module.weight * 4).round() / 4)

    calibrate_sequentially(model, _layers(model), xs, prune, blocks=blocks)
    return seen


def test_block_mode_equals_model_mode(caplog) -> None:
    calls_b: list[str] = []
    calls_m: list[str] = []
    with caplog.at_level(logging.INFO, logger="bitvert.pipeline.calibration"):
        by_block = _run(True, calls_b)
    assert "block by block (3 blocks" in caplog.text  # the stack was used
    by_model = _run(False, calls_m)
    assert calls_b == calls_m
    assert calls_b[:5] == ["inp", "layers.0.q", "layers.0.k", "layers.0.v", "layers.0.o"]
    assert calls_b[-1] == "head"
    for name in by_model:
        torch.testing.assert_close(by_block[name], by_model[name], rtol=1e-9, atol=1e-9)


def test_layers_after_the_stack_replay_its_outputs() -> None:
    """The head's step does not run the blocks again: it gets the last block's stored outputs."""
    torch.manual_seed(5)
    model = _Stack().eval()
    xs = [torch.randn(2, 6, 4, generator=torch.Generator().manual_seed(i)) for i in range(3)]
    events: list[str] = []
    hook = model.layers[0].q.register_forward_hook(lambda m, a, o: events.append("run"))

    def prune(layer, h) -> None:
        events.append(layer.name)
        with torch.no_grad():
            layer.module.weight.copy_((layer.module.weight * 4).round() / 4)

    calibrate_sequentially(model, _layers(model), xs, prune)
    hook.remove()
    assert events[-1] == "head" and "run" not in events[events.index("layers.2.down"):]
    assert all("forward" not in blk.__dict__ for blk in model.layers)  # the blocks are restored
    ref = _Stack().eval()
    ref.load_state_dict(model.state_dict())
    torch.testing.assert_close(model(xs[0]), ref(xs[0]))


def test_qkv_share_one_step_and_one_input() -> None:
    torch.manual_seed(6)
    model = _Stack().eval()
    xs = [torch.randn(2, 6, 4)]
    hs = collect_hessians(model, _layers(model), xs)
    torch.testing.assert_close(hs["layers.1.q"], hs["layers.1.v"])
    assert hs["layers.1.q"] is not hs["layers.1.k"]  # separate tensors: callers may change one


def test_layer_that_never_runs_gets_zero_h(caplog) -> None:
    class Skip(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.a, self.unused = nn.Linear(3, 3), nn.Linear(3, 3)

        def forward(self, x):
            return self.a(x)

    m = Skip()
    with caplog.at_level(logging.WARNING):
        hs = collect_hessians(m, _layers(m), [torch.randn(2, 3)])
    assert hs.n_samples["unused"] == 0 and not hs["unused"].any()
    assert "never executed" in caplog.text
    got = []
    counts = calibrate_sequentially(m, _layers(m), [torch.randn(2, 3)], lambda l, h: got.append(l.name))
    assert got == ["a", "unused"] and counts["unused"] == 0


def test_bad_input() -> None:
    m = _Chain()
    with pytest.raises(InputError, match="no batches"):
        collect_hessians(m, _layers(m), [])
    with pytest.raises(InputError, match="QuantLayer"):
        collect_hessians(m, ["a"], [torch.randn(1, 8)])  # type: ignore[list-item]
    with pytest.raises(InputError, match="callback"):
        calibrate_sequentially(m, _layers(m), [torch.randn(1, 8)], None)  # type: ignore[arg-type]
    with pytest.raises(InputError, match="order"):
        collect_hessians(m, _layers(m), [torch.randn(1, 8)], order="rows")  # type: ignore[arg-type]


def test_float32_products_are_close_and_bad_dtype_rejected(block, block_batches) -> None:
    layers = _layers(block)
    h64 = collect_hessians(block, layers, block_batches)
    h32 = collect_hessians(block, layers, block_batches, compute_dtype=torch.float32)
    assert h32["fc1"].dtype == torch.float64
    torch.testing.assert_close(h32["fc1"], h64["fc1"], rtol=1e-5, atol=1e-4)
    with pytest.raises(InputError, match="compute_dtype"):
        collect_hessians(block, layers, block_batches, compute_dtype=torch.int64)


def test_output_gains_of_a_linear_chain() -> None:
    """f = B(Ax): channel k of A moves f by Σ_j B[j,k]² per unit change; B's channels by 1."""
    from bitvert.pipeline.calibration import output_gains

    torch.manual_seed(7)
    model = nn.Sequential(nn.Linear(6, 5), nn.Linear(5, 3)).eval()
    xs = [torch.randn(1000, 6) for _ in range(4)]
    gains = output_gains(model, _layers(model), xs)
    want = (model[1].weight.detach().double() ** 2).sum(dim=0).numpy()
    np.testing.assert_allclose(gains["0"], want, rtol=0.1)
    np.testing.assert_allclose(gains["1"], np.ones(3), rtol=0.1)
    assert all(not p.requires_grad or p.grad is None for p in model.parameters())
    assert model[0].weight.requires_grad  # flags restored (parameters require grad by default)


class _TokenBlock(nn.Module):
    def __init__(self, d: int) -> None:
        super().__init__()
        self.up, self.down = nn.Linear(d, 2 * d), nn.Linear(2 * d, d)

    def forward(self, x: torch.Tensor, attention_mask: torch.Tensor | None = None) -> tuple[torch.Tensor]:
        return (x + self.down(torch.relu(self.up(x))),)


class _TokenModel(nn.Module):
    """Per-token blocks fed a tokenizer-like mapping; the head reads the masked mean (a pooler)."""

    def __init__(self, d: int = 8) -> None:
        super().__init__()
        self.emb = nn.Embedding(20, d)
        self.inp = nn.Linear(d, d)
        self.layers = nn.ModuleList(_TokenBlock(d) for _ in range(2))
        self.head = nn.Linear(d, 3)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        h = self.inp(self.emb(input_ids))
        for blk in self.layers:
            h = blk(h, attention_mask=attention_mask)[0]
        m = attention_mask.unsqueeze(-1).to(h.dtype)
        return self.head((h * m).sum(1) / m.sum(1))


def _padded_and_single() -> tuple[list[dict[str, torch.Tensor]], list[dict[str, torch.Tensor]]]:
    gen = torch.Generator().manual_seed(9)
    samples = [torch.randint(1, 20, (n,), generator=gen) for n in (5, 3, 2, 4)]
    single = [{"input_ids": s[None], "attention_mask": torch.ones(1, len(s), dtype=torch.long)} for s in samples]
    padded = []
    for pair, left in ((samples[:2], False), (samples[2:], True)):  # right- and left-padded batches
        width = max(len(s) for s in pair)
        ids = torch.zeros(len(pair), width, dtype=torch.long)  # pad id 0 has a non-zero embedding
        mask = torch.zeros(len(pair), width, dtype=torch.long)
        for i, s in enumerate(pair):
            sl = slice(width - len(s), width) if left else slice(0, len(s))
            ids[i, sl], mask[i, sl] = s, 1
        padded.append({"input_ids": ids, "attention_mask": mask})
    return padded, single


def test_padded_tokens_are_not_counted_in_h() -> None:
    torch.manual_seed(10)
    model = _TokenModel().eval()
    padded, single = _padded_and_single()
    want = collect_hessians(model, _layers(model), single)
    got = collect_hessians(model, _layers(model), padded)
    assert got.n_samples == want.n_samples
    assert got.n_samples["inp"] == 14 and got.n_samples["head"] == 4  # 14 real tokens; the pooler sees 4 rows
    for name in want:
        torch.testing.assert_close(got[name], want[name], rtol=1e-6, atol=1e-6)  # float32 forward, batched vs single
    # the mask matters: without it the padded rows would count
    unmasked = collect_hessians(model, _layers(model), [(b["input_ids"], torch.ones_like(b["attention_mask"]))
                                                       for b in padded])
    assert unmasked.n_samples["inp"] == 18
    assert not torch.allclose(unmasked["inp"], want["inp"])


@pytest.mark.parametrize("blocks", [True, False])
def test_sequential_padded_batches_equal_single_samples(blocks: bool, caplog) -> None:
    def run(batches) -> tuple[dict[str, torch.Tensor], dict[str, int]]:
        torch.manual_seed(11)
        model = _TokenModel().eval()
        seen: dict[str, torch.Tensor] = {}

        def prune(layer, h) -> None:
            seen[layer.name] = h.clone()
            with torch.no_grad():
                layer.module.weight.copy_((layer.module.weight * 4).round() / 4)

        return seen, calibrate_sequentially(model, _layers(model), batches, prune, blocks=blocks)

    padded, single = _padded_and_single()
    with caplog.at_level(logging.INFO, logger="bitvert.pipeline.calibration"):
        got, got_n = run(padded)
    assert ("block by block (2 blocks" in caplog.text) == blocks
    want, want_n = run(single)
    assert got_n == want_n and got_n["layers.1.down"] == 14
    for name in want:
        torch.testing.assert_close(got[name], want[name], rtol=1e-6, atol=1e-6)  # float32 forward, batched vs single


@pytest.mark.parametrize("observer", ["minmax", "mse", "output"])
def test_padded_tokens_are_not_observed_in_activation_ranges(observer: str) -> None:
    from bitvert.pipeline import QuantConfig
    from bitvert.pipeline.quantize import ActivationQuantizer

    def ranges(batches) -> dict[str, tuple[float, int]]:
        torch.manual_seed(10)
        model = _TokenModel().eval()
        with torch.no_grad():
            model.emb.weight[0] = 10.0  # the pad id (never a real token here) embeds far outside the real range
        aq = ActivationQuantizer(select_layers(model, QuantConfig(act_observer=observer)))
        got = aq.calibrate(model, batches)
        aq.remove()
        return {k: (r.scale, r.zero_point) for k, r in got.items()}

    padded, single = _padded_and_single()
    want, got = ranges(single), ranges(padded)
    assert got.keys() == want.keys() and len(want) == 6
    for name, (scale, zp) in want.items():
        assert got[name][0] == pytest.approx(scale, rel=1e-6) and got[name][1] == zp, name
    # observed, the padded positions would stretch the first layer's range
    unmasked = ranges([(b["input_ids"], torch.ones_like(b["attention_mask"])) for b in padded])
    assert unmasked["inp"][0] > 1.5 * want["inp"][0]


class _SequenceModel(nn.Module):
    """Two per-token linear layers; returns the whole sequence ``[batch, tokens, 3]`` (like last_hidden_state)."""

    def __init__(self) -> None:
        super().__init__()
        self.emb = nn.Embedding(20, 4)
        self.l1, self.l2 = nn.Linear(4, 5), nn.Linear(5, 3)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return self.l2(self.l1(self.emb(input_ids)))


def test_output_gains_leave_out_padded_tokens() -> None:
    from bitvert.pipeline.calibration import output_gains

    torch.manual_seed(12)
    model = _SequenceModel().eval()
    padded, _ = _padded_and_single()
    gains = output_gains(model, _layers(model), padded, seed=3)
    # by hand: d(v.f)/d(y2) = v, d(v.f)/d(y1) = v @ W2, v ~ N(0, 1) drawn per batch (seed 3), 0 on padding,
    # averaged over the 14 real tokens only
    gen = torch.Generator().manual_seed(3)
    vs = []
    for b in padded:
        m = b["attention_mask"] != 0
        vs.append(torch.randn(b["input_ids"].shape + (3,), generator=gen)[m])
    v = torch.cat(vs).double()
    assert v.shape == (14, 3)
    w2 = model.l2.weight.detach().double()
    np.testing.assert_allclose(gains["l2"], (v ** 2).mean(0).numpy(), rtol=1e-6)
    np.testing.assert_allclose(gains["l1"], ((v @ w2) ** 2).mean(0).numpy(), rtol=1e-5)
    # what the padded positions hold does not matter
    other = [{**b, "input_ids": torch.where(b["attention_mask"] != 0, b["input_ids"], 7)} for b in padded]
    again = output_gains(model, _layers(model), other, seed=3)
    for name in gains:
        np.testing.assert_allclose(again[name], gains[name], rtol=1e-6)
