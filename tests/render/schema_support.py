"""The schemas every rendered manifest is validated against: the CRDs in tests/schemas, kubernetes-validate.

A missing schema fails the test that needs it (never a skip): the copies live in the repository, so every clone
validates.
"""

from __future__ import annotations

import copy
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml

# Copies of the upstream CRDs, in the repository: tests/schemas/README.md says where each came from.
SCHEMAS = Path(__file__).resolve().parents[1] / "schemas"
# kind -> (the CRD file under tests/schemas, the version rendered). A ClusterServingRuntime has the schema of a
# ServingRuntime (kserve/kserve pkg/apis/serving/v1alpha1/servingruntime_types.go: one spec type for both).
CRDS = {
    "InferenceService": ("kserve/serving.kserve.io_inferenceservices.yaml", "v1beta1"),
    "ServingRuntime": ("kserve/serving.kserve.io_servingruntimes.yaml", "v1alpha1"),
    "ClusterServingRuntime": ("kserve/serving.kserve.io_servingruntimes.yaml", "v1alpha1"),
    "PodMonitor": ("prometheus-operator/monitoring.coreos.com_podmonitors.yaml", "v1"),
    "ServiceMonitor": ("prometheus-operator/monitoring.coreos.com_servicemonitors.yaml", "v1"),
    "PrometheusRule": ("prometheus-operator/monitoring.coreos.com_prometheusrules.yaml", "v1"),
}
# kubernetes-validate ships schemas for 1.25 .. 1.37: check the core kinds against the oldest and the newest,
# strict (unknown fields are errors), so a manifest works on every cluster in between.
K8S_VERSIONS = ("1.25.0", "1.37.0")


def _closed(schema: Any) -> Any:
    """The CRD schema with unknown fields made errors (the API server would silently prune them)."""
    if isinstance(schema, dict):
        out = {k: _closed(v) for k, v in schema.items()}
        if ("properties" in out and "additionalProperties" not in out
                and not out.get("x-kubernetes-preserve-unknown-fields")):
            out["additionalProperties"] = False
        return out
    if isinstance(schema, list):
        return [_closed(v) for v in schema]
    return schema


def schema_path(kind: str) -> Path:
    """The CRD file for ``kind``; a FAILURE (never a skip) when it is missing, so that no clone skips validation."""
    path = SCHEMAS / CRDS[kind][0]
    if not path.is_file():
        pytest.fail(f"schema {path} is missing: copy it unchanged from upstream (see {SCHEMAS / 'README.md'})")
    return path


@cache
def crd_validator(kind: str) -> Any:
    """A Draft 7 validator for ``kind`` from its CRD, with unknown fields made errors."""
    import jsonschema

    relpath, served = CRDS[kind]
    # 2 MB of YAML for the InferenceService: the C loader reads it in about 2 s, the pure-Python one in 12.
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    crd = yaml.load(schema_path(kind).read_text(encoding="utf-8"), Loader=loader)
    version = next(v for v in crd["spec"]["versions"] if v["name"] == served)
    schema = _closed(copy.deepcopy(version["schema"]["openAPIV3Schema"]))
    return jsonschema.Draft7Validator(schema)


def validate_document(document: dict[str, Any]) -> None:
    """Validate one manifest: a custom resource against its CRD, core kinds with kubernetes-validate."""
    if document["kind"] in CRDS:
        errors = sorted(crd_validator(document["kind"]).iter_errors(document), key=lambda e: list(e.path))
        assert not errors, "\n".join(f"{'.'.join(map(str, e.path))}: {e.message}" for e in errors)
        return
    import kubernetes_validate

    for version in K8S_VERSIONS:
        kubernetes_validate.validate(document, version, strict=True)


def validate_all(documents: list[dict[str, Any]]) -> None:
    for document in documents:
        validate_document(document)
