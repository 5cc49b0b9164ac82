"""Fixtures for the monitoring tests: one real Prometheus for the session (see prometheus_support.py)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from prometheus_support import Prometheus, start_prometheus


@pytest.fixture(scope="session")
def prometheus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Prometheus]:
    """A real Prometheus on a free loopback port, scraping every second whatever targets tests add."""
    server = start_prometheus(tmp_path_factory.mktemp("prometheus"))
    try:
        yield server
    finally:
        server.stop()
