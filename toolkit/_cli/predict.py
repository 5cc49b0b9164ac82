"""CLI commands: predict (registered on the group in __init__)."""

from __future__ import annotations

import json
from typing import Any, BinaryIO

import click

from .._client import AUTHSERVICE_COOKIE, Client, instances_from_json
from . import cli
from ._options import json_option, option
from ._output import finish

_WIDTH = 100  # characters of one prediction shown in the pretty output


@cli.command("predict")
@click.argument("url")
@click.option("-m", "--model", required=True, help="Model name in the URL: the model_snapshot key, not the ISVC name.")
@click.option("--data", "data", type=click.File("rb"), metavar="FILE|-",
              help='JSON file with {"instances": [...]} or a bare list; - reads stdin.')
@click.option("--instances", "instances_json", metavar="JSON", help="The instances as a JSON list on the command line.")
@click.option("--host", help="Host header for the ingress gateway: NAME.NAMESPACE.example.com.")
@click.option("--token", envvar="MAR_BUILD_TOKEN", help="Bearer token (or env MAR_BUILD_TOKEN).")
@click.option("--cookie", help="Session cookie: NAME=VALUE, or the value alone (see --cookie-name).")
@click.option("--cookie-name", default=AUTHSERVICE_COOKIE, show_default=True,
              help="Cookie a bare --cookie value goes into (oauth2_proxy_kubeflow on Kubeflow >= 1.9).")
@click.option("--username", help="Dex user for a login (Kubeflow's default: user@example.com).")
@click.option("--password", envvar="MAR_BUILD_PASSWORD",
              help="Dex password (or env MAR_BUILD_PASSWORD; asked for when absent).")
@option("--request-timeout", type=click.FloatRange(min=0, min_open=True), default=30.0, show_default=True,
        old=["--timeout"], help="Seconds per request.")
@click.option("--retries", type=click.IntRange(min=0), default=3, show_default=True,
              help="Retries on connection errors and 503 (model loading or busy).")
@click.option("--max-batch", type=click.IntRange(min=1), help="Send at most N instances per request.")
@json_option('the {"predictions": [...]}')
@click.option("--explain", is_flag=True, help="Call :explain instead of :predict.")
def predict_command(
    url: str, model: str, data: BinaryIO | None, instances_json: str | None, request_timeout: float, as_json: bool,
    explain: bool, **connection: Any,
) -> None:
    """Send instances to a KServe v1 endpoint at URL (the server root) and print the predictions.

    \b
    mar-build predict http://localhost:8080 -m bert --instances '[{"data": "Hello World!"}]' \\
        --host torchserve.kubeflow-user-example-com.example.com --cookie "$SESSION"
    """
    if (data is None) == (instances_json is None):
        raise click.UsageError("give the instances with exactly one of --data FILE|- and --instances JSON")
    instances, source = _read_instances(data, instances_json)
    with Client(url, timeout=request_timeout, **_credentials(connection, stdin_taken=source == "<stdin>")) as client:
        results = client.explain(model, instances) if explain else client.predict(model, instances)
    key = "explanations" if explain else "predictions"
    finish({key: results}, as_json=as_json, show=lambda _: _show_results(results), compact=True)


def _read_instances(data: BinaryIO | None, instances_json: str | None) -> tuple[list[Any], str]:
    """The instances and where they came from (the file's name, <stdin> or --instances, for error messages)."""
    if data is None:
        return instances_from_json(instances_json or "", source="--instances"), "--instances"
    name = getattr(data, "name", None)
    source = str(name) if isinstance(name, str) and name not in ("-", "<stdin>") else "<stdin>"
    return instances_from_json(data.read(), source=source), source


def _credentials(connection: dict[str, Any], *, stdin_taken: bool) -> dict[str, Any]:
    """Client's auth and connection keywords from the options: which of token, cookie and login applies."""
    options = dict(connection)
    options["token"] = options["token"] or None  # an empty MAR_BUILD_TOKEN is no token
    ctx = click.get_current_context()
    if (options["cookie"] or options["username"]) and (
        ctx.get_parameter_source("token") == click.core.ParameterSource.ENVIRONMENT
    ):
        options["token"] = None  # an explicit --cookie/--username wins over a token left in the environment
    if options["username"] and not options["password"]:
        if stdin_taken:
            raise click.UsageError("stdin holds the instances: give the password with --password or MAR_BUILD_PASSWORD")
        options["password"] = click.prompt(f"Dex password for {options['username']}", hide_input=True, err=True)
    return options


def _show_results(results: list[Any]) -> None:
    if not results:
        click.echo("no instances, nothing sent", err=True)
    width = len(str(len(results) - 1)) if results else 1
    for i, value in enumerate(results):
        click.echo(f"{i:>{width}}  {_short(value)}")


def _short(value: Any) -> str:
    """One prediction on one line: long number lists (embeddings) as their head and length."""
    if isinstance(value, list) and len(value) > 8 and all(isinstance(v, (int, float)) for v in value):
        head = ", ".join(f"{v:.4g}" if isinstance(v, float) else str(v) for v in value[:4])
        return f"[{head}, ... {len(value)} values]"
    text = json.dumps(value, ensure_ascii=False)
    return text if len(text) <= _WIDTH else text[: _WIDTH - 3] + "..."
