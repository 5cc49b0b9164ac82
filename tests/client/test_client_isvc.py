"""Client.for_inference_service against a stand-in Kubernetes API server (real HTTP on 127.0.0.1).

The kubernetes client makes one GET (serving.kserve.io/v1beta1 inferenceservices); the stand-in answers it the
way the API server does (the object, or a Status with 404/403), and records the Authorization header it got.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from client_support import V1Model, json_response
from kubernetes import client as k8s

from toolkit._client.client import AsyncClient, Client
from toolkit._errors import PredictError

NS = "kubeflow-user-example-com"
PATH = f"/apis/serving.kserve.io/v1beta1/namespaces/{NS}/inferenceservices/"


def inference_service(name: str, *, ready: bool = True, address: bool = True) -> dict[str, Any]:
    predictor = {"type": "PredictorReady", "status": "True"}
    if not ready:
        predictor = {"type": "PredictorReady", "status": "False", "reason": "RevisionFailed",
                     "message": 'Revision "torchserve-predictor-00001" failed with message: Container failed'}
    status: dict[str, Any] = {
        "conditions": [{"type": "IngressReady", "status": "True"}, predictor,
                       {"type": "Ready", "status": "True" if ready else "False"}],
        "url": f"http://{name}.{NS}.example.com",
    }
    if address:
        status["address"] = {"url": f"http://{name}.{NS}.svc.cluster.local"}
    return {"apiVersion": "serving.kserve.io/v1beta1", "kind": "InferenceService",
            "metadata": {"name": name, "namespace": NS}, "spec": {}, "status": status}


class ApiServer:
    """The one endpoint the client reads; ``objects`` by name; ``forbidden`` answers 403 like RBAC does."""

    def __init__(self, *objects: dict[str, Any], forbidden: bool = False) -> None:
        self.objects = {o["metadata"]["name"]: o for o in objects}
        self.forbidden = forbidden
        self.seen: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.seen.append(request)
        if request.method != "GET" or not request.url.path.startswith(PATH):
            return json_response(404, {"kind": "Status", "status": "Failure", "reason": "NotFound", "code": 404})
        name = request.url.path.removeprefix(PATH)
        if self.forbidden:
            return json_response(403, {
                "kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "Forbidden", "code": 403,
                "message": f'inferenceservices.serving.kserve.io "{name}" is forbidden: User "system:serviceaccount:'
                f'{NS}:default-editor" cannot get resource "inferenceservices"'})
        if name not in self.objects:
            return json_response(404, {
                "kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "NotFound", "code": 404,
                "message": f'inferenceservices.serving.kserve.io "{name}" not found'})
        return json_response(200, self.objects[name])


def api_client_for(url: str) -> k8s.ApiClient:
    configuration = k8s.Configuration()
    configuration.host = url
    return k8s.ApiClient(configuration)


def write_kubeconfig(folder: Path, server: str) -> Path:
    """A kubeconfig whose current context reaches ``server`` with the bearer token ``kube-token``."""
    path = folder / "kubeconfig"
    path.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "kind",
        "clusters": [{"name": "kind", "cluster": {"server": server}}],
        "users": [{"name": "me", "user": {"token": "kube-token"}}],
        "contexts": [{"name": "kind", "context": {"cluster": "kind", "user": "me", "namespace": NS}}],
    }))
    return path


@pytest.fixture
def outside(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)


@pytest.mark.usefixtures("outside")
def test_outside_the_cluster_calls_the_gateway_with_the_isvc_host(serve: Any, model: V1Model) -> None:
    api = serve(ApiServer(inference_service("torchserve")))
    gateway = serve(model)
    with Client.for_inference_service("torchserve", NS, gateway=gateway.url, api_client=api_client_for(api.url),
                                      token="sa-token") as client:
        assert client.host == f"torchserve.{NS}.example.com"
        assert client.predict("bert", [{"data": "Hello World!"}]) == [12]
    (post,) = model.posts()
    assert post.headers["host"] == f"torchserve.{NS}.example.com"
    assert post.headers["authorization"] == "Bearer sa-token"


@pytest.mark.usefixtures("outside")
def test_outside_without_a_gateway_uses_status_url(serve: Any) -> None:
    api = serve(ApiServer(inference_service("torchserve")))
    with Client.for_inference_service("torchserve", NS, api_client=api_client_for(api.url)) as client:
        assert str(client.base_url) == f"http://torchserve.{NS}.example.com"
        assert client.host is None


@pytest.mark.parametrize("address", [True, False])
def test_inside_the_cluster_uses_the_cluster_local_address(
    serve: Any, monkeypatch: pytest.MonkeyPatch, address: bool
) -> None:
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "10.96.0.1")
    api = serve(ApiServer(inference_service("torchserve", address=address)))
    with Client.for_inference_service("torchserve", NS, gateway="http://ignored:8080",
                                      api_client=api_client_for(api.url)) as client:
        expected = f"torchserve.{NS}.svc.cluster.local" if address else f"torchserve-predictor.{NS}.svc.cluster.local"
        assert str(client.base_url) == f"http://{expected}"
        assert client.host is None


@pytest.mark.usefixtures("outside")
def test_a_missing_inference_service(serve: Any) -> None:
    api = serve(ApiServer(inference_service("torchserve")))
    with pytest.raises(PredictError) as info:
        Client.for_inference_service("bert", NS, gateway="http://gw", api_client=api_client_for(api.url))
    assert info.value.message == f"InferenceService {NS}/bert not found"
    assert f"kubectl get inferenceservices -n {NS}" in (info.value.hint or "")


@pytest.mark.usefixtures("outside")
def test_a_inference_service_that_is_not_ready_says_why(serve: Any) -> None:
    api = serve(ApiServer(inference_service("torchserve", ready=False)))
    with pytest.raises(PredictError) as info:
        Client.for_inference_service("torchserve", NS, gateway="http://gw", api_client=api_client_for(api.url))
    message = info.value.message
    assert "is not ready" in message
    assert "PredictorReady=False (RevisionFailed): Revision" in message
    assert "mar-build status torchserve" in (info.value.hint or "")


@pytest.mark.usefixtures("outside")
def test_rbac_refusal_from_the_api(serve: Any) -> None:
    api = serve(ApiServer(forbidden=True))
    with pytest.raises(PredictError) as info:
        Client.for_inference_service("torchserve", NS, gateway="http://gw", api_client=api_client_for(api.url))
    assert info.value.status == 403
    assert "needs get on inferenceservices.serving.kserve.io" in (info.value.hint or "")


@pytest.mark.usefixtures("outside")
def test_an_api_server_that_is_not_there(port: int) -> None:
    with pytest.raises(PredictError, match="cannot reach the Kubernetes API at http://127.0.0.1"):
        Client.for_inference_service("torchserve", NS, gateway="http://gw",
                                     api_client=api_client_for(f"http://127.0.0.1:{port}"), timeout=2)


@pytest.mark.usefixtures("outside")
def test_kubeconfig_credentials_reach_the_api(serve: Any, tmp_path: Path) -> None:
    stand_in = ApiServer(inference_service("torchserve"))
    api = serve(stand_in)
    kubeconfig = write_kubeconfig(tmp_path, api.url)
    with Client.for_inference_service("torchserve", NS, gateway="http://localhost:8080",
                                      kubeconfig=kubeconfig) as client:
        assert client.host == f"torchserve.{NS}.example.com"
    (request,) = stand_in.seen
    assert request.headers["authorization"] == "Bearer kube-token"
    assert request.url.path == PATH + "torchserve"


@pytest.mark.usefixtures("outside")
def test_async_client_for_inference_service(serve: Any, model: V1Model) -> None:
    api = serve(ApiServer(inference_service("torchserve")))
    gateway = serve(model)

    async def main() -> list[Any]:
        async with AsyncClient.for_inference_service("torchserve", NS, gateway=gateway.url,
                                                     api_client=api_client_for(api.url)) as client:
            return await client.predict("bert", [1, 2])

    assert asyncio.run(main()) == [2, 4]
    assert json.loads(model.posts()[0].content) == {"instances": [1, 2]}
    assert model.posts()[0].headers["host"] == f"torchserve.{NS}.example.com"


def test_bad_names_are_refused_before_any_call() -> None:
    with pytest.raises(PredictError, match="not a valid InferenceService name"):
        Client.for_inference_service("Bert_Model", NS, gateway="http://gw", api_client=object())


@pytest.mark.usefixtures("outside")
@pytest.mark.parametrize(
    ("name", "namespace", "message"),
    [
        ("torchserve\n", NS, "not a valid InferenceService name"),
        ("torchserve", NS + "\n", "namespace must be a namespace name"),
        ("torchserve", "Kubeflow_User", "namespace must be a namespace name"),
    ],
)
@pytest.mark.parametrize("client_class", [Client, AsyncClient])
def test_names_with_a_trailing_newline_are_refused_before_any_request(
    serve: Any, name: str, namespace: str, message: str, client_class: type[Client] | type[AsyncClient]
) -> None:
    """`re.match("^...$")` lets "torchserve\n" through; it would be read as .../inferenceservices/torchserve%0A."""
    stand_in = ApiServer(inference_service("torchserve"))
    api = serve(stand_in)
    with pytest.raises(PredictError, match=message):
        client_class.for_inference_service(name, namespace, gateway="http://gw", api_client=api_client_for(api.url))
    assert stand_in.seen == []


def test_a_pod_with_a_kubeconfig_talks_to_the_cluster_status_talks_to(
    serve: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """In a notebook pod with $KUBECONFIG set, the client reads the InferenceService from the kubeconfig's cluster,
    as `mar-build status` does (toolkit._kube.connect), not from the pod's own service account; and it calls the
    gateway, since that cluster need not be the one the pod runs in."""
    from toolkit._kube import connect

    stand_in = ApiServer(inference_service("torchserve"))
    api = serve(stand_in)
    kubeconfig = write_kubeconfig(tmp_path, api.url)
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "10.96.0.1")
    monkeypatch.setenv("KUBECONFIG", str(kubeconfig))
    assert connect().server == api.url
    with Client.for_inference_service("torchserve", NS, gateway="http://localhost:8080") as client:
        assert client.host == f"torchserve.{NS}.example.com"
    (request,) = stand_in.seen
    assert request.headers["authorization"] == "Bearer kube-token"
