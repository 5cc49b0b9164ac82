"""Test what ships: the sdist and the wheel carry handlers/ and templates/, and an installed wheel builds a layout."""

from __future__ import annotations

import os
import subprocess
import sys
import tarfile
import venv
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def dists(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    out = tmp_path_factory.mktemp("dist")
    # --no-isolation: hatchling is a dev dependency, so no index is needed to build
    subprocess.run([sys.executable, "-m", "build", "--no-isolation", "--sdist", "--wheel", "--outdir", str(out),
                    str(REPO)], check=True, capture_output=True, text=True)
    return {"wheel": next(out.glob("*.whl")), "sdist": next(out.glob("*.tar.gz"))}


def test_wheel_contents(dists: dict[str, Path]) -> None:
    names = zipfile.ZipFile(dists["wheel"]).namelist()
    handlers = sorted(p.name for p in (REPO / "handlers").glob("*.py"))
    # templates/ has subfolders (templates/image/): compare paths relative to it
    templates = sorted(p.relative_to(REPO / "templates").as_posix() for p in (REPO / "templates").rglob("*")
                       if p.is_file() and "__pycache__" not in p.parts)
    assert sorted(n.rsplit("/", 1)[1] for n in names if n.startswith("toolkit/_bundled/handlers/")) == handlers
    assert sorted(n.removeprefix("toolkit/_bundled/templates/") for n in names
                  if n.startswith("toolkit/_bundled/templates/")) == templates
    assert "toolkit/_cli/__init__.py" in names
    stray = [n for n in names if "__pycache__" in n or n.startswith(("tests/", "samples/", "handlers/"))
             or n.endswith((".pyc", ".mar", ".safetensors"))]
    assert stray == []
    metadata = next(n for n in names if n.endswith("entry_points.txt"))
    assert "mar-build = toolkit._cli:main" in zipfile.ZipFile(dists["wheel"]).read(metadata).decode()


def test_sdist_contents(dists: dict[str, Path]) -> None:
    names = tarfile.open(dists["sdist"]).getnames()
    root = names[0].split("/")[0]
    for needed in ("handlers/entry.py", "handlers/base.py", "templates/config.properties.jinja", "pyproject.toml",
                   "README.md", "Makefile"):
        assert f"{root}/{needed}" in names, needed
    assert not [n for n in names if "/model/" in n and n.startswith(f"{root}/samples/")]
    assert not [n for n in names if "__pycache__" in n or n.endswith(".pyc")]


def test_installed_wheel_builds_a_layout(dists: dict[str, Path], tmp_path: Path) -> None:
    """A fresh venv with only the wheel (and its core dependencies) finds its handlers and templates."""
    import torch

    env_dir = tmp_path / "venv"
    venv.create(env_dir, with_pip=True)
    py = env_dir / "bin" / "python"
    subprocess.run([str(py), "-m", "pip", "install", "-q", "-c", str(REPO / "constraints.txt"), str(dists["wheel"])],
                   check=True, capture_output=True, text=True)
    model = tmp_path / "linear.pt"
    torch.jit.script(torch.nn.Linear(2, 2)).save(str(model))
    cli = env_dir / "bin" / "mar-build"
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    run = {"cwd": tmp_path, "env": env, "capture_output": True, "text": True}
    init = subprocess.run([str(cli), "init", "tensor", "m", "--model", str(model), "--name", "lin"], **run)
    assert init.returncode == 0, init.stderr
    built = subprocess.run([str(cli), "build", "m", "-o", "layout"], **run)
    assert built.returncode == 0, built.stderr
    checked = subprocess.run([str(cli), "check", "layout"], **run)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    where = subprocess.run([str(py), "-c", "import toolkit._resources as r; print(r.handlers_dir())"], **run)
    assert "site-packages/toolkit/_bundled/handlers" in where.stdout
    assert zipfile.ZipFile(tmp_path / "layout/model-store/lin.mar").read("mar_build_entry.py") == \
        (REPO / "handlers/entry.py").read_bytes()
