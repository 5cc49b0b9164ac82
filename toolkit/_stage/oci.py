"""Staging into an OCI image: ``oci://REGISTRY/REPOSITORY:TAG`` holds the layout under /models.

KServe reads such an image three ways, all of which give the pod ``/mnt/models/config/config.properties`` and
``/mnt/models/model-store/*.mar``, the level pvc:// and s3:// staging gives: ``oci+fetch://`` (the
storage-initializer pulls the layers and extracts their ``models/`` members), ``oci+native://`` (a Kubernetes
image volume mounted with ``subPath: models``) and plain ``oci://`` (modelcar: the image runs as a sidecar with
``ln -sf /proc/$$/root/models /mnt/models && sleep infinity``, so it needs a base image with sh, ln, sleep and
mkdir: ``base=IMAGE``). Without a base the image holds files only, which the first two modes need.

Why the distribution API over httpx rather than a Docker daemon, podman or oras-py: no daemon or extra tool has
to be installed or running in a notebook; each layer streams from its file (oras-py's upload reads a whole blob
into memory, and both it and the tools want the layer as a tar file on disk first: a second copy of every
archive); the manifest's bytes are ours, so its digest is known before it is sent; and each layer is checked by
digest (HEAD) before anything is sent. httpx is a core dependency already.

What a push does, in order: one uncompressed tar layer per file (_oci_image.py: the same file always gives the
same layer digest, so the registry's "already there" skips an unchanged archive), the archives' layers uploaded
in parallel and the config.properties layer after them (it is also the last layer of the image), the image
config, and last one manifest PUT to TAG. The registry refuses a manifest naming a blob it does not hold, so TAG
points at the previous complete image until that PUT and at the new complete image after it; an interrupted run
leaves unreferenced blobs (the registry's garbage collection removes them) and never a half image. Nothing is
deleted: the tag is the unit. A re-stage of an unchanged layout sends no layer and no manifest.

Registry: https, except for localhost/loopback registries and when the caller says ``insecure_registry`` (plain
http; the cluster then needs storageInitializer.ociInsecureRegistry). Credentials: _oci_registry.py.
"""

from __future__ import annotations

import functools
import json
import logging
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

from .._errors import StagingError
from .._registries import is_loopback
from .._uri import ImageRef, StorageUri, parse_image_ref
from ._oci_image import (
    DOCKER_LIST,
    DOCKER_MANIFEST,
    OCI_INDEX,
    OCI_MANIFEST,
    Layer,
    LayerDigests,
    base_layer_descriptor,
    image_config,
    image_manifest,
    sha256_digest,
)
from ._oci_registry import Registry
from .base import ARCHIVE_PREFIX, CONFIG_KEY, LocalFile, Meter, Progress, StagedFile, StageResult

log = logging.getLogger("toolkit.stage")

_T = TypeVar("_T")
_R = TypeVar("_R")

DEFAULT_PLATFORM = ("linux", "amd64")
_EXAMPLE = "oci://ghcr.io/team/bert:v1"


def target_ref(target: StorageUri) -> tuple[ImageRef, list[str]]:
    """The image ``oci://REGISTRY/REPOSITORY:TAG`` names, and the warnings it deserves; StagingError."""
    ref = parse_image_ref(f"{target.root}/{target.path}", what="the destination",
                          error=functools.partial(StagingError, uri=target.uri))
    if ref.digest:
        raise StagingError(f"{target.uri} names a digest; stage pushes to a tag", uri=target.uri,
                           hint="write a tag, e.g. " + _EXAMPLE + " (stage prints the digest it pushed)")
    if ref.tag is None:
        raise StagingError(
            f"{target.uri} has no tag", uri=target.uri,
            hint=f"add a fixed tag per version of the layout, e.g. {target.uri}:v1: the pod pulls what the tag "
                 "names, and stage moves the tag atomically",
        )
    warnings = []
    if ref.tag == "latest":
        warnings.append(
            f"tag 'latest' in {target.uri}: a node that pulled it once may keep serving that image (the "
            "kubelet pulls 'latest' again, KServe's storage-initializer and caches may not); use a fixed tag "
            "per version, or deploy the digest stage prints"
        )
    return ref, warnings


class OciDestination:
    """One image reference; constructing it parses it and logs in to the registry (and the base's)."""

    def __init__(self, target: StorageUri, *, base: str | None, insecure_registry: bool, dry_run: bool,
                 concurrency: int, layer_cache: Path | None = None) -> None:
        self.target = target
        self.dry_run = dry_run
        self.concurrency = concurrency
        self.ref, self.warnings = target_ref(target)
        error = functools.partial(StagingError, uri=target.uri)
        self.base = parse_image_ref(base, what="the base image", error=error) if base else None
        self.digests = LayerDigests(layer_cache)
        if self.base is None:
            self.warnings.append(
                f"the image holds files only (no base image): deploy it as oci+fetch://{self.ref} (KServe's "
                f"storage-initializer pulls it) or oci+native://{self.ref} (a Kubernetes image volume); plain "
                "oci:// (modelcar) needs base=IMAGE with sh, ln, sleep and mkdir"
            )
        scopes = {self.ref.repository: "pull,push"}
        same = self.base is not None and self.base.registry == self.ref.registry
        if self.base is not None and same:
            scopes[self.base.repository] = "pull"
        self.registry = self._open(self.ref.registry, scopes, insecure_registry)
        self.base_registry = self.registry
        if self.base is not None and not same:
            try:
                self.base_registry = self._open(self.base.registry, {self.base.repository: "pull"},
                                                insecure_registry)
            except BaseException:
                self.registry.close()
                raise

    def _open(self, registry: str, scopes: dict[str, str], insecure: bool) -> Registry:
        client = Registry(registry, plain_http=insecure or is_loopback(registry), uri=self.target.uri)
        try:
            client.login(scopes)
        except BaseException:
            client.close()
            raise
        return client

    def stage(self, files: list[LocalFile], *, progress: Progress | None) -> StageResult:
        """Plan and (unless a dry run) push ``files`` as the image; see the module docstring for the order."""
        try:
            return self._stage(files, progress)
        finally:
            self.registry.close()
            self.base_registry.close()

    def _stage(self, files: list[LocalFile], progress: Progress | None) -> StageResult:
        repo = self.ref.repository
        layers = self._pool_map(self.digests.layer, files)
        base_config, base_layers = self._read_base()
        present = self._pool_map(lambda layer: self.registry.blob_exists(repo, layer.digest), layers)
        plan = [
            StagedFile(layer.file.relpath, "skip", layer.size, f"layer already in {repo}", layer.file.sha256)
            if there else StagedFile(layer.file.relpath, "upload", layer.size, "new layer", layer.file.sha256)
            for layer, there in zip(layers, present, strict=True)
        ]
        result = StageResult(f"oci://{self.ref}", str(self.ref), plan, dry_run=self.dry_run,
                             warnings=list(self.warnings))
        if self.dry_run:
            return result  # writes nothing, not even the digest cache (as the hash cache is not saved)

        self._copy_base_layers(base_layers)
        uploads = [layer for layer, there in zip(layers, present, strict=True) if not there]
        meter = Meter(sum(layer.size for layer in uploads), progress)
        # Archives first, the config.properties layer after them, as every destination orders its writes.
        self._upload([u for u in uploads if u.file.relpath != CONFIG_KEY], meter)
        self._upload([u for u in uploads if u.file.relpath == CONFIG_KEY], meter)
        meter.report()
        config = image_config(layers, base=base_config, platform=DEFAULT_PLATFORM,
                              labels={"io.mar-build.archives": ",".join(_archive_names(files))})
        config_digest = sha256_digest(config)
        if not self.registry.blob_exists(repo, config_digest):
            self.registry.put_blob(repo, config_digest, len(config), config)
        digest = self._move_tag(image_manifest(config, layers, base_layers))
        result.destination = f"{self.ref}@{digest}"
        self.digests.save()
        log.info("%s now points at %s (%d requests)", self.ref, digest, self.registry.requests)
        return result

    def _pool_map(self, fn: Callable[[_T], _R], items: Sequence[_T]) -> list[_R]:
        if len(items) <= 1:
            return [fn(item) for item in items]
        with ThreadPoolExecutor(max_workers=max(1, min(self.concurrency, len(items)))) as pool:
            return list(pool.map(fn, items))

    def _read_base(self) -> tuple[dict[str, Any] | None, list[dict[str, Any]]]:
        """The base image's config and its layers (as our manifest lists them); (None, []) without a base."""
        if self.base is None:
            return None, []
        base, client = self.base, self.base_registry
        manifest, media_type = client.get_manifest(base.repository, base.reference)
        if media_type in (OCI_INDEX, DOCKER_LIST):
            wanted = dict(zip(("os", "architecture"), DEFAULT_PLATFORM, strict=True))
            entries = manifest.get("manifests") or []
            entry = next((m for m in entries if all((m.get("platform") or {}).get(k) == v
                                                     for k, v in wanted.items())), None)
            if entry is None:
                found = sorted({"{os}/{architecture}".format(**(m.get("platform") or {"os": "?", "architecture": "?"}))
                                for m in entries})
                raise StagingError(f"base image {base} has no {'/'.join(DEFAULT_PLATFORM)} image (it has "
                                   f"{', '.join(found) or 'none'})", uri=self.target.uri,
                                   hint="choose a base image built for linux/amd64")
            manifest, media_type = client.get_manifest(base.repository, entry["digest"])
        if media_type not in (OCI_MANIFEST, DOCKER_MANIFEST):
            raise StagingError(f"base image {base} has a manifest of type {media_type!r}, not an image manifest",
                               uri=self.target.uri, hint="choose an image with an OCI or Docker v2 manifest")
        try:
            config = json.loads(client.get_blob(base.repository, manifest["config"]["digest"]))
        except (KeyError, TypeError, ValueError) as exc:
            raise StagingError(f"base image {base} has no readable config", uri=self.target.uri) from exc
        return config, [base_layer_descriptor(layer) for layer in manifest.get("layers") or []]

    def _copy_base_layers(self, base_layers: list[dict[str, Any]]) -> None:
        """Make the base's layers part of our repository: mounted within one registry, else copied through."""
        base, repo = self.base, self.ref.repository
        if base is None:
            return
        for layer in base_layers:
            digest = str(layer["digest"])
            if layer.get("urls") or self.registry.blob_exists(repo, digest):
                continue  # foreign layers stay where their urls say
            if self.base_registry is self.registry and self.registry.mount_blob(repo, digest, base.repository):
                log.debug("mounted base layer %s from %s", digest, base)
                continue
            with self.base_registry.stream_blob(base.repository, digest) as chunks:
                self.registry.put_blob(repo, digest, int(layer["size"]), chunks)
            log.info("copied base layer %s (%d bytes) from %s", digest, layer["size"], base)

    def _upload(self, layers: list[Layer], meter: Meter) -> None:
        """Upload layers in parallel, largest first; on any failure (or a raising progress) stop them all."""
        if not layers:
            return
        repo = self.ref.repository
        with ThreadPoolExecutor(max_workers=max(1, min(self.concurrency, len(layers)))) as pool:
            meter.run(pool, [
                functools.partial(self.registry.put_blob, repo, layer.digest, layer.size,
                                  layer.stream(meter, meter.stop))
                for layer in sorted(layers, key=lambda item: item.size, reverse=True)
            ])

    def _move_tag(self, manifest: bytes) -> str:
        """PUT the manifest to the tag (the atomic switch), unless the tag names these very bytes already."""
        repo, tag = self.ref.repository, str(self.ref.tag)
        digest = sha256_digest(manifest)
        if self.registry.tag_digest(repo, tag) == digest:
            log.info("%s already points at %s", self.ref, digest)
            return digest
        reported = self.registry.put_manifest(repo, tag, manifest, OCI_MANIFEST)
        if reported and reported != digest:
            log.warning("%s reports digest %s for a manifest whose bytes hash to %s", self.ref.registry,
                        reported, digest)
            return reported
        return digest


def _archive_names(files: list[LocalFile]) -> list[str]:
    return [f.relpath.split("/", 1)[1] for f in files if f.relpath.startswith(ARCHIVE_PREFIX)]
