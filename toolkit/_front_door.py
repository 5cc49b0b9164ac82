"""The front door of the v1 verbs: what a request must be before it reaches a model, and the 4xx it gets otherwise
(the local wrapper's today; kept free of TorchServe so that the python runtime can answer the same way).

``POST /v1/models/M:predict`` (and ``:explain``) takes a JSON object ``{"instances": [...]}`` sent as JSON, at most
max_request_size bytes. Anything else is ``Refused`` with its own status and ``{"error": message}``, answered without
a traceback and without costing the client its keep-alive connection (``read_body`` reads a body to its end even
when it is too large; ``KeepAliveOnError`` answers an unexpected exception itself). The instances themselves are the
handler's to check: it knows what an instance of its task is.

No kserve import here (importing kserve.model_server parses sys.argv): Starlette's types only.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

log = logging.getLogger("toolkit.front_door")

V1_FORM = '{"instances": [...]}'
V2_FORM = '{"inputs": [{"name", "shape", "datatype", "data"}]}'
# kserve's JSON_HEADERS (dataplane.py), with parameters (charset=utf-8) allowed: JSON is UTF-8 (RFC 8259).
ACCEPTED_TYPES = ("application/json", "application/octet-stream")
ACCEPTED_TEXT = "application/json (or application/*+json, application/octet-stream, or no Content-Type)"


def too_large_message(limit: int) -> str:
    return (
        f"the request body is larger than max_request_size ({limit} bytes): raise max_request_size in "
        "config/config.properties (mar.yaml: server.max_request_size), and max_response_size with it, or send "
        "fewer instances per request"
    )


@dataclass(frozen=True)
class V1Request:
    """A checked v1 body, as the client sent it: forwarded as these bytes, never parsed and encoded again."""

    raw: bytes


class Refused(Exception):
    """A request the front door answers itself: ``status`` with ``{"error": message}`` and ``headers``."""

    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.headers = headers or {}


async def read_body(request: Request, limit: int) -> bytes:
    """The request body, or 413 when it is over ``limit``: read to its end all the same, so that the connection
    stays usable for the client's next request."""
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size <= limit:
            chunks.append(chunk)
    if size > limit:
        raise Refused(413, too_large_message(limit))
    return b"".join(chunks)


def check_content_type(value: str | None, form: str = V1_FORM) -> None:
    """415 unless the Content-Type header ``value`` is JSON (parameters such as charset aside) or missing."""
    media = (value or "").split(";", 1)[0].strip().lower()
    if media and media not in ACCEPTED_TYPES and not (media.startswith("application/") and media.endswith("+json")):
        raise Refused(415, f"Content-Type {media} is not accepted: send the JSON body {form} as {ACCEPTED_TEXT}")


def _kind(value: Any) -> str:
    kinds = {str: "a string", bool: "a boolean", int: "a number", float: "a number", list: "a list", dict: "an object"}
    return "null" if value is None else kinds.get(type(value), type(value).__name__)


def check_envelope(raw: bytes) -> dict[str, Any]:
    """The parsed v1 body, or 400 unless ``raw`` is a JSON object whose "instances" is a list (the instances are
    the handler's to check)."""
    body = _json_object(raw, "v1", "instances", V1_FORM)
    if not isinstance(body["instances"], list):
        raise Refused(400, f'"instances" must be a list, got {_kind(body["instances"])}: send {V1_FORM}')
    return body


def check_v2_envelope(raw: bytes) -> Any:
    """The parsed v2 JSON body, or 400 unless it is a JSON object with "inputs" (the tensors are the handler's to
    check: it knows the datatypes and shapes its task takes)."""
    return _json_object(raw, "v2", "inputs", V2_FORM)


def _json_object(raw: bytes, protocol: str, key: str, form: str) -> dict[str, Any]:
    """``raw`` parsed: a JSON object holding ``key``, else 400 saying what it is and what ``protocol`` takes."""
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise Refused(400, f"the body is not valid JSON ({exc}): send {form}") from exc
    if not isinstance(body, dict):
        raise Refused(400, f"the body is {_kind(body)}: the {protocol} protocol takes a JSON object {form}")
    if key not in body:
        keys = ", ".join(sorted(body)[:10]) or "none"
        raise Refused(400, f'the body has no "{key}" (keys: {keys}): the {protocol} protocol takes {form}')
    return body


class KeepAliveOnError:
    """ASGI middleware: an unexpected exception becomes a 500 answered here, instead of reaching Starlette's
    ServerErrorMiddleware, which answers and then re-raises it, so that uvicorn drops the connection."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        started = False

        async def tracked(message: Any) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        try:
            await self.app(scope, receive, tracked)
        except Exception as exc:
            if started:
                raise
            log.exception("unexpected error answering %s %s", scope.get("method"), scope.get("path"))
            body = orjson.dumps({"error": f"the server failed: {type(exc).__name__}: {exc}"})
            await send({"type": "http.response.start", "status": 500, "headers": [
                (b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
            await send({"type": "http.response.body", "body": body})


async def post_only(request: Request) -> Response:
    raise Refused(405, f"{request.method} is not allowed here: POST {V1_FORM} to {request.url.path}", {"Allow": "POST"})


def answer_without_traceback(status: int | None = None) -> Any:
    """An exception handler answering ``status`` (a Refused's own when None) with ``{"error": str(exc)}`` and one
    log line: kserve's handlers log a traceback, and a bad request or a loading model is not a bug in the server."""

    async def handler(request: Request, exc: Exception) -> Response:
        code = exc.status if isinstance(exc, Refused) else (status or 500)
        log.info("%s %s answered %d: %s", request.method, request.url.path, code, exc)
        headers = exc.headers if isinstance(exc, Refused) else None
        return JSONResponse(status_code=code, content={"error": str(exc)}, headers=headers)

    return handler
