"""The Prometheus fixture itself: a target added at run time is scraped with its static labels, and removed again."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from prometheus_support import Prometheus


class _Exporter(BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802 (the http.server API)
        body = b"# TYPE fixture_probe_total counter\nfixture_probe_total 7\n"
        self.send_response(200 if self.path == "/custom" else 404)
        self.send_header("Content-Type", "text/plain; version=0.0.4")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def exporter() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Exporter)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_a_target_added_at_run_time_is_scraped_with_its_labels(prometheus: Prometheus, exporter: str):
    labels = {"namespace": "ns", "pod": "isvc-predictor-0", "container": "kserve-container"}
    prometheus.add_target("fixture", exporter, labels=labels, path="/custom")
    try:
        prometheus.wait_scraped("fixture")
        [series] = prometheus.wait_for('fixture_probe_total{job="fixture"}')
        assert {k: series["metric"][k] for k in labels} == labels
        assert series["value"][1] == "7"
    finally:
        prometheus.remove_target("fixture")
    prometheus.wait_for('absent(up{job="fixture"})')


def test_a_bad_query_is_an_assertion_naming_it(prometheus: Prometheus):
    with pytest.raises(AssertionError, match="rate\\(x"):
        prometheus.query("rate(x")
