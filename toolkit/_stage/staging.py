"""stage(): copy a layout to where the predictor pod reads it, a PVC folder or an S3 prefix.

What lands there is exactly what the pod needs: ``config/config.properties`` and the archives its
``model_snapshot`` names, at the level the storage-initializer copies to /mnt/models (FACTS.md, "The predictor pod").
Every destination follows the same order, so a reader never sees a config naming an archive that is not there:

1. archives (new or changed ones only: a file whose SHA-256 already matches is skipped; local SHA-256s are
   remembered between runs, see _hashcache.py),
2. ``config/config.properties`` last,
3. then archives the new config no longer names, if this layout put them there before (see _pvc.py, _s3.py).

The transfers themselves live in _pvc.py and _s3.py (boto3 is an optional extra, imported only for s3://).
"""

from __future__ import annotations

import functools
import hashlib
import logging
import re
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any, Literal, Protocol

from .. import _uri
from .._errors import StagingError
from .._layout import CONFIG_RELPATH, MODEL_STORE, check, parse_properties, parse_snapshot, read_layout
from .._uri import STAGE_SCHEMES, StorageUri
from .hashcache import HashCache

log = logging.getLogger("toolkit.stage")

Progress = Callable[[int, int], None]
"""progress(bytes_done, bytes_total) for the bytes this run transfers; called from the caller's thread."""

Action = Literal["upload", "skip", "delete"]

CONFIG_KEY = CONFIG_RELPATH.as_posix()
DEFAULT_CONCURRENCY = 8
# S3 parts: 5 MiB is the smallest part S3 accepts. 8-16 MiB parts with 8-16 threads measured best on a loopback
# moto_server (larger parts were slower there); 16 MiB halves the requests of the CLI's 8 MiB.
MIN_PART_SIZE = 5 * 1024 * 1024
DEFAULT_PART_SIZE = 16 * 1024 * 1024
_HASH_BLOCK = 1024 * 1024

_MAR_NAME = re.compile(r"^[^/\\\x00]+\.mar$")


@dataclass(frozen=True)
class LocalFile:
    """A layout file to stage: its path relative to the layout (posix), size and SHA-256."""

    relpath: str
    path: Path
    size: int
    sha256: str


@dataclass(frozen=True)
class StagedFile:
    """One line of the plan: what happens to ``path`` (relative to the storageUri) and why."""

    path: str
    action: Action
    size: int
    reason: str
    sha256: str | None = None


@dataclass
class StageResult:
    """What stage() did (or, with ``dry_run``, would do).

    ``storage_uri`` is the value for the InferenceService's ``storageUri``; ``destination`` is where the files
    went (the S3 URL or the folder under the PVC mount). ``files`` is the plan in the order it runs: uploads
    (archives, then the config), then deletions. ``aborted_uploads`` are S3 multipart uploads an interrupted run
    left open. ``endpoint_url`` is the S3 endpoint used (None for AWS itself and for PVCs).
    """

    storage_uri: str
    destination: str
    files: list[StagedFile]
    dry_run: bool = False
    warnings: list[str] = field(default_factory=list)
    aborted_uploads: list[str] = field(default_factory=list)
    endpoint_url: str | None = None
    seconds: float = 0.0

    def _of(self, action: Action) -> list[StagedFile]:
        return [f for f in self.files if f.action == action]

    @property
    def uploaded(self) -> list[StagedFile]:
        return self._of("upload")

    @property
    def skipped(self) -> list[StagedFile]:
        return self._of("skip")

    @property
    def deleted(self) -> list[StagedFile]:
        return self._of("delete")

    @property
    def bytes_uploaded(self) -> int:
        return sum(f.size for f in self.uploaded)

    @property
    def bytes_skipped(self) -> int:
        return sum(f.size for f in self.skipped)

    @property
    def is_s3(self) -> bool:
        return self.storage_uri.startswith("s3://")

    def to_dict(self) -> dict[str, Any]:
        return {
            "storage_uri": self.storage_uri,
            "destination": self.destination,
            "dry_run": self.dry_run,
            "files": [
                {"path": f.path, "action": f.action, "size": f.size, "reason": f.reason, "sha256": f.sha256}
                for f in self.files
            ],
            "uploaded": len(self.uploaded),
            "skipped": len(self.skipped),
            "deleted": len(self.deleted),
            "bytes_uploaded": self.bytes_uploaded,
            "bytes_skipped": self.bytes_skipped,
            "aborted_uploads": self.aborted_uploads,
            "endpoint_url": self.endpoint_url,
            "warnings": self.warnings,
            "seconds": round(self.seconds, 3),
        }


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
    progress: Progress | None = None,
) -> StageResult:
    """Copy ``layout`` (checked first) to ``uri`` and return the storageUri to use and what was transferred.

    ``uri`` is ``pvc://CLAIM/PREFIX`` (needs ``mount``, the folder where the claim is mounted here) or
    ``s3://BUCKET/PREFIX`` (boto3: credentials from the environment or ``profile``; ``endpoint_url`` or env
    AWS_ENDPOINT_URL for MinIO and other S3-compatible stores). ``dry_run`` writes nothing and returns the plan.
    ``part_size`` is the S3 multipart threshold and part size. ``progress(done, total)`` gets transferred bytes.
    Raises LayoutError when the layout fails `check`, StagingError for a bad URI or destination (with the S3
    error code and a hint), and re-raises whatever ``progress`` raises after cancelling the transfers.
    """
    started = time.perf_counter()
    target = parse_storage_uri(uri)
    if concurrency < 1:
        raise StagingError(f"concurrency must be at least 1 (got {concurrency})", uri=uri)
    if target.scheme == "pvc":
        if endpoint_url or profile or region:
            raise StagingError(
                "--endpoint-url, --profile and --region apply to s3:// URIs only", uri=uri,
                hint=f"for {target.uri} pass --mount DIR, the folder where the claim is mounted",
            )
    elif mount is not None:
        raise StagingError("--mount applies to pvc:// URIs only", uri=uri,
                           hint="drop --mount; an s3:// URI is written through the S3 API")
    if part_size < MIN_PART_SIZE:
        raise StagingError(f"part size {part_size} is below S3's minimum of {MIN_PART_SIZE} bytes (5 MiB)", uri=uri)

    paths, warnings = layout_paths(layout)
    # Hash in threads (hashlib and file reads drop the GIL) while this thread checks the destination and sets
    # up the S3 client: on a re-stage of a large layout these two are most of the time.
    hashes = HashCache()
    with ThreadPoolExecutor(max_workers=max(1, min(concurrency, len(paths)))) as pool:
        digests = [pool.submit(hashes.digest, path, sha256_file) for _, path in paths]
        destination = _destination(target, mount=mount, endpoint_url=endpoint_url, profile=profile, region=region,
                                   dry_run=dry_run, concurrency=concurrency, part_size=part_size)
        files = [LocalFile(rel, path, path.stat().st_size, d.result())
                 for (rel, path), d in zip(paths, digests, strict=True)]
    if not dry_run:
        hashes.save()
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


class Destination(Protocol):
    """A checked destination (a PVC folder, an S3 prefix) that plans and writes the files (_pvc.py, _s3.py)."""

    def stage(self, files: list[LocalFile], *, progress: Progress | None) -> StageResult: ...


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


# --------------------------------------------------------------------------------------------------------------
# The storage URI


def parse_storage_uri(uri: str) -> StorageUri:
    """Parse ``pvc://CLAIM[/PREFIX]`` or ``s3://BUCKET[/PREFIX]`` (the grammar of toolkit/_uri.py); StagingError."""
    return _uri.parse_storage_uri(uri, schemes=STAGE_SCHEMES, error=functools.partial(StagingError, uri=uri))


# --------------------------------------------------------------------------------------------------------------
# The layout's files


def layout_paths(layout: str | Path) -> tuple[list[tuple[str, Path]], list[str]]:
    """The files to stage, (path relative to the layout, path): the archives model_snapshot names, config last.

    Runs `check` first and raises its LayoutError when the layout has errors; its warnings are returned.
    Archives in model-store/ that model_snapshot does not name are not staged (the pod would never load them).
    """
    report = check(layout)
    report.raise_for_errors()
    warnings = [p.message for p in report.warnings]
    read = read_layout(layout)
    names: list[str] = []
    for entry in read.entries:
        mar = entry.mar_name
        if mar is not None and mar not in names:
            if not _MAR_NAME.match(mar) or mar in (".", ".."):
                raise StagingError(f"marName {mar!r} of model {entry.name!r} is not a plain file name",
                                   hint="marName must name a file directly in model-store/, e.g. bert.mar")
            names.append(mar)
    unnamed = sorted(p.name for p in read.archives if p.name not in names)
    if unnamed:
        warnings.append(f"not staged (model_snapshot does not name them): {', '.join(unnamed)}")
    paths = [(f"{MODEL_STORE}/{n}", read.model_store / n) for n in names] + [(CONFIG_KEY, read.config_path)]
    return paths, warnings


def sha256_file(path: Path) -> str:
    """Hex SHA-256 of a file, read in 1 MiB blocks (hashlib drops the GIL on them, so threads hash in parallel)."""
    digest = hashlib.sha256()
    buf = bytearray(_HASH_BLOCK)
    view = memoryview(buf)
    with open(path, "rb", buffering=0) as f:
        while n := f.readinto(buf):
            digest.update(view[:n])
    return digest.hexdigest()


def referenced_archives(config_text: str) -> set[str]:
    """The marNames a config.properties text names in model_snapshot (empty when it has none or is unreadable)."""
    _, entries = parse_snapshot(parse_properties(config_text).get("model_snapshot"), [])
    return {e.mar_name for e in entries if e.mar_name is not None}


def is_archive_key(relpath: str) -> bool:
    """True for ``model-store/NAME.mar`` directly in model-store/ (the only files stage ever deletes)."""
    parts = PurePosixPath(relpath).parts
    return len(parts) == 2 and parts[0] == MODEL_STORE and parts[1].endswith(".mar")


# --------------------------------------------------------------------------------------------------------------
# Progress: workers count bytes, the caller's thread reports them (so a progress bar needs no locking, and an
# exception raised by the callback, or Ctrl-C, reaches the caller, which then cancels the transfers).


class Cancelled(Exception):
    """Raised inside a worker when the run is being cancelled (the caller's own exception is what propagates)."""


class _Waitable(Protocol):
    def done(self) -> bool: ...

    def result(self) -> Any: ...


class Meter:
    """Thread-safe byte counter shared by the transfer workers; ``wait`` reports it from the calling thread."""

    def __init__(self, total: int, progress: Progress | None) -> None:
        self.total = total
        self.done = 0
        self.stop = threading.Event()
        self._progress = progress
        self._lock = threading.Lock()
        self._changed = threading.Event()
        self._reported = -1

    def add(self, n: int) -> None:
        with self._lock:
            self.done += n
        self._changed.set()

    def poke(self) -> None:
        """Wake the waiting thread (a transfer finished)."""
        self._changed.set()

    def report(self) -> None:
        if self._progress is not None and self.done != self._reported:
            self._reported = self.done
            self._progress(min(self.done, self.total), self.total)

    def wait(self, futures: Iterable[_Waitable], interval: float = 0.1) -> None:
        """Wait for every future, reporting progress; raise the first failure (the caller cancels the rest)."""
        pending = list(futures)
        self.report()
        while pending:
            self._changed.wait(interval)
            self._changed.clear()
            still = []
            for future in pending:
                if future.done():
                    future.result()
                else:
                    still.append(future)
            pending = still
            self.report()


def human_size(n: float) -> str:
    """1536 -> '1.5 KB' (binary units, as the build command prints them)."""
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n} B"
