"""Opt-in: deploy a tiny InferenceService to a real cluster, read its status, delete it.

Skipped unless pytest runs with ``--cluster``. It uses the current kubeconfig context ($KUBECONFIG or
~/.kube/config; in a Kubeflow notebook, the pod's service account) and needs KServe with its default
ClusterServingRuntime ``kserve-torchserve``, e.g.:

    kind create cluster            # or: minikube start --memory 8g
    curl -s "https://raw.githubusercontent.com/kserve/kserve/release-0.15/hack/quick_install.sh" | bash
    pytest tests/deploy --cluster -k cluster

What it deploys: KServe's public TorchServe MNIST example (``gs://kfserving-examples/models/torchserve/image_classifier/v1``,
a layout with ``config/config.properties`` and ``model-store/mnist.mar``; or $MAR_BUILD_TEST_STORAGE_URI, e.g. a
layout you staged with mar-build stage), as InferenceService ``mar-build-smoke`` in $MAR_BUILD_TEST_NAMESPACE
(default: the context's namespace). The cluster needs to pull
``pytorch/torchserve-kfs`` and read that bucket. It waits up to $MAR_BUILD_TEST_TIMEOUT seconds (default 900), and
deletes the InferenceService whatever happened; on failure the DeployError shows the diagnosis.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from toolkit._deploy import DeployEvent, delete, deploy, status

NAME = "mar-build-smoke"
STORAGE_URI = os.environ.get(
    "MAR_BUILD_TEST_STORAGE_URI", "gs://kfserving-examples/models/torchserve/image_classifier/v1"
)


@pytest.fixture
def namespace() -> Iterator[str | None]:
    ns = os.environ.get("MAR_BUILD_TEST_NAMESPACE") or None
    yield ns
    delete(NAME, ns, wait=True, missing_ok=True, timeout=300)


@pytest.mark.cluster
def test_deploy_status_delete_on_a_real_cluster(namespace: str | None) -> None:
    manifest = {
        "apiVersion": "serving.kserve.io/v1beta1",
        "kind": "InferenceService",
        "metadata": {"name": NAME, **({"namespace": namespace} if namespace else {})},
        "spec": {
            "predictor": {
                "model": {
                    "modelFormat": {"name": "pytorch"},
                    "protocolVersion": "v1",
                    "storageUri": STORAGE_URI,
                    "resources": {"requests": {"cpu": "100m", "memory": "1Gi"}, "limits": {"memory": "2Gi"}},
                }
            }
        },
    }
    events: list[DeployEvent] = []
    result = deploy(
        manifest,
        namespace=namespace,
        timeout=float(os.environ.get("MAR_BUILD_TEST_TIMEOUT", "900")),
        on_event=events.append,
    )
    assert result.ready and result.url, result
    assert any(e.kind == "condition" and e.condition and e.condition.type == "Ready" for e in events)

    st = status(NAME, result.namespace)
    assert st.ready and st.url == result.url and st.diagnosis is None

    assert delete(NAME, result.namespace, wait=True, timeout=300) is True
    assert delete(NAME, result.namespace, missing_ok=True) is False
