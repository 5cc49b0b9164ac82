"""One meaning per flag: each renamed option reaches the library under its new name, and its old name still works,
hidden, with a warning on stderr naming the new one.

The library call is replaced by a recorder that keeps its arguments and stops the command with a ToolkitError (so
the command ends the way a failing call ends it, exit 1, with nothing to print).
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from toolkit._cli import cli
from toolkit._errors import ToolkitError

STOP = "recorded the call"


class Recorder:
    def __init__(self) -> None:
        self.calls: list[dict[str, Any]] = []

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        self.calls.append(kwargs)
        raise ToolkitError(STOP)


@pytest.fixture
def files(tmp_path: Path) -> dict[str, str]:
    manifest = tmp_path / "isvc.yaml"
    manifest.write_text("kind: InferenceService\n")
    layout = tmp_path / "layout"
    layout.mkdir()
    return {"MANIFEST": str(manifest), "LAYOUT": str(layout)}


def invoke(args: list[str], files: dict[str, str]) -> Result:
    return CliRunner().invoke(cli, [files.get(a, a) for a in args], env={"KUBECONFIG": None})


# command line without the renamed option, module and function it calls, new option, old option, the keyword the
# library gets, the value given and the value the library should get.
RENAMED = [
    (["deploy", "MANIFEST"], "deploy", "deploy", "--wait-timeout", "--timeout", "timeout", "42", 42.0),
    (["delete", "torchserve"], "deploy", "delete", "--wait-timeout", "--timeout", "timeout", "42", 42.0),
    (["render", "LAYOUT"], "render", "render", "--predictor-timeout", "--timeout", "timeout", "42", 42),
    (["serve", "LAYOUT"], "serve", "serve", "--startup-timeout", "--timeout", "startup_timeout", "42", 42.0),
    (["predict", "http://127.0.0.1:9", "-m", "bert", "--instances", "[1]"], "predict", "Client",
     "--request-timeout", "--timeout", "timeout", "42", 42.0),
    (["stage", "LAYOUT", "s3://models/bert"], "stage", "stage", "--s3-endpoint", "--endpoint-url", "endpoint_url",
     "http://minio:9000", "http://minio:9000"),
    (["stage", "LAYOUT", "s3://models/bert"], "stage", "stage", "--s3-region", "--region", "region", "eu-west-1",
     "eu-west-1"),
]
IDS = [f"{row[0][0]} {row[3]}" for row in RENAMED]


def _record(monkeypatch: pytest.MonkeyPatch, module: str, function: str) -> Recorder:
    recorder = Recorder()
    monkeypatch.setattr(importlib.import_module(f"toolkit._cli.{module}"), function, recorder)
    return recorder


@pytest.mark.parametrize(("base", "module", "function", "new", "old", "keyword", "given", "expected"), RENAMED,
                         ids=IDS)
def test_the_new_name_reaches_the_library_without_a_warning(
    monkeypatch, files, base, module, function, new, old, keyword, given, expected
) -> None:
    recorder = _record(monkeypatch, module, function)
    result = invoke([*base, new, given], files)
    assert result.exit_code == 1 and f"error: {STOP}" in result.stderr, result.output
    assert recorder.calls[0][keyword] == expected
    assert "deprecated" not in result.stderr


@pytest.mark.parametrize(("base", "module", "function", "new", "old", "keyword", "given", "expected"), RENAMED,
                         ids=IDS)
def test_the_old_name_still_works_and_says_which_name_to_use(
    monkeypatch, files, base, module, function, new, old, keyword, given, expected
) -> None:
    recorder = _record(monkeypatch, module, function)
    result = invoke([*base, old, given], files)
    assert result.exit_code == 1 and f"error: {STOP}" in result.stderr, result.output
    assert recorder.calls[0][keyword] == expected
    warning = result.stderr.splitlines()[0]
    assert warning == f"warning: `cli {base[0]}`: {old} is deprecated, use {new}"
    assert warning not in result.stdout


@pytest.mark.parametrize(("base", "module", "function", "new", "old", "keyword", "given", "expected"), RENAMED,
                         ids=IDS)
def test_the_old_and_the_new_name_together_are_a_usage_error(
    monkeypatch, files, base, module, function, new, old, keyword, given, expected
) -> None:
    recorder = _record(monkeypatch, module, function)
    result = invoke([*base, new, given, old, given], files)
    assert result.exit_code == 2
    assert f"{old} is the old name of {new}: give only {new}" in result.stderr
    assert recorder.calls == []


@pytest.mark.parametrize(("base", "module", "function", "new", "old"),
                         [row[:5] for row in RENAMED if row[3].endswith("-timeout")])
def test_the_old_name_is_checked_like_the_new_one(monkeypatch, files, base, module, function, new, old) -> None:
    """The hidden old name has the new one's type: a negative timeout is a usage error under either name."""
    recorder = _record(monkeypatch, module, function)
    for name in (new, old):
        result = invoke([*base, name, "-5"], files)
        assert result.exit_code == 2, result.output
        assert "-5" in result.stderr
    assert recorder.calls == []


def test_the_defaults_apply_when_neither_name_is_given(monkeypatch, files) -> None:
    deploy = _record(monkeypatch, "deploy", "deploy")
    delete = _record(monkeypatch, "deploy", "delete")
    serve = _record(monkeypatch, "serve", "serve")
    invoke(["deploy", "MANIFEST"], files)
    invoke(["delete", "torchserve"], files)
    invoke(["serve", "LAYOUT"], files)
    assert deploy.calls[0]["timeout"] == 600 and delete.calls[0]["timeout"] == 300
    assert serve.calls[0]["startup_timeout"] == 300


def test_deploy_passes_the_predictor_timeout_to_render_for_a_layout(monkeypatch, files) -> None:
    deploy = _record(monkeypatch, "deploy", "deploy")
    invoke(["deploy", "LAYOUT", "--name", "torchserve", "--storage-uri", "pvc://leeway", "--predictor-timeout", "30",
            "--wait-timeout", "5"], files)
    assert deploy.calls[0]["render_options"] == {"timeout": 30}
    assert deploy.calls[0]["timeout"] == 5


def test_deploy_refuses_a_predictor_timeout_for_manifests(monkeypatch, files) -> None:
    deploy = _record(monkeypatch, "deploy", "deploy")
    result = invoke(["deploy", "MANIFEST", "--predictor-timeout", "30"], files)
    assert result.exit_code == 2 and "apply to a LAYOUT" in result.stderr
    assert deploy.calls == []
