"""The storage-initializer's download, run the way the pod runs it: kserve_storage in a process of its own.

kserve_storage downloads S3 objects through a multiprocessing.Pool, which on Linux forks. Forking a process that
has other threads running (a notebook kernel, a local server, boto3's transfer threads) can leave the child
waiting forever on a lock some thread held at fork time; seen here as a download that never finished. A fresh
interpreter has no such threads, as the initializer container has none.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

_CODE = "import sys\nfrom kserve_storage import Storage\nStorage.download(sys.argv[1], sys.argv[2])\n"


class DownloadFailed(Exception):
    """kserve_storage could not download ``uri``; ``lines`` is the tail of what it printed."""

    def __init__(self, uri: str, lines: list[str]) -> None:
        super().__init__(lines[-1] if lines else f"downloading {uri} failed")
        self.uri = uri
        self.lines = lines


def download(uri: str, target: Path, *, env: Mapping[str, str] | None = None, timeout: float | None = None) -> Path:
    """Copy the contents of ``uri`` into ``target`` with kserve_storage.Storage.download, as KServe's
    storage-initializer does (AWS_ENDPOINT_URL and the AWS_* variables of ``env``, default os.environ, apply).

    Returns ``target``. Raises DownloadFailed with kserve_storage's last output lines, ModuleNotFoundError when
    kserve-storage is not installed, subprocess.TimeoutExpired after ``timeout`` seconds.
    """
    import importlib.util

    if importlib.util.find_spec("kserve_storage") is None:
        raise ModuleNotFoundError("kserve_storage", name="kserve_storage")
    target.mkdir(parents=True, exist_ok=True)
    proc = subprocess.run(
        [sys.executable, "-c", _CODE, uri, str(target)],
        env=dict(os.environ if env is None else env), capture_output=True, text=True, timeout=timeout,
    )
    if proc.returncode != 0:
        lines = [line for line in (proc.stderr + proc.stdout).splitlines() if line.strip()]
        raise DownloadFailed(uri, lines[-15:])
    return target
