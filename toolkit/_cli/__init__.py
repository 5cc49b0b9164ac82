"""The `mar-build` command line: a thin adapter over the library.

Each area registers its commands from its own module (build.py, serve.py, ...), imported when one of its commands
runs. This module owns the group, the logging setup and the one place where a ToolkitError becomes a message and an
exit status. _options.py holds the options several commands share (and the one way an option keeps an old name),
_output.py the one way a command prints its result (for a person or as JSON) and exits.
"""

from __future__ import annotations

import importlib
import logging
import sys
from typing import Any

import click

from .._errors import ToolkitError
from ._output import exit_with

# Each command's module, imported only when that command runs: `mar-build stage` need not load httpx, kserve or the
# kubernetes client first (measured: importing every module cost 0.4-0.9 s on each call).
_COMMANDS = {
    "init": "build", "build": "build", "inspect": "layout", "check": "layout",
    "serve": "serve", "predict": "predict", "stage": "stage", "render": "render",
    "deploy": "deploy", "status": "deploy", "delete": "deploy", "image": "image",
    "dashboard": "monitor", "pipeline": "pipeline",
}


class _Group(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(_COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        module = _COMMANDS.get(cmd_name)
        if module is not None and cmd_name not in self.commands:
            importlib.import_module(f"{__name__}.{module}")  # its decorators register the commands on `cli`
        return super().get_command(ctx, cmd_name)

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
            exit_with(exc.exit_code)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 110})
@click.option("-v", "--verbose", count=True, help="More log output (-vv for debug).")
@click.option("-q", "--quiet", is_flag=True, help="Only errors.")
@click.version_option(package_name="mar-build", prog_name="mar-build")
def cli(verbose: int, quiet: bool) -> None:
    """Package a PyTorch or Hugging Face model for KServe (TorchServe or our own python runtime), serve it locally,
    stage, deploy, call it."""
    level = logging.ERROR if quiet else logging.WARNING - 10 * min(verbose, 2)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    logging.getLogger("toolkit").setLevel(level)


def main() -> None:
    cli(prog_name="mar-build")
