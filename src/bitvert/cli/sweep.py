"""``bitvert sweep``: a design-space sweep (models x pruning settings x accelerators) into a results table
and a Pareto report; resumable, on a local process pool or a Ray cluster (:mod:`bitvert.report.sweep`)."""

from __future__ import annotations

from pathlib import Path

import click

from bitvert.cli._common import show_progress

__all__ = ["sweep_cmd"]


@click.command("sweep")
@click.argument("spec", required=False, type=click.Path(dir_okay=False, path_type=Path))
@click.option("-o", "--out", "out_dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Sweep folder: results.parquet, results.csv, report.html (rerun to resume).")
@click.option("--engine", type=click.Choice(["local", "ray"]), default="local", show_default=True,
              help="local: a process pool; ray: one Ray task per job (pip install \"bitvert[ray]\").")
@click.option("--address", default=None, help="Ray cluster address (ray.init(address=...)); default a local instance.")
@click.option("--workers", type=click.IntRange(min=1), default=None,
              help="Parallel jobs (default: the number of cores; with Ray: CPUs of the local instance).")
@click.option("--report-only", "report_only", type=click.Path(file_okay=False, exists=True, path_type=Path),
              default=None, help="Redraw DIR/report.html from DIR's results table; runs nothing.")
@click.option("-v", "--verbose", count=True, help="More log output (-vv for debug).")
@click.option("-q", "--quiet", is_flag=True, help="No progress bar, only warnings and the summary.")
def sweep_cmd(spec: Path | None, out_dir: Path | None, engine: str, address: str | None, workers: int | None,
              report_only: Path | None, verbose: int, quiet: bool) -> None:
    """Run every point of a sweep SPEC.yaml not finished in --out (see examples/sweeps/)."""
    from bitvert.cli import _configure_logging

    if verbose or quiet:
        _configure_logging(verbose, quiet)
    if report_only is not None:
        if spec is not None or out_dir is not None:
            raise click.UsageError("--report-only DIR takes no SPEC and no --out")
        from bitvert.report.sweep_report import write_sweep_report

        click.echo(f"report: {write_sweep_report(report_only)}")
        return
    if spec is None or out_dir is None:
        raise click.UsageError("give SPEC.yaml and --out DIR (or --report-only DIR)")
    from bitvert.report.sweep import load_spec, run_sweep

    parsed = load_spec(spec)
    from bitvert.cli import say_on_sigterm

    say_on_sigterm(f"finished points are in {out_dir}; rerun the same command to resume")
    try:
        outcome = run_sweep(parsed, out_dir, engine=engine, workers=workers, address=address,  # type: ignore[arg-type]
                            progress=show_progress(quiet))
    except KeyboardInterrupt:
        click.echo(f"interrupted: finished points are in {out_dir}; rerun the same command to resume", err=True)
        raise click.exceptions.Exit(130) from None
    click.echo(f"{outcome.points} points: {outcome.skipped} finished before, {outcome.ran} run now "
               f"({outcome.failed} failed) in {outcome.wall_s:.1f} s")
    click.echo(f"results: {outcome.out_dir / 'results.parquet'} and {outcome.out_dir / 'results.csv'}")
    if outcome.report is not None:
        click.echo(f"report: {outcome.report}")
    if outcome.failed:
        raise click.exceptions.Exit(1)
