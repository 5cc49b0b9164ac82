"""A model's minWorkers on the python runtime: that many worker processes, the model loaded once in each.

A mar-build tensor archive with two workers: both serve batches under concurrent load, each request keeps its own
answer, the handlers' metrics of every worker arrive in the server's one /metrics, a killed worker is started again
while its twin serves. A hand-built stock-handler archive under the stock kserve envelope serves from two workers
too, and stopping leaves no process behind; a worker that cannot load fails serve() with its traceback. A model
still queued to load already answers its v2 metadata.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest
from runtime_support import FIXTURES, Served, add_stock, bare_layout, serve_python, stock_layout
from serve.serve_support import FIXTURES as SERVE_FIXTURES
from serve.serve_support import add_model, archive, edit_snapshot, free_port
from test_runtime import ROWS, _concurrent, close

from toolkit._build.builder import build
from toolkit._errors import ServeError
from toolkit._spec.parse import parse_spec

pytestmark = pytest.mark.slow

WORKER_BATCH = re.compile(r"\[worker linear/(\d)\]: batch of (\d+) request\(s\)")


def set_workers(layout: Path, name: str, count: int, **settings: object) -> None:
    """minWorkers = maxWorkers = ``count`` (and ``settings``) for ``name`` in the layout's model_snapshot."""

    def change(snapshot: dict[str, Any]) -> None:
        for entry in snapshot["models"][name].values():
            entry.update(minWorkers=count, maxWorkers=count, **settings)

    edit_snapshot(layout, change)


def workers_of(runtime_pid: int) -> list[psutil.Process]:
    """The runtime's live worker processes (a killed one stays a zombie until the server reaps it)."""
    found = []
    for child in psutil.Process(runtime_pid).children():
        try:
            if "toolkit._runtime.workers" in " ".join(child.cmdline()):
                found.append(child)
        except (psutil.ZombieProcess, psutil.NoSuchProcess):
            continue
    return found


@pytest.fixture(scope="module")
def pooled(linear: tuple[Path, object], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    model, module = linear
    work = tmp_path_factory.mktemp("workers")
    spec = parse_spec({"name": "linear", "task": "tensor", "model": str(model),
                       "serving": {"batch_size": 4, "max_batch_delay": 50, "min_workers": 2, "max_workers": 2}},
                      base=model.parent)
    layout = build(spec, work / "layout").layout
    with serve_python(layout, work / "run") as predictor:
        yield Served(predictor, module)


def test_each_model_runs_in_its_min_workers_processes_loaded_once_each(pooled: Served) -> None:
    p = pooled.predictor
    workers = workers_of(p.pids["runtime"])
    assert len(workers) == 2, [w.cmdline() for w in workers]
    assert [w.cmdline()[w.cmdline().index("--model") + 1] for w in workers] == ["linear", "linear"]
    log = p.log_path.read_text(errors="replace")
    loads = re.findall(r"\[worker (\w+)/(\d)\]: model \w+ \(version [^)]*\) loaded from", log)
    assert sorted(loads) == [("linear", "0"), ("linear", "1")]
    assert "model linear is ready (2 workers" in log
    for pid in [p.pids["runtime"], *(w.pid for w in workers)]:
        assert "java" not in Path(f"/proc/{pid}/cmdline").read_text(errors="replace")


def test_both_workers_serve_batches_and_each_request_keeps_its_answer(pooled: Served) -> None:
    p = pooled.predictor
    start = p.log_path.stat().st_size
    rows = [ROWS[i % len(ROWS)] for i in range(40)]
    bodies: list[object] = [{"instances": [row]} for row in rows]
    bodies[7] = {"instances": [["one", "two", "three", "four"]]}
    bodies[23] = {"instances": [["a", "b", "c", "d"]]}
    answers = _concurrent(p.predict_url("linear"), bodies)
    for i, (answer, row) in enumerate(zip(answers, rows, strict=True)):
        if i in (7, 23):
            assert answer.status_code == 400, answer.text
            assert "error" in answer.json()
        else:
            assert answer.status_code == 200, (i, answer.text)
            assert close(answer.json()["predictions"], pooled.expected([row]))
    deadline = time.monotonic() + 10
    seen: list[tuple[str, str]] = []
    while sum(int(n) for _, n in seen) < len(bodies) and time.monotonic() < deadline:
        time.sleep(0.1)
        seen = WORKER_BATCH.findall(p.log_path.read_bytes()[start:].decode("utf-8", "replace"))
    assert sum(int(n) for _, n in seen) == len(bodies), seen
    assert {worker for worker, _ in seen} == {"0", "1"}, f"one worker ran every batch: {seen}"
    assert max(int(n) for _, n in seen) <= 4, seen


def _counter(metrics: str, name: str, **labels: str) -> float:
    total = 0.0
    for line in metrics.splitlines():
        if line.startswith(name + "{") and all(f'{k}="{v}"' in line for k, v in labels.items()):
            total += float(line.rsplit(" ", 1)[1])
    return total


def test_every_workers_handler_metrics_arrive_in_the_one_metrics_page(pooled: Served) -> None:
    p = pooled.predictor
    before = httpx.get(p.metrics_url).text
    bodies: list[object] = [{"instances": [ROWS[i % 3]]} for i in range(16)]
    bodies[3] = {"instances": [["x", "y", "z", "w"]]}
    assert sorted(r.status_code for r in _concurrent(p.predict_url("linear"), bodies)) == [200] * 15 + [400]
    after = httpx.get(p.metrics_url).text
    ok = _counter(after, "mar_build_requests_total", model_name="linear", status="200") - _counter(
        before, "mar_build_requests_total", model_name="linear", status="200")
    bad = _counter(after, "mar_build_bad_requests_total", model_name="linear", reason="instance") - _counter(
        before, "mar_build_bad_requests_total", model_name="linear", reason="instance")
    assert (ok, bad) == (15.0, 1.0), after
    frontend = _counter(after, "ts_inference_requests_total", model_name="linear") - _counter(
        before, "ts_inference_requests_total", model_name="linear")
    assert frontend == 16.0


def test_a_killed_worker_is_started_again_while_its_twin_serves(pooled: Served) -> None:
    p = pooled.predictor
    linear = [w for w in workers_of(p.pids["runtime"]) if "linear" in w.cmdline()]
    victim = linear[0]
    os.kill(victim.pid, signal.SIGKILL)  # a zombie until the server reaps it, which it does on its next batch
    statuses: list[int] = []
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        answers = _concurrent(p.predict_url("linear"), [{"instances": [ROWS[0]]}] * 4)
        statuses += [a.status_code for a in answers]
        for a in answers:
            if a.status_code != 200:
                assert a.status_code == 503 and "died" in a.text, a.text
        now = [w for w in workers_of(p.pids["runtime"]) if "linear" in w.cmdline()]
        if len(now) == 2 and victim.pid not in {w.pid for w in now} and statuses[-4:] == [200] * 4:
            break
        time.sleep(0.5)
    now = [w for w in workers_of(p.pids["runtime"]) if "linear" in w.cmdline()]
    assert len(now) == 2 and victim.pid not in {w.pid for w in now}, (victim.pid, [w.pid for w in now])
    assert statuses.count(503) <= 4, statuses  # the batches that went to the dead worker, at most
    assert "died while running a batch" in p.log_path.read_text(errors="replace")


def test_a_worker_that_cannot_load_fails_serve_with_its_traceback(
    linear: tuple[Path, object], tmp_path: Path
) -> None:
    model, _ = linear
    broken = tmp_path / "broken_handler.py"
    broken.write_text("from ts.torch_handler.base_handler import BaseHandler\n\n\n"
                      "class Broken(BaseHandler):\n    def initialize(self, context):\n"
                      "        raise RuntimeError('weights of the wrong shape, on purpose')\n")
    export = tmp_path / "mar"
    export.mkdir()
    subprocess.run([str(Path(sys.executable).parent / "torch-model-archiver"), "--model-name", "broken",
                    "--version", "1.0", "--serialized-file", str(model), "--handler", str(broken),
                    "--export-path", str(export)], check=True, capture_output=True)
    spec = parse_spec({"name": "linear", "task": "tensor", "model": str(model),
                       "serving": {"min_workers": 1, "max_workers": 1}}, base=model.parent)
    layout = build(spec, tmp_path / "layout").layout
    add_stock(layout, "broken", export / "broken.mar", batch_size=1)
    set_workers(layout, "broken", 2)
    with pytest.raises(ServeError, match="weights of the wrong shape, on purpose"):
        serve_python(layout, tmp_path / "run")


def test_a_stock_handler_serves_from_two_workers_and_stopping_leaves_none(
    linear: tuple[Path, object], tmp_path: Path
) -> None:
    model, module = linear
    layout = stock_layout(tmp_path, model, batch_size=4)
    set_workers(layout, "stock", 2)
    predictor = serve_python(layout, tmp_path / "run")
    served = Served(predictor, module)
    with predictor:
        workers = workers_of(predictor.pids["runtime"])
        assert len(workers) == 2
        bodies: list[object] = [{"instances": [ROWS[i % 3], ROWS[(i + 1) % 3]]} for i in range(16)]
        for i, reply in enumerate(_concurrent(predictor.predict_url("stock"), bodies)):
            assert reply.status_code == 200, (i, reply.text)
            assert close(reply.json()["predictions"], served.expected([ROWS[i % 3], ROWS[(i + 1) % 3]]))
    gone, alive = psutil.wait_procs(workers, timeout=15)
    assert not alive, [w.pid for w in alive]


def _first_in_snapshot(layout: Path, name: str) -> None:
    def change(snapshot: dict[str, Any]) -> None:
        models = snapshot["models"]
        snapshot["models"] = {name: models.pop(name), **models}

    edit_snapshot(layout, change)


def _until(predicate: Callable[[], bool], seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            if predicate():
                return True
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    return False


def test_v2_metadata_answers_while_the_model_still_loads(linear: tuple[Path, object], tmp_path: Path) -> None:
    """Models load one after another: a model queued behind a slow one is not ready, and GET /v2/models/M already
    answers its true inputs and outputs, read from its archive (as the TorchServe path's wrapper does)."""
    model, _ = linear
    spec = parse_spec({"name": "linear", "task": "tensor", "model": str(model), "options": {"shape": [4]},
                       "serving": {"min_workers": 2, "max_workers": 2}}, base=model.parent)
    layout = build(spec, tmp_path / "layout").layout
    gate = tmp_path / "gate-open"
    (tmp_path / "gate.json").write_text(json.dumps({"path": str(gate)}))
    add_model(layout, "echo", archive(SERVE_FIXTURES / "echo_handler.py", "echo", tmp_path / "mar",
                                      [tmp_path / "gate.json"]))
    _first_in_snapshot(layout, "echo")  # echo loads first and holds until the gate opens
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    with open(tmp_path / "runtime.log", "wb") as log:
        process = subprocess.Popen([sys.executable, "-m", "toolkit._runtime", "--layout", str(layout), "--http-port",
                                    str(port), "--workdir", str(tmp_path / "unpacked")],
                                   stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        assert _until(lambda: httpx.get(f"{url}/v2/health/live").status_code == 200, 120), \
            (tmp_path / "runtime.log").read_text()
        loading = httpx.get(f"{url}/v2/models/linear")
        assert loading.status_code == 200, loading.text
        assert loading.json()["inputs"] == [{"name": "input-0", "datatype": "FP32", "shape": [-1, 4]}]
        assert httpx.get(f"{url}/v2/models/linear/ready").status_code != 200
        gate.touch()
        assert _until(lambda: httpx.get(f"{url}/v2/models/linear/ready").status_code == 200, 120), \
            (tmp_path / "runtime.log").read_text()
        assert httpx.get(f"{url}/v2/models/linear").json() == loading.json()
    finally:
        process.terminate()
        process.wait(30)


def test_a_models_workers_get_the_gpus_round_robin_as_torchserve_hands_them_out() -> None:
    from toolkit._runtime.loader import gpu_for

    assert [gpu_for(worker, 2) for worker in range(5)] == [0, 1, 0, 1, 0]
    assert [gpu_for(worker, 1) for worker in range(3)] == [0, 0, 0]
    assert gpu_for(0, 0) is None and gpu_for(3, 0) is None  # no GPU: the handler runs on the CPU


def test_a_model_whose_workers_cannot_start_again_stops_being_ready(
    linear: tuple[Path, object], tmp_path: Path
) -> None:
    """Both workers die and their restarts fail (the layout no longer lists the model): after its tries the model
    answers 503 "no worker left" at once and its readiness says not ready, as KServe's probe must see it."""
    model, _ = linear
    spec = parse_spec({"name": "linear", "task": "tensor", "model": str(model),
                       "serving": {"min_workers": 2, "max_workers": 2}}, base=model.parent)
    layout = build(spec, tmp_path / "layout").layout
    with serve_python(layout, tmp_path / "run") as predictor:
        url = predictor.predict_url("linear")
        assert httpx.post(url, json={"instances": [ROWS[0]]}, timeout=60).status_code == 200
        config = layout / "config" / "config.properties"
        config.write_text(config.read_text().replace('"linear":', '"renamed":'))  # a restart finds no such model
        for worker in workers_of(predictor.pids["runtime"]):
            os.kill(worker.pid, signal.SIGKILL)
        deadline, last = time.monotonic() + 120, None
        while time.monotonic() < deadline:
            last = httpx.post(url, json={"instances": [ROWS[0]]}, timeout=60)
            if last.status_code == 503 and "no worker left" in last.text:
                break
            assert last.status_code == 503, last.text  # "died" while the workers are being started again
            time.sleep(0.5)
        assert last is not None and "no worker left" in last.text, last.text if last else None
        assert httpx.get(f"{predictor.url}/v1/models/linear", timeout=30).status_code == 503
        log = predictor.log_path.read_text(errors="replace")
    assert "starting model linear's worker 0 again failed (try 3 of 3)" in log
    assert "model linear has no worker left" in log


def test_a_worker_that_does_not_answer_within_the_response_timeout_is_started_again(tmp_path: Path) -> None:
    """As TorchServe does: past responseTimeout the request is a 504, its worker is stopped and started again, and
    the model keeps serving from its other worker meanwhile."""
    layout = bare_layout(tmp_path)
    add_model(layout, "hang", archive(FIXTURES / "hanging_handler.py", "hang", tmp_path / "mar"))
    set_workers(layout, "hang", 2, responseTimeout=3)
    with serve_python(layout, tmp_path / "run") as predictor:
        url = predictor.predict_url("hang")
        before = {w.pid for w in workers_of(predictor.pids["runtime"])}
        stuck = _concurrent(url, [{"instances": ["hang"]}, {"instances": ["fine"]}])
        assert [r.status_code for r in stuck] == [504, 200], [r.text for r in stuck]
        assert stuck[1].json() == {"predictions": ["fine"]}
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            now = {w.pid for w in workers_of(predictor.pids["runtime"])}
            if len(now) == 2 and now != before:
                break
            time.sleep(0.2)
        assert len(now) == 2 and len(now & before) == 1, (before, now)  # the hung one replaced, its twin kept
        answers = _concurrent(url, [{"instances": [i]} for i in range(6)])
        assert [a.json() for a in answers] == [{"predictions": [i]} for i in range(6)]
        log = predictor.log_path.read_text(errors="replace")
    assert "did not answer a batch of 1 within 3 s (responseTimeout)" in log
