"""deploy, status, delete: an InferenceService and its companions through the Kubernetes API.

``deploy`` applies the manifests (server-side apply, field manager ``mar-build``) in the order Secret, ServiceAccount,
PersistentVolumeClaim, InferenceService, then watches the InferenceService until Ready, reporting each condition and
pod change through ``on_event``. When it cannot become ready (a crash loop, a failed storage-initializer, OOMKilled, an
image that cannot be pulled, a fatal line in the server's log) or the timeout passes, it raises a DeployError whose
diagnosis says why (see ``_diagnose``), instead of waiting out the timeout or dumping YAML.
"""

from __future__ import annotations

import copy
import logging
import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from .._diagnose import (
    KSERVE_CONTAINER,
    Condition,
    Diagnosis,
    PodReport,
    blocking_failure,
    collect_pods,
    conditions_of,
    diagnose,
    find_hints,
    model_status_of,
    not_ready_error,
    pod_summary,
)
from .._errors import DeployError
from .._kube import CORE_KINDS, FIELD_MANAGER, ISVC_API_VERSION, ApiFailure, Cluster, connect
from .._spec import check_isvc_name

if TYPE_CHECKING:
    from kubernetes.client import ApiClient

log = logging.getLogger("toolkit.deploy")

# Apply order: what the InferenceService refers to exists before it does.
KIND_ORDER = ("Secret", "ServiceAccount", "PersistentVolumeClaim", "ConfigMap", "InferenceService")
# Fields the API server owns; `kubectl get -o yaml` output carries them and server-side apply rejects some of them.
_SERVER_FIELDS = ("resourceVersion", "uid", "creationTimestamp", "managedFields", "generation", "selfLink")
# Peek at the kserve-container log every this many polls while it runs but is not ready (token auth, a dead worker:
# the pod runs on, unready, and only its log says that waiting is futile).
LOG_PEEK_EVERY = 5

EventCallback = Callable[["DeployEvent"], None]
ManifestSource = Any  # a path, a Manifests, a mapping, or a sequence of paths or mappings (see load_manifests)


# -- results -------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class DeployEvent:
    """One line of the live view. ``kind``: applied | condition | pods | ready; ``elapsed`` in seconds since start."""

    kind: str
    elapsed: float
    message: str
    condition: Condition | None = None


@dataclass(frozen=True)
class DeployResult:
    """What deploy did: the objects applied and, when it waited, the URL the InferenceService answers on."""

    name: str
    namespace: str
    ready: bool
    url: str | None
    address: str | None
    conditions: tuple[Condition, ...]
    applied: tuple[str, ...]  # "Kind/name created|configured", in apply order
    elapsed: float


@dataclass(frozen=True)
class TrafficTarget:
    revision: str
    percent: int | None
    latest: bool
    tag: str | None = None


@dataclass(frozen=True)
class ComponentStatus:
    """status.components.NAME: the revisions of predictor/transformer/explainer and how traffic splits."""

    name: str
    url: str | None
    latest_created_revision: str | None
    latest_ready_revision: str | None
    traffic: tuple[TrafficTarget, ...]


@dataclass(frozen=True)
class IsvcStatus:
    """An InferenceService as the cluster reports it; ``diagnosis`` is filled in when it is not ready."""

    name: str
    namespace: str
    ready: bool
    url: str | None
    address: str | None
    conditions: tuple[Condition, ...]
    components: tuple[ComponentStatus, ...] = ()
    model_status: str | None = None
    deployment_mode: str | None = None
    diagnosis: Diagnosis | None = field(default=None, compare=False)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (the diagnosis as its text lines and hints)."""
        out = asdict(self)
        out["diagnosis"] = (
            {"lines": self.diagnosis.lines(), "hints": [asdict(h) for h in self.diagnosis.hints]}
            if self.diagnosis
            else None
        )
        return out


# -- manifests -----------------------------------------------------------------------------------------------------
def _docs_from_file(path: Path) -> list[dict[str, Any]]:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise DeployError(f"cannot read manifest {path}: {exc.strerror or exc}") from exc
    try:
        raw = [d for d in yaml.safe_load_all(text) if d is not None]
    except yaml.YAMLError as exc:
        raise DeployError(
            f"{path} is not valid YAML: {exc}", hint="check it with `kubectl apply --dry-run=client -f`"
        ) from exc
    docs: list[dict[str, Any]] = []
    for i, doc in enumerate(raw, 1):
        if not isinstance(doc, Mapping):
            raise DeployError(f"{path}: document {i} is not a mapping (a Kubernetes object)")
        # `kubectl get -o yaml` of several objects gives a List.
        items = doc.get("items") if doc.get("kind") == "List" else [doc]
        docs += [dict(item) for item in items or [] if isinstance(item, Mapping)]
    if not docs:
        raise DeployError(f"{path} holds no Kubernetes objects")
    return docs


def load_manifests(source: ManifestSource) -> list[dict[str, Any]]:
    """The documents of ``source``: a manifest file (multi-document YAML), a ``Manifests`` (all its documents), one
    mapping, or a sequence of files or mappings. Deep copies: the caller's objects are never changed."""
    if hasattr(source, "all_documents"):  # a Manifests: its keyed Secret (kept out of .documents) is applied too
        return [copy.deepcopy(dict(d)) for d in source.all_documents()]
    if hasattr(source, "documents"):
        return [copy.deepcopy(dict(d)) for d in source.documents]
    if isinstance(source, Mapping):
        return [copy.deepcopy(dict(source))]
    if isinstance(source, str | os.PathLike):
        return _docs_from_file(Path(source))
    if isinstance(source, Sequence):
        docs: list[dict[str, Any]] = []
        for item in source:
            docs += load_manifests(item)
        return docs
    raise DeployError(f"cannot deploy a {type(source).__name__}: pass a manifest file, a layout folder or manifests")


def _check_document(doc: Mapping[str, Any], index: int) -> tuple[str, str]:
    kind = doc.get("kind")
    api_version = doc.get("apiVersion")
    name = (doc.get("metadata") or {}).get("name") if isinstance(doc.get("metadata"), Mapping) else None
    where = f"document {index} ({kind or 'no kind'}{'/' + name if name else ''})"
    if kind == "InferenceService":
        if api_version != ISVC_API_VERSION:
            raise DeployError(
                f"{where}: apiVersion {api_version!r} is not supported", hint=f"use apiVersion: {ISVC_API_VERSION}"
            )
    elif kind in CORE_KINDS:
        if api_version != "v1":
            raise DeployError(f"{where}: apiVersion {api_version!r} is not supported", hint="use apiVersion: v1")
    else:
        raise DeployError(
            f"{where}: deploy applies {', '.join(KIND_ORDER)} only",
            hint="apply other kinds with kubectl apply -f",
        )
    if not isinstance(name, str) or not name:
        raise DeployError(f"{where}: metadata.name is missing")
    return str(kind), name


def _prepare(
    docs: list[dict[str, Any]], namespace: str | None, default_namespace: str
) -> tuple[list[dict[str, Any]], str, str]:
    """Checked documents in apply order, the namespace they all go to, and the InferenceService's name."""
    if not docs:
        raise DeployError("nothing to deploy: no manifests given")
    kinds = [_check_document(d, i) for i, d in enumerate(docs, 1)]
    isvcs = [name for kind, name in kinds if kind == "InferenceService"]
    if len(isvcs) != 1:
        raise DeployError(
            f"deploy needs exactly one InferenceService among the manifests, found {len(isvcs)}"
            + (f" ({', '.join(isvcs)})" if isvcs else ""),
            hint="deploy one InferenceService (with its Secret, ServiceAccount, PVC) at a time",
        )
    check_isvc_name(isvcs[0], key="metadata.name")
    in_docs = {str(d["metadata"]["namespace"]) for d in docs if d["metadata"].get("namespace")}
    if namespace and in_docs - {namespace}:
        # kubectl refuses this too: a manifest's own namespace wins silently nowhere.
        raise DeployError(
            f"the manifests name namespace {', '.join(sorted(in_docs - {namespace}))}, "
            f"but namespace {namespace} was asked for",
            hint="drop -n, or render the manifests for that namespace",
        )
    if len(in_docs) > 1:
        raise DeployError(
            f"the manifests span several namespaces ({', '.join(sorted(in_docs))})",
            hint="the InferenceService, its Secret, ServiceAccount and PVC must share one namespace",
        )
    target = namespace or (next(iter(in_docs)) if in_docs else default_namespace)
    prepared = []
    for doc in docs:
        doc = copy.deepcopy(doc)
        doc.pop("status", None)
        meta = dict(doc["metadata"])
        for key in _SERVER_FIELDS:
            meta.pop(key, None)
        meta["namespace"] = target
        doc["metadata"] = meta
        prepared.append(doc)
    prepared.sort(key=lambda d: KIND_ORDER.index(d["kind"]))
    return prepared, target, isvcs[0]


def _render_layout(
    layout: Path,
    *,
    name: str | None,
    storage_uri: str | None,
    namespace: str,
    render_options: Mapping[str, Any] | None,
) -> list[dict[str, Any]]:
    try:
        from .._render import render  # imported here: deploying manifests must not depend on the renderer
    except ImportError as exc:  # pragma: no cover - present in every install that has this module
        raise DeployError(
            "this installation cannot render manifests from a layout", hint="deploy a manifest file instead"
        ) from exc
    # render raises its own RenderError/SpecError/LayoutError (a missing name or storage URI included).
    manifests = render(layout, name=name, storage_uri=storage_uri, namespace=namespace, **dict(render_options or {}))
    return load_manifests(manifests)


# -- status helpers ------------------------------------------------------------------------------------------------
def _observed(isvc: Mapping[str, Any], generation: int | None) -> bool:
    """Whether the status describes ``generation`` (KServe versions that do not report it are believed)."""
    observed = (isvc.get("status") or {}).get("observedGeneration")
    return generation is None or observed is None or int(observed) >= generation


def _is_ready(isvc: Mapping[str, Any], generation: int | None) -> bool:
    # After an update the status still describes the previous generation for a moment: do not trust its Ready.
    if not _observed(isvc, generation):
        return False
    return any(c.type == "Ready" and c.status == "True" for c in conditions_of(isvc))


def _urls(isvc: Mapping[str, Any]) -> tuple[str | None, str | None]:
    status = isvc.get("status") or {}
    url = status.get("url")
    address = (status.get("address") or {}).get("url")
    return (str(url) if url else None), (str(address) if address else None)


def _components(isvc: Mapping[str, Any]) -> tuple[ComponentStatus, ...]:
    out = []
    for name, comp in ((isvc.get("status") or {}).get("components") or {}).items():
        if not isinstance(comp, Mapping):
            continue
        traffic = tuple(
            TrafficTarget(
                revision=str(t.get("revisionName") or t.get("configurationName") or "?"),
                percent=t.get("percent"),
                latest=bool(t.get("latestRevision")),
                tag=t.get("tag"),
            )
            for t in comp.get("traffic") or []
            if isinstance(t, Mapping)
        )
        out.append(
            ComponentStatus(
                name=str(name),
                url=comp.get("url"),
                latest_created_revision=comp.get("latestCreatedRevision"),
                latest_ready_revision=comp.get("latestReadyRevision"),
                traffic=traffic,
            )
        )
    return tuple(out)


class _Clock:
    def __init__(self) -> None:
        self.start = time.monotonic()

    @property
    def elapsed(self) -> float:
        return time.monotonic() - self.start


# -- deploy --------------------------------------------------------------------------------------------------------
def deploy(
    source: ManifestSource,
    *,
    namespace: str | None = None,
    wait: bool = True,
    timeout: float = 600.0,
    api_client: ApiClient | None = None,
    kubeconfig: str | os.PathLike[str] | None = None,
    context: str | None = None,
    on_event: EventCallback | None = None,
    poll_interval: float = 2.0,
    name: str | None = None,
    storage_uri: str | None = None,
    render_options: Mapping[str, Any] | None = None,
) -> DeployResult:
    """Apply manifests (a file, several, a ``Manifests``, dicts) or render a LAYOUT folder (with ``name``,
    ``storage_uri`` and ``render_options``) and apply that; with ``wait``, watch until Ready or ``timeout`` seconds.

    The cluster is ``api_client``, else the kubeconfig (``kubeconfig``/$KUBECONFIG, ``context``), else the pod's
    service account. The namespace is ``namespace``, else the manifests', else the context's, else "default".
    Returns a DeployResult (``url`` from status.url when ready). Raises DeployError: KServe not installed, API server
    unreachable, RBAC, invalid manifests, or not ready (with a diagnosis and hints).
    """
    clock = _Clock()

    def emit(kind: str, message: str, condition: Condition | None = None) -> None:
        log.info("%s", message)
        if on_event is not None:
            on_event(DeployEvent(kind, clock.elapsed, message, condition))

    cluster = connect(api_client=api_client, kubeconfig=kubeconfig, context=context)
    is_layout = isinstance(source, str | os.PathLike) and Path(source).is_dir()
    if is_layout:
        docs = _render_layout(
            Path(source),
            name=name,
            storage_uri=storage_uri,
            namespace=namespace or cluster.default_namespace,
            render_options=render_options,
        )
    else:
        docs = load_manifests(source)
    prepared, ns, isvc_name = _prepare(docs, namespace, cluster.default_namespace)

    # Before anything is written: a cluster without KServe would otherwise get a Secret and a PVC, then fail.
    cluster.require_kserve()
    # What ran before this apply: when the spec changes, its pods (maybe crash-looping: the user is redeploying a
    # fix) are on their way out and must not end the wait.
    before = cluster.get_isvc(isvc_name, ns) if wait else None
    applied: list[str] = []
    isvc: dict[str, Any] = {}
    for doc in prepared:
        obj, created = cluster.apply(doc, ns)
        line = f"{doc['kind']}/{doc['metadata']['name']} {'created' if created else 'configured'}"
        applied.append(line)
        emit("applied", f"applied {line} in namespace {ns}")
        if doc["kind"] == "InferenceService":
            isvc = obj
    generation = (isvc.get("metadata") or {}).get("generation")
    generation = int(generation) if generation is not None else None
    previous_generation = ((before or {}).get("metadata") or {}).get("generation")
    changed = before is None or previous_generation != generation

    if wait:
        isvc = _wait_ready(
            cluster,
            isvc_name,
            ns,
            generation=generation,
            since=_applied_at(isvc) if changed else None,
            timeout=timeout,
            poll_interval=poll_interval,
            clock=clock,
            emit=emit,
        )
    url, address = _urls(isvc)
    ready = _is_ready(isvc, generation)
    return DeployResult(
        name=isvc_name,
        namespace=ns,
        ready=ready,
        url=url,
        address=address,
        conditions=tuple(conditions_of(isvc)),
        applied=tuple(applied),
        elapsed=clock.elapsed,
    )


def _applied_at(isvc: Mapping[str, Any]) -> str | None:
    """When this apply was written, in the API server's clock (managedFields), to tell new pods from old ones."""
    for entry in (isvc.get("metadata") or {}).get("managedFields") or []:
        if entry.get("manager") == FIELD_MANAGER and entry.get("operation") == "Apply" and entry.get("time"):
            return str(entry["time"])
    return None


def _wait_ready(
    cluster: Cluster,
    name: str,
    namespace: str,
    *,
    generation: int | None,
    since: str | None,
    timeout: float,
    poll_interval: float,
    clock: _Clock,
    emit: Callable[..., None],
) -> dict[str, Any]:
    """Poll the InferenceService until Ready; raise DeployError with a diagnosis on a blocking failure or timeout.

    Only pods created at or after ``since`` (RFC 3339, the API server's clock) can end the wait early: older ones
    belong to the spec this apply replaced. Both timestamps come from the API server, so they compare as strings.
    """
    seen: dict[str, Condition] = {}
    last_pods = ""
    pods_readable = True
    polls = 0
    deadline = clock.elapsed + timeout
    while True:
        polls += 1
        isvc = cluster.get_isvc(name, namespace)
        if isvc is None:
            raise DeployError(
                f"InferenceService {namespace}/{name} disappeared while waiting for it",
                hint="someone deleted it; deploy again",
            )
        for cond in conditions_of(isvc):
            if seen.get(cond.type) != cond:
                seen[cond.type] = cond
                emit("condition", cond.line(), cond)
        if _is_ready(isvc, generation):
            url, _ = _urls(isvc)
            emit("ready", f"ready: {url or '(no URL in status)'}")
            return isvc

        pods: list[PodReport] = []
        if pods_readable:
            try:
                pods = collect_pods(cluster, name, namespace)
            except ApiFailure as exc:
                if exc.status != 403:
                    raise
                # Watching pods is a nicety; the InferenceService's own status still tells when it is ready.
                log.warning(
                    "cannot list pods in %s (forbidden): waiting on the InferenceService status only", namespace
                )
                pods_readable = False
        summary = pod_summary(pods) if pods_readable else ""
        if summary and summary != last_pods:
            last_pods = summary
            emit("pods", summary)

        current = [p for p in pods if since is None or p.created >= since]
        # KServe's model status speaks for the generation it observed: an old failure is not this apply's.
        why = blocking_failure(isvc if _observed(isvc, generation) else {}, current)
        if why is None and polls % LOG_PEEK_EVERY == 0:
            why = _fatal_log_line(cluster, namespace, current)
        if why is not None:
            diag = diagnose(cluster, isvc, pods=pods if pods_readable else None)
            raise not_ready_error(f"InferenceService {namespace}/{name} is not ready: {why}", diag)
        remaining = deadline - clock.elapsed
        if remaining <= 0:
            diag = diagnose(cluster, isvc, pods=pods if pods_readable else None)
            raise not_ready_error(f"InferenceService {namespace}/{name} is not ready after {timeout:g} s", diag)
        time.sleep(min(poll_interval, max(remaining, 0.0)))


def _fatal_log_line(cluster: Cluster, namespace: str, pods: Sequence[PodReport]) -> str | None:
    """Read the log of a running-but-unready kserve-container; a fatal known failure there ends the wait."""
    for pod in pods[:1]:
        for c in pod.containers:
            if c.name != KSERVE_CONTAINER or c.state != "running" or c.ready:
                continue
            try:
                text = cluster.pod_log(namespace, pod.name, c.name, previous=False, tail=200)
            except ApiFailure as exc:
                log.debug("cannot peek at %s/%s: %s", pod.name, c.name, exc.message)
                return None
            fatal = [h for h in find_hints(logs={KSERVE_CONTAINER: text}) if h.fatal]
            if fatal:
                return f"{fatal[0].problem} (pod {pod.name})"
    return None


# -- status, delete ------------------------------------------------------------------------------------------------
def _not_found(cluster: Cluster, name: str, namespace: str) -> DeployError:
    cluster.require_kserve()  # a 404 may mean "no such object" or "no such resource type": say which
    try:
        names = cluster.list_isvc_names(namespace)
    except ApiFailure:
        names = []
    hint = (
        f"InferenceServices in {namespace}: {', '.join(names)}"
        if names
        else f"there are none in namespace {namespace}; pick another with -n, or deploy one with mar-build deploy"
    )
    return DeployError(f"InferenceService {namespace}/{name} not found ({cluster.describe()})", hint=hint)


def status(
    name: str,
    namespace: str | None = None,
    *,
    api_client: ApiClient | None = None,
    kubeconfig: str | os.PathLike[str] | None = None,
    context: str | None = None,
    with_diagnosis: bool = True,
) -> IsvcStatus:
    """The InferenceService ``name`` as the cluster reports it: ready, URLs, conditions, revisions and traffic, and
    (``with_diagnosis``, when not ready) a diagnosis. Raises DeployError: not found, no KServe, RBAC, unreachable."""
    check_isvc_name(name, key="InferenceService name")
    cluster = connect(api_client=api_client, kubeconfig=kubeconfig, context=context)
    ns = namespace or cluster.default_namespace
    isvc = cluster.get_isvc(name, ns)
    if isvc is None:
        raise _not_found(cluster, name, ns)
    generation = (isvc.get("metadata") or {}).get("generation")
    ready = _is_ready(isvc, int(generation) if generation is not None else None)
    url, address = _urls(isvc)
    return IsvcStatus(
        name=name,
        namespace=ns,
        ready=ready,
        url=url,
        address=address,
        conditions=tuple(conditions_of(isvc)),
        components=_components(isvc),
        model_status=model_status_of(isvc),
        deployment_mode=(isvc.get("status") or {}).get("deploymentMode"),
        diagnosis=None if ready or not with_diagnosis else diagnose(cluster, isvc),
    )


def delete(
    name: str,
    namespace: str | None = None,
    *,
    wait: bool = False,
    timeout: float = 300.0,
    missing_ok: bool = False,
    api_client: ApiClient | None = None,
    kubeconfig: str | os.PathLike[str] | None = None,
    context: str | None = None,
    poll_interval: float = 1.0,
) -> bool:
    """Delete the InferenceService ``name`` (not its Secret, ServiceAccount or PVC: the PVC holds the staged model).
    With ``wait``, return once it is gone. Returns False if there was none and ``missing_ok``; raises DeployError
    otherwise (not found, no KServe, RBAC, unreachable, still there after ``timeout`` seconds)."""
    check_isvc_name(name, key="InferenceService name")
    cluster = connect(api_client=api_client, kubeconfig=kubeconfig, context=context)
    ns = namespace or cluster.default_namespace
    if not cluster.delete_isvc(name, ns):
        if missing_ok:
            cluster.require_kserve()
            return False
        raise _not_found(cluster, name, ns)
    if wait:
        deadline = time.monotonic() + timeout
        while cluster.get_isvc(name, ns) is not None:
            if time.monotonic() >= deadline:
                raise DeployError(
                    f"InferenceService {ns}/{name} is still there {timeout:g} s after it was deleted",
                    hint="a finalizer may hold it: kubectl get inferenceservice "
                    f"{name} -n {ns} -o jsonpath='{{.metadata.finalizers}}'",
                )
            time.sleep(poll_interval)
    return True
