"""`mar-build deploy/status/delete` through click's CliRunner, with a kubeconfig that points at the stand-in."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner, Result
from k8s_support import (
    NAMESPACE,
    POD,
    TOKEN,
    Frame,
    StandInApiServer,
    cond,
    exited,
    isvc_manifest,
    pod,
    ready_status,
    running,
    s3_companions,
    terminated,
    waiting,
)

from toolkit._cli import cli


def run(*args: str, env: dict[str, str | None] | None = None) -> Result:
    return CliRunner().invoke(cli, list(args), env={"KUBECONFIG": None, **(env or {})})


def _manifest(tmp_path: Path, docs: list[dict[str, Any]], name: str = "isvc.yaml") -> Path:
    path = tmp_path / name
    path.write_text(yaml.safe_dump_all(docs, sort_keys=False), encoding="utf-8")
    return path


def test_deploy_shows_the_live_view_and_prints_the_url(standin: StandInApiServer, kubeconfig: Path, tmp_path: Path):
    serving = pod(
        POD,
        "torchserve",
        phase="Running",
        init=[terminated("storage-initializer", "Completed", 0)],
        containers=[running("kserve-container", ready=True)],
    )
    standin.frames = [
        Frame(
            status={"conditions": [cond("PredictorReady", "False", "RevisionMissing"), cond("Ready", "False")]},
            pods=[
                pod(
                    POD,
                    "torchserve",
                    init=[running("storage-initializer", ready=False)],
                    containers=[waiting("kserve-container", "PodInitializing")],
                )
            ],
        ),
        Frame(status=ready_status("torchserve"), pods=[serving]),
    ]
    docs = [isvc_manifest(), *s3_companions()]
    for d in docs:
        del d["metadata"]["namespace"]  # the context's namespace applies
    isvc, extra = _manifest(tmp_path, docs[:1]), _manifest(tmp_path, docs[1:], "s3.yaml")

    result = run("deploy", str(isvc), str(extra), "--kubeconfig", str(kubeconfig), "--poll-interval", "0.01")

    assert result.exit_code == 0, result.output
    assert result.stdout == f"http://torchserve.{NAMESPACE}.example.com\n"
    lines = result.stderr.splitlines()
    assert all(re.match(r"\[ *\d+\.\ds\] ", line) for line in lines), lines
    text = [line.split("] ", 1)[1] for line in lines]
    assert text[:3] == [
        f"applied Secret/torchserve-s3 created in namespace {NAMESPACE}",
        f"applied ServiceAccount/torchserve-sa created in namespace {NAMESPACE}",
        f"applied InferenceService/torchserve created in namespace {NAMESPACE}",
    ]
    assert any(t.startswith("PredictorReady") and "False" in t and "RevisionMissing" in t for t in text)
    assert any(t.startswith("pod " + POD) and "storage-initializer running" in t for t in text)
    assert any(t.startswith("Ready") and "True" in t for t in text)
    assert text[-1] == f"ready: http://torchserve.{NAMESPACE}.example.com"
    # The kubeconfig's token went to the API server with every request, to the context's namespace.
    assert {r.headers.get("authorization") for r in standin.requests} == {f"Bearer {TOKEN}"}
    assert all(NAMESPACE in r.path for r in standin.requests if r.method == "PATCH")


def test_deploy_json_without_wait(standin: StandInApiServer, kubeconfig: Path, tmp_path: Path):
    result = run(
        "deploy", str(_manifest(tmp_path, [isvc_manifest()])), "--kubeconfig", str(kubeconfig), "--no-wait", "--json"
    )
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    # DeployResult.to_dict() adds conditions and elapsed to these.
    assert {k: out[k] for k in ("name", "namespace", "ready", "url", "address", "applied")} == {
        "name": "torchserve",
        "namespace": NAMESPACE,
        "ready": False,
        "url": None,
        "address": None,
        "applied": ["InferenceService/torchserve created"],
    }


def test_deploy_failure_prints_diagnosis_and_hint(standin: StandInApiServer, kubeconfig: Path, tmp_path: Path):
    oom = pod(
        POD,
        "torchserve",
        phase="Running",
        init=[terminated("storage-initializer", "Completed", 0)],
        containers=[waiting("kserve-container", "CrashLoopBackOff", restarts=4, last=exited("OOMKilled", 137))],
    )
    standin.frames = [
        Frame(
            status={"conditions": [cond("Ready", "False")]},
            pods=[oom],
            logs={(POD, "kserve-container", True): "Model bert loaded.\n"},
        )
    ]
    result = run(
        "deploy",
        str(_manifest(tmp_path, [isvc_manifest()])),
        "--kubeconfig",
        str(kubeconfig),
        "--poll-interval",
        "0.01",
    )
    assert result.exit_code == 1
    assert (
        "error: InferenceService kubeflow-user-example-com/torchserve is not ready: kserve-container is "
        "CrashLoopBackOff" in result.stderr
    )
    assert "last exit: OOMKilled (exit code 137)" in result.stderr
    assert "hint: kserve-container was OOMKilled (memory limit 2Gi)" in result.stderr
    assert "Traceback" not in result.output


def test_deploy_to_a_cluster_without_kserve(standin: StandInApiServer, kubeconfig: Path, tmp_path: Path):
    standin.kserve_installed = False
    result = run("deploy", str(_manifest(tmp_path, [isvc_manifest()])), "--kubeconfig", str(kubeconfig))
    assert result.exit_code == 1
    assert result.stderr.startswith(
        "error: KServe is not installed in this cluster (no serving.kserve.io/v1beta1 InferenceService)\n"
    )


def test_namespace_and_context_options(standin: StandInApiServer, kubeconfig: Path, tmp_path: Path):
    doc = isvc_manifest()
    del doc["metadata"]["namespace"]
    manifest = _manifest(tmp_path, [doc])
    assert run("deploy", str(manifest), "--kubeconfig", str(kubeconfig), "--no-wait", "-n", "team-a").exit_code == 0
    assert (
        run("deploy", str(manifest), "--kubeconfig", str(kubeconfig), "--no-wait", "--context", "other").exit_code == 0
    )
    # The kubeconfig comes from $KUBECONFIG when --kubeconfig is not given.
    assert run("deploy", str(manifest), "--no-wait", env={"KUBECONFIG": str(kubeconfig)}).exit_code == 0
    namespaces = [r.path.split("/")[5] for r in standin.requests if r.method == "PATCH"]
    assert namespaces == ["team-a", "default", NAMESPACE]


def test_deploy_usage_errors(kubeconfig: Path, tmp_path: Path):
    manifest = _manifest(tmp_path, [isvc_manifest()])
    result = run("deploy", str(manifest), "--name", "x", "--kubeconfig", str(kubeconfig))
    assert result.exit_code == 2 and "--name, --storage-uri, --predictor-timeout" in result.stderr
    assert "apply to a LAYOUT" in result.stderr
    result = run("deploy", str(manifest), "--runtime", "python", "--kubeconfig", str(kubeconfig))
    assert result.exit_code == 2
    assert "--runtime, --runtime-version, --image and --serving-runtime apply to a LAYOUT" in result.stderr
    result = run("deploy", str(manifest), "--runtime-version", "0.12.0", "--kubeconfig", str(kubeconfig))
    assert result.exit_code == 2 and "apply to a LAYOUT" in result.stderr
    result = run("deploy", str(tmp_path), str(manifest), "--kubeconfig", str(kubeconfig))
    assert result.exit_code == 2 and "either one LAYOUT folder or manifest files" in result.stderr
    result = run("deploy", str(manifest), "--kubeconfig", str(tmp_path / "missing"))
    assert result.exit_code == 1 and "no Kubernetes configuration: no kubeconfig file at" in result.stderr


def test_status_ready_and_json(standin: StandInApiServer, kubeconfig: Path):
    obj = isvc_manifest()
    obj["metadata"]["generation"] = 1
    obj["status"] = ready_status("torchserve") | {"observedGeneration": 1}
    standin.put_isvc("torchserve", obj)
    result = run("status", "torchserve", "--kubeconfig", str(kubeconfig))
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines()[:4] == [
        f"InferenceService {NAMESPACE}/torchserve: ready",
        f"url:     http://torchserve.{NAMESPACE}.example.com",
        f"address: http://torchserve-predictor.{NAMESPACE}.svc.cluster.local",
        "predictor: latest ready revision torchserve-predictor-00001; "
        "traffic: torchserve-predictor-00001 100% (latest)",
    ]
    assert "Ready                        True" in result.stdout
    as_json = json.loads(run("status", "torchserve", "--kubeconfig", str(kubeconfig), "--json").stdout)
    assert as_json["ready"] is True and as_json["diagnosis"] is None
    assert as_json["conditions"][-1] == {"type": "Ready", "status": "True", "reason": "", "message": ""}


def test_status_not_ready_exits_1_with_the_diagnosis(standin: StandInApiServer, kubeconfig: Path):
    obj = isvc_manifest()
    obj["metadata"]["generation"] = 1
    standin.put_isvc("torchserve", obj)
    standin.script_starts_on_apply = False
    pulling = pod(
        POD,
        "torchserve",
        image="pytorch/torchserve-kfs:0.99.0",
        containers=[waiting("kserve-container", "ImagePullBackOff", "Back-off pulling image")],
    )
    standin.frames = [Frame(status={"conditions": [cond("Ready", "False")]}, pods=[pulling])]
    result = run("status", "torchserve", "--kubeconfig", str(kubeconfig))
    assert result.exit_code == 1
    assert result.stdout.startswith(f"InferenceService {NAMESPACE}/torchserve: NOT ready\n")
    assert "kserve-container           waiting ImagePullBackOff: Back-off pulling image" in result.stdout
    assert "hints:\n  - kserve-container cannot pull image pytorch/torchserve-kfs:0.99.0" in result.stdout


def test_status_forbidden(standin: StandInApiServer, kubeconfig: Path):
    standin.forbid.add(("get", "inferenceservices"))
    result = run("status", "torchserve", "--kubeconfig", str(kubeconfig))
    assert result.exit_code == 1
    assert "error: forbidden: get inferenceservices.serving.kserve.io torchserve" in result.stderr
    assert (
        f"hint: your account lacks 'get' on inferenceservices.serving.kserve.io in namespace {NAMESPACE}"
        in result.stderr
    )


@pytest.mark.parametrize("wait", [False, True])
def test_delete(standin: StandInApiServer, kubeconfig: Path, wait: bool):
    standin.put_isvc("torchserve", isvc_manifest())
    standin.delete_after_gets = 1 if wait else 0
    args = ["delete", "torchserve", "--kubeconfig", str(kubeconfig), "--poll-interval", "0.01"]
    args += ["--wait"] if wait else []
    result = run(*args)
    assert result.exit_code == 0, result.output
    assert result.stdout == "deleted InferenceService torchserve\n"
    assert len(standin.calls("GET", "inferenceservices/torchserve$")) == (2 if wait else 0)
    result = run("delete", "torchserve", "--kubeconfig", str(kubeconfig))
    assert result.exit_code == 1 and f"error: InferenceService {NAMESPACE}/torchserve not found" in result.stderr
    result = run("delete", "torchserve", "--kubeconfig", str(kubeconfig), "--ignore-not-found")
    assert result.exit_code == 0 and result.stdout == "no InferenceService torchserve: nothing to delete\n"


def test_invalid_isvc_name_on_the_command_line(kubeconfig: Path):
    result = run("status", "Torch_Serve", "--kubeconfig", str(kubeconfig))
    assert result.exit_code == 1 and "not a valid InferenceService name" in result.stderr


def _never_ready(standin: StandInApiServer) -> None:
    loading = pod(POD, "torchserve", containers=[running("kserve-container", ready=False)])
    standin.frames = [Frame(status={"conditions": [cond("Ready", "False")]}, pods=[loading])]


@pytest.mark.parametrize("flag", ["--wait-timeout", "--timeout"])
def test_deploy_waits_at_most_the_wait_timeout(
    standin: StandInApiServer, kubeconfig: Path, tmp_path: Path, flag: str
):
    _never_ready(standin)
    result = run("deploy", str(_manifest(tmp_path, [isvc_manifest()])), "--kubeconfig", str(kubeconfig),
                 "--poll-interval", "0.01", flag, "0.2")
    assert result.exit_code == 1
    assert f"error: InferenceService {NAMESPACE}/torchserve is not ready after 0.2 s" in result.stderr
    deprecated = "warning: `cli deploy`: --timeout is deprecated, use --wait-timeout"
    assert (deprecated in result.stderr) == (flag == "--timeout")


@pytest.mark.parametrize("flag", ["--wait-timeout", "--timeout"])
def test_delete_waits_at_most_the_wait_timeout(standin: StandInApiServer, kubeconfig: Path, flag: str):
    standin.put_isvc("torchserve", isvc_manifest())
    standin.delete_after_gets = 10**6  # it never goes away
    result = run("delete", "torchserve", "--kubeconfig", str(kubeconfig), "--wait", "--poll-interval", "0.01",
                 flag, "0.2")
    assert result.exit_code == 1
    assert f"error: InferenceService {NAMESPACE}/torchserve is still there 0.2 s after it was deleted" in result.stderr
    deprecated = "warning: `cli delete`: --timeout is deprecated, use --wait-timeout"
    assert (deprecated in result.stderr) == (flag == "--timeout")


def test_delete_json(standin: StandInApiServer, kubeconfig: Path):
    standin.put_isvc("torchserve", isvc_manifest())
    result = run("delete", "torchserve", "--kubeconfig", str(kubeconfig), "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == {"name": "torchserve", "namespace": None, "deleted": True}
    result = run("delete", "torchserve", "--kubeconfig", str(kubeconfig), "--json", "--ignore-not-found")
    assert json.loads(result.stdout)["deleted"] is False


def test_status_json_when_not_ready_still_exits_1(standin: StandInApiServer, kubeconfig: Path):
    obj = isvc_manifest()
    obj["metadata"]["generation"] = 1
    standin.put_isvc("torchserve", obj)
    standin.script_starts_on_apply = False
    _never_ready(standin)
    result = run("status", "torchserve", "--kubeconfig", str(kubeconfig), "--json")
    assert result.exit_code == 1
    out = json.loads(result.stdout)
    assert out["ready"] is False and out["diagnosis"] is not None


def test_deploy_a_layout_with_a_predictor_timeout(standin: StandInApiServer, kubeconfig: Path, tmp_path: Path):
    from test_deploy_layout import make_layout  # the deploy tests' hand-made layout

    layout = make_layout(tmp_path / "layout")
    result = run("deploy", str(layout), "--name", "torchserve", "--storage-uri", "pvc://leeway/bert",
                 "--predictor-timeout", "45", "--kubeconfig", str(kubeconfig), "--no-wait")
    assert result.exit_code == 0, result.output
    [patch] = [r for r in standin.requests if r.method == "PATCH" and "inferenceservices" in r.path]
    assert yaml.safe_load(patch.body)["spec"]["predictor"]["timeout"] == 45
