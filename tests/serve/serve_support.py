"""Helpers and types for the serve tests (imported by tests/serve/conftest.py and the test modules)."""

from __future__ import annotations

import json
import os
import queue
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from toolkit._serve import LocalPredictor, ServeEvent

FIXTURES = Path(__file__).resolve().parent / "fixtures"
REPO = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class ServeProcess:
    """`python -m toolkit serve ...` in a subprocess, its stdout lines collected by a thread."""

    def __init__(self, args: list[str], env: dict[str, str] | None = None, preexec: Any = None) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "toolkit", "serve", *args], cwd=REPO, env={**os.environ, **(env or {})},
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, preexec_fn=preexec,
        )
        self.lines: queue.Queue[str] = queue.Queue()
        self.seen: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.put(line.rstrip("\n"))

    def wait_for(self, predicate: object, timeout: float = 240) -> str:
        """The first output line for which predicate(line) is true; fail with the output so far otherwise."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                line = self.lines.get(timeout=0.5)
            except queue.Empty:
                if self.proc.poll() is not None:
                    break
                continue
            self.seen.append(line)
            if predicate(line):  # type: ignore[operator]
                return line
        self.stop_hard()
        pytest.fail("mar-build serve did not get there; its output:\n" + "\n".join(self.seen))

    def output_until_exit(self, timeout: float = 120) -> str:
        self.proc.wait(timeout)
        time.sleep(0.2)
        while not self.lines.empty():
            self.seen.append(self.lines.get())
        return "\n".join(self.seen)

    def stop_hard(self, grace: float = 60) -> None:
        """Ctrl-C, then a kill after ``grace`` seconds."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(grace)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(30)


def processes_mentioning(marker: str) -> list[str]:
    """Command lines of live (non-zombie) processes whose command line contains ``marker``."""
    found = []
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            state = (proc / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except (OSError, IndexError):
            continue
        if marker in cmdline and state != "Z":
            found.append(f"{proc.name}: {cmdline}")
    return found


def archive(handler: Path, name: str, export: Path, extra_files: list[Path] | None = None) -> Path:
    """Build NAME.mar with torch-model-archiver itself (the hand workflow's tool)."""
    export.mkdir(parents=True, exist_ok=True)
    cmd = [str(Path(sys.executable).parent / "torch-model-archiver"), "--model-name", name, "--version", "1.0",
           "--handler", str(handler), "--export-path", str(export), "--force"]
    if extra_files:
        cmd += ["--extra-files", ",".join(str(p) for p in extra_files)]
    subprocess.run(cmd, check=True, capture_output=True)
    return export / f"{name}.mar"


def edit_snapshot(layout: Path, change: Callable[[dict[str, Any]], None]) -> None:
    """Apply ``change`` to the parsed model_snapshot of the layout's config.properties and write it back."""
    config = layout / "config" / "config.properties"
    lines = config.read_text().splitlines()
    for i, line in enumerate(lines):
        if line.startswith("model_snapshot="):
            snapshot = json.loads(line.removeprefix("model_snapshot="))
            change(snapshot)
            lines[i] = "model_snapshot=" + json.dumps(snapshot, separators=(",", ":"))
    config.write_text("\n".join(lines) + "\n")


def add_model(layout: Path, name: str, mar: Path, *, batch_size: int = 1, version: str = "1.0") -> None:
    """Put ``mar`` in layout/model-store and a model_snapshot entry for it in config.properties."""
    shutil.copy(mar, layout / "model-store" / f"{name}.mar")

    def add(snapshot: dict[str, Any]) -> None:
        snapshot["models"][name] = {version: {
            "defaultVersion": True, "marName": f"{name}.mar", "minWorkers": 1, "maxWorkers": 1,
            "batchSize": batch_size, "maxBatchDelay": 50, "responseTimeout": 120}}
        snapshot["modelCount"] = len(snapshot["models"])

    edit_snapshot(layout, add)


def replace_snapshot(layout: Path, name: str, mar: Path) -> None:
    """Make ``layout`` serve only ``name`` from ``mar``."""
    for old in (layout / "model-store").glob("*.mar"):
        old.unlink()
    config = layout / "config" / "config.properties"
    lines = [ln for ln in config.read_text().splitlines() if not ln.startswith("model_snapshot=")]
    config.write_text("\n".join(lines + ['model_snapshot={"name":"startup.cfg","modelCount":0,"models":{}}']) + "\n")
    add_model(layout, name, mar)


@dataclass
class TinyModel:
    path: Path
    module: object

    def predict(self, instances: list[list[float]]) -> list[list[float]]:
        import torch

        with torch.no_grad():
            return self.module(torch.tensor(instances, dtype=torch.float32)).tolist()  # type: ignore[operator,no-any-return]


def assert_rows_close(actual: object, expected: list[list[float]], rel: float = 1e-5) -> None:
    """``actual`` is a list of rows equal to ``expected`` within ``rel`` (pytest.approx does not nest)."""
    import pytest

    assert isinstance(actual, list) and len(actual) == len(expected), actual
    for got, want in zip(actual, expected, strict=True):
        assert got == pytest.approx(want, rel=rel, abs=1e-6)


def copy_layout(layout: Path, target: Path) -> Path:
    shutil.copytree(layout, target)
    return target


@dataclass
class Stack:
    predictor: LocalPredictor
    layout: Path
    config_before: bytes
    run_dir: Path
    events: list[ServeEvent] = field(default_factory=list)
    while_loading: dict[str, object] = field(default_factory=dict)
