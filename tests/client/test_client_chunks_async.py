"""Chunked predictions with bounded concurrency, and the AsyncClient twin (driven with asyncio.run)."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import pytest
from client_support import V1Model, json_response

import toolkit._client.client
from toolkit._client.client import AsyncClient, Client
from toolkit._errors import PredictError

BASE = "http://gateway.test:8080"


def first_instance(request: httpx.Request) -> Any:
    return json.loads(request.content)["instances"][0]


# -- chunks, sync -----------------------------------------------------------------------------------------------


def test_chunks_finish_out_of_order_but_come_back_in_order(model: V1Model) -> None:
    """Chunk 0 is held until the last chunk has been answered; the result is still in instance order."""
    last_answered = threading.Event()
    lock = threading.Lock()
    in_flight = peak = 0
    finished: list[int] = []

    def app(request: httpx.Request) -> httpx.Response:
        nonlocal in_flight, peak
        first = first_instance(request)
        with lock:
            in_flight += 1
            peak = max(peak, in_flight)
        try:
            if first == 0:
                assert last_answered.wait(10), "the last chunk never came"
            return model(request)
        finally:
            with lock:
                in_flight -= 1
                finished.append(first)
            if first == 10:
                last_answered.set()

    with Client(BASE, transport=httpx.MockTransport(app), max_batch=2, concurrency=2) as client:
        assert client.predict("bert", list(range(12))) == [2 * x for x in range(12)]
    assert sorted(len(json.loads(r.content)["instances"]) for r in model.posts()) == [2] * 6
    assert finished[-1] == 0  # the first chunk really finished last
    assert peak == 2  # two at a time: concurrency used, and bounded


def test_a_failing_chunk_fails_the_whole_call_and_says_which(model: V1Model) -> None:
    def app(request: httpx.Request) -> httpx.Response:
        if first_instance(request) == 4:
            return json_response(500, {"error": "CUDA out of memory"})
        return model(request)

    with Client(BASE, transport=httpx.MockTransport(app), max_batch=2, concurrency=1) as client:
        with pytest.raises(PredictError) as info:
            client.predict("bert", list(range(8)))
    err = info.value
    assert "chunk 3 of 4 (instances 4-5) failed" in err.message
    assert "no predictions are returned" in err.message
    assert "CUDA out of memory" in err.message
    assert err.status == 500
    # one at a time: the chunk after the failed one was never sent
    assert [first_instance(r) for r in model.posts()] == [0, 2]


def test_chunks_with_a_remainder(model: V1Model) -> None:
    with Client(BASE, transport=httpx.MockTransport(model), max_batch=3, concurrency=4) as client:
        assert client.predict("bert", list(range(7))) == [2 * x for x in range(7)]
    assert sorted(len(json.loads(r.content)["instances"]) for r in model.posts()) == [1, 3, 3]


# -- the async twin ---------------------------------------------------------------------------------------------


def amake(app: Callable[[httpx.Request], Awaitable[httpx.Response]], **options: Any) -> AsyncClient:
    options.setdefault("backoff", 0)
    return AsyncClient(BASE, transport=httpx.MockTransport(app), **options)


def asyncify(app: Callable[[httpx.Request], httpx.Response]) -> Callable[[httpx.Request], Awaitable[httpx.Response]]:
    async def handler(request: httpx.Request) -> httpx.Response:
        await asyncio.sleep(0)
        return app(request)

    return handler


def test_async_predict_explain_infer_models_ready(model: V1Model) -> None:
    async def main() -> None:
        async with amake(asyncify(model), host="torchserve.ns.example.com", token="tok") as client:
            assert await client.predict("bert", [{"data": "abc"}, 4]) == [3, 8]
            assert await client.explain("bert", [1]) == [{"instance": 1, "score": 2}]
            assert await client.infer("bert", {"instances": [2]}) == {"predictions": [4]}
            assert await client.models() == ["bert"]
            assert await client.ready("bert") is True

    asyncio.run(main())
    for request in model.requests:
        assert request.headers["host"] == "torchserve.ns.example.com"
        assert request.headers["authorization"] == "Bearer tok"


def test_async_ready_waits(model: V1Model, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(toolkit._client.client, "_READY_POLL", 0.01)
    model.ready = False
    probes = 0

    async def app(request: httpx.Request) -> httpx.Response:
        nonlocal probes
        probes += 1
        model.ready = probes >= 2
        return model(request)

    async def main() -> bool:
        async with amake(app) as client:
            return await client.ready("bert", wait=30)

    assert asyncio.run(main()) is True
    assert probes == 2


def test_async_retries_503_and_connection_errors_and_not_a_timed_out_post(model: V1Model) -> None:
    answers: list[Any] = [httpx.ConnectError("refused"), json_response(503, {"error": "not ready"}), model]
    attempts = 0

    async def app(request: httpx.Request) -> httpx.Response:
        nonlocal attempts
        attempts += 1
        answer = answers[min(attempts, len(answers)) - 1]
        if isinstance(answer, Exception):
            raise type(answer)(str(answer), request=request)
        return answer(request) if callable(answer) else answer

    async def main() -> list[Any]:
        async with amake(app, retries=3) as client:
            return await client.predict("bert", [3])

    assert asyncio.run(main()) == [6]
    assert attempts == 3

    async def timed_out(request: httpx.Request) -> httpx.Response:
        nonlocal attempts
        attempts += 1
        raise httpx.ReadTimeout("timed out", request=request)

    async def fails() -> None:
        async with amake(timed_out, retries=3, timeout=1.5) as client:
            await client.predict("bert", [3])

    attempts = 0
    with pytest.raises(PredictError, match="no answer from .* within 1.5 s") as info:
        asyncio.run(fails())
    assert attempts == 1
    assert "retry_non_idempotent" in info.value.message


def test_async_errors_match_the_sync_ones(model: V1Model) -> None:
    model.models = ("bert", "sentiment")

    async def main() -> None:
        async with amake(asyncify(model)) as client:
            await client.predict("torchserve", [1])

    with pytest.raises(PredictError) as info:
        asyncio.run(main())
    assert "the server has: bert, sentiment" in info.value.message
    assert "model_snapshot" in (info.value.hint or "")


def test_async_chunks_finish_out_of_order_but_come_back_in_order(model: V1Model) -> None:
    in_flight = peak = 0
    finished: list[int] = []

    async def main() -> list[Any]:
        last_answered = asyncio.Event()

        async def app(request: httpx.Request) -> httpx.Response:
            nonlocal in_flight, peak
            first = first_instance(request)
            in_flight += 1
            peak = max(peak, in_flight)
            try:
                if first == 0:
                    await asyncio.wait_for(last_answered.wait(), 10)
                await asyncio.sleep(0)
                return model(request)
            finally:
                in_flight -= 1
                finished.append(first)
                if first == 15:
                    last_answered.set()

        async with amake(app, max_batch=3, concurrency=3) as client:
            return await client.predict("bert", list(range(18)))

    assert asyncio.run(main()) == [2 * x for x in range(18)]
    assert len(model.posts()) == 6
    assert finished[-1] == 0
    assert peak == 3


def test_async_a_failing_chunk_fails_the_call(model: V1Model) -> None:
    async def app(request: httpx.Request) -> httpx.Response:
        if first_instance(request) == 2:
            return httpx.Response(413, text="Request Entity Too Large")
        return model(request)

    async def main() -> None:
        async with amake(app, max_batch=2, concurrency=1) as client:
            await client.predict("bert", list(range(8)))

    with pytest.raises(PredictError) as info:
        asyncio.run(main())
    assert "chunk 2 of 4 (instances 2-3) failed" in info.value.message
    assert "max_request_size" in (info.value.hint or "")
    assert [first_instance(r) for r in model.posts()] == [0]


def test_async_inputs_are_checked_before_sending(model: V1Model) -> None:
    async def main() -> None:
        async with amake(asyncify(model)) as client:
            await client.predict("bert", {"instances": [1]})  # type: ignore[arg-type]

    with pytest.raises(PredictError, match="instances must be a list"):
        asyncio.run(main())
    assert model.requests == []
