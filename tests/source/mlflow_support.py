"""A real MLflow tracking server on loopback for tests, and models registered in it the way users log them.

API (importable from any test folder: ``from source.mlflow_support import ...``; tests/ is on sys.path):

    with mlflow_server(workdir) as server:     # tests/source/conftest.py's session fixture mlflow_server_session
        server.tracking_uri    # http://127.0.0.1:PORT, an `mlflow server` with a SQLite backend store
        server.s3_endpoint     # http://127.0.0.1:PORT, moto_server: the artifacts live in its bucket
        server.bucket          # that bucket ("mlflow"); the artifact root is s3://mlflow/artifacts
        server.env             # what a client needs, as the seeds set it for MinIO: MLFLOW_TRACKING_URI,
                               #   MLFLOW_S3_ENDPOINT_URL, AWS_ACCESS_KEY_ID/SECRET_ACCESS_KEY/DEFAULT_REGION
                               #   (and AWS_CONFIG_FILE/AWS_SHARED_CREDENTIALS_FILE away from ~/.aws)
        with server.client_env():   # server.env in os.environ for the block (what subprocesses inherit too)
            log_tiny_torch(server, "tiny", seed=0)       # -> ModelVersion of a registered Linear(4, 3) (pt2)
            log_text_sample(server, "intent", model_dir)  # -> ModelVersion of samples/text-classification's model

Another test folder wraps it in a session fixture of its own (conftest fixtures do not cross folders), e.g.

    @pytest.fixture(scope="session")
    def mlflow(tmp_path_factory):
        with mlflow_server(tmp_path_factory.mktemp("mlflow")) as server:
            yield server

``mlflow_server(workdir, s3_endpoint=URL)`` puts the artifacts on an S3 endpoint the caller already runs (it must
accept server.env's dummy credentials, as moto does) instead of starting its own moto_server. The server runs with
``--no-serve-artifacts``: clients read and write artifacts on S3 themselves, with the variables above.
Both processes bind 127.0.0.1 on free ports, run in their own process groups and are stopped when the block ends.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from unittest import mock

import httpx
from stage.s3_support import DUMMY_CREDENTIALS, MotoServer, free_port, start_moto

MLFLOW = Path(sys.executable).parent / "mlflow"
BUCKET = "mlflow"
TINY_INPUT = [[0.5, -1.0, 2.0, 0.25], [1.5, 0.0, -0.5, 3.0]]


@dataclass
class MlflowServer:
    """A running `mlflow server` (SQLite store, artifacts in an S3 bucket) and the environment its clients need."""

    tracking_uri: str
    s3_endpoint: str
    bucket: str
    process: subprocess.Popen[bytes]
    log: Path
    env: dict[str, str] = field(default_factory=dict)

    @contextmanager
    def client_env(self) -> Iterator[dict[str, str]]:
        """``env`` set in os.environ for the block (restored afterwards)."""
        with mock.patch.dict(os.environ, self.env):
            yield self.env

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()


@contextmanager
def mlflow_server(workdir: Path, *, s3_endpoint: str | None = None, timeout: float = 180) -> Iterator[MlflowServer]:
    """Start moto_server (unless ``s3_endpoint`` is given) and `mlflow server`; yield once /health answers."""
    workdir.mkdir(parents=True, exist_ok=True)
    moto: MotoServer | None = None
    if s3_endpoint is None:
        moto = start_moto(workdir / "moto.log", env=DUMMY_CREDENTIALS)
        s3_endpoint = moto.url
    env = {
        **DUMMY_CREDENTIALS, "AWS_DEFAULT_REGION": "us-east-1", "MLFLOW_S3_ENDPOINT_URL": s3_endpoint,
        "AWS_CONFIG_FILE": str(workdir / "aws-config"), "AWS_SHARED_CREDENTIALS_FILE": str(workdir / "aws-creds"),
    }
    try:
        import boto3

        s3 = boto3.client("s3", endpoint_url=s3_endpoint, region_name="us-east-1",
                          aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
                          aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"])
        s3.create_bucket(Bucket=BUCKET)
        server = _start(workdir, env, timeout)
        server.s3_endpoint = s3_endpoint
        try:
            yield server
        finally:
            server.stop()
    finally:
        if moto is not None:
            moto.stop()


def _start(workdir: Path, env: dict[str, str], timeout: float) -> MlflowServer:
    port = free_port()
    log = workdir / "mlflow-server.log"
    command = [
        str(MLFLOW), "server", "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
        "--backend-store-uri", f"sqlite:///{workdir / 'mlflow.db'}",
        "--default-artifact-root", f"s3://{BUCKET}/artifacts", "--no-serve-artifacts",
    ]
    server_env = {**os.environ, **env, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    with log.open("wb") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=server_env,
                                   cwd=workdir, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    server = MlflowServer(url, env["MLFLOW_S3_ENDPOINT_URL"], BUCKET, process, log,
                          {**env, "MLFLOW_TRACKING_URI": url})
    deadline = time.monotonic() + timeout
    while True:
        try:
            if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                return server
        except httpx.TransportError:
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            server.stop()
            raise RuntimeError(f"mlflow server did not start: {log.read_text(errors='replace')[-3000:]}")
        time.sleep(0.2)


@contextmanager
def _quiet() -> Iterator[None]:
    # mlflow's warnings while logging (local version labels, pickle advice) are not what the tests look at
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


def tiny_torch_module(seed: int) -> Any:
    """A Linear(4, 3) + ReLU with weights from ``seed`` (the module log_tiny_torch registers)."""
    import torch

    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.ReLU()).eval()


def log_tiny_torch(server: MlflowServer, name: str, *, seed: int = 0, **log_model: Any) -> Any:
    """Log tiny_torch_module(seed) with mlflow.pytorch (torch.export, an input example) and register it as
    ``name``; ``log_model`` overrides the keyword arguments. Returns the registered ModelVersion."""
    import numpy as np

    with server.client_env(), _quiet():
        import mlflow

        args = {"input_example": np.array(TINY_INPUT, dtype=np.float32), "pip_requirements": ["torch"],
                **log_model}
        with mlflow.start_run():
            info = mlflow.pytorch.log_model(tiny_torch_module(seed), name="model", registered_model_name=name,
                                            **args)
        return mlflow.MlflowClient().get_model_version(name, str(info.registered_model_version))


def log_text_sample(server: MlflowServer, name: str, model_dir: Path) -> Any:
    """Log the Hugging Face folder ``model_dir`` (model + tokenizer) with mlflow.transformers, task
    text-classification, and register it as ``name``. Returns the registered ModelVersion."""
    with server.client_env(), _quiet():
        import mlflow
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        model = AutoModelForSequenceClassification.from_pretrained(str(model_dir), local_files_only=True)
        tokenizer = AutoTokenizer.from_pretrained(str(model_dir), local_files_only=True)
        with mlflow.start_run():
            info = mlflow.transformers.log_model(
                {"model": model, "tokenizer": tokenizer}, name="model", task="text-classification",
                pip_requirements=["transformers", "torch"], registered_model_name=name,
            )
        return mlflow.MlflowClient().get_model_version(name, str(info.registered_model_version))
