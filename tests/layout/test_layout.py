from __future__ import annotations

import zipfile
from pathlib import Path

import pytest

from toolkit import ArchiveError, LayoutError
from toolkit._layout import parse_properties, read_archive, read_layout


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
