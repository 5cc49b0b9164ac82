"""CLI commands: deploy, status, delete (registered on the group in __init__)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from .._deploy import ComponentStatus, DeployEvent, DeployResult, IsvcStatus, delete, deploy, status
from .._render import RUNTIMES
from . import cli
from ._options import cluster_options, json_option, runtime_options, wait_timeout_option
from ._output import finish


def _show_event(event: DeployEvent) -> None:
    click.echo(f"[{event.elapsed:6.1f}s] {event.message}", err=True)


@cli.command("deploy")
@click.argument(
    "sources", nargs=-1, required=True, metavar="MANIFEST|LAYOUT...", type=click.Path(exists=True, path_type=Path)
)
@cluster_options
@click.option("--wait/--no-wait", default=True, show_default=True, help="Wait until the InferenceService is Ready.")
@wait_timeout_option(default=600)
@click.option("--name", help="InferenceService name (when deploying a LAYOUT).")
@click.option("--storage-uri", help="Where the layout was staged (when deploying a LAYOUT).")
@click.option("--predictor-timeout", type=click.IntRange(min=1),
              help="The predictor's request timeout in seconds (when deploying a LAYOUT; see render).")
@runtime_options(RUNTIMES)
@click.option("--runtime-version",
              help="pytorch/torchserve-kfs image tag (when deploying a LAYOUT; see render): the InferenceService's "
              "runtimeVersion, and the image the preflight checks the layout against.")
@json_option()
@click.option("--poll-interval", type=click.FloatRange(min=0), default=2.0, hidden=True)
def deploy_command(
    sources: tuple[Path, ...], wait: bool, wait_timeout: float, name: str | None, storage_uri: str | None,
    predictor_timeout: int | None, runtime: str | None, image: str | None, serving_runtime: bool,
    runtime_version: str | None, as_json: bool, poll_interval: float, **cluster: Any,
) -> None:
    """Apply MANIFEST files (or render a LAYOUT) and wait until the InferenceService is ready.

    \b
    mar-build deploy isvc.yaml -n kubeflow-user-example-com
    mar-build deploy build/bert --name torchserve --storage-uri pvc://leeway/bert
    mar-build deploy build/bert --name bert --storage-uri pvc://leeway/bert \\
        --runtime python --image ghcr.io/team/mar-build-runtime:1.0
    mar-build deploy build/bert --name bert --storage-uri pvc://leeway/bert --image ghcr.io/team/bert-ts:1.0
    """
    layouts = [s for s in sources if s.is_dir()]
    if layouts and len(sources) > 1:
        raise click.UsageError("give either one LAYOUT folder or manifest files, not both")
    given = {
        "timeout": predictor_timeout, "runtime": runtime, "image": image, "serving_runtime": serving_runtime or None,
        "runtime_version": runtime_version,
    }
    render_options = {key: value for key, value in given.items() if value is not None}
    if not layouts and (name or storage_uri or render_options):
        raise click.UsageError(
            "--name, --storage-uri, --predictor-timeout, --runtime, --runtime-version, --image and --serving-runtime "
            "apply to a LAYOUT; a manifest already holds them"
        )
    result = deploy(
        sources[0] if layouts else list(sources), wait=wait, timeout=wait_timeout, on_event=_show_event,
        poll_interval=poll_interval, name=name, storage_uri=storage_uri, render_options=render_options or None,
        **cluster,
    )
    finish(result, as_json=as_json, show=lambda r: _show_deployed(r, wait))


def _show_deployed(result: DeployResult, waited: bool) -> None:
    if waited:
        click.echo(result.url or f"{result.namespace}/{result.name} is ready (no URL in its status)")
    else:
        click.echo(f"applied; follow it with: mar-build status {result.name} -n {result.namespace}")


@cli.command("status")
@click.argument("isvc")
@cluster_options
@json_option("the status")
def status_command(isvc: str, namespace: str | None, as_json: bool, **cluster: Any) -> None:
    """Show an InferenceService: ready, URL, conditions, revisions; why it is not ready. Exit 1 when not ready."""
    st = status(isvc, namespace, **cluster)
    finish(st, as_json=as_json, show=lambda s: click.echo("\n".join(_status_lines(s))), status=0 if st.ready else 1)


def _status_lines(st: IsvcStatus) -> list[str]:
    lines = [f"InferenceService {st.namespace}/{st.name}: {'ready' if st.ready else 'NOT ready'}"]
    if st.url:
        lines.append(f"url:     {st.url}")
    if st.address:
        lines.append(f"address: {st.address}")
    lines += [_component_line(comp) for comp in st.components]
    if st.diagnosis is not None:
        return lines + st.diagnosis.lines()
    lines.append("conditions:")
    lines += ["  " + c.line() for c in st.conditions]
    if st.model_status:
        lines.append(f"model status: {st.model_status}")
    return lines


def _component_line(comp: ComponentStatus) -> str:
    text = f"{comp.name}: latest ready revision {comp.latest_ready_revision or '-'}"
    if comp.latest_created_revision and comp.latest_created_revision != comp.latest_ready_revision:
        text += f", latest created {comp.latest_created_revision}"
    if comp.traffic:
        split = ", ".join(
            f"{t.revision} {t.percent if t.percent is not None else '?'}%" + (" (latest)" if t.latest else "")
            for t in comp.traffic
        )
        text += f"; traffic: {split}"
    return text


@cli.command("delete")
@click.argument("isvc")
@cluster_options
@click.option("--wait/--no-wait", default=False, show_default=True, help="Wait until it is gone.")
@wait_timeout_option(default=300)
@click.option("--ignore-not-found", is_flag=True, help="Succeed when there is no such InferenceService.")
@json_option()
@click.option("--poll-interval", type=click.FloatRange(min=0), default=1.0, hidden=True)
def delete_command(
    isvc: str, namespace: str | None, wait: bool, wait_timeout: float, ignore_not_found: bool, as_json: bool,
    poll_interval: float, **cluster: Any,
) -> None:
    """Delete an InferenceService (its Secret, ServiceAccount, PVC and ServingRuntime stay)."""
    deleted = delete(
        isvc, namespace, wait=wait, timeout=wait_timeout, missing_ok=ignore_not_found, poll_interval=poll_interval,
        **cluster,
    )
    # delete() answers only whether there was one to delete: the JSON is that, with the names asked for.
    outcome = {"name": isvc, "namespace": namespace, "deleted": deleted}
    finish(outcome, as_json=as_json, show=_show_deleted)


def _show_deleted(outcome: dict[str, Any]) -> None:
    isvc = outcome["name"]
    click.echo(
        f"deleted InferenceService {isvc}" if outcome["deleted"] else f"no InferenceService {isvc}: nothing to delete"
    )
