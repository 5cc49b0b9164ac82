"""The schemas in tests/schemas: present in every clone, loaded, and strict enough to catch a wrong manifest."""

from __future__ import annotations

from pathlib import Path

import pytest
import schema_support
import yaml
from schema_support import CRDS, SCHEMAS, crd_validator, schema_path, validate_document


@pytest.mark.parametrize("kind", sorted(CRDS))
def test_every_schema_is_in_the_repository_and_loads(kind):
    assert schema_path(kind).is_relative_to(SCHEMAS)
    assert crd_validator(kind) is not None


def test_the_readme_names_the_upstream_of_every_file():
    readme = (SCHEMAS / "README.md").read_text(encoding="utf-8")
    files = sorted(str(p.relative_to(SCHEMAS)) for p in SCHEMAS.rglob("*.yaml"))
    assert files and all(f"`{name}`" in readme for name in files), files


def test_the_torchserve_runtime_kserve_installs_validates():
    runtime = yaml.safe_load((SCHEMAS / "kserve" / "kserve-torchserve-runtime.yaml").read_text(encoding="utf-8"))
    assert runtime["kind"] == "ClusterServingRuntime"
    validate_document(runtime)
    runtime["spec"]["containers"][0]["arguments"] = ["--start"]  # a misspelt field is an error, not pruned
    with pytest.raises(AssertionError, match="arguments"):
        validate_document(runtime)


@pytest.mark.parametrize("kind", ["PodMonitor", "ServiceMonitor"])
def test_monitors_validate(kind):
    endpoints = "podMetricsEndpoints" if kind == "PodMonitor" else "endpoints"
    monitor = {
        "apiVersion": "monitoring.coreos.com/v1", "kind": kind, "metadata": {"name": "torchserve"},
        "spec": {"selector": {"matchLabels": {"serving.kserve.io/inferenceservice": "torchserve"}},
                 endpoints: [{"port": "metrics", "path": "/metrics"}]},
    }
    validate_document(monitor)
    monitor["spec"][endpoints][0]["interval"] = 30  # a string like "30s" in the CRD
    with pytest.raises(AssertionError, match="interval"):
        validate_document(monitor)


def test_a_missing_schema_fails_the_test_instead_of_skipping_it(monkeypatch, tmp_path: Path):
    monkeypatch.setattr(schema_support, "SCHEMAS", tmp_path)
    crd_validator.cache_clear()
    try:
        with pytest.raises(pytest.fail.Exception, match="is missing"):
            validate_document({"apiVersion": "serving.kserve.io/v1beta1", "kind": "InferenceService"})
    finally:
        crd_validator.cache_clear()
