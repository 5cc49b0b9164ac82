"""deploy/status/delete against the stand-in API server: what is sent, how waiting ends, what the diagnosis says."""

from __future__ import annotations

import subprocess
import sys
import traceback
from pathlib import Path
from typing import Any

import pytest
import yaml
from k8s_support import (
    NAMESPACE,
    POD,
    TOKEN_LOG,
    Frame,
    StandInApiServer,
    cond,
    event,
    exited,
    isvc_manifest,
    pod,
    ready_status,
    running,
    s3_companions,
    terminated,
    waiting,
)

from toolkit import DeployError
from toolkit._deploy import DeployEvent, deploy, status
from toolkit._kube import NO_KSERVE, connect

FAST = {"poll_interval": 0.01}

def _frames_to_ready(name: str = "torchserve") -> list[Frame]:
    init_running = pod(
        POD,
        name,
        init=[running("storage-initializer", ready=False)],
        containers=[waiting("kserve-container", "PodInitializing")],
    )
    serving = pod(
        POD,
        name,
        phase="Running",
        init=[terminated("storage-initializer", "Completed", 0)],
        containers=[running("kserve-container", ready=True)],
    )
    return [
        Frame(),
        Frame(
            status={
                "conditions": [
                    cond("PredictorReady", "Unknown", "RevisionMissing", "Configuration is waiting for a Revision"),
                    cond("Ready", "Unknown", "RevisionMissing", "Configuration is waiting for a Revision"),
                ]
            },
            pods=[init_running],
        ),
        Frame(
            status={
                "conditions": [
                    cond("IngressReady", "False", "IngressNotConfigured"),
                    cond("PredictorReady"),
                    cond("Ready", "False", "IngressNotConfigured", "Ingress has not yet been reconciled."),
                ]
            },
            pods=[serving],
        ),
        Frame(status=ready_status(name), pods=[serving]),
    ]


def _write(path: Path, docs: list[dict[str, Any]]) -> Path:
    path.write_text(yaml.safe_dump_all(docs, sort_keys=False), encoding="utf-8")
    return path


def _applies(standin: StandInApiServer) -> list[Any]:
    return [r for r in standin.requests if r.method == "PATCH"]


# -- (1) ready after a few status updates --------------------------------------------------------------------------
def test_deploy_applies_in_order_and_waits_until_ready(standin: StandInApiServer, api_client: Any, tmp_path: Path):
    standin.frames = _frames_to_ready()
    manifest = _write(tmp_path / "isvc.yaml", [isvc_manifest(storage_uri="s3://models/bert"), *s3_companions()])
    events: list[DeployEvent] = []

    result = deploy(manifest, api_client=api_client, on_event=events.append, **FAST)

    assert result.ready
    assert result.url == f"http://torchserve.{NAMESPACE}.example.com"
    assert result.address == f"http://torchserve-predictor.{NAMESPACE}.svc.cluster.local"
    assert result.applied == (
        "Secret/torchserve-s3 created",
        "ServiceAccount/torchserve-sa created",
        "InferenceService/torchserve created",
    )
    # The live view: every condition change once, in order, then the URL.
    messages = [e.message for e in events]
    changes = [(e.condition.type, e.condition.status) for e in events if e.condition]
    assert changes == [
        ("PredictorReady", "Unknown"),
        ("Ready", "Unknown"),
        ("IngressReady", "False"),
        ("PredictorReady", "True"),
        ("Ready", "False"),
        ("IngressReady", "True"),
        ("PredictorConfigurationReady", "True"),
        ("PredictorRouteReady", "True"),
        ("Ready", "True"),
    ]
    assert messages[-1] == f"ready: http://torchserve.{NAMESPACE}.example.com"
    assert any(e.kind == "pods" and "storage-initializer running" in e.message for e in events)
    assert [e.elapsed for e in events] == sorted(e.elapsed for e in events)

    # What the API server received: discovery first, then one server-side apply per object, in apply order.
    first_patch = standin.requests.index(_applies(standin)[0])
    assert any(r.path == "/apis/serving.kserve.io/v1beta1" for r in standin.requests[:first_patch])
    paths = [r.path for r in _applies(standin)]
    assert paths == [
        f"/api/v1/namespaces/{NAMESPACE}/secrets/torchserve-s3",
        f"/api/v1/namespaces/{NAMESPACE}/serviceaccounts/torchserve-sa",
        f"/apis/serving.kserve.io/v1beta1/namespaces/{NAMESPACE}/inferenceservices/torchserve",
    ]
    for r in _applies(standin):
        assert r.headers["content-type"] == "application/apply-patch+yaml"
        assert r.query["fieldManager"] == ["mar-build"]
        assert r.query["force"] == ["true"]
    assert _applies(standin)[-1].json() == isvc_manifest(storage_uri="s3://models/bert")
    assert standin.isvc("torchserve")["metadata"]["managedFields"][0]["manager"] == "mar-build"


def test_deploy_of_an_update_does_not_trust_the_previous_generations_ready(standin: StandInApiServer, api_client: Any):
    old = isvc_manifest()
    old["metadata"].update(generation=1, resourceVersion="7", uid="u1")
    old["status"] = ready_status("torchserve") | {"observedGeneration": 1}
    standin.put_isvc("torchserve", old)
    rolling = Frame(status={"conditions": [cond("PredictorReady", "False", "RevisionMissing"), cond("Ready", "False")]})
    standin.frames = [
        Frame(status=ready_status("torchserve"), stale=True),
        rolling,
        Frame(status=ready_status("torchserve")),
    ]
    new = isvc_manifest(storage_uri="pvc://leeway/bert-v2")
    events: list[DeployEvent] = []

    result = deploy([new], api_client=api_client, on_event=events.append, **FAST)

    assert result.ready and result.applied == ("InferenceService/torchserve configured",)
    assert standin.isvc("torchserve")["metadata"]["generation"] == 2
    # It saw the rollout (Ready False) before it reported ready: the stale Ready=True did not end the wait.
    ready_states = [e.condition.status for e in events if e.condition and e.condition.type == "Ready"]
    assert ready_states == ["True", "False", "True"]
    assert standin.frame_index == 3


def test_redeploying_a_fix_is_not_failed_by_the_old_crash_looping_pod(standin: StandInApiServer, api_client: Any):
    broken = isvc_manifest(storage_uri="s3://models/bert/model-store")
    broken["metadata"].update(generation=1)
    broken["status"] = {
        "observedGeneration": 1,
        "conditions": [cond("Ready", "False", "RevisionFailed")],
        "modelStatus": {"transitionStatus": "BlockedByFailedLoad"},
    }
    standin.put_isvc("torchserve", broken)
    standin.now = "2026-01-01T01:00:00Z"
    old = pod(
        "torchserve-predictor-00001-deployment-old",
        "torchserve",
        phase="Running",
        created="2026-01-01T00:00:00Z",
        containers=[waiting("kserve-container", "CrashLoopBackOff", restarts=9, last=exited("Error", 1))],
    )
    new = pod(
        POD,
        "torchserve",
        created="2026-01-01T01:00:02Z",
        init=[running("storage-initializer", ready=False)],
        containers=[waiting("kserve-container", "PodInitializing")],
    )
    stale = Frame(status=broken["status"], pods=[old], stale=True)
    standin.frames = [
        stale,
        Frame(status={"conditions": [cond("Ready", "False")]}, pods=[old, new]),
        Frame(status=ready_status("torchserve"), pods=[new]),
    ]
    result = deploy(isvc_manifest(storage_uri="s3://models/bert"), api_client=api_client, **FAST)
    assert result.ready and result.applied == ("InferenceService/torchserve configured",)


def test_redeploying_the_same_spec_fails_on_its_crash_looping_pod(standin: StandInApiServer, api_client: Any):
    same = isvc_manifest()
    same["metadata"].update(generation=1)
    standin.put_isvc("torchserve", same)
    standin.now = "2026-01-01T01:00:00Z"
    old = pod(
        POD,
        "torchserve",
        phase="Running",
        created="2026-01-01T00:00:00Z",
        containers=[waiting("kserve-container", "CrashLoopBackOff", restarts=9, last=exited("Error", 1))],
    )
    standin.frames = [Frame(status={"conditions": [cond("Ready", "False")]}, pods=[old])]
    with pytest.raises(DeployError, match="kserve-container is CrashLoopBackOff"):
        deploy(isvc_manifest(), api_client=api_client, timeout=60, **FAST)


def test_deploy_without_wait_returns_after_applying(standin: StandInApiServer, api_client: Any):
    standin.frames = _frames_to_ready()
    result = deploy(isvc_manifest(), api_client=api_client, wait=False)
    assert not result.ready and result.url is None
    assert standin.calls("GET", "inferenceservices/torchserve$") == []


# -- (2) a failing storage-initializer -----------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("case", "hint_key", "fix_words"),
    [
        ("no-credentials", "s3-credentials", ["AWS_ACCESS_KEY_ID", "serviceAccountName"]),
        ("no-bucket", "s3-bucket", ["bucket name", "s3-endpoint"]),
        ("empty-prefix", "s3-empty", ["mar-build stage"]),
    ],
)
def test_failing_storage_initializer_is_diagnosed(
    standin: StandInApiServer,
    api_client: Any,
    storage_initializer_logs: dict[str, str],
    case: str,
    hint_key: str,
    fix_words: list[str],
):
    log = storage_initializer_logs[case]
    failed = pod(
        POD,
        "torchserve",
        init=[terminated("storage-initializer", "Error", 1, restarts=0)],
        containers=[waiting("kserve-container", "PodInitializing")],
    )
    standin.frames = [
        Frame(status={"conditions": [cond("PredictorReady", "Unknown"), cond("Ready", "Unknown")]}),
        Frame(
            status={"conditions": [cond("PredictorReady", "Unknown"), cond("Ready", "Unknown")]},
            pods=[failed],
            logs={(POD, "storage-initializer", False): log},
            events=[
                event(
                    "Pod",
                    POD,
                    "BackOff",
                    f"Back-off restarting failed container storage-initializer in pod {POD}_{NAMESPACE}(uid)",
                    count=3,
                )
            ],
        ),
    ]
    with pytest.raises(DeployError) as info:
        deploy(isvc_manifest(storage_uri="s3://models/bert"), api_client=api_client, timeout=60, **FAST)
    err = info.value
    # It stopped at the failure, not at the timeout.
    assert "is not ready: init storage-initializer failed (Error, exit code 1)" in err.message
    text = "\n".join(err.diagnosis)
    assert "init storage-initializer" in text and "terminated Error, exit code 1" in text
    assert "storage-initializer log (last" in text
    assert log.strip().splitlines()[-1] in text  # the RuntimeError line the initializer ended with
    assert "Warning BackOff pod/" in text and "(x3)" in text
    assert err.hint is not None
    for word in fix_words:
        assert word in err.hint
    assert "s3://models/bert" in err.hint or hint_key == "s3-bucket"


# -- (3) a crash-looping kserve-container --------------------------------------------------------------------------
def _wrong_level_log(tmp_path: Path) -> str:
    """What the kserve-container prints when /mnt/models holds no config/: the real TorchServe launcher's line and
    the real FileNotFoundError of the wrapper's open() of the config path."""
    env = {"PATH": "/usr/bin:/bin", "TMPDIR": str(tmp_path), "HOME": str(tmp_path)}
    torchserve = Path(sys.executable).parent / "torchserve"
    launched = subprocess.run(
        [
            str(torchserve),
            "--start",
            "--ncs",
            "--model-store=/mnt/models/model-store",
            "--ts-config=/mnt/models/config/config.properties",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert launched.returncode != 0
    try:
        open("/mnt/models/config/config.properties")  # noqa: SIM115 - we want the error
    except FileNotFoundError:
        wrapper = "".join(traceback.format_exc())
    return (
        launched.stdout + launched.stderr + "INFO:root:Wrapper: loading configuration from "
        "/mnt/models/config/config.properties\n" + wrapper
    )


def test_crash_looping_kserve_container_with_wrong_storage_uri_level(
    standin: StandInApiServer, api_client: Any, tmp_path: Path
):
    log = _wrong_level_log(tmp_path)
    crashing = pod(
        POD,
        "torchserve",
        phase="Running",
        init=[terminated("storage-initializer", "Completed", 0)],
        containers=[
            waiting(
                "kserve-container",
                "CrashLoopBackOff",
                f"back-off 40s restarting failed container=kserve-container pod={POD}",
                restarts=3,
                last=exited("Error", 1),
            )
        ],
    )
    standin.frames = [
        Frame(
            status={
                "conditions": [
                    cond(
                        "PredictorReady",
                        "False",
                        "RevisionFailed",
                        'Revision "torchserve-predictor-00001" failed with message: .',
                    ),
                    cond("Ready", "False", "RevisionFailed"),
                ],
                "modelStatus": {
                    "states": {"activeModelState": "", "targetModelState": "FailedToLoad"},
                    "transitionStatus": "BlockedByFailedLoad",
                    "lastFailureInfo": {"reason": "ModelLoadFailed", "message": "Container exited", "exitCode": 1},
                },
            },
            pods=[crashing],
            logs={(POD, "kserve-container", True): log, (POD, "storage-initializer", False): "done\n"},
        )
    ]
    with pytest.raises(DeployError) as info:
        deploy(isvc_manifest(storage_uri="s3://models/bert/model-store"), api_client=api_client, **FAST)
    err = info.value
    text = "\n".join(err.diagnosis)
    assert "KServe reports BlockedByFailedLoad" in err.message
    assert "model status: FailedToLoad (BlockedByFailedLoad): ModelLoadFailed: Container exited (exit code 1)" in text
    assert "kserve-container           waiting CrashLoopBackOff, 3 restarts, last exit: Error (exit code 1)" in text
    assert "previous run of kserve-container log" in text
    assert "--ts-config file not found: /mnt/models/config/config.properties" in text
    # The previous run's log was asked for, as `kubectl logs --previous` would.
    logs = standin.calls("GET", f"pods/{POD}/log")
    assert any(r.query.get("previous", [""])[0].lower() == "true" and r.query["container"] == ["kserve-container"]
               for r in logs)
    assert "config/config.properties and model-store/" in err.hint
    assert "s3://models/bert/model-store" in err.hint


def test_unready_server_with_token_auth_ends_the_wait_with_its_hint(standin: StandInApiServer, api_client: Any):
    unready = pod(
        POD,
        "torchserve",
        phase="Running",
        init=[terminated("storage-initializer", "Completed", 0)],
        containers=[running("kserve-container", ready=False)],
    )
    standin.frames = [
        Frame(
            status={"conditions": [cond("PredictorReady", "False", "RevisionMissing"), cond("Ready", "False")]},
            pods=[unready],
            logs={(POD, "kserve-container", False): TOKEN_LOG},
        )
    ]
    with pytest.raises(DeployError) as info:
        deploy(isvc_manifest(), api_client=api_client, timeout=60, **FAST)
    err = info.value
    assert "TorchServe enforces token authorization" in err.message
    assert "disable_token_authorization=true" in err.hint
    assert '"GET /models/bert?customized=false HTTP/1.1" 400' in err.hint


# -- (4) OOMKilled -------------------------------------------------------------------------------------------------
def test_oom_killed_container_gets_the_memory_hint(standin: StandInApiServer, api_client: Any):
    oom = pod(
        POD,
        "torchserve",
        phase="Running",
        memory_limit="2Gi",
        init=[terminated("storage-initializer", "Completed", 0)],
        containers=[waiting("kserve-container", "CrashLoopBackOff", restarts=2, last=exited("OOMKilled", 137))],
    )
    standin.frames = [
        Frame(
            status={"conditions": [cond("Ready", "False")]},
            pods=[oom],
            logs={(POD, "kserve-container", True): "Model bert loaded.\n"},
        )
    ]
    with pytest.raises(DeployError) as info:
        deploy(isvc_manifest(), api_client=api_client, **FAST)
    err = info.value
    assert "kserve-container is CrashLoopBackOff" in err.message
    assert "last exit: OOMKilled (exit code 137)" in "\n".join(err.diagnosis)
    assert "kserve-container was OOMKilled (memory limit 2Gi)" in err.hint
    assert "raise the memory limit" in err.hint


def test_image_pull_failure_names_the_runtime_version(standin: StandInApiServer, api_client: Any):
    pulling = pod(
        POD,
        "torchserve",
        image="pytorch/torchserve-kfs:0.13.0-gpu",
        init=[terminated("storage-initializer", "Completed", 0)],
        containers=[
            waiting(
                "kserve-container", "ImagePullBackOff", 'Back-off pulling image "pytorch/torchserve-kfs:0.13.0-gpu"'
            )
        ],
    )
    standin.frames = [Frame(status={"conditions": [cond("Ready", "False")]}, pods=[pulling])]
    with pytest.raises(DeployError) as info:
        deploy(isvc_manifest(), api_client=api_client, **FAST)
    assert "kserve-container is ImagePullBackOff" in info.value.message
    assert "cannot pull image pytorch/torchserve-kfs:0.13.0-gpu" in info.value.hint
    assert "runtimeVersion" in info.value.hint and "0.13.0-gpu is not a published GPU tag" in info.value.hint


def test_timeout_reports_the_state_it_was_stuck_in(standin: StandInApiServer, api_client: Any):
    stuck = pod(
        POD,
        "torchserve",
        conditions=[cond("PodScheduled", "False", "Unschedulable", "0/3 nodes are available: 3 Insufficient memory.")],
    )
    standin.frames = [Frame(status={"conditions": [cond("Ready", "Unknown")]}, pods=[stuck])]
    with pytest.raises(DeployError) as info:
        deploy(isvc_manifest(), api_client=api_client, timeout=0.2, poll_interval=0.02)
    err = info.value
    assert err.message.startswith(f"InferenceService {NAMESPACE}/torchserve is not ready after 0.2 s")
    assert "unschedulable: 0/3 nodes are available: 3 Insufficient memory." in "\n".join(err.diagnosis)
    assert "lower resources.requests" in err.hint


# -- (5) no KServe, (6) RBAC, unreachable, kubeconfig --------------------------------------------------------------
def test_cluster_without_kserve_gets_a_clear_error_and_nothing_applied(standin: StandInApiServer, api_client: Any):
    standin.kserve_installed = False
    with pytest.raises(DeployError) as info:
        deploy([isvc_manifest(), *s3_companions()], api_client=api_client, **FAST)
    assert info.value.message == NO_KSERVE
    assert NO_KSERVE == "KServe is not installed in this cluster (no serving.kserve.io/v1beta1 InferenceService)"
    assert _applies(standin) == []
    with pytest.raises(DeployError, match="KServe is not installed"):
        status("torchserve", NAMESPACE, api_client=api_client)


def test_forbidden_apply_names_the_missing_permission(standin: StandInApiServer, api_client: Any):
    standin.forbid.add(("patch", "inferenceservices"))
    with pytest.raises(DeployError) as info:
        deploy(isvc_manifest(), api_client=api_client, **FAST)
    err = info.value
    assert err.message.startswith("forbidden: patch inferenceservices.serving.kserve.io torchserve")
    assert 'cannot patch resource "inferenceservices"' in err.message
    assert "lacks 'patch' on inferenceservices.serving.kserve.io in namespace kubeflow-user-example-com" in err.hint
    assert f"kubectl auth can-i patch inferenceservices.serving.kserve.io -n {NAMESPACE}" in err.hint


def test_forbidden_logs_and_events_become_lines_not_failures(standin: StandInApiServer, api_client: Any):
    standin.forbid |= {("get", "pods/log"), ("list", "events")}
    crashing = pod(
        POD,
        "torchserve",
        phase="Running",
        containers=[waiting("kserve-container", "CrashLoopBackOff", restarts=1, last=exited("Error", 1))],
    )
    standin.frames = [Frame(status={"conditions": [cond("Ready", "False")]}, pods=[crashing])]
    with pytest.raises(DeployError) as info:
        deploy(isvc_manifest(), api_client=api_client, **FAST)
    text = "\n".join(info.value.diagnosis)
    assert f"could not read logs of {POD}/kserve-container: forbidden (get pods/log)" in text
    assert "could not read events: forbidden (list events)" in text
    assert "kubectl auth can-i get pods/log" in info.value.hint


def test_missing_namespace_is_named(standin: StandInApiServer, api_client: Any):
    standin.missing_namespaces.add("team-x")
    doc = isvc_manifest()
    del doc["metadata"]["namespace"]
    with pytest.raises(DeployError) as info:
        deploy(doc, namespace="team-x", api_client=api_client, **FAST)
    assert 'namespaces "team-x" not found' in info.value.message
    assert "kubectl create namespace team-x" in info.value.hint


def test_unreachable_api_server_names_the_server(port: int):
    from kubernetes import client

    host = f"http://127.0.0.1:{port}"  # free a moment ago: nothing listens there
    api = client.ApiClient(client.Configuration(host=host))
    with pytest.raises(DeployError) as info:
        status("torchserve", NAMESPACE, api_client=api)
    assert f"cannot reach the Kubernetes API server (API server {host})" in info.value.message
    assert "kubectl cluster-info" in info.value.hint


def test_kubeconfig_problems_are_named(tmp_path: Path, kubeconfig: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    missing = tmp_path / "nope"
    with pytest.raises(DeployError, match=f"no kubeconfig file at {missing}"):
        connect(kubeconfig=missing)
    with pytest.raises(DeployError) as info:
        connect(kubeconfig=kubeconfig, context="prod")
    assert "has no context 'prod' (contexts: other, stand-in)" in info.value.message
    cluster = connect(kubeconfig=kubeconfig)
    assert (cluster.context, cluster.default_namespace) == ("stand-in", NAMESPACE)
    assert connect(kubeconfig=kubeconfig, context="other").default_namespace == "default"
    monkeypatch.setenv("KUBECONFIG", str(kubeconfig))
    assert connect().context == "stand-in"
