"""The python runtime's Prometheus metrics: the names TorchServe exports (names.py), in prometheus_client's registry.

TorchServe's own counters keep TorchServe's spelling on the wire: ``Requests2XX`` and
``ts_inference_latency_microseconds`` carry no ``_total``, which prometheus_client's Counter would add, so they are
collected as untyped series of exactly that name (a PromQL query reads the same on both runtimes). The handlers'
metrics arrive through ``HandlerMetrics``, the runtime's ``context.metrics``: the calls TorchServe's metrics cache
takes (``get_metric``, ``add_metric_to_cache``, ``add_counter``, ``add_time``...), mapped by position onto the
declared labels plus ``Hostname``, as TorchServe's frontend maps them. A metric no file declares is counted in
``HandlerMetrics.dropped`` and exported nowhere, as TorchServe drops it.

Imported by the runtime only (prometheus_client is a serve dependency).
"""

from __future__ import annotations

import os
import socket
import threading
from collections import Counter as Tally
from collections.abc import Iterable, Iterator, Mapping
from functools import cache
from typing import Any

from prometheus_client import REGISTRY, Counter, Gauge, Histogram, disable_created_metrics, start_http_server
from prometheus_client.core import Metric as Family
from prometheus_client.registry import Collector

from . import names
from .names import HANDLER_METRICS, Metric

HOST = socket.gethostname()


class ExactCounter(Collector):
    """A counter exported under exactly ``name`` (untyped: the text format would append ``_total`` to a counter)."""

    def __init__(self, name: str, documentation: str, labels: tuple[str, ...]) -> None:
        self.name = name
        self.documentation = documentation
        self.labels = labels
        self._values: dict[tuple[str, ...], float] = {}
        self._lock = threading.Lock()
        REGISTRY.register(self)

    def inc(self, values: tuple[str, ...], amount: float = 1.0) -> None:
        with self._lock:
            self._values[values] = self._values.get(values, 0.0) + amount

    def collect(self) -> Iterator[Family]:
        family = Family(self.name, self.documentation, "unknown")
        with self._lock:
            for values, value in self._values.items():
                family.add_sample(self.name, dict(zip(self.labels, values, strict=True)), value)
        yield family


class RuntimeMetrics:
    """TorchServe's frontend counters, as the python runtime counts them (one set per process)."""

    def __init__(self) -> None:
        host = (names.LEVEL, names.HOSTNAME)
        self.status = {
            klass: ExactCounter(name, f"responses with a {klass}xx status", host)
            for klass, name in ((2, names.REQUESTS_2XX), (4, names.REQUESTS_4XX), (5, names.REQUESTS_5XX))
        }
        model = (names.MODEL_NAME, names.MODEL_VERSION, names.TS_HOSTNAME)
        self.requests = Counter(names.TS_INFERENCE_REQUESTS, "inference requests received, per model", model)
        self.latency = ExactCounter(names.TS_INFERENCE_LATENCY, "microseconds from arrival to answer", model)
        self.queue = ExactCounter(names.TS_QUEUE_LATENCY, "microseconds requests waited for the model", model)

    def response(self, status: int) -> None:
        """One HTTP response of the server (any API), by status class, as TorchServe counts Requests2XX/4XX/5XX."""
        counter = self.status.get(status // 100)
        if counter is not None:
            counter.inc(("Host", HOST))

    def answered(self, model: str, version: str, seconds: float) -> None:
        """One inference request answered after ``seconds``."""
        self.requests.labels(model, version, HOST).inc()
        self.latency.inc((model, version, HOST), seconds * 1e6)

    def queued(self, model: str, version: str, seconds: float) -> None:
        self.queue.inc((model, version, HOST), seconds * 1e6)


@cache
def runtime_metrics() -> RuntimeMetrics:
    """The process's frontend counters, registered once in prometheus_client's default registry (which kserve's
    /metrics serves); no ``_created`` series, which TorchServe does not have either."""
    disable_created_metrics()
    return RuntimeMetrics()


class _Declared:
    """One declared model metric in the registry: a prometheus_client metric with the declared labels + Hostname."""

    def __init__(self, metric: Metric) -> None:
        self.spec = metric
        labels = metric.exported_labels
        self.exact = metric.kind == "counter" and not metric.name.endswith("_total")
        if self.exact:  # TorchServe exports a counter under its declared name, _total or not
            self.metric: Any = ExactCounter(metric.name, metric.help, labels)
        elif metric.kind == "counter":
            self.metric = Counter(metric.name, metric.help, labels)
        elif metric.kind == "gauge":
            self.metric = Gauge(metric.name, metric.help, labels)
        else:
            self.metric = Histogram(metric.name, metric.help, labels, buckets=names.DEFAULT_BUCKETS)

    def update(self, value: float, values: list[str]) -> bool:
        if len(values) != len(self.spec.labels):
            return False
        if self.exact:
            self.metric.inc((*values, HOST), value)
            return True
        child = self.metric.labels(*[str(v) for v in values], HOST)
        if self.spec.kind == "counter":
            child.inc(value)
        elif self.spec.kind == "gauge":
            child.set(value)
        else:
            child.observe(value)
        return True


_DECLARED: dict[str, _Declared] = {}
_DECLARED_LOCK = threading.Lock()


def declare(metrics: Iterable[Metric]) -> None:
    """Register ``metrics`` (model metrics) in the registry; a name already there keeps its first declaration."""
    with _DECLARED_LOCK:
        for metric in metrics:
            if metric.name not in _DECLARED:
                _DECLARED[metric.name] = _Declared(metric)


def declare_file(declared: Mapping[str, tuple[str, tuple[str, ...]]]) -> None:
    """Register what a layout's metrics file declares under model_metrics (``parse_declared``'s result)."""
    declare(Metric(name, kind, "", labels, "model_metrics", "declared in the layout's metrics file")  # type: ignore[arg-type]
            for name, (kind, labels) in declared.items())


class _Handle:
    """What ``get_metric``/``add_metric_to_cache`` hand back: ``add_or_update`` lands in the registry."""

    def __init__(self, owner: HandlerMetrics, name: str, dimension_names: list[str] | None) -> None:
        self._owner = owner
        self.metric_name = name
        self.dimension_names = list(dimension_names or [])

    def add_or_update(self, value: float, dimension_values: list[Any] | None = None, request_id: Any = None) -> None:
        self._owner.update(self.metric_name, value, [str(v) for v in dimension_values or []])

    def update(self, value: float, request_id: Any = None, dimensions: list[Any] | None = None) -> None:
        self.add_or_update(value, [d.value for d in dimensions or []], request_id)


class HandlerMetrics:
    """The runtime's ``context.metrics``: TorchServe's metrics-cache calls, into the Prometheus registry.

    ``model_name`` fills the default ``ModelName`` dimension (``Level`` is ``Model``) that ``add_counter`` and
    friends append, as TorchServe's cache does. ``reported`` counts every update per name, ``dropped`` those of
    metrics no file declares (or with the wrong number of label values).
    """

    def __init__(self, model_name: str) -> None:
        declare(HANDLER_METRICS)
        self.model_name = model_name
        self.reported: Tally[str] = Tally()
        self.dropped: Tally[str] = Tally()
        self.request_ids: Any = None

    @property
    def counts(self) -> Tally[str]:
        return self.reported

    def update(self, name: str, value: float, values: list[str]) -> None:
        self.reported[name] += 1
        if _RECORDED is not None:  # a worker process: the server process exports it (replay)
            _RECORDED.append((self.model_name, name, float(value), values))
            return
        declared = _DECLARED.get(name)
        if declared is None or not declared.update(float(value), values):
            self.dropped[name] += 1

    def get_metric(self, metric_name: str, metric_type: Any = None) -> _Handle:
        declared = _DECLARED.get(metric_name)
        if declared is None:
            raise KeyError(f"metric {metric_name!r} is not declared")  # TorchServe: MetricsCacheKeyError
        return _Handle(self, metric_name, list(declared.spec.labels))

    def add_metric_to_cache(self, metric_name: str, unit: str = "", dimension_names: list[str] | None = None,
                            metric_type: Any = None) -> _Handle:
        return _Handle(self, metric_name, dimension_names)

    def _add(self, name: str, value: float, dimensions: list[Any] | None) -> None:
        given = list(dimensions or [])
        present = {d.name for d in given}
        values = [str(d.value) for d in given]
        values += [self.model_name] if "ModelName" not in present else []
        values += ["Model"] if "Level" not in present else []
        self.update(name, value, values)

    def add_metric(self, name: str, value: float, unit: str = "", idx: Any = None, dimensions: list[Any] | None = None,
                   metric_type: Any = None) -> None:
        self._add(name, value, dimensions)

    def add_counter(self, name: str, value: float, idx: Any = None, dimensions: list[Any] | None = None) -> None:
        self._add(name, value, dimensions)

    def add_time(self, name: str, value: float, idx: Any = None, unit: str = "ms",
                 dimensions: list[Any] | None = None, metric_type: Any = None) -> None:
        self._add(name, value, dimensions)

    def add_size(self, name: str, value: float, idx: Any = None, unit: str = "MB",
                 dimensions: list[Any] | None = None, metric_type: Any = None) -> None:
        self._add(name, value, dimensions)

    def add_percent(self, name: str, value: float, idx: Any = None, dimensions: list[Any] | None = None,
                    metric_type: Any = None) -> None:
        self._add(name, value, dimensions)

    def add_error(self, name: str, value: float, dimensions: list[Any] | None = None) -> None:
        given = list(dimensions or [])
        values = [str(d.value) for d in given] + (["Error"] if "Level" not in {d.name for d in given} else [])
        self.update(name, value, values)

    def set_request_ids(self, request_ids: Any) -> None:
        self.request_ids = request_ids


# A worker process records its handlers' metrics here instead of exporting them; the server process replays them.
_RECORDED: list[tuple[str, str, float, list[str]]] | None = None


def record_handler_metrics() -> None:
    """From now on, handler metrics of this process are recorded for ``drain_handler_metrics`` (a worker process)."""
    global _RECORDED
    _RECORDED = []


def drain_handler_metrics() -> list[tuple[str, str, float, list[str]]]:
    """The handler metrics recorded since the last drain: (model, metric, value, label values)."""
    if _RECORDED is None:
        return []
    records = list(_RECORDED)
    _RECORDED.clear()
    return records


@cache
def _replaying(model_name: str) -> HandlerMetrics:
    return HandlerMetrics(model_name)


def replay_handler_metrics(records: Iterable[tuple[str, str, float, list[str]]]) -> None:
    """Export what a worker process recorded, as if its handler had reported it here."""
    for model_name, name, value, values in records:
        _replaying(model_name).update(name, value, values)


class StatusCounter:
    """ASGI middleware: every HTTP response of the server counted by status class (Requests2XX/4XX/5XX)."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.metrics = runtime_metrics()

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope.get("type") != "http":
            await self.app(scope, receive, send)
            return

        async def counted(message: Any) -> None:
            if message.get("type") == "http.response.start":
                self.metrics.response(int(message.get("status", 0)))
            await send(message)

        await self.app(scope, receive, counted)


def serve_metrics_port(host: str) -> int | None:
    """Start prometheus_client's own listener on host:$MAR_BUILD_METRICS_PORT when the variable is set; the port."""
    value = os.environ.get(names.METRICS_PORT_ENV, "").strip()
    if not value.isdigit():
        return None
    start_http_server(int(value), addr=host)
    return int(value)
