"""Drive the handlers as TorchServe does, in-process.

A model_dir is assembled exactly as the extracted archive (mar_build_entry.py, mar_build_handlers/, mar_build.json,
model/), imported under those names, loaded with ``handle(None, context)`` and fed batches built by TorchServe's own
worker code: each request is framed as the Java frontend frames it and decoded by ``ts.protocol.otf_message_handler``
and ``ts.service.Service`` (so bodies arrive as the worker really sees them: parsed JSON, str for text/*, bytearray
otherwise or when JSON failed to parse). The context is a stand-in with only the stable API the handlers may use.
"""

from __future__ import annotations

import importlib
import importlib.util
import io
import json
import shutil
import struct
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

from ts.protocol import otf_message_handler
from ts.service import Service

REPO = Path(__file__).resolve().parents[2]
HANDLERS = REPO / "handlers"


class StandInContext:
    """What the handlers may use of ts.context.Context (0.9.0 and 0.12.0 alike), and a record of what they set."""

    def __init__(self, model_dir: Path, batch_size: int) -> None:
        self.model_name = "m"  # the name the frontend registered (a model_snapshot key); the manifest has its own
        self.manifest = {"model": {"modelName": "m", "modelVersion": "1.0", "handler": "mar_build_entry.py"}}
        self.system_properties = {
            "model_dir": str(model_dir),
            "gpu_id": None,
            "batch_size": batch_size,
            "server_name": "MMS",
            "server_version": "0.12.0",
            "limit_max_image_pixels": True,
        }
        self.headers: list[dict[str, Any]] = []
        self.statuses: dict[int, tuple[int, str]] = {}
        self.content_types: dict[int, str] = {}

    def get_request_header(self, idx: int, key: str) -> Any:
        return self.headers[idx].get(key)

    def set_response_status(self, code: int = 200, phrase: str = "", idx: int = 0) -> None:
        self.statuses[idx] = (code, phrase)

    def set_response_content_type(self, idx: int, value: str) -> None:
        self.content_types[idx] = value


@dataclass
class Call:
    """One HTTP request as the frontend passes it on: body bytes, its MIME type, and the request headers."""

    body: bytes
    content_type: str = "application/json"
    headers: dict[str, str] = field(default_factory=dict)
    name: str = "body"  # the parameter's name: "body" for a plain POST, the field name for a form
    query: dict[str, str] = field(default_factory=dict)  # query parameters: passed on as parameters too


def v1(instances: Any, explain: bool = False) -> Call:
    """POST /v1/models/M:predict (or :explain) with {"instances": instances}."""
    return v1_body(json.dumps({"instances": instances}).encode(), explain=explain)


def v1_body(body: bytes, explain: bool = False) -> Call:
    # The frontend adds the header explain=False on every v1 call and explain=True on :explain (0.9.0 and 0.12.0).
    return Call(body, "application/json", {"explain": "True" if explain else "False"})


def v2(
    inputs: list[dict[str, Any]] | Any, explain: bool = False, content_type: str = "application/json", **keys: Any
) -> Call:
    """POST /v2/models/M/infer (or /explain) with {"inputs": inputs, **keys}; TorchServe 0.12.0 sets the same
    explain header as for v1. ``content_type`` "" is what tritonclient sends (no Content-Type: a bytes body)."""
    body = json.dumps({"inputs": inputs, **keys}).encode()
    return Call(body, content_type, {"explain": "True" if explain else "False"})


def tensor(name: str, shape: list[int], datatype: str, data: Any) -> dict[str, Any]:
    """One v2 input tensor."""
    return {"name": name, "shape": shape, "datatype": datatype, "data": data}


def raw(body: bytes | str | Any, content_type: str = "application/octet-stream") -> Call:
    """POST /predictions/M: bytes as they are, str as UTF-8, anything else as JSON."""
    if isinstance(body, str):
        data = body.encode()
    elif isinstance(body, bytes):
        data = body
    else:
        data, content_type = json.dumps(body).encode(), "application/json"
    return Call(data, content_type)


def _frame(text: bytes) -> bytes:
    return struct.pack("!i", len(text)) + text


class _Conn:
    def __init__(self, data: bytes) -> None:
        self._buffer = io.BytesIO(data)

    def recv(self, size: int) -> bytes:
        return self._buffer.read(size)


def worker_batch(calls: list[Call]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(rows for handle(), request headers per idx), decoded by TorchServe's worker code from the frontend's frames."""
    message = b""
    for number, call in enumerate(calls):
        message += _frame(f"req-{number}".encode())
        for name, value in {"Content-Type": call.content_type, **call.headers}.items():
            message += _frame(name.encode()) + _frame(value.encode())
        message += struct.pack("!i", -1)
        for name, value in call.query.items():  # the frontend adds query parameters first, with no content type
            message += _frame(name.encode()) + _frame(b"") + _frame(value.encode())
        message += _frame(call.name.encode()) + _frame(call.content_type.encode()) + _frame(call.body)
        message += struct.pack("!i", -1)
    message += struct.pack("!i", -1)
    batch = otf_message_handler._retrieve_inference_msg(_Conn(message))
    processors, rows, _ = Service.retrieve_data_for_inference(batch)
    return rows, [processor.get_request_properties() for processor in processors]


@dataclass
class Answer:
    status: int
    body: Any
    phrase: str = ""


class Loaded:
    """A loaded archive: ``batch(*calls)`` runs one server-side batch and returns one Answer per call."""

    def __init__(self, handle: Callable[..., Any], model_dir: Path, batch_size: int, service: Any) -> None:
        self._handle = handle
        self.model_dir = model_dir
        self.batch_size = batch_size
        self.service = service

    def batch(self, *calls: Call) -> list[Answer]:
        rows, headers = worker_batch(list(calls))
        context = StandInContext(self.model_dir, self.batch_size)
        context.headers = headers
        results = self._handle(rows, context)
        assert isinstance(results, list) and len(results) == len(calls)
        answers = []
        for idx, result in enumerate(results):
            status, phrase = context.statuses.get(idx, (200, ""))
            assert isinstance(result, str), f"answer {idx} is {type(result).__name__}, expected JSON text"
            answers.append(Answer(status, json.loads(result), phrase))
        return answers

    def one(self, call: Call) -> Answer:
        return self.batch(call)[0]


def assemble(
    root: Path,
    task: str,
    model: Path | None = None,
    *,
    model_name: str | None = None,
    model_file: Path | None = None,
    model_class: str | None = None,
    custom_handler: str | None = None,
    class_names: list[str] | None = None,
    options: dict[str, Any] | None = None,
    max_workers: int = 1,
    batch_size: int = 8,
    link_model: bool = False,
) -> Path:
    """A folder laid out like the extracted archive; ``model`` is a folder (-> model/) or a file (-> model/NAME)."""
    root.mkdir(parents=True, exist_ok=True)
    package = root / "mar_build_handlers"
    package.mkdir()
    for source in HANDLERS.glob("*.py"):
        shutil.copy2(source, package / source.name)
    shutil.copy2(HANDLERS / "entry.py", root / "mar_build_entry.py")
    model_ref = "model"
    if model is not None and model.is_dir():
        if link_model:  # big real weights: a link, not a copy
            (root / "model").symlink_to(model)
        else:
            shutil.copytree(model, root / "model")
    else:
        (root / "model").mkdir()
        if model is not None:
            shutil.copy2(model, root / "model" / (model_name or model.name))
            model_ref = f"model/{model_name or model.name}"
    if model_file is not None:
        shutil.copy2(model_file, root / "model" / model_file.name)
    if custom_handler is not None:
        (root / "handler.py").write_text(custom_handler, encoding="utf-8")
    config = {
        "format": 1,
        "name": "m",
        "version": "1.0",
        "task": task,
        "model": model_ref,
        "model_file": f"model/{model_file.name}" if model_file else None,
        "model_class": model_class,
        "custom_handler": "handler.py" if custom_handler is not None else None,
        "class_names": class_names,
        "options": options or {},
        "max_workers": max_workers,
        "batch_size": batch_size,
        "labels": {},
        "metadata": {},
        "kserve": {},
        "built_with": {},
    }
    (root / "mar_build.json").write_text(json.dumps(config), encoding="utf-8")
    return root


UNDER_TEST = "handlers_under_test"


def handler_module(name: str) -> ModuleType:
    """handlers/NAME.py from the source tree, imported in a package of its own name (``handlers_under_test``):
    for tests that call a handler module's functions and classes directly, with a stand-in context. ``load``
    imports and drops the archive's ``mar_build_handlers`` per archive; this package stays.
    """
    if UNDER_TEST not in sys.modules:
        spec = importlib.util.spec_from_file_location(
            UNDER_TEST, HANDLERS / "__init__.py", submodule_search_locations=[str(HANDLERS)]
        )
        assert spec is not None and spec.loader is not None
        package = importlib.util.module_from_spec(spec)
        sys.modules[UNDER_TEST] = package
        spec.loader.exec_module(package)
    return importlib.import_module(f"{UNDER_TEST}.{name}")


def model_source(path: Path, text: str) -> ModuleType:
    """Write a model's .py file (a user's model_file) and import it here too, to build its reference weights."""
    path.write_text(text, encoding="utf-8")
    spec = importlib.util.spec_from_file_location(f"reference_{path.stem}", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _archive_modules() -> list[str]:
    return [
        name
        for name in sys.modules
        if name in ("mar_build_entry", "handler") or name.startswith(("mar_build_handlers", "mar_build_model_"))
    ]


def load(model_dir: Path) -> Loaded:
    """Import the archive's entry point under its real names and load it, like a fresh worker.

    The imported modules are dropped from sys.modules (and sys.path restored) afterwards: the loaded handler keeps
    its own references, and the next archive imports its own copies.
    """
    path_before = list(sys.path)
    for name in _archive_modules():
        del sys.modules[name]
    sys.path.insert(0, str(model_dir))
    try:
        entry = importlib.import_module("mar_build_entry")
        config = json.loads((model_dir / "mar_build.json").read_text())
        context = StandInContext(model_dir, config["batch_size"])
        assert entry.handle(None, context) is None
        return Loaded(entry.handle, model_dir, config["batch_size"], entry._service)
    finally:
        sys.path[:] = path_before
        for name in _archive_modules():
            del sys.modules[name]
