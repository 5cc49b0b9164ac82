"""The few Kubernetes API calls deploy/status/delete make, with the API server's errors said plainly.

Everything comes back as plain dicts (the JSON the API server sent), not the client's generated models: the
InferenceService is a custom resource anyway, and a dict survives fields a newer cluster adds. The ``kubernetes``
package is imported on first use so that ``import toolkit`` and the CLI stay quick.
"""

from __future__ import annotations

import json
import logging
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from ._errors import DeployError

if TYPE_CHECKING:
    from kubernetes.client import ApiClient

log = logging.getLogger("toolkit.deploy")

KSERVE_GROUP = "serving.kserve.io"
KSERVE_VERSION = "v1beta1"
ISVC_PLURAL = "inferenceservices"
ISVC_API_VERSION = f"{KSERVE_GROUP}/{KSERVE_VERSION}"
FIELD_MANAGER = "mar-build"
APPLY_PATCH = "application/apply-patch+yaml"
NO_KSERVE = f"KServe is not installed in this cluster (no {ISVC_API_VERSION} InferenceService)"
IN_CLUSTER_NAMESPACE_FILE = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")

# Core kinds a rendered manifest set may hold: kind -> (REST plural, CoreV1Api apply method).
CORE_KINDS: dict[str, str] = {  # kind -> its plural under /api/v1/namespaces/NS/
    "Secret": "secrets",
    "ServiceAccount": "serviceaccounts",
    "PersistentVolumeClaim": "persistentvolumeclaims",
    "ConfigMap": "configmaps",
}

# One API call must not hang a deploy forever on a dead connection; the wait loop has its own deadline.
REQUEST_TIMEOUT_S = 30.0

T = TypeVar("T")


def _kubernetes() -> Any:
    try:
        import kubernetes
    except ImportError as exc:  # pragma: no cover - the k8s extra is part of dev installs
        raise DeployError(
            "talking to a Kubernetes cluster (deploy, status, delete, Client.for_inference_service) needs the "
            "kubernetes package", hint="pip install 'mar-build[k8s]'"
        ) from exc
    return kubernetes


@dataclass(frozen=True)
class Request:
    """What a call was about, to name it in errors: ``verb`` and ``resource`` as RBAC spells them."""

    verb: str
    resource: str  # e.g. "inferenceservices.serving.kserve.io", "pods/log"
    namespace: str | None = None
    name: str | None = None

    def describe(self) -> str:
        what = self.resource + (f" {self.name}" if self.name else "")
        where = f" in namespace {self.namespace}" if self.namespace else ""
        return f"{self.verb} {what}{where}"


class ApiFailure(DeployError):
    """The API server answered with an error status; ``status`` and ``reason`` are what it said."""

    def __init__(self, message: str, *, status: int, reason: str, request: Request, hint: str | None = None):
        super().__init__(message, hint=hint)
        self.status = status
        self.reason = reason
        self.request = request


def _status_body(body: Any) -> dict[str, Any]:
    if isinstance(body, bytes):
        body = body.decode("utf-8", "replace")
    if isinstance(body, str) and body.strip().startswith("{"):
        try:
            parsed = json.loads(body)
        except ValueError:
            return {}
        return parsed if isinstance(parsed, dict) else {}
    return {}


def rbac_hint(request: Request) -> str:
    """The fix for a 403: which verb on which resource the account lacks, and how to check it."""
    where = f" in namespace {request.namespace}" if request.namespace else ""
    flag = f" -n {request.namespace}" if request.namespace else ""
    return (
        f"your account lacks '{request.verb}' on {request.resource}{where}: ask a cluster admin for a Role and "
        f"RoleBinding that grant it (check: kubectl auth can-i {request.verb} {request.resource}{flag}); "
        "in Kubeflow, deploy to your profile namespace"
    )


class Cluster:
    """An API client plus where it points (context, server, default namespace), for calls and error messages."""

    def __init__(
        self, api_client: ApiClient, *, context: str | None = None, default_namespace: str = "default",
        in_pod: bool = False,
    ) -> None:
        self.api_client = api_client
        self.context = context
        self.default_namespace = default_namespace
        self.in_pod = in_pod  # connected through the pod's own service account (no kubeconfig)

    # -- where ------------------------------------------------------------------------------------------------
    @property
    def server(self) -> str:
        return str(getattr(self.api_client.configuration, "host", "") or "?")

    def describe(self) -> str:
        ctx = f"context {self.context!r}, " if self.context else ""
        return f"{ctx}API server {self.server}"

    # -- the one place API errors become DeployErrors -----------------------------------------------------------
    def call(self, request: Request, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run one API call; translate what can go wrong into a DeployError that says what to do."""
        k8s = _kubernetes()
        kwargs.setdefault("_request_timeout", REQUEST_TIMEOUT_S)
        try:
            return fn(*args, **kwargs)
        except k8s.client.exceptions.ApiException as exc:
            raise self._api_error(exc, request) from exc
        except Exception as exc:
            # urllib3 wraps a refused or timed-out connection in MaxRetryError/NewConnectionError; a TLS problem
            # is an SSLError. None of these is a ToolkitError, and all mean "the API server was not reached".
            import urllib3

            if isinstance(exc, urllib3.exceptions.HTTPError | OSError):
                reason = getattr(exc, "reason", None) or exc
                raise DeployError(
                    f"cannot reach the Kubernetes API server ({self.describe()}): {reason}",
                    hint="check that the cluster is up and `kubectl cluster-info` works for this context; "
                    "choose another one with --context or --kubeconfig",
                ) from exc
            raise

    def _api_error(self, exc: Any, request: Request) -> ApiFailure:
        status = int(getattr(exc, "status", 0) or 0)
        body = _status_body(getattr(exc, "body", None))
        reason = str(body.get("reason") or getattr(exc, "reason", "") or "")
        message = str(body.get("message") or getattr(exc, "reason", "") or "").strip()
        causes = [
            f"{c.get('field', '')}: {c.get('message', '')}".strip(": ")
            for c in (body.get("details") or {}).get("causes") or []
            if isinstance(c, Mapping)
        ]
        detail = message + ("".join(f"\n  {c}" for c in causes if c not in message))
        what = request.describe()
        if status == 401:
            return ApiFailure(
                f"the API server rejected the credentials ({self.describe()}): 401 {detail}",
                status=status,
                reason=reason,
                request=request,
                hint="log in again or refresh the token of this kubeconfig context",
            )
        if status == 403:
            # The API server names the verb and resource it refused; trust that over what we think we asked.
            said = forbidden_request(message)
            if said is not None and said.namespace is None:
                said = Request(said.verb, said.resource, request.namespace, request.name)
            return ApiFailure(
                f"forbidden: {what} ({self.describe()}): {detail}",
                status=status,
                reason=reason,
                request=said or request,
                hint=rbac_hint(said or request),
            )
        if status == 404 and request.resource.endswith(KSERVE_GROUP) and not request.name:
            return ApiFailure(
                NO_KSERVE,
                status=status,
                reason=reason,
                request=request,
                hint="install KServe (https://kserve.github.io/website/) or switch to a cluster that has it "
                "with --context",
            )
        missing_ns = re.search(r'namespaces "([^"]+)" not found', message)
        return ApiFailure(
            f"{what} failed: {status} {reason}: {detail}".rstrip(": "),
            status=status,
            reason=reason,
            request=request,
            hint=(
                f"namespace {missing_ns.group(1)} does not exist: create it (kubectl create namespace "
                f"{missing_ns.group(1)}) or choose another with -n"
                if status == 404 and missing_ns
                else None
            ),
        )

    # -- KServe ---------------------------------------------------------------------------------------------------
    def require_kserve(self) -> None:
        """Raise DeployError(NO_KSERVE) unless the API server serves serving.kserve.io/v1beta1 inferenceservices."""
        k8s = _kubernetes()
        api = k8s.client.CustomObjectsApi(self.api_client)
        request = Request("get", f"{ISVC_PLURAL}.{KSERVE_GROUP}")
        resp = self.call(request, api.get_api_resources, KSERVE_GROUP, KSERVE_VERSION, _preload_content=False)
        listing = _json(resp)
        names = {r.get("name") for r in listing.get("resources") or [] if isinstance(r, Mapping)}
        if ISVC_PLURAL not in names:
            raise DeployError(NO_KSERVE, hint="install KServe or switch to a cluster that has it with --context")

    def server_side_apply(self, path: str, doc: Mapping[str, Any], **kwargs: Any) -> Any:
        """PATCH ``doc`` at ``path`` as a server-side apply (application/apply-patch+yaml); the raw response.

        Through ``call_api``: the typed patch methods take that content type (``_content_type``) only from
        kubernetes 31 on, and kfp 2.15+ pins kubernetes < 31 (both live in one venv)."""
        return self.api_client.call_api(
            path, "PATCH", query_params=[("fieldManager", FIELD_MANAGER), ("force", "true")],
            header_params={"Content-Type": APPLY_PATCH, "Accept": "application/json"}, body=dict(doc),
            auth_settings=["BearerToken"], _return_http_data_only=True, _preload_content=False, **kwargs,
        )

    def apply(self, doc: Mapping[str, Any], namespace: str) -> tuple[dict[str, Any], bool]:
        """Server-side apply of one document; returns (the object as stored, True if it was created)."""
        kind = str(doc.get("kind"))
        name = str(doc["metadata"]["name"])
        if kind == "InferenceService":
            request = Request("patch", f"{ISVC_PLURAL}.{KSERVE_GROUP}", namespace, name)
            path = f"/apis/{KSERVE_GROUP}/{KSERVE_VERSION}/namespaces/{namespace}/{ISVC_PLURAL}/{name}"
            try:
                resp = self.call(request, self.server_side_apply, path, doc)
            except ApiFailure as exc:
                # Applying a custom resource whose type the server does not know answers 404 (a missing
                # namespace does too, and says so).
                if exc.status == 404 and exc.hint is None:
                    raise DeployError(
                        NO_KSERVE, hint="install KServe or choose another cluster with --context"
                    ) from exc
                raise
        else:
            plural = CORE_KINDS[kind]
            request = Request("patch", plural, namespace, name)
            resp = self.call(request, self.server_side_apply, f"/api/v1/namespaces/{namespace}/{plural}/{name}", doc)
        return _json(resp), int(getattr(resp, "status", 200)) == 201

    def get_isvc(self, name: str, namespace: str, *, timeout: float = REQUEST_TIMEOUT_S) -> dict[str, Any] | None:
        """The InferenceService as the API server has it, or None when there is none by that name."""
        k8s = _kubernetes()
        api = k8s.client.CustomObjectsApi(self.api_client)
        request = Request("get", f"{ISVC_PLURAL}.{KSERVE_GROUP}", namespace, name)
        try:
            resp = self.call(
                request,
                api.get_namespaced_custom_object,
                KSERVE_GROUP,
                KSERVE_VERSION,
                namespace,
                ISVC_PLURAL,
                name,
                _preload_content=False,
                _request_timeout=timeout,
            )
        except ApiFailure as exc:
            if exc.status == 404:
                return None
            raise
        return _json(resp)

    def list_isvc_names(self, namespace: str) -> list[str]:
        k8s = _kubernetes()
        api = k8s.client.CustomObjectsApi(self.api_client)
        request = Request("list", f"{ISVC_PLURAL}.{KSERVE_GROUP}", namespace)
        resp = self.call(
            request,
            api.list_namespaced_custom_object,
            KSERVE_GROUP,
            KSERVE_VERSION,
            namespace,
            ISVC_PLURAL,
            _preload_content=False,
        )
        return sorted(str(i.get("metadata", {}).get("name")) for i in _json(resp).get("items") or [])

    def delete_isvc(self, name: str, namespace: str) -> bool:
        """Delete the InferenceService; False when there was none by that name."""
        k8s = _kubernetes()
        api = k8s.client.CustomObjectsApi(self.api_client)
        request = Request("delete", f"{ISVC_PLURAL}.{KSERVE_GROUP}", namespace, name)
        try:
            self.call(
                request,
                api.delete_namespaced_custom_object,
                KSERVE_GROUP,
                KSERVE_VERSION,
                namespace,
                ISVC_PLURAL,
                name,
                propagation_policy="Background",
                _preload_content=False,
            ).read()
        except ApiFailure as exc:
            if exc.status == 404:
                return False
            raise
        return True

    # -- pods, logs, events (for the diagnosis) ---------------------------------------------------------------------
    def list_pods(self, namespace: str, label_selector: str) -> list[dict[str, Any]]:
        k8s = _kubernetes()
        api = k8s.client.CoreV1Api(self.api_client)
        request = Request("list", "pods", namespace)
        resp = self.call(
            request, api.list_namespaced_pod, namespace, label_selector=label_selector, _preload_content=False
        )
        return list(_json(resp).get("items") or [])

    def pod_log(self, namespace: str, pod: str, container: str, *, previous: bool, tail: int) -> str:
        k8s = _kubernetes()
        api = k8s.client.CoreV1Api(self.api_client)
        request = Request("get", "pods/log", namespace, pod)
        resp = self.call(
            request,
            api.read_namespaced_pod_log,
            pod,
            namespace,
            container=container,
            previous=previous,
            tail_lines=tail,
            _preload_content=False,
        )
        return bytes(resp.data).decode("utf-8", "replace")

    def list_events(self, namespace: str, object_name: str) -> list[dict[str, Any]]:
        k8s = _kubernetes()
        api = k8s.client.CoreV1Api(self.api_client)
        request = Request("list", "events", namespace)
        resp = self.call(
            request,
            api.list_namespaced_event,
            namespace,
            field_selector=f"involvedObject.name={object_name}",
            _preload_content=False,
        )
        return list(_json(resp).get("items") or [])


def _json(resp: Any) -> dict[str, Any]:
    data = resp.data if hasattr(resp, "data") else resp
    if isinstance(data, bytes | bytearray):
        data = data.decode("utf-8", "replace")
    if isinstance(data, str):
        data = json.loads(data) if data.strip() else {}
    return dict(data) if isinstance(data, Mapping) else {}


# -- connecting ----------------------------------------------------------------------------------------------------
def _kubeconfig_paths(kubeconfig: str | os.PathLike[str] | None) -> str:
    if kubeconfig is not None:
        return str(Path(kubeconfig).expanduser())
    return os.environ.get("KUBECONFIG") or str(Path("~/.kube/config").expanduser())


def connect(
    *,
    api_client: ApiClient | None = None,
    kubeconfig: str | os.PathLike[str] | None = None,
    context: str | None = None,
) -> Cluster:
    """A Cluster from an ApiClient, or from a kubeconfig (``kubeconfig``, $KUBECONFIG, ~/.kube/config; context
    ``context`` or its current one), or from the pod's service account inside a cluster. Raises DeployError."""
    if api_client is not None:
        return Cluster(api_client, context=context)
    k8s = _kubernetes()
    paths = _kubeconfig_paths(kubeconfig)
    existing = [p for p in paths.split(os.pathsep) if p and Path(p).expanduser().is_file()]
    if not existing:
        if kubeconfig is None and os.environ.get("KUBERNETES_SERVICE_HOST"):
            return _in_cluster(k8s)
        raise DeployError(
            f"no Kubernetes configuration: no kubeconfig file at {paths} and not running inside a cluster",
            hint="point --kubeconfig (or $KUBECONFIG) at a kubeconfig file, e.g. the one kind/minikube wrote, "
            "or run from a pod (a Kubeflow notebook) whose service account may deploy",
        )
    config_file = os.pathsep.join(existing)
    try:
        contexts, current = k8s.config.list_kube_config_contexts(config_file=config_file)
        chosen = context or (current or {}).get("name")
        by_name = {c.get("name"): c for c in contexts or []}
        if chosen not in by_name:
            known = ", ".join(sorted(str(n) for n in by_name)) or "none"
            raise DeployError(
                f"kubeconfig {config_file} has no context {chosen!r} (contexts: {known})",
                hint="choose one with --context NAME (kubectl config get-contexts lists them)",
            )
        configuration = k8s.client.Configuration()
        k8s.config.load_kube_config(
            config_file=config_file, context=chosen, client_configuration=configuration, persist_config=False
        )
    except k8s.config.ConfigException as exc:
        raise DeployError(
            f"cannot use kubeconfig {config_file} (context {context or 'current'}): {exc}",
            hint="check the file with `kubectl config view`; choose a context with --context",
        ) from exc
    namespace = (by_name[chosen].get("context") or {}).get("namespace") or "default"
    log.debug("kubeconfig %s, context %s, server %s, namespace %s", config_file, chosen, configuration.host, namespace)
    return Cluster(k8s.client.ApiClient(configuration), context=chosen, default_namespace=namespace)


def _in_cluster(k8s: Any) -> Cluster:
    configuration = k8s.client.Configuration()
    try:
        k8s.config.load_incluster_config(client_configuration=configuration)
    except k8s.config.ConfigException as exc:
        raise DeployError(
            f"running in a pod, but its service account cannot be used: {exc}",
            hint="mount a service-account token (automountServiceAccountToken) or pass --kubeconfig",
        ) from exc
    try:
        namespace = IN_CLUSTER_NAMESPACE_FILE.read_text(encoding="utf-8").strip() or "default"
    except OSError:
        namespace = "default"
    return Cluster(k8s.client.ApiClient(configuration), context="in-cluster", default_namespace=namespace, in_pod=True)


_FORBIDDEN_RE = re.compile(r'cannot (?P<verb>\w+) resource "(?P<resource>[^"]+)"(?: in API group "(?P<group>[^"]*)")?')


def forbidden_request(message: str) -> Request | None:
    """Parse the verb/resource out of an API server 403 message ('... cannot patch resource "x" in API group ...')."""
    m = _FORBIDDEN_RE.search(message)
    if not m:
        return None
    resource = m["resource"] + (f".{m['group']}" if m["group"] else "")
    ns = re.search(r'in the namespace "([^"]+)"', message)
    return Request(m["verb"], resource, ns.group(1) if ns else None)
