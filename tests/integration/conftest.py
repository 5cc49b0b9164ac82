"""The product end to end: each sample prepared, built by mar-build, served by the real stack, called as users do.

``served`` (module scope, one param per sample): prepare.py run once, the sample built with batchSize 8 into a
temporary layout, ``toolkit.serve`` on it (TorchServe + the kserve wrapper), the right answers
(integration_support.Case), and a route for it on ``gateway`` (session scope), a Host-routing proxy that demands a
session cookie, as Kubeflow's ingress does. One stack runs at a time: tests are grouped by sample.
"""

from __future__ import annotations

import socket
import subprocess
import sys
from collections.abc import Iterator

import pytest
from gateway_support import Gateway
from integration_support import CASES, SAMPLE_FOLDERS, SAMPLES, SESSION, Served

from toolkit._build.builder import build
from toolkit._serve.predictor import serve


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="session")
def gateway() -> Iterator[Gateway]:
    proxy = Gateway(SESSION)
    try:
        yield proxy
    finally:
        proxy.close()


def prepare(folder: str) -> None:
    """Run the sample's prepare.py (it reuses model/ when its inputs did not change)."""
    script = SAMPLES / folder / "prepare.py"
    if not script.is_file():
        pytest.fail(f"{script} is missing: every sample must build its model/ with one command")
    proc = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=1800)
    if proc.returncode != 0:
        pytest.fail(f"{script} failed (exit {proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")


@pytest.fixture(scope="module", params=SAMPLE_FOLDERS)
def served(
    request: pytest.FixtureRequest, gateway: Gateway, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Served]:
    folder: str = request.param
    prepare(folder)
    case = CASES[folder]()
    # batchSize 8 with a short delay: concurrent requests are served in server-side batches (what the handlers'
    # own v1 envelope must get right; the stock envelope answers 503 there).
    layout = build(SAMPLES / folder, tmp_path_factory.mktemp(folder) / "layout",
                   overrides={"serving.batch_size": 8, "serving.max_batch_delay": 50}).layout
    predictor = serve(layout, port=free_port(), startup_timeout=300)
    gateway.route(case.host, predictor.url)
    try:
        yield Served(case, predictor, layout)
    finally:
        predictor.stop()
