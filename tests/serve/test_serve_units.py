"""The pieces of serve() that need no server: the run config, TorchServe's log lines, the wrapper's config."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from toolkit._diagnose.ts_logs import WorkerLog, explain_death, log_tail
from toolkit._layout import parse_properties
from toolkit._serve.config import free_port_config, port_free
from toolkit._serve.readiness import worker_ready
from toolkit._serve.run import reuse_workdir
from toolkit._serve.wrapper import read_wrapper_config

REPO = Path(__file__).resolve().parents[2]

CONFIG = """\
# a comment with no equals sign
inference_address=http://0.0.0.0:8085
management_address=http://0.0.0.0:8085
number_of_netty_threads=4
model_store=/mnt/models/model-store
model_snapshot={"name":"startup.cfg","modelCount":1,"models":{"bert":{"1.0":{"marName":"bert.mar"}}}}
"""


def test_free_port_config_moves_every_port_and_keeps_the_rest(tmp_path: Path) -> None:
    text, addresses, remapped = free_port_config(CONFIG, parse_properties(CONFIG), tmp_path, avoid=[8080])
    props = parse_properties(text)
    # inference and management shared 8085: they still share one (new) port
    assert props["inference_address"] == props["management_address"] != "http://0.0.0.0:8085"
    assert props["inference_address"].startswith("http://127.0.0.1:")
    # keys TorchServe would default (8082, 7070, 7071) are written, so two instances never clash
    for key in ("metrics_address", "grpc_inference_port", "grpc_management_port"):
        assert key in props
    ports = {int(props["grpc_inference_port"]), int(props["grpc_management_port"])}
    ports |= {int(props[k].rsplit(":", 1)[1]) for k in ("inference_address", "metrics_address")}
    assert len(ports) == 4 and not ports & {8080, 8081, 8082, 8085, 7070, 7071}
    assert props["model_store"] == str(tmp_path / "model-store")
    assert props["number_of_netty_threads"] == "4"
    assert props["model_snapshot"] == parse_properties(CONFIG)["model_snapshot"]
    assert text.startswith("# a comment with no equals sign\n")
    assert addresses["inference"] == props["inference_address"]
    assert "inference_address 8085 -> " in remapped[0]
    # the wrapper reads the run copy as the pod's wrapper reads config.properties
    config = tmp_path / "config.properties"
    config.write_text(text)
    names, inference, management = read_wrapper_config(config)
    assert names == ["bert"] and inference == management == props["inference_address"]


def test_the_wrapper_reads_0000_as_loopback(tmp_path: Path) -> None:
    config = tmp_path / "config.properties"
    config.write_text(CONFIG)
    assert read_wrapper_config(config) == (["bert"], "http://127.0.0.1:8085", "http://127.0.0.1:8085")


def test_worker_ready_reads_the_describe_answer_like_the_pod() -> None:
    ready = [{"modelName": "bert", "workers": [{"id": "9000", "status": "READY"}]}]
    loading = [{"modelName": "bert", "workers": [{"id": "9000", "status": "UNLOADING"}]}]
    assert worker_ready(ready)
    assert not worker_ready(loading)
    assert not worker_ready({"code": 404})
    assert not worker_ready([])


def log_line(thread: str, msg: str, level: str = "INFO ") -> str:
    return f"2026-11-22T20:52:15,904 [{level}] {thread}-stdout MODEL_LOG - {msg}\n"


def test_worker_log_explains_a_death_after_failed_to_load(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("toolkit._diagnose.ts_logs._SETTLE_S", 0.0)
    log = tmp_path / "model_log.log"
    # model "a" and model "a_b" must not be confused (thread W-PORT-NAME_VERSION)
    lines = [
        log_line("W-9000-a_b_2.0", "s_name_part0=/tmp/.ts.sock, s_name_part1=9000, pid=1"),
        log_line("W-9001-a_1.0", "s_name_part0=/tmp/.ts.sock, s_name_part1=9001, pid=2"),
        log_line("W-9000-a_b_2.0", "Failed to load model a_b, exception boom"),
        log_line("W-9000-a_b_2.0", "Traceback (most recent call last):"),
        log_line("W-9000-a_b_2.0", '  File "handler.py", line 3, in initialize'),
        log_line("W-9000-a_b_2.0", "RuntimeError: boom"),
        log_line("W-9000-a_b_2.0", "Backend worker process died."),
        log_line("W-9000-a_b_2.0", "Traceback (most recent call last):"),
        log_line("W-9000-a_b_2.0", "RuntimeError: 500 - Unknown exception"),
    ]
    log.write_text("".join(lines[:3]))
    workers = WorkerLog(log, ["a", "a_b"], {"a": "1.0", "a_b": "2.0"})
    assert workers.failure(["a", "a_b"]) is None
    with log.open("a") as f:
        f.write("".join(lines[3:]))
    model, explained = workers.failure(["a", "a_b"]) or ("", [])
    assert model == "a_b"
    assert explained == ["Failed to load model a_b, exception boom", "Traceback (most recent call last):",
                         '  File "handler.py", line 3, in initialize', "RuntimeError: boom"]
    assert workers.failure(["a"]) is None  # a's worker is alive


def test_worker_log_waits_for_the_traceback_that_follows_the_death(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("toolkit._diagnose.ts_logs._SETTLE_S", 0.2)
    log = tmp_path / "model_log.log"
    log.write_text(log_line("W-9000-m_1.0", "Backend worker process died."))
    workers = WorkerLog(log, ["m"], {"m": "1.0"})
    assert workers.failure(["m"]) is None  # just died: its traceback may not be in the log yet
    with log.open("a") as f:
        f.write(log_line("W-9000-m_1.0", "Traceback (most recent call last):")
                + log_line("W-9000-m_1.0", "OSError: no weights"))
    time.sleep(0.3)
    assert workers.failure(["m"]) == ("m", ["Traceback (most recent call last):", "OSError: no weights"])


def test_a_restarted_worker_forgets_its_previous_death(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("toolkit._diagnose.ts_logs._SETTLE_S", 0.0)
    log = tmp_path / "model_log.log"
    log.write_text(log_line("W-9000-m_1.0", "Backend worker process died.")
                   + log_line("W-9000-m_1.0", "s_name_part0=/tmp/.ts.sock, s_name_part1=9000, pid=3"))
    assert WorkerLog(log, ["m"], {"m": "1.0"}).failure(["m"]) is None


def test_explain_death_without_a_traceback_keeps_the_tail() -> None:
    lines = [f"line {i}" for i in range(40)] + ["Backend worker process died."]
    assert explain_death(lines)[-1] == "Backend worker process died."
    assert len(explain_death(lines)) <= 60


def test_log_tail_keeps_warnings_and_errors_once(tmp_path: Path) -> None:
    log = tmp_path / "ts_log.log"
    error = ("2026-11-22T20:51:58,364 [ERROR] epollEventLoopGroup-5-1 org.pytorch.serve.wlm.WorkerThread - "
             "Unknown exception\n")
    log.write_text(
        "2026-11-22T20:51:08,825 [WARN ] main org.pytorch.serve.util.ConfigManager - Your torchserve instance can "
        "access any URL to load models.\n"
        "2026-11-22T20:51:09,244 [INFO ] main org.pytorch.serve.wlm.ModelManager - Model lin loaded.\n"
        + error + "io.netty.handler.codec.TooLongFrameException: Message size exceed limit: 94500017\n"
        "\tat org.pytorch.serve.util.codec.CodecUtils.readLength(CodecUtils.java:27)\n"
        + error + "io.netty.handler.codec.TooLongFrameException: Message size exceed limit: 94500017\n"
    )
    assert log_tail(log) == [
        "ERROR org.pytorch.serve.wlm.WorkerThread: Unknown exception",
        "  io.netty.handler.codec.TooLongFrameException: Message size exceed limit: 94500017",
    ]


def test_port_free_sees_a_listener() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        assert not port_free("127.0.0.1", port)
    assert port_free("127.0.0.1", port)


def test_the_wrapper_process_does_not_import_torch() -> None:
    code = "import sys, toolkit._serve.wrapper; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO)
    assert out.stdout.strip() == "False"


def test_importing_the_wrapper_leaves_the_command_line_alone() -> None:
    # kserve.model_server parses sys.argv at import; ours (or pytest's) must not be read as kserve's options.
    code = ("import sys; sys.argv[1:] = ['--config', 'x', '--http_port', '1']; import toolkit._serve.wrapper as w; "
            "print(sys.argv[1:], w._model_server.args.http_port)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO)
    assert out.stdout.strip() == "['--config', 'x', '--http_port', '1'] 8080"


def test_a_reused_run_folder_starts_without_the_last_runs_logs(tmp_path: Path) -> None:
    (tmp_path / "logs").mkdir()
    (tmp_path / "logs" / "model_log.log").write_text(log_line("W-9000-m_1.0", "Backend worker process died."))
    (tmp_path / "tmp").mkdir()
    (tmp_path / "tmp" / ".model_server.pid").write_text("999999999")  # no such process
    (tmp_path / "keep.txt").write_text("mine")
    reuse_workdir(tmp_path)
    assert not (tmp_path / "logs").exists() and not (tmp_path / "tmp").exists()
    assert (tmp_path / "keep.txt").read_text() == "mine"
