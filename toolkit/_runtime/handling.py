"""One batch through a handler, as TorchServe's worker runs it: requests in, one answer per request out.

The rows a handler gets are TorchServe's (ts/service.py ``retrieve_data_for_inference`` over
ts/protocol/otf_message_handler.py ``_retrieve_input_data``): ``{"body": value}``, the value parsed JSON for
``application/json`` (the raw bytes when it does not parse), a str for ``text/*``, bytes otherwise; the request's
headers (lower-case names), ``explain`` ("True"/"False", as TorchServe sets it) and, under the parameter's name
``body``, ``{"content-type": ...}``. The answers follow ts/service.py ``predict`` and ``create_predict_response``:
each request its own status and content type from the context; bytes as they are, str as UTF-8, a tensor
``torch.save``d, anything else ``json.dumps(indent=2)``; a handler that raises answers every request of the batch
503 "Prediction failed" (507 on MemoryError, a PredictionException's own code), a wrong number of answers 503.
"""

from __future__ import annotations

import io
import json
import logging
from dataclasses import dataclass, field
from typing import Any

from .loader import LoadedModel

log = logging.getLogger("toolkit.runtime")


@dataclass
class Request:
    """One request for a model: its body as the handler will see it, its headers, its id and verb."""

    body: Any
    content_type: str
    headers: dict[str, str] = field(default_factory=dict)
    request_id: str = ""
    explain: bool = False

    def row(self) -> dict[str, Any]:
        return {"body": self.body}

    def handler_headers(self) -> dict[str, Any]:
        return {**self.headers, "explain": "True" if self.explain else "False",
                "body": {"content-type": self.content_type}}


@dataclass(frozen=True)
class Answer:
    """What one request is answered: status, reason phrase, body, content type."""

    status: int
    body: bytes
    content_type: str | None = None
    phrase: str | None = None

    @classmethod
    def error(cls, status: int, message: str) -> Answer:
        kind = "ServiceUnavailableException" if status == 503 else (
            "BadRequestException" if 400 <= status < 500 else "InternalServerException")
        body = json.dumps({"code": status, "type": kind, "message": message}).encode()
        return cls(status, body, "application/json", message)


def decode_body(raw: bytes, content_type: str) -> Any:
    """The body as TorchServe's worker hands it over, by the request's media type."""
    if content_type == "application/json":
        try:
            return json.loads(raw)
        except ValueError:
            return raw
    if content_type.startswith("text"):
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            return raw
    return raw


def media_type(header: str | None) -> str:
    """``application/json; charset=utf-8`` -> ``application/json`` (TorchServe's frontend drops the parameters)."""
    return (header or "").split(";", 1)[0].strip().lower()


def run_batch(model: LoadedModel, requests: list[Request]) -> list[Answer]:
    """Run ``requests`` as one batch through the model's handler; one Answer per request, in order (a model with
    a service envelope goes through envelope.run_enveloped instead)."""
    context = model.context
    context.begin_batch([r.handler_headers() for r in requests], [r.request_id for r in requests])
    try:
        results = model.entry([r.row() for r in requests], context)
    except MemoryError:
        log.error("model %s: out of memory", model.name, exc_info=True)
        return [Answer.error(507, "Out of resources")] * len(requests)
    except Exception as exc:
        return [_failure(model, exc)] * len(requests)
    return collect(model, results, len(requests))


def collect(model: LoadedModel, results: Any, count: int, offset: int = 0) -> list[Answer]:
    """The handler's ``results`` for ``count`` requests as Answers, with each request's status from the context."""
    if not isinstance(results, list):
        log.warning("model: %s, Invalid return type: %s.", model.name, type(results))
        return [Answer.error(503, "Invalid model predict output")] * count
    if len(results) != count:
        log.warning("model: %s, number of batch response mismatched, expect: %d, got: %d.",
                    model.name, count, len(results))
        return [Answer.error(503, "number of batch response mismatched")] * count
    answers = []
    context = model.context
    for idx, value in enumerate(results):
        try:
            body = encode(value)
        except TypeError:
            log.warning("Unable to serialize model output.", exc_info=True)
            return [Answer.error(503, "Unsupported model output data type.")] * count
        status, phrase = context.get_response_status(idx + offset)
        answers.append(Answer(status or 200, body, context.get_response_content_type(idx + offset), phrase))
    return answers


def encode(value: Any) -> bytes:
    """One answer as TorchServe's worker sends it (create_predict_response)."""
    if isinstance(value, bytes | bytearray):
        return bytes(value)
    if isinstance(value, str):
        return value.encode("utf-8")
    import torch

    if isinstance(value, torch.Tensor):
        buffer = io.BytesIO()
        torch.save(value, buffer)
        return buffer.getvalue()
    return json.dumps(value, indent=2).encode("utf-8")


def _failure(model: LoadedModel, exc: Exception) -> Answer:
    code = getattr(exc, "error_code", None)
    if type(exc).__name__ == "PredictionException" and isinstance(code, int):
        log.error("model %s: prediction error", model.name, exc_info=True)
        return Answer.error(code, str(getattr(exc, "message", exc)))
    if "CUDA" in str(exc):
        log.error("model %s: CUDA out of memory", model.name, exc_info=True)
        return Answer.error(507, "Out of resources")
    log.warning("model %s: invoking the handler failed.", model.name, exc_info=True)
    return Answer.error(503, "Prediction failed")
