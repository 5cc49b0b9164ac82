"""Fixtures for the MLflow source tests: one real `mlflow server` for the session (SQLite, artifacts in a loopback
moto S3 bucket) with models registered once, and each test's client environment.

``mlflow_server`` (session) the server (see mlflow_support.py); ``mlflow_env`` its client variables set for one
test (monkeypatch); ``registry`` (session) what was registered: ``tiny`` versions 1 and 2 (different weights, alias
``champion`` -> 1) and ``intent`` version 1 (the text sample's model, alias ``prod``).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from mlflow_support import MlflowServer, log_text_sample, log_tiny_torch, mlflow_server
from samples.samples_support import Sample, prepare_once


@pytest.fixture(scope="session")
def mlflow_server_session(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MlflowServer]:
    with mlflow_server(tmp_path_factory.mktemp("mlflow")) as server:
        yield server


@pytest.fixture
def mlflow_env(mlflow_server_session: MlflowServer, monkeypatch: pytest.MonkeyPatch) -> MlflowServer:
    """The session's server, with its client variables (MLFLOW_TRACKING_URI, MLFLOW_S3_ENDPOINT_URL, AWS_*) set."""
    for key, value in mlflow_server_session.env.items():
        monkeypatch.setenv(key, value)
    for key in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3"):
        monkeypatch.delenv(key, raising=False)
    return mlflow_server_session


@dataclass(frozen=True)
class Registry:
    server: MlflowServer
    tiny_v1: Any
    tiny_v2: Any
    intent: Any
    sample: Sample


@pytest.fixture(scope="session")
def registry(mlflow_server_session: MlflowServer) -> Registry:
    server = mlflow_server_session
    sample = prepare_once("text-classification")
    tiny_v1 = log_tiny_torch(server, "tiny", seed=1)
    tiny_v2 = log_tiny_torch(server, "tiny", seed=2)
    intent = log_text_sample(server, "intent", sample.model_dir)
    with server.client_env():
        import mlflow

        client = mlflow.MlflowClient()
        client.set_registered_model_alias("tiny", "champion", tiny_v1.version)
        client.set_registered_model_alias("intent", "prod", intent.version)
    return Registry(server, tiny_v1, tiny_v2, intent, sample)
