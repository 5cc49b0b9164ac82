"""The python runtime served for real (kserve's ModelServer, the handlers in process), called over HTTP.

A mar-build archive and a hand-built archive with a stock TorchServe handler under the stock kserve envelope;
server-side batches that really form under concurrent load, one bad request answered its own 400 inside a batch
of good ones, kserve's readiness/list/health/metrics routes, and no Java anywhere in the process tree.
"""

from __future__ import annotations

import asyncio
import re
import time
from pathlib import Path

import httpx
import pytest
from runtime_support import Served

pytestmark = pytest.mark.slow

BATCH_LINE = re.compile(r"batch of (\d+) request\(s\)")
ROWS = [[1.0, 2.0, 3.0, 4.0], [0.0, 0.5, -1.0, 2.0], [3.0, -2.0, 0.25, 1.0]]


def close(actual: object, expected: list[list[float]]) -> bool:
    return isinstance(actual, list) and len(actual) == len(expected) and all(
        got == pytest.approx(want, rel=1e-5, abs=1e-6) for got, want in zip(actual, expected, strict=True))


def test_mar_build_archive_answers_v1(served: Served) -> None:
    p = served.predictor
    assert p.models == ["linear"]
    assert httpx.get(f"{p.url}/v1/models/linear").json() == {"name": "linear", "ready": True}
    assert httpx.get(f"{p.url}/v1/models").json() == {"models": ["linear"]}
    assert httpx.get(f"{p.url}/v2/health/live").json() == {"live": True}
    assert httpx.get(f"{p.url}/v2/health/ready").json() == {"ready": True}
    assert httpx.get(f"{p.url}/v2/models/linear/ready").status_code == 200
    answer = httpx.post(p.predict_url("linear"), json={"instances": ROWS}, timeout=60)
    assert answer.status_code == 200, answer.text
    assert close(answer.json()["predictions"], served.expected(ROWS))
    missing = httpx.post(f"{p.url}/v1/models/nope:predict", json={"instances": ROWS})
    assert missing.status_code == 404 and "linear" in missing.json()["error"]
    assert httpx.post(p.predict_url("linear"), content=b"{not json").status_code == 400


def _concurrent(url: str, bodies: list[object]) -> list[httpx.Response]:
    async def run() -> list[httpx.Response]:
        limits = httpx.Limits(max_connections=len(bodies))
        async with httpx.AsyncClient(timeout=60, limits=limits) as client:
            return list(await asyncio.gather(*(client.post(url, json=b) for b in bodies)))

    return asyncio.run(run())


def _batches(log: Path, start: int) -> list[int]:
    return [int(n) for n in BATCH_LINE.findall(log.read_bytes()[start:].decode("utf-8", "replace"))]


def test_concurrent_requests_form_batches_and_a_bad_one_fails_alone(served: Served) -> None:
    p = served.predictor
    start = p.log_path.stat().st_size
    rows = [ROWS[i % len(ROWS)] for i in range(24)]
    bodies: list[object] = [{"instances": [row]} for row in rows]
    # malformed where only the handler can tell (the front door passes any {"instances": [...]}): its own 400
    bodies[5] = {"instances": [["one", "two", "three", "four"]]}
    answers = _concurrent(p.predict_url("linear"), bodies)
    for i, (answer, row) in enumerate(zip(answers, rows, strict=True)):
        if i == 5:
            assert answer.status_code == 400, answer.text
            assert "error" in answer.json()
        else:
            assert answer.status_code == 200, (i, answer.text)
            assert close(answer.json()["predictions"], served.expected([row]))
    deadline = time.monotonic() + 10
    while sum(sizes := _batches(p.log_path, start)) < len(bodies) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert sum(sizes) == len(bodies), sizes
    assert max(sizes) > 1, f"every request ran in a batch of its own: {sizes}"
    assert max(sizes) <= 8, sizes
    metrics = httpx.get(p.metrics_url).text
    # the handler's own counters (toolkit/_metrics/names.py): by status, and the bad one by reason
    assert re.search(r'^mar_build_requests_total\{.*model_name="linear",model_version="1\.0",status="400"\} 1\.0$',
                     metrics, re.MULTILINE), metrics
    assert re.search(r'^mar_build_bad_requests_total\{.*reason="instance"\} 1\.0$', metrics, re.MULTILINE), metrics
    assert "mar_build_batch_requests_bucket" in metrics


def test_no_java_in_the_process_tree(served: Served) -> None:
    p = served.predictor
    ids = p.process_ids()
    assert ids == [p.pids["runtime"]]
    for pid in ids:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
        assert "java" not in cmdline and "toolkit._runtime" in cmdline
    children = Path(f"/proc/{p.pids['runtime']}/task/{p.pids['runtime']}/children").read_text().split()
    assert children == [], f"the runtime started processes: {children}"


def test_stock_handler_archive_serves_with_the_stock_envelope_batched(stock_served: Served) -> None:
    p = stock_served.predictor
    assert p.models == ["stock"]
    answer = httpx.post(p.predict_url("stock"), json={"instances": ROWS}, timeout=60)
    assert answer.status_code == 200, answer.text
    assert close(answer.json()["predictions"], stock_served.expected(ROWS))
    # Concurrent requests: TorchServe's stock envelope would answer all but the first of a batch 503.
    bodies: list[object] = [{"instances": [ROWS[i % 3], ROWS[(i + 1) % 3]]} for i in range(12)]
    for i, reply in enumerate(_concurrent(p.predict_url("stock"), bodies)):
        assert reply.status_code == 200, (i, reply.text)
        assert close(reply.json()["predictions"], stock_served.expected([ROWS[i % 3], ROWS[(i + 1) % 3]]))


@pytest.mark.parametrize("binary", [False, True], ids=["json", "binary"])
def test_a_v2_client_nobody_here_wrote_gets_the_same_answers_as_v1(served: Served, binary: bool) -> None:
    """tritonclient's HTTP client (Open Inference Protocol) against the python runtime: the outputs are v1's
    predictions, FP32 [N, 3]; a wrong datatype is a 400 that names the input."""
    import numpy as np
    from tritonclient.http import InferenceServerClient, InferInput
    from tritonclient.utils import InferenceServerException

    p = served.predictor
    rows = [ROWS[0], ROWS[1]]
    client = InferenceServerClient(url=p.url.removeprefix("http://"))
    try:
        assert client.is_server_ready() and client.is_model_ready("linear")
        given = InferInput("input-0", [2, 4], "FP32")
        given.set_data_from_numpy(np.array(rows, dtype=np.float32), binary_data=binary)
        result = client.infer("linear", [given])
        outputs = result.get_response()["outputs"]
        assert [(o["name"], o["datatype"], o["shape"]) for o in outputs] == [("output-0", "FP32", [2, 3])]
        v1 = httpx.post(p.predict_url("linear"), json={"instances": rows}).json()["predictions"]
        assert close(result.as_numpy("output-0").tolist(), v1)
        assert close(v1, served.expected(rows))
        wrong = InferInput("input-0", [1, 4], "BYTES")
        wrong.set_data_from_numpy(np.array([["a", "b", "c", "d"]], dtype=np.object_), binary_data=binary)
        with pytest.raises(InferenceServerException, match="input 'input-0'"):
            client.infer("linear", [wrong])
    finally:
        client.close()
