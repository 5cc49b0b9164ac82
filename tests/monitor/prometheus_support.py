"""A real Prometheus (Debian's /usr/bin/prometheus) for tests, scraping targets that tests add while it runs.

The API, small on purpose (the session fixture ``prometheus`` in tests/monitor/conftest.py hands out one server):

    prometheus.add_target(name, "127.0.0.1:PORT", labels={...}, path="/metrics")
        scrape that address every second from now on, with ``labels`` attached to every series as static target
        labels (``POD_LABELS`` are what a PodMonitor adds: namespace, pod, container). ``name`` keys the target:
        adding the same name again replaces it. The job label is ``name`` unless ``labels`` sets ``job``.
    prometheus.remove_target(name)
    prometheus.query(expr) -> list of {"metric": {...}, "value": [t, "v"]}   (an instant query, now)
    prometheus.wait_for(expr, timeout=60.0, predicate=None) -> the same, once the result is non-empty (and
        ``predicate(result)`` is true); AssertionError naming the last result when ``timeout`` passes first.
    prometheus.wait_scraped(name, timeout=60.0) -> waits until the target's ``up`` is 1.
    prometheus.url, prometheus.port

Targets are rewritten into a file_sd_configs file (Prometheus watches it with inotify, and re-reads it every
``REFRESH`` seconds besides), so no reload and no restart is needed. ``start_prometheus`` runs it on a free
loopback port with its TSDB in a temporary folder; ``stop()`` ends only that process.
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import httpx
import yaml

PROMETHEUS = "/usr/bin/prometheus"
PROMTOOL = "/usr/bin/promtool"
INSTALL_HINT = "apt-get install -y prometheus   (Debian's package ships both prometheus and promtool)"
SCRAPE_INTERVAL = "1s"
REFRESH = "2s"
# The static labels a PodMonitor's target carries (the Prometheus Operator adds them from the pod's metadata).
POD_LABELS = ("namespace", "pod", "container")

Result = list[dict[str, Any]]


def require(binary: str) -> str:
    """``binary`` when it is installed; a test failure (never a skip) naming the package otherwise."""
    import pytest

    if shutil.which(binary) is None:
        pytest.fail(f"{binary} is not installed: {INSTALL_HINT}")
    return binary


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Prometheus:
    """One running Prometheus; see the module docstring for the API."""

    def __init__(self, root: Path, port: int, process: subprocess.Popen[bytes]) -> None:
        self.root, self.port, self.process = root, port, process
        self.url = f"http://127.0.0.1:{port}"
        self._targets: dict[str, dict[str, Any]] = {}
        self._http = httpx.Client(base_url=self.url, timeout=10.0)

    # targets ---------------------------------------------------------------------------------------------------
    def add_target(self, name: str, address: str, *, labels: Mapping[str, str] | None = None,
                   path: str = "/metrics") -> None:
        group_labels = {"job": name, **dict(labels or {}), "__metrics_path__": path}
        self._targets[name] = {"targets": [address], "labels": group_labels}
        self._write_targets()

    def remove_target(self, name: str) -> None:
        self._targets.pop(name, None)
        self._write_targets()

    def _write_targets(self) -> None:
        path = self.root / "targets.json"
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(list(self._targets.values()), indent=1), encoding="utf-8")
        tmp.replace(path)  # Prometheus never reads half a file

    # queries ---------------------------------------------------------------------------------------------------
    def query(self, expr: str) -> Result:
        """The instant vector (or scalar, as one sample) ``expr`` evaluates to now; AssertionError on a bad query."""
        answer = self._http.get("/api/v1/query", params={"query": expr})
        body = answer.json()
        assert answer.status_code == 200 and body.get("status") == "success", f"query {expr!r}: {body}"
        data = body["data"]
        if data["resultType"] in ("scalar", "string"):
            return [{"metric": {}, "value": data["result"]}]
        return list(data["result"])

    def wait_for(self, expr: str, *, timeout: float = 60.0,
                 predicate: Callable[[Result], bool] | None = None) -> Result:
        deadline = time.monotonic() + timeout
        result: Result = []
        while True:
            result = self.query(expr)
            if result and (predicate is None or predicate(result)):
                return result
            if time.monotonic() > deadline:
                raise AssertionError(f"after {timeout:.0f} s, {expr!r} still returns {result!r}")
            time.sleep(0.5)

    def wait_scraped(self, name: str, *, timeout: float = 60.0) -> Result:
        return self.wait_for(f'up{{job="{name}"}} == 1', timeout=timeout)

    def targets(self) -> list[dict[str, Any]]:
        """The active targets as Prometheus reports them (for messages when a wait fails)."""
        return list(self._http.get("/api/v1/targets").json()["data"]["activeTargets"])

    # life ------------------------------------------------------------------------------------------------------
    def stop(self) -> None:
        self._http.close()
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)


def start_prometheus(root: Path, *, timeout: float = 60.0) -> Prometheus:
    """Start Prometheus in ``root`` (config, targets file, TSDB) on a free loopback port; return once it is ready."""
    require(PROMETHEUS)
    root.mkdir(parents=True, exist_ok=True)
    (root / "targets.json").write_text("[]", encoding="utf-8")
    config = {
        "global": {"scrape_interval": SCRAPE_INTERVAL, "scrape_timeout": SCRAPE_INTERVAL,
                   "evaluation_interval": SCRAPE_INTERVAL},
        "scrape_configs": [{
            "job_name": "tests",
            "file_sd_configs": [{"files": [str(root / "targets.json")], "refresh_interval": REFRESH}],
        }],
    }
    (root / "prometheus.yml").write_text(yaml.safe_dump(config), encoding="utf-8")
    port = _free_port()
    log = (root / "prometheus.log").open("wb")
    process = subprocess.Popen(
        [PROMETHEUS, f"--config.file={root / 'prometheus.yml'}", f"--storage.tsdb.path={root / 'data'}",
         f"--web.listen-address=127.0.0.1:{port}", "--storage.tsdb.retention.time=1h"],
        stdout=log, stderr=subprocess.STDOUT, cwd=root,
    )
    log.close()
    server = Prometheus(root, port, process)
    deadline = time.monotonic() + timeout
    while True:
        if process.poll() is not None:
            raise AssertionError(f"prometheus exited with {process.returncode}: "
                                 + (root / "prometheus.log").read_text(errors="replace")[-3000:])
        try:
            if httpx.get(f"{server.url}/-/ready", timeout=2.0).status_code == 200:
                return server
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline:
            server.stop()
            raise AssertionError(f"prometheus not ready after {timeout:.0f} s: "
                                 + (root / "prometheus.log").read_text(errors="replace")[-3000:])
        time.sleep(0.3)


def promtool(*args: str | Path, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    """Run Debian's promtool with ``args``; the completed process (its output as text)."""
    require(PROMTOOL)
    return subprocess.run([PROMTOOL, *map(str, args)], capture_output=True, text=True, cwd=cwd, timeout=120)
