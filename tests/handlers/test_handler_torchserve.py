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
