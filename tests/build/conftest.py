"""Small real models and spec files for build/check/inspect tests."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml


@pytest.fixture(scope="session")
def torchscript_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real TorchScript file: Linear(3, 2) with fixed weights."""
    import torch

    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("ts") / "linear.pt"
    torch.jit.script(torch.nn.Linear(3, 2)).save(str(path))
    return path


@pytest.fixture
def write_spec(tmp_path: Path):
    """write_spec(folder_name, **keys) -> the folder holding a mar.yaml with those keys."""

    def write(folder: str = "spec", **keys: object) -> Path:
        d = tmp_path / folder
        d.mkdir(parents=True, exist_ok=True)
        (d / "mar.yaml").write_text(yaml.safe_dump(keys, sort_keys=False), encoding="utf-8")
        return d

    return write


@pytest.fixture
def tensor_spec(write_spec, torchscript_model: Path):
    def make(folder: str = "spec", **keys: object) -> Path:
        values = {"name": "lin", "task": "tensor", "model": str(torchscript_model), **keys}
        return write_spec(folder, **values)

    return make


@pytest.fixture
def hf_folder(tmp_path: Path) -> Path:
    """A complete-looking HF folder (config, weights, tokenizer) for file checks that do not load the model."""
    d = tmp_path / "hf"
    d.mkdir()
    (d / "config.json").write_text('{"model_type": "bert"}')
    (d / "model.safetensors").write_bytes(b"\0" * 1024)
    (d / "tokenizer.json").write_text("{}")
    (d / "vocab.txt").write_text("[PAD]\n")
    return d
