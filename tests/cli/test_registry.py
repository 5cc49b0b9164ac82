"""The command registry: `_COMMANDS` (which module to import for a command) agrees with what the modules register,
and every command answers --help."""

from __future__ import annotations

import importlib
import pkgutil
import re

import click
import pytest
from click.testing import CliRunner

import toolkit._cli as cli_package
from toolkit._cli import _COMMANDS, cli


def _registered() -> dict[str, str]:
    """Each command the CLI modules register on the group -> the module (under toolkit._cli) it comes from."""
    for info in pkgutil.iter_modules(cli_package.__path__):
        importlib.import_module(f"{cli_package.__name__}.{info.name}")
    found = {}
    for name, command in cli.commands.items():
        assert command.callback is not None, name
        found[name] = command.callback.__module__.removeprefix(f"{cli_package.__name__}.")
    return found


def test_the_registry_names_every_command_and_its_module_both_ways() -> None:
    registered = _registered()
    assert registered == _COMMANDS
    # helper modules (a leading underscore) register nothing
    assert not [m for m in registered.values() if m.startswith("_")]


@pytest.mark.parametrize("name", sorted(_COMMANDS))
def test_every_command_has_help(name: str) -> None:
    result = CliRunner().invoke(cli, [name, "--help"])
    assert result.exit_code == 0, result.output
    assert result.output.startswith(f"Usage: cli {name} ")
    assert "--help" in result.output


def test_the_group_lists_every_command() -> None:
    result = CliRunner().invoke(cli, ["--help"])
    assert result.exit_code == 0, result.output
    listed = result.output.split("Commands:\n", 1)[1].split()
    assert set(_COMMANDS) <= set(listed)


def test_an_unknown_command_is_a_usage_error() -> None:
    result = CliRunner().invoke(cli, ["serv"])
    assert result.exit_code == 2
    assert "No such command 'serv'" in result.output


def test_old_option_names_stay_out_of_help() -> None:
    """--timeout and stage's --endpoint-url/--region still work, but --help shows only the names to use."""
    for name in ("deploy", "delete", "render", "serve", "predict", "stage"):
        command = cli.get_command(click.Context(cli), name)
        assert command is not None
        text = command.get_help(click.Context(command, info_name=name))
        shown = set(re.findall(r"(?<![\w-])--[\w-]+", text))
        assert not shown & {"--timeout", "--endpoint-url", "--region"}, name


@pytest.mark.parametrize("name", sorted(_COMMANDS))
def test_every_command_can_print_its_result_as_json(name: str) -> None:
    command = cli.get_command(click.Context(cli), name)
    assert command is not None
    [option] = [p for p in command.params if p.name == "as_json"]
    assert isinstance(option, click.Option) and option.opts == ["--json"] and option.is_flag


def _option(command_name: str, name: str) -> click.Option:
    command = cli.get_command(click.Context(cli), command_name)
    assert command is not None
    [option] = [p for p in command.params if p.name == name]
    assert isinstance(option, click.Option)
    return option


def test_the_runtime_options_mean_one_thing_in_every_command() -> None:
    """--runtime is the same choice in serve, render and deploy (the library's names); render and deploy share
    --image and --serving-runtime, help text and all."""
    from toolkit._render import RUNTIMES

    for name in ("serve", "render", "deploy"):
        choice = _option(name, "runtime").type
        assert isinstance(choice, click.Choice) and tuple(choice.choices) == RUNTIMES, name
    for name in ("runtime", "image", "serving_runtime"):
        assert _option("render", name).help == _option("deploy", name).help, name
    assert _option("render", "serving_runtime").is_flag
