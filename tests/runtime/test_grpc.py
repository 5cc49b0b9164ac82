"""gRPC v2 on the python runtime (``serve(..., runtime="python", grpc_port=N)``), called with KServe's own client
(``kserve.InferenceGRPCClient`` and kserve's generated stub): the text-classification sample answers over gRPC what it
answers over REST v2 and v1, bad tensors are INVALID_ARGUMENT naming the input, an unknown model NOT_FOUND, and gRPC
and REST requests served together all get their own right answers. One runtime for the module."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import grpc
import httpx
import numpy as np
import pytest
from grpc_interceptor.exceptions import GrpcException
from kserve import InferenceGRPCClient, InferInput, InferRequest
from kserve.protocol.grpc import grpc_predict_v2_pb2 as pb
from kserve.protocol.grpc.grpc_predict_v2_pb2_grpc import GRPCInferenceServiceStub
from serve.serve_support import free_port

from toolkit._build.builder import build
from toolkit._grpc_v2 import V2Body, infer_response, status_error, v2_body
from toolkit._runtime.handling import Answer
from toolkit._runtime.server import RuntimeModel
from toolkit._serve import RuntimePredictor, serve

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "integration"))
from integration_support import SAMPLES, Case, text_classification  # noqa: E402

pytestmark = pytest.mark.slow

T = TypeVar("T")


@dataclass
class Grpc:
    predictor: RuntimePredictor
    target: str  # host:port of the gRPC server
    case: Case

    @property
    def texts(self) -> list[str]:
        return [i if isinstance(i, str) else i["data"] for i in self.case.instances]

    def call(self, work: Callable[[InferenceGRPCClient], Awaitable[T]]) -> T:
        """``work(client)`` on a fresh client and event loop (a grpc.aio channel belongs to its loop)."""

        async def run() -> T:
            async with InferenceGRPCClient(self.target, retries=0, timeout=120) as client:
                return await work(client)

        return asyncio.run(run())

    def stub_call(self, method: str, request: Any) -> Any:
        """One call through kserve's generated stub (what InferenceGRPCClient lacks: metadata, raw messages)."""

        async def run() -> Any:
            async with grpc.aio.insecure_channel(self.target) as channel:
                return await getattr(GRPCInferenceServiceStub(channel), method)(request, timeout=120)

        return asyncio.run(run())


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Grpc]:
    proc = subprocess.run([sys.executable, str(SAMPLES / "text-classification" / "prepare.py")],
                          capture_output=True, text=True, timeout=1800)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    case = text_classification()
    work = tmp_path_factory.mktemp("grpc")
    # One worker in process: the batches form in the runtime's event loop, gRPC and REST requests alike.
    overrides = {"serving.batch_size": 8, "serving.max_batch_delay": 50, "serving.min_workers": 1,
                 "serving.max_workers": 1}
    layout = build(SAMPLES / "text-classification", work / "layout", overrides=overrides).layout
    grpc_port = free_port()
    with serve(layout, port=free_port(), runtime="python", grpc_port=grpc_port, workdir=work / "run",
               startup_timeout=300) as predictor:
        assert isinstance(predictor, RuntimePredictor)
        yield Grpc(predictor, f"127.0.0.1:{grpc_port}", case)


def _texts_request(name: str, texts: list[str], datatype: str = "BYTES") -> InferRequest:
    return InferRequest(name, [InferInput("input-0", [len(texts)], datatype, texts)])


def _labels(response: Any) -> list[str]:
    return [v.decode() if isinstance(v, bytes) else v for v in response.outputs[0].data]


def _rpc_error(served: Grpc, request: InferRequest) -> grpc.aio.AioRpcError:
    async def work(client: InferenceGRPCClient) -> grpc.aio.AioRpcError:
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await client.infer(request)
        return caught.value

    return served.call(work)


def test_ports_show_grpc(served: Grpc) -> None:
    assert served.predictor.ports["grpc"] == int(served.target.rsplit(":", 1)[1])
    assert served.predictor.to_dict()["ports"]["grpc"] == served.predictor.ports["grpc"]


def test_server_and_model_readiness(served: Grpc) -> None:
    async def work(client: InferenceGRPCClient) -> tuple[bool, bool, bool]:
        return (await client.is_server_live(), await client.is_server_ready(),
                await client.is_model_ready(served.case.name))

    assert served.call(work) == (True, True, True)


def test_model_metadata_is_rests(served: Grpc) -> None:
    rest = httpx.get(f"{served.predictor.url}/v2/models/{served.case.name}", timeout=60).json()
    meta = served.stub_call("ModelMetadata", pb.ModelMetadataRequest(name=served.case.name))

    def tensors(items: Any) -> list[dict[str, Any]]:
        return [{"name": t.name, "datatype": t.datatype, "shape": list(t.shape)} for t in items]

    assert (meta.name, meta.platform) == (rest["name"], rest["platform"])
    assert tensors(meta.inputs) == rest["inputs"] == [{"name": "input-0", "datatype": "BYTES", "shape": [-1]}]
    assert tensors(meta.outputs) == rest["outputs"]
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        served.stub_call("ModelMetadata", pb.ModelMetadataRequest(name="no-such-model"))
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND


def test_infer_answers_as_rest_v2_and_v1(served: Grpc) -> None:
    texts = served.texts
    response = served.call(lambda client: client.infer(_texts_request(served.case.name, texts)))
    labels = _labels(response)
    served.case.check(labels)
    assert (response.model_name, response.outputs[0].name, response.outputs[0].datatype) == (
        served.case.name, "output-0", "BYTES")
    assert response.outputs[0].shape == [len(texts)]
    url = served.predictor.url
    v2 = httpx.post(f"{url}/v2/models/{served.case.name}/infer", timeout=120,
                    json={"inputs": [{"name": "input-0", "shape": [len(texts)], "datatype": "BYTES", "data": texts}]})
    v1 = httpx.post(f"{url}/v1/models/{served.case.name}:predict", json={"instances": texts}, timeout=120)
    assert v2.status_code == 200 and v1.status_code == 200, (v2.text, v1.text)
    assert v2.json()["outputs"][0]["data"] == labels == v1.json()["predictions"]


def test_raw_input_contents_answer_the_same(served: Grpc) -> None:
    # The binary form (raw_input_contents) travels to the handler as the binary tensor extension.
    texts = served.texts[:4]
    tensor = InferInput("input-0", [len(texts)], "BYTES")
    tensor.set_data_from_numpy(np.array([t.encode() for t in texts], dtype=np.object_), binary_data=True)
    request = InferRequest(served.case.name, [tensor], request_id="raw-1")
    response = served.call(lambda client: client.infer(request))
    assert response.id == "raw-1"
    served.case.check(_labels(response), served.case.instances[:4])


@pytest.mark.parametrize(("tensors", "words"), [
    ([InferInput("input-0", [2], "FP32", [1.0, 2.0])], ["input 'input-0'", "datatype FP32", "BYTES"]),
    ([InferInput("input-0", [3], "BYTES", ["only one"])], ["input 'input-0'", "shape [3]", '"data" has 1']),
    ([InferInput("input-0", [1, 1], "BYTES", ["a text"])], ["input 'input-0'", "shape [1, 1]", "[N]"]),
    ([], ["expected one input, got none"]),
], ids=["datatype", "shape", "rank", "missing-input"])
def test_bad_tensors_are_invalid_argument(served: Grpc, tensors: list[InferInput], words: list[str]) -> None:
    error = _rpc_error(served, InferRequest(served.case.name, tensors))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT, error
    assert all(word in (error.details() or "") for word in words), error.details()


def test_unknown_datatype_names_the_input(served: Grpc) -> None:
    request = pb.ModelInferRequest(model_name=served.case.name, inputs=[
        pb.ModelInferRequest.InferInputTensor(name="text", datatype="STRING", shape=[1])])
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        served.stub_call("ModelInfer", request)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "input 'text': unknown datatype \"STRING\"" in (caught.value.details() or "")


def test_unknown_model_is_not_found(served: Grpc) -> None:
    error = _rpc_error(served, _texts_request("no-such-model", ["hello"]))
    assert error.code() == grpc.StatusCode.NOT_FOUND
    assert served.case.name in (error.details() or "") and "model_snapshot" in (error.details() or "")


def test_grpc_and_rest_together_all_right(served: Grpc) -> None:
    """gRPC and REST requests at once: each answers its own texts rightly (they share the model's batches)."""
    texts, name, url = served.texts, served.case.name, served.predictor.url
    expected = dict(zip(texts, served.case.expected, strict=True))
    picks = [[texts[(n + k) % len(texts)] for k in range(1 + n % 3)] for n in range(24)]

    async def run() -> tuple[list[list[str]], list[list[str]]]:
        async with InferenceGRPCClient(served.target, retries=0, timeout=120) as client, \
                httpx.AsyncClient(timeout=120) as http:

            async def over_grpc(batch: list[str]) -> list[str]:
                return _labels(await client.infer(_texts_request(name, batch)))

            async def over_rest(batch: list[str]) -> list[str]:
                body = {"inputs": [{"name": "input-0", "shape": [len(batch)], "datatype": "BYTES", "data": batch}]}
                reply = await http.post(f"{url}/v2/models/{name}/infer", json=body)
                assert reply.status_code == 200, reply.text
                return list(reply.json()["outputs"][0]["data"])

            grpc_answers = [over_grpc(b) for b in picks]
            rest_answers = [over_rest(b) for b in picks]
            answers = await asyncio.gather(*grpc_answers, *rest_answers)
            return list(answers[: len(picks)]), list(answers[len(picks):])

    over_grpc, over_rest = asyncio.run(run())
    right = [[expected[t] for t in batch] for batch in picks]
    assert over_grpc == right
    assert over_rest == right


def test_the_torchserve_path_answers_grpc_the_same(served: Grpc, tmp_path: Path) -> None:
    """The TorchServe path's wrapper (serve --grpc-port) sends ModelInfer to TorchServe's /v2/models/M/infer as the
    same v2 body: the same labels as the python runtime's gRPC, the handler's 400 as INVALID_ARGUMENT."""
    layout = served.predictor.layout
    name, texts = served.case.name, served.texts
    grpc_port = free_port()
    with serve(layout, port=free_port(), grpc_port=grpc_port, workdir=tmp_path / "run", startup_timeout=300) as ts:
        assert ts.runtime == "torchserve" and ts.ports["grpc"] == grpc_port
        other = Grpc(served.predictor, f"127.0.0.1:{grpc_port}", served.case)
        ready = other.call(lambda client: client.is_model_ready(name))
        labels = _labels(other.call(lambda client: client.infer(_texts_request(name, texts))))
        wrong = _rpc_error(other, _texts_request(name, [1.5] * len(texts), "FP32"))
        missing = _rpc_error(other, _texts_request("no-such-model", texts))
    assert ready is True
    assert labels == _labels(served.call(lambda client: client.infer(_texts_request(name, texts))))
    served.case.check(labels)
    assert wrong.code() == grpc.StatusCode.INVALID_ARGUMENT and "FP32" in (wrong.details() or ""), wrong.details()
    assert missing.code() == grpc.StatusCode.NOT_FOUND and name in (missing.details() or "")


# -- the conversions, without a server ---------------------------------------------------------------------------
def test_statuses_map_to_grpc_codes() -> None:
    codes = {status: status_error(status, "m").status_code for status in (400, 404, 413, 500, 503, 504, 507)}
    assert codes == {400: grpc.StatusCode.INVALID_ARGUMENT, 404: grpc.StatusCode.INVALID_ARGUMENT,
                     413: grpc.StatusCode.INVALID_ARGUMENT, 500: grpc.StatusCode.INTERNAL,
                     503: grpc.StatusCode.UNAVAILABLE, 504: grpc.StatusCode.DEADLINE_EXCEEDED,
                     507: grpc.StatusCode.INTERNAL}


def test_error_answers_keep_their_message() -> None:
    request = InferRequest("m", [])
    handler = Answer(400, b'{"error": "input \'x\': shape [2] holds 2 values"}', "application/json")
    with pytest.raises(GrpcException) as bad:
        infer_response(handler.status, handler.body, request, "m")
    assert (bad.value.status_code, bad.value.details) == (
        grpc.StatusCode.INVALID_ARGUMENT, "input 'x': shape [2] holds 2 values")
    with pytest.raises(GrpcException) as full:
        full_queue = Answer.error(503, "its queue of 100 requests is full")
        infer_response(full_queue.status, full_queue.body, request, "m")
    assert full.value.status_code == grpc.StatusCode.UNAVAILABLE and "queue of 100" in full.value.details
    with pytest.raises(GrpcException) as not_v2:
        infer_response(200, b'{"predictions": [1]}', request, "m")
    assert not_v2.value.status_code == grpc.StatusCode.INTERNAL and "no v2 response" in not_v2.value.details


def test_a_model_still_loading_is_unavailable() -> None:
    with pytest.raises(GrpcException) as caught:
        asyncio.run(RuntimeModel("m").predict(_texts_request("m", ["hello"])))
    assert caught.value.status_code == grpc.StatusCode.UNAVAILABLE and "not ready" in caught.value.details


def test_text_goes_as_json_and_image_bytes_as_binary() -> None:
    text = v2_body(InferRequest("m", [InferInput("t", [2], "BYTES", [b"caf\xc3\xa9", b"b"])], request_id="7"))
    assert text == V2Body({"inputs": [{"name": "t", "shape": [2], "datatype": "BYTES", "data": ["café", "b"]}],
                           "id": "7"}, "application/json")
    png = b"\x89PNG\r\n\x1a\n"
    image = v2_body(InferRequest("m", [InferInput("i", [1], "BYTES", [png])]))
    length = int(image.headers["inference-header-content-length"])
    assert image.content_type == "application/octet-stream"
    assert image.body[length:] == len(png).to_bytes(4, "little") + png
    assert b'"binary_data_size":12' in image.body[:length]
