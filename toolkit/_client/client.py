"""A KServe v1 client for models served by mar-build: ``Client`` (sync) and ``AsyncClient``, modelled on httpx.

    with Client("http://localhost:8080", host="torchserve.kubeflow-user-example-com.example.com",
                cookie=SESSION) as client:
        client.predict("bert", [{"data": "Hello World!"}])          # -> [4]

Every call has a timeout; retries happen only where they are safe (see ``session``); answers are checked to be
KServe v1 (one prediction per instance, in order); every failure is a ``PredictError`` with the status, URL, body and
a hint. The logic lives in sans-I/O flows shared by both clients (``session``, ``auth``), and a call split into
chunks fails the same way in both (``instances``).
"""

from __future__ import annotations

import logging
import os
import ssl
import time
from collections.abc import Mapping, Sequence
from importlib import metadata
from types import TracebackType
from typing import Any, NoReturn

import anyio
import httpx

from .._errors import PredictError
from .auth import AUTHSERVICE_COOKIE, OAUTH2_PROXY_COOKIE
from .flow import Flow, RequestBuilder, T, run_async, run_sync
from .instances import (
    Chunk,
    encode_instances,
    encode_json,
    instances_from_json,
    plan_chunks,
    run_chunks,
    run_chunks_async,
)
from .isvc import resolve_inference_service
from .session import Session, build_session, check_base_url, check_verb, cookie_jar_that_keeps_nothing

__all__ = ["AUTHSERVICE_COOKIE", "OAUTH2_PROXY_COOKIE", "AsyncClient", "Client", "instances_from_json"]

log = logging.getLogger("toolkit.client")

_READY_POLL = 1.0  # seconds between readiness probes while waiting


def _user_agent() -> str:
    try:
        return f"mar-build/{metadata.version('mar-build')}"
    except metadata.PackageNotFoundError:
        return "mar-build"


class _Base:
    """What both clients share: arguments, the Session, the chunking plan."""

    _session: Session

    def __init__(
        self,
        base_url: str | httpx.URL,
        build: RequestBuilder,
        *,
        host: str | None,
        token: str | None,
        cookie: str | None,
        cookie_name: str,
        cookies: Mapping[str, str] | None,
        username: str | None,
        password: str | None,
        dex_connector: str,
        timeout: float,
        retries: int,
        retry_non_idempotent: bool,
        max_batch: int | None,
        concurrency: int,
        backoff: float,
    ) -> None:
        if max_batch is not None and (not isinstance(max_batch, int) or max_batch < 1):
            raise PredictError(f"max_batch must be an integer >= 1 (or None), not {max_batch!r}")
        if not isinstance(concurrency, int) or concurrency < 1:
            raise PredictError(f"concurrency must be an integer >= 1, not {concurrency!r}")
        self.base_url = check_base_url(base_url)
        self.max_batch = max_batch
        self.concurrency = concurrency
        # The session checks the remaining arguments before any connection pool exists.
        self._session = build_session(
            build, self.base_url, host=host, token=token, cookie=cookie, cookie_name=cookie_name,
            cookies=dict(cookies) if cookies else None, username=username, password=password,
            dex_connector=dex_connector, timeout=timeout, retries=retries,
            retry_non_idempotent=retry_non_idempotent, backoff=backoff,
        )

    @property
    def host(self) -> str | None:
        """The Host header sent (ingress routing), or None."""
        return self._session.host

    @property
    def timeout(self) -> float:
        return self._session.timeout

    @property
    def retries(self) -> int:
        return self._session.retries

    def _plan(self, instances: Sequence[Any]) -> list[Chunk]:
        return plan_chunks(encode_instances(instances), self.max_batch)

    def __repr__(self) -> str:  # never the token or cookies
        host = f", host={self.host!r}" if self.host else ""
        return f"{type(self).__name__}({str(self.base_url)!r}{host})"


def _limits(concurrency: int) -> httpx.Limits:
    # Enough pooled connections for the chunks in flight, so concurrency is not capped by the pool.
    return httpx.Limits(max_connections=max(concurrency, 10), max_keepalive_connections=max(concurrency, 10))


def _infer_content(body: Mapping[str, Any]) -> bytes:
    if not isinstance(body, Mapping):
        raise PredictError(f"body must be a JSON object (a dict), not {type(body).__name__}",
                           hint='for example {"instances": [...]}')
    return encode_json(dict(body), "the body")


class Client(_Base):
    """A blocking KServe v1 client (see the module docstring). Use as a context manager, or call close()."""

    _http: httpx.Client

    def __init__(
        self,
        base_url: str | httpx.URL,
        *,
        host: str | None = None,
        token: str | None = None,
        cookie: str | None = None,
        cookie_name: str = AUTHSERVICE_COOKIE,
        cookies: Mapping[str, str] | None = None,
        username: str | None = None,
        password: str | None = None,
        dex_connector: str = "local",
        timeout: float = 30.0,
        retries: int = 3,
        retry_non_idempotent: bool = False,
        max_batch: int | None = None,
        concurrency: int = 4,
        headers: Mapping[str, str] | None = None,
        transport: httpx.BaseTransport | None = None,
        verify: ssl.SSLContext | str | bool = True,
        backoff: float = 0.5,
    ) -> None:
        """Connect to the KServe v1 server at ``base_url`` (its root; the ingress gateway with ``host=``).

        Auth: ``token`` (Authorization: Bearer), ``cookie`` ("name=value" or the value of ``cookie_name``:
        authservice_session on Kubeflow <= 1.8, oauth2_proxy_kubeflow on >= 1.9), or ``username``/``password``
        for a Dex login at the first call (again when the session expires). ``timeout`` applies to every request;
        ``retries`` bounds retries (``backoff`` seconds, doubling, with jitter); ``max_batch`` splits predict()
        into chunks sent ``concurrency`` at a time. Raises PredictError for an invalid argument.
        """
        super().__init__(
            base_url, lambda method, url, **kw: self._http.build_request(method, url, **kw),
            host=host, token=token, cookie=cookie, cookie_name=cookie_name, cookies=cookies,
            username=username, password=password, dex_connector=dex_connector, timeout=timeout, retries=retries,
            retry_non_idempotent=retry_non_idempotent, max_batch=max_batch, concurrency=concurrency, backoff=backoff,
        )
        self._http = httpx.Client(
            base_url=self.base_url, headers={"User-Agent": _user_agent(), **(headers or {})},
            timeout=httpx.Timeout(timeout), transport=transport, verify=verify, follow_redirects=False,
            cookies=cookie_jar_that_keeps_nothing(), limits=_limits(concurrency),
        )

    @classmethod
    def for_inference_service(
        cls,
        name: str,
        namespace: str,
        *,
        gateway: str | None = None,
        api_client: Any = None,
        kubeconfig: str | os.PathLike[str] | None = None,
        context: str | None = None,
        **options: Any,
    ) -> Client:
        """A Client for InferenceService ``namespace/name``, its address read through the Kubernetes API.

        Inside the cluster it calls the cluster-local address; outside, ``gateway`` (e.g. http://localhost:8080
        after a port-forward of istio-ingressgateway) with the Host of status.url. ``options`` are the
        constructor's (token, cookie, username/password, timeout, ...). Raises PredictError when the
        InferenceService is missing or not ready.
        """
        base_url, host = resolve_inference_service(
            name, namespace, gateway=gateway, api_client=api_client, kubeconfig=kubeconfig, context=context,
            timeout=float(options.get("timeout", 30.0)),
        )
        options.setdefault("host", host)
        return cls(base_url, **options)

    # -- plumbing -------------------------------------------------------------------------------------------------

    def _run(self, flow: Flow[T]) -> T:
        return run_sync(flow, self._http.send)

    def close(self) -> None:
        """Close the connections."""
        self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    # -- the API --------------------------------------------------------------------------------------------------

    def ready(self, model: str, wait: float = 0.0) -> bool:
        """Whether ``model`` is ready (GET /v1/models/M); with ``wait`` > 0, poll up to that many seconds.

        Raises PredictError for what waiting cannot fix (unknown model name, auth, not a KServe endpoint).
        """
        deadline = time.monotonic() + max(wait, 0.0)
        while True:
            if self._run(self._session.ready(model)):
                return True
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            time.sleep(min(_READY_POLL, left))

    def models(self) -> list[str]:
        """The model names the server serves (GET /v1/models)."""
        return self._run(self._session.model_names())

    def infer(self, model: str, body: Mapping[str, Any], verb: str = "predict") -> dict[str, Any]:
        """POST ``body`` as is to /v1/models/M:VERB (predict or explain); the whole JSON answer."""
        content = _infer_content(body)
        return self._run(self._session.infer(model, content, check_verb(verb)))

    def predict(self, model: str, instances: Sequence[Any]) -> list[Any]:
        """The predictions for ``instances`` (a list or tuple of JSON values): as many, in the same order.

        With ``max_batch`` the instances go in chunks, ``concurrency`` at a time; any chunk failing fails the call.
        Raises PredictError (with status, url, body and a hint).
        """
        return self._results(model, instances, "predict")

    def explain(self, model: str, instances: Sequence[Any]) -> list[Any]:
        """The explanations for ``instances`` (POST /v1/models/M:explain), like predict()."""
        return self._results(model, instances, "explain")

    def _results(self, model: str, instances: Sequence[Any], verb: str) -> list[Any]:
        chunks = self._plan(instances)
        if not chunks:
            return []
        self._run(self._session.ensure_login())  # once, before chunks run in parallel
        return run_chunks(chunks, lambda chunk: self._run(self._session.results(model, chunk, verb)), self.concurrency)


class AsyncClient(_Base):
    """The async twin of Client (asyncio or trio): the same constructor and methods, awaited."""

    _http: httpx.AsyncClient

    def __init__(
        self,
        base_url: str | httpx.URL,
        *,
        host: str | None = None,
        token: str | None = None,
        cookie: str | None = None,
        cookie_name: str = AUTHSERVICE_COOKIE,
        cookies: Mapping[str, str] | None = None,
        username: str | None = None,
        password: str | None = None,
        dex_connector: str = "local",
        timeout: float = 30.0,
        retries: int = 3,
        retry_non_idempotent: bool = False,
        max_batch: int | None = None,
        concurrency: int = 4,
        headers: Mapping[str, str] | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        verify: ssl.SSLContext | str | bool = True,
        backoff: float = 0.5,
    ) -> None:
        """See Client.__init__."""
        super().__init__(
            base_url, lambda method, url, **kw: self._http.build_request(method, url, **kw),
            host=host, token=token, cookie=cookie, cookie_name=cookie_name, cookies=cookies,
            username=username, password=password, dex_connector=dex_connector, timeout=timeout, retries=retries,
            retry_non_idempotent=retry_non_idempotent, max_batch=max_batch, concurrency=concurrency, backoff=backoff,
        )
        self._http = httpx.AsyncClient(
            base_url=self.base_url, headers={"User-Agent": _user_agent(), **(headers or {})},
            timeout=httpx.Timeout(timeout), transport=transport, verify=verify, follow_redirects=False,
            cookies=cookie_jar_that_keeps_nothing(), limits=_limits(concurrency),
        )

    @classmethod
    def for_inference_service(
        cls,
        name: str,
        namespace: str,
        *,
        gateway: str | None = None,
        api_client: Any = None,
        kubeconfig: str | os.PathLike[str] | None = None,
        context: str | None = None,
        **options: Any,
    ) -> AsyncClient:
        """See Client.for_inference_service (the Kubernetes lookup itself is a blocking call)."""
        base_url, host = resolve_inference_service(
            name, namespace, gateway=gateway, api_client=api_client, kubeconfig=kubeconfig, context=context,
            timeout=float(options.get("timeout", 30.0)),
        )
        options.setdefault("host", host)
        return cls(base_url, **options)

    async def _run(self, flow: Flow[T]) -> T:
        return await run_async(flow, self._http.send)

    async def aclose(self) -> None:
        """Close the connections."""
        await self._http.aclose()

    def close(self) -> NoReturn:
        """Refused: an AsyncClient is closed with ``await client.aclose()`` or by ``async with``.

        httpx.AsyncClient has no close() at all; this one exists only to say so. A coroutine here (the old
        ``close = aclose``) made ``client.close()`` without await a silent no-op that leaked the connections.
        """
        raise TypeError(
            "AsyncClient.close() cannot close an async client: use `await client.aclose()`, or "
            "`async with AsyncClient(...) as client:`"
        )

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    async def ready(self, model: str, wait: float = 0.0) -> bool:
        """See Client.ready."""
        deadline = time.monotonic() + max(wait, 0.0)
        while True:
            if await self._run(self._session.ready(model)):
                return True
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            await anyio.sleep(min(_READY_POLL, left))

    async def models(self) -> list[str]:
        """See Client.models."""
        return await self._run(self._session.model_names())

    async def infer(self, model: str, body: Mapping[str, Any], verb: str = "predict") -> dict[str, Any]:
        """See Client.infer."""
        content = _infer_content(body)
        return await self._run(self._session.infer(model, content, check_verb(verb)))

    async def predict(self, model: str, instances: Sequence[Any]) -> list[Any]:
        """See Client.predict."""
        return await self._results(model, instances, "predict")

    async def explain(self, model: str, instances: Sequence[Any]) -> list[Any]:
        """See Client.explain."""
        return await self._results(model, instances, "explain")

    async def _results(self, model: str, instances: Sequence[Any], verb: str) -> list[Any]:
        chunks = self._plan(instances)
        if not chunks:
            return []
        await self._run(self._session.ensure_login())  # once, before chunks run in parallel

        async def one(chunk: Chunk) -> list[Any]:
            return await self._run(self._session.results(model, chunk, verb))

        return await run_chunks_async(chunks, one, self.concurrency)
