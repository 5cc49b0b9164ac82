"""The one way a command ends (_output.finish) and the one way an option keeps an old name (_options.option)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import click
from click.testing import CliRunner

from toolkit._cli._options import option
from toolkit._cli._output import finish


@dataclass
class Result:
    name: str
    size: int

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "size": self.size}


def _command(result: Any, status: int = 0, compact: bool = False) -> click.Command:
    @click.command()
    @click.option("--json", "as_json", is_flag=True)
    def command(as_json: bool) -> None:
        finish(result, as_json=as_json, show=lambda r: click.echo(f"shown: {r}"), status=status, compact=compact)

    return command


def test_a_person_gets_the_printer_and_a_machine_the_to_dict() -> None:
    runner = CliRunner()
    assert runner.invoke(_command(Result("a", 1))).stdout == "shown: Result(name='a', size=1)\n"
    out = runner.invoke(_command(Result("a", 1)), ["--json"]).stdout
    assert json.loads(out) == {"name": "a", "size": 1} and out.count("\n") > 1  # indented for reading


def test_lists_and_dicts_of_results_become_json_too() -> None:
    result = {"models": [Result("a", 1), Result("b", 2)], "ok": True}
    out = CliRunner().invoke(_command(result, compact=True), ["--json"]).stdout
    assert out == '{"models": [{"name": "a", "size": 1}, {"name": "b", "size": 2}], "ok": true}\n'


def test_the_exit_status_comes_after_the_result_in_both_modes() -> None:
    for args in ([], ["--json"]):
        result = CliRunner().invoke(_command(Result("a", 1), status=3), args)
        assert result.exit_code == 3 and result.stdout


def test_an_old_name_takes_the_new_names_type_and_default() -> None:
    seen: list[float] = []

    @click.command()
    @option("--wait-timeout", type=click.FloatRange(min=0), default=5.0, old=["--timeout", "-t"])
    def command(wait_timeout: float) -> None:
        seen.append(wait_timeout)

    runner = CliRunner()
    assert runner.invoke(command, []).exit_code == 0
    assert runner.invoke(command, ["--timeout", "2"]).exit_code == 0
    result = runner.invoke(command, ["-t", "3"])
    assert result.exit_code == 0 and "warning: `command`: -t is deprecated, use --wait-timeout" in result.stderr
    assert seen == [5.0, 2.0, 3.0]
    assert runner.invoke(command, ["--timeout", "soon"]).exit_code == 2
    assert "--timeout" not in runner.invoke(command, ["--help"]).stdout
