"""deploy with a ServingRuntime: applied before the InferenceService that selects it, through the stand-in API server,
from rendered Manifests, a manifest file, a LAYOUT and the CLI."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner
from k8s_support import NAMESPACE, Frame, StandInApiServer, isvc_manifest, ready_status
from test_deploy_layout import make_layout

from toolkit import DeployError
from toolkit._cli import cli
from toolkit._deploy import deploy
from toolkit._render import render

IMAGE = "ghcr.io/team/mar-build-runtime:1.0"
RUNTIME_PATH = f"/apis/serving.kserve.io/v1alpha1/namespaces/{NAMESPACE}/servingruntimes"
ISVC_PATH = f"/apis/serving.kserve.io/v1beta1/namespaces/{NAMESPACE}/inferenceservices"


def _applies(standin: StandInApiServer) -> list[Any]:
    return [r for r in standin.requests if r.method == "PATCH"]


def _python_manifests(layout: Path):
    return render(layout, name="bert", namespace=NAMESPACE, storage_uri="pvc://leeway/bert", runtime="python",
                  image=IMAGE)


def test_the_serving_runtime_is_applied_before_the_isvc(standin: StandInApiServer, api_client: Any, tmp_path: Path):
    manifests = _python_manifests(make_layout(tmp_path / "layout"))
    standin.frames = [Frame(status=ready_status("bert"))]
    result = deploy(manifests, api_client=api_client, poll_interval=0.01)
    assert result.ready
    assert result.applied == ("ServingRuntime/bert-mar-build created", "InferenceService/bert created")
    applies = _applies(standin)
    assert [r.path for r in applies] == [f"{RUNTIME_PATH}/bert-mar-build", f"{ISVC_PATH}/bert"]
    for r in applies:  # server-side apply, as for every other kind
        assert r.headers["content-type"] == "application/apply-patch+yaml"
        assert r.query["fieldManager"] == ["mar-build"] and r.query["force"] == ["true"]
    assert [r.json() for r in applies] == manifests.documents
    stored = standin.serving_runtime("bert-mar-build")
    assert stored is not None and stored["spec"] == manifests.documents[0]["spec"]
    # Applying again configures both.
    again = deploy(manifests, api_client=api_client, wait=False)
    assert again.applied == ("ServingRuntime/bert-mar-build configured", "InferenceService/bert configured")


def test_a_manifest_file_is_put_in_apply_order(standin: StandInApiServer, api_client: Any, tmp_path: Path):
    runtime, isvc = render(name="ts", namespace=NAMESPACE, storage_uri="pvc://x", serving_runtime=True).documents
    path = tmp_path / "isvc.yaml"
    path.write_text(yaml.safe_dump_all([isvc, runtime], sort_keys=False), encoding="utf-8")  # the ISVC first
    deploy(path, api_client=api_client, wait=False)
    assert [r.path for r in _applies(standin)] == [f"{RUNTIME_PATH}/ts-torchserve", f"{ISVC_PATH}/ts"]


def test_deploy_layout_with_the_python_runtime(standin: StandInApiServer, api_client: Any, tmp_path: Path):
    layout = make_layout(tmp_path / "layout")
    deploy(layout, name="bert", storage_uri="pvc://leeway/bert", namespace=NAMESPACE, api_client=api_client,
           wait=False, render_options={"runtime": "python", "image": IMAGE})
    assert [r.json() for r in _applies(standin)] == _python_manifests(layout).all_documents()


def test_cli_deploy_layout_passes_the_runtime_options(standin: StandInApiServer, kubeconfig: Path, tmp_path: Path):
    layout = make_layout(tmp_path / "layout")
    args = ["deploy", str(layout), "--name", "bert", "--storage-uri", "pvc://leeway/bert", "--kubeconfig",
            str(kubeconfig), "--no-wait"]
    result = CliRunner().invoke(cli, [*args, "--runtime", "python", "--image", IMAGE], env={"KUBECONFIG": None})
    assert result.exit_code == 0, result.output
    assert f"applied ServingRuntime/bert-mar-build created in namespace {NAMESPACE}" in result.stderr
    assert [r.json() for r in _applies(standin)] == _python_manifests(layout).all_documents()

    standin.requests.clear()
    result = CliRunner().invoke(cli, [*args, "--serving-runtime"], env={"KUBECONFIG": None})
    assert result.exit_code == 0, result.output
    sent = [r.json() for r in _applies(standin)]
    assert [d["kind"] for d in sent] == ["ServingRuntime", "InferenceService"]
    assert sent[0]["spec"]["containers"][0]["image"] == "pytorch/torchserve-kfs:0.9.0"

    result = CliRunner().invoke(cli, [*args, "--runtime", "python"], env={"KUBECONFIG": None})
    assert result.exit_code == 1 and "runtime python needs the image" in result.stderr


def test_a_serving_runtime_of_another_version_is_refused(standin: StandInApiServer, api_client: Any):
    runtime = {"apiVersion": "serving.kserve.io/v1beta1", "kind": "ServingRuntime", "metadata": {"name": "r"}}
    with pytest.raises(DeployError, match="use apiVersion: serving.kserve.io/v1alpha1"):
        deploy([runtime, isvc_manifest()], api_client=api_client, wait=False)
    assert standin.requests == []


def test_a_cluster_without_the_serving_runtime_type_is_named(
    standin: StandInApiServer, api_client: Any, tmp_path: Path
):
    standin.serving_runtimes_installed = False
    with pytest.raises(DeployError, match="no serving.kserve.io/v1alpha1 ServingRuntime type"):
        deploy(_python_manifests(make_layout(tmp_path / "layout")), api_client=api_client, wait=False)
    assert standin.isvc("bert") is None  # the InferenceService would only wait for a runtime that never comes


def test_forbidden_serving_runtime_names_the_missing_permission(
    standin: StandInApiServer, api_client: Any, tmp_path: Path
):
    standin.forbid.add(("patch", "servingruntimes"))
    with pytest.raises(DeployError) as info:
        deploy(_python_manifests(make_layout(tmp_path / "layout")), api_client=api_client, wait=False)
    assert "forbidden" in info.value.message
    assert info.value.hint is not None
    assert "kubectl auth can-i patch servingruntimes.serving.kserve.io" in info.value.hint
