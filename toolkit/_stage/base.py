"""The stage room's seam: what every destination is given, what it returns, and the rules they all share.

A destination (pvc.py: a folder under a PVC mount; s3.py: an S3 prefix; oci.py to come) is checked when it is
constructed and then plans and writes a layout's files with ``stage(files, progress=...) -> StageResult``. The
destinations import this module and the toolkit's shared modules only, never staging.py or each other; staging.py
chooses one by the URI's scheme.

The order every destination keeps, so that a reader never sees a config naming an archive that is not there:
archives first (new or changed ones only), ``config/config.properties`` last, then the archives the new config no
longer names, when this layout put them there before.
"""

from __future__ import annotations

import hashlib
import re
import threading
from collections.abc import Callable, Iterable
from concurrent.futures import Executor
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any, Literal, Protocol

from .._events import Progress
from .._layout import CONFIG_RELPATH, MODEL_STORE, parse_properties, parse_snapshot
from .._uri import StorageUri

__all__ = [
    "ARCHIVE_PREFIX", "CONFIG_KEY", "METRICS_KEY", "DEFAULT_CONCURRENCY", "DEFAULT_PART_SIZE", "MIN_PART_SIZE",
    "Action", "Cancelled", "Destination",
    "LocalFile", "Meter", "Progress", "StageResult", "StagedFile", "human_size", "is_archive_key",
    "is_archive_name", "referenced_archives", "sha256_file",
]

Action = Literal["upload", "skip", "delete"]

CONFIG_KEY = CONFIG_RELPATH.as_posix()
METRICS_KEY = "config/metrics.yaml"  # what metrics_config names in a layout mar-build wrote
ARCHIVE_PREFIX = f"{MODEL_STORE}/"  # the archives' keys: model-store/NAME.mar
DEFAULT_CONCURRENCY = 8
# S3 parts: 5 MiB is the smallest part S3 accepts. 8-16 MiB parts with 8-16 threads measured best on a loopback
# moto_server (larger parts were slower there); 16 MiB halves the requests of the CLI's 8 MiB.
MIN_PART_SIZE = 5 * 1024 * 1024
DEFAULT_PART_SIZE = 16 * 1024 * 1024
_HASH_BLOCK = 1024 * 1024

# A file directly in model-store/: no separator, no NUL. fullmatch: with match, '$' also matches before a
# trailing newline, so "bert.mar\n" passed.
_ARCHIVE_NAME = re.compile(r"[^/\\\x00]+\.mar")


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

    def to_dict(self) -> dict[str, Any]:
        return {"path": self.path, "action": self.action, "size": self.size, "reason": self.reason,
                "sha256": self.sha256}


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
        """A JSON-able dict: the plan, the counts and byte totals, the warnings (what ``--json`` prints)."""
        return {
            "storage_uri": self.storage_uri,
            "destination": self.destination,
            "dry_run": self.dry_run,
            "files": [f.to_dict() for f in self.files],
            "uploaded": len(self.uploaded),
            "skipped": len(self.skipped),
            "deleted": len(self.deleted),
            "bytes_uploaded": self.bytes_uploaded,
            "bytes_skipped": self.bytes_skipped,
            "aborted_uploads": list(self.aborted_uploads),
            "endpoint_url": self.endpoint_url,
            "warnings": list(self.warnings),
            "seconds": round(self.seconds, 3),
        }


class Destination(Protocol):
    """A checked destination (a PVC folder, an S3 prefix) that plans and, unless a dry run, writes the files.

    ``stage`` receives the layout's files in staging order (the archives, config/config.properties last) and
    returns the plan it ran; it raises StagingError for what the destination refuses, and re-raises whatever
    ``progress`` raises after cancelling its transfers.
    """

    target: StorageUri

    def stage(self, files: list[LocalFile], *, progress: Progress | None) -> StageResult: ...


# --------------------------------------------------------------------------------------------------------------
# Rules every destination applies


def is_archive_name(name: str) -> bool:
    """True for a plain archive file name (``bert.mar``): no folder, no backslash, NUL or trailing newline."""
    return _ARCHIVE_NAME.fullmatch(name) is not None


def is_archive_key(relpath: str) -> bool:
    """True for ``model-store/NAME.mar`` directly in model-store/ (the only files stage ever deletes)."""
    parts = PurePosixPath(relpath).parts
    return len(parts) == 2 and parts[0] == MODEL_STORE and parts[1].endswith(".mar")


def referenced_archives(config_text: str) -> set[str]:
    """The marNames a config.properties text names in model_snapshot (empty when it has none or is unreadable)."""
    _, entries = parse_snapshot(parse_properties(config_text).get("model_snapshot"), [])
    return {e.mar_name for e in entries if e.mar_name is not None}


def sha256_file(path: Path) -> str:
    """Hex SHA-256 of a file, read in 1 MiB blocks (hashlib drops the GIL on them, so threads hash in parallel)."""
    digest = hashlib.sha256()
    buf = bytearray(_HASH_BLOCK)
    view = memoryview(buf)
    with open(path, "rb", buffering=0) as f:
        while n := f.readinto(buf):
            digest.update(view[:n])
    return digest.hexdigest()


def human_size(n: float) -> str:
    """1536 -> '1.5 KB' (binary units, as the build command prints them)."""
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n} B"


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

    def run(self, pool: Executor, jobs: Iterable[Callable[[], object]]) -> None:
        """Run ``jobs`` on ``pool``, reporting progress from this thread; on the first failure (or an exception
        from the progress callback, or Ctrl-C) stop the running ones at their next chunk, drop those not started,
        and re-raise it."""
        futures = []
        for job in jobs:
            future = pool.submit(job)
            future.add_done_callback(lambda _: self.poke())
            futures.append(future)
        try:
            self.wait(futures)
        except BaseException:
            self.stop.set()
            for future in futures:
                future.cancel()
            raise

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
