"""Fixtures for the client's tests (the stand-ins themselves are in client_support.py)."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
from client_support import App, LoopbackServer, V1Model


@pytest.fixture
def serve() -> Iterator[Callable[[App], LoopbackServer]]:
    """serve(app) -> a started LoopbackServer, stopped after the test."""
    started: list[LoopbackServer] = []

    def start(app: App) -> LoopbackServer:
        server = LoopbackServer(app).__enter__()
        started.append(server)
        return server

    yield start
    for server in started:
        server.__exit__(None, None, None)


@pytest.fixture
def model() -> V1Model:
    return V1Model()
