"""Shared test switches and small fixtures.

--update-golden   rewrite golden files instead of comparing (the only way they change)
--cluster         run the opt-in tests against the current kubeconfig context (kind, minikube, a real cluster)
"""

from __future__ import annotations

import os
import socket
from collections.abc import Callable
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
SHARED = REPO.parent / "shared"
GOLDEN = Path(__file__).resolve().parent / "golden"

# Nothing may reach a model hub at run time, in tests or in workers they start.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--update-golden", action="store_true", help="rewrite golden files from the current output")
    parser.addoption("--cluster", action="store_true", help="run tests marked 'cluster' against kubeconfig")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if config.getoption("--cluster"):
        return
    skip = pytest.mark.skip(reason="needs a Kubernetes cluster with KServe: run with --cluster")
    for item in items:
        if "cluster" in item.keywords:
            item.add_marker(skip)


@pytest.fixture
def golden(request: pytest.FixtureRequest) -> Callable[[str, str], None]:
    """golden(name, actual): compare ``actual`` with tests/golden/NAME exactly, or rewrite it with --update-golden."""
    update = request.config.getoption("--update-golden")

    def check(name: str, actual: str) -> None:
        path = GOLDEN / name
        if update:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(actual, encoding="utf-8")
            return
        if not path.exists():
            pytest.fail(f"golden file {path} is missing: run pytest --update-golden once and review it")
        assert actual == path.read_text(encoding="utf-8"), f"output differs from golden file {path}"

    return check


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def port() -> int:
    return free_port()
