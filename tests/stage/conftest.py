"""Fixtures for staging tests: a real S3 endpoint (moto_server on loopback), buckets, layouts, KServe's download.

``s3_endpoint`` (session) yields the endpoint URL; ``moto`` the server itself (its request log counts calls);
``bucket`` a fresh bucket per test; ``download`` reads a staged URI back with kserve_storage.Storage.download.
``oci_registry`` / ``oci_registry_auth`` (session) and ``own_registry`` (one test's) are docker-registry
processes on loopback; ``auth_files`` keeps the developer's registry credentials out of a test.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from oci_support import TEST_PASSWORD, TEST_USER, OciRegistry
from s3_support import MotoServer, kserve_download, make_layout, moto_session


@pytest.fixture(scope="session", autouse=True)
def hash_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """stage's SHA-256 cache in a session folder, not in the developer's ~/.cache."""
    path = tmp_path_factory.mktemp("cache")
    saved = os.environ.get("MAR_BUILD_CACHE_DIR")
    os.environ["MAR_BUILD_CACHE_DIR"] = str(path)
    yield path
    if saved is None:
        os.environ.pop("MAR_BUILD_CACHE_DIR", None)
    else:
        os.environ["MAR_BUILD_CACHE_DIR"] = saved


@pytest.fixture(scope="session")
def moto(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MotoServer]:
    """moto_server on a free 127.0.0.1 port for the session, with dummy credentials in the environment."""
    # ~/.aws stays out of the tests (and the developer's real credentials out of the requests)
    with moto_session(tmp_path_factory.mktemp("aws")) as server:
        yield server


@pytest.fixture(scope="session")
def s3_endpoint(moto: MotoServer) -> str:
    """The URL of the session's S3 endpoint (http://127.0.0.1:PORT)."""
    return moto.url


@pytest.fixture
def s3(s3_endpoint: str):  # type: ignore[no-untyped-def]
    """A boto3 S3 client on the session's endpoint (for arranging and inspecting buckets)."""
    import boto3

    return boto3.client("s3", endpoint_url=s3_endpoint, region_name="us-east-1")


@pytest.fixture
def bucket(s3) -> str:  # type: ignore[no-untyped-def]
    """A new, empty bucket for this test."""
    name = f"stage-{uuid.uuid4().hex[:12]}"
    s3.create_bucket(Bucket=name)
    return name


@pytest.fixture
def download(s3_endpoint: str, tmp_path: Path) -> Callable[[str], Path]:
    """download(uri) -> a fresh folder holding what the storage-initializer copies to /mnt/models."""
    count = 0

    def run(uri: str) -> Path:
        nonlocal count
        count += 1
        return kserve_download(uri, tmp_path / f"mnt-models-{count}", s3_endpoint)

    return run


@pytest.fixture
def layout(tmp_path: Path) -> Path:
    """A valid two-model layout (small archives)."""
    return make_layout(tmp_path / "layout", {"bert": os.urandom(200_000), "gpt": os.urandom(300_000)})


# --------------------------------------------------------------------------------------------------------------
# OCI registries (docker-registry on loopback) and the auth files stage reads


@pytest.fixture(scope="session")
def oci_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OciRegistry]:
    """An anonymous docker-registry on a free 127.0.0.1 port for the session (tests use their own repositories)."""
    registry = OciRegistry(tmp_path_factory.mktemp("registry")).start()
    try:
        yield registry
    finally:
        registry.stop()


@pytest.fixture(scope="session")
def oci_registry_auth(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OciRegistry]:
    """A docker-registry that wants basic auth (user TEST_USER, password TEST_PASSWORD)."""
    registry = OciRegistry(tmp_path_factory.mktemp("registry-auth"), auth=(TEST_USER, TEST_PASSWORD)).start()
    try:
        yield registry
    finally:
        registry.stop()


@pytest.fixture
def own_registry(tmp_path: Path) -> Iterator[OciRegistry]:
    """A docker-registry of this test alone (one it may stop and start again on the same storage)."""
    registry = OciRegistry(tmp_path / "own-registry").start()
    try:
        yield registry
    finally:
        registry.stop()


@pytest.fixture
def auth_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """No registry credentials but those a test writes: DOCKER_CONFIG is an empty folder (returned), and the
    developer's REGISTRY_AUTH_FILE and podman auth file are out of reach."""
    folder = tmp_path / "docker-config"
    folder.mkdir()
    monkeypatch.setenv("DOCKER_CONFIG", str(folder))
    monkeypatch.delenv("REGISTRY_AUTH_FILE", raising=False)
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path / "runtime"))
    return folder
