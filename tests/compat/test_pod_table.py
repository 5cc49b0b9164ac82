"""The table of what each runtime image ships (toolkit/_pod/images.py), and that it agrees with the project."""

from __future__ import annotations

from pathlib import Path

import pytest

from toolkit import SpecError
from toolkit._pod import DEFAULT_TAG, PYTHON_BASE_IMAGE, TAGS, image_facts
from toolkit._render.runtimes import TORCHSERVE_DEFAULT_TAG

REPO = Path(__file__).resolve().parents[2]


def _version(text: str) -> tuple[int, ...]:
    return tuple(int(p) for p in text.split("."))


def test_the_default_image_is_kserves_090_with_a_2023_transformers() -> None:
    row = image_facts("torchserve")
    assert (row.tag, row.image) == (DEFAULT_TAG, "pytorch/torchserve-kfs:0.9.0") == ("0.9.0", row.image)
    assert (row.python, row.torch, row.torchvision, row.pillow) == ("3.9", "2.1.0", "0.16.0", "10.0.1")
    assert (row.transformers, row.tokenizers, row.kserve, row.torchserve) == ("4.34.0", "0.14.1", "0.11.1", "0.9.0")
    assert row.python_tuple == (3, 9)
    assert DEFAULT_TAG == TORCHSERVE_DEFAULT_TAG  # render's default tag and the table's are the same image


def test_every_row_cites_its_source_and_moves_forward() -> None:
    assert TAGS == ("0.8.2", "0.9.0", "0.10.0", "0.11.0", "0.11.1", "0.12.0")
    rows = [image_facts("torchserve", tag) for tag in TAGS]
    for row in rows:
        assert row.torchserve == row.tag and row.python == "3.9"
        assert f"pytorch/serve@v{row.tag}" in row.source and "kubernetes/kserve/Dockerfile" in row.source
        assert row.packages["torch"] == row.torch and row.packages["numpy"] == "1.24.3"
    for older, newer in zip(rows, rows[1:], strict=False):
        assert older.released < newer.released
        for lib in ("torch", "transformers", "tokenizers", "kserve"):
            assert _version(getattr(older, lib)) <= _version(getattr(newer, lib)), (lib, older.tag, newer.tag)


def test_gpu_tags_ship_the_same_libraries_and_unknown_tags_say_which_are_known() -> None:
    assert image_facts("torchserve", "0.12.0-gpu") == image_facts("torchserve", "0.12.0")
    with pytest.raises(SpecError, match="runtime_version '0.7.0'") as err:
        image_facts("torchserve", "0.7.0")
    assert "0.8.2, 0.9.0" in (err.value.hint or "") and "mar-build image" in (err.value.hint or "")
    with pytest.raises(SpecError, match="torchserve or python"):
        image_facts("triton")


def _constraints() -> dict[str, str]:
    pins: dict[str, str] = {}
    for line in (REPO / "constraints.txt").read_text().splitlines():
        if "==" in line and not line.startswith("#"):
            name, version = line.split("==", 1)
            pins[name.strip().lower().replace("_", "-")] = version.split("+")[0].strip()
    return pins


def test_the_python_runtime_row_is_the_projects_own_pins() -> None:
    row = image_facts("python", "anything")
    assert (row.image, row.python, row.torchserve) == (PYTHON_BASE_IMAGE, "3.11", None)
    assert PYTHON_BASE_IMAGE == "python:3.11-slim-bookworm"
    pins = _constraints()
    for name, version in row.packages.items():
        assert pins[name] == version, f"{name}: the table says {version}, constraints.txt {pins[name]}"
