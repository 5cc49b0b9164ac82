"""Where an InferenceService answers: read its status through the Kubernetes API and pick the URL and Host to call.

Inside the cluster (a Kubeflow notebook) the cluster-local address is reached directly: ``status.address.url``, or
http://NAME-predictor.NAMESPACE.svc.cluster.local. Outside it, calls go through the Istio ingress gateway with the
Host header of ``status.url`` (NAME.NAMESPACE.example.com on a default Kubeflow install), since the gateway routes by
Host; the gateway is usually reached by ``kubectl port-forward -n istio-system svc/istio-ingressgateway 8080:80``.
"""

from __future__ import annotations

import logging
import os
from typing import Any

import httpx

from .._errors import DeployError, PredictError
from .._kube import ApiFailure, connect
from .._names import dns1035_label_problem, dns1123_label_problem

log = logging.getLogger("toolkit.client")


def in_cluster() -> bool:
    """True inside a pod (the kubelet sets KUBERNETES_SERVICE_HOST in every container)."""
    return bool(os.environ.get("KUBERNETES_SERVICE_HOST"))


def resolve_inference_service(
    name: str,
    namespace: str,
    *,
    gateway: str | None = None,
    api_client: Any = None,
    kubeconfig: str | os.PathLike[str] | None = None,
    context: str | None = None,
    timeout: float = 30.0,
) -> tuple[str, str | None]:
    """(base_url, host) for calling InferenceService ``namespace/name``.

    Reads the object (serving.kserve.io/v1beta1 inferenceservices) through ``api_client``, or the cluster that
    `mar-build status` would choose (``kubeconfig``/``context``, $KUBECONFIG or ~/.kube/config, else the pod's
    service account). Connected through the pod's service account (or given ``api_client`` in a pod):
    status.address.url, else http://NAME-predictor.NAMESPACE.svc.cluster.local, no Host. Outside: ``gateway`` with
    Host = the host of status.url; without a gateway, status.url itself (needs DNS for that host).
    Raises PredictError when the object is missing, not ready, or the API cannot be reached.
    """
    # Both names go into the API path: checked whole (a trailing newline would become %0A there), before any request.
    problem = dns1035_label_problem(name)
    if problem:
        raise PredictError(f"{name!r} is not a valid InferenceService name: {problem}")
    problem = dns1123_label_problem(namespace)
    if problem:
        raise PredictError(f"namespace must be a namespace name, not {namespace!r}: {problem}")
    obj, in_pod = _read(name, namespace, api_client, kubeconfig, context, timeout)
    status = obj.get("status") or {}
    where = f"InferenceService {namespace}/{name}"
    _check_ready(where, status, name, namespace)
    url = status.get("url")
    address = (status.get("address") or {}).get("url")
    if in_pod:
        base = address or f"http://{name}-predictor.{namespace}.svc.cluster.local"
        log.info("%s: in the cluster, calling %s", where, base)
        return base, None
    if not url:
        raise PredictError(f"{where} has no status.url yet",
                           hint=f"wait for it: mar-build status {name} -n {namespace}")
    if gateway:
        host = httpx.URL(url).host
        log.info("%s: calling the gateway %s with Host %s", where, gateway, host)
        return gateway, host
    log.info("%s: calling %s (pass gateway= to go through a port-forwarded ingress gateway)", where, url)
    return url, None


def _read(
    name: str, namespace: str, api_client: Any, kubeconfig: Any, context: str | None, timeout: float
) -> tuple[dict[str, Any], bool]:
    """(the InferenceService object, whether the connection is the pod's own service account)."""
    where = f"InferenceService {namespace}/{name}"
    try:
        # The one way to choose a cluster (toolkit/_kube.py), the same as `mar-build status` and deploy use.
        cluster = connect(api_client=api_client, kubeconfig=kubeconfig, context=context)
    except DeployError as exc:  # no configuration, or no kubernetes package
        raise PredictError(exc.message, hint=exc.hint) from exc
    try:
        obj = cluster.get_isvc(name, namespace, timeout=timeout)
    except ApiFailure as exc:
        if exc.status in (401, 403):
            raise PredictError(
                f"the Kubernetes API refused to read {where} ({exc.status} {exc.reason})", status=exc.status,
                body=exc.message[:2000],
                hint="the kubeconfig user (or the notebook's service account) needs get on "
                "inferenceservices.serving.kserve.io in that namespace",
            ) from exc
        raise PredictError(exc.message, status=exc.status, hint=exc.hint) from exc
    except DeployError as exc:  # the API server was not reached
        raise PredictError(f"cannot reach the Kubernetes API at {cluster.server}: {exc.message}",
                           hint=exc.hint) from exc
    finally:
        if api_client is None:
            cluster.api_client.close()
    if obj is None:
        raise PredictError(
            f"{where} not found", status=404,
            hint=f"list what exists: kubectl get inferenceservices -n {namespace}; deploy it with mar-build deploy",
        )
    in_pod = cluster.in_pod if api_client is None else in_cluster()
    return obj, in_pod


def _check_ready(where: str, status: dict[str, Any], name: str, namespace: str) -> None:
    conditions = [c for c in status.get("conditions") or [] if isinstance(c, dict)]
    ready = next((c for c in conditions if c.get("type") == "Ready"), None)
    if ready is not None and ready.get("status") == "True":
        return
    failing = [
        f"{c.get('type')}={c.get('status')}"
        + (f" ({c['reason']})" if c.get("reason") else "")
        + (f": {c['message']}" if c.get("message") else "")
        for c in conditions
        if c.get("status") != "True"
    ]
    detail = "; ".join(failing) if failing else "no conditions reported yet"
    raise PredictError(
        f"{where} is not ready: {detail}",
        hint=f"wait or diagnose: mar-build status {name} -n {namespace} (or kubectl describe "
        f"inferenceservice {name} -n {namespace}, and the predictor pod's logs)",
    )
