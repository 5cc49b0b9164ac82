"""Staging into a PVC mounted in this notebook: ``pvc://CLAIM/PREFIX`` is the folder MOUNT/PREFIX.

Every file goes through a temp name beside its target and ``os.replace`` (atomic on one filesystem, which a
folder of one volume is), archives first, ``config/config.properties`` last. Nothing is written outside
MOUNT/PREFIX/config and MOUNT/PREFIX/model-store, and no path may resolve outside the mount (symlinks included).

What stage owns there is written down in ``config/.mar-build-staged.json`` (the record): each file with its
size, mtime, ctime, inode and SHA-256. It serves two purposes:

- skipping: a destination file whose size, mtime, ctime and inode match the record has the recorded SHA-256, so
  a re-stage need not read back (over NFS, often) every archive it wrote; any other file there is hashed;
- removing: an archive the new config no longer names is deleted only when this layout put it there, i.e. the
  previous config at the destination named it, or the record lists it. The record is written *before* the
  archives (with those this run will write), so even a run interrupted before its config still has its archives
  recognised as ours. Anything else in model-store/ is left alone, with a warning.

TorchServe and KServe's wrapper read only config.properties from config/, so the record beside it is inert.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import re
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from .._errors import StagingError
from .._files import atomic_write, make_dirs, write_atomic
from .._uri import StorageUri
from .base import (
    CONFIG_KEY,
    Cancelled,
    LocalFile,
    Meter,
    Progress,
    StagedFile,
    StageResult,
    is_archive_key,
    referenced_archives,
    sha256_file,
)

log = logging.getLogger("toolkit.stage")

RECORD_KEY = "config/.mar-build-staged.json"
TMP_SUFFIX = ".mar-build-tmp"
# fullmatch: with match, '$' also matched before a trailing newline, so a file ".x.mar-build-tmp\n" (not ours)
# was deleted as an interrupted run's temp file.
_TMP_NAME = re.compile(r"\..+\." + re.escape(TMP_SUFFIX[1:]))
_COPY_CHUNK = 8 * 1024 * 1024
_OWNED_DIRS = ("config", "model-store")


class PvcDestination:
    """MOUNT/PREFIX, checked when constructed (mount exists, is writable, nothing resolves outside it)."""

    def __init__(self, target: StorageUri, mount: str | Path | None, *, dry_run: bool, concurrency: int) -> None:
        self.target = target
        self.dry_run = dry_run
        self.concurrency = concurrency
        self.root = _mount_root(target, mount)
        self.dest = _inside(self.root, self.root / target.path if target.path else self.root, target)
        self.warnings: list[str] = []
        if not os.path.ismount(self.root):
            self.warnings.append(
                f"{self.root} is not a mount point itself: make sure it is where PVC {target.root!r} is mounted "
                "here, or the files land in another volume than the pod reads"
            )
        _check_writable(self.root, self.dest, target, dry_run)

    def stage(self, files: list[LocalFile], *, progress: Progress | None) -> StageResult:
        """Plan and (unless a dry run) copy ``files`` into MOUNT/PREFIX; see the module docstring for the rules."""
        target, dest, warnings = self.target, self.dest, list(self.warnings)
        for rel in (*_OWNED_DIRS, *(f.relpath for f in files), RECORD_KEY):
            _inside(self.root, dest / rel, target)
            if (dest / rel).exists() and (dest / rel).is_dir() != (rel in _OWNED_DIRS):
                kind = "a folder" if (dest / rel).is_dir() else "a file"
                raise StagingError(f"{dest / rel} is {kind}; stage cannot write the layout there", uri=target.uri,
                                   hint="move it away, or stage to another prefix")

        record = _read_record(dest, warnings)
        plan = _plan(dest, files, record, self.concurrency)
        deletions = _deletions(dest, files, record, warnings)
        result = StageResult(target.uri, str(dest), plan + deletions, dry_run=self.dry_run, warnings=warnings)
        if self.dry_run:
            return result

        for folder in _OWNED_DIRS:
            make_dirs(dest / folder, stop=self.root)
        uploads = {f.path for f in plan if f.action == "upload"}
        by_rel = {f.relpath: f for f in files}
        archives = [by_rel[p] for p in uploads if p != CONFIG_KEY]
        new_record = dict(record)
        # Record, before writing them, the archives this run is about to put there (mtime unknown: never trusted
        # for skipping, but enough for a later run to know they are ours).
        for f in archives:
            new_record[f.relpath] = {"size": f.size, "mtime_ns": None, "sha256": f.sha256}
        if archives:
            _write_record(dest, new_record)

        meter = Meter(sum(by_rel[p].size for p in uploads), progress)
        _copy_all(archives, dest, meter, self.concurrency)
        if CONFIG_KEY in uploads:
            _copy_one(by_rel[CONFIG_KEY], dest / CONFIG_KEY, meter)
            meter.report()

        for gone in deletions:
            (dest / gone.path).unlink(missing_ok=True)
            new_record.pop(gone.path, None)
            log.info("deleted %s (%s)", dest / gone.path, gone.reason)
        for f in files:
            new_record[f.relpath] = {**_stat_key((dest / f.relpath).stat()), "sha256": f.sha256}
        for stale in [k for k in new_record if k not in by_rel and is_archive_key(k) and not (dest / k).exists()]:
            del new_record[stale]
        if new_record != record:
            _write_record(dest, new_record)
        return result


def _mount_root(target: StorageUri, mount: str | Path | None) -> Path:
    hint = (
        f"pass --mount DIR: the folder where PVC {target.root!r} is mounted in this notebook (Kubeflow lists "
        "a notebook's volumes and their mount paths, e.g. /home/jovyan/vol-1; `df -h` shows them)"
    )
    if mount is None:
        raise StagingError(f"{target.uri} needs the folder where the claim is mounted", uri=target.uri, hint=hint)
    path = Path(mount).expanduser()
    if not path.exists():
        raise StagingError(f"mount folder {path} does not exist", uri=target.uri, hint=hint)
    if not path.is_dir():
        raise StagingError(f"mount folder {path} is not a folder", uri=target.uri, hint=hint)
    return path.resolve()


def _inside(root: Path, path: Path, target: StorageUri) -> Path:
    """``path`` with symlinks resolved, refused unless it stays under the mount ``root``."""
    real = path.resolve()
    if real != root and root not in real.parents:
        raise StagingError(
            f"{path} resolves to {real}, outside the mount {root}", uri=target.uri,
            hint="a symlink in the destination points out of the volume; remove it or stage to another prefix",
        )
    return real


def _check_writable(root: Path, dest: Path, target: StorageUri, dry_run: bool) -> None:
    # The nearest folder that exists is where this run's first write happens.
    probe = dest
    while not probe.exists() and probe != root:
        probe = probe.parent
    if not probe.is_dir():
        what = f"{dest} is a file, not a folder" if probe == dest else f"{probe} is a file, so {dest} cannot be made"
        raise StagingError(what, uri=target.uri, hint="stage to another prefix, or move the file away")
    hint = (
        f"mount PVC {target.root!r} read-write in this notebook (a claim bound ReadWriteOnce to a node or pod "
        "elsewhere, or mounted read-only, cannot be written here), or fix the folder's permissions"
    )
    if dry_run:
        # A dry run writes nothing, so it can only ask; access() also reports a read-only filesystem.
        if not os.access(probe, os.W_OK | os.X_OK):
            raise StagingError(f"{probe} is not writable", uri=target.uri, hint=hint)
        return
    try:
        fd, tmp = tempfile.mkstemp(prefix=".mar-build-probe.", suffix=TMP_SUFFIX, dir=probe)
        os.close(fd)
        Path(tmp).unlink()
    except OSError as exc:
        raise StagingError(f"{probe} is not writable: {exc.strerror or exc}", uri=target.uri, hint=hint) from exc


def _stat_key(st: os.stat_result) -> dict[str, int]:
    # What vouches for a file being the one stage wrote: any write moves ctime, even one that restores mtime.
    return {"size": st.st_size, "mtime_ns": st.st_mtime_ns, "ctime_ns": st.st_ctime_ns, "ino": st.st_ino}


def _read_record(dest: Path, warnings: list[str]) -> dict[str, dict[str, Any]]:
    path = dest / RECORD_KEY
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        files = data["files"]
        if not isinstance(files, dict):
            raise TypeError("files is not an object")
        return {str(k): v for k, v in files.items() if isinstance(v, dict)}
    except (OSError, ValueError, KeyError, TypeError) as exc:
        warnings.append(f"{path} is unreadable ({exc}); every file there is hashed again")
        return {}


def _write_record(dest: Path, files: dict[str, dict[str, Any]]) -> None:
    text = json.dumps({"written_by": "mar-build stage", "files": dict(sorted(files.items()))}, indent=1) + "\n"
    write_atomic(dest / RECORD_KEY, text, tmp_suffix=TMP_SUFFIX)


def _plan(dest: Path, files: list[LocalFile], record: dict[str, dict[str, Any]], concurrency: int) -> list[StagedFile]:
    decided: dict[str, tuple[str, str]] = {}
    to_hash: list[LocalFile] = []
    for f in files:
        there = dest / f.relpath
        if not there.is_file():
            decided[f.relpath] = ("upload", "new")
            continue
        st = there.stat()
        if st.st_size != f.size:
            decided[f.relpath] = ("upload", "changed")
            continue
        seen = record.get(f.relpath, {})
        if seen.get("sha256") and all(seen.get(k) == v for k, v in _stat_key(st).items()):
            same = seen["sha256"] == f.sha256
            decided[f.relpath] = ("skip", "unchanged") if same else ("upload", "changed")
        else:
            to_hash.append(f)
    if to_hash:
        with ThreadPoolExecutor(max_workers=max(1, min(concurrency, len(to_hash)))) as pool:
            digests = list(pool.map(lambda f: sha256_file(dest / f.relpath), to_hash))
        for f, digest in zip(to_hash, digests, strict=True):
            decided[f.relpath] = ("skip", "unchanged") if digest == f.sha256 else ("upload", "changed")
    return [StagedFile(f.relpath, decided[f.relpath][0], f.size, decided[f.relpath][1], f.sha256)  # type: ignore[arg-type]
            for f in files]


def _deletions(dest: Path, files: list[LocalFile], record: dict[str, dict[str, Any]],
               warnings: list[str]) -> list[StagedFile]:
    wanted = {f.relpath for f in files}
    config = dest / CONFIG_KEY
    previous = referenced_archives(config.read_text(encoding="utf-8", errors="replace")) if config.is_file() else set()
    out: list[StagedFile] = []
    left: list[str] = []
    store = dest / "model-store"
    for path in sorted(store.iterdir()) if store.is_dir() else []:
        rel = f"model-store/{path.name}"
        if rel in wanted or not path.name.endswith(".mar") or path.is_dir():
            continue
        size = path.lstat().st_size
        if path.name in previous:
            out.append(StagedFile(rel, "delete", size, "no longer in config.properties"))
        elif rel in record:
            out.append(StagedFile(rel, "delete", size, "staged by mar-build, not in the new config.properties"))
        else:
            left.append(rel)
    for folder in _OWNED_DIRS:
        for path in sorted((dest / folder).iterdir()) if (dest / folder).is_dir() else []:
            if _TMP_NAME.fullmatch(path.name) and path.is_file():
                out.append(StagedFile(f"{folder}/{path.name}", "delete", path.lstat().st_size,
                                      "temp file left by an interrupted run"))
    if left:
        warnings.append(
            f"left in place, not staged by mar-build and not named by the config: {', '.join(left)} "
            "(TorchServe ignores them; remove them by hand if they are yours to remove)"
        )
    return out


def _copy_all(archives: list[LocalFile], dest: Path, meter: Meter, concurrency: int) -> None:
    if not archives:
        return
    # Largest first, so the longest copy starts at once and the pool drains evenly.
    ordered = sorted(archives, key=lambda f: f.size, reverse=True)
    with ThreadPoolExecutor(max_workers=max(1, min(concurrency, len(ordered)))) as pool:
        meter.run(pool, [functools.partial(_copy_one, f, dest / f.relpath, meter) for f in ordered])


def _copy_one(src: LocalFile, dst: Path, meter: Meter) -> None:
    """Copy through a temp file beside ``dst`` (fsynced, mode 0644 so the pod's user can read it), then replace."""
    with open(src.path, "rb") as fin, atomic_write(dst, tmp_suffix=TMP_SUFFIX) as fout:
        _copy_stream(fin.fileno(), fout.fileno(), src.size, meter)
    log.debug("wrote %s", dst)


def _copy_stream(fin: int, fout: int, size: int, meter: Meter) -> None:
    offset = 0
    use_sendfile = hasattr(os, "sendfile")
    while True:
        if meter.stop.is_set():
            raise Cancelled()
        if use_sendfile:
            try:
                n = os.sendfile(fout, fin, offset, _COPY_CHUNK)
            except OSError:
                # Some filesystems refuse sendfile between files; plain reads and writes always work.
                use_sendfile = False
                os.lseek(fin, offset, os.SEEK_SET)
                os.lseek(fout, offset, os.SEEK_SET)
                continue
        else:
            data = os.read(fin, _COPY_CHUNK)
            n = len(data)
            view = memoryview(data)
            while view:
                written = os.write(fout, view)
                view = view[written:]
        if n == 0:
            break
        offset += n
        meter.add(n)
    if offset != size:
        log.debug("copied %d bytes where %d were expected (the source changed while staging)", offset, size)
