"""gRPC v2 on the python runtime: an InferRequest through the model's batcher, as a REST v2 request goes.

kserve's servicer and server, and the conversions, are toolkit/_grpc_v2.py (the TorchServe path's wrapper uses them
too); ``RuntimeModel.predict`` (server.py) hands an ``InferRequest`` here, and its v2 body goes through the model's
batcher with ``application/json``, so gRPC and REST requests share batches.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol

from kserve.protocol.infer_type import InferRequest, InferResponse

from .._grpc_v2 import infer_response, v2_body
from .handling import Answer
from .handling import Request as HandlerRequest


class Submits(Protocol):
    """What a model's batcher offers here: ``submit`` one request, get its answer."""

    async def submit(self, request: HandlerRequest) -> Answer: ...


async def infer(batcher: Submits, model_name: str, request: InferRequest, headers: Mapping[str, str]) -> InferResponse:
    """One gRPC infer through the model's batcher, as a REST v2 request goes (toolkit/_runtime/server.py)."""
    v2 = v2_body(request)
    sent = {**headers, **v2.headers, "content-type": v2.content_type}
    request_id = sent.get("x-request-id") or request.id or ""
    answer = await batcher.submit(HandlerRequest(v2.body, v2.content_type, sent, request_id))
    return infer_response(answer.status, answer.body, request, model_name)
