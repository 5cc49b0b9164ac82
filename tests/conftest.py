"""Shared test switches and fixtures (the real storage-initializer's logs among them).

--update-golden   rewrite golden files instead of comparing (the only way they change)
--cluster         run the opt-in tests against the current kubeconfig context (kind, minikube, a real cluster)
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import yaml

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
def strict_umask() -> Iterator[None]:
    """The process umask 077 for one test (a notebook's or a CI runner's, often): a plain mkdir or open() then makes
    folders 0700 and files 0600, which the pod's user could not read."""
    saved = os.umask(0o077)
    try:
        yield
    finally:
        os.umask(saved)


@pytest.fixture
def port() -> int:
    return free_port()


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


# Small real models and spec files, for the spec, build and layout tests.


@pytest.fixture(scope="session")
def torchscript_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real TorchScript file: Linear(3, 2) with fixed weights."""
    import torch

    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("ts") / "linear.pt"
    torch.jit.script(torch.nn.Linear(3, 2)).save(str(path))
    return path


@pytest.fixture
def write_spec(tmp_path: Path):
    """write_spec(folder_name, **keys) -> the folder holding a mar.yaml with those keys."""

    def write(folder: str = "spec", **keys: object) -> Path:
        d = tmp_path / folder
        d.mkdir(parents=True, exist_ok=True)
        (d / "mar.yaml").write_text(yaml.safe_dump(keys, sort_keys=False), encoding="utf-8")
        return d

    return write


@pytest.fixture
def tensor_spec(write_spec, torchscript_model: Path):
    def make(folder: str = "spec", **keys: object) -> Path:
        values = {"name": "lin", "task": "tensor", "model": str(torchscript_model), **keys}
        return write_spec(folder, **values)

    return make


@pytest.fixture
def hf_folder(tmp_path: Path) -> Path:
    """A complete-looking HF folder (config, weights, tokenizer) for file checks that do not load the model."""
    d = tmp_path / "hf"
    d.mkdir()
    (d / "config.json").write_text('{"model_type": "bert"}')
    (d / "model.safetensors").write_bytes(b"\0" * 1024)
    (d / "tokenizer.json").write_text("{}")
    (d / "vocab.txt").write_text("[PAD]\n")
    return d
