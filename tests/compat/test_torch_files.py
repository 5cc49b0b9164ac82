"""What a torch file needs from the torch that loads it, read from the records torch writes (toolkit/_pod/torchfiles).

The image's torch 2.1 cannot be installed here cheaply, so the files written by today's torch are read as files:
the format version record, the dtypes in the pickle, a torch.export program."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import pytest
import torch

from toolkit._pod import MAX_FILE_FORMAT, read_torch_file


def _in_archive(tmp_path: Path, name: str, data: bytes) -> zipfile.ZipFile:
    mar = tmp_path / "m.mar"
    with zipfile.ZipFile(mar, "w") as zf:
        zf.writestr(name, data)
    return zipfile.ZipFile(mar)


def _saved(obj: object) -> bytes:
    buf = io.BytesIO()
    torch.save(obj, buf)
    return buf.getvalue()


def test_a_state_dict_of_float32_reads_in_every_torch_2(tmp_path: Path) -> None:
    with _in_archive(tmp_path, "model/weights.pt", _saved(torch.nn.Linear(2, 2).state_dict())) as zf:
        found = read_torch_file(zf, "model/weights.pt")
    assert found is not None and (found.kind, found.format_version, found.dtypes) == ("state", 3, ())
    assert found.needs() is None


@pytest.mark.parametrize(("dtype", "needs"), [("uint16", "2.3"), ("float8_e4m3fn", "2.1"), ("float8_e8m0fnu", "2.7")])
def test_newer_dtypes_name_the_torch_they_need(tmp_path: Path, dtype: str, needs: str) -> None:
    data = _saved({"w": torch.zeros(2, dtype=getattr(torch, dtype)), "b": torch.zeros(2)})
    with _in_archive(tmp_path, "w.pt", data) as zf:
        found = read_torch_file(zf, "w.pt")
    assert found is not None and found.dtypes == (dtype,) and found.needs() == needs


def test_torchscript_and_its_format_version(tmp_path: Path, torchscript_model: Path) -> None:
    data = torchscript_model.read_bytes()
    with _in_archive(tmp_path, "linear.pt", data) as zf:
        found = read_torch_file(zf, "linear.pt")
    assert found is not None and found.kind == "torchscript"
    assert found.format_version is not None and found.format_version <= MAX_FILE_FORMAT
    # As a torch with a newer file format would write it: the version record above what 2.x reads.
    inner = zipfile.ZipFile(io.BytesIO(data))
    newer = io.BytesIO()
    with zipfile.ZipFile(newer, "w") as out:
        for item in inner.infolist():
            body = inner.read(item)
            out.writestr(item, b"11\n" if item.filename.endswith("version") else body)
    with _in_archive(tmp_path, "linear.pt", newer.getvalue()) as zf:
        assert read_torch_file(zf, "linear.pt").format_version == 11  # type: ignore[union-attr]


def test_a_torch_export_program_and_files_that_are_not_torch(tmp_path: Path) -> None:
    class Double(torch.nn.Module):
        def forward(self, x):  # type: ignore[no-untyped-def]
            return x * 2

    path = tmp_path / "model.pt2"
    torch.export.save(torch.export.export(Double(), (torch.zeros(2),)), str(path))
    with _in_archive(tmp_path, "model.pt2", path.read_bytes()) as zf:
        assert read_torch_file(zf, "model.pt2").kind == "export"  # type: ignore[union-attr]
    with _in_archive(tmp_path, "notes.bin", b"plain bytes") as zf:
        assert read_torch_file(zf, "notes.bin") is None
