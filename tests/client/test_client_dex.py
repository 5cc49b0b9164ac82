"""Dex username/password login through a stand-in of Kubeflow's gateway (oidc-authservice or oauth2-proxy + Dex)."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest
from client_support import KubeflowGateway, V1Model, cookies_of

from toolkit._client.client import AsyncClient, Client
from toolkit._errors import PredictError

BASE = "http://gateway.test:8080"
USER, PASSWORD = "user@example.com", "12341234"


def make(gateway: KubeflowGateway, **options: Any) -> Client:
    options.setdefault("username", USER)
    options.setdefault("password", PASSWORD)
    return Client(BASE, transport=httpx.MockTransport(gateway), backoff=0, **options)


def where_the_password_went(gateway: KubeflowGateway) -> list[str]:
    return [f"{r.method} {r.url.path}" for r in gateway.requests if PASSWORD.encode() in r.content]


def test_login_then_predict_with_the_session_cookie(model: V1Model) -> None:
    gateway = KubeflowGateway(app=model)
    with make(gateway, host="torchserve.kubeflow-user-example-com.example.com") as client:
        assert client.predict("bert", [{"data": "Hello World!"}]) == [12]
        assert client.predict("bert", [1]) == [2]
    assert gateway.logins == 1
    (session,) = gateway.sessions
    assert [cookies_of(r) for r in model.requests] == [{"authservice_session": session}] * 2
    assert all(r.headers["host"] == "torchserve.kubeflow-user-example-com.example.com" for r in model.requests)
    # the login went to the gateway itself, and the password only to Dex's login form
    assert all(r.url.host == "gateway.test" and r.headers["host"] == "gateway.test:8080"
               for r in gateway.requests if r not in model.requests)
    assert where_the_password_went(gateway) == ["POST /dex/auth/local/login"]


@pytest.mark.parametrize("connector", ["local", "ldap"])
def test_the_connector_is_picked_on_dex_chooser_page(model: V1Model, connector: str) -> None:
    gateway = KubeflowGateway(app=model, connectors=("ldap", "local"))
    with make(gateway, dex_connector=connector) as client:
        assert client.predict("bert", [3]) == [6]
    assert where_the_password_went(gateway) == [f"POST /dex/auth/{connector}/login"]


def test_the_approval_screen_is_approved(model: V1Model) -> None:
    gateway = KubeflowGateway(app=model, approval=True)
    with make(gateway) as client:
        assert client.predict("bert", [3]) == [6]
    approvals = [r for r in gateway.requests if r.method == "POST" and r.url.path == "/dex/approval"]
    assert len(approvals) == 1 and b"approval=approve" in approvals[0].content


@pytest.mark.parametrize("status", [200, 401])  # older Dex shows the form again with 200, newer with 401
def test_a_wrong_password_is_a_clear_error(model: V1Model, status: int) -> None:
    gateway = KubeflowGateway(app=model, wrong_password_status=status)
    with make(gateway, password="wrong") as client, pytest.raises(PredictError) as info:
        client.predict("bert", [1])
    assert "Dex refused the login for user 'user@example.com'" in info.value.message
    assert "wrong" not in str(info.value)
    assert model.requests == []


def test_an_expired_session_logs_in_again(model: V1Model) -> None:
    gateway = KubeflowGateway(app=model)
    with make(gateway) as client:
        assert client.predict("bert", [1]) == [2]
        gateway.sessions.clear()  # the authservice forgot the session (expired, restarted)
        assert client.predict("bert", [2]) == [4]
    assert gateway.logins == 2
    assert len(model.posts()) == 2


def test_oauth2_proxy_kubeflow_1_9(model: V1Model) -> None:
    gateway = KubeflowGateway(app=model, oauth2_proxy=True)
    with make(gateway, cookie_name="oauth2_proxy_kubeflow") as client:
        assert client.predict("bert", [1]) == [2]
    assert set(cookies_of(model.requests[0])) == {"oauth2_proxy_kubeflow"}
    assert any(r.url.path == "/oauth2/start" for r in gateway.requests)


@pytest.mark.parametrize("status", [401, 403])
def test_oauth2_proxy_that_refuses_instead_of_redirecting(model: V1Model, status: int) -> None:
    gateway = KubeflowGateway(app=model, oauth2_proxy=True, refuse_status=status)
    with make(gateway) as client:
        assert client.predict("bert", [1]) == [2]
    assert set(cookies_of(model.requests[0])) == {"oauth2_proxy_kubeflow"}


def test_an_endpoint_without_login_needs_no_cookie(model: V1Model) -> None:
    with Client(BASE, transport=httpx.MockTransport(model), username=USER, password=PASSWORD) as client:
        assert client.predict("bert", [1]) == [2]
    assert "cookie" not in model.posts()[0].headers


def test_no_credentials_at_the_gateway_is_a_login_redirect(model: V1Model) -> None:
    gateway = KubeflowGateway(app=model)
    with Client(BASE, transport=httpx.MockTransport(gateway)) as client, pytest.raises(PredictError) as info:
        client.predict("bert", [1])
    assert info.value.status == 302
    assert "not logged in" in info.value.message
    assert len(gateway.requests) == 1


def test_a_gateway_that_leads_nowhere(model: V1Model) -> None:
    def app(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/":
            return httpx.Response(302, headers={"location": "/welcome"})
        return httpx.Response(200, text="<html><body>Welcome</body></html>", headers={"content-type": "text/html"})

    with Client(BASE, transport=httpx.MockTransport(app), username=USER, password=PASSWORD) as client:
        with pytest.raises(PredictError, match="did not lead to a Dex login page"):
            client.predict("bert", [1])


def test_login_over_real_http_on_loopback(model: V1Model, serve: Any) -> None:
    """The same chain over real HTTP: cookies kept per host by the client's jar, relative redirects resolved."""
    gateway = KubeflowGateway(app=model, approval=True, connectors=("local", "ldap"))
    server = serve(gateway)
    with Client(server.url, username=USER, password=PASSWORD, timeout=10) as client:
        assert client.models() == ["bert"]
        assert client.predict("bert", [{"data": "four"}]) == [4]
    assert gateway.logins == 1


def test_async_login_and_relogin(model: V1Model) -> None:
    gateway = KubeflowGateway(app=model, approval=True)

    async def main() -> list[Any]:
        async def handler(request: httpx.Request) -> httpx.Response:
            return gateway(request)

        async with AsyncClient(BASE, transport=httpx.MockTransport(handler), username=USER, password=PASSWORD,
                               max_batch=1, concurrency=3) as client:
            first = await client.predict("bert", [1, 2, 3])
            gateway.sessions.clear()
            return first + await client.predict("bert", [4])

    assert asyncio.run(main()) == [2, 4, 6, 8]
    assert gateway.logins == 2  # once before the chunks (not once per chunk), once after expiry
