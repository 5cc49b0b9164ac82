"""Every panel of the generated dashboard answers from a real Prometheus scraping `serve` of the text sample.

One server per runtime (module scope, torchserve then python), scraped every second with the labels a PodMonitor
of `render --monitor podmonitor` gives its target (namespace, pod, container); the pod's container series come from
kube_support's stand-in for cAdvisor and kube-state-metrics. After a known load (good requests, some of them
concurrent so that batches form, and malformed instances the handler refuses), the request counts by status are
exactly what was sent, and every query of every panel, with the dashboard's variables filled in, returns series.
"""

from __future__ import annotations

import re
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest
from kube_support import PodExporter
from prometheus_support import Prometheus

from toolkit._build.builder import build
from toolkit._render import layout_dashboard, parse_quantity, render
from toolkit._serve import serve

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
SAMPLE = REPO / "samples" / "text-classification"
NS, ISVC, MODEL = "team", "intent", "intent"
POD = f"{ISVC}-predictor-00001-deployment-6c9f7"
CONTAINER = "kserve-container"
GOOD, CONCURRENT, MALFORMED = 12, 16, 6
TEXTS = ["Where is my parcel?", "I was charged twice this month", "The app crashes when I export",
         "I cannot sign in with my new phone"]
# The queries' Grafana variables, filled in as Grafana would for this pod and model; the rate window spans the load.
VARIABLES = {"$namespace": NS, "$isvc": ISVC, "$model": MODEL, "$__rate_interval": "5m"}
# Series only TorchServe exports (its workers' load times): the python runtime is one process, its restarts are
# the container's.
TORCHSERVE_ONLY = ("WorkerLoadTime",)


@dataclass
class Scraped:
    runtime: str
    layout: Path
    statuses: dict[str, int]


@pytest.fixture(scope="module")
def layout(tmp_path_factory: pytest.TempPathFactory) -> Path:
    proc = subprocess.run([sys.executable, str(SAMPLE / "prepare.py")], capture_output=True, text=True, timeout=1800)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    return build(SAMPLE, tmp_path_factory.mktemp("monitor") / "layout").layout


def _load(url: str) -> dict[str, int]:
    """Send the known load; the statuses counted as answered."""
    statuses: dict[str, int] = {}
    predict = f"{url}/v1/models/{MODEL}:predict"

    def call(body: dict[str, object]) -> int:
        with httpx.Client(timeout=120) as client:
            return client.post(predict, json=body).status_code

    bodies = [{"instances": [TEXTS[i % 4]]} for i in range(GOOD)]
    bodies += [{"instances": [42]} if i % 2 else {"instances": [{"subject": "no text"}]} for i in range(MALFORMED)]
    answers = [call(body) for body in bodies]
    with ThreadPoolExecutor(8) as pool:  # concurrent: the server batches them (batch sizes above 1)
        answers += list(pool.map(call, [{"instances": TEXTS[:2]}] * CONCURRENT))
    for status in answers:
        statuses[str(status)] = statuses.get(str(status), 0) + 1
    assert statuses == {"200": GOOD + CONCURRENT, "400": MALFORMED}
    return statuses


@pytest.fixture(scope="module", params=["torchserve", "python"])
def scraped(request: pytest.FixtureRequest, layout: Path, prometheus: Prometheus) -> Iterator[Scraped]:
    runtime = request.param
    predictor = serve(layout, port=_free_port(), runtime=runtime, startup_timeout=300)
    [isvc] = render(layout, name=ISVC, namespace=NS, storage_uri="pvc://models/intent").documents
    limits = isvc["spec"]["predictor"]["model"]["resources"]["limits"]
    exporter = PodExporter(predictor.pids.values(), namespace=NS, pod=POD, container=CONTAINER,
                           cpu_limit=float(parse_quantity(limits["cpu"])),
                           memory_limit=int(parse_quantity(limits["memory"])))
    metrics = urlsplit(predictor.metrics_url)
    try:
        prometheus.add_target("predictor", metrics.netloc, path=metrics.path,
                              labels={"namespace": NS, "pod": POD, "container": CONTAINER})
        prometheus.add_target("kube", exporter.address)
        prometheus.wait_scraped("predictor")
        prometheus.wait_scraped("kube")
        yield Scraped(runtime, layout, _load(predictor.url))
    finally:
        prometheus.remove_target("predictor")
        prometheus.remove_target("kube")
        exporter.close()
        predictor.stop()
        # The next runtime's series must not be this one's: wait until these are stale.
        prometheus.wait_for(f'absent(up{{job="predictor", instance="{metrics.netloc}"}})')


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _fill(expr: str) -> str:
    for name, value in VARIABLES.items():
        expr = expr.replace(name, value)
    return expr


def test_the_counts_by_status_are_what_was_sent(scraped: Scraped, prometheus: Prometheus):
    selector = f'namespace="{NS}", pod="{POD}", model_name="{MODEL}"'
    want = {"200": float(GOOD + CONCURRENT), "400": float(MALFORMED)}

    def counts(result: list[dict]) -> dict[str, float]:
        return {s["metric"]["status"]: float(s["value"][1]) for s in result}

    result = prometheus.wait_for(f"sum by (status) (mar_build_requests_total{{{selector}}})", timeout=90,
                                 predicate=lambda r: counts(r) == want)
    assert counts(result) == want
    # Every request reached the server's own counter, the malformed ones too (their 400 is the handler's).
    [total] = prometheus.query(f"sum(ts_inference_requests_total{{{selector}}})")
    assert float(total["value"][1]) == GOOD + CONCURRENT + MALFORMED
    [bad] = prometheus.query(f"sum by (reason) (mar_build_bad_requests_total{{{selector}}})")
    assert bad["metric"] == {"reason": "instance"} and float(bad["value"][1]) == MALFORMED
    [instances] = prometheus.query(f"sum(mar_build_request_instances_sum{{{selector}}})")
    assert float(instances["value"][1]) == GOOD + 2 * CONCURRENT  # the refused requests served no instance


def test_every_panel_query_returns_series(scraped: Scraped, prometheus: Prometheus):
    test_the_counts_by_status_are_what_was_sent(scraped, prometheus)  # the load is in Prometheus
    dashboard = layout_dashboard(scraped.layout, name=ISVC, namespace=NS).model
    panels: dict[str, list[tuple[str, list[dict]]]] = {}
    for panel in dashboard["panels"]:
        exprs = [_fill(target["expr"]) for target in panel.get("targets", [])]
        if not exprs:
            continue  # a row: it holds panels, no query
        # rate() needs two scrapes of a series: one that appeared in the last scrape is there a scrape later
        deadline = time.monotonic() + 30
        while True:
            answers = [(expr, prometheus.query(expr)) for expr in exprs]
            if any(result for _, result in answers) or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        panels[panel["title"]] = answers
    assert len(panels) == 9, sorted(panels)
    for title, answers in panels.items():
        assert any(result for _, result in answers), f"panel {title!r}: no query returned series: {answers}"
        for expr, result in answers:
            if scraped.runtime == "python" and any(name in expr for name in TORCHSERVE_ONLY):
                continue
            assert result, f"panel {title!r} ({scraped.runtime}): {expr} returned no series"
    # The pod's memory is measured and sits under its limit; the limit is the rendered InferenceService's.
    used, limit = (float(result[0]["value"][1]) for _, result in panels["Memory against limit"])
    assert 0 < used < limit == 2 * 2**30


def test_the_dashboard_variables_find_this_pod_and_model(scraped: Scraped, prometheus: Prometheus):
    """Each variable's label_values(SELECTOR, LABEL) query, run as Grafana runs it (the series of SELECTOR, their
    LABEL values, the variable's regex applied), lists this namespace, InferenceService and model."""
    dashboard = layout_dashboard(scraped.layout, name=ISVC, namespace=NS).model
    found = {}
    for variable in dashboard["templating"]["list"]:
        if variable["type"] != "query":
            continue
        match = re.fullmatch(r"label_values\((.+), (\w+)\)", variable["query"])
        assert match, variable["query"]
        selector, label = _fill(match.group(1)), match.group(2)
        values = {s["metric"][label] for s in prometheus.wait_for(selector)}
        if "regex" in variable:
            pattern = re.compile(variable["regex"].strip("/"))
            values = {m.group(1) for v in values if (m := pattern.match(v))}
        found[variable["name"]] = values
    assert found == {"namespace": {NS}, "isvc": {ISVC}, "model": {MODEL}}
