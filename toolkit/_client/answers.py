"""Reading what a KServe v1 endpoint (or what stands in front of it) answered: results, or a PredictError whose hint
says how to fix it."""

from __future__ import annotations

import json
import re
from typing import Any

import httpx

from .._errors import PredictError
from .auth import LOGIN_HINT, TOKEN_HINT, is_login_redirect

BODY_KEEP = 64 * 1024  # characters of an error body kept on the exception
# The request never left: nothing can have run, so these are always safe to retry.
NOT_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)

NOT_V1_HINT = (
    "base_url must be the predictor's root: http://NAME-predictor.NAMESPACE.svc.cluster.local inside the cluster, "
    "or the ingress gateway with host=NAME.NAMESPACE.example.com outside it (an HTML page usually means the gateway "
    "served the Kubeflow dashboard because the Host header is missing or wrong)"
)
MODEL_NAME_HINT = (
    "the model name in the URL is the key in model_snapshot's \"models\" in config/config.properties (the "
    "archive's model name), not the InferenceService name"
)
STATUS_HINTS = {
    400: "the server rejected the request: check that the instances have the shape the model's handler expects",
    413: "the request is larger than TorchServe's max_request_size (default 6553500 bytes): raise "
    "max_request_size (and max_response_size) in config/config.properties, or send fewer instances per "
    "request with max_batch= (--max-batch)",
    500: "the model's handler failed: look at the predictor's logs (kubectl logs POD -c kserve-container)",
    502: "the gateway could not reach the predictor (scaling from zero, or a crashed pod); "
    "retry_non_idempotent=True lets the client retry predictions on this",
    503: "the model is not ready or is overloaded (the KServe wrapper answers 503 until TorchServe has "
    "loaded it): check ready(model, wait=...) and the predictor's logs",
    504: "the gateway timed out waiting for the predictor; retry_non_idempotent=True lets the client retry "
    "predictions on this",
}


# The stock pytorch/torchserve-kfs wrapper (kserve 0.11-0.13) answers 500 for every non-2xx answer of TorchServe,
# with the original status inside: "HTTPStatusError : MESSAGE, 'STATUS REASON' for url 'URL'" (predict) or
# "HTTPStatusError : Client error 'STATUS REASON' for url 'URL'..." (explain, httpx's raise_for_status).
_STOCK_PREDICT = re.compile(r"HTTPStatusError : (?P<message>.*), '(?P<status>\d{3}) (?P<reason>.*)' for url '[^']*'",
                            re.DOTALL)
_STOCK_EXPLAIN = re.compile(
    r"HTTPStatusError : Client error '(?P<status>\d{3}) (?P<reason>.*)' for url '[^']*'(?:\n.*)?", re.DOTALL)
STOCK_HIDDEN_HINT = (
    "the predictor's wrapper (the stock pytorch/torchserve-kfs image's) answered 500 and hid the status above; "
    "images built with `mar-build image` pass it through"
)


def hidden_status(said: str) -> tuple[int, str] | None:
    """(status, message) of a handler's or TorchServe's 4xx inside the stock wrapper's 500 text, else None."""
    match = _STOCK_PREDICT.fullmatch(said) or _STOCK_EXPLAIN.fullmatch(said)
    if match is None or not 400 <= int(match.group("status")) < 500:
        return None
    message = match.groupdict().get("message") or match.group("reason")
    return int(match.group("status")), message


def safe_url(request: httpx.Request) -> str:
    """The request's URL without user:password, as errors show it."""
    return str(request.url.copy_with(userinfo=b""))


def server_message(response: httpx.Response) -> str:
    """What the server said went wrong: {"error": ...} (KServe), {"message": ...} (TorchServe), or the text."""
    text = response.text
    try:
        data = json.loads(text)
    except ValueError:
        data = None
    if isinstance(data, dict):
        for key in ("error", "message", "detail"):
            if data.get(key):
                return str(data[key])
    text = " ".join(text.split())
    if "<html" in text[:200].lower():
        return f"an HTML page ({len(response.text)} characters)"
    return text[:300] + ("..." if len(text) > 300 else "")


def transport_error(
    exc: httpx.TransportError, request: httpx.Request, attempts: int, *, retriable: bool, timeout: float
) -> PredictError:
    """The PredictError for a request that got no answer, after ``attempts`` tries."""
    url = safe_url(request)
    tries = f" (after {attempts} attempts)" if attempts > 1 else ""
    detail = str(exc) or type(exc).__name__
    if isinstance(exc, NOT_SENT):
        return PredictError(
            f"cannot connect to {url}{tries}: {detail}", url=url,
            hint="check that the server runs and base_url is right; outside the cluster, reach the ingress "
            "gateway with kubectl port-forward -n istio-system svc/istio-ingressgateway 8080:80 and use "
            "base_url http://localhost:8080 with host=NAME.NAMESPACE.example.com",
        )
    not_retried = "" if retriable else (
        "; a POST that may have reached the server is not retried unless retry_non_idempotent=True"
    )
    if isinstance(exc, httpx.TimeoutException):
        return PredictError(
            f"no answer from {url} within {timeout:g} s{tries}{not_retried}", url=url,
            hint="raise timeout= (--request-timeout): the first call after a scale from zero waits for the pod, and "
            "TorchServe may hold a request up to the model's responseTimeout",
        )
    return PredictError(
        f"the connection to {url} failed{tries}: {detail}{not_retried}", url=url,
        hint="the server closed the connection: look at the predictor's logs (kubectl logs POD -c "
        "kserve-container)",
    )


def undecodable_error(exc: httpx.DecodingError, request: httpx.Request) -> PredictError:
    """The PredictError for an answer whose body does not decode as its Content-Encoding says."""
    url = safe_url(request)
    return PredictError(
        f"{request.method} {url}: the answer's body cannot be decoded: {exc}", url=url,
        hint="the server (or a proxy in front of it) sent a Content-Encoding its body does not match; call the "
        "predictor without the proxy to see which one",
    )


def _auth_hint(said: str, has_credentials: bool) -> str:
    if "rbac" in said.lower():
        return ("an Istio AuthorizationPolicy denied the call: the token's service account (or the cookie's "
                "user) needs access to the InferenceService's namespace")
    if not has_credentials:
        return "no credentials were sent: " + TOKEN_HINT + ", or give a session cookie"
    return "the credentials were refused: " + LOGIN_HINT


def _model_hint(host: str | None, listing: str | None) -> str:
    hint = MODEL_NAME_HINT
    if host and (listing is None or "lists no models" in listing or "could not list" in listing):
        hint += f"; and check the Host header ({host}): the gateway answers 404 for an unknown host"
    return hint


def error_for(
    response: httpx.Response,
    attempts: int,
    *,
    host: str | None,
    has_credentials: bool,
    model: str | None = None,
    listing: str | None = None,
) -> PredictError:
    """The PredictError for a non-2xx answer, with the hint that fixes it.

    ``host`` is the Host header sent, ``model`` the model called (a 404 then names it), ``listing`` what the
    server said it serves.
    """
    status = response.status_code
    url = safe_url(response.request)
    said = server_message(response)
    tries = f" (after {attempts} attempts)" if attempts > 1 else ""
    head = f"{response.request.method} {url} answered {status} {response.reason_phrase}".rstrip() + tries

    def error(message: str, hint: str | None) -> PredictError:
        return PredictError(message, status=status, url=url, body=response.text[:BODY_KEEP], hint=hint)

    hidden = hidden_status(said) if status == 500 else None
    if hidden is not None:  # the error a real 4xx gives, with the handler's own words
        status, said = hidden
        head = f"{response.request.method} {url} answered {status} (as a 500)" + tries
        hint = STATUS_HINTS.get(status)
        return error(f"{head}: {said}", f"{hint}; {STOCK_HIDDEN_HINT}" if hint else STOCK_HIDDEN_HINT)

    if response.is_redirect:
        location = response.headers.get("location", "")
        if is_login_redirect(response):
            return error(f"{head}: redirected to the login page ({location}): session expired or not logged in",
                         LOGIN_HINT)
        return error(f"{head}: redirected to {location}; the client does not follow redirects",
                     "use the redirect target as base_url (for example https:// instead of http://)")
    if status in (401, 403):
        return error(f"{head}: {said or 'not authorised'}", _auth_hint(said, has_credentials))
    if status == 404 and model is not None:
        message = f"model {model!r} not found at {url}" + (f": {said}" if said else "")
        if listing is not None:
            message += f"; {listing}"
        return error(message, _model_hint(host, listing))
    return error(f"{head}" + (f": {said}" if said else ""), STATUS_HINTS.get(status))


def v1_json(response: httpx.Response, what: str) -> dict[str, Any]:
    """The JSON object of a 2xx answer; PredictError when it is not one (not a KServe v1 endpoint)."""
    url = safe_url(response.request)
    kind = response.headers.get("content-type", "no content-type").split(";")[0]
    try:
        data = json.loads(response.content)
    except ValueError:
        data = None
    if not isinstance(data, dict):
        shown = "a JSON " + type(data).__name__ if data is not None else f"{kind}, not JSON"
        raise PredictError(
            f"{url} answered {response.status_code} with {shown}: this is not a KServe v1 endpoint "
            f"(expected {what})", status=response.status_code, url=url, body=response.text[:BODY_KEEP],
            hint=NOT_V1_HINT,
        )
    return data


def not_v1(response: httpx.Response, message: str) -> PredictError:
    """A 2xx answer whose JSON is not what KServe v1 answers."""
    url = str(response.request.url)
    return PredictError(f"{url} {message}: this is not a KServe v1 endpoint", status=response.status_code, url=url,
                        body=response.text[:BODY_KEEP], hint=NOT_V1_HINT)


def checked_results(data: dict[str, Any], key: str, count: int, url: str) -> list[Any]:
    """``data[key]`` when it is a list of ``count`` results (one per instance); PredictError otherwise."""
    values = data.get(key)
    if not isinstance(values, list):
        keys = ", ".join(sorted(map(str, data))) or "none"
        raise PredictError(
            f"{url} answered without a {key!r} list (keys: {keys}): this is not a KServe v1 answer",
            url=url, body=json.dumps(data)[:BODY_KEEP], hint=NOT_V1_HINT,
        )
    if len(values) != count:
        raise PredictError(
            f"{url} answered {len(values)} {key} for {count} instances: the answers cannot be matched "
            "to the instances", url=url, body=json.dumps(data)[:BODY_KEEP],
            hint="the handler must answer one result per instance; the stock TorchServe kserve envelope with "
            "batchSize > 1 breaks this (build the archive with mar-build, whose handlers own the envelope)",
        )
    return values
