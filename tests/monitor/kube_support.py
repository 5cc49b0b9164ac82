"""What cAdvisor and kube-state-metrics would export about a predictor pod, measured from the local processes.

No cluster runs here, so the pod's container series come from a local stand-in, ``PodExporter``: a real HTTP
endpoint in Prometheus' text format, scraped by the test's real Prometheus like any target, with the names and
labels kube-prometheus-stack's scrape of the kubelet's cAdvisor and of kube-state-metrics gives them
(``namespace``, ``pod``, ``container`` as series labels). The values are real: CPU seconds and resident memory of
the served process tree (``/proc``), and the limits the rendered InferenceService asks for.

    exporter = PodExporter(pids, namespace=..., pod=..., container=..., cpu_limit=2.0, memory_limit=2 * 2**30)
    exporter.address          # "127.0.0.1:PORT", for prometheus.add_target(...)
    exporter.close()
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

TICKS = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")


def _stat(pid: int) -> list[str] | None:
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return text.rsplit(")", 1)[1].split()  # fields from the state on (the name may hold spaces)


def process_tree(roots: Iterable[int]) -> set[int]:
    """``roots`` and every live descendant (a TorchServe frontend's workers, say)."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").glob("[0-9]*"):
        fields = _stat(int(entry.name))
        if fields is not None:
            parents[int(entry.name)] = int(fields[1])
    tree = {pid for pid in roots if pid in parents}
    grew = True
    while grew:
        children = {pid for pid, parent in parents.items() if parent in tree} - tree
        tree |= children
        grew = bool(children)
    return tree


def usage(pids: set[int]) -> tuple[float, int]:
    """(CPU seconds used, resident bytes) of ``pids`` together."""
    cpu, rss = 0.0, 0
    for pid in pids:
        fields = _stat(pid)
        if fields is not None:
            cpu += (int(fields[11]) + int(fields[12])) / TICKS  # utime, stime
            rss += int(fields[21]) * PAGE
    return cpu, rss


class PodExporter:
    """cAdvisor's and kube-state-metrics' series for one pod's server container; see the module docstring."""

    def __init__(self, roots: Iterable[int], *, namespace: str, pod: str, container: str, cpu_limit: float,
                 memory_limit: int) -> None:
        self.roots = list(roots)
        self.labels = f'namespace="{namespace}",pod="{pod}",container="{container}"'
        self.pod_labels = f'namespace="{namespace}",pod="{pod}"'
        self.cpu_limit, self.memory_limit = cpu_limit, memory_limit
        exporter = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (the http.server API)
                body = exporter.text().encode()
                self.send_response(200)
                self.send_header("Content-Type", "text/plain; version=0.0.4")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        self.address = f"127.0.0.1:{self._server.server_address[1]}"

    def text(self) -> str:
        cpu, rss = usage(process_tree(self.roots))
        c, p = self.labels, self.pod_labels
        return "\n".join([
            "# TYPE container_cpu_usage_seconds_total counter",
            f"container_cpu_usage_seconds_total{{{c}}} {cpu}",
            "# TYPE container_memory_working_set_bytes gauge",
            f"container_memory_working_set_bytes{{{c}}} {rss}",
            "# TYPE kube_pod_container_resource_limits gauge",
            f'kube_pod_container_resource_limits{{{c},resource="cpu",unit="core"}} {self.cpu_limit}',
            f'kube_pod_container_resource_limits{{{c},resource="memory",unit="byte"}} {self.memory_limit}',
            "# TYPE kube_pod_container_status_restarts_total counter",
            f"kube_pod_container_status_restarts_total{{{c}}} 0",
            "# TYPE kube_pod_status_ready gauge",
            f'kube_pod_status_ready{{{p},condition="true"}} 1',
            f'kube_pod_status_ready{{{p},condition="false"}} 0',
            "",
        ])

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
