from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from toolkit import SpecError, load_spec
from toolkit._build.builder import build
from toolkit._cli import cli
from toolkit._layout.summary import inspect
from toolkit._spec.parse import TASKS
from toolkit._spec.scaffold import init


def test_inspect_layout_and_archive(tensor_spec, tmp_path: Path) -> None:
    spec = tensor_spec(labels={"team": "ml"}, metadata={"dataset": "toy"}, class_names=["a", "b"])
    result = build(spec, tmp_path / "layout")
    layout = inspect(result.layout)
    assert layout.kind == "layout" and [m.name for m in layout.models] == ["lin"]
    model = layout.models[0]
    assert (model.version, model.task, model.handler) == ("1.0", "tensor", "mar_build_entry.py")
    assert model.labels == {"team": "ml"} and model.metadata == {"dataset": "toy"}
    assert model.class_names == ["a", "b"] and model.settings and model.settings["batchSize"] == 16
    assert model.size == result.archive_size and model.largest[0][1] >= model.largest[-1][1]
    archive = inspect(result.archive)
    assert archive.kind == "archive" and archive.models[0].settings is None
    out = CliRunner().invoke(cli, ["inspect", str(result.layout)])
    assert out.exit_code == 0, out.output
    assert "POST /v1/models/lin:predict" in out.output and "team=ml" in out.output
    data = json.loads(CliRunner().invoke(cli, ["inspect", "--json", str(result.archive)]).output)
    assert data["models"][0]["name"] == "lin"


@pytest.mark.parametrize("task", [t for t in TASKS if t != "custom"])
def test_init_writes_a_spec_that_loads(task: str, tmp_path: Path, hf_folder: Path, torchscript_model: Path) -> None:
    model = torchscript_model if task in ("tensor", "image-classification") else hf_folder
    result = init(task, tmp_path / "m", model=model, name="my-model")
    spec = load_spec(result.spec)
    assert spec.task == task and spec.name == "my-model" and spec.model == model.resolve()
    assert spec.kserve.name == "my-model"
    with pytest.raises(SpecError, match="already exists"):
        init(task, tmp_path / "m", model=model)


def test_init_custom_scaffold_compiles_and_builds(tmp_path: Path) -> None:
    result = init("custom", tmp_path / "Custom Thing")
    assert result.handler is not None
    source = result.handler.read_text()
    compile(source, str(result.handler), "exec")
    spec = load_spec(result.spec)
    assert spec.name == "Custom-Thing" and spec.handler == result.handler.resolve()
    built = build(spec, tmp_path / "layout")
    assert built.models == ["Custom-Thing"]


def test_init_rejects_bad_names(tmp_path: Path) -> None:
    with pytest.raises(SpecError, match="not a valid model name"):
        init("tensor", tmp_path / "x", name="has space")


def test_cli_build_with_overrides(tensor_spec, tmp_path: Path) -> None:
    runner = CliRunner()
    out = runner.invoke(cli, ["build", str(tensor_spec()), "-o", str(tmp_path / "l"), "--name", "renamed",
                              "--batch-size", "4", "--json"])
    assert out.exit_code == 0, out.output
    [result] = json.loads(out.output)
    assert result["name"] == "renamed" and result["models"] == ["renamed"]
    assert '"batchSize":4' in (tmp_path / "l/config/config.properties").read_text()


def test_cli_errors_are_one_clean_message(tmp_path: Path) -> None:
    (tmp_path / "mar.yaml").write_text("name: x\ntask: tensr\nmodel: nowhere\n")
    out = CliRunner().invoke(cli, ["build", str(tmp_path)])
    assert out.exit_code == 1
    assert "error:" in out.output and "did you mean 'tensor'?" in out.output
    assert "Traceback" not in out.output
