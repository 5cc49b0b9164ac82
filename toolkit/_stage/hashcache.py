"""SHA-256 of local files, remembered between runs so that re-staging a large unchanged layout reads nothing.

An entry is keyed by the file's real path and trusted only while its size, mtime, ctime and inode are the same
as when it was hashed, and only when the file had not been modified for 2 s before hashing began (git's "racy
timestamp" rule: on a filesystem with coarse timestamps, a rewrite within the same tick would otherwise keep the
old mtime). Anything else is hashed again. The cache lives in $MAR_BUILD_CACHE_DIR, else
$XDG_CACHE_HOME/mar-build, else ~/.cache/mar-build; it is never needed, so any trouble with it is ignored.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path

from .._files import PRIVATE_FILE, cache_dir, write_atomic

log = logging.getLogger("toolkit.stage")

_RACY_NS = 2_000_000_000
_MAX_ENTRIES = 2000


def _key(st: os.stat_result) -> list[int]:
    return [st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino]


class HashCache:
    """Load once, ``digest`` from any thread, ``save`` once at the end."""

    def __init__(self, path: Path | None = None) -> None:
        self.path = path if path is not None else cache_dir() / "sha256.json"
        self._entries: dict[str, dict[str, object]] = {}
        self._dirty = False
        self._lock = threading.Lock()
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
            if isinstance(data, dict) and isinstance(data.get("files"), dict):
                self._entries = data["files"]
        except (OSError, ValueError) as exc:
            if not isinstance(exc, FileNotFoundError):
                log.debug("ignoring the hash cache %s: %s", self.path, exc)

    def digest(self, path: Path, compute: Callable[[Path], str]) -> str:
        """The SHA-256 of ``path``: remembered when still valid, else ``compute(path)`` (and remembered)."""
        resolved = path.resolve()
        real = str(resolved)
        before = resolved.stat()
        with self._lock:
            entry = self._entries.get(real)
        if (
            entry is not None
            and entry.get("stat") == _key(before)
            and isinstance(entry.get("hashed_at"), int)
            and before.st_mtime_ns < entry["hashed_at"] - _RACY_NS  # type: ignore[operator]
            and isinstance(entry.get("sha256"), str)
        ):
            return entry["sha256"]  # type: ignore[return-value]
        started = time.time_ns()
        digest = compute(path)
        after = resolved.stat()
        if _key(after) == _key(before):  # not written to while we read it
            with self._lock:
                self._entries[real] = {"stat": _key(before), "hashed_at": started, "sha256": digest}
                self._dirty = True
        return digest

    def save(self) -> None:
        """Write the cache (atomically) if anything was added; drop entries of files that are gone."""
        if not self._dirty:
            return
        with self._lock:
            entries = {k: v for k, v in self._entries.items() if Path(k).exists()}
            if len(entries) > _MAX_ENTRIES:
                newest = sorted(entries.items(), key=lambda kv: kv[1].get("hashed_at", 0), reverse=True)  # type: ignore[arg-type, return-value]
                entries = dict(newest[:_MAX_ENTRIES])
            self._dirty = False
        try:
            write_atomic(self.path, json.dumps({"files": entries}), mode=PRIVATE_FILE, fsync=False)
        except OSError as exc:
            log.debug("cannot write the hash cache %s: %s", self.path, exc)
