"""CLI commands: inspect, check (registered on the group in __init__)."""

from __future__ import annotations

import json
from pathlib import Path

import click

from .._layout import CheckReport, Inspection, ModelSummary
from .._layout import check as check_layout
from .._layout import inspect as inspect_path
from .._pod import DEFAULT_TAG, TAGS
from .._spec import RUNTIMES, Runtime
from .._stage import human_size
from . import cli
from ._options import json_option
from ._output import finish

_SERVING_KEYS = ("minWorkers", "maxWorkers", "batchSize", "maxBatchDelay", "responseTimeout")


@cli.command("inspect")
@click.argument("path", type=click.Path(exists=True, path_type=Path))
@json_option()
def inspect_command(path: Path, as_json: bool) -> None:
    """Show what a .mar or a layout holds: models, versions, handler, labels, sizes."""
    finish(inspect_path(path), as_json=as_json, show=_show_inspection)


def _show_inspection(result: Inspection) -> None:
    click.echo(f"{result.kind} {result.path}")
    for model in result.models:
        click.echo("\n".join(_model_lines(model)))


def _model_lines(m: ModelSummary) -> list[str]:
    lines = [f"\nmodel {m.name}  (POST {m.predict_path})"]
    if m.archive_model_name and m.archive_model_name != m.name:
        lines.append(f"  archive model name: {m.archive_model_name} (the URL uses {m.name})")
    lines += [
        f"  version:  {m.version}",
        f"  task:     {m.task or 'unknown (not built by mar-build)'}",
        f"  handler:  {m.handler}",
        f"  archive:  {m.archive} ({human_size(m.size)}, {m.files} files, {human_size(m.content_size)} unpacked)",
    ]
    if m.class_names:
        lines.append(f"  classes:  {', '.join(m.class_names)}")
    if m.labels:
        lines.append("  labels:   " + ", ".join(f"{k}={v}" for k, v in m.labels.items()))
    if m.metadata:
        lines.append(f"  metadata: {json.dumps(m.metadata)}")
    if m.settings:
        lines.append("  serving:  " + ", ".join(f"{k}={m.settings[k]}" for k in _SERVING_KEYS if k in m.settings))
    lines.append("  largest:  " + ", ".join(f"{n} ({human_size(s)})" for n, s in m.largest[:3]))
    return lines


@cli.command("check")
@click.argument("path", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--runtime", type=click.Choice(list(RUNTIMES)), default="torchserve", show_default=True,
              help="The runtime that will serve the layout (its image is what the layout is checked against).")
@click.option("--runtime-version", metavar="TAG",
              help=f"The pytorch/torchserve-kfs tag the pod runs (default {DEFAULT_TAG}, KServe's; known: "
              f"{', '.join(TAGS)}; -gpu tags too).")
@click.option("--no-probe", is_flag=True,
              help="Skip the real load of each transformers folder with the image's transformers (a venv on the "
              "image's Python, made once from the package index): for a machine without either.")
@json_option("the report")
def check_command(path: Path, runtime: Runtime, runtime_version: str | None, no_probe: bool, as_json: bool) -> None:
    """Preflight a layout (ours or hand-written) for the pod's image: exit 1 with every problem listed, each with
    its fix."""
    report = check_layout(path, runtime=runtime, runtime_version=runtime_version, probe=not no_probe)
    finish(report, as_json=as_json, show=_show_report, status=0 if report.ok else 1)


def _show_report(report: CheckReport) -> None:
    for p in report.problems:
        click.secho(f"{p.level}: {p.message}", fg="red" if p.level == "error" else "yellow")
        if p.hint:
            click.echo(f"  fix: {p.hint}")
    summary = f"{len(report.errors)} error(s), {len(report.warnings)} warning(s)"
    models = ", ".join(report.models) or "none"
    click.echo(f"{'ok' if report.ok else 'FAILED'}: {report.path} (models: {models}); {summary}")
