"""Helpers for tests that need a real S3 endpoint, hand-made layouts, and KServe's own download code.

Importable from other test folders (``tests/`` is on sys.path through its conftest, so ``from stage.s3_support
import ...``); the fixtures built on them are in tests/stage/conftest.py.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import uuid
import zipfile
from collections.abc import Iterator, Mapping
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from unittest import mock

import httpx

MOTO_SERVER = Path(sys.executable).parent / "moto_server"
DUMMY_CREDENTIALS = {"AWS_ACCESS_KEY_ID": "testing-key-id", "AWS_SECRET_ACCESS_KEY": "testing-secret"}


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class MotoServer:
    """A moto_server subprocess on 127.0.0.1 (its own process group), its request log in ``log``."""

    url: str
    process: subprocess.Popen[bytes]
    log: Path

    def log_offset(self) -> int:
        return self.log.stat().st_size

    def requests_since(self, offset: int, method: str | None = None, contains: str = "") -> list[str]:
        """Request lines ('PUT /bucket/key?...') the server logged after ``offset`` (werkzeug's access log).

        Each line is written just after its answer is sent, so a sentinel request made now is waited for: once
        it is in the log, so are the lines of every request answered before it.
        """
        sentinel = f"/moto-api/?sentinel={uuid.uuid4().hex}"
        httpx.get(self.url + sentinel, timeout=10)
        deadline = time.monotonic() + 10
        while sentinel not in self._read(offset) and time.monotonic() < deadline:
            time.sleep(0.02)
        time.sleep(0.05)  # threads that answered before the sentinel may still be writing their line
        text = self._read(offset)
        lines = re.findall(r'"([A-Z]+ \S+) HTTP/[\d.]+"', text)
        lines = [line for line in lines if "/moto-api/?sentinel=" not in line]
        return [line for line in lines if (method is None or line.startswith(method + " ")) and contains in line]

    def _read(self, offset: int) -> str:
        with self.log.open("rb") as f:
            f.seek(offset)
            return f.read().decode("utf-8", errors="replace")

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()


def start_moto(log: Path, env: Mapping[str, str] | None = None, timeout: float = 30) -> MotoServer:
    """Start moto_server on a free loopback port and wait until it answers; raise RuntimeError if it does not."""
    port = free_port()
    out = log.open("wb")
    process = subprocess.Popen(
        [str(MOTO_SERVER), "-H", "127.0.0.1", "-p", str(port)],
        stdout=out, stderr=subprocess.STDOUT, env={**os.environ, **(env or {})}, start_new_session=True,
    )
    out.close()
    server = MotoServer(f"http://127.0.0.1:{port}", process, log)
    deadline = time.monotonic() + timeout
    while True:
        try:
            httpx.get(f"{server.url}/moto-api/", timeout=1)
            return server
        except httpx.TransportError:
            if process.poll() is not None or time.monotonic() > deadline:
                server.stop()
                raise RuntimeError(f"moto_server did not start: {log.read_text(errors='replace')[-2000:]}") from None
            time.sleep(0.05)


# What a developer's environment may hold that would send the tests' S3 calls elsewhere or sign them as someone.
DEVELOPER_AWS = ("AWS_PROFILE", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "AWS_SESSION_TOKEN")


@contextlib.contextmanager
def moto_session(home: Path, extra_env: Mapping[str, str] | None = None,
                 cleared: tuple[str, ...] = ()) -> Iterator[MotoServer]:
    """moto_server for a test session, with dummy credentials in os.environ and the developer's AWS files and
    settings (``DEVELOPER_AWS``, ``cleared``) out of it; the environment is restored afterwards."""
    env = {
        **DUMMY_CREDENTIALS,
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_CONFIG_FILE": str(home / "config"),
        "AWS_SHARED_CREDENTIALS_FILE": str(home / "credentials"),
        **(extra_env or {}),
    }
    with mock.patch.dict(os.environ, env):
        for key in (*DEVELOPER_AWS, *cleared):
            os.environ.pop(key, None)
        server = start_moto(home / "moto.log")
        try:
            yield server
        finally:
            server.stop()


def s3_env(endpoint: str) -> AbstractContextManager[object]:
    """The environment the storage-initializer gets from KServe for an S3 Secret (s3-endpoint, usehttps=0)."""
    values = {"AWS_ENDPOINT_URL": endpoint, "S3_USE_HTTPS": "0", "S3_VERIFY_SSL": "0",
              "AWS_DEFAULT_REGION": "us-east-1"}
    return mock.patch.dict(os.environ, values)


def kserve_download(uri: str, out_dir: Path, endpoint: str) -> Path:
    """Download ``uri`` with kserve_storage.Storage.download, the storage-initializer's own code (in a process of
    its own: it forks a multiprocessing.Pool, which can deadlock in a process with threads, like this one)."""
    from toolkit._serve.initializer import download

    with s3_env(endpoint):
        return download(uri, out_dir, timeout=300)


def tree(root: Path) -> dict[str, bytes]:
    """Every file under ``root`` (posix relative path -> bytes)."""
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


# --------------------------------------------------------------------------------------------------------------
# Hand-made layouts (the keys and archives `mar-build check` accepts without errors)

CONFIG_HEAD = """\
# config.properties for KServe's kserve-torchserve runtime (hand-made for the stage tests).
inference_address=http://0.0.0.0:8085
management_address=http://0.0.0.0:8085
metrics_address=http://0.0.0.0:8082
grpc_inference_port=7070
grpc_management_port=7071
metrics_mode=prometheus
disable_token_authorization=true
enable_envvars_config=false
model_store=/mnt/models/model-store
"""


def write_mar(path: Path, name: str, version: str = "1.0", payload: bytes = b"weights") -> Path:
    """A TorchServe archive: MAR-INF/MANIFEST.json and a stored (uncompressed) payload file, reproducibly."""
    manifest = {"createdOn": "01/01/2025 00:00:00", "runtime": "python", "archiverVersion": "0.12.0",
                "model": {"modelName": name, "handler": "handler.py", "modelVersion": version}}
    path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as zf:
        # A fixed timestamp: the same payload always gives the same archive bytes.
        for name_, data in (("MAR-INF/MANIFEST.json", json.dumps(manifest).encode()),
                            ("handler.py", b"# handler\n"), ("model.bin", payload)):
            zf.writestr(zipfile.ZipInfo(name_, date_time=(2025, 1, 1, 0, 0, 0)), data)
    return path


def write_config(layout: Path, models: Mapping[str, str]) -> Path:
    """config/config.properties naming ``models`` (name -> version), each in model-store/NAME.mar."""
    snapshot = {
        "name": "startup.cfg", "modelCount": len(models),
        "models": {
            name: {version: {"defaultVersion": True, "marName": f"{name}.mar", "minWorkers": 1, "maxWorkers": 1,
                             "batchSize": 1, "maxBatchDelay": 50, "responseTimeout": 120}}
            for name, version in models.items()
        },
    }
    config = layout / "config" / "config.properties"
    config.parent.mkdir(parents=True, exist_ok=True)
    config.write_text(CONFIG_HEAD + "model_snapshot=" + json.dumps(snapshot, separators=(",", ":")) + "\n")
    return config


def make_layout(layout: Path, models: Mapping[str, bytes], version: str = "1.0") -> Path:
    """A layout serving ``models`` (name -> payload bytes): config/config.properties + model-store/NAME.mar."""
    for name, payload in models.items():
        write_mar(layout / "model-store" / f"{name}.mar", name, version, payload)
    write_config(layout, {name: version for name in models})
    return layout
