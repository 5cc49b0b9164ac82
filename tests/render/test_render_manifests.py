"""render(): golden manifests, schema validation, defaults from the layout, and every bad input's error."""

from __future__ import annotations

import json
import logging
import stat
from pathlib import Path

import pytest
import yaml

from toolkit import KServeSettings, Resources
from toolkit._errors import LayoutError, RenderError, SpecError
from toolkit._render import Manifests, PvcRequest, S3Credentials, render

# What a KServe user writes by hand for the hand workflow (kept as they write it).
HAND_WRITTEN_ISVC = """
apiVersion: serving.kserve.io/v1beta1
kind: InferenceService
metadata:
  name: torchserve
  namespace: kubeflow-user-example-com
spec:
  predictor:
    model:
      modelFormat:
        name: pytorch
      protocolVersion: v1
      storageUri: pvc://leeway
      resources:
        limits:
          cpu: "2"
          memory: 2Gi
        requests:
          cpu: "0.5"
          memory: 0.5Gi
"""

FAKE_KEY_ID = "AKIAFAKEFAKEFAKE0001"
FAKE_SECRET = "fake/secret+key=NOT-REAL-0123456789abcd"


def hand_workflow(layout: Path) -> Manifests:
    return render(
        layout, name="torchserve", namespace="kubeflow-user-example-com", storage_uri="pvc://leeway",
        protocol="v1", limits={"cpu": "2", "memory": "2Gi"}, requests={"cpu": "0.5", "memory": "0.5Gi"},
    )


# --------------------------------------------------------------------------------------------------------------
# Golden manifests


def test_hand_workflow_matches_what_a_kserve_user_writes(hand_layout, golden, validate, caplog):
    with caplog.at_level(logging.WARNING, logger="toolkit.render"):
        manifests = hand_workflow(hand_layout)
    golden("render/hand_workflow.yaml", manifests.text)
    # What the user writes, and the thread budget: TorchServe starts minWorkers 1 on 2 CPUs, so two torch threads
    # (a hand-written handler ignores the variable; mar-build's handlers honour it). Nothing to warn about.
    expected = yaml.safe_load(HAND_WRITTEN_ISVC)
    expected["spec"]["predictor"]["model"]["env"] = [{"name": "MAR_BUILD_THREADS", "value": "2"}]
    assert manifests.documents == [expected]
    assert "worker" not in caplog.text
    assert list(yaml.safe_load_all(manifests.text)) == manifests.documents
    validate(manifests.documents)
    assert manifests.secret is None
    [endpoint] = manifests.endpoints
    assert endpoint.model == "bert"  # the model_snapshot key, not the InferenceService name
    assert endpoint.path == "/v1/models/bert:predict"
    assert endpoint.host == "torchserve.kubeflow-user-example-com.example.com"
    assert endpoint.cluster_url == (
        "http://torchserve-predictor.kubeflow-user-example-com.svc.cluster.local/v1/models/bert:predict"
    )


def test_s3_secret_serviceaccount_gpu_canary(hand_layout, golden, validate):
    s3 = S3Credentials(
        endpoint="http://minio-service.kubeflow:9000", region="us-east-1",
        access_key_id=FAKE_KEY_ID, secret_access_key=FAKE_SECRET,
    )
    manifests = render(
        hand_layout, name="bert-gpu", namespace="kubeflow-user-example-com", storage_uri="s3://models/bert",
        s3=s3, gpu=1, runtime_version="0.12.0-gpu", canary_traffic_percent=20, deployment_mode="Serverless",
        min_replicas=1, max_replicas=4, scale_target=8, scale_metric="concurrency", timeout=120, prometheus=True,
        limits={"cpu": "4", "memory": "8Gi"}, requests={"cpu": "2", "memory": "8Gi"},
        labels={"team": "nlp", "app.kubernetes.io/version": "1.0"},
        annotations={"example.com/owner": "data science: nlp #1"},
    )
    sa, isvc = manifests.documents
    assert [d["kind"] for d in manifests.documents] == ["ServiceAccount", "InferenceService"]
    assert sa["secrets"] == [{"name": "bert-gpu-s3"}]
    predictor = isvc["spec"]["predictor"]
    assert predictor["serviceAccountName"] == sa["metadata"]["name"] == "bert-gpu-sa"
    assert predictor["canaryTrafficPercent"] == 20
    assert predictor["model"]["runtimeVersion"] == "0.12.0-gpu"  # as given: KServe does not append -gpu to it
    for table in ("limits", "requests"):
        assert predictor["model"]["resources"][table]["nvidia.com/gpu"] == "1"
    assert isvc["metadata"]["annotations"] == {
        "example.com/owner": "data science: nlp #1",
        "serving.kserve.io/deploymentMode": "Serverless",
        "serving.kserve.io/enable-prometheus-scraping": "true",
    }
    # The keys live only in the separate Secret manifest.
    for text in (manifests.text, repr(manifests), repr(s3)):
        assert FAKE_KEY_ID not in text and FAKE_SECRET not in text
    assert manifests.secret is not None
    [secret] = manifests.secret.documents
    assert secret["stringData"] == {"AWS_ACCESS_KEY_ID": FAKE_KEY_ID, "AWS_SECRET_ACCESS_KEY": FAKE_SECRET}
    assert secret["metadata"]["annotations"] == {
        "serving.kserve.io/s3-endpoint": "minio-service.kubeflow:9000",
        "serving.kserve.io/s3-usehttps": "0",
        "serving.kserve.io/s3-region": "us-east-1",
    }
    assert [d["kind"] for d in manifests.all_documents()] == ["Secret", "ServiceAccount", "InferenceService"]
    golden("render/s3_gpu_canary.yaml", manifests.text)
    golden("render/s3_gpu_canary.secret.yaml", manifests.secret.text)
    validate(manifests.all_documents())


def test_anonymous_s3_secret_holds_no_keys_and_is_part_of_the_manifests(golden, validate):
    manifests = render(
        name="public", namespace="models", storage_uri="s3://public-models/bert",
        s3=S3Credentials(endpoint="https://s3.eu-west-1.amazonaws.com", region="eu-west-1", anonymous=True),
    )
    assert manifests.secret is None
    secret, sa, isvc = manifests.documents
    assert secret["kind"] == "Secret"
    assert secret["metadata"]["annotations"]["serving.kserve.io/s3-useanoncredential"] == "true"
    assert secret["metadata"]["annotations"]["serving.kserve.io/s3-usehttps"] == "1"
    # KServe reads a Secret's S3 annotations only when the key entries exist: present and empty.
    assert secret["stringData"] == {"AWS_ACCESS_KEY_ID": "", "AWS_SECRET_ACCESS_KEY": ""}
    assert isvc["spec"]["predictor"]["serviceAccountName"] == sa["metadata"]["name"]
    golden("render/s3_anonymous.yaml", manifests.text)
    validate(manifests.documents)


def test_pvc(hand_layout, golden, validate):
    manifests = render(
        hand_layout, name="torchserve", namespace="kubeflow-user-example-com", storage_uri="pvc://leeway/bert",
        pvc=PvcRequest("10Gi", storage_class="standard", access_mode="ReadWriteMany"),
    )
    pvc, isvc = manifests.documents
    assert pvc["metadata"]["name"] == "leeway"
    assert pvc["metadata"]["namespace"] == isvc["metadata"]["namespace"]
    assert pvc["spec"] == {
        "accessModes": ["ReadWriteMany"], "storageClassName": "standard",
        "resources": {"requests": {"storage": "10Gi"}},
    }
    golden("render/pvc.yaml", manifests.text)
    validate(manifests.documents)


def test_every_field_validates_against_the_crd(validate):
    manifests = render(
        name="all-fields", namespace="ns", storage_uri="gs://bucket/layout", protocol="v2", gpu=2,
        runtime_version="0.12.0-gpu", min_replicas=0, max_replicas=10, scale_target=3, scale_metric="rps",
        timeout=30, canary_traffic_percent=0, service_account="runner", deployment_mode="Knative",
        labels={"a": "b"}, annotations={"c": "d"}, prometheus=True,
        limits={"cpu": "500m", "memory": "1.5Gi", "ephemeral-storage": "10G"}, requests={"cpu": ".25", "memory": "1Gi"},
    )
    validate(manifests.documents)
    predictor = manifests.documents[-1]["spec"]["predictor"]
    assert predictor["minReplicas"] == 0 and predictor["maxReplicas"] == 10
    assert predictor["scaleTarget"] == 3 and predictor["scaleMetric"] == "rps" and predictor["timeout"] == 30
    assert predictor["canaryTrafficPercent"] == 0 and predictor["serviceAccountName"] == "runner"
    assert predictor["model"]["protocolVersion"] == "v2"
    assert manifests.endpoints == ()  # no layout, no model names


# --------------------------------------------------------------------------------------------------------------
# Defaults from the layout (mar.yaml's kserve section in mar_build.json)


def test_defaults_come_from_the_archive_and_flags_win(layout_factory, validate):
    kserve = KServeSettings(
        name="from-spec", namespace="team-a", storage_uri="s3://models/bert", runtime_version="0.12.0",
        resources=Resources(requests={"cpu": "1", "memory": "1Gi"}, limits={"cpu": "2", "memory": "4Gi"}),
        min_replicas=1, labels={"team": "a"}, annotations={"note": "from mar.yaml"},
    )
    layout = layout_factory({"bert": kserve})
    isvc = render(layout).documents[-1]
    assert isvc["metadata"] == {
        "name": "from-spec", "namespace": "team-a", "labels": {"team": "a"}, "annotations": {"note": "from mar.yaml"},
    }
    predictor = isvc["spec"]["predictor"]
    assert predictor["minReplicas"] == 1
    assert predictor["model"]["storageUri"] == "s3://models/bert"
    assert predictor["model"]["runtimeVersion"] == "0.12.0"
    assert predictor["model"]["resources"] == {
        "limits": {"cpu": "2", "memory": "4Gi"}, "requests": {"cpu": "1", "memory": "1Gi"},
    }

    over = render(layout, name="flagged", namespace="team-b", limits={"memory": "8Gi"}, labels={"tier": "gold"},
                  runtime_version="0.9.0").documents[-1]
    assert over["metadata"]["name"] == "flagged" and over["metadata"]["namespace"] == "team-b"
    assert over["metadata"]["labels"] == {"team": "a", "tier": "gold"}  # merged key by key
    model = over["spec"]["predictor"]["model"]
    assert model["resources"]["limits"] == {"cpu": "2", "memory": "8Gi"}
    assert model["runtimeVersion"] == "0.9.0"
    validate([over])


def test_explicit_settings_replace_the_archive_defaults(layout_factory):
    layout = layout_factory({"bert": KServeSettings(name="from-spec", storage_uri="pvc://a")})
    isvc = render(layout, settings=KServeSettings(storage_uri="pvc://b")).documents[-1]
    assert isvc["metadata"]["name"] == "bert"  # the model name made DNS-1035: settings hold no name
    assert isvc["spec"]["predictor"]["model"]["storageUri"] == "pvc://b"


def test_first_models_defaults_win_with_a_warning(layout_factory, caplog):
    layout = layout_factory({
        "alpha": KServeSettings(namespace="first", storage_uri="pvc://x"),
        "beta": KServeSettings(namespace="second", storage_uri="pvc://x"),
    })
    with caplog.at_level(logging.WARNING, logger="toolkit.render"):
        manifests = render(layout, name="pair")
    assert manifests.documents[-1]["metadata"]["namespace"] == "first"
    assert "'beta' has other KServe defaults than 'alpha'" in caplog.text
    assert [e.model for e in manifests.endpoints] == ["alpha", "beta"]
    assert all(e.host == "pair.first.example.com" for e in manifests.endpoints)


def test_name_defaults_to_the_model_name_made_dns1035(layout_factory):
    layout = layout_factory({"My_Model.v2": None})
    manifests = render(layout, storage_uri="pvc://x")
    assert manifests.documents[-1]["metadata"]["name"] == "my-model-v2"
    assert manifests.endpoints[0].path == "/v1/models/My_Model.v2:predict"


def test_prometheus_port_follows_the_layout(layout_factory, caplog):
    layout = layout_factory({"bert": None}, metrics_port=9082, metrics_mode=False)
    with caplog.at_level(logging.WARNING, logger="toolkit.render"):
        isvc = render(layout, name="m", storage_uri="pvc://x", prometheus=True).documents[-1]
    assert isvc["metadata"]["annotations"] == {
        "serving.kserve.io/enable-prometheus-scraping": "true", "prometheus.kserve.io/port": "9082",
    }
    assert "metrics_mode=prometheus" in caplog.text
    assert "annotations" not in render(layout, name="m", storage_uri="pvc://x").documents[-1]["metadata"]


def test_unknown_settings_in_a_newer_archive_are_ignored_with_a_warning(layout_factory, caplog):
    layout = layout_factory({"bert": {"name": "newer", "storage_uri": "pvc://x", "future_knob": 3}})
    with caplog.at_level(logging.WARNING, logger="toolkit.render"):
        isvc = render(layout).documents[-1]
    assert isvc["metadata"]["name"] == "newer"
    assert "future_knob" in caplog.text


# --------------------------------------------------------------------------------------------------------------
# Bad input: each gets a clear error


def test_missing_name_and_storage_uri():
    with pytest.raises(RenderError, match="no InferenceService name"):
        render(storage_uri="pvc://x")
    with pytest.raises(RenderError, match="no storage URI") as info:
        render(name="m")
    assert "mar-build stage" in (info.value.hint or "")


@pytest.mark.parametrize("name", ["Torchserve", "1bert", "bert_model", "bert-", "a" * 64, "bert\n", "", "bé"])
def test_invalid_isvc_name_says_what_is_valid(name):
    with pytest.raises((SpecError, RenderError), match="DNS-1035") as info:
        render(name=name, storage_uri="pvc://x")
    assert info.value.hint and "for example" in info.value.hint


@pytest.mark.parametrize("namespace", ["Kubeflow", "a.b", "-ns", "n" * 64])
def test_invalid_namespace(namespace):
    with pytest.raises(RenderError, match="namespace"):
        render(name="m", namespace=namespace, storage_uri="pvc://x")


def test_gpu_with_a_runtime_version_must_name_the_gpu_tag():
    with pytest.raises(RenderError, match="exactly as given") as info:
        render(name="m", storage_uri="pvc://x", gpu=1, runtime_version="0.12.0")
    assert "0.12.0-gpu" in (info.value.hint or "")
    # Without a runtime version KServe appends -gpu to its default tag itself: nothing to add.
    model = render(name="m", storage_uri="pvc://x", gpu=1).documents[-1]["spec"]["predictor"]["model"]
    assert "runtimeVersion" not in model
    assert model["resources"]["limits"]["nvidia.com/gpu"] == "1"


def test_gpu_tag_without_gpu_warns(caplog):
    with caplog.at_level(logging.WARNING, logger="toolkit.render"):
        render(name="m", storage_uri="pvc://x", runtime_version="0.12.0-gpu")
    assert "no GPU is requested" in caplog.text


def test_gpu_count_in_one_place():
    with pytest.raises(RenderError, match="nvidia.com/gpu"):
        render(name="m", storage_uri="pvc://x", gpu=2, limits={"nvidia.com/gpu": "1"})


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"min_replicas": 3, "max_replicas": 2}, "larger than max_replicas"),
        ({"min_replicas": -1}, "min_replicas must be >= 0"),
        ({"canary_traffic_percent": 101}, "between 0 and 100"),
        ({"scale_target": 0}, "scale_target"),
        ({"timeout": True}, "whole number"),
        ({"gpu": 1.5}, "whole number"),
        ({"scale_metric": "gpu"}, "scale_metric must be one of"),
        ({"protocol": "grpc"}, "protocol"),
        ({"deployment_mode": "rawdeployment"}, "not one KServe"),
        ({"deployment_mode": "ModelMesh"}, "not one KServe"),
        ({"runtime_version": "0.12.0 gpu"}, "image tag"),
        ({"service_account": "Bad SA"}, "service account"),
        ({"labels": {"team": [1]}}, "must be a string"),
        ({"annotations": {"a": None}}, "must be a string"),
        ({"labels": {"bad key!": "x"}}, "label key"),
        ({"labels": {"team": "has space"}}, "label team="),
        ({"annotations": {"serving.kserve.io/deploymentMode": "Serverless"}, "deployment_mode": "RawDeployment"},
         "contradicts"),
        ({"annotations": {"big": "x" * (256 * 1024)}}, "Kubernetes allows"),
    ],
)
def test_bad_values(options, message):
    with pytest.raises(RenderError, match=message):
        render(name="m", storage_uri="pvc://x", **options)


def test_deployment_mode_case_hint():
    with pytest.raises(RenderError) as info:
        render(name="m", storage_uri="pvc://x", deployment_mode="serverless")
    assert info.value.hint == "did you mean 'Serverless'?"


def test_pvc_errors():
    with pytest.raises(RenderError, match="PVC was asked for"):
        render(name="m", storage_uri="s3://models/p", pvc=PvcRequest("1Gi"))
    with pytest.raises(RenderError, match="reads claim 'leeway'"):
        render(name="m", storage_uri="pvc://leeway/p", pvc=PvcRequest("1Gi", name="other"))
    with pytest.raises(RenderError, match="PVC size"):
        render(name="m", storage_uri="pvc://leeway/p", pvc=PvcRequest("ten gigs"))
    with pytest.raises(RenderError, match="more than 0"):
        render(name="m", storage_uri="pvc://leeway/p", pvc=PvcRequest("0"))
    with pytest.raises(RenderError, match="access mode"):
        render(name="m", storage_uri="pvc://leeway/p", pvc=PvcRequest("1Gi", access_mode="RWX"))


def test_layout_errors(tmp_path, layout_factory):
    with pytest.raises(LayoutError, match="not a folder"):
        render(tmp_path / "missing", name="m", storage_uri="pvc://x")
    layout = layout_factory({"bert": None})
    (layout / "model-store" / "bert.mar").unlink()
    with pytest.raises(LayoutError, match="bert.mar does not exist"):
        render(layout, name="m", storage_uri="pvc://x")
    config = layout / "config" / "config.properties"
    config.write_text(config.read_text().replace("model_snapshot=", "model_snapshot={broken"))
    with pytest.raises(LayoutError, match="not valid JSON"):
        render(layout, name="m", storage_uri="pvc://x")
    config.write_text("inference_address=http://0.0.0.0:8085\n")
    with pytest.raises(LayoutError, match="no model_snapshot models"):
        render(layout, name="m", storage_uri="pvc://x")


# --------------------------------------------------------------------------------------------------------------
# Writing


def test_write_is_atomic_and_keeps_keys_private(tmp_path):
    manifests = render(
        name="m", storage_uri="s3://models/p",
        s3=S3Credentials(access_key_id=FAKE_KEY_ID, secret_access_key=FAKE_SECRET),
    )
    isvc_file = manifests.write(tmp_path / "isvc.yaml")
    assert manifests.secret is not None
    secret_file = manifests.secret.write(tmp_path / "secret.yaml")
    assert list(yaml.safe_load_all(isvc_file.read_text())) == manifests.documents
    assert FAKE_SECRET not in isvc_file.read_text() and FAKE_SECRET in secret_file.read_text()
    assert stat.S_IMODE(secret_file.stat().st_mode) == 0o600
    assert stat.S_IMODE(isvc_file.stat().st_mode) == 0o644
    # Rewriting replaces the file whole and leaves no temporary file behind.
    render(name="other", storage_uri="s3://models/p").write(isvc_file)
    assert yaml.safe_load(isvc_file.read_text())["metadata"]["name"] == "other"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["isvc.yaml", "secret.yaml"]


def test_write_errors(tmp_path):
    manifests = render(name="m", storage_uri="pvc://x")
    with pytest.raises(RenderError, match="is a folder"):
        manifests.write(tmp_path)
    with pytest.raises(RenderError, match="does not exist"):
        manifests.write(tmp_path / "no" / "isvc.yaml")


def test_text_is_deterministic(hand_layout):
    labels = {"b": "2", "a": "1"}
    first = render(hand_layout, name="m", storage_uri="pvc://x", labels=labels)
    second = render(hand_layout, name="m", storage_uri="pvc://x", labels=dict(reversed(labels.items())))
    assert first.text == second.text


def test_to_dict_is_json_and_never_holds_the_keys(hand_layout):
    manifests = render(
        hand_layout, name="m", namespace="ns", storage_uri="s3://models/p",
        s3=S3Credentials(access_key_id=FAKE_KEY_ID, secret_access_key=FAKE_SECRET),
    )
    data = json.loads(json.dumps(manifests.to_dict()))
    assert data["documents"] == manifests.documents
    assert data["secret"] == {"kind": "Secret", "name": "m-s3", "namespace": "ns", "holds_keys": True}
    assert data["endpoints"] == [{
        "model": "bert", "path": "/v1/models/bert:predict", "host": "m.ns.example.com",
        "cluster_url": "http://m-predictor.ns.svc.cluster.local/v1/models/bert:predict",
    }]
    assert FAKE_SECRET not in json.dumps(data) and FAKE_KEY_ID not in json.dumps(data)
    assert render(name="m", storage_uri="pvc://x").to_dict()["secret"] is None
