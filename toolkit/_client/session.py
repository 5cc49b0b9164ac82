"""What the KServe v1 client does, without I/O: requests, retries, logins, and the calls, as flows.

``Session`` holds the endpoint and credentials; its methods are flows (see ``flow``) that ``Client`` and
``AsyncClient`` drive. Retry rules, by whether the request may have reached the model:
- a connection that was never made (connect error, connect timeout, pool timeout): always retried;
- 503 (the KServe wrapper: model not ready, or overloaded) and 429: retried, for every method;
- 502/504 and a connection lost after sending (read timeout, dropped connection): retried for GET only, and for
  POST only with ``retry_non_idempotent=True``, since the model may already have run the request.
Backoff is exponential with jitter; a ``Retry-After`` header, when present, is honoured up to a bound.
"""

from __future__ import annotations

import email.utils
import logging
import random
import re
import time
from typing import Any
from urllib.parse import quote

import httpx

from .._errors import PredictError
from .._names import model_name_problem
from .answers import (
    MODEL_NAME_HINT,
    NOT_SENT,
    checked_results,
    error_for,
    not_v1,
    server_message,
    transport_error,
    undecodable_error,
    v1_json,
)
from .auth import (
    AUTHSERVICE_COOKIE,
    TOKEN_HINT,
    Credentials,
    dex_login,
    is_cookie_name,
    is_login_redirect,
    parse_cookie,
)
from .flow import Flow, RequestBuilder, fetch, pause
from .instances import Chunk

log = logging.getLogger("toolkit.client")

VERBS = ("predict", "explain")
RETRY_STATUSES = frozenset({429, 502, 503, 504})
BACKOFF_CAP = 10.0  # seconds, the longest computed backoff
RETRY_AFTER_CAP = 30.0  # seconds, the longest Retry-After honoured
_RESULT_KEY = {"predict": "predictions", "explain": "explanations"}


def check_model(model: str) -> str:
    """``model`` if it is a TorchServe model name (the URL segment); PredictError before any request otherwise."""
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

        Raises PredictError for a transport error that is not retried or outlives the retries, and for an answer
        whose body does not decode.
        """
        yield from self.ensure_login()
        limit = self.retries if retries is None else retries
        idempotent = method in ("GET", "HEAD", "OPTIONS")
        attempt, relogged = 0, False
        while True:
            request = self.request(method, path, content)
            try:
                response = yield from fetch(request)
            except httpx.DecodingError as exc:
                raise undecodable_error(exc, request) from exc
            except httpx.TransportError as exc:
                retriable = isinstance(exc, NOT_SENT) or idempotent or self.retry_non_idempotent
                if not retriable or attempt >= limit:
                    raise transport_error(exc, request, attempt + 1, retriable=retriable,
                                          timeout=self.timeout) from exc
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

    def error_for(
        self, response: httpx.Response, attempts: int, *, model: str | None = None, listing: str | None = None
    ) -> PredictError:
        """The PredictError for a non-2xx answer (see answers.error_for), with this session's Host and credentials."""
        return error_for(response, attempts, host=self.host, has_credentials=self.has_credentials, model=model,
                         listing=listing)

    # -- the calls ----------------------------------------------------------------------------------------------

    def model_names(self) -> Flow[list[str]]:
        """GET /v1/models -> the names the server serves."""
        response, attempts = yield from self.send("GET", "/v1/models")
        if not response.is_success:
            raise self.error_for(response, attempts)
        models = v1_json(response, '{"models": [...]}').get("models")
        if not isinstance(models, list) or not all(isinstance(m, str) for m in models):
            raise not_v1(response, 'did not list models as {"models": [names]}')
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
            data = v1_json(response, '{"name": ..., "ready": ...}')
            if "ready" not in data:
                raise not_v1(response, 'answered without a "ready" field')
            # The stock 0.9.0 image's wrapper says "True", a string (pydantic 1 coerces the bool).
            return data["ready"] is True or data["ready"] == "True"
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
        return v1_json(response, '{"predictions": [...]}')

    def results(self, model: str, chunk: Chunk, verb: str) -> Flow[list[Any]]:
        """One chunk's predictions (or explanations): as many as instances were sent, in order."""
        content = b'{"instances":[' + b",".join(chunk.parts) + b"]}"
        data = yield from self.infer(model, content, verb)
        url = self.url_of(f"/v1/models/{quote(model, safe='')}:{verb}")
        return checked_results(data, _RESULT_KEY[verb], len(chunk.parts), url)


def cookie_jar_that_keeps_nothing() -> Any:
    """A cookie jar for the httpx client that stores nothing: the session cookie is sent explicitly, and a server's
    Set-Cookie must not change what later calls send behind the caller's back."""
    import http.cookiejar

    return http.cookiejar.CookieJar(policy=http.cookiejar.DefaultCookiePolicy(allowed_domains=[]))


def _check_options(timeout: Any, retries: Any, backoff: Any, cookie_name: Any) -> None:
    if not isinstance(timeout, (int, float)) or timeout <= 0:
        raise PredictError(f"timeout must be a positive number of seconds, not {timeout!r}")
    if not isinstance(retries, int) or retries < 0:
        raise PredictError(f"retries must be an integer >= 0, not {retries!r}")
    if not isinstance(backoff, (int, float)) or backoff < 0:
        raise PredictError(f"backoff must be a number of seconds >= 0, not {backoff!r}")
    if not is_cookie_name(cookie_name):
        raise PredictError(f"cookie_name must be a cookie name such as {AUTHSERVICE_COOKIE}, not {cookie_name!r}")


def _check_auth(token: str | None, cookie: str | None, username: str | None, password: str | None) -> None:
    if (username is None) != (password is None):
        raise PredictError("username and password go together: give both for a Dex login")
    given = [name for name, value in (("token", token), ("cookie", cookie), ("username/password", username))
             if value is not None]
    if len(given) > 1:
        raise PredictError(f"give one way to authenticate, not {' and '.join(given)}",
                           hint="a token (Authorization: Bearer), a session cookie, or a Dex username/password")
    if token is not None and (not token.strip() or any(c in token for c in "\r\n\0")):
        raise PredictError("the token is empty or holds a line break", hint=TOKEN_HINT)


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
    _check_options(timeout, retries, backoff, cookie_name)
    _check_auth(token, cookie, username, password)
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
    if not text.lower().startswith(("http://", "https://")):
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
