"""Fixtures for the pipeline tests: the loopback S3 endpoint (moto_server, as tests/stage uses it) with its
credentials in the environment the steps inherit, and stage's hash cache in a session folder."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
from stage.s3_support import DUMMY_CREDENTIALS, MotoServer, start_moto

_CLEARED = ("AWS_PROFILE", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "AWS_SESSION_TOKEN", "KUBECONFIG")


@pytest.fixture(scope="session")
def moto(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MotoServer]:
    """moto_server on a free 127.0.0.1 port; dummy keys, no developer AWS files, no kubeconfig in the environment."""
    home = tmp_path_factory.mktemp("aws")
    env = {
        **DUMMY_CREDENTIALS,
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_CONFIG_FILE": str(home / "config"),
        "AWS_SHARED_CREDENTIALS_FILE": str(home / "credentials"),
        "MAR_BUILD_CACHE_DIR": str(home / "cache"),
    }
    saved = {k: os.environ.get(k) for k in [*env, *_CLEARED]}
    for k in _CLEARED:
        os.environ.pop(k, None)
    os.environ.update(env)
    server = start_moto(home / "moto.log")
    try:
        yield server
    finally:
        server.stop()
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
