"""Bad requests at the front door (issue 15): what a careless or hostile client sends to a served layout.

Each probe sends one bad request and then a good one on the same keep-alive connection (one ``httpx.Client``; the
local port of both requests is compared, so a connection the server dropped cannot hide behind a reconnect), and
asserts: a 4xx whose ``{"error": ...}`` says what was wrong, the good request answered right, and no traceback in
the answer or in any log of the run. One server per runtime for the whole module.

The probes are parametrised over ``runtime``; a runtime is a way to start ``serve()`` in ``STARTERS``.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from serve_support import TinyModel, assert_rows_close, copy_layout, free_port

from toolkit._layout import TS_DEFAULT_MAX_REQUEST, parse_properties
from toolkit._names import MODEL_NAME_MAX
from toolkit._serve import LocalPredictor, serve

pytestmark = pytest.mark.slow

MODEL = "linear"
GOOD = [[1.0, 2.0, 3.0, 4.0]]


def _start_torchserve(layout: Path, port: int, workdir: Path) -> LocalPredictor:
    return serve(layout, port=port, workdir=workdir, startup_timeout=240)


def _start_python(layout: Path, port: int, workdir: Path) -> Any:
    return serve(layout, port=port, workdir=workdir, startup_timeout=240, runtime="python")


STARTERS: dict[str, Callable[[Path, int, Path], Any]] = {"torchserve": _start_torchserve, "python": _start_python}


@dataclass
class FrontDoor:
    predictor: Any  # LocalPredictor or RuntimePredictor: the same url, predict_url, run_dir and stop
    max_request_size: int

    @property
    def predict_url(self) -> str:
        return self.predictor.predict_url(MODEL)

    def log_sizes(self) -> dict[Path, int]:
        return {log: log.stat().st_size for log in self.predictor.run_dir.rglob("*.log")}

    def new_log_text(self, before: dict[Path, int]) -> str:
        text = ""
        for log in self.predictor.run_dir.rglob("*.log"):
            with log.open("rb") as f:
                f.seek(before.get(log, 0))
                text += f.read().decode(errors="replace")
        return text


@pytest.fixture(scope="module", params=sorted(STARTERS))
def runtime(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture(scope="module")
def front(runtime: str, tensor_layout: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[FrontDoor]:
    root = tmp_path_factory.mktemp(f"front-{runtime}")
    layout = copy_layout(tensor_layout, root / "layout")
    props = parse_properties((layout / "config" / "config.properties").read_text())
    limit = int(props.get("max_request_size") or TS_DEFAULT_MAX_REQUEST)
    predictor = STARTERS[runtime](layout, free_port(), root / "run")
    try:
        yield FrontDoor(predictor, limit)
    finally:
        predictor.stop()


def _local_port(response: httpx.Response) -> int:
    stream = response.extensions["network_stream"]
    return int(stream.get_extra_info("client_addr")[1])


def probe(front: FrontDoor, tiny_model: TinyModel, send: Callable[[httpx.Client], httpx.Response]) -> httpx.Response:
    """Send the bad request, then a good one on the same connection; return the bad request's answer."""
    before = front.log_sizes()
    with httpx.Client(timeout=60) as client:
        bad = send(client)
        bad_port = _local_port(bad)  # now: once the server closed it, the socket has no address to read
        good = client.post(front.predict_url, json={"instances": GOOD})
        assert good.status_code == 200, good.text
        assert_rows_close(good.json()["predictions"], tiny_model.predict(GOOD))
        assert _local_port(good) == bad_port, "the bad request cost the client its connection"
    assert 400 <= bad.status_code < 500, (bad.status_code, bad.text)
    assert bad.headers["content-type"].startswith("application/json"), bad.headers
    assert isinstance(bad.json()["error"], str) and bad.json()["error"], bad.text
    assert "Traceback" not in bad.text
    logged = front.new_log_text(before)
    assert "Traceback" not in logged, logged[-4000:]
    return bad


def post_json(front: FrontDoor, body: Any) -> Callable[[httpx.Client], httpx.Response]:
    return lambda client: client.post(front.predict_url, content=json.dumps(body),
                                      headers={"content-type": "application/json"})


# -- malformed instances: the handler's own 400 with the instance it is about ----------------------------------
@pytest.mark.parametrize(
    ("body", "said"),
    [
        ({"instances": "1,2,3,4"}, '"instances" must be a list'),
        ({"instances": []}, '"instances" is empty'),
        ({"instances": [["a", "b", "c", "d"]]}, "instance 0"),
        ({"instances": [[1, 2, 3, 4], [1, 2]]}, "differ in shape"),
        ({"instances": {"x": 1}}, '"instances" must be a list'),
    ],
    ids=["string", "empty", "not-numbers", "ragged", "object"],
)
def test_malformed_instances(front: FrontDoor, tiny_model: TinyModel, body: Any, said: str) -> None:
    bad = probe(front, tiny_model, post_json(front, body))
    assert bad.status_code == 400
    assert said in bad.json()["error"]


def test_an_instance_the_model_cannot_take_is_400_once_the_model_has_served(
    front: FrontDoor, tiny_model: TinyModel
) -> None:
    """A row of 3 numbers for a Linear(4, 3): the model fails on it, and having served rows of 4 the handler knows
    the client's instances are what is wrong (a 400 with torch's words, not a 500 with TorchScript's traceback)."""
    httpx.post(front.predict_url, json={"instances": GOOD}, timeout=60).raise_for_status()
    bad = probe(front, tiny_model, post_json(front, {"instances": [[1.0, 2.0, 3.0]]}))
    assert bad.status_code == 400
    error = bad.json()["error"]
    assert "instances of shape [3] do not fit the model" in error and "options.shape" in error, error


# -- bodies that are JSON but not the v1 envelope (the raw TorchServe form belongs to /predictions/M) ----------
@pytest.mark.parametrize(
    ("body", "kind"),
    [("Where is my parcel?", "a string"), (42, "a number"), ([[1, 2, 3, 4]], "a list"), (None, "null"),
     (True, "a boolean"), ({}, "no \"instances\""), ({"data": [1, 2, 3, 4]}, "no \"instances\"")],
    ids=["string", "number", "list", "null", "boolean", "empty-object", "other-keys"],
)
def test_a_body_that_is_not_the_v1_envelope_is_400(front: FrontDoor, tiny_model: TinyModel, body: Any,
                                                     kind: str) -> None:
    bad = probe(front, tiny_model, post_json(front, body))
    assert bad.status_code == 400
    error = bad.json()["error"]
    assert '{"instances": [...]}' in error and kind in error, error


def test_a_body_nested_500_deep_is_answered_4xx_not_500(front: FrontDoor, tiny_model: TinyModel) -> None:
    deep = "[" * 500 + "1" + "]" * 500
    bad = probe(front, tiny_model, lambda c: c.post(front.predict_url, content='{"instances": [' + deep + "]}",
                                                    headers={"content-type": "application/json"}))
    assert bad.status_code == 400


def test_a_body_nested_beyond_the_json_parser_s_limit_is_400(front: FrontDoor, tiny_model: TinyModel) -> None:
    deep = "[" * 2000 + "]" * 2000
    bad = probe(front, tiny_model, lambda c: c.post(front.predict_url, content='{"instances": ' + deep + "}",
                                                    headers={"content-type": "application/json"}))
    assert bad.status_code == 400
    assert "not valid JSON" in bad.json()["error"] and "depth" in bad.json()["error"]


@pytest.mark.parametrize(
    "content",
    [b'{"instances": [[1, 2', b"instances=1,2,3,4", b"\xff\xfe{}", b""],
    ids=["truncated", "form-like", "not-utf8", "empty"],
)
def test_a_body_that_is_not_json_is_400(front: FrontDoor, tiny_model: TinyModel, content: bytes) -> None:
    bad = probe(front, tiny_model, lambda c: c.post(front.predict_url, content=content,
                                                    headers={"content-type": "application/json"}))
    assert bad.status_code == 400
    assert "not valid JSON" in bad.json()["error"]


# -- content types --------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "content_type",
    ["text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x", "application/xml"],
)
def test_a_content_type_other_than_json_is_415_naming_the_accepted_ones(
    front: FrontDoor, tiny_model: TinyModel, content_type: str
) -> None:
    body = json.dumps({"instances": GOOD})
    bad = probe(front, tiny_model, lambda c: c.post(front.predict_url, content=body,
                                                    headers={"content-type": content_type}))
    assert bad.status_code == 415
    error = bad.json()["error"]
    assert content_type.split(";")[0] in error and "application/json" in error, error


@pytest.mark.parametrize("content_type", ["application/json; charset=utf-8", "application/json;charset=UTF-8",
                                          "APPLICATION/JSON", "application/octet-stream", None])
def test_json_with_parameters_or_no_content_type_is_answered(
    front: FrontDoor, tiny_model: TinyModel, content_type: str | None
) -> None:
    headers = {"content-type": content_type} if content_type else {}
    answer = httpx.post(front.predict_url, content=json.dumps({"instances": GOOD}), headers=headers, timeout=60)
    assert answer.status_code == 200, answer.text
    assert_rows_close(answer.json()["predictions"], tiny_model.predict(GOOD))


# -- size, method, name ---------------------------------------------------------------------------------------
def test_a_64_mb_body_is_413_naming_the_limit_and_the_key(front: FrontDoor, tiny_model: TinyModel) -> None:
    row = json.dumps([0.5] * 4)
    count = 64 * 2**20 // (len(row) + 2)
    body = '{"instances": [' + ", ".join([row] * count) + "]}"
    bad = probe(front, tiny_model, lambda c: c.post(front.predict_url, content=body,
                                                    headers={"content-type": "application/json"}))
    assert bad.status_code == 413
    error = bad.json()["error"]
    assert str(front.max_request_size) in error
    assert "max_request_size" in error and "server.max_request_size" in error, error


@pytest.mark.parametrize("verb", ["predict", "explain"])
@pytest.mark.parametrize("method", ["GET", "PUT", "DELETE"])
def test_another_method_on_a_verb_is_405_allow_post(front: FrontDoor, tiny_model: TinyModel, verb: str,
                                                    method: str) -> None:
    url = f"{front.predictor.url}/v1/models/{MODEL}:{verb}"
    bad = probe(front, tiny_model, lambda c: c.request(method, url))
    assert bad.status_code == 405
    assert bad.headers["allow"] == "POST"
    assert "POST" in bad.json()["error"]


def test_an_unknown_model_is_404_naming_the_models_there_are(front: FrontDoor, tiny_model: TinyModel) -> None:
    url = f"{front.predictor.url}/v1/models/intent:predict"
    bad = probe(front, tiny_model, lambda c: c.post(url, json={"instances": GOOD}))
    assert bad.status_code == 404
    assert "intent" in bad.json()["error"] and MODEL in bad.json()["error"]


def test_explain_takes_the_same_envelope(front: FrontDoor, tiny_model: TinyModel) -> None:
    url = f"{front.predictor.url}/v1/models/{MODEL}:explain"
    bad = probe(front, tiny_model, lambda c: c.post(url, content=b'"text"',
                                                    headers={"content-type": "application/json"}))
    assert bad.status_code == 400 and '{"instances": [...]}' in bad.json()["error"]


# -- names at build time (issue 15, item 6): refused at the spec, with the limit, no traceback ------------------
def _mar_build(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    exe = Path(sys.executable).parent / "mar-build"
    return subprocess.run([str(exe), *args], cwd=cwd, capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("where", ["flag", "mar.yaml"])
def test_a_300_character_name_is_refused_with_the_limit(tiny_model: TinyModel, tmp_path: Path, where: str) -> None:
    name = "n" * 300
    spec = {"name": name if where == "mar.yaml" else "linear", "task": "tensor", "model": str(tiny_model.path)}
    (tmp_path / "mar.yaml").write_text(json.dumps(spec))
    flags = ["--name", name] if where == "flag" else []
    done = _mar_build("build", str(tmp_path), "-o", str(tmp_path / "out"), *flags, cwd=tmp_path)
    assert done.returncode == 1
    assert "Traceback" not in done.stderr + done.stdout
    assert "300 characters" in done.stderr and f"at most {MODEL_NAME_MAX}" in done.stderr, done.stderr
    assert not (tmp_path / "out").exists()


def test_curl_d_is_415_and_curl_s_next_request_reuses_the_connection(front: FrontDoor) -> None:
    """``curl -d`` sends the form content type; the issue's own reproduction, with curl's connection reuse."""
    good = json.dumps({"instances": GOOD})
    fmt = "%{http_code} %{num_connects}\\n"
    done = subprocess.run(
        ["curl", "-sS", "-o", "/dev/null", "-w", fmt, "-d", good, front.predict_url, "--next",
         "-sS", "-o", "/dev/null", "-w", fmt, "-H", "Content-Type: application/json", "--data-binary", good,
         front.predict_url],
        capture_output=True, text=True, timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split("\n")[:2] == ["415 1", "200 0"], done.stdout


# -- v2 (Open Inference Protocol) bodies at /v2/models/M/infer ------------------------------------------------
V2_RUNTIMES = ("python", "torchserve")


def v2_url(front: FrontDoor) -> str:
    return f"{front.predictor.url}/v2/models/{MODEL}/infer"


def post_v2(front: FrontDoor, body: Any, content_type: str | None = "application/json"):
    headers = {"content-type": content_type} if content_type else {}
    content = body if isinstance(body, (bytes, str)) else json.dumps(body)
    return lambda client: client.post(v2_url(front), content=content, headers=headers)


def _v2_input(**keys: Any) -> dict[str, Any]:
    return {"inputs": [{"name": "input-0", "shape": [1, 4], "datatype": "FP32", "data": GOOD[0], **keys}]}


@pytest.fixture
def v2_front(front: FrontDoor, runtime: str) -> FrontDoor:
    if runtime not in V2_RUNTIMES:
        pytest.fail(f"the {runtime} runtime has no v2 front door yet")
    return front


def test_v2_good_request_is_answered_in_order(v2_front: FrontDoor, tiny_model: TinyModel) -> None:
    answer = httpx.post(v2_url(v2_front), json=_v2_input(), timeout=60)
    assert answer.status_code == 200, answer.text
    output = answer.json()["outputs"][0]
    assert output["datatype"] == "FP32" and output["shape"] == [1, 3]
    assert_rows_close([output["data"]], tiny_model.predict(GOOD))


@pytest.mark.parametrize(
    ("body", "said"),
    [
        (_v2_input(datatype="BYTES", data=["a", "b", "c", "d"]), "BYTES"),
        (_v2_input(datatype="FP33"), "unknown datatype"),
        (_v2_input(data=[1.0, 2.0, 3.0]), "holds 4 values"),
        (_v2_input(shape=[1, -4]), '"shape" must be a list of non-negative integers'),
        (_v2_input(data="1,2,3,4"), '"data" must be a list'),
        ({"inputs": [{"name": "input-0", "shape": [1, 4], "datatype": "FP32"}]}, 'missing "data"'),
        ({"inputs": []}, "input"),
        ({"outputs": []}, '"inputs"'),
        ({}, '"inputs"'),
        ({"inputs": "x"}, '"inputs" must be a list'),
        ([1, 2], "object"),
    ],
    ids=["bytes-for-numbers", "unknown-datatype", "shape-vs-data", "negative-shape", "data-string", "no-data",
         "no-inputs", "only-outputs", "empty-object", "inputs-string", "a-list"],
)
def test_v2_malformed_tensors_are_400_saying_which(v2_front: FrontDoor, tiny_model: TinyModel, body: Any,
                                                    said: str) -> None:
    bad = probe(v2_front, tiny_model, post_v2(v2_front, body))
    assert bad.status_code == 400
    assert said in bad.json()["error"], bad.text


def test_v2_data_nested_500_deep_is_400(v2_front: FrontDoor, tiny_model: TinyModel) -> None:
    deep = "[" * 500 + "1" + "]" * 500
    body = '{"inputs": [{"name": "input-0", "shape": [1, 4], "datatype": "FP32", "data": ' + deep + "}]}"
    bad = probe(v2_front, tiny_model, post_v2(v2_front, body))
    assert bad.status_code == 400


def test_v2_body_nested_beyond_the_json_parser_s_limit_is_400(v2_front: FrontDoor, tiny_model: TinyModel) -> None:
    bad = probe(v2_front, tiny_model, post_v2(v2_front, '{"inputs": ' + "[" * 2000 + "]" * 2000 + "}"))
    assert bad.status_code == 400


@pytest.mark.parametrize("content", [b'{"inputs": [', b"\xff\xfe{}", b""], ids=["truncated", "not-utf8", "empty"])
def test_v2_body_that_is_not_json_is_400(v2_front: FrontDoor, tiny_model: TinyModel, content: bytes) -> None:
    bad = probe(v2_front, tiny_model, post_v2(v2_front, content))
    assert bad.status_code == 400


@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded", "application/xml"])
def test_v2_content_type_other_than_json_is_415(v2_front: FrontDoor, tiny_model: TinyModel,
                                                content_type: str) -> None:
    bad = probe(v2_front, tiny_model, post_v2(v2_front, _v2_input(), content_type))
    assert bad.status_code == 415
    assert "application/json" in bad.json()["error"], bad.text


def test_v2_64_mb_body_is_413_naming_the_limit(v2_front: FrontDoor, tiny_model: TinyModel) -> None:
    count = 64 * 2**20 // 5
    data = ",".join(["0.5"] * count)
    body = f'{{"inputs": [{{"name": "input-0", "shape": [{count}], "datatype": "FP32", "data": [{data}]}}]}}'
    bad = probe(v2_front, tiny_model, post_v2(v2_front, body))
    assert bad.status_code == 413
    assert str(v2_front.max_request_size) in bad.json()["error"] and "max_request_size" in bad.json()["error"]


@pytest.mark.parametrize("binary", [False, True], ids=["json", "binary"])
def test_tritonclient_gets_the_v1_predictions_from_both_runtimes(v2_front: FrontDoor, tiny_model: TinyModel,
                                                                binary: bool) -> None:
    """tritonclient's HTTP client (a v2 client nobody here wrote), JSON and its binary extension: the outputs are
    v1's predictions, FP32 [N, 3], through the python runtime and through the wrapper in front of TorchServe."""
    import numpy as np
    from tritonclient.http import InferenceServerClient, InferInput
    from tritonclient.utils import InferenceServerException

    rows = [[1.0, 2.0, 3.0, 4.0], [0.5, -1.0, 0.0, 2.0]]
    client = InferenceServerClient(url=v2_front.predictor.url.removeprefix("http://"))
    try:
        assert client.is_server_ready() and client.is_model_ready(MODEL)
        given = InferInput("input-0", [2, 4], "FP32")
        given.set_data_from_numpy(np.array(rows, dtype=np.float32), binary_data=binary)
        result = client.infer(MODEL, [given])
        outputs = result.get_response()["outputs"]
        assert [(o["name"], o["datatype"], o["shape"]) for o in outputs] == [("output-0", "FP32", [2, 3])]
        assert_rows_close(result.as_numpy("output-0").tolist(), tiny_model.predict(rows))
        v1 = httpx.post(v2_front.predict_url, json={"instances": rows}, timeout=60).json()["predictions"]
        assert_rows_close(v1, tiny_model.predict(rows))
        wrong = InferInput("input-0", [1, 4], "BYTES")
        wrong.set_data_from_numpy(np.array([["a", "b", "c", "d"]], dtype=np.object_), binary_data=binary)
        with pytest.raises(InferenceServerException, match="input 'input-0'"):
            client.infer(MODEL, [wrong])
    finally:
        client.close()
