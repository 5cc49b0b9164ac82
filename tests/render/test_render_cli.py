"""`mar-build render` through click's CliRunner: output, files, the model URLs, and errors as messages."""

from __future__ import annotations

import json
import logging
import stat

import pytest
import yaml
from click.testing import CliRunner

from toolkit._cli import cli
from toolkit._render import render

HAND = [
    "--name", "torchserve", "-n", "kubeflow-user-example-com", "--storage-uri", "pvc://leeway",
    "--cpu-limit", "2", "--memory-limit", "2Gi", "--cpu-request", "0.5", "--memory-request", "0.5Gi",
]
KEY_ID = "AKIAFAKEFAKEFAKE0002"
SECRET = "fake-secret-NOT-REAL-abcdefghijklmnop"


@pytest.fixture
def run():
    def invoke(*args: str, env: dict[str, str] | None = None):
        return CliRunner().invoke(cli, ["render", *args], env=env, catch_exceptions=False)

    return invoke


def test_hand_workflow_to_stdout_with_the_url_to_call(run, hand_layout):
    result = run(str(hand_layout), *HAND)
    assert result.exit_code == 0, result.output
    expected = render(
        hand_layout, name="torchserve", namespace="kubeflow-user-example-com", storage_uri="pvc://leeway",
        limits={"cpu": "2", "memory": "2Gi"}, requests={"cpu": "0.5", "memory": "0.5Gi"},
    )
    assert result.stdout == expected.text
    assert "/v1/models/bert:predict" in result.stderr
    assert "Host: torchserve.kubeflow-user-example-com.example.com" in result.stderr
    assert "model_snapshot key, not the InferenceService name 'torchserve'" in result.stderr
    assert "http://torchserve-predictor.kubeflow-user-example-com.svc.cluster.local" in result.stderr


def test_output_file(run, hand_layout, tmp_path):
    out = tmp_path / "isvc.yaml"
    result = run(str(hand_layout), *HAND, "-o", str(out))
    assert result.exit_code == 0, result.output
    assert result.stdout == ""
    [isvc] = yaml.safe_load_all(out.read_text())
    assert isvc["spec"]["predictor"]["model"]["resources"] == {
        "limits": {"cpu": "2", "memory": "2Gi"}, "requests": {"cpu": "0.5", "memory": "0.5Gi"},
    }
    assert f"wrote InferenceService torchserve to {out}" in result.stderr


def test_cpu_and_memory_set_both_and_specific_flags_win(run, hand_layout):
    result = run(str(hand_layout), "--name", "m", "--storage-uri", "pvc://x", "--cpu", "2", "--memory", "4Gi",
                 "--cpu-request", "1")
    assert result.exit_code == 0, result.output
    resources = list(yaml.safe_load_all(result.stdout))[-1]["spec"]["predictor"]["model"]["resources"]
    assert resources == {"limits": {"cpu": "2", "memory": "4Gi"}, "requests": {"cpu": "1", "memory": "4Gi"}}


def test_s3_secret_goes_to_its_own_private_file(run, hand_layout, tmp_path):
    out, secret_file = tmp_path / "isvc.yaml", tmp_path / "s3-secret.yaml"
    result = run(
        str(hand_layout), "--name", "bert", "--storage-uri", "s3://models/bert", "--gpu", "1",
        "--s3-endpoint", "http://minio-service.kubeflow:9000", "--s3-region", "us-east-1",
        "--s3-secret-file", str(secret_file), "-o", str(out), "--label", "team=nlp", "--annotation", "note=a=b",
        "--canary-traffic-percent", "10", "--deployment-mode", "RawDeployment", "--prometheus",
        env={"AWS_ACCESS_KEY_ID": KEY_ID, "AWS_SECRET_ACCESS_KEY": SECRET},
    )
    assert result.exit_code == 0, result.output
    for text in (out.read_text(), result.stdout, result.stderr):
        assert KEY_ID not in text and SECRET not in text
    assert stat.S_IMODE(secret_file.stat().st_mode) == 0o600
    [secret] = yaml.safe_load_all(secret_file.read_text())
    assert secret["stringData"] == {"AWS_ACCESS_KEY_ID": KEY_ID, "AWS_SECRET_ACCESS_KEY": SECRET}
    sa, isvc = yaml.safe_load_all(out.read_text())
    assert sa["secrets"] == [{"name": secret["metadata"]["name"]}]
    assert isvc["spec"]["predictor"]["serviceAccountName"] == sa["metadata"]["name"]
    assert isvc["metadata"]["labels"] == {"team": "nlp"}
    assert isvc["metadata"]["annotations"]["note"] == "a=b"
    assert isvc["spec"]["predictor"]["model"]["resources"]["limits"]["nvidia.com/gpu"] == "1"


def test_s3_anonymous_needs_no_secret_file(run, hand_layout):
    result = run(str(hand_layout), "--name", "m", "--storage-uri", "s3://public/bert", "--s3-anonymous")
    assert result.exit_code == 0, result.output
    kinds = [d["kind"] for d in yaml.safe_load_all(result.stdout)]
    assert kinds == ["Secret", "ServiceAccount", "InferenceService"]


def test_pvc_flags(run, hand_layout):
    result = run(str(hand_layout), "--name", "m", "--storage-uri", "pvc://leeway/bert", "--pvc-size", "10Gi",
                 "--pvc-storage-class", "standard", "--pvc-access-mode", "ReadWriteMany")
    assert result.exit_code == 0, result.output
    pvc, _ = yaml.safe_load_all(result.stdout)
    assert pvc["spec"]["accessModes"] == ["ReadWriteMany"] and pvc["spec"]["storageClassName"] == "standard"


@pytest.mark.parametrize(
    ("args", "env", "message"),
    [
        (["--name", "Bad_Name", "--storage-uri", "pvc://x"], None, "DNS-1035"),
        (["--name", "m", "--storage-uri", "pvc://leeway/bert/model-store"], None, "pvc://leeway/bert"),
        (["--name", "m", "--storage-uri", "s3://models/p", "--s3-endpoint", "http://minio:9000"], None,
         "--s3-secret-file"),
        (["--name", "m", "--storage-uri", "s3://models/p", "--s3-secret-file", "s.yaml"], {"AWS_ACCESS_KEY_ID": "x"},
         "AWS_SECRET_ACCESS_KEY is not set"),
        (["--name", "m", "--storage-uri", "pvc://x", "--gpu", "1", "--runtime-version", "0.12.0"], None,
         "0.12.0-gpu"),
        (["--name", "m", "--storage-uri", "pvc://x", "--memory", "2GB"], None, "quantity"),
        (["--name", "m", "--storage-uri", "pvc://x", "--label", "bad key=v"], None, "label key"),
        # the S3 credential policy is render's (S3Credentials.from_options), so its refusal is a RenderError
        (["--name", "m", "--storage-uri", "s3://models/p", "--s3-anonymous", "--s3-secret-file", "s.yaml"],
         {"AWS_ACCESS_KEY_ID": "x", "AWS_SECRET_ACCESS_KEY": "y"}, "--s3-anonymous needs no keys"),
    ],
)
def test_errors_are_messages_with_hints(run, hand_layout, monkeypatch, tmp_path, args, env, message):
    monkeypatch.chdir(tmp_path)
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.delenv(name, raising=False)
    result = run(str(hand_layout), *args, env=env)
    assert result.exit_code == 1
    assert result.stderr.startswith("error: ")
    assert message in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "s.yaml").exists()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--label", "novalue"], "is not KEY=VALUE"),
        (["--s3-secret-file", "same.yaml", "-o", "same.yaml"], "another file than -o"),
        (["--pvc-storage-class", "standard"], "needs --pvc-size"),
        (["--canary-traffic-percent", "101"], "101"),
    ],
)
def test_usage_errors(run, hand_layout, monkeypatch, tmp_path, args, message):
    monkeypatch.chdir(tmp_path)
    result = run(str(hand_layout), "--name", "m", "--storage-uri", "s3://models/p", *args)
    assert result.exit_code == 2
    assert message in result.stderr


def test_missing_layout_is_a_clear_error(run, tmp_path):
    result = run(str(tmp_path / "nope"), "--name", "m", "--storage-uri", "pvc://x")
    assert result.exit_code == 1
    assert "is not a folder" in result.stderr and "hint:" in result.stderr


def test_predictor_timeout_lands_in_the_inference_service(run, hand_layout):
    result = run(str(hand_layout), *HAND, "--predictor-timeout", "90")
    assert result.exit_code == 0, result.output
    [isvc] = yaml.safe_load_all(result.stdout)
    assert isvc["spec"]["predictor"]["timeout"] == 90
    assert "deprecated" not in result.stderr


def test_the_old_timeout_flag_still_sets_the_predictor_timeout_with_a_warning(run, hand_layout):
    result = run(str(hand_layout), *HAND, "--timeout", "90")
    assert result.exit_code == 0, result.output
    [isvc] = yaml.safe_load_all(result.stdout)
    assert isvc["spec"]["predictor"]["timeout"] == 90
    assert "warning: `cli render`: --timeout is deprecated, use --predictor-timeout" in result.stderr


def test_json_holds_the_manifests_and_the_model_urls(run, hand_layout):
    result = run(str(hand_layout), *HAND, "--json")
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    assert out["documents"] == list(yaml.safe_load_all(render(
        hand_layout, name="torchserve", namespace="kubeflow-user-example-com", storage_uri="pvc://leeway",
        limits={"cpu": "2", "memory": "2Gi"}, requests={"cpu": "0.5", "memory": "0.5Gi"},
    ).text))
    assert [e["path"] for e in out["endpoints"]] == ["/v1/models/bert:predict"]
    assert "Call it" not in result.stderr  # the URLs are in the JSON; stderr keeps only what was written


def test_json_never_carries_the_keys(run, hand_layout, tmp_path):
    secret_file = tmp_path / "s3-secret.yaml"
    result = run(
        str(hand_layout), "--name", "bert", "--storage-uri", "s3://models/bert", "--s3-endpoint",
        "http://minio-service.kubeflow:9000", "--s3-secret-file", str(secret_file), "--json",
        env={"AWS_ACCESS_KEY_ID": KEY_ID, "AWS_SECRET_ACCESS_KEY": SECRET},
    )
    assert result.exit_code == 0, result.output
    assert KEY_ID not in result.output and SECRET not in result.output
    out = json.loads(result.stdout)
    assert [d["kind"] for d in out["documents"]] == ["ServiceAccount", "InferenceService"]
    assert KEY_ID in secret_file.read_text()


IMAGE = "ghcr.io/team/mar-build-runtime:1.0"


def test_python_runtime_flags(run, hand_layout, tmp_path, caplog):
    out = tmp_path / "isvc.yaml"
    result = run(str(hand_layout), *HAND, "--runtime", "python", "--image", IMAGE, "--protocol", "v2", "-o", str(out))
    assert result.exit_code == 0, result.output
    expected = render(
        hand_layout, name="torchserve", namespace="kubeflow-user-example-com", storage_uri="pvc://leeway",
        limits={"cpu": "2", "memory": "2Gi"}, requests={"cpu": "0.5", "memory": "0.5Gi"}, runtime="python",
        image=IMAGE, protocol="v2",
    )
    assert out.read_text() == expected.text
    runtime, isvc = expected.documents
    assert isvc["spec"]["predictor"]["model"]["runtime"] == runtime["metadata"]["name"] == "torchserve-mar-build"
    assert f"wrote ServingRuntime torchserve-mar-build, InferenceService torchserve to {out}" in result.stderr
    assert "/v2/models/bert/infer" in result.stderr
    # v2 is this runtime's own protocol (the preflight's findings on the hand layout are its own logger's)
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING and r.name != "toolkit.render.preflight"]


def test_serving_runtime_flag_pins_the_torchserve_runtime(run, hand_layout):
    result = run(str(hand_layout), *HAND, "--serving-runtime", "--runtime-version", "0.12.0", "--json")
    assert result.exit_code == 0, result.output
    runtime, isvc = json.loads(result.stdout)["documents"]
    assert runtime["kind"] == "ServingRuntime"
    assert runtime["spec"]["containers"][0]["image"] == "pytorch/torchserve-kfs:0.12.0"
    assert isvc["spec"]["predictor"]["model"]["runtime"] == runtime["metadata"]["name"]


def test_an_image_without_a_tag_is_a_warning(run, hand_layout, caplog):
    result = run(str(hand_layout), *HAND, "--runtime", "python", "--image", "ghcr.io/team/mar-build-runtime")
    assert result.exit_code == 0, result.output
    # The CLI's logging goes to stderr; under pytest its handler captures the record.
    assert [r.levelname for r in caplog.records if "no fixed tag" in r.getMessage()] == ["WARNING"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--runtime", "python"], "runtime python needs the image"),
        (["--image", IMAGE, "--runtime-version", "0.12.0"], "give the tag in --image only"),
        (["--runtime", "python", "--image", IMAGE, "--runtime-version", "0.12.0"], "drop --runtime-version"),
    ],
)
def test_runtime_errors_are_messages_with_hints(run, hand_layout, args, message):
    result = run(str(hand_layout), *HAND, *args)
    assert result.exit_code == 1
    assert result.stderr.startswith("error: ") and "hint:" in result.stderr
    assert message in result.stderr
    assert "Traceback" not in result.stderr


def test_an_unknown_runtime_is_a_usage_error(run, hand_layout):
    result = run(str(hand_layout), *HAND, "--runtime", "triton")
    assert result.exit_code == 2
    assert "'torchserve', 'python'" in result.stderr
