"""The hint rules (a pure function of the facts), fed with the texts the components really print.

Where the component is installed here and cheap to run, the text is produced by running it (kserve_storage's download,
botocore's error formatting); kserve's ModelNotFound text was read in kserve 0.21, and the TorchServe 0.12.0
frontend lines were captured from a real TorchServe run on this machine (token authorization, a wrapper polling an
unregistered model, a worker that cannot import its handler's module).
"""

# ruff: noqa: E501  (log lines are quoted whole, as the components print them)
from __future__ import annotations

import pytest
from botocore.exceptions import ClientError, EndpointConnectionError, NoCredentialsError

from toolkit._diagnose import RULES, ContainerReport, Facts, PodReport, condense, find_hints, pod_report, rules

WORKER_DIED_LOG = """\
2026-11-22T20:52:36,773 [INFO ] W-9000-bert_1.0-stdout MODEL_LOG - Backend worker process died.
2026-11-22T20:52:36,773 [INFO ] W-9000-bert_1.0-stdout MODEL_LOG - Traceback (most recent call last):
2026-11-22T20:52:36,781 [INFO ] W-9000-bert_1.0-stdout MODEL_LOG - ModuleNotFoundError: No module named 'transformers'
2026-11-22T20:52:36,793 [INFO ] W-9000-bert_1.0-stdout MODEL_LOG - ModuleNotFoundError: No module named 'ts.torch_handler.text'
2026-11-22T20:52:36,803 [WARN ] W-9000-bert_1.0 org.pytorch.serve.wlm.BatchAggregator - Load model failed: bert, error: Worker died.
"""
WRAPPER_UNKNOWN_MODEL_LOG = """\
INFO:root:Wrapper : Model names ['model'], inference address http://0.0.0.0:8085, management address http://0.0.0.0:8081, grpc_inference_address, 0.0.0.0:7070, model store /mnt/models/model-store
INFO:root:Loading model .. 1 of 10 tries..
2026-11-22T20:51:57,510 [INFO ] epollEventLoopGroup-3-2 ACCESS_LOG - /127.0.0.1:33582 "GET /models/model?customized=false HTTP/1.1" 404 2
INFO:root:0
INFO:root:Failed loading model model
"""


# What TorchServe 0.12.0's frontend logs when an archive of model_snapshot is not in the model store: the texts of
# org.pytorch.serve.archive.model.ModelArchive ("Model not found at: ") and org.pytorch.serve.ModelServer ("Failed to
# load model: "), read in the model-server.jar installed here.
MAR_MISSING_LOG = """\
2026-11-22T20:53:01,114 [WARN ] main org.pytorch.serve.ModelServer - Failed to load model: bert.mar
org.pytorch.serve.archive.model.ModelNotFoundException: Model not found at: bert.mar
"""


def keys(**facts) -> list[str]:
    return [h.key for h in find_hints(**facts)]


def test_storage_initializer_logs_of_the_real_download_code(storage_initializer_logs: dict[str, str]):
    assert keys(logs={"storage-initializer": storage_initializer_logs["no-credentials"]}) == ["s3-credentials"]
    assert keys(logs={"storage-initializer": storage_initializer_logs["no-bucket"]}) == ["s3-bucket"]
    assert keys(logs={"storage-initializer": storage_initializer_logs["empty-prefix"]}) == ["s3-empty"]


@pytest.mark.parametrize(
    ("error", "key"),
    [
        # What older storage-initializers (kserve <= 0.13, botocore tracebacks) end with, formatted by botocore.
        (ClientError({"Error": {"Code": "AccessDenied", "Message": "Access Denied"}}, "ListObjects"), "s3-credentials"),
        (
            ClientError(
                {
                    "Error": {
                        "Code": "InvalidAccessKeyId",
                        "Message": "The AWS Access Key Id you provided does not exist in our records.",
                    }
                },
                "ListObjects",
            ),
            "s3-credentials",
        ),
        (ClientError({"Error": {"Code": "403", "Message": "Forbidden"}}, "HeadBucket"), "s3-credentials"),
        (
            ClientError(
                {"Error": {"Code": "NoSuchBucket", "Message": "The specified bucket does not exist"}}, "ListObjects"
            ),
            "s3-bucket",
        ),
        (NoCredentialsError(), "s3-credentials"),
        (EndpointConnectionError(endpoint_url="http://minio.minio.svc:9000/models"), "s3-endpoint"),
    ],
)
def test_botocore_errors_in_the_storage_initializer_log(error: Exception, key: str):
    log = f"Traceback (most recent call last):\n  ...\nbotocore.exceptions.{type(error).__name__}: {error}\n"
    assert keys(logs={"storage-initializer": log}, storage_uri="s3://models/bert") == [key]


def test_storage_initializer_hints_need_the_storage_initializer_log():
    # The same words in the model server's log are not about staging.
    assert "s3-credentials" not in keys(logs={"kserve-container": "Access Denied"})


def test_worker_that_cannot_import_its_handler_module():
    hints = find_hints(logs={"kserve-container": WORKER_DIED_LOG})
    assert [h.key for h in hints] == ["missing-module"]
    # TorchServe's fallback import (ts.torch_handler.NAME) is not the module the handler lacks.
    assert "'transformers'" in hints[0].problem
    assert "requirements" in hints[0].fix and "install_py_dep_per_model=true" in hints[0].fix


def test_worker_died_without_a_missing_module():
    log = "\n".join(line for line in WORKER_DIED_LOG.splitlines() if "No module" not in line)
    assert keys(logs={"kserve-container": log}) == ["worker-died"]


def test_wrapper_polling_a_model_torchserve_did_not_register():
    hints = find_hints(logs={"kserve-container": WRAPPER_UNKNOWN_MODEL_LOG})
    assert [h.key for h in hints] == ["wrapper-model-name"]
    assert "asks TorchServe for model 'model'" in hints[0].problem
    assert "the wrapper read the names ['model']" in hints[0].problem


def test_model_name_mismatch_says_which_name_is_served():
    # The text of kserve.errors.ModelNotFound (kserve 0.21, read here); importing kserve just for it takes seconds.
    not_found = "Model with name torchserve does not exist."
    log = (
        "INFO:root:Wrapper : Model names ['bert'], inference address http://0.0.0.0:8085, management address "
        "http://0.0.0.0:8081, grpc_inference_address, 0.0.0.0:7070, model store /mnt/models/model-store\n"
        f"ERROR:kserve: {not_found}\n"
    )
    (hint,) = find_hints(logs={"kserve-container": log}, isvc_name="torchserve")
    assert hint.key == "model-name" and not hint.fatal
    assert "asked for model 'torchserve'" in hint.problem and "(the InferenceService is 'torchserve')" in hint.problem
    assert "it is served as 'bert'" in hint.problem
    assert "/v1/models/bert:predict" in hint.fix


def test_wrapper_missing_config_key():
    log = (
        "Traceback (most recent call last):\n"
        '  File "/home/model-server/kserve_wrapper/__main__.py", line 22, in parse_config\n'
        "KeyError: 'grpc_inference_port'\n"
    )
    (hint,) = find_hints(logs={"kserve-container": log})
    assert hint.key == "config-key" and "grpc_inference_port" in hint.problem


def test_token_banner_alone_is_not_a_failure():
    banner = "TorchServe now enforces token authorization by default.\nINFO:root:The model bert is ready\n"
    assert keys(logs={"kserve-container": banner}) == []
    assert keys(logs={"kserve-container": banner + "INFO:root:Failed loading model bert\n"}) == ["token-auth"]


def _container(**kw) -> ContainerReport:
    base = {"pod": "p", "name": "kserve-container", "init": False, "state": "running"}
    return ContainerReport(**(base | kw))


def test_container_states():
    oom = _container(
        state="waiting", reason="CrashLoopBackOff", restarts=2, last_reason="OOMKilled", memory_limit="2Gi"
    )
    assert oom.failing == "kserve-container is CrashLoopBackOff"
    assert keys(containers=[oom]) == ["oom"]
    cpu_image = _container(state="waiting", reason="ErrImagePull", image="pytorch/torchserve-kfs:0.14.0")
    assert cpu_image.failing is None  # ErrImagePull may be a registry hiccup; ImagePullBackOff follows if not
    (hint,) = find_hints(containers=[cpu_image])
    assert "with a GPU request, runtimeVersion must name the -gpu tag (e.g. 0.12.0-gpu)" in hint.fix
    other = _container(
        state="waiting",
        reason="ImagePullBackOff",
        image="registry.local/private:1",
        init=True,
        name="storage-initializer",
    )
    (hint,) = find_hints(containers=[other])
    assert "imagePullSecrets" in hint.fix and hint.problem.startswith("init storage-initializer cannot pull")
    failed_init = _container(name="storage-initializer", init=True, state="terminated", reason="Error", exit_code=1)
    assert failed_init.failing == "init storage-initializer failed (Error, exit code 1)"
    assert (
        _container(name="storage-initializer", init=True, state="terminated", reason="Completed", exit_code=0).failing
        is None
    )


def test_events_and_scheduling():
    events = [
        "Warning FailedMount pod/p: Unable to attach or mount volumes: unmounted volumes=[kserve-pvc-source], "
        'error processing PVC kubeflow-user-example-com/leeway: persistentvolumeclaim "leeway" not found',
        'Warning FailedAttachVolume pod/p: Multi-Attach error for volume "pvc-123" Volume is already used by pod(s) '
        "notebook-0",
    ]
    assert keys(events=events) == ["pvc-missing", "pvc-attached"]
    gpu = PodReport("p", "Pending", (), unschedulable="0/2 nodes are available: 2 Insufficient nvidia.com/gpu.")
    (hint,) = find_hints(pods=[gpu])
    assert hint.key == "unschedulable" and "GPUs (nvidia.com/gpu)" in hint.fix


def test_runtime_failure_from_the_model_status():
    (hint,) = find_hints(model_failure="NoSupportingRuntime Specified runtime does not support specified framework")
    assert hint.key == "runtime" and "kserve-torchserve" in hint.fix


def test_pod_report_of_a_pod_not_yet_scheduled_lists_its_containers():
    raw = {
        "metadata": {"name": "p"},
        "spec": {
            "initContainers": [{"name": "storage-initializer", "image": "kserve/storage-initializer:v0.15.0"}],
            "containers": [
                {
                    "name": "kserve-container",
                    "image": "pytorch/torchserve-kfs:0.12.0",
                    "resources": {"limits": {"memory": "2Gi"}},
                }
            ],
        },
        "status": {"phase": "Pending"},
    }
    report = pod_report(raw)
    assert [(c.label, c.state, c.memory_limit) for c in report.containers] == [
        ("init storage-initializer", "waiting", None),
        ("kserve-container", "waiting", "2Gi"),
    ]


def test_condense_folds_traceback_frames_and_keeps_the_messages(storage_initializer_logs: dict[str, str]):
    lines = storage_initializer_logs["no-credentials"].splitlines()
    short = condense(lines)
    assert not any(line.lstrip().startswith('File "') for line in short)
    assert [line for line in lines if not line.startswith(" ")] == [line for line in short if not line.startswith(" ")]
    assert sum(int(line.split("(")[1].split()[0]) for line in short if "traceback frame" in line) == sum(
        1 for line in lines if line.lstrip().startswith('File "')
    )


def test_hint_quotes_the_message_without_the_log_prefix(storage_initializer_logs: dict[str, str]):
    (hint,) = find_hints(logs={"storage-initializer": storage_initializer_logs["no-bucket"]})
    assert "(S3 error for s3://no-such-bucket/bert: An error occurred (404) when calling the HeadBucket operation" in (
        hint.problem
    )


# -- one rule, one case: every rule of the table alone, on a real text ------------------------------------------------
def _torchserve_without_a_layout(tmp_path) -> str:
    """The real TorchServe launcher's words when /mnt/models holds no layout (storageUri at the wrong level)."""
    import subprocess
    import sys
    from pathlib import Path

    env = {"PATH": "/usr/bin:/bin", "TMPDIR": str(tmp_path), "HOME": str(tmp_path)}
    launched = subprocess.run(
        [str(Path(sys.executable).parent / "torchserve"), "--start", "--ncs", "--model-store=/mnt/models/model-store",
         "--ts-config=/mnt/models/config/config.properties"],
        env=env, capture_output=True, text=True, timeout=60,
    )
    assert launched.returncode != 0
    return launched.stdout + launched.stderr


def _serve_log(text: str) -> Facts:
    return Facts(logs={"kserve-container": text})


def _init_log(text: str) -> Facts:
    return Facts(logs={"storage-initializer": text}, storage_uri="s3://models/bert")


WRAPPER_KEY_LOG = "Traceback (most recent call last):\nKeyError: 'model_snapshot'\n"
TOKEN_LOG = (
    "2026-11-22T20:51:57,510 [INFO ] epollEventLoopGroup-3-2 ACCESS_LOG - /127.0.0.1:33582 "
    '"GET /models/bert?customized=false HTTP/1.1" 400 2\n'
)
NAME_LOG = "INFO:root:Wrapper : Model names ['bert'], inference address http://0.0.0.0:8085\nModel not found: bertt\n"

CASES = {
    rules.s3_credentials: lambda logs, tmp: _init_log(logs["no-credentials"]),
    rules.s3_bucket: lambda logs, tmp: _init_log(logs["no-bucket"]),
    rules.s3_empty: lambda logs, tmp: _init_log(logs["empty-prefix"]),
    rules.s3_endpoint: lambda logs, tmp: _init_log(
        f"botocore.exceptions.EndpointConnectionError: {EndpointConnectionError(endpoint_url='http://minio:9000/m')}"
    ),
    rules.storage_uri_level: lambda logs, tmp: _serve_log(_torchserve_without_a_layout(tmp)),
    rules.config_key: lambda logs, tmp: _serve_log(WRAPPER_KEY_LOG),
    rules.mar_missing: lambda logs, tmp: _serve_log(MAR_MISSING_LOG),
    rules.token_auth: lambda logs, tmp: _serve_log(TOKEN_LOG),
    rules.model_name: lambda logs, tmp: _serve_log(NAME_LOG),
    rules.wrapper_model_name: lambda logs, tmp: _serve_log(WRAPPER_UNKNOWN_MODEL_LOG),
    rules.missing_module: lambda logs, tmp: _serve_log(WORKER_DIED_LOG),
    rules.worker_died: lambda logs, tmp: _serve_log(
        "\n".join(line for line in WORKER_DIED_LOG.splitlines() if "No module" not in line)
    ),
    rules.oom: lambda logs, tmp: Facts(containers=(_container(state="terminated", reason="OOMKilled"),)),
    rules.image: lambda logs, tmp: Facts(
        containers=(_container(state="waiting", reason="ImagePullBackOff", image="pytorch/torchserve-kfs:0.12.0"),)
    ),
    rules.unschedulable: lambda logs, tmp: Facts(
        pods=(PodReport("p", "Pending", (), unschedulable="0/2 nodes are available: 2 Insufficient cpu."),)
    ),
    rules.pvc_missing: lambda logs, tmp: Facts(
        events=('Warning FailedMount pod/p: persistentvolumeclaim "leeway" not found',)
    ),
    rules.pvc_attached: lambda logs, tmp: Facts(
        events=('Warning FailedAttachVolume pod/p: Multi-Attach error for volume "pvc-123"',)
    ),
    rules.runtime: lambda logs, tmp: Facts(model_failure="RuntimeNotRecognized Waiting for runtime to become available"),
}
RULE_KEYS = {
    rules.s3_credentials: "s3-credentials", rules.s3_bucket: "s3-bucket", rules.s3_empty: "s3-empty",
    rules.s3_endpoint: "s3-endpoint", rules.storage_uri_level: "storage-uri-level", rules.config_key: "config-key",
    rules.mar_missing: "mar-missing", rules.token_auth: "token-auth", rules.model_name: "model-name",
    rules.wrapper_model_name: "wrapper-model-name", rules.missing_module: "missing-module",
    rules.worker_died: "worker-died", rules.oom: "oom", rules.image: "image", rules.unschedulable: "unschedulable",
    rules.pvc_missing: "pvc-missing", rules.pvc_attached: "pvc-attached", rules.runtime: "runtime",
}


def test_every_rule_of_the_table_has_its_case():
    assert set(CASES) == set(RULES) == set(RULE_KEYS)


@pytest.mark.parametrize("rule", RULES, ids=lambda rule: rule.__name__)
def test_each_rule_alone(rule, storage_initializer_logs: dict[str, str], tmp_path):
    facts = CASES[rule](storage_initializer_logs, tmp_path)
    hint = rule(facts)
    assert hint is not None and hint.key == RULE_KEYS[rule]
    assert hint.problem and hint.fix
    assert rule(Facts()) is None  # nothing to read, nothing to say
    # Through the table the rule's hint comes out first; more specific rules may add theirs after.
    assert find_hints(logs=facts.logs, containers=facts.containers, pods=facts.pods, events=facts.events,
                      storage_uri=facts.storage_uri, model_failure=facts.model_failure)[0] == hint


def test_the_wrong_storage_uri_level_quotes_torchserves_line(tmp_path):
    hint = rules.storage_uri_level(_serve_log(_torchserve_without_a_layout(tmp_path)))
    assert hint is not None
    assert "--ts-config file not found: /mnt/models/config/config.properties" in hint.problem
    assert "model-store/" in hint.fix


def test_an_archive_missing_from_the_model_store():
    (hint,) = find_hints(logs={"kserve-container": MAR_MISSING_LOG})
    assert hint.key == "mar-missing" and "Failed to load model: bert.mar" in hint.problem


def test_hints_serialise():
    (hint,) = find_hints(logs={"kserve-container": WRAPPER_KEY_LOG})
    assert hint.to_dict() == {"key": "config-key", "problem": hint.problem, "fix": hint.fix, "fatal": True}


def test_a_diagnosis_serialises_with_its_pods_logs_and_hints():
    import json

    from toolkit._diagnose import Condition, Diagnosis, LogTail

    pod = pod_report({
        "metadata": {"name": "p", "creationTimestamp": "2026-11-22T20:50:00Z"},
        "spec": {"containers": [{"name": "kserve-container", "resources": {"limits": {"memory": "2Gi"}}}]},
        "status": {"phase": "Running", "containerStatuses": [{
            "name": "kserve-container", "restartCount": 2, "ready": False,
            "state": {"waiting": {"reason": "CrashLoopBackOff"}},
            "lastState": {"terminated": {"reason": "OOMKilled", "exitCode": 137}},
        }]},
    })
    diag = Diagnosis(
        name="bert", namespace="ns", conditions=[Condition("Ready", "False", "RevisionMissing")], pods=[pod],
        logs=[LogTail("p", "kserve-container", True, ("a line",))], events=["Warning BackOff pod/p: restarting"],
        hints=find_hints(containers=pod.containers),
    )
    data = diag.to_dict()
    assert json.loads(json.dumps(data)) == data
    assert data["conditions"] == [{"type": "Ready", "status": "False", "reason": "RevisionMissing", "message": ""}]
    (container,) = data["pods"][0]["containers"]
    assert container["last_reason"] == "OOMKilled" and container["memory_limit"] == "2Gi" and container["restarts"] == 2
    assert data["logs"] == [{"pod": "p", "container": "kserve-container", "previous": True, "lines": ["a line"]}]
    assert [h["key"] for h in data["hints"]] == ["oom"]
