"""The entry point inside real TorchServe 0.12.0: archive with torch-model-archiver, serve, batch, answer.

One server for the module (about 15 s to start and load a tiny BERT here). It checks what the in-process harness
assumes about TorchServe: how bodies and headers reach the worker, that the archive layout survives extraction, that
per-request statuses from set_response_status reach the client, and that concurrent v1 requests are batched.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import zipfile
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import torch
from handler_support import assemble

pytestmark = pytest.mark.slow

BIN = Path(sys.executable).parent
NAMES = ["neg", "neu", "pos"]
TEXTS = [f"sentence number {n}: {'good ' * n}{'bad ' * (8 - n)}" for n in range(8)]


@dataclass
class Server:
    url: str
    log: Path


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def model_folder(tiny_bert) -> Path:
    return tiny_bert("sequence", num_labels=3)


@pytest.fixture(scope="module")
def server(tmp_path_factory, model_folder: Path) -> Iterator[Server]:
    root = tmp_path_factory.mktemp("torchserve")
    # The archive's root, staged: torch-model-archiver copies the *contents* of an --extra-files folder into
    # the archive root (sub-folders keep their names), so the staged root itself is the one extra file.
    stage = assemble(root / "stage", "text-classification", model_folder, class_names=NAMES, batch_size=4)
    store = root / "model-store"
    store.mkdir()
    subprocess.run(
        [
            str(BIN / "torch-model-archiver"),
            "--model-name", "tc",
            "--version", "1.0",
            "--handler", str(stage / "mar_build_entry.py"),
            "--extra-files", str(stage),
            "--export-path", str(store),
        ],
        check=True,
    )  # fmt: skip
    with zipfile.ZipFile(store / "tc.mar") as archive:
        names = set(archive.namelist())
        manifest = json.loads(archive.read("MAR-INF/MANIFEST.json"))
    assert {"mar_build_entry.py", "mar_build.json", "mar_build_handlers/base.py", "model/config.json"} <= names
    assert manifest["model"]["handler"] == "mar_build_entry.py"

    ports = {name: _free_port() for name in ("inference", "management", "metrics", "grpc", "grpc_management")}
    snapshot = {
        "name": "startup.cfg",
        "modelCount": 1,
        "models": {
            "tc": {
                "1.0": {
                    "defaultVersion": True,
                    "marName": "tc.mar",
                    "minWorkers": 1,
                    "maxWorkers": 1,
                    "batchSize": 4,
                    "maxBatchDelay": 1000,
                    "responseTimeout": 120,
                }
            }
        },
    }
    config = root / "config.properties"
    config.write_text(
        "\n".join(
            [
                f"inference_address=http://127.0.0.1:{ports['inference']}",
                f"management_address=http://127.0.0.1:{ports['management']}",
                f"metrics_address=http://127.0.0.1:{ports['metrics']}",
                f"grpc_inference_port={ports['grpc']}",
                f"grpc_management_port={ports['grpc_management']}",
                "disable_token_authorization=true",
                "enable_envvars_config=false",
                f"model_store={store}",
                f"model_snapshot={json.dumps(snapshot)}",
                "",
            ]
        )
    )
    tmp = root / "tmp"
    tmp.mkdir()
    env = {
        **os.environ,
        "TMPDIR": str(tmp),
        "TEMP": str(tmp),
        "LOG_LOCATION": str(root / "logs"),
        "METRICS_LOCATION": str(root / "logs"),
        "MAR_BUILD_THREADS": "1",
    }
    command = [str(BIN / "torchserve"), "--start", "--foreground", "--ncs", "--model-store", str(store)]
    process = subprocess.Popen(
        [*command, "--ts-config", str(config)],
        cwd=root,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{ports['inference']}"
    try:
        deadline = time.monotonic() + 90
        while True:
            assert process.poll() is None, "torchserve exited during startup"
            try:
                status = httpx.get(f"http://127.0.0.1:{ports['management']}/models/tc", timeout=2).json()
                if status[0]["workers"] and status[0]["workers"][0]["status"] == "READY":
                    break
            except (httpx.HTTPError, ValueError, LookupError):
                pass
            assert time.monotonic() < deadline, (root / "logs" / "model_log.log").read_text(errors="replace")
            time.sleep(0.5)
        yield Server(url, root / "logs" / "model_log.log")
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def expected_labels(folder: Path, texts: list[str]) -> list[str]:
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(folder))
    model = AutoModelForSequenceClassification.from_pretrained(str(folder)).eval()
    with torch.inference_mode():
        return [NAMES[int(model(**tokenizer(text, return_tensors="pt")).logits.argmax())] for text in texts]


def test_concurrent_v1_requests_are_batched_and_answered_in_order(server: Server, model_folder: Path):
    batches_before = server.log.read_text(errors="replace").count("Backend received inference at")
    bodies = [{"instances": [{"data": text}]} for text in TEXTS[:7]] + [{"instances": "not a list"}]
    with httpx.Client(timeout=60) as client, ThreadPoolExecutor(len(bodies)) as pool:
        responses = list(pool.map(lambda b: client.post(f"{server.url}/v1/models/tc:predict", json=b), bodies))
    expected = expected_labels(model_folder, TEXTS[:7])
    assert [r.status_code for r in responses] == [200] * 7 + [400]
    assert [r.json() for r in responses[:7]] == [{"predictions": [label]} for label in expected]
    assert responses[7].json() == {"error": '"instances" must be a list, got str'}
    assert responses[7].reason_phrase == '"instances" must be a list, got str'
    batches = server.log.read_text(errors="replace").count("Backend received inference at") - batches_before
    assert 1 <= batches < len(bodies), f"{batches} batches for {len(bodies)} requests: no server-side batching"


def test_explain_raw_calls_and_bad_json_through_the_frontend(server: Server, model_folder: Path):
    expected = expected_labels(model_folder, TEXTS[:2])
    with httpx.Client(timeout=60) as client:
        explained = client.post(f"{server.url}/v1/models/tc:explain", json={"instances": TEXTS[:1]})
        text = client.post(f"{server.url}/predictions/tc", content=TEXTS[1], headers={"Content-Type": "text/plain"})
        as_json = client.post(f"{server.url}/predictions/tc", json={"data": TEXTS[0]})
        broken = client.post(
            f"{server.url}/v1/models/tc:predict",
            content=b'{"instances": [',
            headers={"Content-Type": "application/json"},
        )
        charset = client.post(
            f"{server.url}/v1/models/tc:predict",
            content=json.dumps({"instances": TEXTS[:1]}).encode(),
            headers={"Content-Type": "application/json; charset=utf-8"},
        )
    assert explained.status_code == 200
    [scores] = explained.json()["explanations"]
    assert list(scores) == NAMES and max(scores, key=scores.get) == expected[0]
    assert (text.status_code, text.json()) == (200, expected[1])
    assert text.headers["content-type"] == "application/json"
    assert broken.headers["content-type"] == "application/json"
    assert (as_json.status_code, as_json.json()) == (200, expected[0])
    assert broken.status_code == 400 and broken.json()["error"].startswith("the request body is not valid JSON")
    assert (charset.status_code, charset.json()) == (200, {"predictions": [expected[0]]})


def test_tritonclient_v2_infer_through_torchserve(server: Server, model_folder: Path):
    """TorchServe 0.12.0 routes POST /v2/models/M/infer (and /explain) to the handler with the v1 explain header;
    tritonclient sends binary tensor data and no Content-Type by default."""
    import numpy as np
    from tritonclient.http import InferenceServerClient, InferenceServerException, InferInput

    expected = expected_labels(model_folder, TEXTS[:3])
    client = InferenceServerClient(url=server.url.removeprefix("http://"), network_timeout=60)
    try:
        binary = InferInput("text", [3], "BYTES")
        binary.set_data_from_numpy(np.array(TEXTS[:3], dtype=np.object_))
        result = client.infer("tc", [binary], request_id="tc-1")
        assert result.as_numpy("output-0").tolist() == expected  # JSON BYTES outputs: str objects
        response = result.get_response()
        assert {k: response[k] for k in ("model_name", "model_version", "id")} == {
            "model_name": "tc", "model_version": "1.0", "id": "tc-1"
        }  # fmt: skip
        as_json = InferInput("text", [1], "BYTES")
        as_json.set_data_from_numpy(np.array(TEXTS[:1], dtype=np.object_), binary_data=False)
        assert client.infer("tc", [as_json]).as_numpy("output-0").tolist() == expected[:1]
        wrong = InferInput("text", [1], "FP32")
        wrong.set_data_from_numpy(np.array([1.0], dtype=np.float32))
        with pytest.raises(InferenceServerException) as refused:
            client.infer("tc", [wrong])
        assert refused.value.message() == "input 'text': datatype FP32, expected BYTES (one UTF-8 string per text)"
        assert refused.value.status() == "400"
        # TorchServe routes only the 5-segment /v2/models/M/infer: a versioned URL is its own 404.
        with pytest.raises(InferenceServerException) as versioned:
            client.infer("tc", [as_json], model_version="1.0")
        assert versioned.value.status() == "404", versioned.value.message()
    finally:
        client.close()


def test_concurrent_v1_and_v2_requests_share_batches_and_each_gets_its_form(server: Server, model_folder: Path):
    batches_before = server.log.read_text(errors="replace").count("Backend received inference at")
    texts = TEXTS[:6]
    calls = [
        ("/v1/models/tc:predict", {"instances": [text]}) if n % 2 else
        ("/v2/models/tc/infer", {"id": f"r{n}", "inputs": [{"name": "t", "shape": [1], "datatype": "BYTES",
                                                            "data": [text]}]})
        for n, text in enumerate(texts)
    ]  # fmt: skip
    calls.append(("/v2/models/tc/infer", {"inputs": [{"name": "t", "shape": [2], "datatype": "BYTES", "data": ["x"]}]}))
    with httpx.Client(timeout=60) as client, ThreadPoolExecutor(len(calls)) as pool:
        responses = list(pool.map(lambda call: client.post(server.url + call[0], json=call[1]), calls))
    expected = expected_labels(model_folder, texts)
    assert [r.status_code for r in responses] == [200] * 6 + [400]
    for n, response in enumerate(responses[:6]):
        if n % 2:
            assert response.json() == {"predictions": [expected[n]]}
        else:
            assert response.json() == {
                "model_name": "tc",
                "model_version": "1.0",
                "id": f"r{n}",
                "outputs": [{"name": "output-0", "shape": [1], "datatype": "BYTES", "data": [expected[n]]}],
            }
    assert responses[6].json() == {"error": "input 't': shape [2] holds 2 values, \"data\" has 1"}
    batches = server.log.read_text(errors="replace").count("Backend received inference at") - batches_before
    assert 1 <= batches < len(calls), f"{batches} batches for {len(calls)} requests: no server-side batching"
