"""Fixtures for deploy/status/delete: the stand-in API server (k8s_standin.py), clients pointed at it, a kubeconfig
for the CLI, and storage-initializer logs produced by the real KServe download code."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from k8s_standin import NAMESPACE, TOKEN, StandInApiServer

# What KServe's storage-initializer image runs (python/storage-initializer/scripts/initializer-entrypoint) on the
# kserve_storage package the image is built from, once per case: its log lines and tracebacks are the real ones.
# One process runs every case (its imports cost more than the downloads); the traceback is printed as an uncaught
# exception would be, and a marker line separates the cases.
_ENTRYPOINT = """
import json, os, sys, traceback
from kserve_storage import Storage
from kserve_storage.logging import configure_logging, logger
configure_logging()
for case, uri, dest, env in json.loads(sys.argv[1]):
    os.environ.update(env)
    print(f"=== {case}", file=sys.stderr, flush=True)
    logger.info(f"Initializing, args: (src_uri, dest_path): {[(uri, dest)]}")
    try:
        Storage.download_files([uri], [dest])
    except Exception:
        traceback.print_exc()
    else:
        print("unexpectedly succeeded", file=sys.stderr)
    sys.stderr.flush()
"""


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


@pytest.fixture(scope="session")
def storage_initializer_logs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """Logs of the real storage-initializer code failing three ways: no credentials, a bucket that does not exist,
    a prefix with nothing under it (the last two against a real S3 endpoint on loopback, moto)."""
    from moto.server import ThreadedMotoServer

    tmp = tmp_path_factory.mktemp("storage-initializer")
    base = {
        "PATH": os.environ.get("PATH", ""),
        "HOME": str(tmp),
        "AWS_EC2_METADATA_DISABLED": "true",  # no instance-metadata lookups (they wait for a timeout)
        "AWS_CONFIG_FILE": str(tmp / "none"),
        "AWS_SHARED_CREDENTIALS_FILE": str(tmp / "none"),
    }
    moto = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    moto.start()
    try:
        host, port = moto._server.server_address[:2]  # type: ignore[attr-defined]
        endpoint = f"http://{host}:{port}"
        keyed = {
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_ENDPOINT_URL": endpoint,
        }
        import boto3

        s3 = boto3.client(
            "s3",
            endpoint_url=endpoint,
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
            region_name="us-east-1",
        )
        s3.create_bucket(Bucket="models")
        s3.put_object(Bucket="models", Key="other/config/config.properties", Body=b"x=1\n")
        cases = [  # no credentials first: the keys, once in the environment, stay there
            ("no-credentials", "s3://models/bert", str(tmp / "a"), {}),
            ("no-bucket", "s3://no-such-bucket/bert", str(tmp / "b"), keyed),
            ("empty-prefix", "s3://models/bert", str(tmp / "c"), keyed),
        ]
        run = subprocess.run(
            [sys.executable, "-c", _ENTRYPOINT, json.dumps(cases)],
            env=base,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            timeout=120,
        )
    finally:
        moto.stop()
    logs = {}
    for chunk in run.stdout.split("=== ")[1:]:
        case, _, text = chunk.partition("\n")
        assert "unexpectedly succeeded" not in text, f"the storage-initializer succeeded for {case}:\n{text}"
        logs[case] = text
    assert set(logs) == {c[0] for c in cases}, run.stdout
    return logs
