"""The v2 metadata rule (toolkit/_v2_metadata.py) per task, against the handlers it describes and on real archives.

The rule lives apart from the handlers (the TorchServe path's wrapper must not import torch); these tests hold the
two together: what the metadata says a model takes is what its handler class accepts, and what it answers is what
the handler's v2 output gives.
"""

from __future__ import annotations

import json
import zipfile
from pathlib import Path
from typing import Any

import pytest
from serve_support import FIXTURES, TinyModel, archive

from toolkit._build.builder import build
from toolkit._layout import read_archive
from toolkit._spec.parse import parse_spec
from toolkit._v2_metadata import (
    INPUT_NAME,
    OUTPUT_NAME,
    TORCH_DATATYPES,
    V2Signature,
    archive_v2_signature,
    v2_signature,
)

TASK_CLASSES = {
    "text-classification": ("handlers.text_classification", "TextClassificationHandler"),
    "token-classification": ("handlers.token_classification", "TokenClassificationHandler"),
    "embeddings": ("handlers.embeddings", "EmbeddingsHandler"),
    "image-classification": ("handlers.image_classification", "ImageClassificationHandler"),
    "tensor": ("handlers.tensor", "TensorHandler"),
}


def _no_members(_: str) -> bytes | None:
    return None


def _handler_class(task: str) -> Any:
    import importlib

    module, name = TASK_CLASSES[task]
    return getattr(importlib.import_module(module), name)


def test_every_task_of_the_handlers_has_a_rule() -> None:
    from handlers.entry import TASK_MODULES

    assert sorted(TASK_MODULES) == sorted(TASK_CLASSES)
    for task in TASK_MODULES:
        signature = v2_signature({"task": task, "model": "model"}, _no_members)
        assert len(signature.inputs) == 1 and len(signature.outputs) == 1, task


@pytest.mark.parametrize("task", sorted(TASK_CLASSES))
def test_the_rule_says_what_the_handler_class_takes_and_answers(task: str) -> None:
    cls = _handler_class(task)
    signature = v2_signature({"task": task, "model": "model", "options": {"shape": [4]}}, _no_members)
    [given], [answered] = signature.inputs, signature.outputs
    assert given["name"] == INPUT_NAME and answered["name"] == OUTPUT_NAME == cls.v2_output_name
    assert given["datatype"] in cls.v2_datatypes
    if cls.v2_rank is not None:
        assert len(given["shape"]) == cls.v2_rank
    assert given["shape"][0] == -1  # the instances
    if cls.v2_json_output:
        assert (answered["datatype"], answered["shape"]) == ("BYTES", [-1])


def test_text_and_image_tasks() -> None:
    for task in ("text-classification", "token-classification", "image-classification"):
        assert v2_signature({"task": task}, _no_members) == V2Signature(
            [{"name": "input-0", "datatype": "BYTES", "shape": [-1]}],
            [{"name": "output-0", "datatype": "BYTES", "shape": [-1]}],
        )


def test_embeddings_width_comes_from_the_models_config() -> None:
    files = {"model/config.json": json.dumps({"hidden_size": 384}).encode()}
    signature = v2_signature({"task": "embeddings", "model": "model"}, files.get)
    assert signature.outputs == [{"name": "output-0", "datatype": "FP32", "shape": [-1, 384]}]
    distil = {"model/config.json": json.dumps({"dim": 768}).encode()}
    assert v2_signature({"task": "embeddings", "model": "model"}, distil.get).outputs[0]["shape"] == [-1, 768]
    assert v2_signature({"task": "embeddings", "model": "model"}, _no_members).outputs[0]["shape"] == [-1, -1]
    broken = {"model/config.json": b"{not json"}
    assert v2_signature({"task": "embeddings", "model": "model"}, broken.get).outputs[0]["shape"] == [-1, -1]


@pytest.mark.parametrize(
    ("options", "class_names", "given", "answered"),
    [
        ({}, None, ("FP32", [-1, -1]), ("FP32", [-1, -1])),
        ({"shape": [3, 2]}, None, ("FP32", [-1, 3, 2]), ("FP32", [-1, -1])),
        ({"dtype": "int64", "shape": [8]}, None, ("INT64", [-1, 8]), ("FP32", [-1, -1])),
        ({"dtype": "float64"}, None, ("FP64", [-1, -1]), ("FP64", [-1, -1])),
        ({"dtype": "bool"}, None, ("BOOL", [-1, -1]), ("FP32", [-1, -1])),
        ({"output": "argmax"}, None, ("FP32", [-1, -1]), ("INT64", [-1])),
        ({"output": "argmax"}, ["cat", "dog"], ("FP32", [-1, -1]), ("BYTES", [-1])),
    ],
)
def test_tensor_task(options: dict[str, Any], class_names: list[str] | None, given: tuple[str, list[int]],
                     answered: tuple[str, list[int]]) -> None:
    info = {"task": "tensor", "options": options, "class_names": class_names}
    signature = v2_signature(info, _no_members)
    assert [(t["name"], t["datatype"], t["shape"]) for t in signature.inputs] == [("input-0", *given)]
    assert [(t["name"], t["datatype"], t["shape"]) for t in signature.outputs] == [("output-0", *answered)]


def test_tensor_datatypes_are_the_ones_the_handler_answers() -> None:
    import torch

    from handlers import v2 as handler_v2

    for name, datatype in TORCH_DATATYPES.items():
        dtype = getattr(torch, name)
        assert handler_v2._TORCH[dtype] == datatype, name


def test_custom_and_stock_handlers_say_nothing() -> None:
    assert v2_signature(None, _no_members) == V2Signature([], [])
    assert v2_signature({"task": "custom", "custom_handler": "h.py"}, _no_members) == V2Signature([], [])


def test_real_archives_answer_their_signature(tiny_model: TinyModel, tmp_path: Path) -> None:
    spec = parse_spec({"name": "shaped", "task": "tensor", "model": str(tiny_model.path),
                       "options": {"shape": [4], "output": "argmax"}, "class_names": ["a", "b", "c"]},
                      base=tiny_model.path.parent)
    layout = build(spec, tmp_path / "layout").layout
    mar = layout / "model-store" / "shaped.mar"
    expected = V2Signature([{"name": "input-0", "datatype": "FP32", "shape": [-1, 4]}],
                           [{"name": "output-0", "datatype": "BYTES", "shape": [-1]}])
    assert read_archive(mar).build_info is not None
    assert archive_v2_signature(mar) == expected
    stock = archive(FIXTURES / "echo_handler.py", "echo", tmp_path / "stock")
    with zipfile.ZipFile(stock) as zf:
        assert "mar_build.json" not in zf.namelist()
    assert archive_v2_signature(stock) == V2Signature([], [])
    assert archive_v2_signature(tmp_path / "missing.mar") == V2Signature([], [])
