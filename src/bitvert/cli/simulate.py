"""``bitvert simulate``: run BitVert and the baselines on workloads; write CSV, JSON and figures.

Writes into ``--out``: ``layers.csv`` (one row per accelerator x layer),
``summary.json`` (totals, speedup over Stripes, energy normalized to SparTen,
resolved configs; shape documented in docs/simulator.md), ``speedup.png`` and
``energy.png``.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import click

from bitvert.errors import ConfigError, InputError

logger = logging.getLogger(__name__)

__all__ = ["simulate_cmd"]


def _model_workload(name: str, batch_size: int, include_attention: bool) -> Any:
    from bitvert.hardware.import_torch import import_workload
    from bitvert.models import load_model

    lm = load_model(name)
    batch = next(iter(lm.calibration_batches(batch_size)))
    return import_workload(lm.model, batch, name=name.replace("/", "_"), include_matmuls=include_attention)


@click.command("simulate")
@click.option("--workload", "workloads", multiple=True,
              help="Workload by name (repeatable): vgg16, resnet34, resnet50, vit-small, vit-base, bert-mrpc, "
                   "bert-sst2, llama3-8b; 'paper' = the seven of Figs. 12-13.")
@click.option("--model", "models", multiple=True, help="A model of bitvert's zoo (bitvert.models), imported with real weights.")
@click.option("--llama-config", "llama_config", type=click.Path(dir_okay=False, exists=True, path_type=Path),
              help="YAML/JSON file of a Llama-style decoder (LlamaConfig fields); adds workload 'llama'.")
@click.option("--accelerators", default="all", show_default=True,
              help="'all', or a comma list of presets / YAML files.")
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path), required=True,
              help="Output folder.")
@click.option("--batch", type=int, default=1, show_default=True, help="Batch size.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of synthetic weights.")
@click.option("--include-attention/--no-include-attention", default=False, show_default=True,
              help="Also cost the attention matmuls (QK^T, AV) of transformer workloads and imported models.")
@click.option("--plots/--no-plots", default=True, show_default=True, help="Write speedup.png and energy.png.")
def simulate_cmd(
    workloads: tuple[str, ...], models: tuple[str, ...], llama_config: Path | None, accelerators: str, out_dir: Path, batch: int, seed: int,
    include_attention: bool, plots: bool,
) -> None:
    """Simulate accelerators on workloads (synthetic-weight workloads say so in every output)."""
    from bitvert.hardware.config import resolve_accelerators
    from bitvert.hardware.simulate import simulate
    from bitvert.hardware.workloads_zoo import PAPER_WORKLOADS, build_workload

    if not workloads and not models and llama_config is None:
        raise InputError(
            "give at least one --workload NAME, --model NAME or --llama-config FILE (e.g. --workload resnet50)"
        )
    if batch < 1:
        raise ConfigError(f"--batch must be >= 1, got {batch}")
    configs = resolve_accelerators(accelerators)
    names: list[str] = []
    for w in workloads:
        names.extend(PAPER_WORKLOADS if w == "paper" else [w])
    wls = []
    for n in names:
        logger.info("building workload %s (synthetic weights, seed %d)", n, seed)
        wls.append(build_workload(n, batch=batch, seed=seed, include_attention=include_attention))
    if llama_config is not None:
        from bitvert.hardware.config import load_yaml

        data = load_yaml(llama_config.read_text(encoding="utf-8"), str(llama_config))
        if not isinstance(data, dict):
            raise ConfigError(f"{llama_config}: a Llama config must be a mapping of LlamaConfig fields")
        wls.append(build_workload("llama", batch=batch, seed=seed, include_attention=include_attention, llama=data))
    for m in models:
        logger.info("importing model %s", m)
        wls.append(_model_workload(m, batch, include_attention))
    report = simulate(wls, configs)
    paths = report.write(out_dir)
    summary = report.to_json()
    if plots:
        from bitvert.hardware.plots import energy_figure, speedup_figure

        speedup_figure(summary).savefig(out_dir / "speedup.png", dpi=150)
        energy_figure(summary).savefig(out_dir / "energy.png", dpi=150)
    synthetic = " (synthetic weights)" if summary["synthetic_weights"] else ""
    click.echo(f"{'accelerator':22s} {'speedup_vs_stripes':>18s} {'energy_vs_sparten':>18s}{synthetic}")
    for name, acc in summary["accelerators"].items():
        click.echo(f"{name:22s} {acc['speedup_vs_stripes']:18.3f} {acc['energy_vs_sparten']:18.3f}")
    click.echo(json.dumps({k: str(v) for k, v in paths.items()}))
