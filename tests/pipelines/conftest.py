"""Fixtures for the pipeline tests: the loopback S3 endpoint (moto_server, as tests/stage uses it) with its
credentials in the environment the steps inherit, and stage's hash cache in a session folder."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from stage.s3_support import MotoServer, moto_session


@pytest.fixture(scope="session")
def moto(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MotoServer]:
    """moto_server on a free 127.0.0.1 port; dummy keys, no developer AWS files, no kubeconfig in the environment."""
    home = tmp_path_factory.mktemp("aws")
    with moto_session(home, {"MAR_BUILD_CACHE_DIR": str(home / "cache")}, cleared=("KUBECONFIG",)) as server:
        yield server
