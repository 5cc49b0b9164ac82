"""The answers of the wrapper in the stock ``pytorch/torchserve-kfs`` image, for ``serve(wrapper="image")``.

The default 0.9.0 image runs pytorch/serve kubernetes/kserve/kserve_wrapper/ (v0.9.0) on kserve 0.11.1. Run here in
front of TorchServe 0.9.0 on the text sample, it answered every good request as mar-build's wrapper does, and
these differently (measured, tests/serve/fixtures/stock_wrapper_090.json; FACTS.md "The image's own wrapper"):

- every non-2xx answer of TorchServe (a handler's 400, TorchServe's 413) becomes **500**
  ``{"error": "HTTPStatusError : MESSAGE, 'STATUS REASON' for url 'URL'"}``, MESSAGE being the ``error`` of a JSON
  answer (empty for any other answer; kserve's Model._http_predict);
- a Content-Type other than exactly one of kserve's JSON types (``curl -d``'s form type, ``application/json;
  charset=utf-8``) leaves the body as bytes, which kserve cannot encode again: 500 ``TypeError : ...``;
- a body that is not JSON is 400 ``Unrecognized request format: ...``; ``instances`` that is not a list 400
  ``Expected "instances" to be a list``; anything else (no ``instances`` at all) goes to TorchServe as it is;
- ``GET /v1/models/M`` says ``"ready": "True"`` (a string: pydantic 1 coerces the bool), as soon as a ``.mar`` is
  in the model store, before any worker is READY;
- ``:explain`` goes to TorchServe without a Content-Type, and its errors are httpx's ``raise_for_status`` text.

These functions build those answers; the wrapper (``wrapper.py``, ``--answers image``) applies them.
This module must not import kserve or torch (the CLI and tests import it).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import orjson

from .._front_door import Refused
from .._layout import parse_properties

# kserve 0.11.1 protocol/dataplane.py JSON_HEADERS: a body with another Content-Type is left as bytes.
STOCK_JSON_TYPES = ("application/json", "application/cloudevents+json", "application/ld+json")
NOT_SERIALIZABLE = "TypeError : Type is not JSON serializable: bytes"
STOCK_READY = "True"
# httpx 0.23 Response.raise_for_status (what kserve 0.11.1's explain calls), by the status's first digit.
_HTTPX_KINDS = {1: "Informational response", 3: "Redirect response", 4: "Client error", 5: "Server error"}


def stock_error(verb: str, status: int, reason: str, body: bytes, content_type: str | None, url: str) -> bytes:
    """The stock wrapper's 500 body for TorchServe's non-2xx answer ``status`` to a ``verb`` (predict, explain) call."""
    if verb == "explain":
        return stock_explain_error(status, reason, url)
    return stock_status_error(status, reason, body, content_type, url)


def stock_status_error(status: int, reason: str, body: bytes, content_type: str | None, url: str) -> bytes:
    """The stock wrapper's 500 body for TorchServe's non-2xx answer to a predict call (kserve 0.11.1
    Model._http_predict, then its generic exception handler)."""
    message: Any = ""
    if content_type == "application/json":  # exactly: kserve compares the header as a whole
        try:
            message = orjson.loads(body)
        except orjson.JSONDecodeError:
            message = ""
        if isinstance(message, dict) and "error" in message:
            message = message["error"]
    text = f"{message}, '{status} {reason}' for url '{url}'"
    return orjson.dumps({"error": f"HTTPStatusError : {text}"})


def stock_explain_error(status: int, reason: str, url: str) -> bytes:
    """The stock wrapper's 500 body for TorchServe's non-2xx answer to an explain call (httpx's raise_for_status)."""
    kind = _HTTPX_KINDS.get(status // 100, "Invalid status code")
    text = (f"{kind} '{status} {reason}' for url '{url}'\n"
            f"For more information check: https://httpstatuses.com/{status}")
    return orjson.dumps({"error": f"HTTPStatusError : {text}"})


def stock_transport_error(exc: Exception) -> bytes:
    """The stock wrapper's 500 body when TorchServe does not answer (httpx's exception names; read, not measured)."""
    name = "ReadTimeout" if isinstance(exc, TimeoutError) else "ConnectError"
    detail = "" if name == "ReadTimeout" else "All connection attempts failed"
    return orjson.dumps({"error": f"{name} : {detail}"})


def stock_payload(raw: bytes, content_type: str | None) -> bytes:
    """The bytes the stock wrapper sends TorchServe for this request, or Refused with its own answer."""
    if content_type is not None and content_type not in STOCK_JSON_TYPES:
        raise Refused(500, NOT_SERIALIZABLE)
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise Refused(400, f"Unrecognized request format: {exc}") from exc
    if isinstance(body, dict) and "instances" in body and not isinstance(body["instances"], list):
        raise Refused(400, 'Expected "instances" to be a list')
    return orjson.dumps(body)  # kserve parses the body and encodes it again


def stock_ready(name: str) -> dict[str, str]:
    """``GET /v1/models/NAME`` as the stock 0.9.0 wrapper answers it."""
    return {"name": name, "ready": STOCK_READY}


def has_archives(model_store: Path) -> bool:
    """What makes the stock wrapper call every model ready: some ``*.mar`` in the model store (any model's)."""
    return any(model_store.glob("*.mar"))


def stock_models_ready(models: Sequence[Any], config: Path, model_store: Path | None) -> None:
    """As the stock wrapper: every model ready at once when some .mar is in the model store, else no start."""
    store = model_store or Path(parse_properties(config.read_text(encoding="utf-8")).get("model_store", ""))
    if not has_archives(store):
        raise SystemExit(f"ModelMissingError: no .mar in {store} (the stock wrapper does not start without one)")
    for model in models:
        model.ready = True
