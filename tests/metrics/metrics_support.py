"""Helpers for the metrics tests: `mar-build serve` in a subprocess, and a scrape of /metrics as series.

``ServeProcess(args)`` runs ``python -m toolkit serve ARGS`` and collects its stdout; ``started()`` waits for the
endpoints it prints (the ``--json`` line, or the human ``metrics  GET  URL`` line) and ``stop()`` sends Ctrl-C.
``scrape(url)`` reads the Prometheus text as Prometheus stores it, name by name:
``{(series name, ((label, value), ...)): value}``.
"""

from __future__ import annotations

import os
import queue
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

REPO = Path(__file__).resolve().parents[2]
Series = dict[tuple[str, tuple[tuple[str, str], ...]], float]


@dataclass(frozen=True)
class Served:
    runtime: str
    url: str
    metrics_url: str
    metrics_port: int
    printed: str
    model: str = "intent"

    @property
    def predict_url(self) -> str:
        return f"{self.url}/v1/models/{self.model}:predict"


class ServeProcess:
    """`python -m toolkit serve ...` in a subprocess, its output lines read by a thread."""

    def __init__(self, args: list[str]) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "toolkit", "serve", *args], cwd=REPO, env=dict(os.environ),
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )
        self.lines: queue.Queue[str] = queue.Queue()
        self.seen: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.put(line.rstrip("\n"))

    def wait_for(self, prefix: str, timeout: float = 400) -> str:
        """The first output line that starts with ``prefix`` (after stripping); fail with the output otherwise."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                line = self.lines.get(timeout=0.5)
            except queue.Empty:
                if self.proc.poll() is not None:
                    break
                continue
            self.seen.append(line)
            if line.strip().startswith(prefix):
                return line
        self.stop()
        pytest.fail(f"mar-build serve printed no line starting {prefix!r}; its output:\n" + "\n".join(self.seen))

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(90)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(30)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


_SAMPLE = re.compile(r"([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)(?:\s+\d+)?")
_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)",?')


def scrape(url: str) -> Series:
    """Every sample at ``url`` (a /metrics endpoint), under the name it has on the wire, as Prometheus stores it
    (prometheus_client's own parser would rename TorchServe's ``Requests2XX`` to ``Requests2XX_total``)."""
    text = httpx.get(url, timeout=30).text
    series: Series = {}
    for line in text.splitlines():
        match = _SAMPLE.fullmatch(line.strip())
        if line.startswith("#") or match is None:
            continue
        name, labels, value = match.groups()
        pairs = tuple(sorted(_LABEL.findall(labels or "")))
        series[(name, pairs)] = float(value)
    return series


def label_sets(series: Series, name: str) -> set[frozenset[str]]:
    """The label names of every sample named ``name`` (``le`` left out)."""
    return {frozenset(k for k, _ in labels if k != "le") for n, labels in series if n == name}


def total(series: Series, name: str, **labels: str) -> float:
    """The sum of the samples named ``name`` whose labels include ``labels``."""
    return sum(v for (n, ls), v in series.items() if n == name and labels.items() <= dict(ls).items())
