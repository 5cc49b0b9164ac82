"""The wrapper's calls to TorchServe (TorchServeUpstream) against a loopback stand-in that records what it got."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from toolkit._front_door import V1Request, too_large_message
from toolkit._layout import TS_DEFAULT_MAX_REQUEST
from toolkit._serve.upstream import MAX_UPSTREAM_CONNECTIONS, UNREACHABLE_STATUS, TorchServeUpstream, UpstreamError

Answer = tuple[int, str, bytes, dict[str, str]]  # status, reason, body, headers


async def _with_standin(
    answer: Answer, body: Callable[[TorchServeUpstream, list[dict[str, Any]]], Awaitable[Any]], hold: float = 0.0
) -> Any:
    """Start a one-route HTTP/1.1 stand-in on a free loopback port, run ``body`` against it, stop it.

    Each request is recorded with the number of requests the stand-in held at that moment (``in_flight``); each
    answer is held ``hold`` seconds."""
    seen: list[dict[str, Any]] = []
    in_flight = [0]

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                lines = head.decode("latin-1").split("\r\n")
                method, target, _ = lines[0].split(" ", 2)
                headers = {
                    k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:] if line)
                }
                data = await reader.readexactly(int(headers.get("content-length", "0")))
                in_flight[0] += 1
                seen.append(
                    {
                        "method": method,
                        "target": target,
                        "headers": headers,
                        "body": data,
                        "connection": id(writer),
                        "in_flight": in_flight[0],
                    }
                )
                await asyncio.sleep(hold)
                in_flight[0] -= 1
                status, reason, payload, extra = answer
                out = [f"HTTP/1.1 {status} {reason}", f"content-length: {len(payload)}"]
                out += [f"{k}: {v}" for k, v in extra.items()]
                writer.write(("\r\n".join(out) + "\r\n\r\n").encode() + payload)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionResetError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0, backlog=1024)
    port = server.sockets[0].getsockname()[1]
    upstream = TorchServeUpstream(f"http://127.0.0.1:{port}/", timeout_s=10)
    try:
        return await body(upstream, seen)
    finally:
        await upstream.close()
        server.close()
        await server.wait_closed()


def run(
    answer: Answer, body: Callable[[TorchServeUpstream, list[dict[str, Any]]], Awaitable[Any]], hold: float = 0.0
) -> Any:
    return asyncio.run(_with_standin(answer, body, hold))


def test_predict_posts_the_payload_as_json_and_returns_the_decoded_answer() -> None:
    async def body(upstream: TorchServeUpstream, seen: list[dict[str, Any]]) -> Any:
        headers = {"x-request-id": "r-1", "authorization": "Bearer t", "cookie": "secret", "host": "isvc.example"}
        first = await upstream.call("intent", "predict", {"instances": ["hi", "ho"]}, headers)
        second = await upstream.call("intent", "explain", {"instances": ["hi"]}, None)
        return first, second, seen

    answer = (200, "OK", b'{"predictions": ["greeting"]}', {"content-type": "application/json"})
    first, second, seen = run(answer, body)
    assert first == second == {"predictions": ["greeting"]}
    assert [(s["method"], s["target"]) for s in seen] == [
        ("POST", "/v1/models/intent:predict"),
        ("POST", "/v1/models/intent:explain"),
    ]
    assert json.loads(seen[0]["body"]) == {"instances": ["hi", "ho"]}
    sent = seen[0]["headers"]
    assert sent["content-type"] == "application/json"
    # kserve forwards only these: a cookie or the ingress Host must not reach TorchServe
    assert sent["x-request-id"] == "r-1" and sent["authorization"] == "Bearer t"
    assert "cookie" not in sent and sent["host"].startswith("127.0.0.1:")


@pytest.mark.parametrize(
    ("answer", "content_type", "expected"),
    [
        (
            (400, "Bad Request", b'{"error": "instance 0: not text"}', {"content-type": "application/json"}),
            "application/json",
            {"error": "instance 0: not text"},
        ),
        # TorchServe sends a handler's error without a content type: JSON is recognised
        ((507, "Insufficient Storage", b'{"error": "full"}', {}), "application/json", {"error": "full"}),
        # Netty's own rejection of a body over max_request_size: no body; the message names the limit and its key
        ((413, "Request Entity Too Large", b"", {}), "application/json",
         {"error": too_large_message(TS_DEFAULT_MAX_REQUEST)}),
        # any other status without a body: the status line's reason becomes the message
        ((429, "Too Many Requests", b"", {}), "application/json", {"error": "Too Many Requests"}),
        ((503, "Service Unavailable", b"queue full", {}), "text/plain; charset=utf-8", "queue full"),
    ],
)
def test_a_non_2xx_answer_keeps_its_status_and_body(answer: Answer, content_type: str, expected: Any) -> None:
    async def body(upstream: TorchServeUpstream, _: list[dict[str, Any]]) -> UpstreamError:
        with pytest.raises(UpstreamError) as caught:
            await upstream.call("intent", "predict", {"instances": [1]}, None)
        return caught.value

    error = run(answer, body)
    assert error.status == answer[0]
    assert error.content_type == content_type
    decoded = json.loads(error.body) if content_type == "application/json" else error.body.decode()
    assert decoded == expected


def test_a_checked_v1_body_goes_to_torchserve_byte_for_byte() -> None:
    """500 levels deep: more than orjson encodes (254), which is why the wrapper forwards what the client sent."""
    raw = b'{"instances": [' + b"[" * 500 + b"1" + b"]" * 500 + b"],  \n\t\"parameters\": {}}"

    async def body(upstream: TorchServeUpstream, seen: list[dict[str, Any]]) -> bytes:
        await upstream.call("intent", "predict", V1Request(raw), None)
        return bytes(seen[0]["body"])

    assert run((200, "OK", b'{"predictions": [1]}', {}), body) == raw


def test_torchserve_s_empty_413_names_this_wrapper_s_limit() -> None:
    async def body(standin: TorchServeUpstream, _: list[dict[str, Any]]) -> UpstreamError:
        upstream = TorchServeUpstream(standin.base_url, 5, max_request_size=1234)
        try:
            with pytest.raises(UpstreamError) as caught:
                await upstream.call("intent", "predict", V1Request(b'{"instances": [1]}'), None)
        finally:
            await upstream.close()
        return caught.value

    error = run((413, "Request Entity Too Large", b"", {}), body)
    assert error.status == 413
    message = json.loads(error.body)["error"]
    assert "1234 bytes" in message and "server.max_request_size" in message


def test_an_answer_that_is_not_json_is_an_error_naming_the_model() -> None:
    async def body(upstream: TorchServeUpstream, _: list[dict[str, Any]]) -> UpstreamError:
        with pytest.raises(UpstreamError) as caught:
            await upstream.call("intent", "predict", {"instances": [1]}, None)
        return caught.value

    error = run((200, "OK", b"label: greeting", {}), body)
    assert error.status == UNREACHABLE_STATUS
    message = json.loads(error.body)["error"]
    assert "intent" in message and "not JSON" in message and "label: greeting" in message


def test_torchserve_not_listening_is_502_naming_the_model() -> None:
    async def body() -> UpstreamError:
        # a port that was free a moment ago: bind, read it, close
        server = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        server.close()
        await server.wait_closed()
        upstream = TorchServeUpstream(f"http://127.0.0.1:{port}", timeout_s=5)
        try:
            with pytest.raises(UpstreamError) as caught:
                await upstream.call("intent", "predict", {"instances": [1]}, None)
        finally:
            await upstream.close()
        return caught.value

    error = asyncio.run(body())
    assert error.status == UNREACHABLE_STATUS
    assert "TorchServe did not answer for model intent" in json.loads(error.body)["error"]


def test_connections_are_kept_alive_between_calls() -> None:
    async def body(upstream: TorchServeUpstream, seen: list[dict[str, Any]]) -> set[int]:
        for i in range(5):
            await upstream.call("m", "predict", {"instances": [i]}, None)
        return {s["connection"] for s in seen}

    assert len(run((200, "OK", b'{"predictions": [1]}', {}), body)) == 1


def test_requests_beyond_the_connection_cap_wait_in_the_wrapper() -> None:
    """Never more than MAX_UPSTREAM_CONNECTIONS requests in TorchServe at once: the rest wait here, not in its
    job queue (where they would be 503s), and every one is answered."""
    calls = MAX_UPSTREAM_CONNECTIONS + 50

    async def body(upstream: TorchServeUpstream, seen: list[dict[str, Any]]) -> tuple[list[Any], int]:
        answers = await asyncio.gather(*(upstream.call("m", "predict", {"instances": [i]}, None) for i in range(calls)))
        return answers, max(s["in_flight"] for s in seen)

    answers, most = run((200, "OK", b'{"predictions": [1]}', {}), body, hold=0.2)
    assert answers == [{"predictions": [1]}] * calls
    assert most == MAX_UPSTREAM_CONNECTIONS


# -- the front door's safety net: an unexpected error costs nobody the connection ---------------------------------
def _serve_app(app: Any, calls: Callable[[str], Any]) -> Any:
    """Run ``app`` under uvicorn (as the wrapper does) on a free loopback port, call ``calls(url)``, stop it."""
    import threading
    import time

    import uvicorn

    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_config=None, lifespan="off"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        for _ in range(200):
            if server.started:
                break
            time.sleep(0.05)
        port = server.servers[0].sockets[0].getsockname()[1]
        return calls(f"http://127.0.0.1:{port}")
    finally:
        server.should_exit = True
        thread.join(timeout=10)


@pytest.mark.parametrize("guarded", [False, True])
def test_an_unexpected_error_is_500_and_the_connection_stays_usable(guarded: bool) -> None:
    import httpx
    from starlette.applications import Starlette
    from starlette.responses import PlainTextResponse
    from starlette.routing import Route

    from toolkit._front_door import KeepAliveOnError

    async def broken(_: Any) -> Any:
        raise RuntimeError("a bug")

    async def fine(_: Any) -> Any:
        return PlainTextResponse("ok")

    app = Starlette(routes=[Route("/broken", broken), Route("/fine", fine)])
    if guarded:
        app.add_middleware(KeepAliveOnError)

    def calls(url: str) -> tuple[int, int, int, Any]:
        with httpx.Client(timeout=10) as client:
            bad = client.get(f"{url}/broken")
            bad_port = bad.extensions["network_stream"].get_extra_info("client_addr")[1]
            try:
                good = client.get(f"{url}/fine")
            except httpx.TransportError as exc:  # what the unguarded server may do to the next request
                return bad.status_code, 0, 0, exc
            good_port = good.extensions["network_stream"].get_extra_info("client_addr")[1]
            return bad.status_code, good.status_code, int(bad_port == good_port), bad.text

    bad, good, same_connection, detail = _serve_app(app, calls)
    assert bad == 500
    if guarded:
        assert (good, same_connection) == (200, 1)
        assert json.loads(detail) == {"error": "the server failed: RuntimeError: a bug"}
    else:
        assert (good, same_connection) != (200, 1), "uvicorn kept the connection: the guard is not needed any more"
