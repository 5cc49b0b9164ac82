"""CLI commands: deploy, status, delete (registered on the group in __init__)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from .._deploy import DeployEvent, IsvcStatus, delete, deploy, status
from . import cli

_cluster_options = [
    click.option("-n", "--namespace", help="Namespace (default: the kubeconfig context's, else default)."),
    click.option("--context", help="kubeconfig context to use (default: the current one)."),
    click.option(
        "--kubeconfig",
        type=click.Path(dir_okay=False, path_type=Path),
        help="kubeconfig file (default: $KUBECONFIG, else ~/.kube/config, else the pod's service account).",
    ),
]


def _with_cluster_options(fn: Any) -> Any:
    for option in reversed(_cluster_options):
        fn = option(fn)
    return fn


def _show_event(event: DeployEvent) -> None:
    click.echo(f"[{event.elapsed:6.1f}s] {event.message}", err=True)


@cli.command("deploy")
@click.argument(
    "sources", nargs=-1, required=True, metavar="MANIFEST|LAYOUT...", type=click.Path(exists=True, path_type=Path)
)
@_with_cluster_options
@click.option("--wait/--no-wait", default=True, show_default=True, help="Wait until the InferenceService is Ready.")
@click.option("--timeout", type=click.FloatRange(min=0), default=600, show_default=True, help="Seconds to wait.")
@click.option("--name", help="InferenceService name (when deploying a LAYOUT).")
@click.option("--storage-uri", help="Where the layout was staged (when deploying a LAYOUT).")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@click.option("--poll-interval", type=click.FloatRange(min=0), default=2.0, hidden=True)
def deploy_command(
    sources: tuple[Path, ...],
    namespace: str | None,
    context: str | None,
    kubeconfig: Path | None,
    wait: bool,
    timeout: float,
    name: str | None,
    storage_uri: str | None,
    as_json: bool,
    poll_interval: float,
) -> None:
    """Apply MANIFEST files (or render a LAYOUT) and wait until the InferenceService is ready.

    \b
    mar-build deploy isvc.yaml -n kubeflow-user-example-com
    mar-build deploy build/bert --name torchserve --storage-uri pvc://leeway/bert
    """
    layouts = [s for s in sources if s.is_dir()]
    if layouts and len(sources) > 1:
        raise click.UsageError("give either one LAYOUT folder or manifest files, not both")
    if not layouts and (name or storage_uri):
        raise click.UsageError("--name and --storage-uri apply to a LAYOUT; a manifest already names them")
    source: Any = sources[0] if layouts else list(sources)
    result = deploy(
        source,
        namespace=namespace,
        wait=wait,
        timeout=timeout,
        kubeconfig=kubeconfig,
        context=context,
        on_event=_show_event,
        poll_interval=poll_interval,
        name=name,
        storage_uri=storage_uri,
    )
    if as_json:
        click.echo(
            json.dumps(
                {
                    "name": result.name,
                    "namespace": result.namespace,
                    "ready": result.ready,
                    "url": result.url,
                    "address": result.address,
                    "applied": list(result.applied),
                },
                indent=2,
            )
        )
    elif wait:
        click.echo(result.url or f"{result.namespace}/{result.name} is ready (no URL in its status)")
    else:
        click.echo(f"applied; follow it with: mar-build status {result.name} -n {result.namespace}")


def _status_lines(st: IsvcStatus) -> list[str]:
    lines = [f"InferenceService {st.namespace}/{st.name}: {'ready' if st.ready else 'NOT ready'}"]
    if st.url:
        lines.append(f"url:     {st.url}")
    if st.address:
        lines.append(f"address: {st.address}")
    for comp in st.components:
        rev = comp.latest_ready_revision or "-"
        text = f"{comp.name}: latest ready revision {rev}"
        if comp.latest_created_revision and comp.latest_created_revision != comp.latest_ready_revision:
            text += f", latest created {comp.latest_created_revision}"
        if comp.traffic:
            split = ", ".join(
                f"{t.revision} {t.percent if t.percent is not None else '?'}%" + (" (latest)" if t.latest else "")
                for t in comp.traffic
            )
            text += f"; traffic: {split}"
        lines.append(text)
    if st.diagnosis is not None:
        lines += st.diagnosis.lines()
    else:
        lines.append("conditions:")
        lines += ["  " + c.line() for c in st.conditions]
        if st.model_status:
            lines.append(f"model status: {st.model_status}")
    return lines


@cli.command("status")
@click.argument("isvc")
@_with_cluster_options
@click.option("--json", "as_json", is_flag=True, help="Print the status as JSON.")
def status_command(
    isvc: str, namespace: str | None, context: str | None, kubeconfig: Path | None, as_json: bool
) -> None:
    """Show an InferenceService: ready, URL, conditions, revisions; why it is not ready. Exit 1 when not ready."""
    st = status(isvc, namespace, kubeconfig=kubeconfig, context=context)
    if as_json:
        click.echo(json.dumps(st.to_dict(), indent=2))
    else:
        click.echo("\n".join(_status_lines(st)))
    if not st.ready:
        click.get_current_context().exit(1)


@cli.command("delete")
@click.argument("isvc")
@_with_cluster_options
@click.option("--wait/--no-wait", default=False, show_default=True, help="Wait until it is gone.")
@click.option("--timeout", type=click.FloatRange(min=0), default=300, show_default=True, help="Seconds to wait.")
@click.option("--ignore-not-found", is_flag=True, help="Succeed when there is no such InferenceService.")
@click.option("--poll-interval", type=click.FloatRange(min=0), default=1.0, hidden=True)
def delete_command(
    isvc: str,
    namespace: str | None,
    context: str | None,
    kubeconfig: Path | None,
    wait: bool,
    timeout: float,
    ignore_not_found: bool,
    poll_interval: float,
) -> None:
    """Delete an InferenceService (its Secret, ServiceAccount and PVC stay)."""
    deleted = delete(
        isvc,
        namespace,
        wait=wait,
        timeout=timeout,
        missing_ok=ignore_not_found,
        kubeconfig=kubeconfig,
        context=context,
        poll_interval=poll_interval,
    )
    click.echo(f"deleted InferenceService {isvc}" if deleted else f"no InferenceService {isvc}: nothing to delete")
