"""The predictor pod's wrapper, run locally: kserve's ModelServer in front of TorchServe.

Started by ``toolkit._serve`` in its own process::

    python -m toolkit._serve.wrapper --config RUN/config.properties --http-port 8080 [--host 127.0.0.1] [--grpc-port N]
        [--answers ours|image] [--model-store DIR]

In an image (the pod's entrypoint, in place of the stock image's dockerd-entrypoint.sh), ``toolkit._serve.pod``
starts TorchServe with the runtime's arguments and this wrapper on 0.0.0.0:8080 (gRPC 8081)::

    ENTRYPOINT ["python", "-m", "toolkit._serve.pod"]
    # the kserve-torchserve runtime's args then follow: torchserve --start
    #     --model-store=/mnt/models/model-store --ts-config=/mnt/models/config/config.properties

``--answers image`` answers as the stock image's wrapper does instead (``stock.py``): ``serve(wrapper="image")``.

It does what the wrapper in the ``pytorch/torchserve-kfs`` image does (pytorch/serve
kubernetes/kserve/kserve_wrapper/__main__.py and TorchserveModel.py), with the kserve package installed here:
read config.properties itself, make one kserve Model per ``model_snapshot`` key whose predictor is TorchServe's
inference address (protocol v1), decide readiness by polling ``GET {management_address}/models/NAME`` until a
worker is READY, and serve ``/v1/models...`` on the HTTP port. Differences from the pod, each on purpose:

- The pod polls before it starts listening (10 tries x 30 s) and registers only the models that became ready, so a
  slow model is a 404 there. Here the server listens at once, every snapshot model is registered, and a model
  answers 503 until TorchServe reports a READY worker: that is what ``GET /v1/models/M`` promises (the v1
  protocol's model-ready call: 200 ready, otherwise not ready).
- A 404 for an unknown model lists the names this server has (the name is the model_snapshot key).
- TorchServe's non-2xx answers reach the client with their status and body (see ``UpstreamError``).
- It binds ``--host`` (default loopback), not always 0.0.0.0, and kserve's gRPC server runs only with --grpc-port;
  its ModelInfer goes to TorchServe's REST ``/v2/models/M/infer`` as the v2 body the handlers read (_grpc_v2.py).
- A bad request gets its own 4xx with ``{"error": message}`` and never a 500 or a traceback (``front_door.py``): the
  v1 verbs take a JSON object ``{"instances": [...]}`` (415 for other content types, 413 over max_request_size,
  405 for other methods), and its bytes go to TorchServe as received. kserve would re-encode the parsed body
  (orjson: 254 levels at most, bytes not at all) and answer those 500s from a handler that re-raises, after which
  uvicorn drops the keep-alive connection without ``Connection: close`` and the client's next request is reset.
- The calls to TorchServe go through one keep-alive aiohttp session instead of kserve's httpx client: the same
  requests and headers for a fifth of the CPU (``TorchServeUpstream``), CPU the model needs when the wrapper,
  TorchServe and the workers share a few cores. (The pod runs its image's own wrapper, whatever it costs.)

This process must not import torch: it is the HTTP front, not a model runtime.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
import threading
import time
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import orjson

from .._front_door import (
    V2_FORM,
    KeepAliveOnError,
    Refused,
    V1Request,
    answer_without_traceback,
    check_content_type,
    check_envelope,
    check_v2_envelope,
    post_only,
    read_body,
)
from .._layout import TS_DEFAULT_MAX_REQUEST
from .._v2_metadata import V2Signature, add_versioned_routes
from .config import read_max_request_size, read_v2_signatures, read_wrapper_config
from .processes import terminate_group
from .readiness import poll_readiness
from .stock import stock_models_ready, stock_payload, stock_ready

# kserve.model_server parses sys.argv when it is imported (module-level argparse with allow_abbrev): our own
# options, or pytest's, would be read as kserve's (``--config`` abbreviates ``--configure_logging``). Import it
# with an empty command line; every setting we need is passed to ModelServer explicitly.
_argv, sys.argv = sys.argv, sys.argv[:1]
try:
    import kserve.model_server as _model_server
    from fastapi import FastAPI, Request
    from fastapi.responses import JSONResponse, Response
    from kserve import Model, ModelServer
    from kserve.errors import InvalidInput, ModelNotFound, ModelNotReady
    from kserve.model import append_forwardable_headers
    from kserve.protocol.rest.server import RESTServer
finally:
    sys.argv = _argv

from kserve.protocol.infer_type import InferRequest, InferResponse  # noqa: E402 - after kserve.model_server

from .._grpc_v2 import BINARY_HEADER as BINARY_V2_HEADER  # noqa: E402 - tritonclient's binary tensor extension
from .._grpc_v2 import V2GRPCServer, infer_response, not_ready, v2_body  # noqa: E402
from .upstream import TorchServeUpstream, UpstreamError  # noqa: E402

log = logging.getLogger("toolkit.wrapper")


class TorchServeModel(Model):
    """One model_snapshot key: predict and explain forwarded to TorchServe's ``/v1/models/NAME:predict|:explain``.

    kserve 0.21's Model turns every non-2xx answer of its predictor into an ``httpx.HTTPStatusError``, which the
    server answers with 500 ``{"error": "HTTPStatusError : ..."}``. The wrapper in the pod's image (kserve 0.9-era
    TorchserveModel) raised ``tornado.web.HTTPError(response.code, ...)`` instead, so a handler's 400, TorchServe's
    413 (too large) or 503 (queue full) kept their status. We restore that: ``UpstreamError`` carries status and body.
    """

    def __init__(self, name: str, management_url: str, upstream: TorchServeUpstream,
                 v2: V2Signature | None = None) -> None:
        super().__init__(name)
        self.management_url = management_url
        self.upstream = upstream
        self.v2 = v2 or V2Signature()  # GET /v2/models/M, from the archive (toolkit/_v2_metadata.py)

    def get_input_types(self) -> list[dict[str, Any]]:
        return self.v2.inputs

    def get_output_types(self) -> list[dict[str, Any]]:
        return self.v2.outputs

    def load(self) -> bool:
        # kserve calls load() on the event loop for a model that is not ready: never block there. Readiness comes
        # from the poller thread (poll_readiness).
        return bool(self.ready)

    def start(self) -> None:
        # BaseKServeModel.start() marks a model ready; ours is ready when TorchServe has a READY worker.
        return None

    def stop(self) -> None:
        # kserve unloads every model when the server stops (from its signal handler, on the running loop).
        try:
            asyncio.get_running_loop().create_task(self.upstream.close())
        except RuntimeError:
            pass

    async def predict(
        self, payload: Any, headers: dict[str, str] | None = None, response_headers: dict[str, str] | None = None
    ) -> Any:
        if isinstance(payload, InferRequest) and not self.upstream.stock:  # gRPC v2: to TorchServe's REST v2
            return await self._infer_v2(payload, headers or {})
        return await self.upstream.call(self.name, "predict", payload, headers)

    async def _infer_v2(self, request: InferRequest, headers: dict[str, str]) -> InferResponse:
        """A gRPC ModelInfer as the v2 body the handlers read at TorchServe's /v2/models/M/infer (toolkit/_grpc_v2.py,
        as the python runtime sends it), the handler's answer or error as gRPC's."""
        if not self.ready:
            raise not_ready(self.name)
        v2 = v2_body(request)
        raw = v2.body if isinstance(v2.body, bytes) else orjson.dumps(v2.body)
        send = append_forwardable_headers(headers, {"content-type": v2.content_type, **v2.headers})
        try:
            body = await self.upstream.infer_v2(self.name, raw, send)
        except UpstreamError as exc:
            return infer_response(exc.status, exc.body, request, self.name)  # raises the status's gRPC error
        return infer_response(200, body, request, self.name)

    async def explain(self, payload: Any, headers: dict[str, str] | None = None) -> Any:
        return await self.upstream.call(self.name, "explain", payload, headers)


class _RESTServer(RESTServer):
    """kserve's REST server, bound to our host, with the answers the pod's users need (see module docstring)."""

    host = "127.0.0.1"
    max_request_size = TS_DEFAULT_MAX_REQUEST
    stock = False  # answer as the stock image's wrapper (stock.py)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # kserve 0.21 hard-codes host="0.0.0.0"; a local predictor listens on loopback unless asked otherwise.
        self.config.host = _RESTServer.host

    def _add_middlewares(self, app: FastAPI) -> None:
        super()._add_middlewares(app)
        app.add_middleware(KeepAliveOnError)

    def _register_endpoints(self, app: FastAPI) -> None:
        # Before kserve's: Starlette takes the first route whose path and method match, and kserve's
        # GET /v1/models/{model_name} would take GET .../M:predict as the model "M:predict" (a 404).
        for verb in ("predict", "explain"):
            path = f"/v1/models/{{model_name}}:{verb}"
            app.add_api_route(path, self._v1_verb(verb), methods=["POST"], response_model=None)
            if not self.stock:
                app.add_api_route(path, post_only, methods=["GET", "PUT", "PATCH", "DELETE"], include_in_schema=False)
        if self.stock:
            app.add_api_route("/v1/models/{model_name}", self._stock_ready(), methods=["GET"], response_model=None)
        else:  # kserve's own v2 route would parse every tensor into its InferRequest, then re-encode it
            for path in ("/v2/models/{model_name}/infer", "/v2/models/{model_name}/versions/{model_version}/infer"):
                app.add_api_route(path, self._v2_infer(), methods=["POST"], response_model=None)
            add_versioned_routes(app, self.dataplane)  # metadata and readiness: kserve's answer 501
        super()._register_endpoints(app)

    def _v2_infer(self) -> Any:
        dataplane, limit = self.dataplane, self.max_request_size

        async def endpoint(model_name: str, request: Request, model_version: str | None = None) -> Response:
            # The same front door as the python runtime's v2 route: 413, 415, 400 without "inputs"; the tensors are
            # the handler's to check. tritonclient's binary extension goes through with its header.
            raw = await read_body(request, limit)
            if not await dataplane.model_ready(model_name, True):
                raise ModelNotReady(model_name)
            binary = request.headers.get(BINARY_V2_HEADER)
            if binary is not None:
                send = {"content-type": "application/octet-stream", BINARY_V2_HEADER: binary}
            else:
                check_content_type(request.headers.get("content-type"), V2_FORM)
                check_v2_envelope(raw)
                send = {"content-type": "application/json"}
            model = dataplane.get_model_from_registry(model_name)
            assert isinstance(model, TorchServeModel)
            send = append_forwardable_headers(dict(request.headers), send)
            body = await model.upstream.infer_v2(model_name, raw, send)
            return Response(body, media_type="application/json")

        return endpoint

    def _stock_ready(self) -> Any:
        registry = self.dataplane.model_registry

        async def endpoint(model_name: str) -> Response:
            if model_name not in registry.get_models():
                raise ModelNotFound(model_name)
            return Response(orjson.dumps(stock_ready(model_name)), media_type="application/json")

        return endpoint

    def _v1_verb(self, verb: str) -> Any:
        dataplane = self.dataplane
        # The stock wrapper reads any body (uvicorn sets no limit) and TorchServe answers 413 to a large one.
        stock, limit = self.stock, sys.maxsize if self.stock else self.max_request_size

        async def endpoint(model_name: str, request: Request) -> Response:
            raw = await read_body(request, limit)
            if not await dataplane.model_ready(model_name, True):
                raise ModelNotReady(model_name)
            if stock:
                raw = stock_payload(raw, request.headers.get("content-type"))
            else:
                check_content_type(request.headers.get("content-type"))
                check_envelope(raw)
            call = dataplane.infer if verb == "predict" else dataplane.explain
            # The answer's headers are not passed on: kserve's explain hands back the request's own headers.
            answer, _ = await call(model_name=model_name, request=V1Request(raw), headers=dict(request.headers))
            return Response(orjson.dumps(answer), media_type="application/json")

        return endpoint

    def _add_exception_handlers(self, app: FastAPI) -> None:
        super()._add_exception_handlers(app)
        registry = self.dataplane.model_registry

        async def model_not_found(_: Request, exc: Exception) -> Response:
            if self.stock:
                return JSONResponse(status_code=404, content={"error": str(exc)})
            names = sorted(registry.get_models())
            message = (
                f"{exc} Available models: {', '.join(names) or '(none)'}. The name in the URL is the key in "
                "config.properties' model_snapshot, not the InferenceService name."
            )
            return JSONResponse(status_code=404, content={"error": message})

        async def upstream(_: Request, exc: Exception) -> Response:
            assert isinstance(exc, UpstreamError)
            return Response(content=exc.body, status_code=exc.status, media_type=exc.content_type)

        app.add_exception_handler(ModelNotFound, model_not_found)
        app.add_exception_handler(UpstreamError, upstream)
        app.add_exception_handler(Refused, answer_without_traceback())
        app.add_exception_handler(InvalidInput, answer_without_traceback(400))
        app.add_exception_handler(ModelNotReady, answer_without_traceback(503))


def watch_parent(parent_pid: int, torchserve_pgid: int | None, grace: float) -> None:
    """If the process that started us dies without stopping us (a killed notebook kernel), stop TorchServe and exit."""
    while os.getppid() == parent_pid:
        time.sleep(1.0)
    log.warning("parent process %d is gone: stopping TorchServe and the wrapper", parent_pid)
    if torchserve_pgid is not None:
        terminate_group(torchserve_pgid, grace)
    os._exit(1)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m toolkit._serve.wrapper", description=__doc__.split("\n")[0])
    parser.add_argument("--config", type=Path, required=True, help="config.properties TorchServe runs with")
    parser.add_argument("--http-port", type=int, default=8080)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--grpc-port", type=int, default=None, help="kserve's gRPC server (off when omitted)")
    parser.add_argument("--request-timeout", type=int, default=600, help="seconds for one call to TorchServe")
    parser.add_argument("--poll-interval", type=float, default=0.5, help="seconds between readiness polls")
    parser.add_argument("--parent-pid", type=int, default=None)
    parser.add_argument("--torchserve-pgid", type=int, default=None)
    parser.add_argument("--answers", choices=("ours", "image"), default="ours",
                        help="image: answer as the stock pytorch/torchserve-kfs image's wrapper (toolkit._serve.stock)")
    parser.add_argument("--model-store", type=Path, default=None,
                        help="where the archives are (default: model_store in the config)")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    # kserve's v1 routes answer through fastapi's ORJSONResponse, which FastAPI now calls deprecated at every first
    # request: a line in every user's log about code that is not theirs.
    warnings.filterwarnings("ignore", message="ORJSONResponse is deprecated")
    names, inference_url, management_url = read_wrapper_config(args.config)
    if not names:
        raise SystemExit(f"{args.config}: model_snapshot lists no models")
    log.info("wrapper: models %s, inference %s, management %s", names, inference_url, management_url)

    limit = read_max_request_size(args.config)
    stock = args.answers == "image"
    upstream = TorchServeUpstream(inference_url, timeout_s=args.request_timeout, max_request_size=limit, stock=stock)
    v2 = read_v2_signatures(args.config, args.model_store)
    models = [TorchServeModel(name, management_url, upstream, v2.get(name)) for name in names]
    if stock:
        stock_models_ready(models, args.config, args.model_store)
    _RESTServer.host = args.host
    _RESTServer.max_request_size = limit
    _RESTServer.stock = stock
    _model_server.RESTServer = _RESTServer  # the class ModelServer.start() instantiates
    V2GRPCServer.host, V2GRPCServer.max_request_size = args.host, limit
    _model_server.GRPCServer = V2GRPCServer  # with --grpc-port: bound to --host, ModelInfer to TorchServe's v2
    server = ModelServer(
        http_port=args.http_port,
        grpc_port=args.grpc_port or 0,
        enable_grpc=args.grpc_port is not None,
        workers=1,
        enable_latency_logging=False,
        # No PredictorConfig: TorchServeModel calls TorchServe through TorchServeUpstream, never kserve's client.
    )
    for model in models:
        server.register_model(model)
    # kserve's timing middleware logs a line per request at INFO, and httpx one per readiness poll: at hundreds of
    # requests per second that is CPU the models need. The access log (uvicorn.access) stays, as in the pod.
    logging.getLogger("kserve.trace").setLevel(logging.WARNING)
    logging.getLogger("httpx").setLevel(logging.WARNING)

    stop = threading.Event()
    if not stock:
        threading.Thread(target=poll_readiness, args=(models, args.poll_interval, stop), daemon=True).start()
    if args.parent_pid is not None:
        threading.Thread(
            target=watch_parent, args=(args.parent_pid, args.torchserve_pgid, 10.0), daemon=True
        ).start()
    try:
        # Every model is registered (ready or not): start([]) skips kserve's "at least one model is ready" rule.
        server.start([])
    finally:
        stop.set()


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    main()
