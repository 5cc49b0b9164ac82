"""Both runtimes export the same metrics under the same names and labels, on the port `--metrics-port` gives.

`mar-build serve` of the text sample, once per runtime (real TorchServe 0.12.0 behind the kserve wrapper; the
python runtime), a good and a malformed request, then /metrics as Prometheus would read it.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import httpx
import pytest
from metrics_support import Series, Served, label_sets, scrape, total

from toolkit._metrics import HANDLER_METRICS, names

pytestmark = pytest.mark.slow

RUNTIMES = ("torchserve", "python")
TS_OWN = (names.REQUESTS_2XX, names.REQUESTS_4XX, names.TS_INFERENCE_REQUESTS, names.TS_INFERENCE_LATENCY,
          names.TS_QUEUE_LATENCY)


def _sample_names(metric_name: str, kind: str) -> list[str]:
    return [f"{metric_name}_{s}" for s in ("bucket", "sum", "count")] if kind == "histogram" else [metric_name]


@pytest.fixture(scope="module")
def scraped(served: Callable[[str], Served]) -> dict[str, Series]:
    """Each runtime's /metrics once it has counted one good request (two instances) and one malformed one."""
    out: dict[str, Series] = {}
    for runtime in RUNTIMES:
        server = served(runtime)
        good = httpx.post(server.predict_url, json={"instances": ["Where is my parcel?", "I was charged twice"]},
                          timeout=120)
        bad = httpx.post(server.predict_url, json={"instances": [123]}, timeout=120)
        assert (good.status_code, bad.status_code) == (200, 400), (good.text, bad.text)
        # TorchServe's frontend reads the workers' metric lines as they come: poll, a bounded number of times.
        for _ in range(60):
            series = scrape(server.metrics_url)
            if total(series, names.BAD_REQUESTS, reason="instance") >= 1:
                break
            time.sleep(1)
        out[runtime] = series
    return out


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_the_metrics_are_on_the_metrics_port_and_printed(runtime: str, served: Callable[[str], Served]) -> None:
    server = served(runtime)
    assert server.metrics_url == f"http://127.0.0.1:{server.metrics_port}/metrics"
    if runtime == "python":  # the line a person reads
        assert server.printed.split() == ["metrics", "GET", server.metrics_url, "(the", "runtime's", "Prometheus",
                                          "metrics)"]
    assert httpx.get(server.metrics_url, timeout=30).status_code == 200


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_every_handler_metric_is_exported_with_its_labels(runtime: str, scraped: dict[str, Series]) -> None:
    series = scraped[runtime]
    for metric in HANDLER_METRICS:
        for name in _sample_names(metric.name, metric.kind):
            assert label_sets(series, name) >= {frozenset(metric.exported_labels)}, (runtime, name)
    labels = {"model_name": "intent", "model_version": "1.0"}
    assert total(series, names.REQUESTS, status="200", **labels) >= 1
    assert total(series, names.REQUESTS, status="400", **labels) >= 1
    assert total(series, names.BAD_REQUESTS, reason="instance", **labels) >= 1
    assert total(series, names.REQUEST_INSTANCES + "_sum", **labels) >= 2
    assert total(series, names.FORWARD_BATCH_SIZE + "_count", **labels) >= 1


def test_both_runtimes_export_torchserve_s_own_names_with_the_same_labels(scraped: dict[str, Series]) -> None:
    torchserve, python = scraped["torchserve"], scraped["python"]
    for name in TS_OWN:
        assert label_sets(torchserve, name), f"TorchServe exports no {name}"
        assert label_sets(python, name) == label_sets(torchserve, name), name
    for metric in HANDLER_METRICS:
        for name in _sample_names(metric.name, metric.kind):
            assert label_sets(python, name) == label_sets(torchserve, name), name
    for series in (torchserve, python):
        assert total(series, names.TS_INFERENCE_REQUESTS, model_name="intent", model_version="default") >= 2
