"""``bitvert run``: the whole BBS study of one model, from FP32 to a report folder.

With no option it studies the embedded all-MiniLM-L6-v2 offline: FP32 -> INT8 -> presets
``conservative`` and ``moderate`` plus the BitWave and round-to-nearest baselines -> accuracy and
fidelity -> BBS encoding, decoding and verification -> every accelerator -> ``bitvert-report/``
(``report.md``, ``report.html``, ``results.json``, ``plots/``, ``encoded/``, ``simulation/``).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import click

from bitvert.cli._common import show_progress
from bitvert.report.variants import DEFAULT_CALIBRATION_SAMPLES, parse_eval_limit

logger = logging.getLogger(__name__)

__all__ = ["run_cmd"]


def _split(value: str) -> tuple[str, ...]:
    return tuple(s.strip() for s in value.split(",") if s.strip())


@click.command("run")
@click.option("--model", default="minilm-l6", show_default=True,
              help="Model short name or path (see `bitvert models`).")
@click.option("--presets", default="conservative,moderate", show_default=True,
              help="Comma list of pipeline presets studied besides INT8.")
@click.option("--baselines", default="bitwave,rtn", show_default=True,
              help="Comma list of baselines derived from each BBS preset ('none' for none).")
@click.option("--accelerators", default="all", show_default=True,
              help="'all', or a comma list of accelerator presets / YAML files.")
@click.option("-o", "--out", "out_dir", default="bitvert-report", show_default=True,
              type=click.Path(file_okay=False, path_type=Path),
              help="Report folder (created; a previous complete report there is replaced).")
@click.option("--seed", type=click.IntRange(min=0), default=0, show_default=True, help="Seed of every random choice.")
@click.option("--task", default=None, help="Evaluation task (default: the model's own; NAME:PATH for user data).")
@click.option("--limit", "limit", default="auto", show_default=True,
              help="Examples per evaluation: a number, 'auto' (by model family, as `bitvert prune`) or 'full'.")
@click.option("--calibration-samples", type=click.IntRange(min=1), default=DEFAULT_CALIBRATION_SAMPLES,
              show_default=True, help="Samples used to calibrate 8-bit activations (as `bitvert prune`).")
@click.option("--calibration-data", "calibration_path", default=None,
              type=click.Path(exists=True, file_okay=False, path_type=Path),
              help="ImageNet-style image folder calibrating vision models that have none embedded.")
@click.option("--batch", type=click.IntRange(min=1), default=1, show_default=True,
              help="Batch size of the simulated workload (>= 1).")
@click.option("--seq-len", "seq_len", type=click.IntRange(min=1), default=None,
              help="Tokens per sequence of a text model's simulated input (>= 1; default 128, cut from real "
                   "calibration text). Vision models run at their native resolution.")
@click.option("--keep-checkpoints", is_flag=True,
              help="Also keep each variant's pruned.safetensors (checkpoints/) for `bitvert eval`.")
@click.option("-v", "--verbose", count=True, help="More log output (-vv for debug).")
@click.option("-q", "--quiet", is_flag=True, help="No progress bars, only warnings and the summary table.")
def run_cmd(model: str, presets: str, baselines: str, accelerators: str, out_dir: Path, seed: int,
            task: str | None, limit: str, calibration_samples: int, calibration_path: Path | None, batch: int,
            seq_len: int | None, keep_checkpoints: bool, verbose: int, quiet: bool) -> None:
    """Run the whole BBS study of a model and write a report (default: the embedded MiniLM, offline)."""
    from bitvert.cli import _configure_logging

    if verbose or quiet:
        _configure_logging(verbose, quiet)
    from bitvert.report import StudyConfig, run_study
    from bitvert.report.render import bound_sentences, simulation_table, summary_table
    from bitvert.report.results import finite

    config = StudyConfig.create(
        model=model, presets=_split(presets),
        baselines=() if baselines.strip().lower() == "none" else _split(baselines),
        accelerators=_split(accelerators), seed=seed, task=task, eval_limit=parse_eval_limit(limit, "--limit"),
        calibration_samples=calibration_samples,
        calibration_path=None if calibration_path is None else str(calibration_path), simulate_batch=batch,
        simulate_seq_len=seq_len,
        keep_checkpoints=keep_checkpoints,
    )
    progress = show_progress(quiet)
    try:
        result = run_study(config, out_dir, progress=progress)
    except KeyboardInterrupt:
        click.echo(f"interrupted: no report was written to {out_dir}", err=True)
        raise click.exceptions.Exit(130) from None
    results = finite(result.to_dict())
    click.echo(f"{results['model']['name']} on {results['task']} "
               f"({'all' if results['eval_limit'] is None else results['eval_limit']} examples per evaluation)")
    click.echo(summary_table(results))
    if results.get("simulation"):
        click.echo("")
        click.echo(simulation_table(results["simulation"]))
        click.echo("\n".join(bound_sentences(results["simulation"])))
    click.echo("stage seconds: " + json.dumps(results["timings_s"]))
    click.echo(f"report: {result.out_dir / 'report.md'} and {result.out_dir / 'report.html'}")
