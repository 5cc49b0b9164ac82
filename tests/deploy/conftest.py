"""Fixtures for deploy/status/delete: the stand-in API server (k8s_support.py), clients pointed at it, and a kubeconfig
for the CLI."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from k8s_support import NAMESPACE, TOKEN, StandInApiServer


@pytest.fixture
def standin() -> Iterator[StandInApiServer]:
    server = StandInApiServer().start()
    yield server
    server.stop()


@pytest.fixture
def api_client(standin: StandInApiServer) -> Iterator[object]:
    from kubernetes import client

    configuration = client.Configuration(host=standin.url)
    api = client.ApiClient(configuration)
    yield api
    api.close()


@pytest.fixture
def kubeconfig(tmp_path: Path, standin: StandInApiServer) -> Path:
    """A kubeconfig whose current context points at the stand-in, with a namespace and a bearer token."""
    path = tmp_path / "kubeconfig"
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "standin", "cluster": {"server": standin.url}}],
        "users": [{"name": "notebook", "user": {"token": TOKEN}}],
        "contexts": [
            {"name": "stand-in", "context": {"cluster": "standin", "user": "notebook", "namespace": NAMESPACE}},
            {"name": "other", "context": {"cluster": "standin", "user": "notebook"}},
        ],
        "current-context": "stand-in",
    }
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    return path
