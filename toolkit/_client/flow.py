"""Sans-I/O flows: the client's logic is written once as generators, and the sync and async clients drive them.

A flow yields what it needs done (an ``httpx.Request`` to send, or a ``Sleep``) and receives the answer: the
``httpx.Response``, or the ``httpx.TransportError`` (no answer) or ``httpx.DecodingError`` (an answer whose body does
not decode) thrown in at the yield. Its return value is the result. This keeps retries, logins and error handling
identical in ``Client`` and ``AsyncClient`` (the same idea as h11's).
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Generator
from dataclasses import dataclass
from typing import Any, Protocol, TypeAlias, TypeVar

import anyio
import httpx

T = TypeVar("T")
# What sending can raise that the flow handles: no answer, or an answer whose body does not decode.
_THROWN_IN = (httpx.TransportError, httpx.DecodingError)


@dataclass(frozen=True)
class Sleep:
    """Wait this long before the next step (a retry backoff)."""

    seconds: float


Step: TypeAlias = httpx.Request | Sleep
Flow: TypeAlias = Generator[Step, httpx.Response | None, T]


class RequestBuilder(Protocol):
    """``httpx.Client.build_request`` / ``httpx.AsyncClient.build_request`` (base URL and default headers merged)."""

    def __call__(self, method: str, url: httpx.URL | str, **kwargs: Any) -> httpx.Request: ...


def fetch(request: httpx.Request) -> Flow[httpx.Response]:
    """Send ``request``; the flow's value is the response (a TransportError or DecodingError is raised at the yield)."""
    response = yield request
    assert response is not None, "the driver answers a request with a response"
    return response


def pause(seconds: float) -> Flow[None]:
    """Sleep ``seconds`` (skipped when 0)."""
    if seconds > 0:
        yield Sleep(seconds)


def run_sync(flow: Flow[T], send: Callable[[httpx.Request], httpx.Response]) -> T:
    """Drive ``flow`` with a blocking ``send``; return its value or raise what it raised."""
    try:
        step = next(flow)
        while True:
            if isinstance(step, Sleep):
                time.sleep(step.seconds)
                step = flow.send(None)
                continue
            try:
                response = send(step)
            except _THROWN_IN as exc:
                step = flow.throw(exc)
            else:
                step = flow.send(response)
    except StopIteration as stop:
        value: T = stop.value
        return value
    finally:
        flow.close()


async def run_async(flow: Flow[T], send: Callable[[httpx.Request], Awaitable[httpx.Response]]) -> T:
    """Drive ``flow`` with an async ``send`` (asyncio or trio, through anyio)."""
    try:
        step = next(flow)
        while True:
            if isinstance(step, Sleep):
                await anyio.sleep(step.seconds)
                step = flow.send(None)
                continue
            try:
                response = await send(step)
            except _THROWN_IN as exc:
                step = flow.throw(exc)
            else:
                step = flow.send(response)
    except StopIteration as stop:
        value: T = stop.value
        return value
    finally:
        flow.close()
