"""CLI commands: init, build, inspect, check."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import click

from .._build import build_many
from .._layout import check as check_layout
from .._layout import inspect as inspect_path
from .._spec import TASKS
from .._spec import init as init_spec
from . import cli


def _size(n: int) -> str:
    value = float(n)
    for unit in ("B", "KB", "MB", "GB"):
        if value < 1024 or unit == "GB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{n} B"


@cli.command("init")
@click.argument("task", type=click.Choice(TASKS))
@click.argument("directory", type=click.Path(file_okay=False, path_type=Path))
@click.option("--model", type=click.Path(exists=True, path_type=Path), help="The model folder or weights file.")
@click.option("--name", help="Model name (the URL name); default: the folder's name.")
@click.option("--force", is_flag=True, help="Overwrite an existing mar.yaml / handler.py.")
def init_command(task: str, directory: Path, model: Path | None, name: str | None, force: bool) -> None:
    """Write DIRECTORY/mar.yaml for TASK (and handler.py for TASK=custom).

    \b
    Example:
      mar-build init text-classification samples/bert --model ./bert-finetuned --name bert
    """
    result = init_spec(task, directory, model=model, name=name, force=force)
    click.echo(f"wrote {result.spec}")
    if result.handler:
        click.echo(f"wrote {result.handler} (fill in load / preprocess_instance / inference / postprocess)")
    click.echo(f"next: mar-build build {directory}")


_BUILD_OVERRIDES = {
    "name": "name", "version": "version", "task": "task", "model": "model", "handler": "handler",
    "batch_size": "serving.batch_size", "max_batch_delay": "serving.max_batch_delay",
    "min_workers": "serving.min_workers", "max_workers": "serving.max_workers",
    "response_timeout": "serving.response_timeout",
}


@cli.command("build")
@click.argument("specs", nargs=-1, type=click.Path(exists=True, path_type=Path))
@click.option("-o", "--output", type=click.Path(path_type=Path), help="The layout folder (default build/NAME).")
@click.option("--name", help="Override the model name.")
@click.option("--version", "version", help="Override the model version.")
@click.option("--task", type=click.Choice(TASKS), help="Override the task.")
@click.option("--model", type=click.Path(exists=True), help="Override the model path.")
@click.option("--handler", type=click.Path(exists=True), help="Override the custom handler file.")
@click.option("--batch-size", type=click.IntRange(1), help="Server-side batch size (model_snapshot batchSize).")
@click.option("--max-batch-delay", type=click.IntRange(0), help="Milliseconds to wait for a batch to fill.")
@click.option("--min-workers", type=click.IntRange(0))
@click.option("--max-workers", type=click.IntRange(1))
@click.option("--response-timeout", type=click.IntRange(1), help="Seconds.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
def build_command(specs: tuple[Path, ...], output: Path | None, as_json: bool, **flags: Any) -> None:
    """Build .mar archives and config.properties into a layout.

    SPECS are mar.yaml files or folders holding one (default: the current folder). Several specs, or a layout
    that exists, are merged: each model gets its archive and its model_snapshot entry, the others stay as they are.

    \b
    Example:
      mar-build build samples/text-classification -o build/sentiment
    """
    overrides = {_BUILD_OVERRIDES[k]: v for k, v in flags.items() if v is not None}
    if overrides and len(specs) > 1:
        raise click.UsageError("overrides apply to one spec; build the specs one at a time to override them")
    show = not as_json and sys.stderr.isatty()
    results = []
    for spec in specs or (Path.cwd(),):
        with click.progressbar(length=1, label=f"building {spec}", file=sys.stderr, show_eta=False) if show \
                else _NoBar() as bar:
            def progress(done: int, total: int, bar: Any = bar) -> None:
                bar.length = max(total, 1)
                bar.update(done - bar.pos)

            results += build_many([spec], output, overrides=overrides, progress=progress)
    if as_json:
        click.echo(json.dumps([{
            "layout": str(r.layout), "name": r.name, "version": r.version, "archive": str(r.archive),
            "archive_size": r.archive_size, "replaced": r.replaced, "models": r.models, "warnings": r.warnings,
        } for r in results], indent=2))
        return
    for r in results:
        verb = "replaced" if r.replaced else "built"
        click.echo(f"{verb} {r.name} {r.version}: {r.archive} ({_size(r.archive_size)})")
        for warning in r.warnings:
            click.secho(f"warning: {warning}", fg="yellow", err=True)
    last = results[-1]
    click.echo(f"layout {last.layout}: {', '.join(last.models)}  (config: {last.config})")
    click.echo(f"next: mar-build check {last.layout} && mar-build serve {last.layout}")


class _NoBar:
    pos = 0
    length = 1

    def __enter__(self) -> _NoBar:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def update(self, n: int) -> None:
        self.pos += n


@cli.command("inspect")
@click.argument("path", type=click.Path(exists=True, path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print as JSON.")
def inspect_command(path: Path, as_json: bool) -> None:
    """Show what a .mar or a layout holds: models, versions, handler, labels, sizes."""
    result = inspect_path(path)
    if as_json:
        click.echo(json.dumps(result.to_dict(), indent=2))
        return
    click.echo(f"{result.kind} {result.path}")
    for m in result.models:
        click.echo(f"\nmodel {m.name}  (POST {m.predict_path})")
        if m.archive_model_name and m.archive_model_name != m.name:
            click.echo(f"  archive model name: {m.archive_model_name} (the URL uses {m.name})")
        click.echo(f"  version:  {m.version}")
        click.echo(f"  task:     {m.task or 'unknown (not built by mar-build)'}")
        click.echo(f"  handler:  {m.handler}")
        click.echo(f"  archive:  {m.archive} ({_size(m.size)}, {m.files} files, {_size(m.content_size)} unpacked)")
        if m.class_names:
            click.echo(f"  classes:  {', '.join(m.class_names)}")
        if m.labels:
            click.echo("  labels:   " + ", ".join(f"{k}={v}" for k, v in m.labels.items()))
        if m.metadata:
            click.echo(f"  metadata: {json.dumps(m.metadata)}")
        if m.settings:
            keys = ("minWorkers", "maxWorkers", "batchSize", "maxBatchDelay", "responseTimeout")
            click.echo("  serving:  " + ", ".join(f"{k}={m.settings[k]}" for k in keys if k in m.settings))
        click.echo("  largest:  " + ", ".join(f"{n} ({_size(s)})" for n, s in m.largest[:3]))


@cli.command("check")
@click.argument("path", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
def check_command(path: Path, as_json: bool) -> None:
    """Preflight a layout (ours or hand-written): exit 1 with every problem listed, each with its fix."""
    report = check_layout(path)
    if as_json:
        click.echo(json.dumps({
            "path": str(report.path), "ok": report.ok, "models": report.models,
            "problems": [{"level": p.level, "message": p.message, "fix": p.hint} for p in report.problems],
        }, indent=2))
    else:
        for p in report.problems:
            click.secho(f"{p.level}: {p.message}", fg="red" if p.level == "error" else "yellow")
            if p.hint:
                click.echo(f"  fix: {p.hint}")
        summary = f"{len(report.errors)} error(s), {len(report.warnings)} warning(s)"
        models = ", ".join(report.models) or "none"
        click.echo(f"{'ok' if report.ok else 'FAILED'}: {report.path} (models: {models}); {summary}")
    if not report.ok:
        sys.exit(1)
