"""kserve's ModelServer with the handlers behind it: one kserve Model per model_snapshot key, raw-body routes.

kserve's REST server gives the protocol around the models: ``GET /`` and ``/v2/health/live|ready`` (server
liveness and readiness), ``GET /v1/models`` and ``/v1/models/M`` (list, readiness: 200 ready, 503 loading, 404
unknown), ``/v2/models/M`` and ``/v2/models/M/ready`` (metadata, readiness, versioned URLs too), ``/metrics``
(prometheus_client's default registry, where the batcher counts) and ``/docs``. The inference routes are ours,
registered before kserve's so that they win:

    POST /v1/models/M:predict, /v1/models/M:explain      (KServe v1)
    POST /v2/models/M/infer, /v2/models/M/versions/V/infer  (Open Inference Protocol REST)

kserve's own would decode the body into a dict or its InferRequest (a pydantic parse of every tensor) and answer
200 or 500; a handler needs the body as TorchServe hands it over, and each request must keep its handler's status
and body (a 400 for one malformed request of a batch, while the rest are served). A v1 request passes the same
front door as on the TorchServe path (toolkit/_front_door.py: 400 for a body that is not {"instances": [...]}, 413
over max_request_size, 415 for other content types, 405 for other methods, the connection kept alive), so both
runtimes answer the same bad v1 requests the same way; v2 bodies, JSON or tritonclient's binary extension, are the
handler's to read. gRPC v2 (``--grpc-port``) reaches ``RuntimeModel.predict`` through kserve's servicer with an
InferRequest, which goes the same way through the batcher (toolkit/_runtime/grpc_v2.py).
"""

from __future__ import annotations

import json
import logging
import uuid
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from kserve import Model
from kserve.errors import ModelNotFound, ModelNotReady
from kserve.protocol.infer_type import InferRequest
from kserve.protocol.rest.server import RESTServer

from .. import _grpc_v2
from .._front_door import (
    V2_FORM,
    KeepAliveOnError,
    Refused,
    answer_without_traceback,
    check_content_type,
    check_envelope,
    check_v2_envelope,
    post_only,
    read_body,
)
from .._layout import TS_DEFAULT_MAX_REQUEST
from .._metrics import runtime_middleware, serve_metrics_port
from .._v2_metadata import V2Signature, add_versioned_routes, archive_v2_signature
from . import grpc_v2
from .batcher import Batcher
from .handling import Answer, media_type
from .handling import Request as HandlerRequest

log = logging.getLogger("toolkit.runtime")


class RuntimeModel(Model):
    """One model_snapshot key: not ready until its workers are loaded; requests go through its batcher. ``archive``
    (its .mar) gives the v2 metadata, from the start: GET /v2/models/M answers the same while the model loads."""

    def __init__(self, name: str, archive: Path | None = None) -> None:
        super().__init__(name)
        self.archive = archive
        self.batcher: Batcher | None = None
        self._v2: V2Signature | None = None

    def attach(self, batcher: Batcher) -> None:
        """The model's workers are loaded: serve them through ``batcher`` (called from the loading thread); the model
        stops being ready when the batcher has no worker left."""
        self.batcher = batcher
        batcher.on_no_workers = self._lost_workers
        self.ready = True

    def _lost_workers(self) -> None:
        self.ready = False

    def load(self) -> bool:
        # kserve calls load() on the event loop for a model that is not ready: never block there.
        return bool(self.ready)

    def start(self) -> None:
        # BaseKServeModel.start() would mark the model ready before its handler is loaded.
        return None

    def stop(self) -> None:
        if self.batcher is not None:
            self.batcher.close()
        self.ready = False

    def v2_signature(self) -> V2Signature:
        """What GET /v2/models/M answers, read from the archive (toolkit/_v2_metadata.py) as the TorchServe path's
        wrapper reads it; empty lists without one."""
        if self._v2 is None:
            self._v2 = archive_v2_signature(self.archive) if self.archive is not None else V2Signature()
        return self._v2

    def get_input_types(self) -> list[dict[str, Any]]:
        return self.v2_signature().inputs

    def get_output_types(self) -> list[dict[str, Any]]:
        return self.v2_signature().outputs

    async def predict(
        self, payload: Any, headers: dict[str, str] | None = None, response_headers: dict[str, str] | None = None
    ) -> Any:
        """kserve's own predict path (what does not come through our routes): gRPC v2's InferRequest, answered an
        InferResponse (grpc_v2.py); a dict body, the decoded answer."""
        if isinstance(payload, InferRequest):
            if self.batcher is None:
                raise _grpc_v2.not_ready(self.name)
            return await grpc_v2.infer(self.batcher, self.name, payload, headers or {})
        if self.batcher is None:
            raise ModelNotReady(self.name)
        answer = await self.batcher.submit(HandlerRequest(payload, "application/json", dict(headers or {})))
        return _decoded(answer)


def _decoded(answer: Answer) -> Any:
    try:
        return json.loads(answer.body)
    except ValueError:
        return answer.body.decode("utf-8", "replace")


class RuntimeRESTServer(RESTServer):
    """kserve's REST server, bound to our host, with the raw-body inference routes in front of its own."""

    host = "127.0.0.1"
    max_request_size = TS_DEFAULT_MAX_REQUEST  # config.properties' max_request_size, set by __main__

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # kserve 0.21 hard-codes host="0.0.0.0"; a local runtime listens on loopback unless asked otherwise.
        self.config.host = RuntimeRESTServer.host
        # /metrics is served here; MAR_BUILD_METRICS_PORT gives them a port of their own too, as TorchServe has.
        serve_metrics_port(RuntimeRESTServer.host)

    def _add_middlewares(self, app: FastAPI) -> None:
        super()._add_middlewares(app)
        app.add_middleware(KeepAliveOnError)  # an unexpected error must not cost the client its connection
        app.add_middleware(runtime_middleware())  # Requests2XX/4XX/5XX, as TorchServe counts every response

    def _model(self, name: str) -> RuntimeModel:
        model = self.dataplane.model_registry.get_model(name)
        if not isinstance(model, RuntimeModel):
            raise ModelNotFound(name)
        if not model.ready:
            raise ModelNotReady(name)
        return model

    async def _answer(self, name: str, request: Request, *, explain: bool, v2: bool) -> Response:
        # The same front door as the TorchServe path's wrapper (toolkit/_front_door.py): the same 4xx for the same
        # bad v1 request on both runtimes. v2 bodies (JSON, or tritonclient's binary extension) are the handler's.
        raw = await read_body(request, self.max_request_size)
        model = self._model(name)
        assert model.batcher is not None
        headers = dict(request.headers)
        content_type = media_type(headers.get("content-type"))
        body: Any
        if v2 and _grpc_v2.BINARY_HEADER in headers:  # tritonclient's binary extension: the handler splits it
            body, content_type = raw, "application/octet-stream"
        elif v2:
            check_content_type(headers.get("content-type"), V2_FORM)
            body, content_type = check_v2_envelope(raw), "application/json"
        else:
            check_content_type(headers.get("content-type"))
            body, content_type = check_envelope(raw), "application/json"  # parsed once, by the front door
        request_id = headers.get("x-request-id") or str(uuid.uuid4())
        answer = await model.batcher.submit(HandlerRequest(body, content_type, headers, request_id, explain))
        return Response(content=answer.body, status_code=answer.status, media_type=answer.content_type)

    def _register_endpoints(self, app: FastAPI) -> None:
        async def predict(model_name: str, request: Request) -> Response:
            return await self._answer(model_name, request, explain=False, v2=False)

        async def explain(model_name: str, request: Request) -> Response:
            return await self._answer(model_name, request, explain=True, v2=False)

        async def infer(model_name: str, request: Request, model_version: str | None = None) -> Response:
            return await self._answer(model_name, request, explain=False, v2=True)

        app.add_api_route("/v1/models/{model_name}:predict", predict, methods=["POST"], tags=["V1"])
        app.add_api_route("/v1/models/{model_name}:explain", explain, methods=["POST"], tags=["V1"])
        for verb in ("predict", "explain"):  # kserve's GET /v1/models/{name} would take "M:predict" as a model name
            app.add_api_route(f"/v1/models/{{model_name}}:{verb}", post_only, methods=["GET", "PUT", "PATCH", "DELETE"],
                              include_in_schema=False)
        app.add_api_route("/v2/models/{model_name}/infer", infer, methods=["POST"], tags=["V2"])
        app.add_api_route("/v2/models/{model_name}/versions/{model_version}/infer", infer, methods=["POST"],
                          tags=["V2"])
        add_versioned_routes(app, self.dataplane)  # kserve's answer 501
        super()._register_endpoints(app)

    def _add_exception_handlers(self, app: FastAPI) -> None:
        super()._add_exception_handlers(app)
        registry = self.dataplane.model_registry

        async def model_not_found(_: Request, exc: Exception) -> Response:
            names = sorted(registry.get_models())
            message = (
                f"{exc} Available models: {', '.join(names) or '(none)'}. The name in the URL is the key in "
                "config.properties' model_snapshot, not the InferenceService name."
            )
            return JSONResponse(status_code=404, content={"error": message})

        app.add_exception_handler(ModelNotFound, model_not_found)
        app.add_exception_handler(Refused, answer_without_traceback())
        app.add_exception_handler(ModelNotReady, answer_without_traceback(503))
