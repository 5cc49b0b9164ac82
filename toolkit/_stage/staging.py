"""stage(): copy a layout to where the predictor pod reads it: a PVC folder, an S3 prefix or an OCI image.

What lands there is exactly what the pod needs: ``config/config.properties`` and the archives its
``model_snapshot`` names, at the level KServe's storage-initializer copies to /mnt/models. It copies the
*contents* of ``storageUri`` there, and the runtime starts TorchServe with
``--model-store=/mnt/models/model-store --ts-config=/mnt/models/config/config.properties`` (kserve
``config/runtimes/kserve-torchserve.yaml``), so the URI must name the folder holding config/ and model-store/.
Local SHA-256s are remembered between runs (hashcache.py); the order and the transfers are the destinations'
(base.py, pvc.py, s3.py, oci.py; boto3 is an optional extra, imported only for s3://).
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from .. import _uri
from .._errors import StagingError
from .._files import cache_dir
from .._layout import MODEL_STORE, check, read_layout
from .._metrics import layout_metrics_file
from .._uri import STAGE_SCHEMES, StorageUri
from .base import (
    CONFIG_KEY,
    DEFAULT_CONCURRENCY,
    DEFAULT_PART_SIZE,
    METRICS_KEY,
    MIN_PART_SIZE,
    Destination,
    LocalFile,
    Progress,
    StageResult,
    is_archive_name,
    sha256_file,
)
from .hashcache import HashCache

log = logging.getLogger("toolkit.stage")


def stage(
    layout: str | Path,
    uri: str,
    *,
    mount: str | Path | None = None,
    endpoint_url: str | None = None,
    profile: str | None = None,
    region: str | None = None,
    dry_run: bool = False,
    concurrency: int = DEFAULT_CONCURRENCY,
    part_size: int = DEFAULT_PART_SIZE,
    oci_base: str | None = None,
    insecure_registry: bool = False,
    progress: Progress | None = None,
) -> StageResult:
    """Copy ``layout`` (checked first) to ``uri`` and return the storageUri to use and what was transferred.

    ``uri`` is ``pvc://CLAIM/PREFIX`` (needs ``mount``, the folder where the claim is mounted here) or
    ``s3://BUCKET/PREFIX`` (boto3: credentials from the environment or ``profile``; ``endpoint_url`` or env
    AWS_ENDPOINT_URL for MinIO and other S3-compatible stores). ``dry_run`` writes nothing and returns the plan.
    ``part_size`` is the S3 multipart threshold and part size. ``uri`` may also be ``oci://REGISTRY/REPO:TAG``:
    an image holding the layout under /models, pushed to the registry (credentials from the docker/podman auth
    files); ``oci_base`` is the image to stack it on (KServe's modelcar mode needs sh, ln, sleep and mkdir in it),
    ``insecure_registry`` allows plain http to a registry that is not on loopback (loopback always uses it).
    ``progress(done, total)`` gets transferred bytes.
    Raises LayoutError when the layout fails `check`, StagingError for a bad URI or destination (with the S3
    error code and a hint), and re-raises whatever ``progress`` raises after cancelling the transfers.
    """
    started = time.perf_counter()
    target = parse_storage_uri(uri)
    _check_options(target, mount=mount, endpoint_url=endpoint_url, profile=profile, region=region,
                   concurrency=concurrency, part_size=part_size, oci_base=oci_base,
                   insecure_registry=insecure_registry)
    paths, warnings = layout_paths(layout)

    def open_destination() -> Destination:
        if target.scheme == "oci":
            return _oci_destination(target, base=oci_base, insecure_registry=insecure_registry, dry_run=dry_run,
                                    concurrency=concurrency)
        return _destination(target, mount=mount, endpoint_url=endpoint_url, profile=profile, region=region,
                            dry_run=dry_run, concurrency=concurrency, part_size=part_size)

    files, destination = _hash_while(paths, open_destination, concurrency=concurrency, save=not dry_run)
    result = destination.stage(files, progress=progress)
    result.warnings[:0] = warnings
    result.seconds = time.perf_counter() - started
    for warning in result.warnings:
        log.info("warning: %s", warning)  # returned in the result (the CLI prints them): not logged twice
    log.info(
        "%s %s: %d uploaded (%d bytes), %d skipped, %d deleted in %.2f s",
        "planned" if dry_run else "staged", result.storage_uri, len(result.uploaded), result.bytes_uploaded,
        len(result.skipped), len(result.deleted), result.seconds,
    )
    return result


def parse_storage_uri(uri: str) -> StorageUri:
    """Parse ``pvc://CLAIM[/PREFIX]``, ``s3://BUCKET[/PREFIX]`` or ``oci://REGISTRY/REPO:TAG`` (the grammar of
    toolkit/_uri.py; the image reference itself is checked by the oci destination); StagingError."""
    return _uri.parse_storage_uri(uri, schemes=STAGE_SCHEMES, error=functools.partial(StagingError, uri=uri))


def _check_options(target: StorageUri, *, mount: str | Path | None, endpoint_url: str | None, profile: str | None,
                   region: str | None, concurrency: int, part_size: int, oci_base: str | None,
                   insecure_registry: bool) -> None:
    """Refuse, before the layout is read, options that do not apply to ``target`` or are out of range."""
    uri = target.uri
    if concurrency < 1:
        raise StagingError(f"concurrency must be at least 1 (got {concurrency})", uri=uri)
    if target.scheme == "oci":
        if mount is not None or endpoint_url or profile or region:
            raise StagingError("--mount, --endpoint-url, --profile and --region do not apply to oci:// URIs",
                               uri=uri, hint="registry credentials come from `podman login` / `docker login`")
        return
    if oci_base is not None or insecure_registry:
        raise StagingError("--base and --insecure-registry apply to oci:// URIs only", uri=uri,
                           hint="drop them, or stage to oci://REGISTRY/REPOSITORY:TAG")
    if target.scheme == "pvc":
        if endpoint_url or profile or region:
            raise StagingError(
                "--endpoint-url, --profile and --region apply to s3:// URIs only", uri=uri,
                hint=f"for {uri} pass --mount DIR, the folder where the claim is mounted",
            )
    elif mount is not None:
        raise StagingError("--mount applies to pvc:// URIs only", uri=uri,
                           hint="drop --mount; an s3:// URI is written through the S3 API")
    if part_size < MIN_PART_SIZE:
        raise StagingError(f"part size {part_size} is below S3's minimum of {MIN_PART_SIZE} bytes (5 MiB)", uri=uri)


def _hash_while(
    paths: list[tuple[str, Path]], open_destination: Callable[[], Destination], *, concurrency: int, save: bool
) -> tuple[list[LocalFile], Destination]:
    """Hash the files in threads while this thread opens the destination; return both.

    hashlib and file reads drop the GIL, and checking the destination (and setting up an S3 client) waits on
    I/O: on a re-stage of a large layout these two are most of the time, so they overlap.
    """
    hashes = HashCache()
    with ThreadPoolExecutor(max_workers=max(1, min(concurrency, len(paths)))) as pool:
        digests = [pool.submit(hashes.digest, path, sha256_file) for _, path in paths]
        destination = open_destination()
        files = [LocalFile(rel, path, path.stat().st_size, d.result())
                 for (rel, path), d in zip(paths, digests, strict=True)]
    if save:
        hashes.save()
    return files, destination


def _destination(target: StorageUri, *, mount: str | Path | None, endpoint_url: str | None,
                 profile: str | None, region: str | None, dry_run: bool, concurrency: int,
                 part_size: int) -> Destination:
    if target.scheme == "pvc":
        from .pvc import PvcDestination

        return PvcDestination(target, mount, dry_run=dry_run, concurrency=concurrency)
    try:
        from .s3 import S3Destination
    except ImportError as exc:
        raise StagingError(f"staging to S3 needs boto3 ({exc})", uri=target.uri,
                           hint="pip install 'mar-build[s3]'") from exc
    return S3Destination(target, endpoint_url=endpoint_url, profile=profile, region=region, dry_run=dry_run,
                         concurrency=concurrency, part_size=part_size)


def _oci_destination(target: StorageUri, *, base: str | None, insecure_registry: bool, dry_run: bool,
                     concurrency: int) -> Destination:
    from .oci import OciDestination

    return OciDestination(target, base=base, insecure_registry=insecure_registry, dry_run=dry_run,
                          concurrency=concurrency, layer_cache=cache_dir() / "oci-layers.json")


def layout_paths(layout: str | Path) -> tuple[list[tuple[str, Path]], list[str]]:
    """The files to stage, (path relative to the layout, path): the archives model_snapshot names, config last.

    Runs `check` first and raises its LayoutError when the layout has errors; its warnings are returned.
    Archives in model-store/ that model_snapshot does not name are not staged (the pod would never load them).
    Raises StagingError for a marName that is not a plain file name in model-store/.
    """
    report = check(layout, pod=False)  # the runtime and its image are not known here: render and deploy check them
    report.raise_for_errors()
    warnings = [p.message for p in report.warnings]
    read = read_layout(layout)
    names: list[str] = []
    for entry in read.entries:
        mar = entry.mar_name
        if mar is not None and mar not in names:
            if not is_archive_name(mar):
                raise StagingError(f"marName {mar!r} of model {entry.name!r} is not a plain file name",
                                   hint="marName must name a file directly in model-store/, e.g. bert.mar")
            names.append(mar)
    unnamed = sorted(p.name for p in read.archives if p.name not in names)
    if unnamed:
        warnings.append(f"not staged (model_snapshot does not name them): {', '.join(unnamed)}")
    # The metrics file config.properties names (metrics_config) travels too, before the config: without it
    # TorchServe's workers do not start.
    metrics = layout_metrics_file(read.properties, read.path)
    extra = [(METRICS_KEY, metrics)] if metrics is not None and metrics.is_file() else []
    paths = [(f"{MODEL_STORE}/{n}", read.model_store / n) for n in names] + extra + [(CONFIG_KEY, read.config_path)]
    return paths, warnings
