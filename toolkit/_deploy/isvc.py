"""An InferenceService as the cluster reports it: `status`, `delete`, and the reading of its status that deploy's wait
shares."""

from __future__ import annotations

import os
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, replace
from typing import TYPE_CHECKING, Any

from .._diagnose import Condition, Diagnosis, conditions_of, diagnose, model_status_of
from .._errors import DeployError
from .._kube import ApiFailure, Cluster, connect
from .._spec import check_isvc_name
from .manifests import check_namespace

if TYPE_CHECKING:
    from kubernetes.client import ApiClient


def jsonable(value: Any) -> Any:
    """``value`` (from dataclasses.asdict) with tuples as lists, so that it equals its own JSON round trip."""
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    return value


@dataclass(frozen=True)
class TrafficTarget:
    """One entry of status.components.NAME.traffic: a revision and its share of the requests."""

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
        """A JSON-ready dict (what `mar-build status --json` prints); the diagnosis as its text lines and hints."""
        out: dict[str, Any] = jsonable(asdict(replace(self, diagnosis=None)))
        out["diagnosis"] = (
            {"lines": self.diagnosis.lines(), "hints": [asdict(h) for h in self.diagnosis.hints]}
            if self.diagnosis
            else None
        )
        return out


# -- reading an InferenceService's status ---------------------------------------------------------------------------
def generation_of(isvc: Mapping[str, Any]) -> int | None:
    """metadata.generation: the version of the spec, bumped by the API server on every change."""
    generation = (isvc.get("metadata") or {}).get("generation")
    return int(generation) if generation is not None else None


def observed(isvc: Mapping[str, Any], generation: int | None) -> bool:
    """Whether the status describes ``generation`` (KServe versions that do not report it are believed)."""
    seen = (isvc.get("status") or {}).get("observedGeneration")
    return generation is None or seen is None or int(seen) >= generation


def is_ready(isvc: Mapping[str, Any], generation: int | None) -> bool:
    """Whether ``isvc`` is Ready for ``generation``."""
    # After an update the status still describes the previous generation for a moment: do not trust its Ready.
    if not observed(isvc, generation):
        return False
    return any(c.type == "Ready" and c.status == "True" for c in conditions_of(isvc))


def urls_of(isvc: Mapping[str, Any]) -> tuple[str | None, str | None]:
    """(status.url, status.address.url), each None when not reported."""
    status = isvc.get("status") or {}
    url = status.get("url")
    address = (status.get("address") or {}).get("url")
    return (str(url) if url else None), (str(address) if address else None)


def _traffic(comp: Mapping[str, Any]) -> tuple[TrafficTarget, ...]:
    return tuple(
        TrafficTarget(
            revision=str(t.get("revisionName") or t.get("configurationName") or "?"),
            percent=t.get("percent"),
            latest=bool(t.get("latestRevision")),
            tag=t.get("tag"),
        )
        for t in comp.get("traffic") or []
        if isinstance(t, Mapping)
    )


def _components(isvc: Mapping[str, Any]) -> tuple[ComponentStatus, ...]:
    return tuple(
        ComponentStatus(
            name=str(name),
            url=comp.get("url"),
            latest_created_revision=comp.get("latestCreatedRevision"),
            latest_ready_revision=comp.get("latestReadyRevision"),
            traffic=_traffic(comp),
        )
        for name, comp in ((isvc.get("status") or {}).get("components") or {}).items()
        if isinstance(comp, Mapping)
    )


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


def _connect(
    name: str, namespace: str | None, api_client: ApiClient | None, kubeconfig: Any, context: str | None
) -> tuple[Cluster, str]:
    """The cluster and the namespace to look in, both names checked before the first request."""
    check_isvc_name(name, key="InferenceService name")
    if namespace is not None:
        check_namespace(namespace)
    cluster = connect(api_client=api_client, kubeconfig=kubeconfig, context=context)
    return cluster, namespace or cluster.default_namespace


# -- status, delete ------------------------------------------------------------------------------------------------
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
    (``with_diagnosis``, when not ready) a diagnosis. Raises DeployError: not found, no KServe, RBAC, unreachable;
    SpecError/DeployError for a name or namespace that is not one."""
    cluster, ns = _connect(name, namespace, api_client, kubeconfig, context)
    isvc = cluster.get_isvc(name, ns)
    if isvc is None:
        raise _not_found(cluster, name, ns)
    ready = is_ready(isvc, generation_of(isvc))
    url, address = urls_of(isvc)
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
    cluster, ns = _connect(name, namespace, api_client, kubeconfig, context)
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
