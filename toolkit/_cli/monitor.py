"""CLI command: dashboard (registered on the group in __init__)."""

from __future__ import annotations

from pathlib import Path

import click

from .._render import Dashboard, layout_dashboard
from . import cli
from ._options import json_option
from ._output import finish


@cli.command("dashboard")
@click.argument("layout", type=click.Path(path_type=Path))
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path),
              help="Write the dashboard's JSON here (Grafana: Dashboards > New > Import) instead of stdout.")
@click.option("--name", help="Preselect this InferenceService (default: mar.yaml's kserve.name).")
@click.option("-n", "--namespace", help="Preselect this namespace (default: mar.yaml's kserve.namespace).")
@json_option("the dashboard's JSON model")
def dashboard_command(layout: Path, output: Path | None, name: str | None, namespace: str | None,
                      as_json: bool) -> None:
    """Write the Grafana dashboard of LAYOUT's models: requests, latency, batches, bad requests, restarts, CPU and
    memory of the predictor pods, with namespace / InferenceService / model variables.

    \b
    mar-build dashboard build/bert -o bert-dashboard.json
    mar-build render build/bert --name bert --storage-uri pvc://leeway/bert --dashboard   # as a ConfigMap
    """
    result = layout_dashboard(layout, name=name, namespace=namespace)
    if output is not None:
        result.write(output)
        click.echo(f"wrote the dashboard of {', '.join(result.models)} to {output}", err=True)
    finish(result, as_json=as_json, show=lambda r: _show(r, on_stdout=output is None))


def _show(result: Dashboard, *, on_stdout: bool) -> None:
    if on_stdout:
        click.echo(result.text, nl=False)
