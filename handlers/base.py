"""The shared handler: owns the KServe v1 envelope, server-side batching and per-request errors.

TorchServe hands ``handle()`` one batch: a list of raw requests, each a dict whose ``"body"`` (or ``"data"``) is the
parsed JSON when the request said ``Content-Type: application/json``, a str for ``text/*``, bytes otherwise (and
bytes for JSON that failed to parse). mar-build's config.properties configures no service envelope
(``enable_envvars_config=false``, no ``service_envelope``): TorchServe's stock ``kserve`` envelope
(pytorch/serve ``ts/torch_handler/request_envelope/kserve.py``) parses only the first request of a server-side
batch, so with ``batchSize`` > 1 and concurrent clients every request fails (503 "number of batch response
mismatched", measured on TorchServe 0.12.0). Without it every request of the batch arrives here as sent, so this class:

- reads ``{"instances": [...]}`` (a KServe v1 request, answered ``{"predictions": [...]}``, or
  ``{"explanations": [...]}`` when TorchServe set the ``explain`` header to ``True``), or a v2 (Open Inference
  Protocol) body ``{"inputs": [one tensor]}`` (told apart by that key: TorchServe passes no path, and sets the same
  ``explain`` header for v1 and v2; see ``v2.py``), answered ``{"model_name", "outputs": [...]}``, or takes any
  other body as ONE instance of a raw TorchServe call (``/predictions/NAME``), answered with the bare prediction;
- validates every instance, answers a malformed request with its own 4xx and ``{"error": message}``;
- runs one forward pass over the instances of all valid requests (one per ``pass_key`` where a handler keys
  them, e.g. by tensor shape) and splits the outputs back in order; a failing pass answers its requests 500.

Subclasses fill the hooks ``load``, ``preprocess_instance``, ``inference``, ``postprocess`` (and ``explain``).
Only the stable ``ts`` context API is used, so the same code runs on TorchServe 0.9.0 and 0.12.0.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Hashable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Generic, TypeVar

import torch

from . import metrics, v2
from .cpus import torch_threads
from .loading import defined_subclass, import_file  # noqa: F401 - entry.py and torch_model.py take them from here

logger = logging.getLogger(__name__)

CONFIG_FILE = "mar_build.json"
DEFAULT_MAX_INTERNAL_BATCH = 64
# Reason phrases travel in the HTTP status line: Netty rejects CR/LF there, so keep them one short ASCII line.
_MAX_PHRASE = 200


class InvalidRequest(Exception):
    """A request this handler cannot serve: answered ``status`` (400 unless given; any 4xx or 5xx) with
    ``{"error": message}``, while the other requests of its batch are served. Raises ValueError for another status.
    ``reason`` is the label it is counted under (``mar_build_bad_requests_total``); None: where it was raised says.
    """

    def __init__(self, message: str, status: int = 400, reason: str | None = None) -> None:
        if isinstance(status, bool) or not isinstance(status, int) or not 400 <= status <= 599:
            raise ValueError(f"an InvalidRequest answers a 4xx or 5xx status, not {status!r}")
        super().__init__(message)
        self.status = status
        self.reason = reason


class BadInstance(InvalidRequest):
    """One instance of the wrong shape or type; the whole request it came in is answered 400."""


@dataclass
class _Request:
    idx: int
    items: list[Any]
    form: str  # "v1", "v2" or "raw": how it is answered
    explain: bool
    v2: v2.Request | None = None


def read_config(model_dir: Path) -> dict[str, Any]:
    """Read ``mar_build.json`` from the extracted archive; raise ValueError when it is missing or not an object."""
    path = model_dir / CONFIG_FILE
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ValueError(f"cannot read {path}: {exc} (was this archive built by mar-build?)") from exc
    if not isinstance(config, dict):
        raise ValueError(f"{path} must hold a JSON object")
    return config


def to_jsonable(value: Any) -> Any:
    """Tensors (and sequences of them) as plain lists and numbers; anything else unchanged."""
    if isinstance(value, torch.Tensor):
        return value.tolist()
    if isinstance(value, (list, tuple)):
        return [to_jsonable(v) for v in value]
    return value


# What preprocess_instance makes of one instance, and what inference gives for a list of them (a list, or a tensor
# whose first dimension is the batch): a subclass names both, e.g. BaseHandler[str, torch.Tensor].
Item = TypeVar("Item")
Outputs = TypeVar("Outputs")


class BaseHandler(Generic[Item, Outputs]):
    """Base of every mar-build handler; TorchServe's entry point (``mar_build_entry``) drives it.

    After ``initialize`` the hooks can use: ``context``, ``model_dir`` (the extracted archive), ``config`` (the
    parsed mar_build.json), ``options`` (its free-form task options), ``class_names``, ``device`` and
    ``model_name``/``model_version`` (what v2 answers name).

    A v2 request holds one input whose rows along the first dimension are the instances (``v2_items``); the class
    attributes below say what that input may be, and the tasks narrow them.
    """

    v2_datatypes: tuple[str, ...] = v2.DATATYPES
    v2_rank: int | None = None  # the input's rank, the instance dimension included; None: any
    v2_expects = "one instance per row"  # what a row is, for the 400 messages
    v2_output_name = "output-0"
    v2_json_output = False  # True: each prediction answers as one JSON text (BYTES), whatever it holds

    def __init__(self) -> None:
        self.initialized = False
        self.context: Any = None
        self.model_dir = Path()
        self.config: dict[str, Any] = {}
        self.options: dict[str, Any] = {}
        self.class_names: list[str] | None = None
        self.device = torch.device("cpu")
        self.max_internal_batch = DEFAULT_MAX_INTERNAL_BATCH
        self.model_name = ""
        self.model_version: str | None = None
        self.metrics = metrics.Recorder(None, "", None)

    # ---- hooks ---------------------------------------------------------------------------------------------
    def load(self, model_path: Path | None) -> None:
        """Load the model from ``model_path`` (a folder or a file inside the archive; None when the spec names no
        model, e.g. a custom handler that builds its own), once per worker.
        """
        raise NotImplementedError(f"{type(self).__name__} must implement load(model_path)")

    def require_model(self, model_path: Path | None) -> Path:
        """``model_path`` for a ``load`` that cannot do without a model; ValueError when mar_build.json names none."""
        if model_path is None:
            raise ValueError(f"{CONFIG_FILE} names no model, and the {self.config.get('task')} task needs one")
        return model_path

    def preprocess_instance(self, instance: Any) -> Item:
        """One instance as sent (JSON value, str or bytes) -> the item ``inference`` takes; raise BadInstance."""
        return instance

    def check_request(self, items: list[Item]) -> None:
        """Check the items of one request together (e.g. same shape); raise InvalidRequest to answer it (400)."""

    def pass_key(self, item: Item) -> Hashable:
        """Items with different keys (e.g. tensor shapes) never share a forward pass, and fail apart."""
        return None

    def inference(self, items: list[Item]) -> Outputs:
        """Items of one forward pass (from any number of requests) -> one output per item, in order."""
        raise NotImplementedError(f"{type(self).__name__} must implement inference(items)")

    def postprocess(self, outputs: Outputs) -> list[Any]:
        """Outputs of ``inference`` -> one prediction per instance: JSON-able (by default, as lists), or tensors
        (v1 answers them as lists, v2 with their dtype and shape)."""
        return list(to_jsonable(outputs))

    def explain(self, items: list[Item]) -> list[Any]:
        """Items -> one JSON-able explanation per instance; by default the raw model outputs."""
        return list(to_jsonable(self.inference(items)))

    def v2_items(self, tensor: v2.Tensor) -> list[Item]:
        """The one input of a v2 request -> its items: ``v2_check``, then each row through ``preprocess_instance``.
        Raise InvalidRequest (the input's name is added to the message)."""
        self.v2_check(tensor)
        return self._items(tensor.rows())

    def v2_check(self, tensor: v2.Tensor) -> None:
        """Datatype and rank as the class attributes say, and at least one instance; raise InvalidRequest."""
        problem = v2.mismatch(tensor, self.v2_datatypes, self.v2_rank, self.v2_expects)
        if problem:
            raise InvalidRequest(problem)

    def v2_outputs(self, request: v2.Request, predictions: list[Any]) -> list[dict[str, Any]]:
        """The predictions (or explanations) of one v2 request -> its output tensors; the first holds them."""
        return [v2.output(self.v2_output_name, predictions, self.v2_json_output)]

    # ---- TorchServe interface ------------------------------------------------------------------------------
    def initialize(self, context: Any) -> None:
        """Read the archive's mar_build.json, set threads and device, and load the model (TorchServe load time)."""
        self.context = context
        properties = context.system_properties
        self.model_dir = Path(properties["model_dir"])
        self.config = read_config(self.model_dir)
        self.options = dict(self.config.get("options") or {})
        self.class_names = self.config.get("class_names")
        gpu_id = properties.get("gpu_id")
        if gpu_id is not None and torch.cuda.is_available():
            self.device = torch.device(f"cuda:{gpu_id}")
        torch.set_num_threads(torch_threads(self.options, self.config.get("max_workers")))
        batch_size = int(properties.get("batch_size") or self.config.get("batch_size") or 1)
        # One forward pass per server-side batch unless the options cap it (memory for many-instance requests).
        self.max_internal_batch = int(
            self.options.get("max_internal_batch") or max(DEFAULT_MAX_INTERNAL_BATCH, batch_size)
        )
        manifest = (getattr(context, "manifest", None) or {}).get("model") or {}
        # The name the server routes by (ts Context.model_name: the model_snapshot key), else the archive's own.
        name = getattr(context, "model_name", None) or manifest.get("modelName") or self.config.get("name")
        self.model_name = str(name or "")
        self.model_version = manifest.get("modelVersion") or self.config.get("version")
        self.metrics = metrics.Recorder(context, self.model_name, self.model_version)
        model = self.config.get("model")
        self.load(self.model_dir / model if model else None)
        self.initialized = True
        logger.info(
            "%s loaded %s on %s with %d threads", type(self).__name__, model, self.device, torch.get_num_threads()
        )

    def handle(self, data: list[dict[str, Any]], context: Any) -> list[Any]:
        """One TorchServe batch -> one answer per request, in order; per-request statuses via the context."""
        answers: list[Any] = [None] * len(data)
        passes: dict[bool, list[_Request]] = {False: [], True: []}
        tally = metrics.Tally(self.metrics, len(data))
        for idx, row in enumerate(data):
            try:
                request = self._parse(idx, row, context)
            except InvalidRequest as exc:
                answers[idx] = _fail(context, idx, exc.status, str(exc), tally, exc.reason)
                continue
            except Exception as exc:
                # A bug in a preprocessing hook: this request fails loudly, the rest of the batch is still served.
                logger.exception("preprocessing request %d failed", idx)
                answers[idx] = _fail(context, idx, 500, f"{type(exc).__name__}: {exc}", tally)
                continue
            passes[request.explain].append(request)
        tally.preprocessed([len(r.items) for p in passes.values() for r in p])
        # One line per server-side batch: how TorchServe really batched (batchSize is only an upper bound).
        logger.info(
            "batch of %d request(s): %d valid, %d instance(s)",
            len(data),
            len(passes[False]) + len(passes[True]),
            sum(len(r.items) for p in passes.values() for r in p),
        )
        for explain, requests in passes.items():
            if requests:
                self._serve(requests, explain, answers, context, tally)
        for idx, answer in enumerate(answers):
            if not isinstance(answer, (bytes, bytearray)):
                # Without it TorchServe sends no Content-Type at all, and raw /predictions callers guess.
                context.set_response_content_type(idx, "application/json")
        tally.answered()
        return answers

    # ---- envelope ------------------------------------------------------------------------------------------
    def _parse(self, idx: int, row: dict[str, Any], context: Any) -> _Request:
        body = _body(idx, row, context)
        explain = str(context.get_request_header(idx, "explain") or "").strip().lower() == "true"
        if isinstance(body, dict) and "instances" in body:
            instances = body["instances"]
            if not isinstance(instances, list):
                raise InvalidRequest(f'"instances" must be a list, got {type(instances).__name__}', reason="envelope")
            if not instances:
                raise InvalidRequest('"instances" is empty', reason="envelope")
            items = self._items(instances)
            self._check_request(items)
            return _Request(idx, items, "v1", explain)
        try:
            length = v2.header_length(_header(context, idx, v2.BINARY_HEADER)) if _is_bytes(body) else None
            request = v2.read(body, length)
        except v2.BadTensor as exc:
            raise InvalidRequest(str(exc), reason="v2") from exc
        if request is not None:
            return _Request(idx, self._v2_items(request), "v2", explain, request)
        items = self._items([body], numbered=False)
        self._check_request(items)
        return _Request(idx, items, "raw", explain)

    def _check_request(self, items: list[Any]) -> None:
        try:
            self.check_request(items)
        except InvalidRequest as exc:
            exc.reason = exc.reason or "request"
            raise

    def _items(self, instances: list[Any], numbered: bool = True) -> list[Any]:
        items = []
        for number, instance in enumerate(instances):
            try:
                items.append(self.preprocess_instance(instance))
            except InvalidRequest as exc:
                if not numbered:  # a raw call's one body
                    exc.reason = exc.reason or "instance"
                    raise
                raise InvalidRequest(f"instance {number}: {exc}", exc.status, exc.reason or "instance") from exc
        return items

    def _v2_items(self, request: v2.Request) -> list[Any]:
        if len(request.inputs) != 1:
            names = ", ".join(repr(tensor.name) for tensor in request.inputs)
            raise InvalidRequest(f"expected one input, got {len(request.inputs) or 'none'}" + (names and f": {names}"),
                                 reason="v2")
        unknown = [name for name in request.outputs or [] if name != self.v2_output_name]
        if unknown:
            raise InvalidRequest(f"unknown output {unknown[0]!r}; this model answers {self.v2_output_name!r}",
                                 reason="v2")
        tensor = request.inputs[0]
        try:
            items = self.v2_items(tensor)
        except v2.BadTensor as exc:
            raise InvalidRequest(f"{tensor.where()}: {exc}", reason="v2") from exc
        except InvalidRequest as exc:
            raise InvalidRequest(f"{tensor.where()}: {exc}", exc.status, exc.reason or "v2") from exc
        self._check_request(items)
        return items

    def _serve(
        self, requests: list[_Request], explain: bool, answers: list[Any], context: Any, tally: metrics.Tally
    ) -> None:
        items = [item for request in requests for item in request.items]
        owners = [request.idx for request in requests for _ in request.items]
        passes: dict[Any, list[int]] = {}
        for index, item in enumerate(items):
            passes.setdefault(self.pass_key(item), []).append(index)
        results: list[Any] = [None] * len(items)
        errors: dict[int, tuple[int, str, str | None]] = {}
        for indices in passes.values():
            error: tuple[int, str, str | None]
            try:
                outputs = self._run([items[i] for i in indices], explain)
            except InvalidRequest as exc:
                error = (exc.status, str(exc), exc.reason or "pass")
            except Exception as exc:
                # A bug or a model failure: the requests of this pass fail loudly, with the message and a traceback.
                logger.exception("forward pass over %d instances failed", len(indices))
                error = (500, f"{type(exc).__name__}: {exc}", None)
            else:
                for n, index in enumerate(indices):
                    results[index] = outputs[n]
                continue
            for index in indices:
                errors.setdefault(owners[index], error)
        key = "explanations" if explain else "predictions"
        start = 0
        for request in requests:
            mine = results[start : start + len(request.items)]
            start += len(request.items)
            if request.idx in errors:
                status, message, reason = errors[request.idx]
                answers[request.idx] = _fail(context, request.idx, status, message, tally, reason)
                continue
            try:
                answers[request.idx] = _encode(self._answer(request, mine, key))
            except (TypeError, ValueError) as exc:
                logger.exception("answer %d is not JSON", request.idx)
                answers[request.idx] = _fail(context, request.idx, 500, f"the answer is not JSON: {exc}", tally)

    def _answer(self, request: _Request, results: list[Any], key: str) -> Any:
        if request.v2 is not None:
            outputs = self.v2_outputs(request.v2, results)
            return v2.answer(self.model_name, self.model_version, request.v2, outputs)
        plain = to_jsonable(results)  # predictions may be tensors (v2 keeps their dtype)
        return {key: plain} if request.form == "v1" else plain[0]

    def _run(self, items: list[Any], explain: bool) -> list[Any]:
        results: list[Any] = []
        step = self.max_internal_batch
        with torch.inference_mode():
            for start in range(0, len(items), step):
                chunk = items[start : start + step]
                self.metrics.record(metrics.FORWARD_BATCH_SIZE, len(chunk))
                began = time.perf_counter()
                if explain:
                    results.extend(self.explain(chunk))
                    self.metrics.record(metrics.INFERENCE_SECONDS, time.perf_counter() - began)
                    continue
                outputs = self.inference(chunk)
                ran = time.perf_counter()
                self.metrics.record(metrics.INFERENCE_SECONDS, ran - began)
                results.extend(self.postprocess(outputs))
                self.metrics.record(metrics.POSTPROCESS_SECONDS, time.perf_counter() - ran)
        if len(results) != len(items):
            raise RuntimeError(f"{type(self).__name__} returned {len(results)} results for {len(items)} instances")
        return results


def _body(idx: int, row: dict[str, Any], context: Any) -> Any:
    # The frontend names the body "body"; a multipart form field or the stock clients use "data". Query parameters
    # arrive as extra entries of the same row, hence the order.
    for name in ("body", "data"):
        if name in row:
            break
    else:
        if len(row) != 1:
            # e.g. curl -d, whose form encoding TorchServe parses into fields
            raise InvalidRequest(
                "the request has no body; send it as application/json, text/plain or application/octet-stream",
                reason="body",
            )
        name = next(iter(row))
    body = row[name]
    if isinstance(body, (bytes, bytearray)) and _is_json(context.get_request_header(idx, name)):
        # TorchServe hands over the raw bytes when application/json did not parse; say why.
        try:
            return json.loads(bytes(body))
        except ValueError as exc:
            raise InvalidRequest(f"the request body is not valid JSON: {exc}", reason="body") from exc
    return body


def _is_bytes(body: Any) -> bool:
    return isinstance(body, (bytes, bytearray))


def _header(context: Any, idx: int, name: str) -> Any:
    # As sent, or lowercased by a proxy on the way (Envoy in KServe's pods lowercases every header name).
    return context.get_request_header(idx, name) or context.get_request_header(idx, name.lower())


def _is_json(parameter_headers: Any) -> bool:
    # TorchServe files each body parameter's content type under the parameter's name: {"content-type": ...}.
    if not isinstance(parameter_headers, dict):
        return False
    return str(parameter_headers.get("content-type", "")).split(";")[0].strip().lower() == "application/json"


def _encode(answer: Any) -> Any:
    # Serialise here, compactly: TorchServe would json.dumps(indent=2) (big for embeddings) and send a bare str
    # prediction as text; this way every answer is JSON. Bytes from a custom handler pass through.
    if isinstance(answer, (bytes, bytearray)):
        return answer
    return json.dumps(answer, separators=(",", ":"), ensure_ascii=False)


def _fail(
    context: Any, idx: int, status: int, message: str, tally: metrics.Tally | None = None, reason: str | None = None
) -> Any:
    if tally is not None:
        tally.refused(idx, status, reason)
    phrase = " ".join(message.split()).encode("ascii", "replace").decode("ascii")[:_MAX_PHRASE]
    context.set_response_status(code=status, phrase=phrase, idx=idx)
    return _encode({"error": message})
