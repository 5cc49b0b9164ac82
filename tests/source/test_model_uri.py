"""The MLflow model URI grammar, `model:` taking it in mar.yaml and --model, and mlflow kept out of light imports."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from toolkit._errors import SpecError
from toolkit._source import ModelUri, is_model_uri, parse_model_uri
from toolkit._spec.parse import load_spec, parse_spec

RUN = "0123456789abcdef0123456789abcdef"


@pytest.mark.parametrize(("uri", "expected"), [
    ("models:/intent/3", ModelUri("models:/intent/3", "version", name="intent", version="3")),
    ("models:/intent@champion", ModelUri("models:/intent@champion", "alias", name="intent", alias="champion")),
    ("models:/team.intent-v2@prod_1", ModelUri("models:/team.intent-v2@prod_1", "alias", name="team.intent-v2",
                                               alias="prod_1")),
    (f"runs:/{RUN}/model", ModelUri(f"runs:/{RUN}/model", "run", run_id=RUN, path="model")),
    (f"runs:/{RUN}/nested/model/", ModelUri(f"runs:/{RUN}/nested/model/", "run", run_id=RUN, path="nested/model")),
])
def test_the_three_forms_parse(uri: str, expected: ModelUri) -> None:
    assert is_model_uri(uri)
    assert parse_model_uri(uri) == expected


@pytest.mark.parametrize(("uri", "hint"), [
    ("models:/intent", "takes a version number"),
    ("models:/intent/", "takes a version number"),
    ("models:/intent/0", "takes a version number"),
    ("models:/intent/Production", "models:/intent@production"),
    ("models:/intent@", "alias made of"),
    ("models:/a/b/3", "takes a version number"),
    ("runs:/not-a-run/model", "32-hex-digit run id"),
    (f"runs:/{RUN}", "32-hex-digit run id"),
])
def test_malformed_uris_name_the_form_they_need(uri: str, hint: str) -> None:
    with pytest.raises(SpecError) as err:
        parse_model_uri(uri)
    assert uri in str(err.value) and hint in str(err.value)


def test_paths_are_not_model_uris() -> None:
    for value in ("./model", "models/intent/3", "s3://bucket/model", "/models:/x", None, 3):
        assert not is_model_uri(value)


def test_model_key_takes_a_uri_and_needs_no_folder(tmp_path: Path) -> None:
    spec = parse_spec({"name": "intent", "task": "text-classification", "model": "models:/intent@prod"},
                      base=tmp_path)
    assert spec.model_uri == "models:/intent@prod" and spec.model is None and spec.provenance is None


def test_a_bad_uri_in_mar_yaml_names_the_file_and_key(write_spec) -> None:
    folder = write_spec(name="intent", task="text-classification", model="models:/intent/latest")
    with pytest.raises(SpecError) as err:
        load_spec(folder)
    assert str(folder / "mar.yaml") in str(err.value) and "model:" in str(err.value)


def test_model_uri_and_provenance_are_not_spec_keys(tmp_path: Path) -> None:
    for key in ("model_uri", "provenance"):
        with pytest.raises(SpecError, match="unknown key"):
            parse_spec({"name": "m", "task": "tensor", "model": "models:/m/1", key: "x"}, base=tmp_path)


def test_the_override_flag_takes_a_uri(tensor_spec) -> None:
    folder = tensor_spec()
    spec = load_spec(folder, {"model": "models:/lin/2"})
    assert spec.model_uri == "models:/lin/2" and spec.model is None


def test_build_cli_passes_a_uri_through_and_still_checks_paths(tensor_spec, monkeypatch: pytest.MonkeyPatch) -> None:
    from toolkit._cli.build import build_command

    folder = tensor_spec()
    missing = CliRunner().invoke(build_command, [str(folder), "--model", "no/such/file.pt"])
    assert missing.exit_code == 2 and "does not exist" in missing.output
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    # The URI reaches the resolver (which needs a tracking server): the option did not refuse it as a path.
    result = CliRunner().invoke(build_command, [str(folder), "--model", "models:/lin/2", "-o", str(folder / "out")])
    assert isinstance(result.exception, SpecError), result.output
    assert "MLFLOW_TRACKING_URI is not set" in str(result.exception)
    assert not (folder / "out").exists()


def test_light_imports_leave_mlflow_alone() -> None:
    code = (
        "import sys, toolkit, toolkit._spec, toolkit._source, toolkit._build, toolkit._layout, toolkit._cli.build\n"
        "toolkit._source.parse_model_uri('models:/m/1')\n"
        "assert 'mlflow' not in sys.modules, 'mlflow was imported'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


def test_init_writes_a_spec_naming_the_uri(tmp_path: Path) -> None:
    from toolkit._cli.build import init_command

    result = CliRunner().invoke(init_command, ["text-classification", str(tmp_path / "intent"), "--model",
                                               "models:/intent@champion", "--name", "intent"])
    assert result.exit_code == 0, result.output
    spec = load_spec(tmp_path / "intent")
    assert spec.model_uri == "models:/intent@champion" and spec.model is None
    bad = CliRunner().invoke(init_command, ["tensor", str(tmp_path / "bad"), "--model", "models:/intent"])
    assert isinstance(bad.exception, SpecError) and "takes a version number" in str(bad.exception)
