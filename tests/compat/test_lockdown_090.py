"""What the predictor pod exposes, on TorchServe 0.9.0 (the default image's release): locked down, and still serving.

- A registration from an http URL is refused, over the management API and over gRPC (allowed_urls), and the
  same call on TorchServe's default allowed_urls does fetch the URL (so the refusal is the config's doing).
- The pod's entrypoint (``python -m toolkit._serve.pod`` with the runtime's args) becomes ready and answers through
  the wrapper, with inference and management on 127.0.0.1 and metrics on 0.0.0.0, and stops cleanly on SIGTERM.
- ``serve(wrapper="image")`` answers as the stock image's wrapper did, measured (tests/serve/fixtures/).
- Nothing writes under the model mount: TorchServe runs in a mount namespace where the layout is a read-only bind
  mount (as KServe 0.16+ mounts pvc://), checked in its /proc mountinfo.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest

from toolkit import Client, PredictError, build, serve
from toolkit._layout import parse_properties, set_properties
from toolkit._serve.config import local_paths
from toolkit._serve.processes import group_members
from toolkit._spec.parse import parse_spec

REPO = Path(__file__).resolve().parents[2]
STOCK = json.loads((REPO / "tests" / "serve" / "fixtures" / "stock_wrapper_090.json").read_text())
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def layout(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The layout the stock wrapper's answers were recorded on: lin, nn.Linear(3, 2) with seed 0, task tensor."""
    import torch

    root = tmp_path_factory.mktemp("lockdown")
    torch.manual_seed(0)
    torch.jit.script(torch.nn.Linear(3, 2)).save(str(root / "linear.pt"))
    spec = {"name": "lin", "task": "tensor", "model": "linear.pt", "serving": {"batch_size": 8, "max_batch_delay": 200}}
    return build(parse_spec(spec, base=root), root / "layout").layout


class _Recorder(BaseHTTPRequestHandler):
    hits: list[str] = []

    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        type(self).hits.append(self.path)
        self.send_response(404)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def archive_site() -> Iterator[tuple[str, list[str]]]:
    """An http server on loopback that records every path asked of it: where a hostile archive would live."""
    handler = type("Recorder", (_Recorder,), {"hits": []})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/evil.mar", handler.hits
    finally:
        server.shutdown()
        server.server_close()


def _register_over_grpc(port: int, url: str) -> str:
    """RegisterModel(url=URL) on TorchServe's gRPC management API; the error's details (the message is encoded by
    hand: field 5 model_name, field 9 url, as in TorchServe's management.proto)."""
    import grpc

    def field(number: int, text: str) -> bytes:
        data = text.encode()
        return bytes([number << 3 | 2, len(data)]) + data

    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        call = channel.unary_unary("/org.pytorch.serve.grpc.management.ManagementAPIsService/RegisterModel")
        with pytest.raises(grpc.RpcError) as caught:
            call(field(5, "evil") + field(9, url), timeout=60)
    return str(caught.value.details())


def test_a_registration_from_an_http_url_is_refused(
    torchserve_090: Path, layout: Path, port: int, archive_site: tuple[str, list[str]], tmp_path: Path
) -> None:
    url, hits = archive_site
    with serve(layout, port=port, torchserve=torchserve_090) as predictor:
        refused = httpx.post(f"{predictor.management_url}/models", params={"url": url}, timeout=60)
        assert refused.status_code == 404, refused.text
        assert "does not match any allowed URL" in refused.json()["message"]
        run_config = parse_properties((predictor.run_dir / "config.properties").read_text())
        assert "does not match any allowed URL" in _register_over_grpc(int(run_config["grpc_management_port"]), url)
        assert hits == []
        # the model from the store still serves
        with Client(predictor.url, timeout=60) as client:
            assert client.predict("lin", [[1.0, 2.0, 3.0]]) == STOCK_PREDICTIONS
    # TorchServe's own default (no allowed_urls) goes and fetches the archive: the refusal above is the config's
    permissive = shutil.copytree(layout, tmp_path / "permissive")
    config = permissive / "config" / "config.properties"
    config.write_text("".join(line for line in config.read_text().splitlines(keepends=True)
                              if not line.startswith("allowed_urls=")))
    with serve(permissive, port=port, torchserve=torchserve_090) as predictor:
        httpx.post(f"{predictor.management_url}/models", params={"url": url}, timeout=60)
    assert hits == ["/evil.mar"]


STOCK_PREDICTIONS = json.loads(STOCK["answers"]["good-1"]["body"])["predictions"]


def _listening() -> dict[int, set[str]]:
    """port -> the addresses something listens on, from /proc/net/tcp and tcp6 (IPv4-mapped shown as IPv4)."""
    found: dict[int, set[str]] = {}
    for name, size in (("tcp", 4), ("tcp6", 16)):
        for line in Path(f"/proc/net/{name}").read_text().splitlines()[1:]:
            local, state = line.split()[1], line.split()[3]
            if state != "0A":  # LISTEN
                continue
            address, port = local.split(":")
            raw = bytes.fromhex(address)
            words = b"".join(raw[i:i + 4][::-1] for i in range(0, size, 4))  # each 32-bit word is host-endian
            if size == 4 or words[:12] == b"\0" * 10 + b"\xff\xff":
                text = socket.inet_ntop(socket.AF_INET, words[-4:])
            else:
                text = socket.inet_ntop(socket.AF_INET6, words)
            found.setdefault(int(port, 16), set()).add(text)
    return found


def _free_ports(count: int) -> list[int]:
    sockets = [socket.socket() for _ in range(count)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def test_the_pod_entrypoint_serves_with_torchserve_on_loopback(
    torchserve_090: Path, layout: Path, tmp_path: Path
) -> None:
    models = shutil.copytree(layout, tmp_path / "models")
    config = models / "config" / "config.properties"
    api, metrics, grpc_inference, grpc_management, http = _free_ports(5)
    built = parse_properties(config.read_text())
    # the config as built, on ports of this test's own (the pod's 8085/8082/7070/7071 may be taken here) and with
    # the layout's own paths where it names /mnt/models (serve's rule)
    config.write_text(set_properties(config.read_text(), {
        "inference_address": built["inference_address"].replace(":8085", f":{api}"),
        "management_address": built["management_address"].replace(":8085", f":{api}"),
        "metrics_address": built["metrics_address"].replace(":8082", f":{metrics}"),
        "grpc_inference_port": str(grpc_inference), "grpc_management_port": str(grpc_management),
        **local_paths(built, models),
    }))
    assert parse_properties(config.read_text())["management_address"] == f"http://127.0.0.1:{api}"
    (tmp_path / "tmp").mkdir()
    env = {**os.environ, "MAR_BUILD_HTTP_PORT": str(http), "MAR_BUILD_GRPC_PORT": "", "TMPDIR": str(tmp_path / "tmp"),
           "TEMP": str(tmp_path / "tmp"), "LOG_LOCATION": str(tmp_path / "logs"), "PYTHONPATH": str(REPO)}
    args = [str(torchserve_090), "--start", f"--model-store={models / 'model-store'}", f"--ts-config={config}"]
    with (tmp_path / "pod.log").open("wb") as out:
        pod = subprocess.Popen([sys.executable, "-m", "toolkit._serve.pod", *args], cwd=tmp_path, env=env,
                               stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        url = f"http://127.0.0.1:{http}"
        with Client(url, timeout=60) as client:
            assert client.ready("lin", wait=240), (tmp_path / "pod.log").read_text()[-3000:]
            assert client.predict("lin", [[1.0, 2.0, 3.0]]) == STOCK_PREDICTIONS
        bad = httpx.post(f"{url}/v1/models/lin:predict", json={"instances": [["a", "b", "c"]]}, timeout=60)
        assert bad.status_code == 400 and bad.json()["error"].startswith("instance 0:")
        listening = _listening()
        assert listening[api] == {"127.0.0.1"}
        assert listening[metrics] <= {"0.0.0.0", "::"}
        assert listening[http] == {"0.0.0.0"}
        # TorchServe 0.9.0 has no grpc_*_address: its gRPC listens everywhere (allowed_urls is what guards it)
        assert listening[grpc_management] <= {"0.0.0.0", "::"}
        pod.send_signal(signal.SIGTERM)
        assert pod.wait(timeout=90) == 0
        assert not group_members(pod.pid)
    finally:
        if pod.poll() is None:  # SIGTERM first: TorchServe and the wrapper run in process groups of their own
            pod.send_signal(signal.SIGTERM)
            try:
                pod.wait(timeout=90)
            except subprocess.TimeoutExpired:
                os.killpg(pod.pid, signal.SIGKILL)
                pod.wait(timeout=30)


def _body(probe: dict[str, object]) -> bytes | None:
    if probe["large"]:
        return json.dumps({"instances": ["x" * (16 * 1024 * 1024 + 1)]}).encode()
    return None if probe["body"] is None else str(probe["body"]).encode()


def _answers(url: str, probes: list[dict[str, object]], torchserve_url: str) -> dict[str, dict[str, object]]:
    answers = {}
    for probe in probes:
        with httpx.Client(timeout=120) as client:  # one connection each: a 500 may close it
            response = client.request(str(probe["method"]), url + str(probe["path"]), content=_body(probe),
                                      headers=dict(probe["headers"]))  # type: ignore[call-overload]
        answers[str(probe["label"])] = {"status": response.status_code, "content_type":
                                        response.headers.get("content-type"),
                                        "body": response.text.replace(torchserve_url, "{torchserve}")}
    return answers


def test_the_image_wrapper_answers_as_the_stock_image(torchserve_090: Path, layout: Path, port: int) -> None:
    probes = STOCK["probes"]
    up = [p for p in probes if not p["label"].startswith("down-")]
    with serve(layout, port=port, torchserve=torchserve_090, wrapper="image") as predictor:
        got = _answers(predictor.url, up, predictor.torchserve_url)
        with Client(predictor.url, timeout=60) as client:
            assert client.ready("lin")  # "ready": "True", a string
            with pytest.raises(PredictError) as caught:
                client.predict("lin", [["a", "b", "c"]])
        os.killpg(predictor.pids["torchserve"], signal.SIGKILL)
        time.sleep(1.0)
        got |= _answers(predictor.url, [p for p in probes if p["label"].startswith("down-")], predictor.torchserve_url)
    assert caught.value.status == 400 and "instance 0: not a rectangular nested list" in caught.value.message
    assert caught.value.hint is not None and "hid the status" in caught.value.hint
    for label, want in STOCK["answers"].items():
        if label in STOCK["_prefix_only"]:
            prefix = json.loads(str(want["body"]))["error"].split(":")[0]
            assert got[label]["status"] == want["status"]
            assert json.loads(str(got[label]["body"]))["error"].startswith(prefix), label
        else:
            assert got[label] == want, label


def _tree(root: Path) -> list[tuple[str, int, int]]:
    return sorted((str(p.relative_to(root)), p.stat().st_size, p.stat().st_mtime_ns) for p in root.rglob("*"))


def test_nothing_writes_under_the_model_mount(torchserve_090: Path, layout: Path, port: int, tmp_path: Path) -> None:
    # root ignores mode bits, so chmod proves nothing here: TorchServe runs in its own mount namespace where the
    # layout is bind-mounted read-only (what KServe 0.16+ does with pvc://), and its workers inherit that.
    mounted = shutil.copytree(layout, tmp_path / "mnt-models")
    launcher = tmp_path / "torchserve-ro"
    launcher.write_text(
        "#!/bin/sh\n"
        "exec unshare --mount -- sh -c 'mount --bind \"$0\" \"$0\" && mount -o remount,ro,bind \"$0\" \"$0\" && "
        f"exec \"$@\"' {mounted} {torchserve_090} \"$@\"\n"
    )
    launcher.chmod(0o755)
    before = _tree(mounted)
    with serve(mounted, port=port, torchserve=launcher) as predictor:
        with Client(predictor.url, timeout=60) as client:
            assert client.predict("lin", [[1.0, 2.0, 3.0]]) == STOCK_PREDICTIONS
        mounts = Path(f"/proc/{predictor.pids['torchserve']}/mountinfo").read_text().splitlines()
    mine = [line.split() for line in mounts if line.split()[4] == str(mounted)]
    assert mine and mine[-1][5].split(",")[0] == "ro", mounts[-3:]
    assert _tree(mounted) == before
