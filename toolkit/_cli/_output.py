"""How a command ends: its result printed for a person or as JSON, then its exit status. One way, every command."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any, NoReturn, TypeVar

import click

R = TypeVar("R")


def finish(result: R, *, as_json: bool, show: Callable[[R], None], status: int = 0, compact: bool = False) -> None:
    """Print ``result`` (as JSON with ``as_json``, else through ``show``) and end the command with exit ``status``.

    JSON is the result's ``to_dict()`` (lists and dicts of results too), indented unless ``compact`` (one line:
    for output read line by line, and for long number lists). Status 0 returns normally.
    """
    if as_json:
        click.echo(json.dumps(_plain(result), indent=None if compact else 2, ensure_ascii=False))
    else:
        show(result)
    if status:
        exit_with(status)


def exit_with(status: int) -> NoReturn:
    """End the command with exit ``status`` (click's Exit: the installed command and CliRunner both exit with it)."""
    raise click.exceptions.Exit(status)


def warn(message: str) -> None:
    """A warning for a person, on stderr (stdout carries only the result)."""
    click.secho(f"warning: {message}", fg="yellow", err=True)


def _plain(value: Any) -> Any:
    if hasattr(value, "to_dict"):
        return value.to_dict()
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value
