"""Where an InferenceService answers: read its status through the Kubernetes API and pick the URL and Host to call.

Inside the cluster (a Kubeflow notebook) the cluster-local address is reached directly; outside it, calls go
through the ingress gateway with the Host header of ``status.url`` (FACTS.md, "Kubeflow access").
"""

from __future__ import annotations

import logging
import os
import re
from typing import Any

import httpx

from .._errors import PredictError

log = logging.getLogger("toolkit.client")

GROUP, VERSION, PLURAL = "serving.kserve.io", "v1beta1", "inferenceservices"
_DNS1035_RE = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")


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

    Reads the object (serving.kserve.io/v1beta1 inferenceservices) through ``api_client``, or a client built from
    ``kubeconfig``/``context`` (default: in-cluster config inside a pod, else ~/.kube/config). Inside the cluster:
    status.address.url, else http://NAME-predictor.NAMESPACE.svc.cluster.local, no Host. Outside: ``gateway`` with
    Host = the host of status.url; without a gateway, status.url itself (needs DNS for that host).
    Raises PredictError when the object is missing, not ready, or the API cannot be reached.
    """
    if not isinstance(name, str) or len(name) > 63 or not _DNS1035_RE.match(name):
        raise PredictError(f"{name!r} is not a valid InferenceService name (a DNS-1035 label)")
    if not isinstance(namespace, str) or not namespace:
        raise PredictError(f"namespace must be a namespace name, not {namespace!r}")
    obj = _read(name, namespace, api_client, kubeconfig, context, timeout)
    status = obj.get("status") or {}
    where = f"InferenceService {namespace}/{name}"
    _check_ready(where, status, name, namespace)
    url = status.get("url")
    address = (status.get("address") or {}).get("url")
    if in_cluster() and kubeconfig is None:
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
) -> dict[str, Any]:
    try:
        import urllib3
        from kubernetes import client as k8s
        from kubernetes import config as k8s_config
        from kubernetes.client.exceptions import ApiException
    except ImportError as exc:
        raise PredictError(
            "reading an InferenceService needs the kubernetes package", hint="pip install 'mar-build[k8s]'"
        ) from exc
    owned = api_client is None
    if owned:
        try:
            if kubeconfig is None and context is None and in_cluster():
                configuration = k8s.Configuration()
                k8s_config.load_incluster_config(client_configuration=configuration)
                api_client = k8s.ApiClient(configuration)
            else:
                kubeconfig = os.fspath(kubeconfig) if kubeconfig is not None else None
                api_client = k8s_config.new_client_from_config(config_file=kubeconfig, context=context)
        except k8s_config.ConfigException as exc:
            raise PredictError(
                f"no Kubernetes configuration: {exc}",
                hint="pass kubeconfig= (or api_client=), or set the current context: kubectl config use-context",
            ) from exc
    where = f"InferenceService {namespace}/{name}"
    try:
        obj = k8s.CustomObjectsApi(api_client).get_namespaced_custom_object(
            GROUP, VERSION, namespace, PLURAL, name, _request_timeout=timeout
        )
    except ApiException as exc:
        if exc.status == 404:
            raise PredictError(
                f"{where} not found", status=404, body=str(exc.body or "")[:2000],
                hint=f"list what exists: kubectl get inferenceservices -n {namespace}; deploy it with mar-build deploy",
            ) from exc
        if exc.status in (401, 403):
            raise PredictError(
                f"the Kubernetes API refused to read {where} ({exc.status} {exc.reason})", status=exc.status,
                body=str(exc.body or "")[:2000],
                hint="the kubeconfig user (or the notebook's service account) needs get on "
                "inferenceservices.serving.kserve.io in that namespace",
            ) from exc
        raise PredictError(
            f"the Kubernetes API answered {exc.status} {exc.reason} for {where}", status=exc.status,
            body=str(exc.body or "")[:2000],
        ) from exc
    except (urllib3.exceptions.HTTPError, OSError) as exc:  # connection refused, timeouts, TLS: not reachable
        host = getattr(getattr(api_client, "configuration", None), "host", "the API server")
        raise PredictError(
            f"cannot reach the Kubernetes API at {host}: {exc}",
            hint="check the kubeconfig context (kubectl cluster-info)",
        ) from exc
    finally:
        if owned and api_client is not None:
            api_client.close()
    if not isinstance(obj, dict):
        raise PredictError(f"the Kubernetes API answered {where} with a {type(obj).__name__}, not an object")
    return obj


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
