"""serve()'s parts that need no TorchServe: addresses, the handlers' thread budget, the run folder's errors, the
wrapper's environment, the typed results."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from serve_support import add_model, copy_layout, free_port

from toolkit import ServeError
from toolkit._diagnose import KSERVE_CONTAINER, find_hints
from toolkit._layout import THREADS_ENV, SnapshotEntry, parse_properties, pod_workers, read_layout, threads_per_worker
from toolkit._serve import ServeEvent, local_url, predictor, serve
from toolkit._serve.config import config_addresses, free_port_config
from toolkit._serve.processes import torchserve_env, wrapper_env
from toolkit._serve.run import RunFolder
from toolkit._serve.threads import thread_budget
from toolkit._serve.wrapper import read_wrapper_config

# The lines a worker prints when its handler imports a package the environment lacks (TorchServe 0.12.0, captured).
NO_MODULE_LOG = """\
2026-11-22T20:52:36,773 [INFO ] W-9000-bert_1.0-stdout MODEL_LOG - Backend worker process died.
2026-11-22T20:52:36,773 [INFO ] W-9000-bert_1.0-stdout MODEL_LOG - Traceback (most recent call last):
2026-11-22T20:52:36,781 [INFO ] W-9000-bert_1.0-stdout MODEL_LOG - ModuleNotFoundError: No module named 'transformers'
"""


# -- addresses: one local_url, for serve and the wrapper ---------------------------------------------------------
@pytest.mark.parametrize(
    ("address", "connector", "url"),
    [
        ("http://0.0.0.0:8085", "inference", "http://127.0.0.1:8085"),
        ("0.0.0.0:8085", "inference", "http://127.0.0.1:8085"),
        ("https://[::1]:8443", "inference", "https://[::1]:8443"),
        # No port: where TorchServe listens then (Connector.parse), never "host:None".
        ("http://0.0.0.0", "inference", "http://127.0.0.1:80"),
        ("http://0.0.0.0", "management", "http://127.0.0.1:8081"),
        ("https://0.0.0.0", "management", "https://127.0.0.1:8444"),
        ("http://127.0.0.1", "metrics", "http://127.0.0.1:8082"),
    ],
)
def test_local_url(address: str, connector: str, url: str) -> None:
    assert local_url(address, connector) == url  # type: ignore[arg-type]


def test_an_address_without_a_port_in_serve_and_in_the_wrapper(tmp_path: Path) -> None:
    props = {"inference_address": "http://0.0.0.0", "management_address": "http://0.0.0.0"}
    assert config_addresses(props)["management"] == "http://127.0.0.1:8081"
    # serve's free-port copy moves the ports TorchServe would take for them (80 and 8081), both
    text, addresses, remapped = free_port_config("", props, tmp_path, avoid=[])
    assert [line.split(" -> ")[0] for line in remapped[:2]] == ["inference_address 80", "management_address 8081"]
    assert addresses["inference"] == parse_properties(text)["inference_address"] != addresses["management"]
    # and the wrapper calls the management API where TorchServe listens
    config = tmp_path / "config.properties"
    config.write_text('management_address=http://0.0.0.0\nmodel_snapshot={"models":{"m":{"1.0":{}}}}\n')
    assert read_wrapper_config(config) == (["m"], "http://127.0.0.1:8080", "http://127.0.0.1:8081")


# -- the wrapper's environment ----------------------------------------------------------------------------------
def test_the_wrapper_can_import_this_toolkit_from_anywhere() -> None:
    first = wrapper_env({"PYTHONPATH": "/elsewhere"})["PYTHONPATH"].split(os.pathsep)
    assert (Path(first[0]) / "toolkit" / "__init__.py").is_file()
    assert first[1:] == ["/elsewhere"]


# -- the handlers' thread budget ---------------------------------------------------------------------------------
def _entries(*workers: int | None) -> list[SnapshotEntry]:
    return [SnapshotEntry(f"m{i}", "1.0", {} if w is None else {"minWorkers": w, "maxWorkers": w})
            for i, w in enumerate(workers)]


def test_the_thread_budget_divides_the_cpus_by_the_workers_of_all_models() -> None:
    budget = thread_budget(_entries(2, 2), environ={}, cpus=16)
    assert (budget.threads, budget.workers, budget.env()) == (4, 4, {THREADS_ENV: "4"})
    assert budget.event().kind == "threads" and "4 (16 CPUs / 4 workers" in str(budget.event())
    assert thread_budget(_entries(3, 3), environ={}, cpus=2).threads == 1  # at least one


def test_the_callers_thread_setting_wins() -> None:
    budget = thread_budget(_entries(2, 2), environ={THREADS_ENV: "3"}, cpus=16)
    assert (budget.source, budget.threads, budget.env()) == ("environment", 3, {})
    assert f"{THREADS_ENV}=3 from the environment" in str(budget.event())


def test_without_worker_counts_the_handlers_choose() -> None:
    budget = thread_budget(_entries(2, None), environ={}, cpus=16)
    assert (budget.source, budget.threads, budget.env()) == ("handlers", None, {})


@pytest.fixture
def two_models(tensor_layout: Path, tmp_path: Path) -> Path:
    layout = copy_layout(tensor_layout, tmp_path / "layout")
    add_model(layout, "twin", layout / "model-store" / "linear.mar")
    return layout


class _Started(Exception):
    """Raised by the stand-in process builder: serve() got as far as starting TorchServe."""


def test_serve_hands_torchserve_the_thread_budget_of_a_two_model_layout(
    two_models: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(THREADS_ENV, raising=False)
    given: dict[str, object] = {}

    def builder(exe: str, layout: Path, config: Path, run_dir: Path, env: dict[str, str]) -> None:
        given.update(env=env, config=config.read_text())
        raise _Started

    monkeypatch.setattr(predictor, "start_torchserve", builder)
    events: list[ServeEvent] = []
    with pytest.raises(_Started):
        serve(two_models, port=free_port(), workdir=tmp_path / "run", on_event=events.append)
    entries = read_layout(two_models).entries
    workers = pod_workers(entries)
    assert len(entries) == 2 and workers is not None and workers >= 2
    expected = threads_per_worker(len(os.sched_getaffinity(0)), workers)
    env = given["env"]
    assert isinstance(env, dict) and env[THREADS_ENV] == str(expected)
    (event,) = [e for e in events if e.kind == "threads"]
    assert event.details["threads"] == expected and event.details["workers"] == workers
    assert json.loads(json.dumps(event.to_dict()))["details"]["source"] == "rule"

    monkeypatch.setenv(THREADS_ENV, "7")
    with pytest.raises(_Started):
        serve(two_models, port=free_port(), workdir=tmp_path / "run")
    assert given["env"][THREADS_ENV] == "7"  # type: ignore[index]


def test_torchserve_env_keeps_its_own_folders(tmp_path: Path) -> None:
    env = torchserve_env(tmp_path, {THREADS_ENV: "2"}, environ={"PATH": "/bin", "HF_HUB_OFFLINE": "0"})
    assert env["TMPDIR"] == env["TEMP"] == str(tmp_path / "tmp") and env["LOG_LOCATION"] == str(tmp_path / "logs")
    assert env[THREADS_ENV] == "2" and env["HF_HUB_OFFLINE"] == "0" and env["PATH"] == "/bin"


# -- the run folder's errors name what the diagnosis rules name --------------------------------------------------
def test_a_run_error_names_the_fix_the_cluster_rule_names(tmp_path: Path) -> None:
    run = RunFolder(tmp_path, kept=True)
    (tmp_path / "logs").mkdir()
    run.log("model_log.log").write_text(NO_MODULE_LOG)
    error = run.error("model bert failed to load", log_tail=["a tail line"], hint="the full log is here")
    (rule_hint,) = find_hints(logs={KSERVE_CONTAINER: NO_MODULE_LOG})
    assert isinstance(error, ServeError) and error.log_tail == ["a tail line"]
    assert error.hint is not None and error.hint.startswith(rule_hint.text())
    assert error.hint.endswith("the full log is here")
    assert "add transformers to requirements in mar.yaml" in str(error)


def test_a_run_error_without_a_recognised_failure_keeps_its_own_hint(tmp_path: Path) -> None:
    run = RunFolder(tmp_path, kept=False)
    assert run.error("x", hint="only this").hint == "only this"
    assert run.error("x").hint is None


def test_serve_events_serialise() -> None:
    event = ServeEvent("model-ready", "model m: ready in 1.0 s", model="m", seconds=1.0)
    assert event.to_dict() == {"kind": "model-ready", "message": "model m: ready in 1.0 s", "model": "m",
                               "seconds": 1.0, "details": {}}
    assert str(event) == event.message


def test_the_python_runtime_divides_the_cpus_by_the_workers_of_all_models_as_torchserve(
    two_models: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The python runtime runs minWorkers processes per model (one, in the server's own process, where it is 1 or
    missing): on N CPUs each worker gets N // (workers of all models) threads, as on TorchServe."""
    from toolkit._serve.threads import thread_budget

    monkeypatch.delenv(THREADS_ENV, raising=False)
    entries = read_layout(two_models).entries
    assert [e.settings.get("minWorkers") for e in entries] == [1, 1]
    assert pod_workers(entries, runtime="python") == 2
    one = [entries[0]]
    assert thread_budget(one, {}, cpus=2, runtime="python").threads == 2
    assert thread_budget(one, {}, cpus=4, runtime="python").threads == 4
    assert thread_budget(entries, {}, cpus=4, runtime="python").threads == 2
    three = [SnapshotEntry("a", "1.0", {"minWorkers": 3}), SnapshotEntry("b", "1.0", {})]
    assert pod_workers(three, runtime="python") == 4  # b: one worker, the server's process
    assert pod_workers(three) is None  # TorchServe: one per CPU for b
    assert thread_budget(three, {}, cpus=8, runtime="python").threads == 2
    twice = [SnapshotEntry("a", "1.0", {"minWorkers": 2}), SnapshotEntry("a", "2.0", {"minWorkers": 2})]
    assert pod_workers(twice, runtime="python") == 2  # it serves the first version of a name
    assert pod_workers(twice) == 4  # TorchServe loads both
    workers = pod_workers(one)
    assert workers is not None
    assert thread_budget(one, {}, cpus=4).threads == threads_per_worker(4, workers)  # TorchServe: per worker
