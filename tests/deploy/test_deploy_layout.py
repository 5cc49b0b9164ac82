"""deploy LAYOUT: render the manifests of a layout folder and apply exactly those."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from k8s_support import NAMESPACE, Frame, StandInApiServer, ready_status

from toolkit._cli import cli
from toolkit._deploy import deploy
from toolkit._errors import RenderError
from toolkit._render import render


def make_layout(root: Path) -> Path:
    """A hand-made layout serving model 'bert' as the hand workflow's PVC does: model_snapshot key bert, version 1.0,
    minWorkers 1, maxWorkers 5, batchSize 1, maxBatchDelay 5000, responseTimeout 120, inference on port 8085."""
    (root / "config").mkdir(parents=True)
    (root / "model-store").mkdir()
    snapshot = {
        "name": "startup.cfg",
        "modelCount": 1,
        "models": {
            "bert": {
                "1.0": {
                    "defaultVersion": True,
                    "marName": "bert.mar",
                    "minWorkers": 1,
                    "maxWorkers": 5,
                    "batchSize": 1,
                    "maxBatchDelay": 5000,
                    "responseTimeout": 120,
                }
            }
        },
    }
    (root / "config" / "config.properties").write_text(
        "inference_address=http://0.0.0.0:8085\nmanagement_address=http://0.0.0.0:8081\ngrpc_inference_port=7070\n"
        "model_store=/mnt/models/model-store\nmodel_snapshot=" + json.dumps(snapshot, separators=(",", ":")) + "\n",
        encoding="utf-8",
    )
    manifest = {"runtime": "python", "model": {"modelName": "bert", "modelVersion": "1.0", "handler": "h.py"}}
    with zipfile.ZipFile(root / "model-store" / "bert.mar", "w") as zf:
        zf.writestr("MAR-INF/MANIFEST.json", json.dumps(manifest))
        zf.writestr("h.py", "# handler\n")
    return root


def _sent_isvc(standin: StandInApiServer) -> dict[str, Any]:
    (patch,) = [r for r in standin.requests if r.method == "PATCH"]
    return patch.json()


def test_deploy_layout_applies_what_render_renders(standin: StandInApiServer, api_client: Any, tmp_path: Path):
    layout = make_layout(tmp_path / "layout")
    standin.frames = [Frame(status=ready_status("torchserve"))]
    result = deploy(
        layout,
        name="torchserve",
        storage_uri="pvc://leeway/bert",
        namespace=NAMESPACE,
        api_client=api_client,
        poll_interval=0.01,
    )
    assert result.ready and result.url == f"http://torchserve.{NAMESPACE}.example.com"
    expected = render(layout, name="torchserve", storage_uri="pvc://leeway/bert", namespace=NAMESPACE)
    assert [_sent_isvc(standin)] == expected.all_documents()


def test_deploy_layout_passes_render_options(standin: StandInApiServer, api_client: Any, tmp_path: Path):
    layout = make_layout(tmp_path / "layout")
    deploy(
        layout,
        name="torchserve",
        storage_uri="pvc://leeway/bert",
        api_client=api_client,
        wait=False,
        render_options={"limits": {"memory": "4Gi"}, "runtime_version": "0.12.0"},
    )
    model = _sent_isvc(standin)["spec"]["predictor"]["model"]
    assert model["resources"]["limits"]["memory"] == "4Gi"
    assert model["runtimeVersion"] == "0.12.0"
    assert _sent_isvc(standin)["metadata"]["namespace"] == "default"  # the cluster's default namespace


def test_render_errors_surface_unchanged(standin: StandInApiServer, api_client: Any, tmp_path: Path):
    layout = make_layout(tmp_path / "layout")
    with pytest.raises(RenderError):
        deploy(layout, name="torchserve", storage_uri="ftp://nowhere/x", api_client=api_client, wait=False)
    assert standin.requests == []


def test_cli_deploy_layout(standin: StandInApiServer, kubeconfig: Path, tmp_path: Path):
    layout = make_layout(tmp_path / "layout")
    result = CliRunner().invoke(
        cli,
        [
            "deploy",
            str(layout),
            "--name",
            "torchserve",
            "--storage-uri",
            "pvc://leeway/bert",
            "--kubeconfig",
            str(kubeconfig),
            "--no-wait",
        ],
        env={"KUBECONFIG": None},
    )
    assert result.exit_code == 0, result.output
    assert result.stdout == f"applied; follow it with: mar-build status torchserve -n {NAMESPACE}\n"
    expected = render(layout, name="torchserve", storage_uri="pvc://leeway/bert", namespace=NAMESPACE)
    assert [_sent_isvc(standin)] == expected.all_documents()


@pytest.mark.parametrize(
    ("args", "field", "value"),
    [
        (["--runtime-version", "0.12.0"], "runtimeVersion", "0.12.0"),
        (["--image", "ghcr.io/team/bert-torchserve:1.0"], "image", "ghcr.io/team/bert-torchserve:1.0"),
    ],
)
def test_cli_deploy_layout_passes_the_runtime_version_and_image(
    standin: StandInApiServer, kubeconfig: Path, tmp_path: Path, args: list[str], field: str, value: str
):
    layout = make_layout(tmp_path / "layout")
    result = CliRunner().invoke(
        cli, ["deploy", str(layout), "--name", "torchserve", "--storage-uri", "pvc://leeway/bert",
              "--kubeconfig", str(kubeconfig), "--no-wait", *args],
        env={"KUBECONFIG": None},
    )
    assert result.exit_code == 0, result.output
    model = _sent_isvc(standin)["spec"]["predictor"]["model"]
    assert model[field] == value and "runtime" not in model  # KServe's own kserve-torchserve runs it
