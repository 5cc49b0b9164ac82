"""The v2 (Open Inference Protocol) envelope of the shared base: parsed per request, one forward pass with v1 and
raw requests, every bad body its own 400 naming the input, bodies as JSON, bytes or tritonclient's binary form.

The task handlers' v2 answers are tested in their own modules; tritonclient through TorchServe in
test_handler_torchserve.py.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from handler_support import Call, StandInContext, raw, tensor, v1, v2
from test_handler_envelope import SCALER
from tritonclient.http import InferenceServerClient, InferInput, InferRequestedOutput

NUMBERS = "numbers"


@pytest.fixture
def scaler(archive):
    return archive("custom", custom_handler=SCALER)


def answer(outputs, **keys):
    """The v2 answer of the stand-in context's model (name m, version 1.0 from the manifest)."""
    return {"model_name": "m", "model_version": "1.0", **keys, "outputs": outputs}


def output(shape, datatype, data):
    return {"name": "output-0", "shape": shape, "datatype": datatype, "data": data}


def test_v1_v2_and_raw_requests_of_one_batch_share_one_forward_pass_and_keep_their_forms(scaler):
    answers = scaler.batch(
        v1([1, 2]),
        v2([tensor(NUMBERS, [3], "INT64", [3, 4, 5])], id="req-7"),
        raw(6),
        v2([tensor(NUMBERS, [2, 1], "FP64", [[0.5], [1.5]])]),
        v1([7]),
    )
    assert [a.status for a in answers] == [200, 200, 200, 400, 200]
    assert answers[0].body == {"predictions": [2, 4]}
    assert answers[1].body == answer([output([3], "INT64", [6, 8, 10])], id="req-7")
    assert answers[2].body == 12
    # shape [2, 1]: the instances are the rows [0.5] and [1.5], which this handler's preprocess refuses
    assert answers[3].body == {"error": "input 'numbers': instance 0: expected a number, not [0.5]"}
    assert answers[4].body == {"predictions": [14]}
    assert scaler.service.passes == [[1, 2, 3, 4, 5, 6, 7]]


def test_rows_along_the_first_dimension_are_the_instances(scaler):
    [flat, nested] = scaler.batch(
        v2([tensor(NUMBERS, [4], "FP32", [1.5, 2.5, 3.0, 4.0])]),
        v2([tensor(NUMBERS, [2], "FP32", [[1.0], [2.0]])]),
    )
    assert flat.body == answer([output([4], "FP64", [3.0, 5.0, 6.0, 8.0])])
    assert nested.body == answer([output([2], "FP64", [2.0, 4.0])])  # nested data is legal, its shape rules
    assert scaler.service.passes == [[1.5, 2.5, 3.0, 4.0, 1.0, 2.0]]


BAD = [
    ({"inputs": "x"}, '"inputs" must be a list of tensors, got str'),
    ({"inputs": []}, "expected one input, got none"),
    (
        {"inputs": [tensor("a", [1], "INT64", [1]), tensor("b", [1], "INT64", [2])]},
        "expected one input, got 2: 'a', 'b'",
    ),
    ({"inputs": [5]}, "inputs[0] must be an object with name, shape, datatype and data"),
    ({"inputs": [{"shape": [1], "datatype": "INT64", "data": [1]}]}, 'inputs[0] has no "name" (a non-empty string)'),
    (
        {"inputs": [{"name": "n", "shape": [1], "data": [1]}]},
        "input 'n': unknown datatype null; expected one of BOOL, UINT8, UINT16, UINT32, UINT64, INT8, INT16, "
        "INT32, INT64, FP16, FP32, FP64, BYTES",
    ),
    ({"inputs": [tensor("n", [1], "FP8", [1])]}, "input 'n': unknown datatype \"FP8\"; expected one of BOOL"),
    ({"inputs": [tensor("n", 3, "INT64", [1])]}, "input 'n': \"shape\" must be a list of non-negative integers, got 3"),
    ({"inputs": [tensor("n", [2, -1], "INT64", [1])]}, "input 'n': \"shape\" must be a list of non-negative"),
    ({"inputs": [{"name": "n", "shape": [1], "datatype": "INT64"}]}, "input 'n': missing \"data\""),
    ({"inputs": [tensor("n", [2, 2], "INT64", [1, 2, 3])]}, "input 'n': shape [2, 2] holds 4 values, \"data\" has 3"),
    ({"inputs": [tensor("n", [3], "INT64", [[1, 2], [3]])]}, "input 'n': \"data\" is ragged"),
    ({"inputs": [tensor("n", [2], "INT64", [1, 2.5])]}, "input 'n': datatype INT64 takes integers, data[1] is 2.5"),
    ({"inputs": [tensor("n", [2], "INT8", [1, 200])]}, "input 'n': values out of range for INT8 (-128..127)"),
    ({"inputs": [tensor("n", [1], "FP32", ["1"])]}, "input 'n': datatype FP32 takes numbers, data[0] is \"1\""),
    ({"inputs": [tensor("n", [1], "BOOL", [1])]}, "input 'n': datatype BOOL takes true or false, data[0] is 1"),
    ({"inputs": [tensor("n", [0], "INT64", [])]}, "input 'n': shape [0] holds no instances"),
    ({"inputs": [tensor("n", [], "INT64", [1])]}, "input 'n': shape [], expected [N, ...] (one instance per row)"),
    ({"inputs": [tensor("n", [1], "BYTES", ["x"])]}, "input 'n': instance 0: expected a number, not x"),
    ({"inputs": [tensor("n", [1], "INT64", [1])], "id": 5}, '"id" must be a string, got int'),
    ({"inputs": [tensor("n", [1], "INT64", [1])], "parameters": []}, '"parameters" must be an object, got list'),
    (
        {"inputs": [tensor("n", [1], "INT64", [1])], "outputs": [{"name": "probabilities"}]},
        "unknown output 'probabilities'; this model answers 'output-0'",
    ),
]


def test_every_bad_v2_body_gets_its_own_400_naming_what_is_wrong_while_the_others_are_served(scaler):
    calls = [Call(json.dumps(body).encode(), headers={"explain": "False"}) for body, _ in BAD]
    answers = scaler.batch(v1([1]), *calls, v2([tensor(NUMBERS, [1], "INT64", [2])]))
    assert answers[0].body == {"predictions": [2]}
    assert answers[-1].body == answer([output([1], "INT64", [4])])
    for (body, message), got in zip(BAD, answers[1:-1], strict=True):
        assert got.status == 400, body
        assert got.body["error"].startswith(message), (body, got.body)
        assert got.phrase == got.body["error"][:200]
    assert scaler.service.passes == [[1, 2]]


def test_a_v2_body_as_bytes_or_text_is_read_as_v2_and_other_bytes_stay_raw(scaler):
    body = {"inputs": [tensor(NUMBERS, [2], "INT32", [1, 2])], "id": "b"}
    answers = scaler.batch(
        Call(json.dumps(body).encode(), ""),  # tritonclient: no Content-Type, so the worker gets bytes
        Call(json.dumps(body).encode(), "application/octet-stream"),
        Call(json.dumps(body).encode(), "text/plain"),
        raw(b"21"),
        raw(b"{not json", "application/octet-stream"),
    )
    assert [a.body for a in answers[:3]] == [answer([output([2], "INT64", [2, 4])], id="b")] * 3
    assert answers[3].body == 42.0
    assert answers[4].status == 400  # a raw instance, refused by this handler's preprocess: not a v2 error
    assert answers[4].body["error"] == "expected a number, not {not json"


def tritonclient_call(inputs, outputs=None, request_id="") -> Call:
    """The body and headers tritonclient's HTTP client sends (binary tensor data by default)."""
    body, json_size = InferenceServerClient.generate_request_body(inputs, outputs=outputs, request_id=request_id)
    headers = {"explain": "False"}
    if json_size is not None:
        headers["Inference-Header-Content-Length"] = str(json_size)
    return Call(body, "", headers)


def test_tritonclient_bodies_binary_and_json_are_read(scaler):
    binary = InferInput(NUMBERS, [3], "FP32")
    binary.set_data_from_numpy(np.array([1.5, 2.0, -3.0], dtype=np.float32))
    as_json = InferInput(NUMBERS, [2], "INT16")
    as_json.set_data_from_numpy(np.array([7, 8], dtype=np.int16), binary_data=False)
    wrong = InferInput(NUMBERS, [2], "INT64")
    wrong.set_data_from_numpy(np.array([7, 8], dtype=np.int64))
    wrong._raw_data = wrong._raw_data[:12]  # type: ignore[attr-defined]  # a truncated binary tensor
    lowercase = tritonclient_call([binary], request_id="low")
    lowercase.headers = {k.lower(): v for k, v in lowercase.headers.items()}  # as Envoy forwards them
    answers = scaler.batch(
        tritonclient_call([binary], request_id="r1"),
        tritonclient_call([as_json], outputs=[InferRequestedOutput("output-0", binary_data=False)]),
        tritonclient_call([wrong]),
        lowercase,
    )
    assert answers[0].body == answer([output([3], "FP64", [3.0, 4.0, -6.0])], id="r1")
    assert answers[1].body == answer([output([2], "INT64", [14, 16])])
    assert answers[2].status == 400
    assert answers[2].body["error"].startswith("input 'numbers': binary_data_size 16 but 12 bytes of binary data")
    assert answers[3].body["id"] == "low" and answers[3].status == 200


def test_v2_explain_answers_the_explanations_as_json_texts(scaler):
    [explained] = scaler.batch(v2([tensor(NUMBERS, [2], "INT64", [1, 2])], explain=True, id="e"))
    assert explained.body == answer([output([2], "BYTES", ['{"input":1}', '{"input":2}'])], id="e")


def test_the_v2_model_name_is_the_routed_name_then_the_manifest_then_mar_build_json(scaler):
    service = scaler.service
    context = StandInContext(scaler.model_dir, 8)
    context.model_name = "routed"
    service.initialize(context)
    assert (service.model_name, service.model_version) == ("routed", "1.0")
    del context.model_name  # the stock context always has one; a hand-made one may not
    context.manifest = {"model": {"modelName": "archived", "modelVersion": "2"}}
    service.initialize(context)
    assert (service.model_name, service.model_version) == ("archived", "2")
    context.manifest = {}
    service.initialize(context)
    assert (service.model_name, service.model_version) == ("m", "1.0")  # mar_build.json's name and version
    [got] = scaler.batch(v2([tensor(NUMBERS, [1], "INT64", [1])]))
    assert got.body["model_name"] == "m"


def test_outputs_keep_tensor_dtypes_and_answer_other_values_as_json_texts():
    import torch
    from handler_support import handler_module

    codec = handler_module("v2")
    rows = list(torch.arange(6, dtype=torch.int32).reshape(2, 3))
    assert codec.output("o", rows) == {"name": "o", "shape": [2, 3], "datatype": "INT32", "data": [0, 1, 2, 3, 4, 5]}
    halves = list(torch.tensor([[0.5], [1.5]], dtype=torch.bfloat16))
    assert codec.output("o", halves)["datatype"] == "FP32"
    assert codec.output("o", [True, False])["datatype"] == "BOOL"
    assert codec.output("o", [["a", "b"], ["c", "d"]]) == {
        "name": "o", "shape": [2, 2], "datatype": "BYTES", "data": ["a", "b", "c", "d"]
    }  # fmt: skip
    assert codec.output("o", [[1], [1, 2]])["data"] == ["[1]", "[1,2]"]  # ragged: one JSON text each
    assert codec.output("o", ["a", 1])["data"] == ['"a"', "1"]
    assert codec.output("o", [[], []])["data"] == ["[]", "[]"]
    assert codec.output("o", ["x"], as_json=True)["data"] == ['"x"']
