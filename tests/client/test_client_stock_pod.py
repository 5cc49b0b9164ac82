"""The client in front of the stock pytorch/torchserve-kfs pod, whose wrapper says "ready": "True" (a string) and
answers 500 for every error of TorchServe: answers recorded from that wrapper (tests/serve/fixtures/)."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest
from client_support import Script, make

from toolkit._client.answers import STATUS_HINTS, hidden_status
from toolkit._errors import PredictError

STOCK = json.loads((Path(__file__).parents[1] / "serve" / "fixtures" / "stock_wrapper_090.json").read_text())["answers"]


def _recorded(label: str) -> httpx.Response:
    answer = STOCK[label]
    return httpx.Response(answer["status"], content=answer["body"].encode(),
                          headers={"content-type": answer["content_type"]})


def test_the_stock_readiness_string_counts_as_ready() -> None:
    with make(Script(_recorded("ready"))) as client:
        assert client.ready("lin") is True
    with make(Script(httpx.Response(200, json={"name": "lin", "ready": "False"}))) as client:
        assert client.ready("lin") is False


@pytest.mark.parametrize(("label", "status", "said"), [
    ("handler-400", 400, "instance 0: not a rectangular nested list of numbers: too many dimensions 'str'"),
    ("handler-400-empty", 400, '"instances" is empty'),
    ("too-large", 413, "Request Entity Too Large"),
])
def test_a_4xx_hidden_in_the_stock_500_raises_as_the_4xx_would(label: str, status: int, said: str) -> None:
    with make(Script(_recorded(label))) as client, pytest.raises(PredictError) as caught:
        client.predict("lin", [[1, 2, 3]])
    error = caught.value
    assert error.status == status
    assert error.message.endswith(f"answered {status} (as a 500): {said}")
    assert error.hint is not None and error.hint.startswith(STATUS_HINTS[status])
    assert "stock pytorch/torchserve-kfs image" in error.hint and "hid the status" in error.hint
    assert error.body == STOCK[label]["body"]  # what the server really sent stays on the error


def test_a_real_4xx_gives_the_same_error_without_the_stock_note() -> None:
    said = '"instances" is empty'
    with make(Script(httpx.Response(400, json={"error": said}))) as client, pytest.raises(PredictError) as caught:
        client.predict("lin", [[1, 2, 3]])
    assert caught.value.status == 400 and caught.value.message.endswith(said)
    assert caught.value.hint == STATUS_HINTS[400]


@pytest.mark.parametrize("label", ["charset", "curl-d", "down-predict"])
def test_other_stock_500s_stay_500s(label: str) -> None:
    assert hidden_status(json.loads(STOCK[label]["body"])["error"]) is None
    with make(Script(_recorded(label))) as client, pytest.raises(PredictError) as caught:
        client.predict("lin", [[1, 2, 3]])
    assert caught.value.status == 500


def test_the_explain_form_of_the_stock_error() -> None:
    text = ("HTTPStatusError : Client error '400 \"instances\" is empty' for url 'http://127.0.0.1:8085/v1/models/"
            "lin:explain'\nFor more information check: https://httpstatuses.com/400")
    assert hidden_status(text) == (400, '"instances" is empty')
    assert hidden_status(text.replace("'400", "'503")) is None  # only a 4xx: the client's to fix
