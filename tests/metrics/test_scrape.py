"""A real Prometheus scrapes `mar-build serve` of the text sample with the labels a PodMonitor adds; after a known
load the request counts by status that Prometheus's HTTP API gives back are what the test sent, on both runtimes.

The load is GOOD requests (one to three instances each) and MALFORMED ones (an instance that is not text, refused
by the handler with its own 400). Counts are read as the increase over what the server had counted before the load,
so other tests may share the server.
"""

from __future__ import annotations

from collections.abc import Callable

import httpx
import pytest
from metrics_support import Served, scrape, total
from monitor.prometheus_support import Prometheus

from toolkit._metrics import names

pytestmark = pytest.mark.slow

GOOD, MALFORMED = 12, 5
POD = {"namespace": "kubeflow-user-example-com", "container": "kserve-container"}
TEXTS = ["Where is my parcel?", "I was charged twice this month", "The app crashes when I open settings"]


def _value(result: list[dict[str, object]]) -> float:
    return sum(float(r["value"][1]) for r in result)  # type: ignore[index]


@pytest.mark.parametrize("runtime", ["torchserve", "python"])
def test_prometheus_reads_back_the_requests_sent_by_status(
    runtime: str, served: Callable[[str], Served], prometheus: Prometheus
) -> None:
    server = served(runtime)
    labels = {**POD, "pod": f"intent-predictor-{runtime}"}
    prometheus.add_target(f"serve-{runtime}", server.metrics_url.split("/")[2], labels=labels)
    prometheus.wait_scraped(f"serve-{runtime}")
    before = scrape(server.metrics_url)
    start = {status: total(before, names.REQUESTS, model_name="intent", status=status) for status in ("200", "400")}
    start_bad = total(before, names.BAD_REQUESTS, model_name="intent", reason="instance")
    start_instances = total(before, names.REQUEST_INSTANCES + "_sum", model_name="intent")

    sent_instances = 0
    with httpx.Client(timeout=120) as client:
        for n in range(GOOD):
            instances = TEXTS[: 1 + n % 3]
            sent_instances += len(instances)
            answer = client.post(server.predict_url, json={"instances": instances})
            assert answer.status_code == 200, answer.text
        for n in range(MALFORMED):
            answer = client.post(server.predict_url, json={"instances": [{"data": n}]})
            assert answer.status_code == 400, answer.text

    selector = f'namespace="{POD["namespace"]}",pod="{labels["pod"]}",container="{POD["container"]}"'
    for status, sent in (("200", GOOD), ("400", MALFORMED)):
        expr = f'sum({names.REQUESTS}{{{selector},model_name="intent",status="{status}"}})'
        result = prometheus.wait_for(expr, predicate=lambda r, s=status, n=sent: _value(r) == start[s] + n)
        assert _value(result) - start[status] == sent
    reasons = prometheus.wait_for(
        f'sum by ({names.REASON}) ({names.BAD_REQUESTS}{{{selector},model_name="intent"}})',
        predicate=lambda r: _value(r) >= start_bad + MALFORMED)
    assert {r["metric"][names.REASON]: float(r["value"][1]) for r in reasons} == {"instance": start_bad + MALFORMED}
    instances = prometheus.wait_for(f'sum({names.REQUEST_INSTANCES}_sum{{{selector}}})',
                                    predicate=lambda r: _value(r) >= start_instances + sent_instances)
    assert _value(instances) - start_instances == sent_instances
    # TorchServe's own per-model counter, on the same scrape (every request that reached the model, any status)
    assert prometheus.query(f'{names.TS_INFERENCE_REQUESTS}{{{selector},model_name="intent"}}')
    print(f"\n{runtime}: Prometheus counted {GOOD} x 200, {MALFORMED} x 400 (reason instance), "
          f"{sent_instances} instances, as sent")
