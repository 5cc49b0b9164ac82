"""What the KServe v1 client does, without I/O: requests, retries, logins, and reading answers into results or errors.

``Session`` holds the endpoint and credentials; its methods are flows (see ``_client_flow``) that ``Client`` and
``AsyncClient`` drive. Retry rules, by whether the request may have reached the model:
- a connection that was never made (connect error, connect timeout, pool timeout): always retried;
- 503 (the KServe wrapper: model not ready, or overloaded) and 429: retried, for every method;
- 502/504 and a connection lost after sending (read timeout, dropped connection): retried for GET only, and for
  POST only with ``retry_non_idempotent=True``, since the model may already have run the request.
Backoff is exponential with jitter; a ``Retry-After`` header, when present, is honoured up to a bound.
"""

from __future__ import annotations

import email.utils
import json
import logging
import random
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import httpx

from .._errors import PredictError
from .._names import model_name_problem
from .auth import (
    AUTHSERVICE_COOKIE,
    COOKIE_NAME_RE,
    LOGIN_HINT,
    TOKEN_HINT,
    Credentials,
    dex_login,
    is_login_redirect,
    parse_cookie,
)
from .flow import Flow, RequestBuilder, fetch, pause

log = logging.getLogger("toolkit.client")

VERBS = ("predict", "explain")
RETRY_STATUSES = frozenset({429, 502, 503, 504})
# The request never left: nothing can have run, so these are always safe to retry.
_NOT_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)
BACKOFF_CAP = 10.0  # seconds, the longest computed backoff
RETRY_AFTER_CAP = 30.0  # seconds, the longest Retry-After honoured
_BODY_KEEP = 64 * 1024  # characters of an error body kept on the exception
_RESULT_KEY = {"predict": "predictions", "explain": "explanations"}

NOT_V1_HINT = (
    "base_url must be the predictor's root: http://NAME-predictor.NAMESPACE.svc.cluster.local inside the cluster, "
    "or the ingress gateway with host=NAME.NAMESPACE.example.com outside it (an HTML page usually means the gateway "
    "served the Kubeflow dashboard because the Host header is missing or wrong)"
)
MODEL_NAME_HINT = (
    "the model name in the URL is the key in model_snapshot's \"models\" in config/config.properties (the "
    "archive's model name), not the InferenceService name"
)


@dataclass(frozen=True)
class Chunk:
    """Instances ``start`` .. ``start + len(parts) - 1`` of a call, already encoded as JSON."""

    index: int
    start: int
    parts: tuple[bytes, ...]

    @property
    def end(self) -> int:
        return self.start + len(self.parts)


def encode_instances(instances: Sequence[Any]) -> list[bytes]:
    """Each instance as compact JSON bytes (so a chunk's body is a join, not a re-encoding).

    Raises PredictError unless ``instances`` is a list or tuple of JSON-serialisable values (no NaN/Infinity).
    """
    if not isinstance(instances, (list, tuple)):
        kind = type(instances).__name__
        hint = "pass a list of instances, e.g. [{\"data\": \"Hello World!\"}]"
        if isinstance(instances, dict) and "instances" in instances:
            hint = "pass body[\"instances\"], or send the whole body with infer()"
        elif hasattr(instances, "tolist"):
            hint = "convert it with .tolist()"
        raise PredictError(f"instances must be a list (or tuple), not {kind}", hint=hint)
    return [encode_json(value, f"instance {i}") for i, value in enumerate(instances)]


def encode_json(value: Any, what: str) -> bytes:
    """``value`` as compact UTF-8 JSON; PredictError naming ``what`` when it cannot be."""
    try:
        return json.dumps(value, allow_nan=False, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
    except (TypeError, ValueError) as exc:
        raise PredictError(
            f"{what} is not JSON-serialisable: {exc}",
            hint="use plain lists, dicts, strings and numbers (numpy arrays and tensors: .tolist(); "
            "bytes: base64 text); NaN and Infinity are not valid JSON",
        ) from exc


def plan_chunks(parts: Sequence[bytes], max_batch: int | None) -> list[Chunk]:
    """Split encoded instances into chunks of at most ``max_batch`` (one chunk when None)."""
    size = max_batch or max(len(parts), 1)
    return [Chunk(i, start, tuple(parts[start : start + size])) for i, start in enumerate(range(0, len(parts), size))]


def chunk_error(exc: PredictError, chunk: Chunk, total: int) -> PredictError:
    """The error of one chunk, said as the failure of the whole call (no partial result is returned)."""
    return PredictError(
        f"chunk {chunk.index + 1} of {total} (instances {chunk.start}-{chunk.end - 1}) failed, so the call failed "
        f"and no predictions are returned: {exc.message}",
        status=exc.status, url=exc.url, body=exc.body, hint=exc.hint,
    )


def check_model(model: str) -> str:
    if model_name_problem(model) is not None:
        raise PredictError(
            f"{model!r} is not a valid model name (letters, digits, '_', '-' and '.', starting with a letter or "
            "digit)", hint=MODEL_NAME_HINT,
        )
    return model


def check_verb(verb: str) -> str:
    if verb not in VERBS:
        raise PredictError(f"verb must be one of {', '.join(VERBS)}, not {verb!r}")
    return verb


def retry_after_seconds(value: str | None, now: float | None = None) -> float | None:
    """A Retry-After header (seconds or an HTTP date) -> seconds to wait, within [0, RETRY_AFTER_CAP]; None if absent
    or unreadable."""
    if not value:
        return None
    value = value.strip()
    if re.fullmatch(r"\d+(\.\d+)?", value):
        seconds = float(value)
    else:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        seconds = when.timestamp() - (time.time() if now is None else now)
    return min(max(seconds, 0.0), RETRY_AFTER_CAP)


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


class Session:
    """One endpoint, its credentials and retry policy; the flows every client method is made of."""

    def __init__(
        self,
        build: RequestBuilder,
        *,
        base_url: httpx.URL,
        host: str | None,
        token: str | None,
        cookies: dict[str, str],
        credentials: Credentials | None,
        cookie_name: str,
        timeout: float,
        retries: int,
        retry_non_idempotent: bool,
        backoff: float,
    ) -> None:
        self._build = build
        self.base_url = base_url
        self.host = host
        self._token = token
        self._cookies = cookies
        self._credentials = credentials
        self._cookie_name = cookie_name
        self._logged_in = credentials is None
        self.timeout = timeout
        self.retries = retries
        self.retry_non_idempotent = retry_non_idempotent
        self.backoff = backoff
        self._random = random.Random()

    # -- requests -----------------------------------------------------------------------------------------------

    def request(self, method: str, path: str, content: bytes | None = None) -> httpx.Request:
        headers = {"Accept": "application/json"}
        if content is not None:
            headers["Content-Type"] = "application/json"
        if self.host:
            headers["Host"] = self.host
        if self._token:
            headers["Authorization"] = f"Bearer {self._token}"
        if self._cookies:
            headers["Cookie"] = "; ".join(f"{name}={value}" for name, value in self._cookies.items())
        return self._build(method, path, content=content, headers=headers)

    def url_of(self, path: str) -> str:
        return str(self._build("GET", path).url.copy_with(userinfo=b""))

    @property
    def has_credentials(self) -> bool:
        return bool(self._token or self._cookies or self._credentials)

    # -- login --------------------------------------------------------------------------------------------------

    def ensure_login(self) -> Flow[None]:
        """Log in through Dex once, before the first call, when username/password were given."""
        if not self._logged_in:
            yield from self.login()

    def login(self) -> Flow[None]:
        assert self._credentials is not None
        start = self.base_url.copy_with(path="/", query=None, fragment=None)
        session = yield from dex_login(self._build, start, self._credentials, self._cookie_name)
        # A new dict, swapped in whole: other threads may be building requests from the old one.
        self._cookies = {**self._cookies, **session}
        self._logged_in = True

    # -- sending with retries -----------------------------------------------------------------------------------

    def backoff_delay(self, attempt: int) -> float:
        """Exponential backoff with jitter: half fixed, half random, so concurrent callers spread out."""
        delay = min(BACKOFF_CAP, self.backoff * 2.0**attempt)
        return delay / 2 + self._random.uniform(0, delay / 2)

    def send(
        self, method: str, path: str, content: bytes | None = None, *, retries: int | None = None
    ) -> Flow[tuple[httpx.Response, int]]:
        """Send with retries (and one fresh Dex login if the session expired); value: (final response, attempts).

        Raises PredictError for a transport error that is not retried or outlives the retries.
        """
        yield from self.ensure_login()
        limit = self.retries if retries is None else retries
        idempotent = method in ("GET", "HEAD", "OPTIONS")
        attempt, relogged = 0, False
        while True:
            request = self.request(method, path, content)
            try:
                response = yield from fetch(request)
            except httpx.TransportError as exc:
                retriable = isinstance(exc, _NOT_SENT) or idempotent or self.retry_non_idempotent
                if not retriable or attempt >= limit:
                    raise self._transport_error(exc, request, attempt + 1, retriable) from exc
                delay, why = self.backoff_delay(attempt), type(exc).__name__
            else:
                status = response.status_code
                if self._credentials and not relogged and is_login_redirect(response):
                    log.info("session expired (redirect to %s): logging in again", response.headers["location"])
                    yield from self.login()
                    relogged = True
                    continue
                retriable = status in (429, 503) or idempotent or self.retry_non_idempotent
                if status not in RETRY_STATUSES or not retriable or attempt >= limit:
                    return response, attempt + 1
                after = retry_after_seconds(response.headers.get("retry-after"))
                delay = after if after is not None else self.backoff_delay(attempt)
                why = f"{status} {server_message(response)}".strip()
            attempt += 1
            log.info("%s %s: %s; retry %d of %d in %.1f s", method, request.url, why, attempt, limit, delay)
            yield from pause(delay)

    def _transport_error(
        self, exc: httpx.TransportError, request: httpx.Request, attempts: int, retriable: bool
    ) -> PredictError:
        url = str(request.url.copy_with(userinfo=b""))
        tries = f" (after {attempts} attempts)" if attempts > 1 else ""
        detail = str(exc) or type(exc).__name__
        if isinstance(exc, _NOT_SENT):
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
                f"no answer from {url} within {self.timeout:g} s{tries}{not_retried}", url=url,
                hint="raise timeout= (--timeout): the first call after a scale from zero waits for the pod, and "
                "TorchServe may hold a request up to the model's responseTimeout",
            )
        return PredictError(
            f"the connection to {url} failed{tries}: {detail}{not_retried}", url=url,
            hint="the server closed the connection: look at the predictor's logs (kubectl logs POD -c "
            "kserve-container)",
        )

    # -- reading answers ----------------------------------------------------------------------------------------

    def error_for(
        self, response: httpx.Response, attempts: int, *, model: str | None = None, listing: str | None = None
    ) -> PredictError:
        """The PredictError for a non-2xx answer, with the hint that fixes it."""
        status = response.status_code
        url = str(response.request.url.copy_with(userinfo=b""))
        body = response.text[:_BODY_KEEP]
        said = server_message(response)
        tries = f" (after {attempts} attempts)" if attempts > 1 else ""
        head = f"{response.request.method} {url} answered {status} {response.reason_phrase}".rstrip() + tries

        def error(message: str, hint: str | None) -> PredictError:
            return PredictError(message, status=status, url=url, body=body, hint=hint)

        if response.is_redirect:
            location = response.headers.get("location", "")
            if is_login_redirect(response):
                return error(f"{head}: redirected to the login page ({location}): session expired or not logged in",
                             LOGIN_HINT)
            return error(f"{head}: redirected to {location}; the client does not follow redirects",
                         "use the redirect target as base_url (for example https:// instead of http://)")
        if status in (401, 403):
            if "rbac" in said.lower():
                hint = ("an Istio AuthorizationPolicy denied the call: the token's service account (or the cookie's "
                        "user) needs access to the InferenceService's namespace")
            elif not self.has_credentials:
                hint = "no credentials were sent: " + TOKEN_HINT + ", or give a session cookie"
            else:
                hint = "the credentials were refused: " + LOGIN_HINT
            return error(f"{head}: {said or 'not authorised'}", hint)
        if status == 404 and model is not None:
            message = f"model {model!r} not found at {url}" + (f": {said}" if said else "")
            hint = MODEL_NAME_HINT
            if listing is not None:
                message += f"; {listing}"
            if self.host and (listing is None or "lists no models" in listing or "could not list" in listing):
                hint += f"; and check the Host header ({self.host}): the gateway answers 404 for an unknown host"
            return error(message, hint)
        hints = {
            400: "the server rejected the request: check that the instances have the shape the model's handler "
            "expects",
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
        return error(f"{head}" + (f": {said}" if said else ""), hints.get(status))

    def v1_json(self, response: httpx.Response, what: str) -> dict[str, Any]:
        """The JSON object of a 2xx answer; PredictError when it is not one (not a KServe v1 endpoint)."""
        url = str(response.request.url.copy_with(userinfo=b""))
        kind = response.headers.get("content-type", "no content-type").split(";")[0]
        try:
            data = json.loads(response.content)
        except ValueError:
            data = None
        if not isinstance(data, dict):
            shown = "a JSON " + type(data).__name__ if data is not None else f"{kind}, not JSON"
            raise PredictError(
                f"{url} answered {response.status_code} with {shown}: this is not a KServe v1 endpoint "
                f"(expected {what})", status=response.status_code, url=url, body=response.text[:_BODY_KEEP],
                hint=NOT_V1_HINT,
            )
        return data

    # -- the calls ----------------------------------------------------------------------------------------------

    def model_names(self) -> Flow[list[str]]:
        """GET /v1/models -> the names the server serves."""
        response, attempts = yield from self.send("GET", "/v1/models")
        if not response.is_success:
            raise self.error_for(response, attempts)
        data = self.v1_json(response, '{"models": [...]}')
        models = data.get("models")
        if not isinstance(models, list) or not all(isinstance(m, str) for m in models):
            raise PredictError(
                f"{response.request.url} did not list models as {{\"models\": [names]}}: this is not a KServe v1 "
                "endpoint", status=response.status_code, url=str(response.request.url), body=response.text[:_BODY_KEEP],
                hint=NOT_V1_HINT,
            )
        return list(models)

    def _listing(self) -> Flow[str]:
        """What the server serves, said for a 404 message; never raises."""
        try:
            names = yield from self.model_names()
        except PredictError as exc:
            return f"could not list the models the server has ({exc.message.splitlines()[0]})"
        if not names:
            return "the server lists no models"
        return "the server has: " + ", ".join(names)

    def ready(self, model: str) -> Flow[bool]:
        """GET /v1/models/M once: True when ready; False when not (yet): 503, 502/504, no route, no connection.

        Raises PredictError for what waiting cannot fix: a model name the server does not have, auth failures,
        an answer that is not KServe v1.
        """
        path = f"/v1/models/{quote(check_model(model), safe='')}"
        try:
            response, attempts = yield from self.send("GET", path, retries=0)
        except PredictError as exc:
            if exc.status is None:  # no connection yet
                log.info("%s not ready: %s", model, exc.message)
                return False
            raise
        status = response.status_code
        if response.is_success:
            data = self.v1_json(response, '{"name": ..., "ready": ...}')
            if "ready" not in data:
                raise PredictError(
                    f"{response.request.url} answered without a \"ready\" field: this is not a KServe v1 endpoint",
                    status=status, url=str(response.request.url), body=response.text[:_BODY_KEEP], hint=NOT_V1_HINT,
                )
            return data["ready"] is True
        if status in RETRY_STATUSES:
            log.info("%s not ready: %s %s", model, status, server_message(response))
            return False
        if status == 404:
            try:
                names = yield from self.model_names()
            except PredictError:
                names = None  # no listing either: a route that does not exist yet, or a wrong Host
            if names is None or model in names:
                log.info("%s not ready: 404 and the server does not list it (yet)", model)
                return False
            listing = "the server has: " + ", ".join(names) if names else "the server lists no models"
            raise self.error_for(response, attempts, model=model, listing=listing)
        raise self.error_for(response, attempts, model=model)

    def infer(self, model: str, content: bytes, verb: str) -> Flow[dict[str, Any]]:
        """POST a whole body to /v1/models/M:VERB; value: the answer's JSON object."""
        path = f"/v1/models/{quote(check_model(model), safe='')}:{check_verb(verb)}"
        response, attempts = yield from self.send("POST", path, content)
        if response.status_code == 404:
            listing = yield from self._listing()
            raise self.error_for(response, attempts, model=model, listing=listing)
        if not response.is_success:
            raise self.error_for(response, attempts, model=model)
        return self.v1_json(response, '{"predictions": [...]}')

    def results(self, model: str, chunk: Chunk, verb: str) -> Flow[list[Any]]:
        """One chunk's predictions (or explanations): as many as instances were sent, in order."""
        content = b'{"instances":[' + b",".join(chunk.parts) + b"]}"
        data = yield from self.infer(model, content, verb)
        key = _RESULT_KEY[verb]
        values = data.get(key)
        url = self.url_of(f"/v1/models/{quote(model, safe='')}:{verb}")
        if not isinstance(values, list):
            keys = ", ".join(sorted(map(str, data))) or "none"
            raise PredictError(
                f"{url} answered without a {key!r} list (keys: {keys}): this is not a KServe v1 answer",
                url=url, body=json.dumps(data)[:_BODY_KEEP], hint=NOT_V1_HINT,
            )
        if len(values) != len(chunk.parts):
            raise PredictError(
                f"{url} answered {len(values)} {key} for {len(chunk.parts)} instances: the answers cannot be matched "
                "to the instances", url=url, body=json.dumps(data)[:_BODY_KEEP],
                hint="the handler must answer one result per instance; the stock TorchServe kserve envelope with "
                "batchSize > 1 breaks this (build the archive with mar-build, whose handlers own the envelope)",
            )
        return values


def cookie_jar_that_keeps_nothing() -> Any:
    """A cookie jar for the httpx client that stores nothing: the session cookie is sent explicitly, and a server's
    Set-Cookie must not change what later calls send behind the caller's back."""
    import http.cookiejar

    return http.cookiejar.CookieJar(policy=http.cookiejar.DefaultCookiePolicy(allowed_domains=[]))


def build_session(
    build: RequestBuilder,
    base_url: httpx.URL,
    *,
    host: str | None,
    token: str | None,
    cookie: str | None,
    cookie_name: str,
    cookies: dict[str, str] | None,
    username: str | None,
    password: str | None,
    dex_connector: str,
    timeout: float,
    retries: int,
    retry_non_idempotent: bool,
    backoff: float,
) -> Session:
    """Check the constructor's arguments and build the Session; PredictError names the bad one."""
    if not isinstance(timeout, (int, float)) or timeout <= 0:
        raise PredictError(f"timeout must be a positive number of seconds, not {timeout!r}")
    if not isinstance(retries, int) or retries < 0:
        raise PredictError(f"retries must be an integer >= 0, not {retries!r}")
    if not isinstance(backoff, (int, float)) or backoff < 0:
        raise PredictError(f"backoff must be a number of seconds >= 0, not {backoff!r}")
    if not isinstance(cookie_name, str) or not COOKIE_NAME_RE.match(cookie_name):
        raise PredictError(f"cookie_name must be a cookie name such as {AUTHSERVICE_COOKIE}, not {cookie_name!r}")
    if (username is None) != (password is None):
        raise PredictError("username and password go together: give both for a Dex login")
    given = [name for name, value in (("token", token), ("cookie", cookie), ("username/password", username))
             if value is not None]
    if len(given) > 1:
        raise PredictError(f"give one way to authenticate, not {' and '.join(given)}",
                           hint="a token (Authorization: Bearer), a session cookie, or a Dex username/password")
    if token is not None and (not token.strip() or any(c in token for c in "\r\n\0")):
        raise PredictError("the token is empty or holds a line break", hint=TOKEN_HINT)
    if host is not None and (not host.strip() or any(c in host for c in "/\r\n\0 ")):
        raise PredictError(f"host must be a host name such as NAME.NAMESPACE.example.com, not {host!r}")
    jar: dict[str, str] = {}
    for name, value in (cookies or {}).items():
        jar.update(parse_cookie(f"{name}={value}", name))
    if cookie is not None:
        jar.update(parse_cookie(cookie, cookie_name or AUTHSERVICE_COOKIE))
    credentials = Credentials(username, password, dex_connector) if username and password is not None else None
    return Session(
        build, base_url=base_url, host=host.strip() if host else None, token=token.strip() if token else None,
        cookies=jar, credentials=credentials, cookie_name=cookie_name, timeout=float(timeout), retries=retries,
        retry_non_idempotent=retry_non_idempotent, backoff=float(backoff),
    )


def check_base_url(base_url: str | httpx.URL) -> httpx.URL:
    """The server root as an httpx.URL; PredictError for a URL without scheme or one that names an endpoint."""
    text = str(base_url).strip()
    if not re.match(r"^https?://", text, re.IGNORECASE):
        raise PredictError(f"base_url must start with http:// or https://, not {text!r}",
                           hint=f"for example http://{text.split('://')[-1] or 'localhost:8080'}")
    try:
        url = httpx.URL(text)
    except httpx.InvalidURL as exc:
        raise PredictError(f"base_url {text!r} is not a URL: {exc}") from exc
    if not url.host:
        raise PredictError(f"base_url {text!r} has no host")
    if "/v1/models" in url.path:
        root = str(url.copy_with(path=url.path.split("/v1/models")[0] or "/", query=None))
        raise PredictError(f"base_url {text!r} names an endpoint; give the server root",
                           hint=f"base_url={root!r}, and the model name to predict()")
    return url

