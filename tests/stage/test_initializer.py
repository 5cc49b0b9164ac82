"""The storage-initializer download runs kserve_storage in a process of its own, and says why it failed."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
from s3_support import make_layout, s3_env, tree

from toolkit import stage
from toolkit._serve.initializer import DownloadFailed, download


def test_downloads_from_a_process_with_busy_threads(tmp_path: Path, bucket: str, s3_endpoint: str) -> None:
    """Threads holding locks are what deadlocked an in-process download (its Pool forks); here they are harmless."""
    layout = make_layout(tmp_path / "layout", {"a": b"a" * 1000, "b": b"b" * 1000})
    stage(layout, f"s3://{bucket}/m", endpoint_url=s3_endpoint)
    stop = threading.Event()
    lock = threading.Lock()

    def hold() -> None:
        while not stop.is_set():
            with lock:
                stop.wait(0.001)

    busy = [threading.Thread(target=hold, daemon=True) for _ in range(4)]
    for thread in busy:
        thread.start()
    try:
        with s3_env(s3_endpoint):
            got = download(f"s3://{bucket}/m", tmp_path / "out", timeout=120)
    finally:
        stop.set()
    assert tree(got) == tree(layout)


def test_a_failed_download_carries_what_kserve_storage_said(tmp_path: Path, s3_endpoint: str) -> None:
    with s3_env(s3_endpoint), pytest.raises(DownloadFailed) as err:
        download("s3://no-such-bucket-here/m", tmp_path / "out", timeout=120)
    assert err.value.lines and "no-such-bucket-here" in "\n".join(err.value.lines)
