"""CLI command: serve (registered on the group in __init__)."""

from __future__ import annotations

import signal
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import FrameType
from typing import cast

import click

from .._serve import RUNTIMES, LocalPredictor, Runtime, RuntimePredictor, ServeEvent, serve
from . import cli
from ._options import json_option, option
from ._output import exit_with, finish


def _interrupt(signum: int, frame: FrameType | None) -> None:
    # SIGTERM (kill, a container stop) takes the same clean path as Ctrl-C.
    raise KeyboardInterrupt


_STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


@contextmanager
def _ctrl_c_stops() -> Iterator[None]:
    """Inside the block SIGINT and SIGTERM raise KeyboardInterrupt, whatever was inherited; after it, the handlers
    that were there come back (the command may run inside a longer-lived process: a test, a notebook)."""
    # Ctrl-C is this command's stop button. A parent can start us with SIGINT ignored (a non-interactive shell's
    # background job) or blocked in the signal mask (both survive exec), and Python would then never raise
    # KeyboardInterrupt: seen once in CI as a serve that Ctrl-C missed.
    signal.pthread_sigmask(signal.SIG_UNBLOCK, set(_STOP_SIGNALS))
    previous = {signum: signal.getsignal(signum) for signum in _STOP_SIGNALS}
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        yield
    finally:
        for signum, handler in previous.items():
            if handler is not None:  # None: a handler not set from Python, which cannot be put back
                signal.signal(signum, handler)


def _stop_shielded(predictor: LocalPredictor | RuntimePredictor) -> None:
    """predictor.stop() with Ctrl-C and SIGTERM ignored: a second Ctrl-C must not cut the shutdown short and leave
    TorchServe behind (stop() is bounded)."""
    shielded = {signum: signal.signal(signum, signal.SIG_IGN) for signum in _STOP_SIGNALS}
    try:
        predictor.stop()
    finally:
        for signum, handler in shielded.items():
            signal.signal(signum, handler)


def _show_event(event: ServeEvent) -> None:
    click.echo(f"  {event}", err=True)


def _show_endpoints(predictor: LocalPredictor | RuntimePredictor) -> None:
    how = "the python runtime" if isinstance(predictor, RuntimePredictor) else "the predictor pod"
    click.echo(f"Serving {len(predictor.models)} model(s) like {how}, ready: {', '.join(predictor.models)}")
    for model in predictor.models:
        click.echo(f"  predict  POST {predictor.predict_url(model)}")
        click.echo(f"  ready    GET  {predictor.url}/v1/models/{model}")
    whose = "the runtime's" if isinstance(predictor, RuntimePredictor) else "TorchServe's"
    click.echo(f"  metrics  GET  {predictor.metrics_url}   ({whose} Prometheus metrics)")
    click.echo(f"  log      {predictor.log_path}")
    click.echo(f"Try: mar-build predict {predictor.url} -m {predictor.models[0]} --data request.json")
    click.echo("Press Ctrl-C to stop.")


@cli.command("serve")
@click.argument("source")
@click.option("--port", type=click.IntRange(1, 65535), default=8080, show_default=True,
              help="HTTP port of the kserve wrapper (the pod's 8080).")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address the wrapper binds (0.0.0.0: all).")
@click.option("--grpc-port", type=click.IntRange(1, 65535), help="Also start kserve's gRPC server on this port.")
@click.option("--metrics-port", type=click.IntRange(1, 65535),
              help="Serve the Prometheus metrics on this port (TorchServe's metrics API; the python runtime's own "
              "listener). Default: a free port for TorchServe, the HTTP port's /metrics for the python runtime.")
@click.option("--ts-ports", type=click.Choice(["free", "config"]), default="free", show_default=True,
              help="TorchServe's ports: free loopback ports, or exactly those in config.properties.")
@click.option("--mount", type=click.Path(exists=True, file_okay=False, path_type=Path),
              help="For pvc://CLAIM/PATH: the folder where the claim is mounted.")
@click.option("--workdir", type=click.Path(file_okay=False, path_type=Path),
              help="Keep the run folder (config copy, TorchServe's logs) here instead of a temporary one.")
@option("--startup-timeout", type=click.FloatRange(1), default=300.0, show_default=True, old=["--timeout"],
        help="Seconds for TorchServe to start and every model to become ready.")
@click.option("--runtime", type=click.Choice(RUNTIMES), default="torchserve", show_default=True,
              help="torchserve: TorchServe behind KServe's wrapper, as the kserve-torchserve runtime; python: "
              "mar-build's own runtime (kserve's ModelServer, the handlers in process, no Java).")
@click.option("--torchserve", "torchserve", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="The torchserve script to run, e.g. from a venv with the pod image's TorchServe 0.9.0.")
@click.option("--wrapper", type=click.Choice(["ours", "image"]), default="ours", show_default=True,
              help="The wrapper's answers: ours (TorchServe's statuses passed through, ready once a worker is), or "
              "those of the stock pytorch/torchserve-kfs image (every error a 500, \"ready\": \"True\" at once).")
@json_option("the endpoints, on one line,")
def serve_command(
    source: str, port: int, host: str, grpc_port: int | None, metrics_port: int | None, ts_ports: str,
    mount: Path | None, workdir: Path | None, startup_timeout: float, runtime: str, torchserve: Path | None,
    wrapper: str, as_json: bool,
) -> None:
    """Serve a layout locally exactly like KServe's predictor pod, until Ctrl-C.

    SOURCE is a layout folder, an s3://BUCKET/PREFIX (downloaded as the storage-initializer would; set
    AWS_ENDPOINT_URL for a non-AWS endpoint) or pvc://CLAIM/PATH with --mount. TorchServe starts with the runtime's
    arguments and the kserve wrapper answers /v1/models/NAME:predict on --port.

    \b
    Example:
      mar-build serve build/bert --metrics-port 8082
      mar-build predict http://localhost:8080 -m bert --data request.json
      curl http://localhost:8082/metrics
    """
    with _ctrl_c_stops():
        try:
            predictor = serve(
                source, port=port, host=host, grpc_port=grpc_port, mount=mount, workdir=workdir,
                ts_ports="config" if ts_ports == "config" else "free", startup_timeout=startup_timeout,
                torchserve=torchserve, runtime=cast(Runtime, runtime), metrics_port=metrics_port,
                wrapper="image" if wrapper == "image" else "ours",
                on_event=_show_event,
            )
        except KeyboardInterrupt:
            click.echo("interrupted: stopped", err=True)
            exit_with(130)
        try:
            # One line with --json: whoever started us reads stdout line by line and can act on the first.
            finish(predictor, as_json=as_json, show=_show_endpoints, compact=True)
            predictor.wait()
        except KeyboardInterrupt:
            click.echo("stopping ...", err=True)
        finally:
            _stop_shielded(predictor)
    click.echo("stopped", err=True)
