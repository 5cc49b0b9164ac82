"""Fixtures for the metrics tests: the text sample built once, `mar-build serve` of it once per runtime, one real
Prometheus (tests/monitor/prometheus_support.py's).

``text_layout``  (session) samples/text-classification built by mar-build (model ``intent``)
``served``       (session) ``served(runtime)`` -> the running `mar-build serve --metrics-port P` of that layout: its
                 endpoints (``url``, ``metrics_url``, ``metrics_port``, ``printed``: the metrics line it printed);
                 each runtime starts at most once per session, on first use, and stops at its end
``prometheus``   (session) a real Prometheus on loopback scraping what the tests add
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from metrics_support import Served
from monitor.prometheus_support import Prometheus, start_prometheus
from samples.samples_support import prepare_once
from serve.serve_support import ServeProcess, free_port

STARTUP_S = 400  # the server start under serve's --startup-timeout 400, read line by line


def _starts(prefix: str) -> Callable[[str], bool]:
    return lambda line: line.strip().startswith(prefix)


@pytest.fixture(scope="session")
def text_layout(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from toolkit import build

    sample = prepare_once("text-classification")
    return build(sample.folder, tmp_path_factory.mktemp("metrics-layout") / "intent").layout


@pytest.fixture(scope="session")
def served(text_layout: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[[str], Served]]:
    running: dict[str, Served] = {}
    processes: list[ServeProcess] = []

    def start(runtime: str) -> Served:
        if runtime in running:
            return running[runtime]
        port, metrics_port = free_port(), free_port()
        workdir = tmp_path_factory.mktemp(f"serve-{runtime}")
        args = [str(text_layout), "--port", str(port), "--metrics-port", str(metrics_port), "--runtime", runtime,
                "--workdir", str(workdir / "run"), "--startup-timeout", "400"]
        # TorchServe's serve speaks --json (one line); the python runtime's prints what a person reads.
        process = ServeProcess(args + (["--json"] if runtime == "torchserve" else []))
        processes.append(process)
        if runtime == "torchserve":
            info = json.loads(process.wait_for(_starts("{"), STARTUP_S))
            url, metrics_url, printed = info["url"], info["metrics_url"], ""
        else:
            url = process.wait_for(_starts("predict"), STARTUP_S).split()[-1].split("/v1/")[0]
            printed = process.wait_for(_starts("metrics"), STARTUP_S)
            metrics_url = printed.split()[2]
        running[runtime] = Served(runtime, url, metrics_url, metrics_port, printed)
        return running[runtime]

    try:
        yield start
    finally:
        for process in processes:
            process.stop_hard(grace=90)


@pytest.fixture(scope="session")
def prometheus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Prometheus]:
    server = start_prometheus(tmp_path_factory.mktemp("prometheus"))
    try:
        yield server
    finally:
        server.stop()
