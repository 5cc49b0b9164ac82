"""The `mar-build` command line: a thin adapter over the library.

Each area registers its commands from its own module (build.py, serve.py, ...). This module owns the group, the
logging setup and the one place where a ToolkitError becomes a message and an exit status.
"""

from __future__ import annotations

import logging
import sys
from typing import Any

import click

from .._errors import ToolkitError


class _Group(click.Group):
    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except ToolkitError as exc:
            # The one translation point: a clean message, no traceback, no locals (they may hold credentials).
            click.secho(f"error: {exc.message}", fg="red", err=True)
            if exc.hint:
                click.echo(f"  hint: {exc.hint}", err=True)
            if exc.__cause__ is not None and logging.getLogger("toolkit").isEnabledFor(logging.DEBUG):
                click.echo(f"  caused by: {exc.__cause__!r}", err=True)
            ctx.exit(exc.exit_code)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 110})
@click.option("-v", "--verbose", count=True, help="More log output (-vv for debug).")
@click.option("-q", "--quiet", is_flag=True, help="Only errors.")
@click.version_option(package_name="mar-build", prog_name="mar-build")
def cli(verbose: int, quiet: bool) -> None:
    """Package a PyTorch or Hugging Face model for KServe's TorchServe runtime, serve it locally, deploy, call it."""
    level = logging.ERROR if quiet else logging.WARNING - 10 * min(verbose, 2)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    logging.getLogger("toolkit").setLevel(level)


def main() -> None:
    cli(prog_name="mar-build")


# Command modules register themselves on `cli` when imported.
from . import build, deploy, predict, render, serve, stage  # noqa: E402,F401
