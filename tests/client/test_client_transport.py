"""Client over httpx.MockTransport: connections that fail or time out, and inputs refused before anything is sent."""

from __future__ import annotations

import threading
from typing import Any

import httpx
import pytest
from client_support import BASE, Script, V1Model, json_response, make

from toolkit._client import Client
from toolkit._errors import PredictError

# -- transport errors -------------------------------------------------------------------------------------------


def test_connection_errors_are_retried(model: V1Model) -> None:
    app = Script(httpx.ConnectError("connection refused"), httpx.ConnectError("connection refused"), model)
    with make(app, retries=3) as client:
        assert client.predict("bert", [5]) == [10]
    assert app.attempts == 3


def test_connection_errors_give_up_after_the_retries() -> None:
    app = Script(httpx.ConnectError("connection refused"))
    with make(app, retries=2) as client, pytest.raises(PredictError) as info:
        client.predict("bert", [5])
    assert app.attempts == 3
    assert "cannot connect" in info.value.message and "after 3 attempts" in info.value.message
    assert info.value.status is None
    assert "port-forward" in (info.value.hint or "")


@pytest.mark.parametrize("error", [httpx.ReadTimeout("timed out"), httpx.RemoteProtocolError("Server disconnected")])
def test_a_post_that_may_have_reached_the_server_is_not_retried_unless_asked(model: V1Model, error: Exception) -> None:
    app = Script(error, model)
    with make(app, retries=3) as client, pytest.raises(PredictError) as info:
        client.predict("bert", [1])
    assert app.attempts == 1
    assert "retry_non_idempotent" in info.value.message

    app = Script(error, error, model)
    with make(app, retries=3, retry_non_idempotent=True) as client:
        assert client.predict("bert", [1]) == [2]
    assert app.attempts == 3


def test_a_read_timeout_on_a_get_is_retried(model: V1Model) -> None:
    app = Script(httpx.ReadTimeout("timed out"), model)
    with make(app) as client:
        assert client.models() == ["bert"]
    assert app.attempts == 2


def test_a_server_that_never_answers_times_out(serve: Any) -> None:
    """Real loopback HTTP: the server reads the request and never answers; the call ends at the timeout."""
    release = threading.Event()

    def stuck(request: httpx.Request) -> httpx.Response:
        release.wait(10)
        return json_response(200, {"predictions": [1]})

    server = serve(stuck)
    try:
        with Client(server.url, timeout=0.3, backoff=0) as client, pytest.raises(PredictError) as info:
            client.predict("bert", [1])
        assert "no answer" in info.value.message and "within 0.3 s" in info.value.message
    finally:
        release.set()


# -- inputs checked before sending ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("instances", "words"),
    [
        ({"instances": [1]}, "not dict"),
        ("hello", "not str"),
        ([1, {2, 3}], "instance 1 is not JSON-serialisable"),
        ([1.0, float("nan")], "instance 1 is not JSON-serialisable"),
        ([object()], "instance 0 is not JSON-serialisable"),
    ],
)
def test_bad_instances_are_refused_before_sending(model: V1Model, instances: Any, words: str) -> None:
    with make(model) as client, pytest.raises(PredictError) as info:
        client.predict("bert", instances)
    assert words in info.value.message
    assert model.requests == []


def test_bad_model_names_and_bodies_are_refused(model: V1Model) -> None:
    with make(model) as client:
        with pytest.raises(PredictError, match="not a valid model name"):
            client.predict("../admin", [1])
        with pytest.raises(PredictError, match="body must be a JSON object"):
            client.infer("bert", [1])  # type: ignore[arg-type]
        with pytest.raises(PredictError, match="verb must be one of predict, explain"):
            client.infer("bert", {"instances": [1]}, verb="generate")
    assert model.requests == []


@pytest.mark.parametrize(
    ("args", "options", "words"),
    [
        (("localhost:8080",), {}, "must start with http://"),
        (("http://gw/v1/models/bert:predict",), {}, "names an endpoint"),
        ((BASE,), {"token": "t", "cookie": "c"}, "not token and cookie"),
        ((BASE,), {"username": "u"}, "username and password go together"),
        ((BASE,), {"timeout": 0}, "timeout must be a positive"),
        ((BASE,), {"retries": -1}, "retries must be"),
        ((BASE,), {"max_batch": 0}, "max_batch must be"),
        ((BASE,), {"concurrency": 0}, "concurrency must be"),
        ((BASE,), {"host": "http://x.example.com/"}, "host must be a host name"),
        ((BASE,), {"cookie": "a=1; broken"}, "is not name=value"),
        ((BASE,), {"cookie": "v", "cookie_name": "my cookie"}, "cookie_name must be a cookie name"),
    ],
)
def test_bad_arguments_are_refused(args: tuple[str, ...], options: dict[str, Any], words: str) -> None:
    with pytest.raises(PredictError, match=words):
        Client(*args, **options)


def test_a_base_url_with_a_path_prefix_keeps_it(model: V1Model) -> None:
    def app(request: httpx.Request) -> httpx.Response:
        assert request.url.path.startswith("/serving/")
        url = request.url.copy_with(path=request.url.path.removeprefix("/serving"))
        return model(httpx.Request(request.method, url, headers=request.headers, content=request.content))

    with Client(BASE + "/serving/", transport=httpx.MockTransport(app)) as client:
        assert client.predict("bert", [1]) == [2]
