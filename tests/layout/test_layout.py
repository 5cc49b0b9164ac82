from __future__ import annotations

import json
import zipfile
from pathlib import Path

import pytest

from toolkit import ArchiveError, LayoutError
from toolkit._build import build
from toolkit._layout import inspect, parse_properties, read_archive, read_layout


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("a=1\nb = 2 \n", {"a": "1", "b": "2"}),
        ("# comment\n! also\n\n  c:3\n", {"c": "3"}),
        ("d 4\n", {"d": "4"}),
        ("e=x\\\n   y\n", {"e": "xy"}),
        ("f=ends with backslash\\\\\ng=1\n", {"f": "ends with backslash\\\\", "g": "1"}),
        ("url=http://0.0.0.0:8085\n", {"url": "http://0.0.0.0:8085"}),
        ('s={"a":{"b":1}}\n', {"s": '{"a":{"b":1}}'}),
        ("h=1\nh=2\n", {"h": "2"}),
        ("empty=\n", {"empty": ""}),
    ],
)
def test_parse_properties_like_java(text: str, expected: dict[str, str]) -> None:
    assert parse_properties(text) == expected


def _layout(tmp_path: Path, config: str) -> Path:
    (tmp_path / "config").mkdir()
    (tmp_path / "config/config.properties").write_text(config)
    return tmp_path


def test_snapshot_problems_are_collected_not_raised(tmp_path: Path) -> None:
    layout = read_layout(_layout(tmp_path, 'model_snapshot={"models": {"a": "nope"}}\n'))
    assert layout.entries == [] and "must map a version" in layout.problems[0]


def test_wrong_level_hints(tmp_path: Path) -> None:
    (tmp_path / "l").mkdir()
    layout = _layout(tmp_path / "l", "a=1\n")
    with pytest.raises(LayoutError) as err:
        read_layout(layout / "config")
    assert "point at the layout folder itself" in str(err.value)
    with pytest.raises(LayoutError, match="is not a folder"):
        read_layout(tmp_path / "missing")


def test_read_archive_errors(tmp_path: Path) -> None:
    plain = tmp_path / "plain.mar"
    with zipfile.ZipFile(plain, "w") as zf:
        zf.writestr("handler.py", "")
    with pytest.raises(ArchiveError, match="not a TorchServe model archive"):
        read_archive(plain)
    with pytest.raises(ArchiveError, match="does not exist"):
        read_archive(tmp_path / "none.mar")


def test_inspection_and_its_models_as_dicts(tensor_spec, tmp_path: Path) -> None:
    built = build(tensor_spec(labels={"team": "ml"}, class_names=["a", "b"]), tmp_path / "layout")
    found = inspect(built.layout)
    data = json.loads(json.dumps(found.to_dict()))
    assert data["path"] == str(built.layout) and data["kind"] == "layout"
    assert data["properties"] == found.properties and data["properties"]["model_store"] == "/mnt/models/model-store"
    [model] = data["models"]
    assert model == found.models[0].to_dict()
    assert model["name"] == "lin" and model["archive"] == str(built.archive) and model["size"] == built.archive_size
    assert model["labels"] == {"team": "ml"} and model["class_names"] == ["a", "b"] and model["task"] == "tensor"
    assert model["settings"]["marName"] == "lin.mar" and model["built_with"]["python"]
    assert model["largest"] == [{"file": n, "bytes": b} for n, b in found.models[0].largest] != []
    assert set(model) >= {"version", "handler", "archive_model_name", "metadata", "content_size", "files"}
    archive = json.loads(json.dumps(inspect(built.archive).to_dict()))
    assert archive["kind"] == "archive" and archive["properties"] is None and archive["models"][0]["settings"] is None


def test_layout_and_archive_as_dicts(tensor_spec, torchscript_model: Path, tmp_path: Path) -> None:
    built = build(tensor_spec(), tmp_path / "layout")
    layout = json.loads(json.dumps(read_layout(built.layout).to_dict()))
    assert layout["path"] == str(built.layout) and layout["archives"] == [str(built.archive)]
    assert layout["entries"] == [{"name": "lin", "version": "1.0",
                                  "settings": layout["snapshot"]["models"]["lin"]["1.0"]}]
    assert layout["properties"]["inference_address"] == "http://127.0.0.1:8085" and layout["problems"] == []
    archive = json.loads(json.dumps(read_archive(built.archive).to_dict()))
    assert archive["manifest"]["model"]["modelName"] == "lin" and archive["build_info"]["task"] == "tensor"
    size = torchscript_model.stat().st_size
    weights = [m for m in archive["members"] if m["name"] == "model/linear.pt"]
    assert weights == [{"name": "model/linear.pt", "size": size, "compressed": size, "stored": True}]
