"""CLI commands: init, build (registered on the group in __init__)."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import click

from .._build import BuildResult, build_many
from .._events import Progress
from .._source import is_model_uri
from .._spec import TASKS, InitResult
from .._spec import init as init_spec
from .._stage import human_size
from . import cli
from ._options import json_option
from ._output import finish, warn


def _model_option(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    """A path that exists, or an MLflow model URI (checked by the spec's parser, resolved by build)."""
    if value is None or is_model_uri(value):
        return value
    return str(click.Path(exists=True).convert(value, param, ctx))


@cli.command("init")
@click.argument("task", type=click.Choice(TASKS))
@click.argument("directory", type=click.Path(file_okay=False, path_type=Path))
@click.option("--model", callback=_model_option, metavar="PATH|URI",
              help="The model folder or weights file, or an MLflow model URI (models:/NAME/VERSION, ...).")
@click.option("--name", help="Model name (the URL name); default: the folder's name.")
@click.option("--force", is_flag=True, help="Overwrite an existing mar.yaml / handler.py.")
@json_option("the files written")
def init_command(task: str, directory: Path, model: str | None, name: str | None, force: bool, as_json: bool) -> None:
    """Write DIRECTORY/mar.yaml for TASK (and handler.py for TASK=custom).

    \b
    Example:
      mar-build init text-classification samples/bert --model ./bert-finetuned --name bert
    """
    result = init_spec(task, directory, model=model, name=name, force=force)
    finish(result, as_json=as_json, show=lambda r: _show_init(r, directory))


def _show_init(result: InitResult, directory: Path) -> None:
    click.echo(f"wrote {result.spec}")
    if result.handler:
        click.echo(f"wrote {result.handler} (fill in load / preprocess_instance / inference / postprocess)")
    click.echo(f"next: mar-build build {directory}")


# click's option names -> the spec keys they override
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
@click.option("--model", callback=_model_option, metavar="PATH|URI",
              help="Override the model: a path, or an MLflow model URI (models:/NAME/VERSION, models:/NAME@ALIAS, "
                   "runs:/RUN_ID/PATH; the client's MLFLOW_TRACKING_URI, MLFLOW_S3_ENDPOINT_URL and AWS_* apply).")
@click.option("--handler", type=click.Path(exists=True), help="Override the custom handler file.")
@click.option("--batch-size", type=click.IntRange(1), help="Server-side batch size (model_snapshot batchSize).")
@click.option("--max-batch-delay", type=click.IntRange(0), help="Milliseconds to wait for a batch to fill.")
@click.option("--min-workers", type=click.IntRange(0))
@click.option("--max-workers", type=click.IntRange(1))
@click.option("--response-timeout", type=click.IntRange(1), help="Seconds.")
@json_option()
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
    # One call for every spec: build_many refuses two specs with the same model name, or several specs without -o,
    # before it writes anything.
    with _progress_bar(enabled=not as_json and sys.stderr.isatty()) as progress:
        results = build_many(list(specs or (Path.cwd(),)), output, overrides=overrides, progress=progress)
    finish(results, as_json=as_json, show=_show_builds)


def _show_builds(results: list[BuildResult]) -> None:
    for r in results:
        verb = "replaced" if r.replaced else "built"
        click.echo(f"{verb} {r.name} {r.version}: {r.archive} ({human_size(r.archive_size)})")
        for warning in r.warnings:
            warn(warning)
    last = results[-1]
    click.echo(f"layout {last.layout}: {', '.join(last.models)}  (config: {last.config})")
    click.echo(f"next: mar-build check {last.layout} && mar-build serve {last.layout}")


@contextmanager
def _progress_bar(*, enabled: bool) -> Iterator[Progress | None]:
    """A bar on stderr for the archive being written, fed by the library's progress(done, total) callback."""
    if not enabled:
        yield None
        return
    with click.progressbar(length=1, label="building", file=sys.stderr, show_eta=False) as bar:
        def progress(done: int, total: int) -> None:
            if done < bar.pos:  # the next model's archive: the bar starts over
                bar.pos = 0
            bar.length = max(total, 1)
            bar.update(done - bar.pos)

        yield progress
