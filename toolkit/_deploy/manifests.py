"""The documents deploy applies: loaded from files, ``Manifests`` or mappings, checked, and put in apply order.

deploy applies only the kinds mar-build renders (Secret, ServiceAccount, PersistentVolumeClaim, ConfigMap,
ServingRuntime and one InferenceService), all in one namespace; anything else is refused before the first request
is sent.
"""

from __future__ import annotations

import copy
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from .._errors import DeployError
from .._kube import CORE_KINDS, ISVC_API_VERSION
from .._names import dns1123_label_problem
from .._spec import check_isvc_name
from .runtime import SERVING_RUNTIME_API_VERSION

# Apply order: what the InferenceService refers to exists before it does.
KIND_ORDER = ("Secret", "ServiceAccount", "PersistentVolumeClaim", "ConfigMap", "ServingRuntime", "InferenceService")
API_VERSIONS = {"InferenceService": ISVC_API_VERSION, "ServingRuntime": SERVING_RUNTIME_API_VERSION}
# Fields the API server owns; `kubectl get -o yaml` output carries them and server-side apply rejects some of them.
_SERVER_FIELDS = ("resourceVersion", "uid", "creationTimestamp", "managedFields", "generation", "selfLink")

ManifestSource = Any  # a path, a Manifests, a mapping, or a sequence of paths or mappings (see load_manifests)


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


def check_namespace(namespace: str, what: str = "namespace") -> str:
    """``namespace`` if it is a namespace name (a DNS-1123 label); DeployError otherwise.

    Checked before any request: the name goes into the API path, where "ns\\n" would become /namespaces/ns%0A.
    """
    problem = dns1123_label_problem(namespace)
    if problem:
        raise DeployError(f"{what} {namespace!r} is not a namespace name: {problem}")
    return namespace


def _check_document(doc: Mapping[str, Any], index: int) -> tuple[str, str]:
    """(kind, name) of a document deploy can apply; DeployError naming the document otherwise."""
    kind = doc.get("kind")
    api_version = doc.get("apiVersion")
    name = (doc.get("metadata") or {}).get("name") if isinstance(doc.get("metadata"), Mapping) else None
    where = f"document {index} ({kind or 'no kind'}{'/' + name if name else ''})"
    if kind in API_VERSIONS:
        if api_version != API_VERSIONS[kind]:
            raise DeployError(
                f"{where}: apiVersion {api_version!r} is not supported", hint=f"use apiVersion: {API_VERSIONS[kind]}"
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


def _target_namespace(docs: Sequence[Mapping[str, Any]], namespace: str | None, default_namespace: str) -> str:
    """The one namespace the documents go to: ``namespace``, else theirs, else the cluster's default."""
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
    return check_namespace(namespace or (next(iter(in_docs)) if in_docs else default_namespace))


def prepare(
    docs: list[dict[str, Any]], namespace: str | None, default_namespace: str
) -> tuple[list[dict[str, Any]], str, str]:
    """Checked documents in apply order, the namespace they all go to, and the InferenceService's name.

    Server-owned fields (resourceVersion, uid, status, ...) are dropped so that `kubectl get -o yaml` output can
    be applied again. Raises DeployError for anything deploy would not apply.
    """
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
    target = _target_namespace(docs, namespace, default_namespace)
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


def render_layout(
    layout: Path,
    *,
    name: str | None,
    storage_uri: str | None,
    namespace: str,
    render_options: Mapping[str, Any] | None,
) -> list[dict[str, Any]]:
    """The documents ``render`` makes of a layout folder (its RenderError, SpecError, LayoutError pass through)."""
    try:
        from .._render import render  # imported here: deploying manifests must not depend on the renderer
    except ImportError as exc:  # pragma: no cover - present in every install that has this module
        raise DeployError(
            "this installation cannot render manifests from a layout", hint="deploy a manifest file instead"
        ) from exc
    manifests = render(layout, name=name, storage_uri=storage_uri, namespace=namespace, **dict(render_options or {}))
    return load_manifests(manifests)
