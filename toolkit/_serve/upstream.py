"""The local wrapper's calls to TorchServe: one keep-alive aiohttp session, and TorchServe's non-2xx answers kept.

Imported by wrapper.py after kserve (whose import must not see the wrapper's command line).
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import aiohttp
import orjson
from kserve.model import append_forwardable_headers

from .._front_door import V1Request, too_large_message
from .._layout import TS_DEFAULT_MAX_REQUEST
from .stock import stock_error, stock_transport_error

UNREACHABLE_STATUS = 502
MAX_UPSTREAM_CONNECTIONS = 100


class UpstreamError(Exception):
    """TorchServe answered a non-2xx status: the client gets that status and body unchanged."""

    def __init__(self, status: int, body: bytes, content_type: str | None) -> None:
        super().__init__(f"TorchServe answered {status}")
        self.status = status
        self.body = body
        self.content_type = content_type

    @classmethod
    def from_answer(cls, status: int, reason: str | None, body: bytes, content_type: str | None) -> UpstreamError:
        if not body.strip():
            # Netty's own rejections (413 too large, ...) may have no body; say what the status line said.
            body = json.dumps({"error": reason or str(status)}).encode()
            content_type = "application/json"
        elif content_type is None:
            # TorchServe sends a handler's answer without a content type; ours are JSON.
            try:
                json.loads(body)
                content_type = "application/json"
            except ValueError:
                content_type = "text/plain; charset=utf-8"
        return cls(status, body, content_type)


class TorchServeUpstream:
    """Keep-alive HTTP/1.1 calls to TorchServe's inference address, shared by every model of this wrapper.

    kserve's own predictor client is httpx: measured here in front of a stand-in that answers at once, the wrapper
    spent 3.3 ms of CPU per request with it (5.7 ms where ``sniffio`` is missing: httpcore then retries that import
    on every call), most of it in httpcore's pool checking every idle connection on each request; with aiohttp (a
    kserve dependency) 1.0 ms (benchmarks/README.md).
    """

    def __init__(
        self, base_url: str, timeout_s: float, max_request_size: int = TS_DEFAULT_MAX_REQUEST, *, stock: bool = False
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout_s = timeout_s
        self.max_request_size = max_request_size
        self.stock = stock  # answer TorchServe's errors as the stock image's wrapper does (stock.py)
        self._session: aiohttp.ClientSession | None = None

    def _open(self) -> aiohttp.ClientSession:
        # Created on first use, inside the server's event loop (an aiohttp session belongs to one loop).
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                # At most this many requests in flight to TorchServe, as with kserve's httpx client (its default
                # pool): beyond it requests wait here instead of overflowing TorchServe's job queue (503s).
                connector=aiohttp.TCPConnector(limit=MAX_UPSTREAM_CONNECTIONS, keepalive_timeout=60),
                timeout=aiohttp.ClientTimeout(total=self.timeout_s),
                # The body is bytes we serialised; aiohttp's default JSON and cookie handling are not needed.
                cookie_jar=aiohttp.DummyCookieJar(),
                skip_auto_headers=("User-Agent",),
                auto_decompress=False,
            )
        return self._session

    async def call(self, name: str, verb: str, payload: Any, headers: dict[str, str] | None) -> Any:
        """POST ``payload`` (bytes as they are, else encoded as JSON) to ``/v1/models/NAME:VERB``; the decoded JSON
        answer, or ``UpstreamError``."""
        # The stock wrapper's explain sends no Content-Type (kserve 0.11.1 Model.explain).
        send = append_forwardable_headers(headers, {} if self.stock and verb == "explain"
                                          else {"content-type": "application/json"})
        url = f"{self.base_url}/v1/models/{name}:{verb}"
        data = payload.raw if isinstance(payload, V1Request) else payload
        body = await self._post(name, verb, url, data if isinstance(data, bytes) else orjson.dumps(data), send)
        try:
            return orjson.loads(body)
        except orjson.JSONDecodeError as exc:
            raise _bad_gateway(f"TorchServe's answer for model {name} is not JSON: {body[:200]!r}") from exc

    async def infer_v2(self, name: str, raw: bytes, headers: dict[str, str]) -> bytes:
        """POST a v2 body, as received, to TorchServe's ``/v2/models/NAME/infer`` (the one v2 path it routes: a
        versioned URL is its own 404 there); the handler's answer, or ``UpstreamError``."""
        return await self._post(name, "infer", f"{self.base_url}/v2/models/{name}/infer", raw, headers)

    async def _post(self, name: str, verb: str, url: str, data: bytes, send: dict[str, str]) -> bytes:
        try:
            async with self._open().post(url, data=data, headers=send) as response:
                body = await response.read()
                if self.stock and response.status >= 300:
                    answer = stock_error(verb, response.status, response.reason or "", body,
                                         response.headers.get("content-type"), url)
                    raise UpstreamError(500, answer, "application/json")
                if response.status == 413 and not body.strip():
                    body = json.dumps({"error": too_large_message(self.max_request_size)}).encode()
                if response.status >= 300:
                    raise UpstreamError.from_answer(
                        response.status, response.reason, body, response.headers.get("content-type")
                    )
                return body
        except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
            if self.stock:
                raise UpstreamError(500, stock_transport_error(exc), "application/json") from exc
            raise _unreachable(name, exc) from exc

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None


def _unreachable(name: str, exc: Exception) -> UpstreamError:
    return _bad_gateway(f"TorchServe did not answer for model {name}: {type(exc).__name__}: {exc}")


def _bad_gateway(message: str) -> UpstreamError:
    return UpstreamError(UNREACHABLE_STATUS, json.dumps({"error": message}).encode(), "application/json")
