"""``bitvert simulate``: run BitVert and the baselines on workloads; write CSV, JSON and figures.

Every accelerator runs its own variant of the model (:mod:`bitvert.hardware.targets`): the dense
designs INT8, BitVert a BBS preset, BitWave a bit-flip preset. For the shape-only workloads the
variants are made by the pipeline's Algorithm 2 from the workload's synthetic INT8 weights
(:class:`bitvert.hardware.variants.PipelineVariants`); with ``--checkpoint FILE`` the variant is the
file's (a ``pruned.safetensors`` or ``*.bbs.safetensors``).

Writes into ``--out``: ``layers.csv`` (one row per accelerator x layer),
``summary.json`` (totals, speedup over Stripes, energy normalized to SparTen,
resolved configs; shape documented in docs/simulator.md), ``speedup.png`` and
``energy.png``.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import click

from bitvert.cli._common import check_output_folder, show_progress

from bitvert.errors import ConfigError, InputError

logger = logging.getLogger(__name__)

__all__ = ["simulate_cmd"]


def _model_workload(name: str, batch_size: int, seq_len: int | None, include_attention: bool) -> Any:
    """The geometry of a zoo model on its example input (real data, ``seq_len`` tokens / native resolution)."""
    from bitvert.models import load_model
    from bitvert.report.simulation import model_geometry

    workload, _ = model_geometry(load_model(name), batch_size, seq_len, name=name.replace("/", "_"),
                                 include_matmuls=include_attention)
    return workload


def _checkpoint_setup(path: Path, model: str | None, accelerators: str, batch: int, seq_len: int | None,
                      include_attention: bool) -> tuple[Any, list[Any], list[Any], Any]:
    """Geometry, targets, references and variant source of ``--checkpoint FILE``."""
    from bitvert.hardware.targets import native, resolve_targets, target_for
    from bitvert.hardware.variants import FileVariants, file_source

    source = file_source(path)
    preset = (source.get("preset") or {}).get("name")
    if not preset:
        raise InputError(f"{str(path)!r} does not name the preset it was pruned with; it is not a file written by "
                         "`bitvert prune` / `bitvert encode`")
    name = model or (source.get("model") or {}).get("name")
    if not name:
        raise InputError(f"{str(path)!r} does not name its model; pass --model NAME")
    hardware: dict[str, Any] = {}
    for t in resolve_targets(accelerators):
        hardware.setdefault(t.config.name, t.config)
    targets = [target_for(c, preset) for c in hardware.values() if native(c.design, preset)]
    if not targets:
        raise ConfigError(f"none of the accelerators {sorted(hardware)} can run variant {preset!r} of {str(path)!r}; "
                          "BitVert runs BBS presets, BitWave bitwave-* presets, the dense designs int8")
    from bitvert.hardware.config import load_accelerator

    refs = [target_for(load_accelerator(r), preset, label=r) for r in ("stripes", "sparten")]
    logger.info("importing model %s for the geometry of %s", name, path)
    geometry = _model_workload(name, batch, seq_len, include_attention)
    return geometry, targets, refs, FileVariants({preset: path})


def _list_accelerators(ctx: click.Context, _param: click.Parameter, value: bool) -> None:
    """``--list-accelerators``: print what ``all`` simulates and how to name other variants, then exit."""
    if not value or ctx.resilient_parsing:
        return
    from bitvert.hardware.targets import accelerator_catalog

    rows = accelerator_catalog()
    keys = ["label", "hardware", "variant", "pes", "lanes_per_pe", "freq_mhz", "runs"]
    cells = [[str(r[k]) for k in keys] for r in rows]
    widths = [max(len(k), *(len(c[i]) for c in cells)) for i, k in enumerate(keys)]
    for line in [keys, *cells]:
        click.echo("  ".join(c.ljust(w) for c, w in zip(line, widths)).rstrip())
    click.echo("")
    click.echo("--accelerators takes 'all', labels above, HARDWARE:PRESET pairs (e.g. bitvert:llm-moderate) and "
               "YAML files (template: --dump-config HARDWARE).")
    ctx.exit(0)


def _dump_config(ctx: click.Context, _param: click.Parameter, value: str | None) -> None:
    """``--dump-config NAME``: print an accelerator's complete, commented YAML config, then exit."""
    if value is None or ctx.resilient_parsing:
        return
    from bitvert.hardware.config import config_yaml, load_accelerator
    from bitvert.hardware.targets import NAMED_TARGETS

    name = NAMED_TARGETS[value][0] if value in NAMED_TARGETS else value
    click.echo(config_yaml(load_accelerator(name)), nl=False)
    ctx.exit(0)


@click.command("simulate")
@click.option("--list-accelerators", is_flag=True, expose_value=False, is_eager=True, callback=_list_accelerators,
              help="List the accelerators that --accelerators all simulates (hardware, variant, array) and exit.")
@click.option("--dump-config", metavar="HARDWARE", expose_value=False, is_eager=True, callback=_dump_config,
              help="Print the complete YAML config of a shipped accelerator (e.g. bitvert) or a YAML file, with "
                   "every field's description, and exit: the template for a custom accelerator.")
@click.option("--workload", "workloads", multiple=True,
              help="Workload by name (repeatable): vgg16, resnet34, resnet50, vit-small, vit-base, bert-mrpc, "
                   "bert-sst2, llama3-8b; 'paper' = the seven of Figs. 12-13.")
@click.option("--model", "models", multiple=True,
              help="A model of bitvert's zoo (bitvert.models), imported with real weights; with --checkpoint, the "
                   "model whose geometry the file's weights run on (default: the one named in the file).")
@click.option("--checkpoint", "checkpoint", type=click.Path(dir_okay=False, exists=True, path_type=Path),
              help="A pruned.safetensors or *.bbs.safetensors: simulate that variant's own weights on the designs "
                   "that can run it; Stripes and SparTen run the same integers as ratio references.")
@click.option("--llama-config", "llama_config", type=click.Path(dir_okay=False, exists=True, path_type=Path),
              help="YAML/JSON file of a Llama-style decoder (LlamaConfig fields); adds workload 'llama'.")
@click.option("--accelerators", default="all", show_default=True,
              help="'all', or a comma list of accelerators: presets, YAML files, HW:PRESET pairs "
                   "(e.g. bitvert:llm-moderate).")
@click.option("-o", "--out", "out_dir", type=click.Path(file_okay=False, path_type=Path), default="bitvert-simulation",
              show_default=True, help="Output folder (created if missing).")
@click.option("--batch", type=int, default=1, show_default=True, help="Batch size (>= 1).")
@click.option("--seq-len", "seq_len", type=int, default=None,
              help="Tokens per sequence of --model / --checkpoint text models (>= 1; default 128). Vision models "
                   "run at their native resolution.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of synthetic weights.")
@click.option("--include-attention/--no-include-attention", default=False, show_default=True,
              help="Also cost the attention matmuls (QK^T, AV) of transformer workloads and imported models.")
@click.option("--plots/--no-plots", default=True, show_default=True, help="Write speedup.png and energy.png.")
def simulate_cmd(
    workloads: tuple[str, ...], models: tuple[str, ...], checkpoint: Path | None, llama_config: Path | None,
    accelerators: str, out_dir: Path, batch: int, seq_len: int | None, seed: int, include_attention: bool,
    plots: bool,
) -> None:
    """Simulate accelerators on workloads (synthetic-weight workloads say so in every output)."""
    from bitvert.hardware.simulate import simulate
    from bitvert.hardware.targets import resolve_targets
    from bitvert.hardware.workloads_zoo import PAPER_WORKLOADS, available_workloads, build_workload
    from bitvert.report.render import bound_sentences, simulation_table

    check_output_folder(out_dir, "--out")  # before any work
    if batch < 1:
        raise ConfigError(f"--batch must be >= 1, got {batch}")
    if seq_len is not None and seq_len < 1:
        raise ConfigError(f"--seq-len must be >= 1, got {seq_len}")
    if seq_len is not None and not models and checkpoint is None:
        raise InputError("--seq-len sets the input of --model / --checkpoint text models; the --workload and "
                         "--llama-config workloads fix their own token counts")
    if checkpoint is not None:
        if workloads or llama_config is not None or len(models) > 1:
            raise InputError("--checkpoint simulates one model's variant: give at most one --model, no --workload "
                             "or --llama-config")
        geometry, targets, refs, source = _checkpoint_setup(checkpoint, models[0] if models else None,
                                                            accelerators, batch, seq_len, include_attention)
        report = simulate(geometry, targets, variants=source, references=refs, progress=show_progress())
    else:
        if not workloads and not models and llama_config is None:
            raise InputError(
                "give at least one --workload NAME, --model NAME, --llama-config FILE or --checkpoint FILE "
                "(e.g. --workload resnet50)"
            )
        targets = resolve_targets(accelerators)
        names: list[str] = []
        for w in workloads:
            names.extend(PAPER_WORKLOADS if w == "paper" else [w])
        unknown = [n for n in names if n.lower() not in available_workloads()]
        if unknown:
            raise InputError(f"unknown workload {unknown[0]!r}; choose one of {available_workloads() + ['paper']}")
        llama = None
        if llama_config is not None:
            from bitvert.hardware.config import load_yaml

            llama = load_yaml(llama_config.read_text(encoding="utf-8"), str(llama_config))
            if not isinstance(llama, dict):
                raise ConfigError(f"{llama_config}: a Llama config must be a mapping of LlamaConfig fields")

        def lazy() -> Iterator[Any]:  # one workload in memory at a time
            for n in names:
                logger.info("building workload %s (synthetic weights, seed %d)", n, seed)
                yield build_workload(n, batch=batch, seed=seed, include_attention=include_attention)
            if llama is not None:
                yield build_workload("llama", batch=batch, seed=seed, include_attention=include_attention,
                                     llama=llama)
            for m in models:
                logger.info("importing model %s", m)
                yield _model_workload(m, batch, seq_len, include_attention)

        report = simulate(lazy(), targets, progress=show_progress())
    paths = report.write(out_dir)
    summary = report.to_json()
    if plots:
        from bitvert.hardware.plots import energy_figure, speedup_figure

        speedup_figure(summary).savefig(out_dir / "speedup.png", dpi=150)
        energy_figure(summary).savefig(out_dir / "energy.png", dpi=150)
    if summary["synthetic_weights"]:
        click.echo("(synthetic weights)")
    click.echo(simulation_table(summary))
    click.echo("")
    click.echo("\n".join(bound_sentences(summary)))
    click.echo("")
    for key, path in paths.items():
        click.echo(f"{key}: {path}")

