"""gRPC v2 (KServe's GRPCInferenceService) for both runtimes: kserve's servicer and server, with the requests and
answers the handlers read and write at ``POST /v2/models/M/infer``.

kserve's gRPC server (``GRPCServer``, run by ModelServer on the same event loop as the REST server) answers server
live/ready, model ready and model metadata from the data plane, as REST does (the models' ``get_input_types`` and
``get_output_types``). Its ``ModelInfer`` hands the model an ``InferRequest``, which ``v2_body`` turns into the v2
JSON body the handlers read (handlers/v2.py): each input's name, shape, datatype and data, BYTES elements as str.
Two cases keep their bytes instead, in the binary tensor extension the handlers also read (tritonclient's,
``Inference-Header-Content-Length``): inputs sent as ``raw_input_contents``, and BYTES elements that are not UTF-8
(an image's bytes). The python runtime sends that body through the model's batcher (toolkit/_runtime/grpc_v2.py), the
TorchServe path's wrapper to TorchServe's ``/v2/models/M/infer``. The handler's v2 answer becomes the
``InferResponse`` (``InferResponse.from_rest``); its errors become gRPC statuses with its message:

    4xx -> INVALID_ARGUMENT   503 -> UNAVAILABLE   504 -> DEADLINE_EXCEEDED   anything else -> INTERNAL
    unknown model -> NOT_FOUND (with the names there are)   model still loading -> UNAVAILABLE

The statuses are raised as grpc_interceptor's ``GrpcException``, which kserve's ``ExceptionToStatusInterceptor``
passes on with their details as they are (kserve's own ``ModelNotReady`` has no ``reason`` and would become
UNKNOWN there). ``V2GRPCServer`` binds the server's ``--host`` (kserve's binds ``[::]``) and takes at most
config.properties' ``max_request_size`` per message, as TorchServe's gRPC server does.

Import it after kserve's model_server, whose import parses the command line (the runtime and the wrapper do).
"""

from __future__ import annotations

import json
import logging
import struct
from concurrent import futures
from dataclasses import dataclass, field
from typing import Any

from grpc import StatusCode, aio
from grpc_interceptor.exceptions import GrpcException
from kserve.protocol.grpc import grpc_predict_v2_pb2 as pb
from kserve.protocol.grpc.grpc_predict_v2_pb2_grpc import add_GRPCInferenceServiceServicer_to_server
from kserve.protocol.grpc.interceptors import ExceptionToStatusInterceptor
from kserve.protocol.grpc.server import GRPCServer
from kserve.protocol.grpc.servicer import InferenceServicer
from kserve.protocol.infer_type import InferInput, InferRequest, InferResponse, to_http_parameters

from ._layout import TS_DEFAULT_MAX_REQUEST

log = logging.getLogger("toolkit.grpc")

BINARY_HEADER = "inference-header-content-length"  # handlers/v2.py BINARY_HEADER, as a proxy lowercases it
# The datatypes of the v2 protocol (handlers/v2.py DATATYPES); kserve's InferRequest.from_grpc knows no others.
DATATYPES = ("BOOL", "UINT8", "UINT16", "UINT32", "UINT64", "INT8", "INT16", "INT32", "INT64", "FP16", "FP32",
             "FP64", "BYTES")  # fmt: skip
NOT_FOUND_HINT = "The model name is the key in config.properties' model_snapshot, not the InferenceService name."


@dataclass
class V2Body:
    """One gRPC request as the handlers read a REST v2 one: the body, its content type, the headers it needs."""

    body: Any  # a dict (application/json), or the binary extension's bytes
    content_type: str
    headers: dict[str, str] = field(default_factory=dict)


def status_error(status: int, message: str) -> GrpcException:
    """The gRPC status for an HTTP-style answer ``status`` (the handler's, or the batcher's), with ``message``."""
    if 400 <= status < 500:
        code = StatusCode.INVALID_ARGUMENT
    else:
        code = {503: StatusCode.UNAVAILABLE, 504: StatusCode.DEADLINE_EXCEEDED}.get(status, StatusCode.INTERNAL)
    return GrpcException(message, code)


def v2_body(request: InferRequest) -> V2Body:
    """``request`` (from kserve's servicer) as the v2 body a handler reads: JSON where it can be, else the binary
    extension (raw inputs, BYTES that are not UTF-8)."""
    entries: list[dict[str, Any]] = []
    tail: list[bytes] = []
    for tensor in request.inputs:
        entry: dict[str, Any] = {"name": tensor.name, "shape": list(tensor.shape), "datatype": tensor.datatype}
        if tensor.parameters:
            entry["parameters"] = to_http_parameters(tensor.parameters)
        raw = _binary_data(tensor)
        if raw is None:
            entry["data"] = _json_data(tensor)
        else:
            entry["parameters"] = {**entry.get("parameters", {}), "binary_data_size": len(raw)}
            tail.append(raw)
        entries.append(entry)
    body: dict[str, Any] = {"inputs": entries}
    if request.id:
        body["id"] = request.id
    if request.parameters:
        body["parameters"] = to_http_parameters(request.parameters)
    if request.request_outputs:
        body["outputs"] = [{"name": o.name} for o in request.request_outputs]
    if not tail:
        return V2Body(body, "application/json")
    head = json.dumps(body, separators=(",", ":")).encode("utf-8")
    return V2Body(head + b"".join(tail), "application/octet-stream", {BINARY_HEADER: str(len(head))})


def _binary_data(tensor: InferInput) -> bytes | None:
    """The input's bytes in the binary extension's form when it cannot travel as JSON, else None."""
    raw = tensor._raw_data  # raw_input_contents: already in the binary extension's layout (Triton's)
    if raw is not None:
        return bytes(raw)
    if tensor.datatype != "BYTES" or all(_is_utf8(v) for v in tensor.data or []):
        return None
    # Each element: its length as a little-endian uint32, then its bytes (handlers/v2.py _from_binary).
    return b"".join(struct.pack("<I", len(v)) + bytes(v) for v in tensor.data)


def _is_utf8(value: Any) -> bool:
    if not isinstance(value, bytes | bytearray):
        return True
    try:
        bytes(value).decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def _json_data(tensor: InferInput) -> list[Any]:
    data = list(tensor.data or [])
    if tensor.datatype == "BYTES":
        return [bytes(v).decode("utf-8") if isinstance(v, bytes | bytearray) else v for v in data]
    return data


def infer_response(status: int, body: bytes, request: InferRequest, model_name: str) -> InferResponse:
    """A handler's answer (``status``, ``body``) to ``request`` as an InferResponse; a GrpcException for an error,
    or for an answer that is not a v2 response."""
    text = body.decode("utf-8", "replace")
    try:
        parsed = json.loads(body) if body else None
    except ValueError:
        parsed = None
    if status >= 300:
        raise status_error(status, error_message(parsed, text, status))
    if not isinstance(parsed, dict) or not isinstance(parsed.get("outputs"), list):
        raise GrpcException(f"model {model_name} answered a v2 request with no v2 response (a handler that does "
                            f"not read v2 bodies?): {text[:200]}", StatusCode.INTERNAL)
    try:
        response = InferResponse.from_rest(parsed)
    except (KeyError, TypeError) as exc:
        raise GrpcException(f"model {model_name} answered a malformed v2 response: {exc}: {text[:200]}",
                            StatusCode.INTERNAL) from exc
    response.model_name = response.model_name or model_name
    response.id = response.id or request.id or ""
    return response


def error_message(parsed: Any, text: str, status: int) -> str:
    """The message of an error answer: its ``error`` (the handlers') or ``message`` (TorchServe's), else its text."""
    if isinstance(parsed, dict):
        for key in ("error", "message"):
            if isinstance(parsed.get(key), str):
                return str(parsed[key])
    return text.strip() or f"status {status}"


def not_ready(model_name: str) -> GrpcException:
    return GrpcException(f"Model with name {model_name} is not ready (its handler is still loading).",
                         StatusCode.UNAVAILABLE)


class V2Servicer(InferenceServicer):
    """kserve's servicer, with an unknown model's NOT_FOUND listing the names there are, and an unknown datatype
    named with its input (kserve's InferRequest.from_grpc says only "invalid content type")."""

    async def ModelInfer(self, request: pb.ModelInferRequest, context: Any) -> pb.ModelInferResponse:  # noqa: N802
        registry = self._data_plane.model_registry
        if registry.get_model(request.model_name) is None:
            names = ", ".join(sorted(registry.get_models())) or "(none)"
            raise GrpcException(f"Model with name {request.model_name} does not exist. Available models: {names}. "
                                f"{NOT_FOUND_HINT}", StatusCode.NOT_FOUND)
        for tensor in request.inputs:
            if tensor.datatype.upper() not in DATATYPES:
                raise GrpcException(f"input {tensor.name!r}: unknown datatype {json.dumps(tensor.datatype)}; "
                                    f"expected one of {', '.join(DATATYPES)}", StatusCode.INVALID_ARGUMENT)
        return await super().ModelInfer(request, context)


class V2GRPCServer(GRPCServer):
    """kserve's gRPC server (what ModelServer.start() runs) bound to ``host``, messages up to ``max_request_size``,
    with ``V2Servicer``; the server's main sets both class attributes before ModelServer.start(), as for its REST
    server."""

    host = "127.0.0.1"
    max_request_size = TS_DEFAULT_MAX_REQUEST

    async def start(self, max_workers: int) -> None:
        servicer = V2Servicer(self._data_plane, self._model_repository_extension)
        send = self._kwargs.get("grpc_max_send_message_length")
        options = [("grpc.max_receive_message_length", self.max_request_size)]
        options += [] if send is None else [("grpc.max_send_message_length", send)]
        self._server = aio.server(futures.ThreadPoolExecutor(max_workers=max_workers),
                                  interceptors=(ExceptionToStatusInterceptor(),), options=options)
        add_GRPCInferenceServiceServicer_to_server(servicer, self._server)
        address = f"[{self.host}]:{self._port}" if ":" in self.host else f"{self.host}:{self._port}"
        if self._server.add_insecure_port(address) == 0:
            raise OSError(f"gRPC cannot listen on {address}")
        log.info("gRPC v2 listening on %s", address)
        await self._server.start()
        await self._server.wait_for_termination()
