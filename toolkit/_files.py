"""The one home of atomic writes: a temp file beside the target, written, flushed, fsynced, given its mode, replaced.

A reader (TorchServe, KServe's wrapper, a pod reading a PVC, a second `mar-build` run) sees the old file or the new
one, never half of one. Missing folders are made with an explicit mode too
(``make_dirs``). The temp file is created with mode 0600 (mkstemp) and given its final mode explicitly with
fchmod before it is moved into place: never through the process umask, which is shared by every thread (setting it
to read it, as code once did here, makes files other threads create in that moment world-writable). On any failure
the temp file is removed and the target is left as it was.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

# What the pod's user (1000 in KServe's runtimes, not the user who built the layout) needs to read a file or list
# a folder; a file holding keys is 0600 from its first byte.
PUBLIC_FILE = 0o644
PUBLIC_DIR = 0o755
PRIVATE_FILE = 0o600


def make_dirs(
    path: str | os.PathLike[str], *, mode: int = PUBLIC_DIR, stop: str | os.PathLike[str] | None = None
) -> Path:
    """Create ``path`` and its missing parents (none above ``stop``), each given ``mode`` explicitly: a plain mkdir
    follows the umask, and under 077 the pod's user could not list the folder. Existing folders are left as they are.
    """
    target = Path(path)
    missing: list[Path] = []
    probe = target
    while not probe.is_dir() and (stop is None or probe != Path(stop)) and probe != probe.parent:
        missing.append(probe)
        probe = probe.parent
    for folder in reversed(missing):
        folder.mkdir(exist_ok=True)
        folder.chmod(mode)
    return target


@contextmanager
def atomic_write(
    path: str | os.PathLike[str], *, mode: int = PUBLIC_FILE, fsync: bool = True, tmp_suffix: str = ".tmp"
) -> Iterator[BinaryIO]:
    """Open a temp file beside ``path`` for writing; on a clean exit it becomes ``path`` with ``mode``.

    The folder is created when missing. An exception inside the block removes the temp file and re-raises;
    ``path`` is untouched.
    """
    target = Path(path)
    make_dirs(target.parent)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=tmp_suffix, dir=target.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            yield f
            f.flush()
            if fsync:
                os.fsync(f.fileno())
            os.fchmod(f.fileno(), mode)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_atomic(
    path: str | os.PathLike[str], data: str | bytes, *, mode: int = PUBLIC_FILE, fsync: bool = True,
    tmp_suffix: str = ".tmp",
) -> Path:
    """Write ``data`` (text is UTF-8, newlines as given) to ``path`` atomically with ``mode``; return the path."""
    with atomic_write(path, mode=mode, fsync=fsync, tmp_suffix=tmp_suffix) as f:
        f.write(data.encode("utf-8") if isinstance(data, str) else data)
    return Path(path)


def make_temp_dir(parent: str | os.PathLike[str], name: str, *, mode: int = PUBLIC_DIR) -> Path:
    """A new folder ``.NAME.XXXXXXXX.tmp`` in ``parent`` with ``mode`` (mkdtemp's 0700 would travel with a layout)."""
    make_dirs(parent)
    tmp = Path(tempfile.mkdtemp(prefix=f".{name}.", suffix=".tmp", dir=parent))
    tmp.chmod(mode)
    return tmp


def cache_dir() -> Path:
    """Where mar-build keeps its caches: $MAR_BUILD_CACHE_DIR, else $XDG_CACHE_HOME/mar-build, else
    ~/.cache/mar-build (stage's hashes and OCI layers, check's image venvs and probe answers)."""
    explicit = os.environ.get("MAR_BUILD_CACHE_DIR")
    if explicit:
        return Path(explicit)
    base = os.environ.get("XDG_CACHE_HOME")
    return (Path(base) if base else Path.home() / ".cache") / "mar-build"
