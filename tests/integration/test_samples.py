"""Every sample, built and served like the predictor pod, answers correctly through every way users call it.

Issue 2 and 3's proof: /v1/models/NAME:predict gives the right {"predictions": [...]}; 16 concurrent requests
with batchSize 8 are all answered correctly, in server-side batches larger than one (as the workers logged them);
the same through a Host-routing gateway that demands a session cookie, with toolkit.Client, toolkit.AsyncClient
and `mar-build predict`.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner
from gateway_support import Gateway
from integration_support import SESSION, Served

from toolkit import PredictError
from toolkit._cli import cli
from toolkit._client.client import AsyncClient, Client

pytestmark = pytest.mark.slow

# What the handlers' base logs for every server-side batch TorchServe hands it (handlers/base.py, handle()).
BATCH_LINE = re.compile(r"batch of (\d+) request\(s\)")


def batch_sizes(model_log: Path, start: int) -> list[int]:
    """The requests per batch the workers logged after byte ``start`` of TorchServe's model_log.log."""
    text = model_log.read_bytes()[start:].decode("utf-8", "replace") if model_log.is_file() else ""
    return [int(count) for count in BATCH_LINE.findall(text)]


def test_v1_predict_answers_correctly(served: Served) -> None:
    case, p = served.case, served.predictor
    assert p.models == [case.name]
    assert httpx.get(f"{p.url}/v1/models/{case.name}").json() == {"name": case.name, "ready": True}
    answer = httpx.post(p.predict_url(case.name), json={"instances": case.instances}, timeout=120)
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert list(body) == ["predictions"]
    case.check(body["predictions"])


def test_16_concurrent_requests_with_batch_size_8_all_correct(served: Served) -> None:
    case, p = served.case, served.predictor
    # One instance per request, 16 requests in flight at once: TorchServe batches them (up to 8) for the handler.
    requests = case.cycled(16)
    model_log = p.run_dir / "logs" / "model_log.log"  # the workers' stdout, written by TorchServe's frontend
    start = model_log.stat().st_size if model_log.is_file() else 0

    async def run() -> list[list[object]]:
        async with AsyncClient(p.url, timeout=120, retries=0, concurrency=16) as client:
            return await asyncio.gather(*(client.predict(case.name, [instance]) for instance in requests))

    answers = asyncio.run(run())
    case.check([a[0] for a in answers], requests)
    # The frontend copies the workers' lines into the log a moment after the answers went out.
    deadline = time.monotonic() + 15
    while sum(sizes := batch_sizes(model_log, start)) < len(requests) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert sum(sizes) == len(requests), f"batches logged: {sizes}"
    assert max(sizes) > 1, f"every request was served in a batch of its own: {sizes}"
    assert max(sizes) <= 8, f"a batch above batchSize 8: {sizes}"


def test_client_through_the_gateway_with_a_session_cookie(served: Served, gateway: Gateway) -> None:
    case = served.case
    with Client(gateway.url, host=case.host, cookie=SESSION, timeout=120) as client:
        assert client.ready(case.name)
        assert client.models() == [case.name]
        case.check(client.predict(case.name, case.instances))
        # chunked: several requests through the gateway, reassembled in order
    with Client(gateway.url, host=case.host, cookie=SESSION, timeout=120, max_batch=3, concurrency=4) as client:
        case.check(client.predict(case.name, case.instances))
    assert any(host == case.host and path.endswith(":predict") for host, path, _ in gateway.requests)


def test_predict_cli_through_the_gateway(served: Served, gateway: Gateway) -> None:
    case = served.case
    result = CliRunner().invoke(cli, [
        "predict", gateway.url, "-m", case.name, "--instances", json.dumps(case.instances),
        "--host", case.host, "--cookie", SESSION, "--json", "--request-timeout", "120",
    ])
    assert result.exit_code == 0, result.output
    case.check(json.loads(result.stdout)["predictions"])


def test_the_gateway_without_the_cookie_sends_to_the_login_page(served: Served, gateway: Gateway) -> None:
    case = served.case
    with Client(gateway.url, host=case.host, timeout=30, retries=0) as client, pytest.raises(PredictError) as err:
        client.predict(case.name, case.instances[:1])
    assert "session" in str(err.value).lower()
    raw = httpx.post(f"{gateway.url}/v1/models/{case.name}:predict", headers={"Host": case.host},
                     json={"instances": case.instances[:1]})
    assert raw.status_code == 302 and raw.headers["location"].startswith("/dex/auth")
