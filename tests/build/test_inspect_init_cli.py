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


def test_init_scaffold_matches_the_golden_files(tmp_path: Path, hf_folder: Path, golden) -> None:
    def masked(text: str) -> str:
        return text.replace(str(tmp_path.resolve()), "<tmp>").replace(str(tmp_path), "<tmp>")

    text = init("text-classification", tmp_path / "bert", model=hf_folder, name="bert")
    golden("init/text-classification.mar.yaml", masked(text.spec.read_text(encoding="utf-8")))
    custom = init("custom", tmp_path / "my-model", name="my-model")
    assert custom.handler is not None
    golden("init/custom.handler.py", masked(custom.handler.read_text(encoding="utf-8")))
    golden("init/custom.mar.yaml", masked(custom.spec.read_text(encoding="utf-8")))
    assert custom.to_dict() == {"spec": str(custom.spec), "handler": str(custom.handler)}
    assert text.to_dict()["handler"] is None


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


def test_cli_build_refuses_two_specs_with_the_same_model_name_before_writing(tensor_spec, tmp_path: Path) -> None:
    """The command used to build each spec on its own, so the second silently replaced the first in the layout;
    build_many refuses the pair before any write, and the command now goes through it."""
    first, second = tensor_spec("one"), tensor_spec("two")
    out = CliRunner().invoke(cli, ["build", str(first), str(second), "-o", str(tmp_path / "l")])
    assert out.exit_code == 1
    assert "two specs name the model 'lin'" in out.stderr and "hint: give one of them another" in out.stderr
    assert not (tmp_path / "l").exists()


def test_cli_build_of_several_specs_needs_one_layout(tensor_spec, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    out = CliRunner().invoke(cli, ["build", str(tensor_spec("one")), str(tensor_spec("two", name="other"))])
    assert out.exit_code == 1
    assert "building several models needs one output layout" in out.stderr
    assert not (tmp_path / "build").exists()


def test_cli_build_two_models_into_one_layout(tensor_spec, tmp_path: Path) -> None:
    out = CliRunner().invoke(cli, ["build", str(tensor_spec("one")), str(tensor_spec("two", name="other")),
                                   "-o", str(tmp_path / "l")])
    assert out.exit_code == 0, out.output
    assert out.stdout.splitlines()[-2].startswith(f"layout {tmp_path / 'l'}: lin, other")


def test_cli_init_json(tmp_path: Path) -> None:
    out = CliRunner().invoke(cli, ["init", "custom", str(tmp_path / "m"), "--json"])
    assert out.exit_code == 0, out.output
    data = json.loads(out.stdout)
    assert data == {"spec": str(tmp_path / "m" / "mar.yaml"), "handler": str(tmp_path / "m" / "handler.py")}
    assert (tmp_path / "m" / "handler.py").is_file()
