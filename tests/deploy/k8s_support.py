# ruff: noqa: E501  (TOKEN_LOG quotes log lines whole, as the components print them)
"""A stand-in Kubernetes API server for deploy/status/delete tests: a real HTTP server on 127.0.0.1.

It answers the endpoints the toolkit uses the way the API server does (JSON bodies, Status objects for errors,
201 on create and 200 on update for server-side apply, 400 for logs of a container that has not run, 403 with the
RBAC message format, 404 for an API group that is not installed), keeps the objects applied to it, and records every
request (method, path, query, headers, body) so tests can assert what the client sent.

The InferenceService's status and its pods follow a script: a list of Frames. Each GET of the InferenceService once
it has been applied moves to the next frame (the last one stays), so a wait loop sees the story in order whatever
its poll interval.
"""

from __future__ import annotations

import copy
import http.server
import json
import re
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, urlsplit

import yaml

GROUP, VERSION = "serving.kserve.io", "v1beta1"
RUNTIME_VERSION = "v1alpha1"  # ServingRuntime's version of the group
ISVC_LABEL = "serving.kserve.io/inferenceservice"
CORE_PLURALS = {"secrets", "serviceaccounts", "persistentvolumeclaims", "configmaps"}
NAMESPACE = "kubeflow-user-example-com"
POD = "torchserve-predictor-00001-deployment-7c9f8d6b5-x2k4p"  # a predictor pod name as KServe makes them
USER = f"system:serviceaccount:{NAMESPACE}:default-editor"
TOKEN = "stand-in-token"  # the bearer token of the test kubeconfig

# Lines TorchServe 0.12.0 printed here when the KServe wrapper's readiness poll (GET /models/NAME?customized=false,
# no token) met token authorization, and the wrapper's own lines for that poll (TorchserveModel.load).
TOKEN_LOG = """\
2026-11-22T20:51:21,644 [INFO ] main org.pytorch.serve.util.TokenAuthorization -
######
TorchServe now enforces token authorization by default.
This requires the correct token to be provided when calling an API.
Key file located at /home/model-server/key_file.json
######
2026-11-22T20:51:22,074 [INFO ] main org.pytorch.serve.wlm.ModelManager - Model bert loaded.
INFO:root:Wrapper: loading configuration from /mnt/models/config/config.properties
INFO:root:Wrapper : Model names ['bert'], inference address http://0.0.0.0:8085, management address http://0.0.0.0:8081, grpc_inference_address, 0.0.0.0:7070, model store /mnt/models/model-store
INFO:root:Loading bert .. 1 of 10 tries..
2026-11-22T20:51:57,087 [INFO ] epollEventLoopGroup-3-1 ACCESS_LOG - /127.0.0.1:33566 "GET /models/bert?customized=false HTTP/1.1" 400 34
INFO:root:0
INFO:root:Failed loading model bert
"""


# -- building blocks for scripts -----------------------------------------------------------------------------------
def cond(type_: str, status: str = "True", reason: str = "", message: str = "") -> dict[str, Any]:
    out = {"type": type_, "status": status, "lastTransitionTime": "2026-01-01T00:00:00Z"}
    if reason:
        out["reason"] = reason
    if message:
        out["message"] = message
    return out


def _container(name: str, state: dict, *, ready: bool, started: bool, restarts: int, last: dict | None) -> dict:
    """A pod's containerStatuses entry."""
    return {
        "name": name,
        "ready": ready,
        "restartCount": restarts,
        "image": "",
        "started": started,
        "state": state,
        "lastState": {"terminated": last} if last else {},
    }


def waiting(name: str, reason: str, message: str = "", *, restarts: int = 0, last: dict | None = None) -> dict:
    state = {"waiting": {"reason": reason, **({"message": message} if message else {})}}
    return _container(name, state, ready=False, started=False, restarts=restarts, last=last)


def running(name: str, *, ready: bool = True, restarts: int = 0, last: dict | None = None) -> dict:
    state = {"running": {"startedAt": "2026-01-01T00:00:05Z"}}
    return _container(name, state, ready=ready, started=True, restarts=restarts, last=last)


def terminated(name: str, reason: str, exit_code: int, *, restarts: int = 0) -> dict:
    state = {"terminated": {"reason": reason, "exitCode": exit_code}}
    return _container(name, state, ready=False, started=False, restarts=restarts, last=None)


def exited(reason: str, exit_code: int) -> dict:
    """A lastState.terminated body."""
    return {"reason": reason, "exitCode": exit_code, "finishedAt": "2026-01-01T00:00:09Z"}


def pod(
    name: str,
    isvc: str,
    *,
    phase: str = "Pending",
    init: Sequence[dict] = (),
    containers: Sequence[dict] = (),
    image: str = "pytorch/torchserve-kfs:0.12.0",
    memory_limit: str = "2Gi",
    conditions: Sequence[dict] = (),
    created: str = "2026-01-01T00:00:01Z",  # just after the stand-in's apply time (StandInApiServer.now)
) -> dict[str, Any]:
    def with_image(cs: dict) -> dict:
        cs = dict(cs)
        cs["image"] = image if cs["name"] == "kserve-container" else "kserve/storage-initializer:v0.15.0"
        return cs

    spec_init = [{"name": c["name"], "image": with_image(c)["image"]} for c in init]
    spec_containers = [
        {
            "name": c["name"],
            "image": with_image(c)["image"],
            "resources": {"limits": {"memory": memory_limit}} if c["name"] == "kserve-container" else {},
        }
        for c in containers
    ]
    return {
        "metadata": {
            "name": name,
            "namespace": NAMESPACE,
            "creationTimestamp": created,
            "labels": {ISVC_LABEL: isvc, "component": "predictor"},
        },
        "spec": {"initContainers": spec_init, "containers": spec_containers},
        "status": {
            "phase": phase,
            "conditions": list(conditions),
            "initContainerStatuses": [with_image(c) for c in init],
            "containerStatuses": [with_image(c) for c in containers],
        },
    }


def event(
    obj_kind: str,
    obj_name: str,
    reason: str,
    message: str,
    *,
    type_: str = "Warning",
    count: int = 1,
    at: str = "2026-01-01T00:00:10Z",
) -> dict[str, Any]:
    return {
        "metadata": {"name": f"{obj_name}.{reason.lower()}", "namespace": NAMESPACE},
        "involvedObject": {"kind": obj_kind, "name": obj_name, "namespace": NAMESPACE},
        "reason": reason,
        "message": message,
        "type": type_,
        "count": count,
        "lastTimestamp": at,
    }


@dataclass
class Frame:
    """One moment of the story: the InferenceService's status, its pods, their logs, the events."""

    status: dict[str, Any] = field(default_factory=dict)
    pods: list[dict[str, Any]] = field(default_factory=list)
    # (pod, container, previous) -> log text; a missing key answers 400 like the API server does.
    logs: dict[tuple[str, str, bool], str] = field(default_factory=dict)
    events: list[dict[str, Any]] = field(default_factory=list)
    stale: bool = False  # report the previous generation as observed (the controller has not caught up)


def ready_status(name: str, namespace: str = NAMESPACE) -> dict[str, Any]:
    host = f"{name}.{namespace}.example.com"
    return {
        "url": f"http://{host}",
        "address": {"url": f"http://{name}-predictor.{namespace}.svc.cluster.local"},
        "conditions": [
            cond("IngressReady"),
            cond("PredictorConfigurationReady"),
            cond("PredictorReady"),
            cond("PredictorRouteReady"),
            cond("Ready"),
        ],
        "components": {
            "predictor": {
                "latestCreatedRevision": f"{name}-predictor-00001",
                "latestReadyRevision": f"{name}-predictor-00001",
                "url": f"http://{name}-predictor.{namespace}.example.com",
                "traffic": [{"revisionName": f"{name}-predictor-00001", "percent": 100, "latestRevision": True}],
            }
        },
        "modelStatus": {
            "states": {"activeModelState": "Loaded", "targetModelState": "Loaded"},
            "transitionStatus": "UpToDate",
            "copies": {"failedCopies": 0, "totalCopies": 1},
        },
        "deploymentMode": "Serverless",
    }


# -- the server ----------------------------------------------------------------------------------------------------
@dataclass
class Recorded:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


def _status(code: int, reason: str, message: str, details: Mapping[str, Any] | None = None) -> dict[str, Any]:
    return {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        "details": dict(details or {}),
        "code": code,
    }


class StandInApiServer:
    """The stand-in. ``frames`` scripts the InferenceService; ``forbid`` holds (verb, resource) pairs that get 403."""

    def __init__(self) -> None:
        self.kserve_installed = True
        self.serving_runtimes_installed = True  # False: a KServe whose group serves no v1alpha1 servingruntimes
        self.frames: list[Frame] = []
        self.frame_index = 0
        self.objects: dict[tuple[str, str, str], dict[str, Any]] = {}  # (plural, namespace, name) -> object
        self.forbid: set[tuple[str, str]] = set()
        self.missing_namespaces: set[str] = set()
        self.requests: list[Recorded] = []
        self.delete_after_gets = 0  # after a DELETE, this many more GETs still find the object (finalizers)
        # The script plays once the InferenceService has been applied (a read before that sees the stored object);
        # tests of status without deploy set this False.
        self.script_starts_on_apply = True
        self.applied = False
        self.now = "2026-01-01T00:00:00Z"  # the server's clock, as written into managedFields
        self._pending_delete: dict[tuple[str, str, str], int] = {}
        self._lock = threading.Lock()
        self._server: http.server.ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle
    def start(self) -> StandInApiServer:
        standin = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _handle(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                parts = urlsplit(self.path)
                headers = {k.lower(): v for k, v in self.headers.items()}  # HTTP header names are case-insensitive
                rec = Recorded(self.command, parts.path, parse_qs(parts.query), headers, body)
                with standin._lock:
                    standin.requests.append(rec)
                    code, payload, ctype = standin.answer(rec)
                data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
                self.send_response(code)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_PATCH = do_DELETE = do_POST = do_PUT = _handle

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
                pass

        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.02}, name="k8s-standin", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    @property
    def url(self) -> str:
        assert self._server is not None
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    # -- helpers for tests
    def put_isvc(self, name: str, obj: dict[str, Any], namespace: str = NAMESPACE) -> None:
        self.objects[("inferenceservices", namespace, name)] = obj

    def isvc(self, name: str, namespace: str = NAMESPACE) -> dict[str, Any] | None:
        return self.objects.get(("inferenceservices", namespace, name))

    def serving_runtime(self, name: str, namespace: str = NAMESPACE) -> dict[str, Any] | None:
        return self.objects.get(("servingruntimes", namespace, name))

    def calls(self, method: str, pattern: str) -> list[Recorded]:
        return [r for r in self.requests if r.method == method and re.search(pattern, r.path)]

    # -- routing
    def answer(self, rec: Recorded) -> tuple[int, Any, str]:
        path = rec.path
        m = re.fullmatch(rf"/apis/{GROUP}/{VERSION}", path)
        if m:
            return self._discovery()
        m = re.fullmatch(rf"/apis/{GROUP}/{VERSION}/namespaces/([^/]+)/inferenceservices(?:/([^/]+))?", path)
        if m:
            if not self.kserve_installed:
                return (
                    404,
                    _status(404, "NotFound", "the server could not find the requested resource"),
                    "application/json",
                )
            return self._isvc(rec, m.group(1), m.group(2))
        m = re.fullmatch(rf"/apis/{GROUP}/{RUNTIME_VERSION}/namespaces/([^/]+)/servingruntimes/([^/]+)", path)
        if m:
            if not (self.kserve_installed and self.serving_runtimes_installed):
                return (
                    404,
                    _status(404, "NotFound", "the server could not find the requested resource"),
                    "application/json",
                )
            return self._serving_runtime(rec, m.group(1), m.group(2))
        m = re.fullmatch(r"/api/v1/namespaces/([^/]+)/(\w+)/([^/]+)", path)
        if m and m.group(2) in CORE_PLURALS:
            return self._core_apply(rec, m.group(1), m.group(2), m.group(3))
        m = re.fullmatch(r"/api/v1/namespaces/([^/]+)/pods", path)
        if m:
            return self._pods(rec, m.group(1))
        m = re.fullmatch(r"/api/v1/namespaces/([^/]+)/pods/([^/]+)/log", path)
        if m:
            return self._log(rec, m.group(1), m.group(2))
        m = re.fullmatch(r"/api/v1/namespaces/([^/]+)/events", path)
        if m:
            return self._events(rec, m.group(1))
        return 404, _status(404, "NotFound", "the server could not find the requested resource"), "application/json"

    def _forbidden(
        self, verb: str, resource: str, group: str, namespace: str, name: str | None
    ) -> tuple[int, Any, str] | None:
        if (verb, resource) not in self.forbid:
            return None
        full = f"{resource}.{group}" if group else resource
        subject = f'{full} "{name}"' if name else full
        message = (
            f'{subject} is forbidden: User "{USER}" cannot {verb} resource "{resource}" '
            f'in API group "{group}" in the namespace "{namespace}"'
        )
        details = {"name": name or "", "group": group, "kind": resource.split("/")[0]}
        return 403, _status(403, "Forbidden", message, details), "application/json"

    def _discovery(self) -> tuple[int, Any, str]:
        if not self.kserve_installed:
            return 404, _status(404, "NotFound", "the server could not find the requested resource"), "application/json"
        return (
            200,
            {
                "kind": "APIResourceList",
                "apiVersion": "v1",
                "groupVersion": f"{GROUP}/{VERSION}",
                "resources": [
                    {
                        "name": "inferenceservices",
                        "singularName": "inferenceservice",
                        "namespaced": True,
                        "kind": "InferenceService",
                        "shortNames": ["isvc"],
                        "verbs": ["delete", "deletecollection", "get", "list", "patch", "create", "update", "watch"],
                    },
                    {
                        "name": "inferenceservices/status",
                        "singularName": "",
                        "namespaced": True,
                        "kind": "InferenceService",
                        "verbs": ["get", "patch", "update"],
                    },
                ],
            },
            "application/json",
        )

    def _apply(self, rec: Recorded, plural: str, namespace: str, name: str, kind: str) -> tuple[int, Any, str]:
        ctype = rec.headers.get("content-type", "")
        if ctype != "application/apply-patch+yaml":
            # The stand-in only does server-side apply; anything else is a client bug here.
            return (
                415,
                _status(
                    415,
                    "UnsupportedMediaType",
                    f"the body of the request was in an unknown format - "
                    f"accepted media types include: application/apply-patch+yaml (got {ctype})",
                ),
                "application/json",
            )
        if not rec.query.get("fieldManager"):
            return (
                400,
                _status(
                    400,
                    "BadRequest",
                    'PatchOptions.meta.k8s.io "" is invalid: fieldManager: Required value: is required for apply patch',
                ),
                "application/json",
            )
        if namespace in self.missing_namespaces:
            return (
                404,
                _status(
                    404, "NotFound", f'namespaces "{namespace}" not found', {"name": namespace, "kind": "namespaces"}
                ),
                "application/json",
            )
        body = yaml.safe_load(rec.body.decode())
        meta = body.get("metadata") or {}
        if body.get("kind") != kind or meta.get("name") != name:
            return (
                400,
                _status(400, "BadRequest", "the name of the object does not match the name on the URL"),
                "application/json",
            )
        key = (plural, namespace, name)
        existing = self.objects.get(key)
        created = existing is None
        obj = copy.deepcopy(body)
        obj["metadata"] = dict(meta)
        obj["metadata"]["namespace"] = namespace
        if created:
            obj["metadata"].update(
                uid=f"uid-{name}", generation=1, resourceVersion="1", creationTimestamp="2026-01-01T00:00:00Z"
            )
        else:
            generation = int(existing["metadata"].get("generation", 1))
            if existing.get("spec") != obj.get("spec"):
                generation += 1
            obj["metadata"].update(
                uid=existing["metadata"].get("uid"),
                generation=generation,
                resourceVersion=str(int(existing["metadata"].get("resourceVersion", "1")) + 1),
                creationTimestamp=existing["metadata"].get("creationTimestamp"),
            )
            if "status" in existing:
                obj["status"] = existing["status"]
        obj["metadata"]["managedFields"] = [
            {"manager": rec.query["fieldManager"][0], "operation": "Apply", "time": self.now}
        ]
        if plural == "inferenceservices":
            self.applied = True
        self.objects[key] = obj
        return (201 if created else 200), obj, "application/json"

    def _isvc(self, rec: Recorded, namespace: str, name: str | None) -> tuple[int, Any, str]:
        verb = {"PATCH": "patch", "DELETE": "delete", "GET": "get" if name else "list"}.get(rec.method, "?")
        if denied := self._forbidden(verb, "inferenceservices", GROUP, namespace, name):
            return denied
        key = ("inferenceservices", namespace, name or "")
        if name is None:
            items = [
                o for (p, ns, _), o in sorted(self.objects.items()) if p == "inferenceservices" and ns == namespace
            ]
            return (
                200,
                {"apiVersion": f"{GROUP}/{VERSION}", "kind": "InferenceServiceList", "items": items},
                "application/json",
            )
        if rec.method == "PATCH":
            return self._apply(rec, "inferenceservices", namespace, name, "InferenceService")
        not_found = (
            404,
            _status(
                404,
                "NotFound",
                f'inferenceservices.{GROUP} "{name}" not found',
                {"name": name, "group": GROUP, "kind": "inferenceservices"},
            ),
            "application/json",
        )
        obj = self.objects.get(key)
        if obj is None:
            return not_found
        if rec.method == "DELETE":
            obj["metadata"]["deletionTimestamp"] = "2026-01-01T00:01:00Z"
            if self.delete_after_gets:
                self._pending_delete[key] = self.delete_after_gets
            else:
                del self.objects[key]
            return 200, _status(200, "", "") | {"status": "Success"}, "application/json"
        # GET: an object being deleted stays visible for a few reads, then is gone.
        if key in self._pending_delete:
            self._pending_delete[key] -= 1
            if self._pending_delete[key] < 0:
                del self.objects[key], self._pending_delete[key]
                return not_found
            return 200, obj, "application/json"
        # GET: play the script.
        if self.frames and (self.applied or not self.script_starts_on_apply):
            frame = self.frames[min(self.frame_index, len(self.frames) - 1)]
            self.frame_index += 1
            status = copy.deepcopy(frame.status)
            generation = int(obj["metadata"].get("generation", 1))
            if status:
                status["observedGeneration"] = generation - 1 if frame.stale else generation
            obj = dict(obj, status=status)
            self.objects[key] = obj
        return 200, obj, "application/json"

    def _current(self) -> Frame:
        if not self.frames:
            return Frame()
        return self.frames[min(max(self.frame_index - 1, 0), len(self.frames) - 1)]

    def _core_apply(self, rec: Recorded, namespace: str, plural: str, name: str) -> tuple[int, Any, str]:
        if denied := self._forbidden({"PATCH": "patch"}.get(rec.method, "get"), plural, "", namespace, name):
            return denied
        kind = {
            "secrets": "Secret",
            "serviceaccounts": "ServiceAccount",
            "persistentvolumeclaims": "PersistentVolumeClaim",
            "configmaps": "ConfigMap",
        }[plural]
        if rec.method != "PATCH":
            obj = self.objects.get((plural, namespace, name))
            return (
                (200, obj, "application/json")
                if obj
                else (404, _status(404, "NotFound", "not found"), "application/json")
            )
        return self._apply(rec, plural, namespace, name, kind)

    def _serving_runtime(self, rec: Recorded, namespace: str, name: str) -> tuple[int, Any, str]:
        verb = {"PATCH": "patch", "DELETE": "delete"}.get(rec.method, "get")
        if denied := self._forbidden(verb, "servingruntimes", GROUP, namespace, name):
            return denied
        if rec.method == "PATCH":
            return self._apply(rec, "servingruntimes", namespace, name, "ServingRuntime")
        obj = self.objects.get(("servingruntimes", namespace, name))
        if obj is None:
            message = f'servingruntimes.{GROUP} "{name}" not found'
            return 404, _status(404, "NotFound", message, {"name": name, "group": GROUP}), "application/json"
        return 200, obj, "application/json"

    def _pods(self, rec: Recorded, namespace: str) -> tuple[int, Any, str]:
        if denied := self._forbidden("list", "pods", "", namespace, None):
            return denied
        selector = (rec.query.get("labelSelector") or [""])[0]
        want = dict(part.split("=", 1) for part in selector.split(",") if "=" in part)
        items = [
            p
            for p in self._current().pods
            if all((p["metadata"].get("labels") or {}).get(k) == v for k, v in want.items())
        ]
        return 200, {"kind": "PodList", "apiVersion": "v1", "metadata": {}, "items": items}, "application/json"

    def _log(self, rec: Recorded, namespace: str, pod_name: str) -> tuple[int, Any, str]:
        if denied := self._forbidden("get", "pods/log", "", namespace, pod_name):
            return denied
        container = (rec.query.get("container") or [""])[0]
        # the API server parses booleans as Go's strconv.ParseBool: kubernetes 30's client sends "True"
        previous = (rec.query.get("previous") or ["false"])[0] in ("1", "t", "T", "true", "True", "TRUE")
        text = self._current().logs.get((pod_name, container, previous))
        if text is None:
            message = (
                f'previous terminated container "{container}" in pod "{pod_name}" not found'
                if previous
                else f'container "{container}" in pod "{pod_name}" is waiting to start: PodInitializing'
            )
            return 400, _status(400, "BadRequest", message), "application/json"
        lines = text.splitlines(keepends=True)
        tail = rec.query.get("tailLines")
        if tail:
            lines = lines[-int(tail[0]) :]
        return 200, "".join(lines).encode(), "text/plain"

    def _events(self, rec: Recorded, namespace: str) -> tuple[int, Any, str]:
        if denied := self._forbidden("list", "events", "", namespace, None):
            return denied
        selector = (rec.query.get("fieldSelector") or [""])[0]
        name = selector.split("=", 1)[1] if selector.startswith("involvedObject.name=") else None
        items = [e for e in self._current().events if name is None or e["involvedObject"]["name"] == name]
        return 200, {"kind": "EventList", "apiVersion": "v1", "metadata": {}, "items": items}, "application/json"


# -- manifests like the ones mar-build render writes ---------------------------------------------------------------
def isvc_manifest(name: str = "torchserve", storage_uri: str = "pvc://leeway/bert", **extra: Any) -> dict[str, Any]:
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "InferenceService",
        "metadata": {"name": name, "namespace": NAMESPACE, **extra},
        "spec": {
            "predictor": {
                "model": {
                    "modelFormat": {"name": "pytorch"},
                    "protocolVersion": "v1",
                    "storageUri": storage_uri,
                    "resources": {
                        "limits": {"cpu": "2", "memory": "2Gi"},
                        "requests": {"cpu": "0.5", "memory": "0.5Gi"},
                    },
                }
            }
        },
    }


def s3_companions(name: str = "torchserve") -> list[dict[str, Any]]:
    """The S3 Secret (no keys: anonymous) and the ServiceAccount that lists it."""
    return [
        {
            "apiVersion": "v1",
            "kind": "ServiceAccount",
            "metadata": {"name": f"{name}-sa", "namespace": NAMESPACE},
            "secrets": [{"name": f"{name}-s3"}],
        },
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {
                "name": f"{name}-s3",
                "namespace": NAMESPACE,
                "annotations": {
                    "serving.kserve.io/s3-endpoint": "minio.minio.svc:9000",
                    "serving.kserve.io/s3-usehttps": "0",
                    "serving.kserve.io/s3-useanoncredential": "true",
                },
            },
            "type": "Opaque",
        },
    ]
