"""One served stack (real TorchServe + the kserve wrapper) answering like the predictor pod."""

from __future__ import annotations

import concurrent.futures
import contextlib
import json
import os
import re
from pathlib import Path

import httpx
import pytest
from serve_support import Stack, TinyModel, assert_rows_close, free_port

from toolkit import ServeError
from toolkit._serve import serve

pytestmark = pytest.mark.slow


def test_every_model_is_ready_and_listed(stack: Stack) -> None:
    p = stack.predictor
    assert sorted(p.models) == ["echo", "linear"]
    assert sorted(httpx.get(f"{p.url}/v1/models").json()["models"]) == ["echo", "linear"]
    for name in p.models:
        answer = httpx.get(f"{p.url}/v1/models/{name}")
        assert answer.status_code == 200
        assert answer.json() == {"name": name, "ready": True}


def test_a_loading_model_answers_503_then_200(stack: Stack) -> None:
    assert stack.while_loading["status"] == 503, stack.while_loading
    assert "not ready" in str(stack.while_loading["body"])
    # Listed while loading: the URL name exists, it is just not ready yet.
    assert "echo" in stack.while_loading["models"]["models"]  # type: ignore[index]
    assert httpx.get(f"{stack.predictor.url}/v1/models/echo").status_code == 200


def test_unknown_model_is_404_with_the_names_there_are(stack: Stack) -> None:
    answer = httpx.get(f"{stack.predictor.url}/v1/models/bert")
    assert answer.status_code == 404
    error = answer.json()["error"]
    assert "Model with name bert does not exist" in error
    assert "echo, linear" in error and "model_snapshot" in error
    predict = httpx.post(f"{stack.predictor.url}/v1/models/bert:predict", json={"instances": [[1, 2, 3, 4]]})
    assert predict.status_code == 404 and "linear" in predict.json()["error"]


def test_predict_through_the_wrapper_matches_the_model(stack: Stack, tiny_model: TinyModel) -> None:
    instances = [[1.0, 2.0, 3.0, 4.0], [-1.0, 0.5, 0.0, 2.0]]
    answer = httpx.post(stack.predictor.predict_url("linear"), json={"instances": instances})
    assert answer.status_code == 200, answer.text
    predictions = answer.json()["predictions"]
    assert_rows_close(predictions, tiny_model.predict(instances))


def test_16_concurrent_requests_with_batch_size_8_all_correct(stack: Stack, tiny_model: TinyModel) -> None:
    requests = [[[float(i), float(i % 3), -float(i), 0.5 * i]] for i in range(16)]

    def call(instances: list[list[float]]) -> httpx.Response:
        return httpx.post(stack.predictor.predict_url("linear"), json={"instances": instances}, timeout=60)

    with concurrent.futures.ThreadPoolExecutor(16) as pool:
        answers = list(pool.map(call, requests))
    for instances, answer in zip(requests, answers, strict=True):
        assert answer.status_code == 200, answer.text
        assert_rows_close(answer.json()["predictions"], tiny_model.predict(instances))


def test_a_malformed_request_keeps_the_handlers_400_and_message(stack: Stack) -> None:
    answer = httpx.post(stack.predictor.predict_url("linear"), json={"instances": [["a", "b", "c", "d"]]})
    assert answer.status_code == 400
    assert answer.headers["content-type"].startswith("application/json")
    assert "instance 0" in answer.json()["error"]


@pytest.mark.parametrize("status", [409, 413, 503, 507])
def test_torchserve_statuses_reach_the_client_unchanged(stack: Stack, status: int) -> None:
    message = f"the handler said {status}"
    answer = httpx.post(stack.predictor.predict_url("echo"),
                        json={"instances": [{"status": status, "error": message}]})
    assert answer.status_code == status
    assert answer.json() == {"error": message}


def test_instances_that_are_not_a_list_are_400_at_the_wrapper(stack: Stack) -> None:
    answer = httpx.post(stack.predictor.predict_url("linear"), json={"instances": "1,2,3,4"})
    assert answer.status_code == 400
    assert "instances" in answer.json()["error"]


def test_explain_is_forwarded_to_torchserve_explain(stack: Stack) -> None:
    instances = [{"x": 1}, {"x": 2}]
    answer = httpx.post(f"{stack.predictor.url}/v1/models/echo:explain", json={"instances": instances})
    assert answer.status_code == 200, answer.text
    assert answer.json() == {"explanations": instances}
    predicted = httpx.post(stack.predictor.predict_url("echo"), json={"instances": instances})
    assert predicted.json() == {"predictions": instances}


def test_liveness(stack: Stack) -> None:
    assert httpx.get(f"{stack.predictor.url}/").json() == {"status": "alive"}
    assert httpx.get(f"{stack.predictor.url}/v2/health/live").status_code == 200


def test_torchserve_metrics_are_prometheus_text(stack: Stack) -> None:
    httpx.post(stack.predictor.predict_url("linear"), json={"instances": [[0.0, 0.0, 0.0, 0.0]]})
    answer = httpx.get(stack.predictor.metrics_url)
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("text/plain")
    assert re.search(r"^# TYPE \w+ (counter|gauge)", answer.text, re.MULTILINE)
    assert re.search(r'^ts_inference_requests_total\{.*model_name="linear"', answer.text, re.MULTILINE), answer.text


def test_torchserve_runs_on_free_ports_and_the_layout_is_untouched(stack: Stack) -> None:
    p = stack.predictor
    ports = {httpx.URL(u).port for u in (p.torchserve_url, p.management_url, p.metrics_url)}
    assert not ports & {8080, 8081, 8082, 8085, 7070, 7071}
    assert httpx.post(f"{p.torchserve_url}/v1/models/linear:predict",
                      json={"instances": [[1, 2, 3, 4]]}).status_code == 200
    assert (stack.layout / "config" / "config.properties").read_bytes() == stack.config_before
    run_config = (stack.run_dir / "config.properties").read_text()
    assert f"model_store={stack.layout / 'model-store'}" in run_config
    assert p.log_path.is_file() and p.log_path.is_relative_to(stack.run_dir)


def test_progress_events(stack: Stack) -> None:
    kinds = [e.kind for e in stack.events]
    assert kinds.index("torchserve-started") < kinds.index("wrapper-started") < kinds.index("model-loading")
    ready = {e.model: e for e in stack.events if e.kind == "model-ready"}
    assert set(ready) == {"linear", "echo"}
    assert all(e.seconds is not None and e.seconds > 0 and f"ready in {e.seconds:.1f} s" in str(e)
               for e in ready.values())
    ports = next(e for e in stack.events if e.kind == "ports")
    assert "inference_address 8085 -> " in str(ports)


def test_the_handle_is_non_blocking_and_knows_its_processes(stack: Stack) -> None:
    p = stack.predictor
    assert p.wait(timeout=0.1) is False and p.running
    commands = []
    for pid in p.process_ids():
        with contextlib.suppress(OSError):
            commands.append(Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode())
    assert any("org.pytorch.serve.ModelServer" in c for c in commands)  # TorchServe's Java frontend
    assert sum("model_service_worker" in c for c in commands) == 2  # one Python worker per model
    assert any("toolkit._serve.wrapper" in c for c in commands)


def test_the_handle_and_its_events_serialise(stack: Stack) -> None:
    p = stack.predictor
    info = p.to_dict()
    assert json.loads(json.dumps(info)) == info
    assert info["pids"] == p.pids and info["running"] is True and info["models"] == p.models
    assert info["ports"]["http"] == httpx.URL(p.url).port
    assert info["ports"]["torchserve_management"] == httpx.URL(p.management_url).port
    assert Path(info["log_path"]) == p.log_path and Path(info["run_dir"]) == stack.run_dir
    threads = next(e for e in stack.events if e.kind == "threads")
    assert info["threads"] == dict(threads.details)
    for event in stack.events:
        assert json.loads(json.dumps(event.to_dict()))["kind"] == event.kind


def test_the_workers_get_the_thread_budget(stack: Stack) -> None:
    threads = next(e for e in stack.events if e.kind == "threads")
    expected = f"MAR_BUILD_THREADS={os.environ.get('MAR_BUILD_THREADS') or threads.details['threads']}"
    workers = []
    for pid in stack.predictor.process_ids():
        with contextlib.suppress(OSError):
            if b"model_service_worker" in Path(f"/proc/{pid}/cmdline").read_bytes():
                workers.append(Path(f"/proc/{pid}/environ").read_bytes().split(b"\0"))
    assert len(workers) == 2 and all(expected.encode() in env for env in workers)


def test_a_run_folder_in_use_is_refused(stack: Stack) -> None:
    with pytest.raises(ServeError, match="is the run folder of a TorchServe that is still running"):
        serve(stack.layout, port=free_port(), workdir=stack.run_dir)
    assert stack.predictor.log_path.is_file()  # the running stack's logs are left alone
