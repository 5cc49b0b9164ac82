"""Client and AsyncClient against the same stand-in server: the same answers, the same errors, the same chunking.

Each test runs once per client; ``call`` hides the difference (asyncio.run for the async one).
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from client_support import V1Model, json_response

from toolkit._client import AsyncClient, Client
from toolkit._errors import PredictError

Call = Callable[..., Any]


@pytest.fixture(params=["sync", "async"])
def call(request: pytest.FixtureRequest) -> Call:
    """call(base_url, method, *args, **client_options): the client method's value, or what it raised."""

    def sync(base_url: str, method: str, *args: Any, **options: Any) -> Any:
        with Client(base_url, backoff=0, **options) as client:
            return getattr(client, method)(*args)

    def async_(base_url: str, method: str, *args: Any, **options: Any) -> Any:
        async def main() -> Any:
            async with AsyncClient(base_url, backoff=0, **options) as client:
                return await getattr(client, method)(*args)

        return asyncio.run(main())

    return sync if request.param == "sync" else async_


def first_instance(request: httpx.Request) -> Any:
    return json.loads(request.content)["instances"][0]


# -- a call split into chunks, one of which fails ------------------------------------------------------------------


def test_a_failing_chunk_is_one_predict_error_naming_the_chunk(call: Call, serve: Any, model: V1Model) -> None:
    def app(request: httpx.Request) -> httpx.Response:
        if request.method == "POST" and first_instance(request) == 4:
            return json_response(500, {"error": "CUDA out of memory"})
        return model(request)

    server = serve(app)
    with pytest.raises(PredictError) as info:
        call(server.url, "predict", "bert", list(range(8)), max_batch=2, concurrency=1)
    assert type(info.value) is PredictError  # not an ExceptionGroup, not a bare httpx error
    assert info.value.message.startswith("chunk 3 of 4 (instances 4-5) failed, so the call failed")
    assert "CUDA out of memory" in info.value.message
    assert info.value.status == 500 and info.value.url == f"{server.url}/v1/models/bert:predict"
    assert [first_instance(r) for r in model.posts()] == [0, 2]  # the chunk after the failed one was never sent


def test_chunks_in_flight_finish_and_the_first_failed_in_order_is_reported(
    call: Call, serve: Any, model: V1Model
) -> None:
    """Chunk 2 fails at once; chunk 1, already sent, is answered (a failure too) only after that. Both clients let
    chunk 1 finish instead of cancelling it, report chunk 1 (the first in instance order), and send no more."""
    chunk_2_failed = threading.Event()

    def app(request: httpx.Request) -> httpx.Response:
        model(request)  # recorded
        if first_instance(request) == 2:
            chunk_2_failed.set()
            return json_response(500, {"error": "chunk 2 broke"})
        assert chunk_2_failed.wait(10), "chunk 2 never came"
        time.sleep(0.3)  # chunk 2's answer reaches the client first
        return json_response(503, {"error": "chunk 1 broke later"})

    server = serve(app)
    with pytest.raises(PredictError) as info:
        call(server.url, "predict", "bert", list(range(8)), max_batch=2, concurrency=2, retries=0)
    assert info.value.message.startswith("chunk 1 of 4 (instances 0-1) failed")
    assert "chunk 1 broke later" in info.value.message
    assert sorted(first_instance(r) for r in model.posts()) == [0, 2]


def test_an_answer_that_does_not_decode_is_a_predict_error(call: Call, serve: Any, model: V1Model) -> None:
    def app(request: httpx.Request) -> httpx.Response:
        if request.method == "POST" and first_instance(request) == 2:
            broken = httpx.Response(200, content=b"this is not gzip")
            broken.headers["Content-Encoding"] = "gzip"  # after the body was set, so it is sent as it is
            return broken
        return model(request)

    server = serve(app)
    with pytest.raises(PredictError) as info:
        call(server.url, "predict", "bert", list(range(4)), max_batch=2, concurrency=1)
    assert type(info.value) is PredictError
    assert info.value.message.startswith("chunk 2 of 2 (instances 2-3) failed")
    assert "cannot be decoded" in info.value.message
    assert "Content-Encoding" in (info.value.hint or "")


def test_a_bug_in_a_chunk_is_raised_as_it_is(call: Call, model: V1Model) -> None:
    """Not a server's answer: the exception itself, in both clients (not wrapped in an ExceptionGroup)."""

    def app(request: httpx.Request) -> httpx.Response:
        if first_instance(request) == 2:
            raise LookupError("a bug in the transport")
        return model(request)

    with pytest.raises(LookupError, match="a bug in the transport"):
        call("http://gateway.test", "predict", "bert", list(range(6)), max_batch=2, concurrency=1,
             transport=httpx.MockTransport(app))
    assert [first_instance(r) for r in model.posts()] == [0]


# -- names checked before any request ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "args"),
    [
        ("predict", (["x"],)),
        ("explain", (["x"],)),
        ("infer", ({"instances": ["x"]},)),
        ("ready", ()),
    ],
)
def test_a_model_name_with_a_trailing_newline_is_refused_before_any_request(
    call: Call, serve: Any, model: V1Model, method: str, args: tuple[Any, ...]
) -> None:
    """`re.match("^...$")` lets "bert\\n" through, and the URL became /v1/models/bert%0A:predict."""
    server = serve(model)
    with pytest.raises(PredictError, match="not a valid model name"):
        call(server.url, method, "bert\n", *args)
    assert model.requests == []


def test_a_cookie_name_with_a_trailing_newline_is_refused(call: Call, model: V1Model) -> None:
    with pytest.raises(PredictError, match="cookie_name must be a cookie name"):
        call("http://gateway.test", "models", cookie_name="authservice_session\n", cookie="abc",
             transport=httpx.MockTransport(model))
    assert model.requests == []


@pytest.mark.parametrize("base_url", ["gateway.test:8080", "ftp://gateway.test", "localhost:8080/http://x"])
def test_a_base_url_without_http_is_refused(call: Call, base_url: str) -> None:
    with pytest.raises(PredictError, match="base_url must start with http:// or https://"):
        call(base_url, "models")


# -- closing ------------------------------------------------------------------------------------------------------


def test_async_close_without_await_is_refused_loudly(model: V1Model) -> None:
    """``close = aclose`` made client.close() a coroutine nobody awaited: nothing closed, nothing said."""

    async def main() -> None:
        client = AsyncClient("http://gateway.test", transport=httpx.MockTransport(model))
        with pytest.raises(TypeError, match=r"await client\.aclose\(\)"):
            client.close()
        assert not client._http.is_closed
        await client.aclose()
        assert client._http.is_closed

    asyncio.run(main())
