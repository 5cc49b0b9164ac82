"""Manifests deploy takes (files, `kubectl get -o yaml` output, dicts) and those it refuses before anything is sent."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from k8s_support import StandInApiServer, isvc_manifest, s3_companions

from toolkit import DeployError, SpecError
from toolkit._deploy import deploy

FAST = {"poll_interval": 0.01}


def _write(path: Path, docs: list[dict[str, Any]]) -> Path:
    path.write_text(yaml.safe_dump_all(docs, sort_keys=False), encoding="utf-8")
    return path


def _applies(standin: StandInApiServer) -> list[Any]:
    return [r for r in standin.requests if r.method == "PATCH"]


# -- manifests that cannot be deployed: refused before anything is sent --------------------------------------------
@pytest.mark.parametrize(
    ("docs", "namespace", "message"),
    [
        ([{"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "x"}}], None, "deploy applies"),
        ([isvc_manifest("a"), isvc_manifest("b")], None, "exactly one InferenceService among the manifests, found 2"),
        ([s3_companions()[0]], None, "found 0"),
        ([isvc_manifest()], "other-ns", "but namespace other-ns was asked for"),
        (
            [isvc_manifest() | {"apiVersion": "serving.kserve.io/v1alpha1"}],
            None,
            "apiVersion 'serving.kserve.io/v1alpha1'",
        ),
        ([{"apiVersion": "v1", "kind": "Secret", "metadata": {}}, isvc_manifest()], None, "metadata.name is missing"),
    ],
)
def test_bad_manifests_are_refused_before_any_request(
    standin: StandInApiServer, api_client: Any, docs: list[dict[str, Any]], namespace: str | None, message: str
):
    with pytest.raises(DeployError, match=message.replace("(", r"\(").replace(")", r"\)")):
        deploy(docs, namespace=namespace, api_client=api_client, **FAST)
    assert standin.requests == []


def test_invalid_isvc_name_is_a_spec_error(standin: StandInApiServer, api_client: Any):
    with pytest.raises(SpecError, match="not a valid InferenceService name"):
        deploy(isvc_manifest("Torch_Serve"), api_client=api_client)
    assert standin.requests == []


def test_manifest_file_from_kubectl_get_is_cleaned_before_apply(
    standin: StandInApiServer, api_client: Any, tmp_path: Path
):
    got = isvc_manifest()
    got["metadata"].update(resourceVersion="42", uid="abc", managedFields=[{"manager": "kubectl"}], generation=3)
    got["status"] = {"url": "http://old"}
    manifest = _write(tmp_path / "list.yaml", [{"apiVersion": "v1", "kind": "List", "items": [got]}])
    deploy(manifest, api_client=api_client, wait=False)
    sent = _applies(standin)[0].json()
    assert sent == isvc_manifest()


def test_manifest_namespace_defaults_to_the_clusters(standin: StandInApiServer, api_client: Any):
    doc = isvc_manifest()
    del doc["metadata"]["namespace"]
    result = deploy(doc, api_client=api_client, wait=False)
    assert result.namespace == "default"
    assert _applies(standin)[0].path.startswith("/apis/serving.kserve.io/v1beta1/namespaces/default/")
    assert _applies(standin)[0].json()["metadata"]["namespace"] == "default"
