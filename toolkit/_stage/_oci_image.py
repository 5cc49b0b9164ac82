"""The bytes of an OCI image that holds a layout under /models: deterministic tar layers, config and manifest.

One layer per layout file, an *uncompressed* tar (``application/vnd.oci.image.layer.v1.tar``) whose members are
``models/``, the file's folders and the file itself, named ``models/...`` exactly: KServe's fetch mode
(kserve_storage ``Storage._download_oci``) keeps only members whose name starts with ``models/``, and modelcar
and image-volume (``subPath: models``) modes read the image's /models. Uncompressed because .mar files are zips
already, the fetch code reads plain tar best (``r|``), the digest is then also the diff_id, and the size is known
before a byte is read (header + file + padding + end blocks), so a layer streams from the file with a
Content-Length and no temp file.

Every header is fixed (mode 0644/0755, uid/gid 0, no user names, mtime 0, PAX format), so a layer's bytes depend
only on the file's path in the layout and its content: the same archive gives the same layer digest on every
machine and every run, which is what lets the registry answer "already there" to an unchanged archive. The
config carries no timestamp for the same reason: the same layout gives the same image digest.
"""

from __future__ import annotations

import hashlib
import json
import logging
import tarfile
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from .._files import PRIVATE_FILE, write_atomic
from .base import Cancelled, LocalFile, Meter

log = logging.getLogger("toolkit.stage")

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER_TAR = "application/vnd.oci.image.layer.v1.tar"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
# A Docker v2 base's layers keep their bytes and digests in an OCI manifest; only the media type is renamed
# (as `podman push --format oci` does).
DOCKER_LAYER_TYPES = {
    "application/vnd.docker.image.rootfs.diff.tar.gzip": "application/vnd.oci.image.layer.v1.tar+gzip",
    "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip":
        "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip",
}
# Not org.opencontainers.image.title: `oras pull` would write each layer's tar to a file of that name.
PATH_ANNOTATION = "io.mar-build.path"
ROOT = "models"
_BLOCK = 512
_CHUNK = 1024 * 1024
_LAYER_FORMAT = "v1"  # part of the digest cache's key: a change to the tar format must not reuse old digests


def canonical_json(value: Any) -> bytes:
    """Sorted keys, no spaces: the bytes (and so the digest) depend on the value alone."""
    return json.dumps(value, separators=(",", ":"), sort_keys=True, ensure_ascii=False).encode("utf-8")


def sha256_digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _header(name: str, *, size: int = 0, is_dir: bool = False) -> bytes:
    info = tarfile.TarInfo(name)
    info.type = tarfile.DIRTYPE if is_dir else tarfile.REGTYPE
    info.mode = 0o755 if is_dir else 0o644
    info.size = 0 if is_dir else size
    info.mtime = 0
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    # PAX adds an extended header only for a long or non-ASCII name or a size over 8 GiB: still deterministic.
    return info.tobuf(format=tarfile.PAX_FORMAT, encoding="utf-8", errors="strict")


def layer_head(relpath: str, size: int) -> bytes:
    """The tar headers before the file's bytes: ``models/``, each folder of ``relpath``, then the file."""
    parts = PurePosixPath(relpath).parts
    folders = [f"{ROOT}/" + "".join(p + "/" for p in parts[:i]) for i in range(len(parts))]
    return b"".join(_header(f, is_dir=True) for f in folders) + _header(f"{ROOT}/{relpath}", size=size)


def layer_tail(size: int) -> bytes:
    """The padding of the file to a 512-byte block, then the two zero blocks that end an archive."""
    return b"\0" * ((-size) % _BLOCK + 2 * _BLOCK)


@dataclass(frozen=True)
class Layer:
    """The tar layer of one layout file: its digest and size (of the tar, not the file)."""

    file: LocalFile
    digest: str
    size: int

    def descriptor(self) -> dict[str, Any]:
        return {"mediaType": OCI_LAYER_TAR, "digest": self.digest, "size": self.size,
                "annotations": {PATH_ANNOTATION: self.file.relpath}}

    def stream(self, meter: Meter | None = None, stop: threading.Event | None = None) -> Iterator[bytes]:
        """The layer's bytes from the file; counts them on ``meter``; stops when ``stop`` is set."""
        return _tar_stream(self.file, meter, stop)


def _tar_stream(file: LocalFile, meter: Meter | None, stop: threading.Event | None) -> Iterator[bytes]:
    head = layer_head(file.relpath, file.size)
    yield head
    sent = 0
    with open(file.path, "rb") as f:
        while sent < file.size:
            if stop is not None and stop.is_set():
                raise Cancelled()
            chunk = f.read(min(_CHUNK, file.size - sent))
            if not chunk:
                break
            sent += len(chunk)
            if meter is not None:
                meter.add(len(chunk))
            yield chunk
    if sent != file.size:
        # The registry would refuse the blob (its digest no longer matches); say what happened instead.
        raise OSError(f"{file.path} changed while staging ({sent} bytes where {file.size} were hashed)")
    yield layer_tail(file.size)


def hash_layer(file: LocalFile) -> Layer:
    """Read ``file`` once through its tar stream to get the layer's digest and size."""
    digest = hashlib.sha256()
    size = 0
    for chunk in _tar_stream(file, None, None):
        digest.update(chunk)
        size += len(chunk)
    return Layer(file, "sha256:" + digest.hexdigest(), size)


class LayerDigests:
    """Layer digests remembered by content: (format, relpath, file size, file SHA-256) -> layer digest.

    A layer's bytes are a function of exactly that key, so an entry never goes stale; the file's SHA-256 comes
    from stage's own hash cache. With it a re-stage of an unchanged layout reads no file at all. Any trouble
    reading or writing it is ignored (it is only ever a shortcut).
    """

    _MAX_ENTRIES = 2000

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self._entries: dict[str, str] = {}
        self._dirty = False
        self._lock = threading.Lock()
        if path is None:
            return
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            if isinstance(data, dict) and isinstance(data.get("layers"), dict):
                self._entries = {k: v for k, v in data["layers"].items() if isinstance(v, str)}
        except (OSError, ValueError) as exc:
            if not isinstance(exc, FileNotFoundError):
                log.debug("ignoring the layer digest cache %s: %s", path, exc)

    @staticmethod
    def _key(file: LocalFile) -> str:
        return f"{_LAYER_FORMAT}:{file.sha256}:{file.size}:{file.relpath}"

    def layer(self, file: LocalFile) -> Layer:
        """The layer of ``file``, from the cache or by reading the file once."""
        with self._lock:
            known = self._entries.get(self._key(file))
        if known is not None:
            return Layer(file, known, len(layer_head(file.relpath, file.size)) + file.size + len(layer_tail(file.size)))
        layer = hash_layer(file)
        with self._lock:
            self._entries[self._key(file)] = layer.digest
            self._dirty = True
        return layer

    def save(self) -> None:
        if self.path is None or not self._dirty:
            return
        with self._lock:
            entries = dict(list(self._entries.items())[-self._MAX_ENTRIES:])
            self._dirty = False
        try:
            write_atomic(self.path, json.dumps({"layers": entries}), mode=PRIVATE_FILE, fsync=False)
        except OSError as exc:
            log.debug("cannot write the layer digest cache %s: %s", self.path, exc)


def image_config(layers: Sequence[Layer], *, base: dict[str, Any] | None, platform: tuple[str, str],
                 labels: dict[str, str]) -> bytes:
    """The image config: the base's (its os/architecture, Env, history...) or a bare one, plus our layers.

    ``created`` is dropped, and our history entries carry none, so the same layout on the same base always
    gives the same config digest.
    """
    config: dict[str, Any] = json.loads(json.dumps(base)) if base else {
        "architecture": platform[1], "os": platform[0], "config": {}, "rootfs": {"type": "layers", "diff_ids": []},
    }
    config.pop("created", None)
    runtime = config.get("config") or {}
    runtime["Labels"] = {**(runtime.get("Labels") or {}), **labels}
    config["config"] = runtime
    rootfs = config.get("rootfs") or {"type": "layers", "diff_ids": []}
    rootfs["diff_ids"] = [*rootfs.get("diff_ids", []), *(layer.digest for layer in layers)]
    config["rootfs"] = rootfs
    config["history"] = [*config.get("history", []),
                         *({"created_by": f"mar-build stage {layer.file.relpath}"} for layer in layers)]
    return canonical_json(config)


def image_manifest(config: bytes, layers: Sequence[Layer], base_layers: Sequence[dict[str, Any]]) -> bytes:
    """The OCI image manifest: the base's layers, then ours in staging order (config.properties last)."""
    manifest = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {"mediaType": OCI_CONFIG, "digest": sha256_digest(config), "size": len(config)},
        "layers": [*base_layers, *(layer.descriptor() for layer in layers)],
    }
    return canonical_json(manifest)


def base_layer_descriptor(layer: dict[str, Any]) -> dict[str, Any]:
    """A base image's layer as an OCI manifest lists it (Docker media types renamed, bytes unchanged)."""
    out = {k: v for k, v in layer.items() if k in ("mediaType", "digest", "size", "urls", "annotations")}
    out["mediaType"] = DOCKER_LAYER_TYPES.get(str(out.get("mediaType")), out.get("mediaType", OCI_LAYER_TAR))
    return out
