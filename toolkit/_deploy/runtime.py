"""The ServingRuntime render brings with an InferenceService, applied through the Kubernetes API.

``toolkit._kube.Cluster.apply`` knows the InferenceService and the core kinds; a ServingRuntime is a custom object
of another version (serving.kserve.io/v1alpha1 servingruntimes), applied here the same way: server-side apply,
field manager ``mar-build``, every API error translated by ``Cluster.call``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from .._errors import DeployError
from .._kube import KSERVE_GROUP, ApiFailure, Cluster, Request

SERVING_RUNTIME_VERSION = "v1alpha1"
SERVING_RUNTIME_API_VERSION = f"{KSERVE_GROUP}/{SERVING_RUNTIME_VERSION}"
SERVING_RUNTIME_PLURAL = "servingruntimes"


def apply_serving_runtime(cluster: Cluster, doc: Mapping[str, Any], namespace: str) -> tuple[dict[str, Any], bool]:
    """Server-side apply of one ServingRuntime; (the object as stored, True if it was created). DeployError when
    the cluster's KServe has no ServingRuntime type, or any API error as ``Cluster.call`` says it."""
    name = str(doc["metadata"]["name"])
    request = Request("patch", f"{SERVING_RUNTIME_PLURAL}.{KSERVE_GROUP}", namespace, name)
    path = f"/apis/{KSERVE_GROUP}/{SERVING_RUNTIME_VERSION}/namespaces/{namespace}/{SERVING_RUNTIME_PLURAL}/{name}"
    try:
        resp = cluster.call(request, cluster.server_side_apply, path, doc)
    except ApiFailure as exc:
        # An unknown custom resource type answers 404 without a hint (a missing namespace gets one from call).
        if exc.status == 404 and exc.hint is None:
            raise DeployError(
                f"this cluster has no {SERVING_RUNTIME_API_VERSION} ServingRuntime type (KServe is missing or "
                "older than 0.7)", hint="install a current KServe, or render without a ServingRuntime",
            ) from exc
        raise
    data: Any = getattr(resp, "data", b"")
    text = data.decode("utf-8", "replace") if isinstance(data, bytes | bytearray) else str(data or "")
    stored = json.loads(text) if text.strip() else {}
    return (dict(stored) if isinstance(stored, dict) else {}), int(getattr(resp, "status", 200)) == 201
