"""Import a workload from a PyTorch model and an example input (forward hooks).

Layers are identified by **module type** (``nn.Conv2d``, ``nn.Linear`` and
HuggingFace ``Conv1D``, whose ``(in, out)`` weight is transposed) and by
their **exact qualified names** from ``named_modules()`` -- no substring or
suffix matching. ``include`` / ``exclude`` take exact names; a name that does
not exist, or names a module of an unsupported type, raises
:class:`~bitvert.errors.UnsupportedLayerError`.

Weights are quantized per output channel, symmetric INT8 to ``[-127, 127]``, by the pipeline's
quantizer (:func:`bitvert.pipeline.quantize.quantize_weight`, so they equal the ``int8`` variant's;
the per-channel scale is kept for sensitive-channel selection) unless
``int_weights`` supplies the integer tensors (e.g. from ``bitvert.pipeline``).
Every layer's input is quantized per tensor, symmetric INT8 (:func:`_activation_int8`); its non-zero
mask is recorded as ``LayerWorkload.input_mask`` (SparTen costs every tile from it) and its mean as
``input_density``. A conv whose padding cannot be expressed as symmetric integer padding (e.g.
``padding="same"`` with an even kernel, or dilation) keeps only the density.

A layer's input counts as the previous layer's output (on-chip residency)
when it has as many elements as that output; branches of residual networks
are thereby approximated.

With ``include_matmuls=True`` the activation x activation products of the
forward pass (``torch.matmul`` / ``@`` / ``torch.bmm`` and the two products
inside ``F.scaled_dot_product_attention``: ``Q Kᵀ`` and ``A V``) are recorded
too, through a ``TorchFunctionMode``; a product with an ``nn.Parameter``
operand is a weight layer and is skipped. Such a layer is named
``<enclosing module>.matmul<k>``; its second operand (per-tensor INT8) of the
first batch/head instance stands for all ``repeats`` instances.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np

from bitvert.core.grouping import LayerKind, make_layout
from bitvert.errors import InputError, UnsupportedLayerError
from bitvert.hardware.workload import LayerType, LayerWorkload, Workload

__all__ = ["import_workload"]

log = logging.getLogger(__name__)


def _activation_mask(x: Any) -> np.ndarray:
    """Non-zero mask of ``x`` after per-tensor symmetric INT8 quantization (``bool``, shape of ``x``)."""
    import torch

    t = x.detach().float()
    amax = float(t.abs().max()) if t.numel() else 0.0
    if amax == 0.0:
        return np.zeros(tuple(t.shape), dtype=bool)
    return (torch.round(t / (amax / 127.0)) != 0).cpu().numpy()


def _density(mask: np.ndarray) -> float:
    """Mean of a non-zero mask, kept strictly positive (an all-zero input)."""
    return max(float(mask.mean()) if mask.size else 0.0, 1.0 / max(mask.size, 1))


def _conv_padding(mod: Any, in_hw: tuple[int, int], out_hw: tuple[int, int]) -> tuple[int, int] | None:
    """The symmetric integer padding that reproduces ``out_hw``, or ``None`` when there is none."""
    if tuple(getattr(mod, "dilation", (1, 1))) != (1, 1):
        return None
    kh, kw = mod.kernel_size
    sh, sw = mod.stride
    if isinstance(mod.padding, str):
        if mod.padding == "valid":
            pad = (0, 0)
        elif (kh - 1) % 2 == 0 and (kw - 1) % 2 == 0:  # "same" with odd kernels is symmetric
            pad = ((kh - 1) // 2, (kw - 1) // 2)
        else:
            return None
    else:
        pad = (int(mod.padding[0]), int(mod.padding[1]))
    got = ((in_hw[0] + 2 * pad[0] - kh) // sh + 1, (in_hw[1] + 2 * pad[1] - kw) // sw + 1)
    return pad if got == tuple(out_hw) else None


def _matmul_mode(records: list[dict[str, Any]], stack: list[str]) -> Any:
    """A TorchFunctionMode recording activation x activation matmuls."""
    import torch
    import torch.nn as nn
    import torch.nn.functional as F
    from torch.overrides import TorchFunctionMode

    matmuls = {torch.matmul, torch.bmm, torch.Tensor.matmul, torch.Tensor.__matmul__}

    def record(a: Any, b: Any) -> None:
        if not (torch.is_tensor(a) and torch.is_tensor(b)) or a.ndim < 2 or b.ndim < 2:
            return
        if isinstance(a, nn.Parameter) or isinstance(b, nn.Parameter):
            return
        m, k = int(a.shape[-2]), int(a.shape[-1])
        n = int(b.shape[-1])
        batch_shape = torch.broadcast_shapes(a.shape[:-2], b.shape[:-2])
        repeats = int(np.prod(batch_shape)) if len(batch_shape) else 1
        first_b = b.reshape(-1, k, n)[0].detach().float().T  # (n, k) like a linear weight
        mask = _activation_mask(a.expand(*batch_shape, m, k) if len(batch_shape) else a)
        records.append({"matmul": True, "scope": stack[-1] if stack else "", "tokens": m, "repeats": repeats,
                        "weight": first_b.cpu().numpy(), "mask": mask})

    class _Mode(TorchFunctionMode):
        def __torch_function__(self, func: Any, types: Any, args: tuple[Any, ...] = (), kwargs: Any = None) -> Any:
            kwargs = kwargs or {}
            if func in matmuls and len(args) >= 2:
                record(args[0], args[1])
            elif func is F.scaled_dot_product_attention and len(args) >= 3:
                q, k_, v = args[:3]
                record(q, k_.transpose(-2, -1))
                scores = torch.empty(q.shape[:-1] + (k_.shape[-2],))
                record(scores.fill_(1.0), v)
            return func(*args, **kwargs)

    return _Mode()


def _supported(module: Any) -> str | None:
    import torch.nn as nn

    if isinstance(module, nn.Conv2d):
        return "conv2d"
    if isinstance(module, nn.Linear):
        return "linear"
    if type(module).__name__ == "Conv1D" and hasattr(module, "nf") and hasattr(module, "weight"):
        return "hf_conv1d"
    return None


def import_workload(
    model: Any,
    example_input: Any,
    name: str = "model",
    include: Iterable[str] | None = None,
    exclude: Iterable[str] = (),
    int_weights: Mapping[str, Any] | None = None,
    seq_len: int | None = None,
    include_matmuls: bool = False,
) -> Workload:
    """Run ``model(example_input)`` once and record every supported layer it calls.

    Args:
        model: a ``torch.nn.Module``.
        example_input: a tensor, a tuple of positional arguments or a mapping of keyword arguments
            (e.g. a tokenizer's ``BatchEncoding``).
        name: workload name (selects per-workload settings such as BitWave's precision).
        include: exact qualified names to keep (default: every supported layer).
        exclude: exact qualified names to drop.
        int_weights: optional ``{qualified name: integer weight tensor}`` replacing the
            built-in per-channel INT8 quantization (PyTorch layout).
        seq_len: recorded in the workload description.
        include_matmuls: also record activation x activation matmuls (attention ``Q Kᵀ``, ``A V``).

    Returns:
        A :class:`~bitvert.hardware.workload.Workload` with ``synthetic_weights=False``.
    """
    import torch
    import torch.nn as nn

    from bitvert.pipeline.quantize import quantize_weight

    if not isinstance(model, nn.Module):
        raise InputError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    modules = dict(model.named_modules())
    exclude = set(exclude)
    for n in exclude | set(include or ()):
        if n not in modules:
            raise UnsupportedLayerError(
                f"layer name {n!r} is not a module of the model; use exact qualified names from named_modules()"
            )
        if _supported(modules[n]) is None:
            raise UnsupportedLayerError(
                f"layer {n!r} is a {type(modules[n]).__name__}, which bitvert cannot simulate; "
                "supported: nn.Conv2d, nn.Linear, HuggingFace Conv1D"
            )
    wanted = set(include) if include is not None else {n for n, m in modules.items() if _supported(m)}
    wanted -= exclude
    if not wanted:
        raise UnsupportedLayerError("the model has no nn.Conv2d / nn.Linear / Conv1D layer to simulate")
    records: list[dict[str, Any]] = []
    calls: dict[str, int] = {}

    def make_hook(qname: str, module: nn.Module):
        def hook(mod: nn.Module, args: tuple[Any, ...], output: Any) -> None:
            if not args or not torch.is_tensor(args[0]):
                raise UnsupportedLayerError(f"layer {qname!r} was called without a tensor input")
            x = args[0]
            k = calls.get(qname, 0)
            calls[qname] = k + 1
            records.append(
                {
                    "name": qname if k == 0 else f"{qname}#{k}",
                    "module": qname,
                    "in_shape": tuple(x.shape),
                    "out_shape": tuple(output.shape),
                    "mask": _activation_mask(x),
                }
            )

        return hook

    handles = [modules[n].register_forward_hook(make_hook(n, modules[n])) for n in sorted(wanted)]
    stack: list[str] = []
    if include_matmuls:
        def push(q: str) -> Any:
            def pre(mod: nn.Module, args: Any) -> None:
                stack.append(q)

            return pre

        def pop(mod: nn.Module, args: Any, output: Any) -> None:
            stack.pop()

        for qname, mod in modules.items():
            handles.append(mod.register_forward_pre_hook(push(qname)))
            handles.append(mod.register_forward_hook(pop))
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            mode = _matmul_mode(records, stack) if include_matmuls else None
            if mode is not None:
                mode.__enter__()
            try:
                if isinstance(example_input, Mapping):
                    model(**example_input)
                elif isinstance(example_input, (tuple, list)):
                    model(*example_input)
                else:
                    model(example_input)
            finally:
                if mode is not None:
                    mode.__exit__(None, None, None)
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
    if not records:
        raise UnsupportedLayerError("none of the selected layers was called by the forward pass")
    missing = sorted(wanted - set(calls))
    if missing:
        log.warning("%d selected layer(s) were never called and are not simulated: %s", len(missing), missing[:5])
    layers: list[LayerWorkload] = []
    prev_out = None
    matmul_count: dict[str, int] = {}
    for rec in records:
        if rec.get("matmul"):
            scope = rec["scope"]
            k = matmul_count.get(scope, 0)
            matmul_count[scope] = k + 1
            w = rec["weight"]
            amax = float(np.abs(w).max()) or 1.0
            w_int = np.clip(np.rint(w / (amax / 127.0)), -127, 127).astype(np.int16)
            layers.append(
                LayerWorkload(
                    name=f"{scope}.matmul{k}" if scope else f"matmul{k}", kind=LayerType.MATMUL, weights=w_int,
                    tokens=rec["tokens"], repeats=rec["repeats"], input_density=_density(rec["mask"]),
                    input_mask=rec["mask"], input_from_previous=True,
                )
            )
            prev_out = None
            continue
        mod = modules[rec["module"]]
        kind_name = _supported(mod)
        w_module = mod.weight.detach().cpu().float()  # module layout: (in, out) for HF Conv1D
        scale = None
        if int_weights is not None and rec["module"] in int_weights:
            given = int_weights[rec["module"]]
            w_int = np.asarray(given.detach().cpu().numpy() if hasattr(given, "detach") else given)
            if w_int.shape != tuple(w_module.shape):
                raise InputError(
                    f"int_weights[{rec['module']!r}] has shape {w_int.shape}, expected {tuple(w_module.shape)}"
                )
        else:
            q, s = quantize_weight(w_module, 8, 1 if kind_name == "hf_conv1d" else 0)
            w_int, scale = q.numpy(), s.numpy().astype(np.float64)
        if kind_name == "hf_conv1d":  # (in, out) -> PyTorch (out, in), by the grouping's linear_in_out layout
            w_int = make_layout(w_int.shape, LayerKind.LINEAR_IN_OUT).to_rows(w_int)
        in_shape, out_shape = rec["in_shape"], rec["out_shape"]
        n_in = int(np.prod(in_shape))
        from_prev = prev_out is not None and n_in == prev_out
        prev_out = int(np.prod(out_shape))
        if kind_name == "conv2d":
            groups = int(mod.groups)
            kind = LayerType.DEPTHWISE if groups > 1 and w_int.shape[1] == 1 else LayerType.CONV
            in_hw, out_hw = (int(in_shape[-2]), int(in_shape[-1])), (int(out_shape[-2]), int(out_shape[-1]))
            pad = _conv_padding(mod, in_hw, out_hw)
            exact = pad is not None and len(in_shape) == 4
            layers.append(
                LayerWorkload(
                    name=rec["name"], kind=kind, weights=w_int, batch=int(in_shape[0]),
                    input_hw=in_hw, output_hw=out_hw, stride=tuple(mod.stride), padding=pad or (0, 0),
                    groups=groups, input_density=_density(rec["mask"]), input_from_previous=from_prev,
                    channel_scale=scale, input_mask=rec["mask"] if exact else None,
                )
            )
        else:
            batch = int(in_shape[0]) if len(in_shape) >= 2 else 1
            tokens = max(1, n_in // (batch * w_int.shape[1]))
            layers.append(
                LayerWorkload(
                    name=rec["name"], kind=LayerType.LINEAR, weights=w_int, batch=batch, tokens=tokens,
                    input_density=_density(rec["mask"]), input_from_previous=from_prev, channel_scale=scale,
                    input_mask=rec["mask"] if rec["mask"].size == batch * tokens * w_int.shape[1] else None,
                )
            )
    batch = layers[0].batch
    return Workload(
        name=name,
        layers=tuple(layers),
        batch=batch,
        seq_len=seq_len,
        synthetic_weights=False,
        notes={"source": f"torch model {type(model).__name__} via forward hooks",
               "quantization": "per-channel symmetric INT8 [-127, 127]" if int_weights is None else "given"},
    )
