"""deploy: an InferenceService and its companions through the Kubernetes API, then the wait until it is Ready.

``deploy`` applies the manifests (server-side apply, field manager ``mar-build``) in the order Secret, ServiceAccount,
PersistentVolumeClaim, ConfigMap, ServingRuntime, InferenceService, then watches the InferenceService until Ready,
reporting each condition and pod change through ``on_event``. When it cannot become ready (a crash loop, a failed
storage-initializer, OOMKilled, an image that cannot be pulled, a fatal line in the server's log) or the timeout
passes, it raises a DeployError whose diagnosis says why (see ``_diagnose``), instead of waiting out the timeout or
dumping YAML.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .._diagnose import (
    KSERVE_CONTAINER,
    Condition,
    PodReport,
    blocking_failure,
    collect_pods,
    conditions_of,
    diagnose,
    find_hints,
    not_ready_error,
    pod_summary,
)
from .._errors import DeployError
from .._events import OnEvent
from .._kube import FIELD_MANAGER, ApiFailure, Cluster, connect
from .isvc import generation_of, is_ready, jsonable, observed, urls_of
from .manifests import ManifestSource, check_namespace, load_manifests, prepare, render_layout
from .runtime import apply_serving_runtime

if TYPE_CHECKING:
    from kubernetes.client import ApiClient

log = logging.getLogger("toolkit.deploy")

# Peek at the kserve-container log every this many polls while it runs but is not ready (token auth, a dead worker:
# the pod runs on, unready, and only its log says that waiting is futile).
LOG_PEEK_EVERY = 5


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

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (what `mar-build deploy --json` prints): every field, conditions as dicts."""
        out: dict[str, Any] = jsonable(asdict(self))
        return out


class _Reporter:
    """The clock of one deploy and the events it sends to the log and ``on_event``."""

    def __init__(self, on_event: OnEvent[DeployEvent] | None) -> None:
        self.start = time.monotonic()
        self.on_event = on_event

    @property
    def elapsed(self) -> float:
        return time.monotonic() - self.start

    def emit(self, kind: str, message: str, condition: Condition | None = None) -> None:
        log.info("%s", message)
        if self.on_event is not None:
            self.on_event(DeployEvent(kind, self.elapsed, message, condition))


def deploy(
    source: ManifestSource,
    *,
    namespace: str | None = None,
    wait: bool = True,
    timeout: float = 600.0,
    api_client: ApiClient | None = None,
    kubeconfig: str | os.PathLike[str] | None = None,
    context: str | None = None,
    on_event: OnEvent[DeployEvent] | None = None,
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
    reporter = _Reporter(on_event)
    if namespace is not None:
        check_namespace(namespace)
    cluster = connect(api_client=api_client, kubeconfig=kubeconfig, context=context)
    if isinstance(source, str | os.PathLike) and Path(source).is_dir():
        docs = render_layout(
            Path(source), name=name, storage_uri=storage_uri, namespace=namespace or cluster.default_namespace,
            render_options=render_options,
        )
    else:
        docs = load_manifests(source)
    prepared, ns, isvc_name = prepare(docs, namespace, cluster.default_namespace)

    # Before anything is written: a cluster without KServe would otherwise get a Secret and a PVC, then fail.
    cluster.require_kserve()
    # What ran before this apply: when the spec changes, its pods (maybe crash-looping: the user is redeploying a
    # fix) are on their way out and must not end the wait.
    before = cluster.get_isvc(isvc_name, ns) if wait else None
    applied, isvc = _apply_all(cluster, prepared, ns, reporter)
    generation = generation_of(isvc)
    if wait:
        changed = before is None or generation_of(before) != generation
        watch = _Watch(cluster, isvc_name, ns, generation, since=_applied_at(isvc) if changed else None)
        isvc = watch.until_ready(timeout=timeout, poll_interval=poll_interval, reporter=reporter)
    url, address = urls_of(isvc)
    return DeployResult(
        name=isvc_name,
        namespace=ns,
        ready=is_ready(isvc, generation),
        url=url,
        address=address,
        conditions=tuple(conditions_of(isvc)),
        applied=tuple(applied),
        elapsed=reporter.elapsed,
    )


def _apply_all(
    cluster: Cluster, prepared: Sequence[dict[str, Any]], namespace: str, reporter: _Reporter
) -> tuple[list[str], dict[str, Any]]:
    """Apply the documents in order; ("Kind/name created|configured" lines, the InferenceService as stored)."""
    applied: list[str] = []
    isvc: dict[str, Any] = {}
    for doc in prepared:
        if doc["kind"] == "ServingRuntime":
            obj, created = apply_serving_runtime(cluster, doc, namespace)
        else:
            obj, created = cluster.apply(doc, namespace)
        line = f"{doc['kind']}/{doc['metadata']['name']} {'created' if created else 'configured'}"
        applied.append(line)
        reporter.emit("applied", f"applied {line} in namespace {namespace}")
        if doc["kind"] == "InferenceService":
            isvc = obj
    return applied, isvc


def _applied_at(isvc: Mapping[str, Any]) -> str | None:
    """When this apply was written, in the API server's clock (managedFields), to tell new pods from old ones."""
    for entry in (isvc.get("metadata") or {}).get("managedFields") or []:
        if entry.get("manager") == FIELD_MANAGER and entry.get("operation") == "Apply" and entry.get("time"):
            return str(entry["time"])
    return None


class _Watch:
    """The wait for one InferenceService: what has been reported so far, and whether its pods can be read.

    Only pods created at or after ``since`` (RFC 3339, the API server's clock) can end the wait early: older ones
    belong to the spec this apply replaced. Both timestamps come from the API server, so they compare as strings.
    """

    def __init__(self, cluster: Cluster, name: str, namespace: str, generation: int | None, since: str | None):
        self.cluster, self.name, self.namespace = cluster, name, namespace
        self.generation, self.since = generation, since
        self.seen: dict[str, Condition] = {}
        self.last_pods = ""
        self.pods_readable = True

    @property
    def where(self) -> str:
        return f"InferenceService {self.namespace}/{self.name}"

    def until_ready(self, *, timeout: float, poll_interval: float, reporter: _Reporter) -> dict[str, Any]:
        """Poll until Ready and return the object; DeployError with a diagnosis on a blocking failure or timeout."""
        deadline = reporter.elapsed + timeout
        polls = 0
        while True:
            polls += 1
            isvc = self._read(reporter)
            if is_ready(isvc, self.generation):
                url, _ = urls_of(isvc)
                reporter.emit("ready", f"ready: {url or '(no URL in status)'}")
                return isvc
            pods = self._pods(reporter)
            why = self._blocked(isvc, pods, peek_at_log=polls % LOG_PEEK_EVERY == 0)
            if why is not None:
                raise self._not_ready(f"{self.where} is not ready: {why}", isvc, pods)
            remaining = deadline - reporter.elapsed
            if remaining <= 0:
                raise self._not_ready(f"{self.where} is not ready after {timeout:g} s", isvc, pods)
            time.sleep(min(poll_interval, max(remaining, 0.0)))

    def _read(self, reporter: _Reporter) -> dict[str, Any]:
        """The InferenceService now; each condition that changed since the last poll is reported."""
        isvc = self.cluster.get_isvc(self.name, self.namespace)
        if isvc is None:
            raise DeployError(f"{self.where} disappeared while waiting for it", hint="someone deleted it; deploy again")
        for cond in conditions_of(isvc):
            if self.seen.get(cond.type) != cond:
                self.seen[cond.type] = cond
                reporter.emit("condition", cond.line(), cond)
        return isvc

    def _pods(self, reporter: _Reporter) -> list[PodReport]:
        """The predictor's pods (none once listing them was forbidden); a changed summary is reported."""
        if not self.pods_readable:
            return []
        try:
            pods = collect_pods(self.cluster, self.name, self.namespace)
        except ApiFailure as exc:
            if exc.status != 403:
                raise
            # Watching pods is a nicety; the InferenceService's own status still tells when it is ready.
            log.warning(
                "cannot list pods in %s (forbidden): waiting on the InferenceService status only", self.namespace
            )
            self.pods_readable = False
            return []
        summary = pod_summary(pods)
        if summary and summary != self.last_pods:
            self.last_pods = summary
            reporter.emit("pods", summary)
        return pods

    def _blocked(self, isvc: Mapping[str, Any], pods: Sequence[PodReport], *, peek_at_log: bool) -> str | None:
        """Why waiting on is futile (for this apply's pods), or None."""
        current = [p for p in pods if self.since is None or p.created >= self.since]
        # KServe's model status speaks for the generation it observed: an old failure is not this apply's.
        why = blocking_failure(isvc if observed(isvc, self.generation) else {}, current)
        if why is None and peek_at_log:
            why = _fatal_log_line(self.cluster, self.namespace, current)
        return why

    def _not_ready(self, message: str, isvc: Mapping[str, Any], pods: list[PodReport]) -> DeployError:
        diagnosis = diagnose(self.cluster, isvc, pods=pods if self.pods_readable else None)
        return not_ready_error(message, diagnosis)


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
