"""What ``GET /v2/models/M`` answers for a model: its v2 input and output tensors, read from the archive.

Both runtimes answer the same metadata for the same archive (kserve's dataplane asks the Model's
``get_input_types()``/``get_output_types()``). The rule follows what the mar-build handlers take and answer
(handlers/base.py ``v2_datatypes``, ``v2_rank``, ``v2_output_name``, ``v2_json_output`` and the tasks' overrides;
tests/serve/test_v2_signature.py holds the two together, since this module must not import the handlers, which
import torch):

    input  "input-0" (the handlers take any name; tritonclient's users name it so), the instance dimension first:
      text tasks        BYTES [-1]          one UTF-8 text per row
      image-classification BYTES [-1]       one encoded image per row
      tensor            options.dtype's datatype, [-1, *options.shape] ([-1, -1] without a shape: rank 2 at least)
    output "output-0":
      text/token/image classification  BYTES [-1]  (labels, or one JSON text per prediction)
      embeddings        FP32 [-1, D]  (D: the model's config.json hidden size where the archive holds it, else -1)
      tensor            the rows as the model answers them: FP32 (FP64 for a float64 model) [-1, -1]; with
                        ``options.output: argmax`` BYTES [-1] (class names) or INT64 [-1]

A variable dimension is -1. An archive without mar_build.json (a stock TorchServe handler) or with a custom handler
answers empty lists, as kserve does for a model that does not say: nothing here can know what such a handler takes.
"""

from __future__ import annotations

import json
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ._errors import ArchiveError
from ._layout import read_archive

INPUT_NAME = "input-0"
OUTPUT_NAME = "output-0"  # handlers/base.py BaseHandler.v2_output_name

TEXT_TASKS = ("text-classification", "token-classification", "embeddings")
LABEL_TASKS = ("text-classification", "token-classification", "image-classification")
# options.dtype (a torch dtype name) -> the v2 datatype the tensor handler is sent and answers (handlers/v2.py _TORCH)
TORCH_DATATYPES = {
    "bool": "BOOL", "uint8": "UINT8", "int8": "INT8", "int16": "INT16", "short": "INT16", "int32": "INT32",
    "int": "INT32", "int64": "INT64", "long": "INT64", "float16": "FP16", "half": "FP16", "bfloat16": "FP32",
    "float32": "FP32", "float": "FP32", "float64": "FP64", "double": "FP64",
}  # fmt: skip
# The keys transformers' configs use for the width of the hidden states (BERT-likes, DistilBERT, T5/BART, GPT-2).
_WIDTH_KEYS = ("hidden_size", "dim", "d_model", "n_embd")

Member = Callable[[str], bytes | None]  # an archive member's bytes by name, None when it is not there


@dataclass(frozen=True)
class V2Signature:
    """A model's v2 metadata tensors: each ``{"name", "datatype", "shape"}``."""

    inputs: list[dict[str, Any]] = field(default_factory=list)
    outputs: list[dict[str, Any]] = field(default_factory=list)


def _tensor(name: str, datatype: str, shape: list[int]) -> dict[str, Any]:
    return {"name": name, "datatype": datatype, "shape": shape}


def v2_signature(build_info: dict[str, Any] | None, member: Member) -> V2Signature:
    """The rule: mar_build.json (None for a stock-handler archive) and the archive's files -> the v2 metadata."""
    if not build_info:
        return V2Signature()
    task = build_info.get("task")
    options = build_info.get("options") or {}
    if task in TEXT_TASKS or task == "image-classification":
        inputs = [_tensor(INPUT_NAME, "BYTES", [-1])]
        if task == "embeddings":
            return V2Signature(inputs, [_tensor(OUTPUT_NAME, "FP32", [-1, _width(build_info, member)])])
        return V2Signature(inputs, [_tensor(OUTPUT_NAME, "BYTES", [-1])])
    if task == "tensor":
        return _tensor_signature(options, bool(build_info.get("class_names")))
    return V2Signature()  # custom (its own handler class) or a task this version does not know


def _tensor_signature(options: dict[str, Any], has_class_names: bool) -> V2Signature:
    dtype = str(options.get("dtype") or "float32").removeprefix("torch.")
    datatype = TORCH_DATATYPES.get(dtype, "FP32")
    shape = options.get("shape")
    sample = [int(n) for n in shape] if isinstance(shape, list) else [-1]
    inputs = [_tensor(INPUT_NAME, datatype, [-1, *sample])]
    if options.get("output") == "argmax":
        return V2Signature(inputs, [_tensor(OUTPUT_NAME, "BYTES" if has_class_names else "INT64", [-1])])
    answered = datatype if datatype in ("FP16", "FP64") else "FP32"  # a float model answers its own float type
    return V2Signature(inputs, [_tensor(OUTPUT_NAME, answered, [-1, -1])])


def _width(build_info: dict[str, Any], member: Member) -> int:
    """The embedding width from the model's config.json inside the archive, -1 when it does not say."""
    model = build_info.get("model")
    raw = member(f"{model}/config.json") if isinstance(model, str) else None
    try:
        config = json.loads(raw) if raw else {}
    except (ValueError, UnicodeDecodeError):
        return -1
    for key in _WIDTH_KEYS:
        value = config.get(key) if isinstance(config, dict) else None
        if isinstance(value, int) and value > 0:
            return value
    return -1


def archive_v2_signature(mar: Path) -> V2Signature:
    """The v2 metadata of a .mar (the TorchServe path's wrapper reads the model store); empty when unreadable
    (loading the model reports what is wrong with it)."""
    try:
        info = read_archive(mar)
        with zipfile.ZipFile(mar) as zf:
            names = set(zf.namelist())
            return v2_signature(info.build_info, lambda name: zf.read(name) if name in names else None)
    except (ArchiveError, OSError, zipfile.BadZipFile):
        return V2Signature()


def add_versioned_routes(app: Any, dataplane: Any) -> None:
    """``GET /v2/models/M/versions/V`` and ``.../versions/V/ready`` on a kserve REST app (``FastAPI``, its
    ``DataPlane``), registered before kserve's own, which answer 501 "Model versioning not supported yet". Both
    runtimes serve one version per model name and take any V, as their versioned infer routes do: the answers are
    the unversioned URLs' (a 404 for an unknown model, a 503 for one not ready yet)."""
    from kserve.errors import ModelNotReady
    from kserve.protocol.rest.v2_datamodels import ModelMetadataResponse, ModelReadyResponse

    async def metadata(model_name: str, model_version: str) -> ModelMetadataResponse:
        return ModelMetadataResponse.model_validate(await dataplane.model_metadata(model_name))

    async def ready(model_name: str, model_version: str) -> ModelReadyResponse:
        if not await dataplane.model_ready(model_name):
            raise ModelNotReady(model_name)
        return ModelReadyResponse.model_validate({"name": model_name, "ready": True})

    prefix = "/v2/models/{model_name}/versions/{model_version}"
    app.add_api_route(prefix, metadata, methods=["GET"], response_model=ModelMetadataResponse, tags=["V2"])
    app.add_api_route(f"{prefix}/ready", ready, methods=["GET"], response_model=ModelReadyResponse, tags=["V2"])
