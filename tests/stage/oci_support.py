"""Helpers for tests that need a real OCI registry: Debian's docker-registry (CNCF distribution 2.8) on loopback,
a busybox base image pushed without any container tool, KServe's own oci+fetch download, and registry reads.

The fixtures built on them are in tests/stage/conftest.py.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import io
import json
import os
import re
import shutil
import subprocess
import tarfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from unittest import mock

import httpx
from s3_support import free_port

REGISTRY_BIN = shutil.which("docker-registry") or "/usr/bin/docker-registry"
BUSYBOX = shutil.which("busybox") or "/bin/busybox"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER_TAR = "application/vnd.oci.image.layer.v1.tar"
ACCEPT = f"{OCI_MANIFEST}, application/vnd.docker.distribution.manifest.v2+json"

TEST_USER = "alice"
TEST_PASSWORD = "s3cret-Pa55"
# distribution's htpasswd accepts bcrypt only: a fixed hash of TEST_PASSWORD (cost 4), made once with
# crypt.crypt(TEST_PASSWORD, crypt.mksalt(crypt.METHOD_BLOWFISH, rounds=16)), so that no bcrypt package is needed.
TEST_HASH = "$2b$04$VuRAb8cc80T4bCmcB1xlpeAXCteo19h8x5XRzopbUPaDS3Um0DOca"

_CONFIG = """version: 0.1
log:
  level: warn
  accesslog:
    disabled: false
storage:
  filesystem:
    rootdirectory: {root}
  delete:
    enabled: true
  maintenance:
    uploadpurging:
      enabled: false
http:
  addr: 127.0.0.1:{port}
  secret: not-a-secret-test-only
{auth}"""


@dataclass
class OciRegistry:
    """A docker-registry process on 127.0.0.1 with its storage, config and log (its access log counts calls)."""

    folder: Path
    auth: tuple[str, str] | None = None
    host: str = ""
    process: subprocess.Popen[bytes] | None = None
    log: Path = field(init=False)

    def __post_init__(self) -> None:
        self.log = self.folder / "registry.log"

    @property
    def url(self) -> str:
        return f"http://{self.host}"

    def start(self, timeout: float = 20) -> OciRegistry:
        """Start on a free port (the same storage as before, if it ran already); wait until /v2/ answers."""
        if not Path(REGISTRY_BIN).exists():
            raise RuntimeError(f"{REGISTRY_BIN} is missing: apt-get install docker-registry (make test does)")
        (self.folder / "storage").mkdir(parents=True, exist_ok=True)
        auth = ""
        if self.auth:
            (self.folder / "htpasswd").write_text(f"{self.auth[0]}:{TEST_HASH}\n")
            auth = f"auth:\n  htpasswd:\n    realm: test-realm\n    path: {self.folder / 'htpasswd'}\n"
        port = free_port()
        config = self.folder / "config.yml"
        config.write_text(_CONFIG.format(root=self.folder / "storage", port=port, auth=auth))
        with self.log.open("ab") as out:
            self.process = subprocess.Popen([REGISTRY_BIN, "serve", str(config)], stdout=out,
                                            stderr=subprocess.STDOUT, start_new_session=True)
        self.host = f"127.0.0.1:{port}"
        deadline = time.monotonic() + timeout
        while True:
            with contextlib.suppress(httpx.TransportError):
                if httpx.get(f"{self.url}/v2/", timeout=1).status_code in (200, 401):
                    return self
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"docker-registry did not start: {self.log.read_text(errors='replace')[-2000:]}")
            time.sleep(0.02)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def log_offset(self) -> int:
        return self.log.stat().st_size if self.log.exists() else 0

    def requests_since(self, offset: int) -> list[str]:
        """Request lines ('PUT /v2/repo/blobs/uploads/...') of the access log written after ``offset``."""
        time.sleep(0.1)  # the access log is written just after each answer
        with self.log.open("rb") as f:
            f.seek(offset)
            text = f.read().decode("utf-8", errors="replace")
        return re.findall(r'"([A-Z]+ /v2/\S*) HTTP/[\d.]+"', text)

    def client(self) -> httpx.Client:
        return httpx.Client(base_url=self.url, auth=self.auth, timeout=30)

    def tag_digest(self, repo: str, tag: str) -> str | None:
        with self.client() as http:
            answer = http.head(f"/v2/{repo}/manifests/{tag}", headers={"Accept": ACCEPT})
        return answer.headers["docker-content-digest"] if answer.status_code == 200 else None

    def manifest(self, repo: str, ref: str) -> dict[str, Any]:
        with self.client() as http:
            answer = http.get(f"/v2/{repo}/manifests/{ref}", headers={"Accept": ACCEPT})
            answer.raise_for_status()
            return dict(answer.json())

    def blob(self, repo: str, digest: str) -> bytes:
        with self.client() as http:
            answer = http.get(f"/v2/{repo}/blobs/{digest}", follow_redirects=True)
            answer.raise_for_status()
            return answer.content

    def push(self, repo: str, data: bytes) -> str:
        """Upload one blob (monolithic POST + PUT); its digest."""
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        with self.client() as http:
            started = http.post(f"/v2/{repo}/blobs/uploads/")
            location = httpx.URL(self.url).join(started.headers["location"]).copy_merge_params({"digest": digest})
            http.put(location, content=data).raise_for_status()
        return digest


def busybox_layer() -> bytes:
    """A root filesystem layer: /bin/busybox (busybox-static) and sh, ln, sleep, mkdir linked to it."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        def add(info: tarfile.TarInfo, data: bytes | None = None) -> None:
            info.mtime, info.uid, info.gid, info.uname, info.gname = 0, 0, 0, "", ""
            tar.addfile(info, io.BytesIO(data) if data is not None else None)

        folder = tarfile.TarInfo("bin")
        folder.type, folder.mode = tarfile.DIRTYPE, 0o755
        add(folder)
        binary = Path(BUSYBOX).read_bytes()
        exe = tarfile.TarInfo("bin/busybox")
        exe.size, exe.mode = len(binary), 0o755
        add(exe, binary)
        for name in ("sh", "ln", "sleep", "mkdir"):
            link = tarfile.TarInfo(f"bin/{name}")
            link.type, link.linkname, link.mode = tarfile.SYMTYPE, "busybox", 0o777
            add(link)
    return buf.getvalue()


def push_busybox_base(registry: OciRegistry, repo: str = "base/busybox", tag: str = "1") -> str:
    """Push a FROM-scratch busybox image (what KServe's modelcar needs: sh, ln, sleep, mkdir); its reference."""
    layer = busybox_layer()
    layer_digest = registry.push(repo, layer)
    config = json.dumps({"architecture": "amd64", "os": "linux", "created": "2026-01-01T00:00:00Z",
                         "config": {"Env": ["PATH=/bin"], "Cmd": ["/bin/sh"]},
                         "rootfs": {"type": "layers", "diff_ids": [layer_digest]},
                         "history": [{"created_by": "busybox-static"}]}).encode()
    config_digest = registry.push(repo, config)
    manifest = {"schemaVersion": 2, "mediaType": OCI_MANIFEST,
                "config": {"mediaType": OCI_CONFIG, "digest": config_digest, "size": len(config)},
                "layers": [{"mediaType": OCI_LAYER_TAR, "digest": layer_digest, "size": len(layer)}]}
    with registry.client() as http:
        http.put(f"/v2/{repo}/manifests/{tag}", content=json.dumps(manifest).encode(),
                 headers={"Content-Type": OCI_MANIFEST}).raise_for_status()
    return f"{registry.host}/{repo}:{tag}"


def write_auth_file(path: Path, host: str, user: str, password: str) -> Path:
    """A docker config.json / podman auth.json with a basic ``auth`` entry for ``host``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    path.write_text(json.dumps({"auths": {host: {"auth": token}}}))
    return path


def kserve_fetch(ref: str, out_dir: Path, docker_config: Path | None = None) -> Path:
    """Download ``oci://REF`` with kserve_storage.Storage.download, the storage-initializer's oci+fetch code
    (plain http, as storageInitializer.ociInsecureRegistry=true makes it), into ``out_dir``."""
    from kserve_storage import Storage

    env = {"KSERVE_OCI_INSECURE_REGISTRY": "true",
           "KSERVE_OCI_DOCKER_CONFIG": str(docker_config or out_dir.parent / "no-docker-config.json")}
    with mock.patch.dict(os.environ, env):
        Storage.download(f"oci://{ref}", str(out_dir))
    return out_dir


def image_tree(registry: OciRegistry, repo: str, tag: str) -> dict[str, str]:
    """The image's merged root filesystem, as a container runtime applies the layers: path -> kind."""
    out: dict[str, str] = {}
    for layer in registry.manifest(repo, tag)["layers"]:
        data = registry.blob(repo, layer["digest"])
        gzipped = layer["mediaType"].endswith("+gzip")
        with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz" if gzipped else "r:") as tar:
            for member in tar:
                kind = "dir" if member.isdir() else f"-> {member.linkname}" if member.issym() else "file"
                out[member.name.rstrip("/")] = kind
    return out
