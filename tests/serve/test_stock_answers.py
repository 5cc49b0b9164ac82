"""toolkit/_serve/stock.py rebuilds, byte for byte, what the stock image's wrapper answered (recorded in fixtures/)."""

from __future__ import annotations

import json
from pathlib import Path

import orjson
import pytest

from toolkit._front_door import Refused
from toolkit._serve.stock import (
    NOT_SERIALIZABLE,
    has_archives,
    stock_error,
    stock_payload,
    stock_ready,
    stock_transport_error,
)

STOCK = json.loads((Path(__file__).parent / "fixtures" / "stock_wrapper_090.json").read_text())["answers"]
URL = "{torchserve}/v1/models/lin:predict"


def _error(label: str) -> str:
    return STOCK[label]["body"]


def test_a_handlers_4xx_becomes_the_stock_500_text() -> None:
    said = "instance 0: not a rectangular nested list of numbers: too many dimensions 'str'"
    body = orjson.dumps({"error": said})  # what a mar-build handler answers TorchServe's caller
    assert stock_error("predict", 400, said, body, "application/json", URL).decode() == _error("handler-400")
    assert STOCK["handler-400"]["status"] == 500


def test_torchserves_bodiless_413_becomes_the_stock_500_text() -> None:
    assert stock_error("predict", 413, "Request Entity Too Large", b"", None, URL).decode() == _error("too-large")


def test_the_error_of_a_json_answer_is_taken_only_with_exactly_that_content_type() -> None:
    body = orjson.dumps({"error": "nope"})
    assert "HTTPStatusError : nope, " in stock_error("predict", 400, "r", body, "application/json", URL).decode()
    assert "HTTPStatusError : , " in stock_error("predict", 400, "r", body, "application/json; charset=utf-8",
                                                 URL).decode()


def test_explain_errors_are_httpx_raise_for_status_text() -> None:
    text = json.loads(stock_error("explain", 400, "bad", b"{}", "application/json", "U"))["error"]
    assert text == ("HTTPStatusError : Client error '400 bad' for url 'U'\n"
                    "For more information check: https://httpstatuses.com/400")


@pytest.mark.parametrize(("content_type", "raw", "status", "label"), [
    ("application/json; charset=utf-8", b'{"instances": [[1, 2, 3]]}', 500, "charset"),
    ("application/x-www-form-urlencoded", b'{"instances": [[1, 2, 3]]}', 500, "curl-d"),
    ("application/json", b'{"instances": "hi"}', 400, "instances-not-list"),
])
def test_the_requests_the_stock_wrapper_answers_itself(content_type: str, raw: bytes, status: int, label: str) -> None:
    with pytest.raises(Refused) as caught:
        stock_payload(raw, content_type)
    assert (caught.value.status, orjson.dumps({"error": str(caught.value)}).decode()) == (status, _error(label))
    assert STOCK[label]["status"] == status


def test_what_the_stock_wrapper_forwards() -> None:
    assert stock_payload(b'{"inputs": [[1, 2, 3]]}', "application/json") == b'{"inputs":[[1,2,3]]}'
    assert stock_payload(b'{"instances": [1]}', None) == b'{"instances":[1]}'
    with pytest.raises(Refused, match="Unrecognized request format: "):
        stock_payload(b"{not json", "application/json")
    assert NOT_SERIALIZABLE in _error("curl-d")


def test_readiness_and_a_torchserve_that_is_gone() -> None:
    assert orjson.dumps(stock_ready("lin")).decode() == STOCK["ready"]["body"] == STOCK["down-ready"]["body"]
    assert stock_transport_error(ConnectionRefusedError()).decode() == _error("down-predict")


def test_the_stock_wrapper_is_ready_when_any_archive_is_there(tmp_path: Path) -> None:
    assert not has_archives(tmp_path)
    (tmp_path / "other.mar").write_bytes(b"")
    assert has_archives(tmp_path)
