"""status and delete; the results deploy and status return (as `--json` prints them); names refused before any
request is sent."""

from __future__ import annotations

import json
from typing import Any

import pytest
from k8s_support import (
    NAMESPACE,
    POD,
    TOKEN_LOG,
    Frame,
    StandInApiServer,
    cond,
    isvc_manifest,
    pod,
    ready_status,
    running,
)

from toolkit import DeployError, SpecError
from toolkit._deploy import DeployResult, IsvcStatus, delete, deploy, status

FAST = {"poll_interval": 0.01}


def test_deploy_result_to_dict_is_its_json(standin: StandInApiServer, api_client: Any) -> None:
    standin.frames = [Frame(status=ready_status("torchserve"))]
    result = deploy(isvc_manifest(), api_client=api_client, **FAST)
    out = result.to_dict()
    assert json.loads(json.dumps(out)) == out
    assert out["name"] == "torchserve" and out["namespace"] == NAMESPACE and out["ready"] is True
    assert out["url"] == f"http://torchserve.{NAMESPACE}.example.com"
    assert out["address"] == f"http://torchserve-predictor.{NAMESPACE}.svc.cluster.local"
    assert out["applied"] == ["InferenceService/torchserve created"]
    assert out["conditions"][-1] == {"type": "Ready", "status": "True", "reason": "", "message": ""}
    assert out["elapsed"] == result.elapsed >= 0
    assert set(out) == {f for f in DeployResult.__dataclass_fields__}


def test_isvc_status_to_dict_is_its_json(standin: StandInApiServer, api_client: Any) -> None:
    obj = isvc_manifest()
    obj["status"] = ready_status("torchserve")
    standin.put_isvc("torchserve", obj)
    out = status("torchserve", NAMESPACE, api_client=api_client).to_dict()
    assert json.loads(json.dumps(out)) == out
    assert set(out) == {f for f in IsvcStatus.__dataclass_fields__}
    assert out["components"] == [
        {
            "name": "predictor",
            "url": f"http://torchserve-predictor.{NAMESPACE}.example.com",
            "latest_created_revision": "torchserve-predictor-00001",
            "latest_ready_revision": "torchserve-predictor-00001",
            "traffic": [{"revision": "torchserve-predictor-00001", "percent": 100, "latest": True, "tag": None}],
        }
    ]
    assert out["deployment_mode"] == "Serverless" and out["diagnosis"] is None


def test_isvc_status_to_dict_carries_the_diagnosis_as_text(standin: StandInApiServer, api_client: Any) -> None:
    standin.put_isvc("torchserve", isvc_manifest())
    standin.script_starts_on_apply = False
    unready = pod(POD, "torchserve", phase="Running", containers=[running("kserve-container", ready=False)])
    standin.frames = [Frame(status={"conditions": [cond("Ready", "False")]}, pods=[unready])]
    st = status("torchserve", NAMESPACE, api_client=api_client)
    assert st.diagnosis is not None
    out = st.to_dict()
    assert json.loads(json.dumps(out)) == out
    assert out["diagnosis"]["lines"] == st.diagnosis.lines()
    assert out["ready"] is False


# A trailing newline passes `re.match("^...$")`; it would go into the API path as %0A.
@pytest.mark.parametrize("call", [status, delete], ids=["status", "delete"])
def test_names_with_a_trailing_newline_are_refused_before_any_request(
    standin: StandInApiServer, api_client: Any, call: Any
) -> None:
    with pytest.raises(SpecError, match="not a valid InferenceService name"):
        call("torchserve\n", NAMESPACE, api_client=api_client)
    with pytest.raises(DeployError, match="not a namespace name"):
        call("torchserve", NAMESPACE + "\n", api_client=api_client)
    assert standin.requests == []


def test_deploy_refuses_a_namespace_with_a_trailing_newline(standin: StandInApiServer, api_client: Any) -> None:
    with pytest.raises(DeployError, match="not a namespace name"):
        deploy(isvc_manifest(), namespace=NAMESPACE + "\n", api_client=api_client, wait=False)
    doc = isvc_manifest()
    doc["metadata"]["namespace"] = NAMESPACE + "\n"
    with pytest.raises(DeployError, match="not a namespace name"):
        deploy(doc, api_client=api_client, wait=False)
    with pytest.raises(SpecError, match="not a valid InferenceService name"):
        deploy(isvc_manifest("torchserve\n"), api_client=api_client, wait=False)
    assert standin.requests == []


# -- (7) status and delete -----------------------------------------------------------------------------------------
def test_status_of_a_ready_isvc(standin: StandInApiServer, api_client: Any):
    obj = isvc_manifest()
    obj["metadata"]["generation"] = 1
    obj["status"] = ready_status("torchserve") | {"observedGeneration": 1}
    standin.put_isvc("torchserve", obj)
    st = status("torchserve", NAMESPACE, api_client=api_client)
    assert st.ready and st.diagnosis is None
    assert st.url == f"http://torchserve.{NAMESPACE}.example.com"
    (predictor,) = st.components
    assert predictor.latest_ready_revision == "torchserve-predictor-00001"
    assert [(t.revision, t.percent, t.latest) for t in predictor.traffic] == [("torchserve-predictor-00001", 100, True)]
    assert st.model_status == "Loaded (UpToDate)"
    assert st.to_dict()["components"][0]["traffic"][0]["percent"] == 100


def test_status_of_a_not_ready_isvc_carries_the_diagnosis(standin: StandInApiServer, api_client: Any):
    obj = isvc_manifest()
    obj["metadata"]["generation"] = 1
    standin.put_isvc("torchserve", obj)
    standin.script_starts_on_apply = False
    unready = pod(POD, "torchserve", phase="Running", containers=[running("kserve-container", ready=False)])
    standin.frames = [
        Frame(
            status={"conditions": [cond("Ready", "False")]},
            pods=[unready],
            logs={(POD, "kserve-container", False): TOKEN_LOG},
        )
    ]
    st = status("torchserve", NAMESPACE, api_client=api_client)
    assert not st.ready and st.diagnosis is not None
    assert [h.key for h in st.diagnosis.hints] == ["token-auth"]
    assert "hints:" in st.diagnosis.lines()
    assert st.to_dict()["diagnosis"]["hints"][0]["key"] == "token-auth"


def test_status_of_a_missing_isvc_lists_the_existing_ones(standin: StandInApiServer, api_client: Any):
    standin.put_isvc("bert", isvc_manifest("bert"))
    with pytest.raises(DeployError) as info:
        status("torchserve", NAMESPACE, api_client=api_client)
    assert info.value.message.startswith(f"InferenceService {NAMESPACE}/torchserve not found")
    assert info.value.hint == f"InferenceServices in {NAMESPACE}: bert"


def test_delete(standin: StandInApiServer, api_client: Any):
    standin.put_isvc("torchserve", isvc_manifest())
    assert delete("torchserve", NAMESPACE, api_client=api_client) is True
    assert standin.isvc("torchserve") is None
    (sent,) = standin.calls("DELETE", "inferenceservices/torchserve$")
    assert sent.query.get("propagationPolicy") == ["Background"]
    with pytest.raises(DeployError, match="not found"):
        delete("torchserve", NAMESPACE, api_client=api_client)
    assert delete("torchserve", NAMESPACE, api_client=api_client, missing_ok=True) is False


def test_delete_wait_returns_once_it_is_gone(standin: StandInApiServer, api_client: Any):
    standin.put_isvc("torchserve", isvc_manifest())
    standin.delete_after_gets = 3
    assert delete("torchserve", NAMESPACE, api_client=api_client, wait=True, poll_interval=0.01)
    assert len(standin.calls("GET", "inferenceservices/torchserve$")) == 4  # three still there, then 404
