"""``bitvert eval``: evaluate a pruned checkpoint (or a plain model) against its FP32 model."""

from __future__ import annotations

import copy
import json
import sys
from pathlib import Path
from typing import Any

import click

from bitvert.cli import prune as _prune_cli
from bitvert.cli._common import show_progress
from bitvert.errors import InputError
from bitvert.report import variants as _variants

__all__ = ["eval_cmd", "run_eval"]


def _is_pruned_checkpoint(target: str) -> bool:
    p = Path(target)
    return (p.is_file() and p.suffix == ".safetensors") or (p.is_dir() and (p / "pruned.safetensors").is_file())


def run_eval(target: str, model_name: str | None = None, task: str | None = None,
             limit: _variants.EvalLimit | None = "auto", progress: bool = False) -> dict[str, Any]:
    """Evaluate ``target``: a ``pruned.safetensors`` file (or a folder holding one), an encoded
    ``*.bbs.safetensors`` file (decoded on load), or a model name/path.

    A checkpoint is loaded into the architecture it was made from (``model_name`` overrides the
    name stored in its header) and compared with that model's FP32 weights; a model name is
    evaluated as is (FP32). ``limit`` follows the rule of ``bitvert prune`` / ``bitvert run``
    (``"auto"`` by model family, ``"full"`` or ``None``: the task's default, or a number), so the
    default reproduces the metrics those commands report. ``progress``: a bar over the evaluation batches.
    """
    from bitvert.pipeline import apply_checkpoint_, load_pruned

    if _is_pruned_checkpoint(target):
        path = Path(target)
        path = path / "pruned.safetensors" if path.is_dir() else path
        if path.name.endswith(".bbs.safetensors"):  # the compressed file of `bitvert encode`
            from bitvert.codec import load_encoded, to_pruned_checkpoint

            ckpt = to_pruned_checkpoint(load_encoded(path))
        else:
            ckpt = load_pruned(path)
        name = model_name or ckpt.model_info.get("name")
        if not name:
            raise InputError(f"checkpoint {str(path)!r} does not name its model; pass --model NAME")
        loaded = _prune_cli.load_model(name)
        reference = loaded.model.eval()
        model = copy.deepcopy(reference)
        apply_checkpoint_(model, ckpt)
        task = task or ckpt.model_info.get("default_task") or loaded.default_task
        metrics = _variants.evaluate_model(loaded, model, task, reference=reference,
                                           limit=_variants.resolve_eval_limit(limit, loaded.family),
                                           variant=ckpt.preset.name, progress=progress, limit_rule=limit)
        return {"target": str(path), "model": loaded.name, "variant": ckpt.preset.name,
                "effective_bits": ckpt.effective_bits, "task": task, "metrics": metrics}
    if Path(target).suffix == ".safetensors" and not Path(target).exists():
        raise InputError(f"checkpoint {target!r} does not exist; pass the pruned.safetensors written by "
                         "`bitvert prune` or a model name (see `bitvert models`)")
    loaded = _prune_cli.load_model(model_name or target)
    task = task or loaded.default_task
    metrics = _variants.evaluate_model(loaded, loaded.model.eval(), task, reference=None,
                                       limit=_variants.resolve_eval_limit(limit, loaded.family), variant="fp32",
                                       progress=progress, limit_rule=limit)
    return {"target": target, "model": loaded.name, "variant": "fp32", "effective_bits": 32.0, "task": task,
            "metrics": metrics}


@click.command("eval")
@click.argument("target")
@click.option("--model", "model_name", default=None,
              help="Architecture to load the checkpoint into (default: the one recorded in it).")
@click.option("--task", default=None, help="Evaluation task (default: the model's own).")
@click.option("--limit", default="auto", show_default=True,
              help="Examples per evaluation: a number, 'auto' (by model family, as `bitvert prune` and "
                   "`bitvert run`) or 'full'.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object instead of a table.")
def eval_cmd(target: str, model_name: str | None, task: str | None, limit: str, as_json: bool) -> None:
    """Evaluate TARGET: a pruned.safetensors (or its folder) from `bitvert prune`, or a model name."""
    result = run_eval(target, model_name=model_name, task=task,
                      limit=_variants.parse_eval_limit(limit, "--limit"), progress=show_progress())
    if as_json:
        click.echo(json.dumps(result, default=float))
        return
    click.echo(f"{result['model']} [{result['variant']}, {result['effective_bits']:.3f} bits] on {result['task']}")
    for k, v in result["metrics"].items():
        click.echo(f"  {k:<24} {v:.6g}" if isinstance(v, (int, float)) else f"  {k:<24} {v}")
    sys.stdout.flush()
