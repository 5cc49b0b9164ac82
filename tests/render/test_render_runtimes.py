"""render(runtime=..., serving_runtime=...): the ServingRuntime render brings and the InferenceService that selects
it, validated against the CRDs, golden, and checked the way KServe's controller matches a runtime to a model."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import pytest
import yaml
from schema_support import SCHEMAS

from toolkit import KServeSettings
from toolkit._errors import RenderError
from toolkit._render import RUNTIMES, render
from toolkit._render.runtimes import PYTHON_ARGS, PYTHON_COMMAND

IMAGE = "ghcr.io/team/mar-build-runtime:1.0"
NS = "kubeflow-user-example-com"


def python_runtime(layout: Path, **options: Any):
    return render(layout, name="bert", namespace=NS, storage_uri="pvc://leeway/bert", runtime="python",
                  image=IMAGE, **options)


def kserve_selects(runtime: dict[str, Any], isvc: dict[str, Any]) -> None:
    """What KServe's predictor reconciler checks before it uses the runtime an InferenceService names
    (IsProtocolVersionSupported, RuntimeSupportsModel; the namespaced runtime is looked up first)."""
    model = isvc["spec"]["predictor"]["model"]
    assert model["runtime"] == runtime["metadata"]["name"]
    assert runtime["metadata"]["namespace"] == isvc["metadata"]["namespace"]
    assert model["protocolVersion"] in runtime["spec"]["protocolVersions"]
    formats = [f["name"] for f in runtime["spec"]["supportedModelFormats"]]
    assert model["modelFormat"]["name"] in formats
    # Not picked up by other InferenceServices of the namespace by their model format.
    assert all(f["autoSelect"] is False for f in runtime["spec"]["supportedModelFormats"])


def container(runtime: dict[str, Any]) -> dict[str, Any]:
    [kserve_container] = runtime["spec"]["containers"]
    assert kserve_container["name"] == "kserve-container"  # the container KServe merges the predictor into
    return kserve_container


# --------------------------------------------------------------------------------------------------------------
# python: mar-build's own runtime


def test_python_runtime_and_the_isvc_that_selects_it(hand_layout, golden, validate, caplog):
    with caplog.at_level(logging.WARNING, logger="toolkit.render"):
        manifests = python_runtime(hand_layout, protocol="v2", prometheus=True,
                                   limits={"cpu": "2", "memory": "2Gi"}, requests={"cpu": "0.5", "memory": "0.5Gi"})
    # v2 is the runtime's own protocol: nothing to warn about (the preflight's findings are its own logger's)
    assert not [r for r in caplog.records if r.name != "toolkit.render.preflight"]
    golden("render/python_runtime.yaml", manifests.text)
    validate(manifests.documents)
    runtime, isvc = manifests.documents
    assert [runtime["kind"], isvc["kind"]] == ["ServingRuntime", "InferenceService"]  # the runtime first
    assert runtime["apiVersion"] == "serving.kserve.io/v1alpha1"
    kserve_selects(runtime, isvc)
    assert runtime["metadata"]["name"] == "bert-mar-build"
    assert isvc["spec"]["predictor"]["model"]["modelFormat"] == {"name": "mar-build"}
    assert runtime["spec"]["supportedModelFormats"] == [{"name": "mar-build", "version": "1", "autoSelect": False}]
    assert runtime["spec"]["protocolVersions"] == ["v1", "v2"]
    assert runtime["spec"]["annotations"] == {
        "prometheus.kserve.io/port": "8080", "prometheus.kserve.io/path": "/metrics",
    }
    # The layout's TorchServe metrics port (8082) means nothing to this runtime: no override on the ISVC.
    assert isvc["metadata"]["annotations"] == {"serving.kserve.io/enable-prometheus-scraping": "true"}
    c = container(runtime)
    assert c["image"] == IMAGE
    assert c["command"] + c["args"] == [
        "python", "-m", "toolkit._runtime", "--layout", "/mnt/models", "--http-port", "8080", "--host", "0.0.0.0",
    ]
    assert c["ports"] == [{"containerPort": 8080, "protocol": "TCP"}]
    assert c["readinessProbe"] == {"httpGet": {"path": "/v2/health/ready", "port": 8080}}
    assert c["securityContext"] == {
        "runAsUser": 1000, "allowPrivilegeEscalation": False, "privileged": False, "runAsNonRoot": True,
        "capabilities": {"drop": ["ALL"]},
    }
    assert c["resources"] == {"requests": {"cpu": "1", "memory": "2Gi"}, "limits": {"cpu": "1", "memory": "2Gi"}}
    assert c["env"] == [{"name": "TS_SERVICE_ENVELOPE", "value": "kservev2"}]
    # The predictor's own resources and thread budget are the InferenceService's, as with TorchServe.
    model = isvc["spec"]["predictor"]["model"]
    assert model["resources"] == {
        "limits": {"cpu": "2", "memory": "2Gi"}, "requests": {"cpu": "0.5", "memory": "0.5Gi"},
    }
    assert model["env"] == [{"name": "MAR_BUILD_THREADS", "value": "2"}]
    assert "runtimeVersion" not in model
    assert [e.path for e in manifests.endpoints] == ["/v2/models/bert/infer"]


def test_the_container_runs_the_runtimes_own_entry_point():
    from toolkit._runtime.__main__ import parse_args  # python -m toolkit._runtime's own parser

    args = parse_args(list(PYTHON_ARGS))
    assert PYTHON_COMMAND == ("python", "-m", "toolkit._runtime")
    assert (args.layout, args.http_port, args.host) == (Path("/mnt/models"), 8080, "0.0.0.0")


def test_python_runtime_v1_envelope_and_to_dict(hand_layout):
    manifests = python_runtime(hand_layout)
    runtime, isvc = manifests.documents
    assert container(runtime)["env"] == [{"name": "TS_SERVICE_ENVELOPE", "value": "kserve"}]
    assert isvc["spec"]["predictor"]["model"]["protocolVersion"] == "v1"
    data = json.loads(json.dumps(manifests.to_dict()))
    assert [d["kind"] for d in data["documents"]] == ["ServingRuntime", "InferenceService"]
    assert data["documents"] == manifests.documents
    assert list(yaml.safe_load_all(manifests.text)) == manifests.documents


def test_python_runtime_for_grpc_v2_routes_to_its_h2c_port(hand_layout, validate):
    """protocolVersion grpc-v2: the runtime serves gRPC v2 on 8081 and declares that port alone, named h2c (KServe
    routes the container's first port, as HTTP/2 by that name); readiness is still asked over HTTP."""
    from toolkit._runtime.__main__ import parse_args

    manifests = python_runtime(hand_layout, protocol="grpc-v2")
    validate(manifests.documents)
    runtime, isvc = manifests.documents
    kserve_selects(runtime, isvc)
    assert isvc["spec"]["predictor"]["model"]["protocolVersion"] == "grpc-v2"
    assert runtime["spec"]["protocolVersions"] == ["v1", "v2", "grpc-v2"]
    c = container(runtime)
    assert c["args"][-2:] == ["--grpc-port", "8081"] and parse_args(c["args"]).grpc_port == 8081
    assert c["ports"] == [{"name": "h2c", "containerPort": 8081, "protocol": "TCP"}]
    assert c["readinessProbe"] == {"httpGet": {"path": "/v2/health/ready", "port": 8080}}
    assert c["env"] == [{"name": "TS_SERVICE_ENVELOPE", "value": "kservev2"}]
    assert [e.path for e in manifests.endpoints] == ["/inference.GRPCInferenceService/ModelInfer"]
    # v1 and v2 keep the HTTP port, and no gRPC server
    plain = container(python_runtime(hand_layout, protocol="v2").documents[0])
    assert "--grpc-port" not in plain["args"] and plain["ports"] == [{"containerPort": 8080, "protocol": "TCP"}]


def test_grpc_v2_is_refused_for_torchserve(hand_layout):
    with pytest.raises(RenderError) as info:
        render(hand_layout, name="bert", storage_uri="pvc://leeway/bert", protocol="grpc-v2")
    assert "python runtime only" in info.value.message and "--runtime python" in (info.value.hint or "")


def test_python_runtime_comes_after_the_storage_access_manifests(hand_layout, validate):
    from toolkit._render import PvcRequest

    manifests = python_runtime(hand_layout, pvc=PvcRequest("10Gi"))
    assert [d["kind"] for d in manifests.documents] == ["PersistentVolumeClaim", "ServingRuntime", "InferenceService"]
    validate(manifests.documents)


def test_python_runtime_needs_an_image(hand_layout):
    with pytest.raises(RenderError, match="runtime python needs the image") as info:
        render(hand_layout, name="bert", storage_uri="pvc://leeway/bert", runtime="python")
    assert info.value.hint is not None and "--image" in info.value.hint


@pytest.mark.parametrize(
    ("image", "warned"),
    [
        ("ghcr.io/team/runtime:1.0", False),
        ("localhost:5000/runtime:v2", False),
        ("team/runtime:1.0", False),  # Docker Hub, as Kubernetes reads it
        ("runtime:1.0", False),  # Docker Hub's library/
        ("ghcr.io/team/runtime@sha256:" + "a" * 64, False),
        ("ghcr.io/team/runtime", True),
        ("ghcr.io/team/runtime:latest", True),
        ("team/runtime", True),
    ],
)
def test_an_image_without_a_fixed_tag_warns(hand_layout, caplog, image, warned):
    with caplog.at_level(logging.WARNING, logger="toolkit.render"):
        manifests = render(hand_layout, name="bert", storage_uri="pvc://x", runtime="python", image=image)
    assert container(manifests.documents[0])["image"] == image  # written as given
    assert ("no fixed tag" in caplog.text) is warned


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"runtime": "triton"}, "runtime must be one of torchserve, python"),
        ({"runtime": "python", "image": "GHCR.io/Team/Runtime:1.0"}, "not a valid repository name"),
        ({"runtime": "python", "image": "ghcr.io/team/runtime:bad tag"}, "tag"),
        ({"runtime": "python", "image": ""}, "image must be an image reference"),
        ({"runtime": "python", "image": IMAGE, "runtime_version": "0.12.0"}, "drop --runtime-version"),
        ({"image": IMAGE, "runtime_version": "0.12.0"}, "give the tag in --image only"),
        ({"image": IMAGE, "serving_runtime": True, "runtime_version": "0.12.0"}, "give the tag in --image only"),
        ({"serving_runtime": "yes"}, "serving_runtime must be true or false"),
    ],
)
def test_runtime_errors_say_what_would_be_valid(hand_layout, options, message):
    with pytest.raises(RenderError) as info:
        render(hand_layout, name="bert", storage_uri="pvc://leeway/bert", **options)
    assert message in f"{info.value.message} {info.value.hint}"


def test_the_layouts_runtime_version_is_left_out_for_the_python_runtime(layout_factory, caplog):
    layout = layout_factory({"bert": KServeSettings(runtime_version="0.12.0")})
    with caplog.at_level(logging.WARNING, logger="toolkit.render"):
        isvc = render(layout, name="bert", storage_uri="pvc://x", runtime="python", image=IMAGE).documents[-1]
    assert "runtimeVersion" not in isvc["spec"]["predictor"]["model"]
    assert "runtime_version 0.12.0 from the layout's mar.yaml" in caplog.text
    # The TorchServe runtime keeps using it.
    assert render(layout, name="bert", storage_uri="pvc://x").documents[-1]["spec"]["predictor"]["model"][
        "runtimeVersion"] == "0.12.0"


def test_the_library_and_the_serve_room_name_the_same_runtimes():
    from toolkit._serve import RUNTIMES as SERVE_RUNTIMES

    assert RUNTIMES == SERVE_RUNTIMES == ("torchserve", "python")


# --------------------------------------------------------------------------------------------------------------
# torchserve: KServe's runtime, or a pinned copy of it that render brings


def _upstream_runtime() -> dict[str, Any]:
    return yaml.safe_load((SCHEMAS / "kserve" / "kserve-torchserve-runtime.yaml").read_text(encoding="utf-8"))


def test_pinned_torchserve_runtime_is_kserves_own_spec(hand_layout, golden, validate):
    manifests = render(
        hand_layout, name="torchserve", namespace=NS, storage_uri="pvc://leeway", serving_runtime=True,
        limits={"cpu": "2", "memory": "2Gi"}, requests={"cpu": "0.5", "memory": "0.5Gi"},
    )
    golden("render/torchserve_runtime.yaml", manifests.text)
    validate(manifests.documents)
    runtime, isvc = manifests.documents
    kserve_selects(runtime, isvc)
    assert runtime["metadata"]["name"] == "torchserve-torchserve"
    assert isvc["spec"]["predictor"]["model"]["modelFormat"] == {"name": "pytorch"}
    # The stock ClusterServingRuntime, with only what makes it a namespaced, pinned copy changed: the kind, the
    # name and labels, the image, autoSelect, and the two values KServe sets only for kserve-torchserve (the
    # envelope label its placeholder reads, the wrapper's PROTOCOL_VERSION), written out.
    upstream = _upstream_runtime()
    upstream["kind"] = "ServingRuntime"
    upstream["metadata"] = {
        "name": "torchserve-torchserve", "namespace": NS,
        "labels": {"app.kubernetes.io/managed-by": "mar-build", "app.kubernetes.io/part-of": "torchserve"},
        "annotations": upstream["metadata"]["annotations"],
    }
    upstream["spec"]["supportedModelFormats"] = [{"name": "pytorch", "version": "1", "autoSelect": False}]
    c = upstream["spec"]["containers"][0]
    c["image"] = "pytorch/torchserve-kfs:0.9.0"
    c["env"] = [{"name": "TS_SERVICE_ENVELOPE", "value": "kserve"}, {"name": "PROTOCOL_VERSION", "value": "v1"}]
    assert runtime == upstream


@pytest.mark.parametrize(
    ("options", "image"),
    [
        ({}, "pytorch/torchserve-kfs:0.9.0"),
        ({"gpu": 1}, "pytorch/torchserve-kfs:0.9.0-gpu"),  # KServe appends -gpu only for kserve-torchserve itself
        ({"runtime_version": "0.12.0"}, "pytorch/torchserve-kfs:0.12.0"),
        ({"runtime_version": "0.12.0-gpu", "gpu": 1}, "pytorch/torchserve-kfs:0.12.0-gpu"),
        ({"image": "registry.example.com/mirror/torchserve-kfs:0.12.0"},
         "registry.example.com/mirror/torchserve-kfs:0.12.0"),
    ],
)
def test_pinned_torchserve_image(hand_layout, validate, options, image):
    manifests = render(hand_layout, name="ts", namespace="ns", storage_uri="pvc://x", serving_runtime=True, **options)
    validate(manifests.documents)
    runtime, isvc = manifests.documents
    assert container(runtime)["image"] == image
    # A runtimeVersion KServe would put on the image is the same tag the runtime pins.
    version = isvc["spec"]["predictor"]["model"].get("runtimeVersion")
    assert version is None or image.endswith(":" + version)


def test_pinned_torchserve_v2_sets_the_v2_envelope_and_still_warns(hand_layout, caplog):
    with caplog.at_level(logging.WARNING, logger="toolkit.render"):
        runtime, isvc = render(hand_layout, name="ts", storage_uri="pvc://x", serving_runtime=True,
                               protocol="v2").documents
    assert "protocol v2" in caplog.text  # as without a ServingRuntime: the TorchServe path's v2 is decided apart
    assert container(runtime)["env"] == [
        {"name": "TS_SERVICE_ENVELOPE", "value": "kservev2"}, {"name": "PROTOCOL_VERSION", "value": "v2"},
    ]
    assert isvc["spec"]["predictor"]["model"]["protocolVersion"] == "v2"


def test_without_serving_runtime_the_isvc_stays_kserves_own(hand_layout):
    [isvc] = render(hand_layout, name="ts", storage_uri="pvc://x", runtime="torchserve").documents
    assert "runtime" not in isvc["spec"]["predictor"]["model"]
    assert isvc["spec"]["predictor"]["model"]["modelFormat"] == {"name": "pytorch"}


def test_prometheus_port_override_follows_the_pinned_runtime(layout_factory):
    layout = layout_factory({"bert": None}, metrics_port=9090)
    runtime, isvc = render(layout, name="ts", storage_uri="pvc://x", serving_runtime=True, prometheus=True).documents
    assert runtime["spec"]["annotations"]["prometheus.kserve.io/port"] == "8082"
    assert isvc["metadata"]["annotations"]["prometheus.kserve.io/port"] == "9090"
