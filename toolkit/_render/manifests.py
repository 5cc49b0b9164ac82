"""What render() returns: the manifests (parsed documents and their text) and where to call each model."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from .._errors import RenderError, TemplateError
from .._files import PRIVATE_FILE, PUBLIC_FILE, write_atomic


@dataclass(frozen=True)
class Endpoint:
    """Where a client calls one model of the InferenceService."""

    model: str  # the model_snapshot key: the name in the URL
    path: str  # /v1/models/MODEL:predict
    host: str  # the Host header through the ingress gateway: NAME.NAMESPACE.example.com by default
    cluster_url: str  # the same call from inside the cluster (a notebook)

    def to_dict(self) -> dict[str, Any]:
        return {"model": self.model, "path": self.path, "host": self.host, "cluster_url": self.cluster_url}


@dataclass(frozen=True, repr=False)
class Manifests:
    """Rendered manifests: ``documents`` (parsed, in apply order) and ``text`` (the same, as multi-document YAML).

    Apply order: Secret, ServiceAccount, PersistentVolumeClaim, ServingRuntime, InferenceService (last, always). A
    Secret that holds S3 keys is never part of ``documents``/``text``: it is ``secret``, a Manifests of its own,
    written only on purpose (``manifests.secret.write(FILE)``, mode 0600). ``all_documents()`` is everything to
    apply through the API.
    """

    documents: list[dict[str, Any]]
    text: str
    secret: Manifests | None = None
    endpoints: tuple[Endpoint, ...] = ()

    def __repr__(self) -> str:
        # No values: a notebook that displays the object must not show the keys of a Secret.
        names = ", ".join(f"{d.get('kind')}/{d.get('metadata', {}).get('name')}" for d in self.documents)
        extra = ", secret=<Secret with keys, not shown>" if self.secret is not None else ""
        return f"Manifests([{names}]{extra})"

    def all_documents(self) -> list[dict[str, Any]]:
        """Every document in apply order, the keyed Secret first: for applying through the API, not for files."""
        return (self.secret.documents if self.secret is not None else []) + self.documents

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able dict: the documents, the endpoints, and the keyed Secret by name only (never its keys)."""
        secret = None
        if self.secret is not None:
            meta = self.secret.documents[0].get("metadata", {})
            secret = {"kind": "Secret", "name": meta.get("name"), "namespace": meta.get("namespace"),
                      "holds_keys": True}
        return {
            "documents": self.documents,
            "endpoints": [e.to_dict() for e in self.endpoints],
            "secret": secret,
        }

    def write(self, path: str | Path) -> Path:
        """Write ``text`` to ``path`` atomically (temp file + os.replace); return the path.

        A file holding a Secret with data is created with mode 0600 from the start; others get 0644.
        Raises RenderError when the path is a folder or its folder does not exist.
        """
        target = Path(path)
        if target.is_dir():
            raise RenderError(f"{target} is a folder", hint="give a file name, e.g. isvc.yaml")
        if not target.parent.is_dir():
            raise RenderError(f"{target.parent} does not exist", hint="create the folder first")
        # The temp file is 0600 from its creation, so keys are never readable by others, not even for a moment.
        mode = PRIVATE_FILE if _holds_secret_data(self.documents) else PUBLIC_FILE
        return write_atomic(target, self.text, mode=mode)


def _holds_secret_data(documents: Iterable[Mapping[str, Any]]) -> bool:
    return any(
        any((d.get("stringData") or {}).values()) or any((d.get("data") or {}).values())
        for d in documents
        if d.get("kind") == "Secret"
    )


def parse_documents(texts: Sequence[str]) -> Manifests:
    """The rendered texts joined into one multi-document YAML and parsed back: what is written is what is applied."""
    text = "---\n".join(texts)
    try:
        documents = list(yaml.safe_load_all(text))
    except yaml.YAMLError as exc:  # a template bug: values cannot break the YAML
        raise TemplateError(f"rendered text is not valid YAML: {exc}", template="*.yaml.jinja") from exc
    if len(documents) != len(texts) or not all(isinstance(d, dict) for d in documents):
        raise TemplateError("rendered text does not hold one mapping per manifest", template="*.yaml.jinja")
    return Manifests(documents=documents, text=text)


def check_written(
    isvc: dict[str, Any], *, name: str, labels: Mapping[str, str], annotations: Mapping[str, str], uri: str,
    env: Sequence[tuple[str, str]], runtime: str | None = None, runtime_document: dict[str, Any] | None = None,
) -> None:
    """Raise TemplateError unless the InferenceService (and the ServingRuntime it selects, when rendered) reads
    back with exactly the values it was rendered from."""
    meta = isvc.get("metadata", {})
    model = isvc["spec"]["predictor"]["model"]
    written = (meta.get("name"), meta.get("labels", {}), meta.get("annotations", {}), model.get("storageUri"),
               [(e.get("name"), e.get("value")) for e in model.get("env", [])], model.get("runtime"))
    if written != (name, dict(labels), dict(annotations), uri, list(env), runtime):
        raise TemplateError(
            "the InferenceService does not read back as rendered", template="inferenceservice.yaml.jinja"
        )
    if runtime_document is not None and (
        runtime_document.get("kind"), runtime_document.get("metadata", {}).get("name")
    ) != ("ServingRuntime", runtime):
        raise TemplateError("the ServingRuntime does not read back as rendered", template="servingruntime.yaml.jinja")


def endpoint(model: str, name: str, namespace: str | None, protocol: str) -> Endpoint:
    """Where ``model`` of InferenceService ``name`` answers, through the gateway and inside the cluster."""
    ns = namespace or "NAMESPACE"
    path = {"v2": f"/v2/models/{model}/infer", "grpc-v2": "/inference.GRPCInferenceService/ModelInfer"}.get(
        protocol, f"/v1/models/{model}:predict")
    return Endpoint(
        model=model, path=path, host=f"{name}.{ns}.example.com",
        cluster_url=f"http://{name}-predictor.{ns}.svc.cluster.local{path}",
    )
