"""Client over httpx.MockTransport: every answer a KServe endpoint (or what stands in front of it) can give."""

from __future__ import annotations

import json
import logging
from typing import Any

import httpx
import pytest
from client_support import BASE, Script, V1Model, json_response, make

import toolkit._client.client
from toolkit._client.client import Client
from toolkit._client.session import RETRY_AFTER_CAP, retry_after_seconds
from toolkit._errors import PredictError

# -- the good path ----------------------------------------------------------------------------------------------


def test_predict_posts_v1_instances_and_returns_predictions_in_order(model: V1Model) -> None:
    with make(model) as client:
        assert client.predict("bert", [{"data": "Hello World!"}, {"data": "hi"}, 21]) == [12, 2, 42]
    (post,) = model.posts()
    assert post.url.path == "/v1/models/bert:predict"
    assert post.headers["content-type"] == "application/json"
    assert json.loads(post.content) == {"instances": [{"data": "Hello World!"}, {"data": "hi"}, 21]}


def test_a_tuple_of_instances_is_fine_and_unicode_survives(model: V1Model) -> None:
    with make(model) as client:
        assert client.predict("bert", ({"data": "héllo ✓"},)) == [7]
    assert json.loads(model.posts()[0].content)["instances"] == [{"data": "héllo ✓"}]


def test_explain_and_infer(model: V1Model) -> None:
    with make(model) as client:
        assert client.explain("bert", [3]) == [{"instance": 3, "score": 6}]
        whole = client.infer("bert", {"instances": [1, 2]})
        assert whole == {"predictions": [2, 4]}
        explained = client.infer("bert", {"instances": [5]}, verb="explain")
        assert explained == {"explanations": [{"instance": 5, "score": 10}]}
    assert [r.url.path for r in model.posts()] == [
        "/v1/models/bert:explain", "/v1/models/bert:predict", "/v1/models/bert:explain"]


def test_models_and_ready(model: V1Model) -> None:
    model.models = ("bert", "roberta")
    with make(model) as client:
        assert client.models() == ["bert", "roberta"]
        assert client.ready("roberta") is True
        model.ready = False
        assert client.ready("roberta") is False


def test_ready_waits_until_the_model_is_ready(model: V1Model, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(toolkit._client.client, "_READY_POLL", 0.01)
    model.ready = False
    probes = 0

    def app(request: httpx.Request) -> httpx.Response:
        nonlocal probes
        probes += 1
        model.ready = probes >= 3  # the third probe finds it loaded
        return model(request)

    with make(app) as client:
        assert client.ready("bert", wait=30) is True
    assert probes == 3


def test_ready_gives_up_after_wait_and_says_false(model: V1Model, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(toolkit._client.client, "_READY_POLL", 0.01)
    model.ready = False
    with make(model) as client:
        assert client.ready("bert", wait=0.05) is False
    assert len(model.requests) >= 2


def test_ready_on_a_model_name_the_server_does_not_have_raises_with_the_listing(model: V1Model) -> None:
    with make(model) as client, pytest.raises(PredictError) as info:
        client.ready("torchserve")
    assert "the server has: bert" in str(info.value)
    assert "model_snapshot" in str(info.value)


def test_ready_is_false_while_the_gateway_has_no_route_yet() -> None:
    app = Script(httpx.Response(404, text=""))  # Istio: no VirtualService for that host yet
    with make(app, host="torchserve.ns.example.com") as client:
        assert client.ready("bert") is False


def test_ready_is_false_when_nothing_listens_yet() -> None:
    app = Script(httpx.ConnectError("connection refused"))
    with make(app, retries=5) as client:
        assert client.ready("bert") is False
    assert app.attempts == 1  # one probe: the caller's wait= decides how long to keep trying


def test_ready_does_not_hide_an_expired_session() -> None:
    app = Script(httpx.Response(302, headers={"location": "/oauth2/start?rd=%2Fv1%2Fmodels%2Fbert"}))
    with make(app, cookie="old") as client, pytest.raises(PredictError, match="session expired"):
        client.ready("bert", wait=5)
    assert app.attempts == 1


def test_empty_instances_send_nothing(model: V1Model) -> None:
    with make(model) as client:
        assert client.predict("bert", []) == []
    assert model.requests == []


# -- what is sent: Host, auth, headers --------------------------------------------------------------------------


def test_host_and_bearer_token_are_sent(model: V1Model) -> None:
    with make(model, host="torchserve.kubeflow-user-example-com.example.com", token="t0ken",
              headers={"X-Trace": "1"}) as client:
        client.predict("bert", [1])
        client.models()
    for request in model.requests:
        assert request.headers["host"] == "torchserve.kubeflow-user-example-com.example.com"
        assert request.headers["authorization"] == "Bearer t0ken"
        assert request.headers["x-trace"] == "1"
        assert "cookie" not in request.headers
    assert str(model.requests[0].url).startswith("http://gateway.test:8080/")


@pytest.mark.parametrize(
    ("options", "expected"),
    [
        ({"cookie": "MTcwMDAwMDAwMHxabc=="}, "authservice_session=MTcwMDAwMDAwMHxabc=="),
        ({"cookie": "authservice_session=MTcw=="}, "authservice_session=MTcw=="),
        ({"cookie": "abc|123|sig=", "cookie_name": "oauth2_proxy_kubeflow"}, "oauth2_proxy_kubeflow=abc|123|sig="),
        ({"cookie": "Cookie: a=1; oauth2_proxy_kubeflow=x"}, "a=1; oauth2_proxy_kubeflow=x"),
        ({"cookies": {"extra": "1"}, "cookie": "v"}, "extra=1; authservice_session=v"),
    ],
)
def test_cookies_are_sent_as_given(model: V1Model, options: dict[str, Any], expected: str) -> None:
    with make(model, **options) as client:
        client.predict("bert", [1])
    (post,) = model.posts()
    assert post.headers["cookie"] == expected
    assert "authorization" not in post.headers


def test_a_server_set_cookie_does_not_change_what_is_sent(model: V1Model) -> None:
    def app(request: httpx.Request) -> httpx.Response:
        response = model(request)
        response.headers["set-cookie"] = "authservice_session=other; Path=/"
        return response

    with make(app, cookie="mine") as client:
        client.predict("bert", [1])
        client.predict("bert", [2])
    assert [r.headers["cookie"] for r in model.posts()] == ["authservice_session=mine"] * 2


def test_the_token_is_not_in_repr() -> None:
    for secret in ({"token": "s3cret-token"}, {"cookie": "s3cret-cookie"}, {"username": "u", "password": "s3cret"}):
        with Client(BASE, host="a.b.example.com", **secret) as client:
            assert "s3cret" not in repr(client)
            assert "a.b.example.com" in repr(client)


# -- errors the server answers ----------------------------------------------------------------------------------


def test_400_carries_the_server_message(model: V1Model) -> None:
    app = Script(json_response(400, {"error": "Invalid input: expected a 'data' key"}))
    with make(app) as client, pytest.raises(PredictError) as info:
        client.predict("bert", [1])
    err = info.value
    assert err.status == 400
    assert "Invalid input: expected a 'data' key" in err.message
    assert err.url == f"{BASE}/v1/models/bert:predict"
    assert "Invalid input" in (err.body or "")
    assert app.attempts == 1


def test_404_lists_the_models_the_server_has(model: V1Model) -> None:
    model.models = ("bert", "sentiment")
    with make(model) as client, pytest.raises(PredictError) as info:
        client.predict("torchserve", [1])
    err = info.value
    assert err.status == 404
    assert "model 'torchserve' not found" in err.message
    assert "the server has: bert, sentiment" in err.message
    assert "model_snapshot" in (err.hint or "") and "not the InferenceService name" in (err.hint or "")
    assert [r.url.path for r in model.requests] == ["/v1/models/torchserve:predict", "/v1/models"]


def test_404_from_a_gateway_that_lists_nothing_points_at_the_host_header() -> None:
    app = Script(httpx.Response(404, text="", headers={"server": "istio-envoy"}))
    with make(app, host="wrong.ns.example.com") as client, pytest.raises(PredictError) as info:
        client.predict("bert", [1])
    assert "could not list the models" in info.value.message
    assert "Host header (wrong.ns.example.com)" in (info.value.hint or "")


def test_413_hints_at_max_request_size() -> None:
    app = Script(httpx.Response(413, text="Request Entity Too Large"))
    with make(app) as client, pytest.raises(PredictError) as info:
        client.predict("bert", ["x" * 100])
    assert info.value.status == 413
    assert "max_request_size" in (info.value.hint or "")
    assert "Request Entity Too Large" in info.value.message


def test_500_carries_torchserve_message_and_is_not_retried() -> None:
    app = Script(json_response(500, {"code": 500, "type": "InternalServerException",
                                     "message": "Worker died."}))
    with make(app) as client, pytest.raises(PredictError) as info:
        client.predict("bert", [1])
    assert "Worker died." in info.value.message
    assert info.value.status == 500
    assert app.attempts == 1


def test_503_is_retried_until_the_model_answers(model: V1Model) -> None:
    not_ready = json_response(503, {"error": "Model with name bert is not ready."})
    app = Script(not_ready, not_ready, model)
    with make(app, retries=3) as client:
        assert client.predict("bert", [4]) == [8]
    assert app.attempts == 3


def test_503_gives_up_after_the_retries_and_says_so() -> None:
    app = Script(json_response(503, {"error": "Model with name bert is not ready."}))
    with make(app, retries=2) as client, pytest.raises(PredictError) as info:
        client.predict("bert", [4])
    assert app.attempts == 3
    assert "after 3 attempts" in info.value.message
    assert "is not ready" in info.value.message
    assert "not ready or is overloaded" in (info.value.hint or "")


@pytest.mark.parametrize("status", [502, 504])
def test_502_504_on_a_prediction_are_not_retried_unless_asked(model: V1Model, status: int) -> None:
    app = Script(httpx.Response(status, text="upstream connect error"), model)
    with make(app, retries=3) as client, pytest.raises(PredictError) as info:
        client.predict("bert", [1])
    assert app.attempts == 1
    assert info.value.status == status
    assert "retry_non_idempotent" in (info.value.hint or "")

    app = Script(httpx.Response(status, text="upstream connect error"), httpx.Response(status), model)
    with make(app, retries=3, retry_non_idempotent=True) as client:
        assert client.predict("bert", [1]) == [2]
    assert app.attempts == 3


@pytest.mark.parametrize("status", [502, 504])
def test_502_504_on_a_read_are_retried(model: V1Model, status: int) -> None:
    app = Script(httpx.Response(status), model)
    with make(app) as client:
        assert client.models() == ["bert"]
    assert app.attempts == 2


def test_retry_after_is_honoured(model: V1Model, caplog: pytest.LogCaptureFixture) -> None:
    app = Script(json_response(503, {"error": "busy"}, headers={"Retry-After": "1"}), model)
    with caplog.at_level(logging.INFO, logger="toolkit.client"), make(app, backoff=5) as client:
        assert client.predict("bert", [1]) == [2]
    assert app.attempts == 2
    assert "retry 1 of 3 in 1.0 s" in caplog.text  # the server's 1 s, not the 5 s backoff


def test_retry_after_values() -> None:
    assert retry_after_seconds(None) is None
    assert retry_after_seconds("soon") is None
    assert retry_after_seconds("2") == 2.0
    assert retry_after_seconds("86400") == RETRY_AFTER_CAP
    assert retry_after_seconds("Wed, 21 Oct 2015 07:28:10 GMT", now=1445412480.0) == 10.0
    assert retry_after_seconds("Wed, 21 Oct 2015 07:28:00 GMT", now=1445412490.0) == 0.0


def test_backoff_grows_and_is_jittered() -> None:
    with Client(BASE, backoff=1.0) as client:
        session = client._session
        delays = [[session.backoff_delay(n) for _ in range(50)] for n in range(4)]
    for n, values in enumerate(delays):
        cap = min(10.0, 2.0**n)
        assert all(cap / 2 <= v <= cap for v in values)
        assert len(set(values)) > 1


# -- redirects and auth -----------------------------------------------------------------------------------------


def test_a_redirect_to_the_login_page_is_an_expired_session_not_followed() -> None:
    app = Script(httpx.Response(302, headers={
        "location": "/dex/auth?client_id=kubeflow-oidc-authservice&redirect_uri=%2Flogin%2Foidc&state=x"}))
    with make(app, cookie="old") as client, pytest.raises(PredictError) as info:
        client.predict("bert", [1])
    assert app.attempts == 1
    assert info.value.status == 302
    assert "session expired or not logged in" in info.value.message
    assert "cookie" in (info.value.hint or "") and "token" in (info.value.hint or "")


def test_another_redirect_is_reported_not_followed() -> None:
    app = Script(httpx.Response(301, headers={"location": "https://gateway.test/v1/models/bert:predict"}))
    with make(app) as client, pytest.raises(PredictError) as info:
        client.predict("bert", [1])
    assert app.attempts == 1
    assert "does not follow redirects" in info.value.message


def test_401_without_credentials_says_none_were_sent() -> None:
    app = Script(httpx.Response(401, text="Jwt is missing"))
    with make(app) as client, pytest.raises(PredictError) as info:
        client.predict("bert", [1])
    assert info.value.status == 401
    assert "no credentials were sent" in (info.value.hint or "")
    assert "kubectl create token" in (info.value.hint or "")


def test_403_from_istio_rbac_hints_at_the_authorization_policy() -> None:
    app = Script(httpx.Response(403, text="RBAC: access denied"))
    with make(app, token="t") as client, pytest.raises(PredictError) as info:
        client.predict("bert", [1])
    assert info.value.status == 403
    assert "RBAC: access denied" in info.value.message
    assert "AuthorizationPolicy" in (info.value.hint or "")


def test_401_with_credentials_says_they_were_refused() -> None:
    app = Script(httpx.Response(401, text="Jwt verification fails"))
    with make(app, token="t") as client, pytest.raises(PredictError) as info:
        client.predict("bert", [1])
    assert "refused" in (info.value.hint or "")


# -- answers that are not KServe v1 -----------------------------------------------------------------------------


def test_an_html_page_is_not_a_kserve_endpoint() -> None:
    page = "<!doctype html><html><head><title>Kubeflow Central Dashboard</title></head></html>"
    app = Script(httpx.Response(200, text=page, headers={"content-type": "text/html"}))
    with make(app) as client, pytest.raises(PredictError) as info:
        client.predict("bert", [1])
    assert "not a KServe v1 endpoint" in info.value.message
    assert "text/html" in info.value.message
    assert "Host header" in (info.value.hint or "")


def test_json_without_predictions_is_not_a_v1_answer() -> None:
    app = Script(json_response(200, {"outputs": [1]}))
    with make(app) as client, pytest.raises(PredictError) as info:
        client.predict("bert", [1])
    assert "without a 'predictions' list (keys: outputs)" in info.value.message


def test_a_wrong_prediction_count_is_an_error_not_a_result() -> None:
    app = Script(json_response(200, {"predictions": [1, 2]}))
    with make(app) as client, pytest.raises(PredictError) as info:
        client.predict("bert", [1, 2, 3])
    assert "2 predictions for 3 instances" in info.value.message


def test_models_that_are_not_a_listing() -> None:
    app = Script(json_response(200, ["bert"]))
    with make(app) as client, pytest.raises(PredictError) as info:
        client.models()
    assert "not a KServe v1 endpoint" in info.value.message
